"""Publish products as immutable versioned stores and switch readers to them atomically.

Layout under an archive root (docs/data-contract.md, "Products")::

    {root}/products/{product_id}/{version}.zarr        one immutable store per publication
    {root}/products/{product_id}/{version}.done.json   completion marker (written after the data)
    {root}/products/{product_id}/current.json          pointer to the current version

``version`` is ``YYYYMMDDTHHMMSSffffffZ-{hash8}``: a UTC timestamp (so versions sort in
publication order as plain strings) and the first 8 hex digits of a sha256 over the dataset's
structure and the provenance (config hash, inputs, model digests).

Publication protocol (readers only ever see complete versions):

1. validate ``ds`` against ``spec`` (:func:`pipeline.schema.check`) before anything is written;
2. write the new store with :func:`pipeline.io.stores.write_dataset` (data, then consolidated
   metadata), re-open it and validate it again;
3. write the completion marker ``{version}.done.json``;
4. switch: write ``current.json`` (one small object: one PUT on S3) and, when
   :mod:`pipeline.io.catalog` is present, :func:`pipeline.io.catalog.register_product` (which
   switches the STAC Collection's Zarr asset with one object write).

The pointer is the operational source of truth (:func:`current_url`, ``tbcube products
resolve``); the STAC catalog mirrors it for discovery.  Until step 4 no reader can find the new
version, and a version is never modified after it is published.  Retention (:func:`prune`) keeps
the newest ``keep`` complete versions and never deletes the current one.

Concurrency: two publishers of the *same* product at once are not supported (the last pointer
write wins); scheduled jobs prevent this with :mod:`pipeline.runner.lock`.

Example::

    url = publish_dataset(ds, "s3://bucket/archive", "ft-smap-n36-v1", spec=schema.FT_PRODUCT)
    ds = open_product("s3://bucket/archive", "ft-smap-n36-v1")
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import importlib.util
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

import fsspec
import xarray as xr

from pipeline import errors
from pipeline.io import provenance as prov
from pipeline.io import stores

log = logging.getLogger(__name__)

__all__ = [
    "PRODUCT_ID",
    "begin_version",
    "complete_version",
    "list_names",
    "marker",
    "put_exclusive",
    "remove",
    "current_url",
    "current_version",
    "list_products",
    "list_versions",
    "make_version",
    "open_product",
    "product_url",
    "prune",
    "publish_dataset",
    "version_url",
]

PRODUCT_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)+-v[0-9]+$")
_VERSION = re.compile(r"^(\d{8}T\d{12}Z)-([0-9a-f]{8})$")
_POINTER = "current.json"
_MARKER_SUFFIX = ".done.json"
_STORE_SUFFIX = ".zarr"
_READ_RETRIES = 5


# --- names and URLs -----------------------------------------------------------------------
def _check_product_id(product_id: str) -> str:
    if not PRODUCT_ID.match(str(product_id)):
        raise errors.ConfigError(
            f"product id {product_id!r}: must look like '{{quantity}}-{{source}}-{{grid}}-v{{N}}' "
            "(lowercase, dash-separated, e.g. 'ft-smap-n36-v1')"
        )
    return str(product_id)


def product_url(root: str, product_id: str) -> str:
    """``{root}/products/{product_id}`` (the folder holding all versions)."""
    return stores.join(root, "products", _check_product_id(product_id))


def version_url(root: str, product_id: str, version: str) -> str:
    """``{root}/products/{product_id}/{version}.zarr``."""
    return stores.join(product_url(root, product_id), f"{version}{_STORE_SUFFIX}")


def _marker_url(root: str, product_id: str, version: str) -> str:
    return stores.join(product_url(root, product_id), f"{version}{_MARKER_SUFFIX}")


def _pointer_url(root: str, product_id: str) -> str:
    return stores.join(product_url(root, product_id), _POINTER)


def make_version(ds: xr.Dataset, provenance: Mapping[str, Any] | None = None,
                 *, now: dt.datetime | None = None) -> str:
    """A new sortable version id: UTC timestamp (µs) + 8 hex digits of a structure/config hash.

    Args:
      ds: The dataset to publish (only its structure — dims, sizes, variables, dtypes, attrs —
        is hashed; no data is read).
      provenance: Provenance record (config hash, inputs, model digests) mixed into the hash.
      now: Timestamp to use (default: current UTC time).
    """
    now = now or dt.datetime.now(dt.UTC)
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    payload = json.dumps(
        {"structure": prov.structure(ds), "provenance": dict(provenance or {})},
        sort_keys=True, default=str,
    )
    return f"{stamp}-{hashlib.sha256(payload.encode()).hexdigest()[:8]}"


# --- small-object operations (pipeline.io may use fsspec) -------------------------------
def _fs(url: str, storage_options: Mapping[str, Any] | None):
    opts = stores.storage_options_for(url) if storage_options is None else storage_options
    return fsspec.core.url_to_fs(str(url), **dict(opts or {}))


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return bool({"file", "local"} & set(protocol))


def list_names(url: str, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Base names of the objects/folders directly under ``url`` (empty when it is absent)."""
    fs, path = _fs(url, storage_options)
    try:
        entries = fs.ls(path, detail=False, refresh=True) if not _is_local(fs) else fs.ls(
            path, detail=False)
    except FileNotFoundError:
        return []
    return sorted({str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries})


