"""tbcube models: pure JAX/Flax numerics on arrays with documented axis order.

Nothing here imports xarray, dask, zarr, fsspec or :mod:`pipeline` (enforced by a test).
"""

from __future__ import annotations

__version__ = "0.1.0"
# Major version of the checkpoint/model interface; bundles from another major are refused.
MODELS_MAJOR = 0
