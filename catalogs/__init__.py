"""tbcube catalogs: sensor catalog, in-situ network and tower definitions, STAC root.

The files in this package are data.  Code reads them through :mod:`pipeline.sensors`
(sensors) and :mod:`pipeline.io.catalog` (STAC); ``tbcube catalog validate`` checks them all.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def path(name: str) -> Path:
    """Filesystem path of a catalog file shipped in this package."""
    return Path(str(resources.files(__name__).joinpath(name)))