def remove(url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Delete an object or a whole prefix (no error when it does not exist)."""
    fs, path = _fs(url, storage_options)
    try:
        fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass


def put_exclusive(url: str, data: bytes,
                  storage_options: Mapping[str, Any] | None = None) -> bool:
    """Create the object ``url`` only if it does not exist yet; ``True`` when this call did.

    Local filesystems use ``O_CREAT | O_EXCL`` (atomic).  Object stores get a conditional PUT
    (``If-None-Match: *``, s3fs mode ``"xb"``), which AWS S3 honours; S3-compatible servers that
    ignore the header overwrite instead, so callers that need mutual exclusion must still read
    the object back and compare a unique token (see :mod:`pipeline.runner.lock`).
    """
    fs, path = _fs(url, storage_options)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if _is_local(fs):
        import os

        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    if fs.exists(path):
        return False
    try:
        with fs.open(path, "xb") as f:
            f.write(data)
    except (OSError, ValueError):
        fs.invalidate_cache(path)
        if fs.exists(path):
            return False  # precondition failed: somebody else created it first
        raise
    return True


def _names(url: str, storage_options: Mapping[str, Any] | None) -> list[str]:
    return list_names(url, storage_options)


def _remove(url: str, storage_options: Mapping[str, Any] | None) -> None:
    remove(url, storage_options)


def _read_small_json(url: str, storage_options: Mapping[str, Any] | None) -> Any:
    """Read a small JSON object, retrying a torn read.

    On S3 a PUT is atomic.  A local ``open("wb")`` truncates before writing, so a reader may
    briefly see an empty or partial file; a prefix of a JSON object never parses, so retrying on
    a decode error is sound.
    """
    for attempt in range(_READ_RETRIES):
        data = stores.read_bytes(url, storage_options)
        try:
            return json.loads(data)
        except json.JSONDecodeError:
            if attempt == _READ_RETRIES - 1:
                raise errors.StoreError(f"{url}: not valid JSON (corrupt pointer)") from None
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


# --- schema / catalog hooks ---------------------------------------------------------------
def _optional_module(name: str):
    """Import ``name`` if it exists in this build (other teams' modules land independently)."""
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def _check_schema(ds: xr.Dataset, spec: Any, context: str) -> None:
    if spec is None:
        return
    schema = _optional_module("pipeline.schema")
    if schema is None:
        raise errors.SchemaError(f"{context}: a spec was given but pipeline.schema is missing")
    schema.check(ds, spec, context=context)


def _register_in_catalog(root: str, product_id: str, url: str, ds: xr.Dataset,
                         storage_options: Mapping[str, Any] | None,
                         extra: Mapping[str, Any]) -> bool:
    catalog = _optional_module("pipeline.io.catalog")
    if catalog is None or not hasattr(catalog, "register_product"):
        return False
    catalog.register_product(root, product_id, url, ds,
                             storage_options=dict(storage_options or {}) or None,
                             extra=dict(extra))
    return True


# --- publish ------------------------------------------------------------------------------
def publish_dataset(
    ds: xr.Dataset,
    root: str,
    product_id: str,
    *,
    spec: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    keep: int | None = None,
    chunks: Mapping[str, int] | None = None,
) -> str:
    """Write ``ds`` as a new immutable version of ``product_id`` and make it current.

    Args:
      ds: The product (numpy- or dask-backed; dask graphs are computed by the write).
      root: Archive root URL (local path or fsspec URL).
      product_id: ``{quantity}-{source}-{grid}-v{N}``, e.g. ``ft-smap-n36-v1``.
      spec: Optional :mod:`pipeline.schema` spec; checked before the write and on the re-opened
        store.
      storage_options: fsspec options for ``root``.
      provenance: Provenance record (see :func:`pipeline.io.provenance.collect`), stored in the
        store's attrs and in the completion marker.
      keep: If given, prune to the newest ``keep`` complete versions after the switch.
      chunks: Optional chunking for the written store (``{dim: size}``).

    Returns:
      The URL of the new version's store (``{root}/products/{product_id}/{version}.zarr``).

    Raises:
      errors.SchemaError: ``ds`` (or the written store) does not match ``spec``.
      errors.ConfigError: ``product_id`` is malformed.
    """
    _check_product_id(product_id)
    record = dict(provenance or {})
    _check_schema(ds, spec, context=f"{product_id} (before publish)")
    version = make_version(ds, record)
    url = version_url(root, product_id, version)
    out = ds.assign_attrs(prov.as_attrs(record, product_id=product_id, version=version))
    existed = stores.exists(url, storage_options)
    try:
        stores.write_dataset(out, url, storage_options=storage_options, chunks=chunks, mode="w-")
    except BaseException:
        # a failed compute (corrupt input chunk, lost worker, Ctrl-C) leaves no unfinished
        # version behind; readers never saw it (no pointer switch), and now neither does `ls`
        if not existed:
            try:
                remove(url, storage_options)
            except Exception as e:  # noqa: BLE001 - the write's own error is the one to raise
                log.warning("could not remove the unfinished version %s: %s",
                            stores._safe_url(url), e)
        raise
    return complete_version(root, product_id, version, spec=spec,
                            storage_options=storage_options, provenance=record, keep=keep)


def begin_version(template: xr.Dataset, root: str, product_id: str, *,
                  chunks: Mapping[str, int], storage_options: Mapping[str, Any] | None = None,
                  provenance: Mapping[str, Any] | None = None,
                  spec: Any = None) -> tuple[str, str]:
    """Start a new version written in parts: write its template (metadata only).

    The version is invisible to readers until :func:`complete_version`.  Parts are then written
    with :func:`pipeline.io.stores.write_region` into the returned URL.

    Args:
      template: Lazy dataset of the full product (data variables are not computed).
      root: Archive root URL.
      product_id: Product id.
      chunks: Zarr chunks of the new store (parts must align with them).
      storage_options: fsspec options for ``root``.
      provenance: Provenance record mixed into the version hash.
      spec: Optional schema spec checked on the template's structure first.

    Returns:
      ``(version, url)``.
    """
    _check_product_id(product_id)
    _check_schema(template, spec, context=f"{product_id} (template)")
    record = dict(provenance or {})
    version = make_version(template, record)
    url = version_url(root, product_id, version)
    stores.write_template(template.assign_attrs(
        prov.as_attrs(record, product_id=product_id, version=version)),
        url, chunks=chunks, storage_options=storage_options)
    return version, url


def complete_version(root: str, product_id: str, version: str, *, spec: Any = None,
                     storage_options: Mapping[str, Any] | None = None,
                     provenance: Mapping[str, Any] | None = None,
                     keep: int | None = None) -> str:
    """Seal a fully written version and make it current (steps 2–4 of the protocol).

    Consolidates metadata (with the final provenance attrs), re-opens and checks the store
    against ``spec``, writes the completion marker, switches the pointer and the STAC
    catalog, and optionally prunes old versions.

    Returns:
      The version's store URL.
    """
    record = dict(provenance or {})
    url = version_url(root, product_id, version)
    stores.finalise(url, prov.as_attrs(record, product_id=product_id, version=version),
                    storage_options=storage_options)
    written = stores.open_dataset(url, storage_options=storage_options)
    _check_schema(written, spec, context=url)
    marker = {
        "product_id": product_id,
        "version": version,
        "store": f"{version}{_STORE_SUFFIX}",
        "completed_at": dt.datetime.now(dt.UTC).isoformat(),
        "variables": sorted(map(str, written.data_vars)),
        "sizes": {str(k): int(v) for k, v in written.sizes.items()},
        "provenance": record,
    }
    stores.write_json(_marker_url(root, product_id, version), marker, storage_options)
    _switch(root, product_id, version, storage_options)
    _register_in_catalog(root, product_id, url, written, storage_options,
                         {"version": version, "config_hash": record.get("config_hash")})
    if keep is not None:
        prune(root, product_id, keep=keep, storage_options=storage_options)
    return url


def marker(root: str, product_id: str, version: str,
           storage_options: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The completion marker of ``version`` (``None`` when the version is not complete)."""
    url = _marker_url(root, product_id, version)
    if not stores.exists(url, storage_options):
        return None
    return _read_small_json(url, storage_options)


def _switch(root: str, product_id: str, version: str,
            storage_options: Mapping[str, Any] | None) -> None:
    pointer = {
        "product_id": product_id,
        "version": version,
        "href": f"{version}{_STORE_SUFFIX}",
        "zarr_format": stores.ZARR_FORMAT,
        "consolidated": True,
        "switched_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    stores.write_json(_pointer_url(root, product_id), pointer, storage_options)


# --- read side ----------------------------------------------------------------------------
def list_products(root: str, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Product ids under ``{root}/products`` that have a current version, sorted."""
    out = []
    for name in _names(stores.join(root, "products"), storage_options):
        if PRODUCT_ID.match(name) and stores.exists(_pointer_url(root, name), storage_options):
            out.append(name)
    return out


def list_versions(root: str, product_id: str,
                  storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Complete versions (those with a completion marker) of ``product_id``, oldest first."""
    names = _names(product_url(root, product_id), storage_options)
    done = {n[: -len(_MARKER_SUFFIX)] for n in names if n.endswith(_MARKER_SUFFIX)}
    return sorted(v for v in done if _VERSION.match(v) and f"{v}{_STORE_SUFFIX}" in names)


def current_version(root: str, product_id: str,
                    storage_options: Mapping[str, Any] | None = None) -> str:
    """The version the pointer names.

    Raises:
      errors.StoreNotFound: the product has never been published under ``root``.
    """
    url = _pointer_url(root, product_id)
    if not stores.exists(url, storage_options):
        raise errors.StoreNotFound(
            f"{product_url(root, product_id)}: product has no published version"
        )
    pointer = _read_small_json(url, storage_options)
    version = str(pointer.get("version", ""))
    if not _VERSION.match(version):
        raise errors.StoreError(f"{url}: pointer names no valid version ({version!r})")
    return version


def current_url(root: str, product_id: str,
                storage_options: Mapping[str, Any] | None = None) -> str:
    """URL of the current (complete) version of ``product_id``: pass it to ``xr.open_zarr``."""
    return version_url(root, product_id, current_version(root, product_id, storage_options))


def open_product(root: str, product_id: str, storage_options: Mapping[str, Any] | None = None,
                 *, chunks: Mapping[str, int] | str | None = None) -> xr.Dataset:
    """Open the current version of ``product_id`` lazily (dask-backed)."""
    return stores.open_dataset(current_url(root, product_id, storage_options),
                               storage_options=storage_options, chunks=chunks)


# --- retention ----------------------------------------------------------------------------
def prune(root: str, product_id: str, *, keep: int,
          storage_options: Mapping[str, Any] | None = None,
          orphan_age_s: float = 86400.0) -> list[str]:
    """Delete old versions, keeping the newest ``keep`` complete ones and always the current.

    Incomplete versions (a store without a completion marker: a crashed publish) older than
    ``orphan_age_s`` (judged by the timestamp in the version id) are deleted too; younger ones
    are left alone because a publish may still be writing them, and so is the version of a run
    in progress (named in ``run.json``, see :mod:`pipeline.runner.jobs`), however old.

    Returns:
      The deleted versions.
    """
    if keep < 1:
        raise errors.ConfigError(f"{product_id}: retention keep={keep} must be at least 1")
    current = current_version(root, product_id, storage_options)
    complete = list_versions(root, product_id, storage_options)
    doomed = [v for v in complete[:-keep] if v != current]
    running = None
    run_state = stores.join(product_url(root, product_id), "run.json")
    if stores.exists(run_state, storage_options):
        running = _read_small_json(run_state, storage_options).get("version")
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=orphan_age_s)
    for name in _names(product_url(root, product_id), storage_options):
        v = name[: -len(_STORE_SUFFIX)] if name.endswith(_STORE_SUFFIX) else None
        m = _VERSION.match(v or "")
        if m and v not in complete and v not in (current, running):
            stamp = dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=dt.UTC)
            if stamp < cutoff:
                doomed.append(v)
    for v in doomed:
        # Marker first: a version without a marker is invisible to list_versions.
        _remove(_marker_url(root, product_id, v), storage_options)
        _remove(version_url(root, product_id, v), storage_options)
        _remove(stores.join(product_url(root, product_id), f"{v}.parts"), storage_options)
    return doomed
