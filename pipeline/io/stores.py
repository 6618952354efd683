"""Open and write Zarr stores at any fsspec URL: the only module that touches zarr/fsspec I/O.

URLs: a local path, ``file://…``, ``s3://bucket/prefix`` (any S3-compatible endpoint) or any
other fsspec protocol.  Every write passes ``zarr_format`` and ``consolidated`` explicitly.
Phased writes (see docs/architecture.md §4.5): :func:`write_template` (metadata only) →
:func:`write_region` (idempotent, chunk-aligned parts) → :func:`finalise` (consolidate + attrs).

Archive layout helpers (:func:`tb_url`, :func:`static_url`, …) follow docs/data-contract.md.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from typing import Any

import fsspec
import xarray as xr

from pipeline import errors

ZARR_FORMAT = 3

__all__ = [
    "ZARR_FORMAT",
    "exists",
    "finalise",
    "join",
    "open_dataset",
    "read_bytes",
    "read_json",
    "write_bytes",
    "write_dataset",
    "write_json",
    "write_region",
    "write_template",
]


# --- URLs ---------------------------------------------------------------------------------
def join(root: str, *parts: str) -> str:
    """Join URL/path parts with ``/`` (no normalisation of the scheme)."""
    out = str(root).rstrip("/")
    for p in parts:
        out = posixpath.join(out, str(p).strip("/"))
    return out


def tb_url(root: str, sensor: str) -> str:
    """``{root}/tb/{sensor}.zarr``."""
    return join(root, "tb", f"{sensor}.zarr")


def calibrated_url(root: str, sensor: str) -> str:
    """``{root}/calibrated/{sensor}.zarr``."""
    return join(root, "calibrated", f"{sensor}.zarr")


def static_url(root: str, grid: str) -> str:
    """``{root}/static/{grid}.zarr``."""
    return join(root, "static", f"{grid}.zarr")


def truth_url(root: str, grid: str) -> str:
    """``{root}/truth/{grid}.zarr``."""
    return join(root, "truth", f"{grid}.zarr")


def insitu_url(root: str, network: str) -> str:
    """``{root}/insitu/{network}.zarr``."""
    return join(root, "insitu", f"{network}.zarr")


def towers_url(root: str, collection: str) -> str:
    """``{root}/towers/{collection}.zarr``."""
    return join(root, "towers", f"{collection}.zarr")


def reports_url(root: str, name: str) -> str:
    """``{root}/reports/{name}``."""
    return join(root, "reports", name)


# --- filesystem ---------------------------------------------------------------------------
def _fs(url: str, storage_options: Mapping[str, Any] | None):
    fs, path = fsspec.core.url_to_fs(str(url), **dict(storage_options or {}))
    return fs, path


def exists(url: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether anything exists at ``url``."""
    fs, path = _fs(url, storage_options)
    return fs.exists(path)


def read_bytes(url: str, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """Read a whole object."""
    fs, path = _fs(url, storage_options)
    try:
        with fs.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError as e:
        raise errors.StoreNotFound(f"{url}: no such object") from e


def write_bytes(url: str, data: bytes, storage_options: Mapping[str, Any] | None = None) -> str:
    """Write a whole object (parents created); returns ``url``."""
    fs, path = _fs(url, storage_options)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(path, "wb") as f:
        f.write(data)
    return url


def read_json(url: str, storage_options: Mapping[str, Any] | None = None) -> Any:
    """Read a JSON object."""
    return json.loads(read_bytes(url, storage_options))


def write_json(url: str, obj: Any, storage_options: Mapping[str, Any] | None = None) -> str:
    """Write ``obj`` as pretty JSON (sorted keys); returns ``url``."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    return write_bytes(url, text.encode(), storage_options)


# --- datasets -----------------------------------------------------------------------------
def open_dataset(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Mapping[str, int] | str | None = None,
) -> xr.Dataset:
    """Open a Zarr store lazily (``chunks=None`` keeps the stored chunks, dask-backed)."""
    if not exists(url, storage_options):
        raise errors.StoreNotFound(f"{url}: store does not exist")
    return xr.open_zarr(
        str(url),
        storage_options=dict(storage_options or {}) or None,
        chunks={} if chunks is None else chunks,
        zarr_format=ZARR_FORMAT,
        consolidated=None,
    )


def _clean(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    for v in ds.variables.values():
        for key in ("chunks", "preferred_chunks", "shards", "compressors", "filters"):
            v.encoding.pop(key, None)
    return ds


def write_dataset(
    ds: xr.Dataset,
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Mapping[str, int] | None = None,
    mode: str = "w",
    encoding: Mapping[str, Any] | None = None,
) -> str:
    """Write a whole dataset (computes dask-backed input); returns ``url``."""
    out = _clean(ds)
    if chunks:
        out = out.chunk({d: c for d, c in chunks.items() if d in out.dims})
    out.to_zarr(
        str(url),
        mode=mode,
        storage_options=dict(storage_options or {}) or None,
        zarr_format=ZARR_FORMAT,
        consolidated=True,
        encoding=dict(encoding or {}) or None,
    )
    return url


def write_template(
    ds: xr.Dataset,
    url: str,
    *,
    chunks: Mapping[str, int],
    storage_options: Mapping[str, Any] | None = None,
    encoding: Mapping[str, Any] | None = None,
) -> str:
    """Write metadata and coordinates only (data variables are left unwritten)."""
    out = _clean(ds).chunk({d: c for d, c in chunks.items() if d in ds.dims})
    out.to_zarr(
        str(url),
        mode="w",
        compute=False,
        storage_options=dict(storage_options or {}) or None,
        zarr_format=ZARR_FORMAT,
        consolidated=True,
        encoding=dict(encoding or {}) or None,
    )
    return url


def write_region(
    ds: xr.Dataset,
    url: str,
    region: Mapping[str, slice],
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Write one part into an existing template (idempotent: rewriting overwrites)."""
    keep = [v for v in ds.data_vars if set(ds[v].dims) & set(region)]
    out = _clean(ds[keep]).drop_vars([c for c in ds.coords if set(ds[c].dims) & set(region)])
    out.to_zarr(
        str(url),
        region=dict(region),
        storage_options=dict(storage_options or {}) or None,
        zarr_format=ZARR_FORMAT,
        consolidated=False,
    )
    return url


def finalise(
    url: str,
    attrs: Mapping[str, Any] | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Update root attrs and consolidate metadata; returns ``url``."""
    import zarr

    store = str(url)
    grp = zarr.open_group(store, mode="r+", storage_options=dict(storage_options or {}) or None,
                          zarr_format=ZARR_FORMAT)
    if attrs:
        grp.attrs.update(dict(attrs))
    zarr.consolidate_metadata(grp.store)
    return url
