"""Open and write Zarr stores at any fsspec URL: the only module that touches zarr/fsspec I/O.

URLs: a local path, ``file://…``, ``s3://bucket/prefix`` (any S3-compatible endpoint) or any
other fsspec protocol.  Every open and write passes ``zarr_format`` and ``consolidated``
explicitly (on open they are read from the store's own metadata).  Phased writes (see
docs/architecture.md §4.5, docs/storage.md): :func:`write_template` (metadata and coordinates
only) → :func:`write_region` (idempotent, chunk-aligned parts) → :func:`finalise` (attrs +
consolidated metadata).

Credentials come from :func:`storage_options_for` (run config, AWS profile or the standard AWS
environment variables).  They never appear in logs, attrs or error messages: expected failures
raise one-line :mod:`pipeline.errors` exceptions (``StoreNotFound``, ``AccessDenied``,
``StoreError`` for an unreachable endpoint, ``SchemaError`` for a part that does not fit the
store), with the URL stripped of any user info.

Archive layout helpers (:func:`tb_url`, :func:`static_url`, …) follow docs/data-contract.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import fsspec
import numpy as np
import xarray as xr

from pipeline import errors
from pipeline.io import chunks

# a chunk that does not decode names its store, variable and chunk (pipeline/io/chunks.py)
chunks.install()

ZARR_FORMAT = 3
"""Default Zarr format for new stores (docs/data-contract.md); 2 is supported on request."""

log = logging.getLogger(__name__)

__all__ = [
    "ZARR_FORMAT",
    "StorageOptions",
    "calibrated_url",
    "default_store_name",
    "exists",
    "finalise",
    "find_static",
    "insitu_url",
    "join",
    "list_names",
    "open_dataset",
    "open_static",
    "open_stations",
    "read_bytes",
    "read_json",
    "read_table",
    "reports_url",
    "static_url",
    "storage_options_for",
    "store_format",
    "store_names",
    "tb_url",
    "towers_url",
    "truth_url",
    "write_bytes",
    "write_dataset",
    "write_json",
    "write_region",
    "write_template",
]

_SECRET_KEYS = ("key", "secret", "token", "password", "session_token")


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


def ancillary_url(root: str, grid: str) -> str:
    """``{root}/ancillary/{grid}.zarr`` (reanalysis-like ancillary fields; docs/stores.md)."""
    return join(root, "ancillary", f"{grid}.zarr")


def reports_url(root: str, name: str) -> str:
    """``{root}/reports/{name}``."""
    return join(root, "reports", name)


def _protocol(url: str) -> str:
    """The fsspec protocol of ``url`` (``file`` for plain paths)."""
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://", str(url))
    return m.group(1).lower() if m else "file"


def _local_path(url: str) -> str | None:
    """The filesystem path of a local path or ``file://`` URL; None for remote URLs."""
    url = str(url)
    if url.startswith("file://"):
        return url[len("file://"):]
    return None if "://" in url else url


def _safe_url(url: str) -> str:
    """``url`` without any ``user:password@`` part (for messages and logs)."""
    url = str(url)
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return url.replace(parts.netloc, f"***@{host}", 1)


# --- credentials --------------------------------------------------------------------------
class StorageOptions(dict):
    """fsspec storage options whose ``repr``/``str`` hide credentials (a plain ``dict`` else)."""

    def __repr__(self) -> str:
        shown = {k: ("***" if k in _SECRET_KEYS and v else v) for k, v in self.items()}
        return f"StorageOptions({shown!r})"

    __str__ = __repr__


def _secret_value(v: Any) -> str | None:
    """The plain string of a pydantic ``SecretStr`` (or a str); None for empty values."""
    if v is None:
        return None
    if hasattr(v, "get_secret_value"):
        v = v.get_secret_value()
    v = str(v)
    return v or None


