"""tbcube pipeline: the xarray / dask / zarr side of tbcube.

Stages (pure ``Dataset -> Dataset`` functions) live in modules such as :mod:`pipeline.grid`;
I/O lives in :mod:`pipeline.io`; scheduling in :mod:`pipeline.runner`; the only bridge to the
pure-JAX :mod:`models` package is :mod:`pipeline.apply`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