def storage_options_for(url: str, storage: Any | None = None) -> StorageOptions:
    """fsspec storage options for ``url`` from a run config, an AWS profile or the environment.

    Precedence for S3 URLs (first found wins, per item):

    * endpoint: ``storage.endpoint_url`` → ``AWS_ENDPOINT_URL_S3`` → ``AWS_ENDPOINT_URL``;
    * credentials: ``storage.anon`` (unsigned) → ``storage.key``/``storage.secret`` →
      ``storage.profile`` → ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
      (+ ``AWS_SESSION_TOKEN``) → ``AWS_PROFILE`` → botocore's default chain (instance roles);
    * region: ``storage.region`` → ``AWS_REGION`` → ``AWS_DEFAULT_REGION``.

    Args:
      url: Store or object URL; only ``s3://`` (and ``s3a://``) get options, other protocols an
        empty mapping (local paths need none).
      storage: A run-config ``StorageSection`` or any object with its attributes
        (``endpoint_url``, ``profile``, ``region``, ``anon``, ``key``, ``secret``), or None.

    Returns:
      A :class:`StorageOptions` dict for ``s3fs.S3FileSystem`` (its repr hides secrets).
    """
    opts = StorageOptions()
    if _protocol(url) not in ("s3", "s3a"):
        return opts
    env = os.environ

    def cfg(name: str) -> Any:
        return getattr(storage, name, None) if storage is not None else None

    endpoint = cfg("endpoint_url") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["endpoint_url"] = str(endpoint)
    region = cfg("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        opts["client_kwargs"] = {"region_name": str(region)}
    key, secret = _secret_value(cfg("key")), _secret_value(cfg("secret"))
    if cfg("anon"):
        opts["anon"] = True
    elif key or secret:
        if not (key and secret):
            raise errors.ConfigError(
                f"{_safe_url(url)}: storage config gives only one of 'key' and 'secret'"
            )
        opts["key"], opts["secret"] = key, secret
    elif cfg("profile"):
        opts["profile"] = str(cfg("profile"))
    elif env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        opts["key"] = env["AWS_ACCESS_KEY_ID"]
        opts["secret"] = env["AWS_SECRET_ACCESS_KEY"]
        if env.get("AWS_SESSION_TOKEN"):
            opts["token"] = env["AWS_SESSION_TOKEN"]
    elif env.get("AWS_PROFILE"):
        opts["profile"] = env["AWS_PROFILE"]
    return opts


def _options(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Explicit options, else those from the environment (S3 only); {} for local paths."""
    if _local_path(url) is not None:
        return {}
    if storage_options is None:
        return dict(storage_options_for(url))
    return dict(storage_options)


def _secrets(storage_options: Mapping[str, Any] | None) -> list[str]:
    """Every credential string that must not leak into a message."""
    vals = [_secret_value((storage_options or {}).get(k)) for k in _SECRET_KEYS]
    vals += [os.environ.get(k) for k in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")]
    return [v for v in vals if v and len(v) >= 4]


def _redact(text: str, secrets: list[str]) -> str:
    """``text`` with known secrets and URL user info (``//user:pw@``) replaced by ``***``."""
    for s in secrets:
        text = text.replace(s, "***")
    return re.sub(r"//[^/@\s]+@", "//***@", text)


# --- error translation --------------------------------------------------------------------
_DENIED_CODES = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "AllAccessDisabled", "403", "401", "Forbidden",
}
_UNREACHABLE = {
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ClientConnectorError", "ServerDisconnectedError", "ClientOSError", "gaierror",
}
_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"}
_MISSING = {"GroupNotFoundError", "ArrayNotFoundError", "NodeNotFoundError", "NoSuchBucket"}


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _reason(e: BaseException, secrets: list[str]) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return _redact(text[:160], secrets)


def _classify(e: BaseException, what: str, secrets: list[str]) -> errors.TbcubeError | None:
    """The one-line TbcubeError for an exception from fsspec/s3fs/zarr, or None to re-raise."""
    for x in _chain(e):
        name = type(x).__name__
        code = ""
        resp = getattr(x, "response", None)
        if isinstance(resp, dict):
            code = str(resp.get("Error", {}).get("Code", ""))
        if name == "ParamValidationError":
            return errors.StoreError(f"{what}: invalid S3 bucket or key in the URL")
        if name in _NO_CREDENTIALS:
            return errors.AccessDenied(f"{what}: no usable credentials ({_reason(x, secrets)})")
        if isinstance(x, PermissionError) or code in _DENIED_CODES:
            return errors.AccessDenied(
                f"{what}: access denied, check the key/secret, profile and bucket permissions "
                f"({_reason(x, secrets)})"
            )
        if name in _UNREACHABLE or isinstance(x, ConnectionError | TimeoutError):
            return errors.StoreError(
                f"{what}: storage endpoint unreachable ({_reason(x, secrets)})"
            )
        if isinstance(x, FileNotFoundError) or name in _MISSING or code == "NoSuchBucket":
            return errors.StoreNotFound(f"{what}: does not exist ({_reason(x, secrets)})")
        if isinstance(x, FileExistsError) or name == "ContainsGroupError":
            return errors.StoreError(f"{what}: already exists ({_reason(x, secrets)})")
    return None


@contextlib.contextmanager
def _translated(url: str, action: str, storage_options: Mapping[str, Any] | None):
    """Turn storage exceptions into one-line TbcubeErrors without credentials or tracebacks."""
    secrets = _secrets(storage_options)
    try:
        with warnings.catch_warnings():
            # zarr-python 3 warns on every consolidated v3 write; consolidation is deliberate
            # here (docs/architecture.md §3, Samudra#117) and readers that ignore it still work.
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            yield
    except errors.TbcubeError:
        raise
    except Exception as e:  # noqa: BLE001 - classified below, unknown errors re-raised
        err = _classify(e, f"{_safe_url(url)}: {action}", secrets)
        if err is None:
            raise
        raise err from None


# --- filesystem ---------------------------------------------------------------------------
def _fs(url: str, storage_options: Mapping[str, Any] | None):
    """``(filesystem, path)`` for ``url``, with no stale listing cached for ``path``.

    fsspec reuses filesystem instances, and s3fs answers ``exists``/``info`` from cached
    directory listings; another process (a Dask worker, a concurrent job) may have written
    since, so the cache for the path and its parents is dropped first.
    """
    local = _local_path(url)
    if local is not None:
        return fsspec.filesystem("file"), os.path.abspath(local)
    fs, path = fsspec.core.url_to_fs(str(url), **_options(url, storage_options))
    fs.invalidate_cache(path)
    return fs, path


def exists(url: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether anything (an object or a prefix) exists at ``url``."""
    with _translated(url, "check existence", storage_options):
        fs, path = _fs(url, storage_options)
        return bool(fs.exists(path))


def list_names(url: str, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Names of the entries directly under the prefix ``url`` (sorted; [] when none)."""
    with _translated(url, "list", storage_options):
        fs, path = _fs(url, storage_options)
        if not fs.exists(path):
            return []
        return sorted(posixpath.basename(str(p).rstrip("/")) for p in fs.ls(path, detail=False))


def store_names(root: str, folder: str,
                storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """The names of the Zarr stores ``{root}/{folder}/{name}.zarr`` (sorted), e.g. the in-situ
    networks (``folder="insitu"``) or tower collections (``"towers"``)."""
    return [n[:-5] for n in list_names(join(root, folder), storage_options)
            if n.endswith(".zarr")]


def default_store_name(root: str, folder: str,
                       storage_options: Mapping[str, Any] | None = None, *,
                       preferred: str | None = None, option: str = "--network") -> str:
    """The in-situ network (``folder="insitu"``) or tower collection (``"towers"``) a command
    uses when none is named: the archive's only one, else ``preferred`` when it has that.

    Raises:
      errors.StoreNotFound: no store under ``{root}/{folder}``.
      errors.ConfigError: several and none preferred (name one with ``option``).
    """
    names = store_names(root, folder, storage_options)
    where = _safe_url(join(root, folder))
    what = {"insitu": "in-situ network", "towers": "tower collection"}.get(folder, "Zarr")
    if not names:
        raise errors.StoreNotFound(f"{where}: no {what} store ({{name}}.zarr) in this archive")
    if len(names) == 1:
        return names[0]
    if preferred in names:
        return str(preferred)
    raise errors.ConfigError(f"{where}: several stores {names}; name one with {option}")


def read_bytes(url: str, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """Read a whole object."""
    with _translated(url, "read", storage_options):
        fs, path = _fs(url, storage_options)
        with fs.open(path, "rb") as f:
            return f.read()


def write_bytes(url: str, data: bytes, storage_options: Mapping[str, Any] | None = None) -> str:
    """Write a whole object (parents created); returns ``url``.

    Readers never see a partial object: on local disks the bytes go to a temporary file that
    is then renamed over the target (atomic on POSIX); an S3 PUT is atomic by itself.
    """
    with _translated(url, "write", storage_options):
        fs, path = _fs(url, storage_options)
        parent = posixpath.dirname(path)
        local = _local_path(url)
        if local is not None:
            import os
            import tempfile

            if parent:
                fs.makedirs(parent, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(local) or ".")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(bytes(data))
                os.replace(tmp, local)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        else:
            fs.pipe_file(path, bytes(data))
    return url


def read_json(url: str, storage_options: Mapping[str, Any] | None = None) -> Any:
    """Read a JSON object."""
    raw = read_bytes(url, storage_options)
    try:
        return json.loads(raw)
    except ValueError as e:
        raise errors.InputDataError(f"{_safe_url(url)}: not valid JSON ({e})") from None


def read_table(url: str, required: Sequence[str], what: str,
               storage_options: Mapping[str, Any] | None = None) -> dict | None:
    """A JSON object that a command wrote (a fitted table under ``models/``); None when
    absent.

    Raises:
      errors.ConfigError: it is not an object with the ``required`` keys.
    """
    if not exists(url, storage_options):
        return None
    doc = read_json(url, storage_options)
    missing = [k for k in required if not isinstance(doc, dict) or k not in doc]
    if missing:
        raise errors.ConfigError(f"{_safe_url(url)}: not a {what} (no {missing})")
    return doc


def write_json(url: str, obj: Any, storage_options: Mapping[str, Any] | None = None) -> str:
    """Write ``obj`` as pretty JSON (sorted keys); returns ``url``."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    return write_bytes(url, text.encode(), storage_options)


# --- store metadata -----------------------------------------------------------------------
def _zarr_target(url: str, storage_options: Mapping[str, Any] | None) -> tuple[str, dict | None]:
    """``(store, storage_options)`` as xarray/zarr want them (local paths take no options)."""
    local = _local_path(url)
    if local is not None:
        return local, None
    return str(url), _options(url, storage_options) or None


def store_format(
    url: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[int, bool]:
    """``(zarr_format, consolidated)`` of an existing store, read from its root metadata.

    Raises:
      errors.StoreNotFound: Nothing, or no Zarr group, at ``url``.
    """
    with _translated(url, "open", storage_options):
        fs, path = _fs(url, storage_options)
        try:
            raw = fs.cat_file(posixpath.join(path, "zarr.json"))
        except FileNotFoundError:
            raw = None
        if raw is None:
            if fs.exists(posixpath.join(path, ".zgroup")):
                return 2, bool(fs.exists(posixpath.join(path, ".zmetadata")))
            found = fs.exists(path)
    if raw is not None:
        try:
            meta = json.loads(raw)
            return 3, bool(meta.get("consolidated_metadata"))
        except (ValueError, AttributeError):
            raise errors.StoreError(
                f"{_safe_url(url)}: corrupt Zarr metadata in zarr.json (not a JSON object)"
            ) from None
    what = "holds no Zarr group metadata (zarr.json or .zgroup)" if found else "does not exist"
    raise errors.StoreNotFound(f"{_safe_url(url)}: store {what}")


def _check_attrs(ds: xr.Dataset, url: str, storage_options: Mapping[str, Any] | None) -> None:
    """Refuse to write credentials into attrs (e.g. a resolved run config copied verbatim)."""
    secrets = _secrets(_options(url, storage_options))
    if not secrets:
        return
    texts = [json.dumps(ds.attrs, default=str)]
    texts += [json.dumps(v.attrs, default=str) for v in ds.variables.values()]
    if any(s in t for s in secrets for t in texts):
        raise errors.ConfigError(f"{_safe_url(url)}: refusing to write credentials into attrs")


# --- datasets -----------------------------------------------------------------------------
def open_dataset(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Mapping[str, int] | str | None = None,
    use_dask: bool = True,
) -> xr.Dataset:
    """Open a Zarr store lazily.

    Args:
      url: Store URL (local path, ``file://``, ``s3://``…).
      storage_options: fsspec options; default :func:`storage_options_for` ``(url)``.
      chunks: dask chunks; None keeps the stored chunks (dask-backed).
      use_dask: False: no dask at all; variables are lazily indexed and read as NumPy on access
        (``chunks`` is ignored).  For many small reads in one process (training batches),
        where a dask graph per read is the larger cost.

    Raises:
      errors.StoreNotFound, errors.AccessDenied, errors.StoreError: one-line messages.
    """
    fmt, consolidated = store_format(url, storage_options)
    store, opts = _zarr_target(url, storage_options)
    with _translated(url, "open", storage_options):
        ds = xr.open_zarr(
            store,
            storage_options=opts,
            chunks=None if not use_dask else ({} if chunks is None else chunks),
            zarr_format=fmt,
            consolidated=consolidated,
        )
        ds = _eager_coords(ds)
    return _fixed_width_strings(ds)


TB_DIMS = ("time", "pass", "channel", "y", "x")
# Physically possible TB [K] (the data contract's sanity bound; 0 K itself is impossible, the
# cosmic background is 2.7 K). Values outside (0, 400] are fill values or corruption, never a
# scene: open_tb screens them to NaN and flags the pixel.
TB_POSSIBLE_K = (0.0, 400.0)


def open_tb(
    url: str, *, storage_options: Mapping[str, Any] | None = None
) -> xr.Dataset:
    """Open a TB store (``tb/`` or ``calibrated/{sensor}.zarr``) and check what every stage relies
    on before any value is read: variable ``tb`` with dims ``(time, pass, channel, y, x)`` in
    kelvin, and attr ``grid`` (docs/data-contract.md).  The full contract is checked where
    stores are written (ingest, simulator, calibration).  Impossible TB values are screened
    per pixel (:func:`screen_tb`).

    Raises:
      errors.InputDataError: ``"{url}: variable 'tb' units 'degC', expected 'K'"`` etc.
      errors.StoreNotFound, errors.AccessDenied, errors.StoreError: as :func:`open_dataset`.
    """
    ds = open_dataset(url, storage_options=storage_options)
    where = _safe_url(url)
    if "tb" not in ds.data_vars:
        raise errors.InputDataError(f"{where}: variable 'tb' missing (data-contract.md)")
    units = ds["tb"].attrs.get("units")
    if units != "K":
        raise errors.InputDataError(
            f"{where}: variable 'tb' units {units!r}, expected 'K' (data-contract.md)")
    if set(ds["tb"].dims) != set(TB_DIMS):
        raise errors.InputDataError(
            f"{where}: variable 'tb' dims {tuple(ds['tb'].dims)}, expected {TB_DIMS}")
    if tuple(ds["tb"].dims) != TB_DIMS:  # the contract's order, lazily (a writer may differ)
        ds = ds.transpose(*TB_DIMS, ...)
    if not ds.attrs.get("grid"):
        raise errors.InputDataError(f"{where}: attr 'grid' missing (data-contract.md)")
    return screen_tb(ds)


# Units of the station and tower variables (data-contract.md), with the spellings accepted.
_K = ("K", "kelvin")
_SM = ("m3 m-3", "m3/m3", "m^3 m^-3", "m3 m**-3", "m**3 m**-3")
_FLUX = ("g C m-2 d-1", "gC m-2 d-1", "g C m-2 day-1", "gC m-2 day-1")
STATION_UNITS = {
    "insitu": {"soil_moisture": _SM, "soil_temperature": _K, "air_temperature": _K},
    "towers": {"nee": _FLUX, "gpp": _FLUX, "reco": _FLUX, "ta": _K, "tmin": _K, "ts": _K,
               "sw_in": ("W m-2", "W/m2", "W m^-2"), "vpd": ("Pa",), "swc": _SM},
}
STATION_DIM = {"insitu": "station", "towers": "site"}


def open_stations(url: str, kind: str, *,
                  storage_options: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Open an in-situ network (``kind="insitu"``) or tower collection (``"towers"``) store and
    check what the readers rely on: the variables they use are on (station|site, time) in the
    contract's units.  A probe in per cent or °C, or fluxes in µmol m-2 s-1, would otherwise be
    scored silently.

    Raises:
      errors.InputDataError: ``"{url}: variable 'soil_temperature' units 'degC', expected 'K'
        (data-contract.md)"`` etc.
    """
    ds = open_dataset(url, storage_options=storage_options)
    where = _safe_url(url)
    dim = STATION_DIM[kind]
    if dim not in ds.dims or "time" not in ds.dims:
        raise errors.InputDataError(
            f"{where}: dims {tuple(ds.dims)}, expected ({dim!r}, 'time') (data-contract.md)")
    for var, ok in STATION_UNITS[kind].items():
        if var not in ds.data_vars:
            continue
        units = ds[var].attrs.get("units")
        if units not in ok:
            raise errors.InputDataError(
                f"{where}: variable {var!r} units {units!r}, expected {ok[0]!r} "
                "(data-contract.md)")
        if set(ds[var].dims) != {dim, "time"}:
            raise errors.InputDataError(f"{where}: variable {var!r} dims {ds[var].dims}, "
                                        f"expected ({dim!r}, 'time')")
    return ds


# Plausible ranges of the static layers (data-contract.md): a fraction in per cent or a bulk
# density in kg m-3 would pass every schema check and bias the dielectric model silently.
STATIC_RANGES = {"land_fraction": (0.0, 1.0, "a fraction 0–1"),
                 "water_fraction": (0.0, 1.0, "a fraction 0–1"),
                 "clay_fraction": (0.0, 1.0, "a fraction 0–1"),
                 "sand_fraction": (0.0, 1.0, "a fraction 0–1"),
                 "bulk_density": (0.3, 2.7, "g cm-3"),
                 "landcover": (0, 17, "IGBP 0–17"),
                 "pft": (0, 8, "L4C PFT 0–8")}


def open_static(url: str, like: xr.Dataset | None = None, *,
                storage_options: Mapping[str, Any] | None = None,
                what: str = "the TB store") -> xr.Dataset:
    """Open ``static/{grid}.zarr`` in memory, check its layers' ranges (:data:`STATIC_RANGES`)
    and, with ``like``, that it lies on ``like``'s cells (:func:`open_on_cells`).

    Raises:
      errors.InputDataError: ``"{url}: variable 'clay_fraction' has values 0..35, expected a
        fraction 0–1 (per cent?) (data-contract.md)"`` etc.
    """
    ds = open_dataset(url, storage_options=storage_options)
    if like is not None:
        require_on_cells(ds, like, url, what=what)
    ds = ds.load()
    where = _safe_url(url)
    for var, (lo, hi, expect) in STATIC_RANGES.items():
        if var not in ds.data_vars:
            continue
        v = np.asarray(ds[var].values, np.float64)
        v = v[np.isfinite(v)]
        if v.size and (v.min() < lo or v.max() > hi):
            hint = " (per cent?)" if expect.startswith("a fraction") and v.max() <= 100 else ""
            raise errors.InputDataError(
                f"{where}: variable {var!r} has values {v.min():g}..{v.max():g}, expected "
                f"{expect}{hint} (data-contract.md)")
    return ds


def find_static(root: str, storage_options: Mapping[str, Any] | None = None) -> xr.Dataset:
    """The archive's static layers, ``static/{grid}.zarr`` of the first grid that has one
    (:func:`open_static`, checked).

    Raises:
      errors.StoreNotFound: the archive has no static store.
    """
    from pipeline import grid

    for g in grid.GRIDS:
        url = static_url(root, g)
        if exists(url, storage_options):
            return open_static(url, storage_options=storage_options)
    raise errors.StoreNotFound(f"{_safe_url(root)}: no static/{{grid}}.zarr store")


def open_on_cells(
    url: str, like: xr.Dataset, *, storage_options: Mapping[str, Any] | None = None,
    what: str = "the TB store",
) -> xr.Dataset:
    """Open a store that must be on ``like``'s grid cells (static layers, truth, ancillary).

    Raises:
      errors.InputDataError: ``"{url}: not on the cells of the TB store: dim 'y' coordinates
        differ (…)"`` (:func:`pipeline.grid.cells_mismatch`): a window of the same size
        elsewhere would otherwise align by position.
    """
    return require_on_cells(open_dataset(url, storage_options=storage_options), like, url,
                            what=what)


def require_on_cells(ds: xr.Dataset, like: xr.Dataset, url: str, *,
                     what: str = "the TB store") -> xr.Dataset:
    """``ds`` (opened from ``url``), checked to be on ``like``'s grid cells (see
    :func:`open_on_cells`)."""
    from pipeline import grid

    problem = grid.cells_mismatch(ds, like)
    if problem:
        raise errors.InputDataError(f"{_safe_url(url)}: not on the cells of {what}: {problem}")
    return ds


def screen_tb(ds: xr.Dataset) -> xr.Dataset:
    """TB outside :data:`TB_POSSIBLE_K` (undeclared fill values such as 0, −9999 or 65535, ±inf)
    becomes NaN, and the pixel's ``quality_flag`` gets ``OUT_OF_RANGE_TB`` (lazy; values
    inside the bound are untouched, so a clean store reads back unchanged)."""
    from pipeline import qc

    tb = ds["tb"]
    lo, hi = TB_POSSIBLE_K
    bad = (tb <= lo) | (tb > hi) | np.isinf(tb)
    screened = tb.where(~bad)
    screened.attrs = dict(tb.attrs)
    out = ds.assign(tb=screened)
    if "quality_flag" in ds:
        q = ds["quality_flag"]
        bit = np.array(int(qc.QC.OUT_OF_RANGE_TB), dtype=q.dtype)
        flagged = (q | bad.any("channel").astype(q.dtype) * bit).astype(q.dtype)
        flagged = flagged.transpose(*q.dims)
        flagged.attrs = dict(q.attrs)
        out["quality_flag"] = flagged
    return out


# Non-index coordinates up to this size are loaded at open (lat/lon of an M09 global grid is
# 2 x 50 MB).  Lazy ones are compared by computing them on every binary operation between two
# arrays opened from different stores (xarray's coordinate merge): 70 small computes, 9 s of a
# 22 s carbon model run on the tiny archive.
EAGER_COORD_BYTES = 256 * 2**20


def chunk_variables(obj, chunks):
    """``obj.chunk(chunks)`` with in-memory non-index coordinates kept in memory.

    ``Dataset.chunk`` and ``DataArray.chunk`` also chunk coordinates such as 2-D ``lat``/``lon``;
    every later binary operation with an array holding the same coordinate in memory then
    computes it to compare (see :data:`EAGER_COORD_BYTES`).
    """
    out = obj.chunk(chunks)
    keep = {n: c.variable for n, c in obj.coords.items()
            if n not in obj.indexes and c.variable.chunks is None}
    return out.assign_coords(keep) if keep else out


def _eager_coords(ds: xr.Dataset) -> xr.Dataset:
    lazy = {n: c for n, c in ds.coords.items()
            if n not in ds.indexes and c.variable.chunks is not None}
    if not lazy or sum(c.nbytes for c in lazy.values()) > EAGER_COORD_BYTES:
        return ds
    return ds.assign_coords({n: c.variable.load() for n, c in lazy.items()})


def _fixed_width_strings(ds: xr.Dataset) -> xr.Dataset:
    """Turn numpy variable-width ``StringDType`` variables (how zarr 3 returns strings) into
    fixed-width unicode, which the rest of numpy/xarray/pandas handles everywhere (casting,
    reindexing, comparisons).  String variables are labels and ids: small, so loading is cheap.
    """
    kinds = {n: v for n, v in ds.variables.items() if v.dtype.kind == "T"}
    if not kinds:
        return ds
    fixed = {n: np.asarray(v.values).astype(object).astype(str) for n, v in kinds.items()}
    coords = {n: (ds[n].dims, a, ds[n].attrs) for n, a in fixed.items() if n in ds.coords}
    data = {n: (ds[n].dims, a, ds[n].attrs) for n, a in fixed.items() if n not in ds.coords}
    return ds.assign_coords(coords).assign(data)


_STALE_ENCODING = (
    "chunks", "preferred_chunks", "shards", "compressors", "compressor", "filters",
    "serializer", "object_codec", "write_empty_chunks",
)


def _clean(ds: xr.Dataset) -> xr.Dataset:
    """A shallow copy without encodings from a previous store (chunks, codecs).

    Fixed-width unicode variables (labels, ids) are written as variable-length UTF-8 strings,
    the string type Zarr v3 specifies (numpy ``<U`` maps to an unspecified extension type).
    """
    ds = ds.copy()
    for v in ds.variables.values():
        v.encoding = {k: e for k, e in v.encoding.items() if k not in _STALE_ENCODING}
    strings = [n for n, v in ds.variables.items() if v.dtype.kind == "U"]
    for n in strings:
        v = ds.variables[n]
        ds[n] = xr.Variable(v.dims, np.asarray(v.values, dtype=object), v.attrs, v.encoding)
    return ds


def _chunked(ds: xr.Dataset, chunks: Mapping[str, int] | None) -> xr.Dataset:
    if not chunks:
        return ds
    out = ds.chunk({d: c for d, c in chunks.items() if d in ds.dims})
    # String variables (labels, ids) stay in memory: dask arrays of Python strings make xarray
    # load them anyway to pick a storage dtype (SerializationWarning).
    for n, v in ds.variables.items():
        if v.dtype.kind in "OUT" and n in out.variables and out.variables[n].chunks is not None:
            out[n] = v.load() if hasattr(v, "load") else v
    return out


def _check_uniform(ds: xr.Dataset, url: str) -> None:
    """Zarr chunks are regular: every dask chunk but the last must have the first's size."""
    for name, var in ds.variables.items():
        for dim, sizes in zip(var.dims, var.chunks or (), strict=False):
            if len(sizes) > 1 and (len(set(sizes[:-1])) > 1 or sizes[-1] > sizes[0]):
                raise errors.SchemaError(
                    f"{_safe_url(url)}: variable {name!r} dim {dim!r}: dask chunks "
                    f"{list(sizes)} are irregular and cannot map onto Zarr chunks; pass chunks= "
                    f"or rechunk to one size"
                )


def write_dataset(
    ds: xr.Dataset,
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Mapping[str, int] | None = None,
    mode: str = "w",
    encoding: Mapping[str, Any] | None = None,
    zarr_format: int = ZARR_FORMAT,
) -> str:
    """Write a whole dataset with consolidated metadata (computes dask input); returns ``url``.

    Not atomic: a reader opening ``url`` during the write can see a partial store.  Publish
    products with ``pipeline.io.publish.publish_dataset`` (new immutable version + catalog
    switch) instead; see docs/storage.md.

    Args:
      ds: Dataset to write; stale encodings (chunks, codecs) are dropped first.
      url: Target store URL.
      storage_options: fsspec options; default :func:`storage_options_for` ``(url)``.
      chunks: Zarr chunk sizes per dim (default: the dask chunks, or whole arrays).
      mode: ``"w"`` (overwrite) or ``"w-"`` (fail if it exists).
      encoding: Per-variable encoding passed to ``to_zarr``.
      zarr_format: 3 (default) or 2.
    """
    _check_attrs(ds, url, storage_options)
    out = _chunked(_clean(ds), chunks)
    _check_uniform(out, url)
    store, opts = _zarr_target(url, storage_options)
    with _translated(url, "write", storage_options):
        out.to_zarr(
            store,
            mode=mode,
            storage_options=opts,
            zarr_format=zarr_format,
            consolidated=True,
            encoding=dict(encoding or {}) or None,
        )
    log.info("wrote %s (zarr v%d)", _safe_url(url), zarr_format)
    return url


def write_template(
    ds: xr.Dataset,
    url: str,
    *,
    chunks: Mapping[str, int],
    storage_options: Mapping[str, Any] | None = None,
    encoding: Mapping[str, Any] | None = None,
    zarr_format: int = ZARR_FORMAT,
    region_dims: Sequence[str] | None = None,
) -> str:
    """Write the store's metadata and everything that later parts will not write.

    Data variables along the region dims are never computed (a lazy template of the full job
    is fine) and their chunks stay unwritten (they read as the fill value, NaN for floats) until
    :func:`write_region` fills them.  Coordinates and the data variables that share no dim with
    the region dims (``crs``, static ``(y, x)`` layers when parts split ``time``) are computed
    and written now, because a region write cannot carry them.

    Args:
      ds: Template dataset, data variables of the final shape and dtype (dims as the store).
      url: Target store URL (overwritten).
      chunks: Zarr chunk sizes per dim; every later part must align with them.
      storage_options: fsspec options; default :func:`storage_options_for` ``(url)``.
      encoding: Per-variable encoding passed to ``to_zarr``.
      zarr_format: 3 (default) or 2.
      region_dims: Dims along which parts will be written; default the dims that ``chunks``
        splits (chunk smaller than the dim).
    """
    _check_attrs(ds, url, storage_options)
    out = _clean(ds)
    coords = {k: v.compute() for k, v in out.coords.items() if v.chunks is not None}
    out = out.assign_coords(coords)
    zchunks = {d: int(c) for d, c in chunks.items() if d in out.dims}
    if region_dims is None:
        region_dims = [d for d, c in zchunks.items() if c < out.sizes[d]]
    for name in out.data_vars:
        var = out[name]
        if not var.ndim:
            continue
        shape = {d: zchunks.get(d, var.sizes[d]) for d in var.dims}
        if set(var.dims) & set(region_dims):
            out[name] = var.chunk(shape)
        else:
            out[name] = var.compute()
            out[name].encoding["chunks"] = tuple(min(c, var.sizes[d]) for d, c in shape.items())
    _check_uniform(out, url)
    store, opts = _zarr_target(url, storage_options)
    with _translated(url, "write template", storage_options):
        out.to_zarr(
            store,
            mode="w",
            compute=False,
            storage_options=opts,
            zarr_format=zarr_format,
            consolidated=True,
            encoding=dict(encoding or {}) or None,
        )
    log.info("wrote template %s (zarr v%d)", _safe_url(url), zarr_format)
    return url


def _region_bounds(
    region: Mapping[str, slice], sizes: Mapping[str, int], url: str
) -> dict[str, tuple[int, int]]:
    out = {}
    for dim, sl in region.items():
        if dim not in sizes:
            raise errors.SchemaError(
                f"{_safe_url(url)}: region dim {dim!r} is not a dim of the store {sorted(sizes)}"
            )
        if not isinstance(sl, slice) or sl.step not in (None, 1):
            raise errors.SchemaError(f"{_safe_url(url)}: region[{dim!r}] must be a step-1 slice")
        start, stop, _ = sl.indices(sizes[dim])
        out[dim] = (start, stop)
    return out


def _misaligned(
    start: int, sizes: tuple[int, ...], zchunk: int, length: int
) -> list[int]:
    """Boundaries of a part (offset ``start``, dask chunk ``sizes``) not on Zarr chunk edges."""
    edges = start + np.concatenate([[0], np.cumsum(sizes)])
    return [int(e) for e in edges if e % zchunk and e != length]


def _check_part(
    part: xr.Dataset, target: xr.Dataset, bounds: dict[str, tuple[int, int]], url: str
) -> None:
    """Raise SchemaError unless ``part`` fits ``target`` at ``bounds`` on whole Zarr chunks."""
    where = _safe_url(url)
    missing = [v for v in part.data_vars if v not in target.variables]
    if missing:
        raise errors.SchemaError(f"{where}: variables {missing} are not in the store template")
    for dim, (start, stop) in bounds.items():
        if part.sizes.get(dim, stop - start) != stop - start:
            raise errors.SchemaError(
                f"{where}: part has {part.sizes[dim]} along {dim!r} but region "
                f"[{start}:{stop}] has {stop - start}"
            )
        if dim in part.indexes and dim in target.indexes:
            want = target.indexes[dim][start:stop]
            if not want.equals(part.indexes[dim]):
                raise errors.SchemaError(
                    f"{where}: coordinate {dim!r} of the part differs from the store's "
                    f"values in region [{start}:{stop}]"
                )
    for name in part.data_vars:
        var, tvar = part[name], target[name]
        if var.dims != tvar.dims:
            raise errors.SchemaError(
                f"{where}: variable {name!r} dims {var.dims} != store dims {tvar.dims}"
            )
        unit = "shard" if tvar.encoding.get("shards") else "chunk"
        zchunks = tvar.encoding.get("shards") or tvar.encoding.get("chunks") or tvar.shape
        dask_chunks = var.chunks or tuple((n,) for n in var.shape)
        for dim, zc, dc, length in zip(var.dims, zchunks, dask_chunks, tvar.shape, strict=True):
            if dim not in bounds:
                if var.sizes[dim] != length:
                    raise errors.SchemaError(
                        f"{where}: variable {name!r} has {var.sizes[dim]} along {dim!r}, the "
                        f"store {length}, and {dim!r} is not in the region"
                    )
                start = 0
            else:
                start = bounds[dim][0]
            bad = _misaligned(start, tuple(dc), int(zc), int(length))
            if bad:
                raise errors.SchemaError(
                    f"{where}: variable {name!r} dim {dim!r}: part chunk boundaries {bad} "
                    f"(region start {start}, dask chunks {list(dc)}) are not multiples of the "
                    f"store's Zarr {unit} {int(zc)}; rechunk the part to the store's {unit}s"
                )


def write_region(
    ds: xr.Dataset,
    url: str,
    region: Mapping[str, slice],
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Write one part into a store made by :func:`write_template` (idempotent).

    Before anything is written, every dask chunk boundary of the part (offset by the region
    start) is checked to lie on the store's Zarr chunk (or shard) boundaries, so parallel parts
    never share a chunk; index coordinates must match the store's in the region.  Variables
    that share no dim with ``region`` (e.g. ``crs``) and coordinates along region dims are
    dropped (the template wrote them); stale encodings are dropped.  Rewriting a region with
    the same values gives identical bytes.

    Args:
      ds: The part: data variables with the store's dims, sized like the region.
      url: Store URL.
      region: ``{dim: slice(start, stop)}`` in store indices.
      storage_options: fsspec options; default :func:`storage_options_for` ``(url)``.

    Raises:
      errors.SchemaError: The part does not fit the store (naming variable, dim, boundaries).
      errors.StoreNotFound, errors.AccessDenied, errors.StoreError: storage failures.
    """
    fmt, _ = store_format(url, storage_options)
    store, opts = _zarr_target(url, storage_options)
    with _translated(url, "open", storage_options):
        target = xr.open_zarr(store, storage_options=opts, chunks=None, zarr_format=fmt,
                              consolidated=False)
    bounds = _region_bounds(region, target.sizes, url)
    keep = [v for v in ds.data_vars if set(ds[v].dims) & set(bounds)]
    drop = [c for c in ds.coords if c not in ds.indexes]
    part = _clean(ds[keep]).drop_vars(drop)
    _check_part(part, target, bounds, url)
    part = part.drop_vars([c for c in part.coords if c in part.indexes])
    with _translated(url, "write region", storage_options):
        part.to_zarr(
            store,
            mode="r+",
            region={d: slice(a, b) for d, (a, b) in bounds.items()},
            storage_options=opts,
            zarr_format=fmt,
            consolidated=False,
            safe_chunks=True,
        )
    log.info("wrote region %s of %s", {d: list(b) for d, b in bounds.items()}, _safe_url(url))
    return url


def _jsonable(obj: Any) -> Any:
    """JSON fallback for attrs: numpy scalars/arrays as numbers/lists, anything else as str."""
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def finalise(
    url: str,
    attrs: Mapping[str, Any] | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Update root attrs and (re)write consolidated metadata; returns ``url``.

    Args:
      url: Store URL.
      attrs: Root attributes to set (JSON-serialisable; never credentials).
      storage_options: fsspec options; default :func:`storage_options_for` ``(url)``.
    """
    import zarr

    fmt, _ = store_format(url, storage_options)
    if attrs:
        _check_attrs(xr.Dataset(attrs=dict(attrs)), url, storage_options)
    store, opts = _zarr_target(url, storage_options)
    with _translated(url, "finalise", storage_options):
        grp = zarr.open_group(store, mode="r+", storage_options=opts, zarr_format=fmt,
                              use_consolidated=False)
        if attrs:
            grp.attrs.update(json.loads(json.dumps(dict(attrs), default=_jsonable)))
        zarr.consolidate_metadata(grp.store, zarr_format=fmt)
    log.info("finalised %s", _safe_url(url))
    return url
