"""Static STAC catalog of an archive root: stores and products as Collections, models as Items.

Layout (docs/data-contract.md, ``{root}/catalog/``)::

    {root}/catalog/catalog.json                    root Catalog: child/item links
    {root}/catalog/collections/{id}.json           one Collection per store or product
    {root}/catalog/models/{model_id}.json          one Item per model checkpoint (MLM extension)

Every Collection carries ONE collection-level Zarr asset ``"zarr"`` (media type
``application/vnd+zarr``, zarr extension fields ``zarr:zarr_format``/``zarr:consolidated``) and
the datacube extension's ``cube:dimensions``/``cube:variables`` describing the store.  Archive
stores get ids ``{kind}-{name}`` (``tb-smap``, ``static-n36``, ``insitu-scan``); products use
their product id (``ft-smap-n36-v1``).  Product Collections also keep the version history in
``tbcube:versions`` and the current version in ``version`` (version extension).

Switching a product to a new version is ONE write of its Collection JSON (one PUT on S3), so a
reader polling :func:`resolve` sees either the old or the new complete version, never a mix.
The root catalog is rewritten only when a new Collection or Item first appears.  Two writers
registering the same product at once are not supported (last write wins; jobs hold a lock).

Hrefs inside the archive are written relative to the JSON file (``../../products/…``) so an
archive root can be copied or moved; stores outside the root keep absolute URLs.  All reads and
writes go through :mod:`pipeline.io.stores` (any fsspec URL).

Validation (:func:`validate`) is offline: core STAC JSON-schema validation with the schemas that
ship inside pystac, a pystac round trip of every object, and structural checks of the datacube,
zarr and MLM extension fields (their JSON schemas live on the web and are not fetched).
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pystac
import pystac.validation
import xarray as xr
from pystac.extensions.datacube import DatacubeExtension
from pystac.extensions.mlm import MLMExtension
from pystac.extensions.version import VersionExtension

from pipeline import dims, errors, grid
from pipeline.io import stores

__all__ = [
    "DATACUBE_SCHEMA",
    "MLM_SCHEMA",
    "STORE_KINDS",
    "VERSION_SCHEMA",
    "ZARR_MEDIA_TYPE",
    "ZARR_SCHEMA",
    "catalog_url",
    "collection_url",
    "list_collections",
    "model_url",
    "register_model",
    "register_product",
    "register_store",
    "resolve",
    "validate",
]

DATACUBE_SCHEMA = DatacubeExtension.get_schema_uri()
ZARR_SCHEMA = "https://stac-extensions.github.io/zarr/v1.1.0/schema.json"
MLM_SCHEMA = MLMExtension.get_schema_uri()
VERSION_SCHEMA = VersionExtension.get_schema_uri()
ZARR_MEDIA_TYPE = "application/vnd+zarr"
STORE_KINDS = ("tb", "calibrated", "static", "truth", "insitu", "towers")
CATALOG_ID = "tbcube-archive"
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_PRODUCT_ID = re.compile(r"^[a-z0-9]+-[a-z0-9]+-[a-z0-9]+-v[0-9]+$")
_UP = "../../"


# --- URLs ---------------------------------------------------------------------------------
def catalog_url(root: str) -> str:
    """``{root}/catalog/catalog.json``."""
    return stores.join(root, "catalog", "catalog.json")


def collection_url(root: str, collection_id: str) -> str:
    """``{root}/catalog/collections/{collection_id}.json``."""
    return stores.join(root, "catalog", "collections", f"{collection_id}.json")


def model_url(root: str, model_id: str) -> str:
    """``{root}/catalog/models/{model_id}.json``."""
    return stores.join(root, "catalog", "models", f"{model_id}.json")


def _href_for(root: str, url: str) -> str:
    """``url`` relative to a JSON two levels below the root if it lies under ``root``."""
    base = str(root).rstrip("/") + "/"
    return _UP + str(url)[len(base):] if str(url).startswith(base) else str(url)


def _url_from(root: str, href: str) -> str:
    if href.startswith(_UP):
        return stores.join(root, href[len(_UP):])
    if "://" in href or href.startswith("/"):
        return href
    return stores.join(root, "catalog", "collections", href)


def _check_id(what: str, ident: str) -> None:
    if not _ID.match(ident):
        raise errors.ConfigError(f"{what} {ident!r} must be lower case letters, digits, '.', "
                                 "'_' or '-' (e.g. 'ft-smap-n36-v1')")


# --- describing a dataset -----------------------------------------------------------------
def _iso(t: np.datetime64) -> str:
    return np.datetime_as_string(np.datetime64(t, "s"), unit="s") + "Z"


def _datetime(t: np.datetime64) -> dt.datetime:
    return dt.datetime.fromisoformat(_iso(t).replace("Z", "+00:00"))


def _small(values: np.ndarray) -> list:
    return [v.item() if hasattr(v, "item") else str(v) for v in values]


def _dimensions(ds: xr.Dataset) -> dict[str, dict]:
    """``cube:dimensions`` of a dataset (x/y spatial, time temporal, others with values)."""
    epsg = None
    if dims.CRS in ds.variables:
        epsg = ds[dims.CRS].attrs.get("epsg_code")
    elif ds.attrs.get("grid") in grid.GRIDS:
        epsg = grid.get(ds.attrs["grid"]).epsg
    out: dict[str, dict] = {}
    for d, n in ds.sizes.items():
        if d in (dims.X, dims.Y) and d in ds.coords:
            v = np.asarray(ds[d].values, np.float64)
            entry: dict[str, Any] = {"type": "spatial", "axis": d,
                                     "extent": [float(v.min()), float(v.max())]}
            if v.size > 1:
                entry["step"] = float(abs(v[1] - v[0]))
            if epsg is not None:
                entry["reference_system"] = int(epsg)
            out[d] = entry
        elif d == dims.TIME and d in ds.coords and np.asarray(ds[d].values).dtype.kind == "M":
            v = np.asarray(ds[d].values)
            out[d] = {"type": "temporal", "extent": [_iso(v.min()), _iso(v.max())]}
        elif d in ds.coords:
            out[d] = {"type": "other", "values": _small(np.asarray(ds[d].values))}
        else:
            out[d] = {"type": "other", "extent": [0, int(n) - 1],
                      "description": "index without coordinate values"}
    return out


def _variables(ds: xr.Dataset) -> dict[str, dict]:
    """``cube:variables``: data variables (type data) and non-index coords (auxiliary)."""
    out = {}
    for name, var in ds.variables.items():
        if name in ds.dims:
            continue
        kind = "auxiliary" if (name in ds.coords or name == dims.CRS) else "data"
        entry: dict[str, Any] = {"dimensions": [str(d) for d in var.dims], "type": kind}
        if "units" in var.attrs:
            entry["unit"] = str(var.attrs["units"])
        if "long_name" in var.attrs:
            entry["description"] = str(var.attrs["long_name"])
        out[str(name)] = entry
    return out


def _extent(ds: xr.Dataset) -> pystac.Extent:
    bbox = [-180.0, -90.0, 180.0, 90.0]
    if dims.LAT in ds.variables and dims.LON in ds.variables:
        lat = np.asarray(ds[dims.LAT].values, np.float64)
        lon = np.asarray(ds[dims.LON].values, np.float64)
        if np.isfinite(lat).any() and np.isfinite(lon).any():
            bbox = [float(np.nanmin(lon)), float(np.nanmin(lat)),
                    float(np.nanmax(lon)), float(np.nanmax(lat))]
    interval: list[dt.datetime | None] = [None, None]
    if dims.TIME in ds.coords and ds.sizes.get(dims.TIME, 0):
        t = np.asarray(ds[dims.TIME].values)
        if t.dtype.kind == "M":
            interval = [_datetime(t.min()), _datetime(t.max())]
    return pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([interval]))


def _collection(root: str, cid: str, url: str, ds: xr.Dataset, *, title: str, description: str,
                zarr_format: int, consolidated: bool, keywords: list[str]) -> dict:
    col = pystac.Collection(
        id=cid, title=title, description=description, extent=_extent(ds), license="other",
        keywords=keywords, providers=[pystac.Provider("tbcube", roles=["processor"])],
    )
    col.add_asset("zarr", pystac.Asset(
        href=_href_for(root, url), media_type=ZARR_MEDIA_TYPE, roles=["data", "zarr"],
        title=f"{cid} (Zarr store; open with xarray.open_zarr)",
        extra_fields={"zarr:zarr_format": int(zarr_format), "zarr:consolidated": consolidated},
    ))
    d = col.to_dict(include_self_link=False, transform_hrefs=False)
    d["stac_extensions"] = sorted({DATACUBE_SCHEMA, ZARR_SCHEMA})
    d["cube:dimensions"] = _dimensions(ds)
    d["cube:variables"] = _variables(ds)
    d["links"] = [
        {"rel": "root", "href": "../catalog.json", "type": "application/json"},
        {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
    ]
    return d


# --- root catalog -------------------------------------------------------------------------
def _empty_root() -> dict:
    cat = pystac.Catalog(id=CATALOG_ID, title="tbcube archive",
                         description="Stores, products and models of one tbcube archive root.")
    d = cat.to_dict(include_self_link=False, transform_hrefs=False)
    d["links"] = [{"rel": "root", "href": "./catalog.json", "type": "application/json"}]
    return d


def _link_in_root(root: str, rel: str, href: str, title: str,
                  storage_options: Mapping[str, Any] | None) -> None:
    url = catalog_url(root)
    cat = (stores.read_json(url, storage_options) if stores.exists(url, storage_options)
           else _empty_root())
    if any(lk.get("href") == href for lk in cat.get("links", [])):
        return
    cat["links"].append({"rel": rel, "href": href, "type": "application/json", "title": title})
    cat["links"].sort(key=lambda lk: (lk["rel"] != "root", lk["href"]))
    stores.write_json(url, cat, storage_options)


# --- registering --------------------------------------------------------------------------
def register_store(root: str, kind: str, name: str, url: str, ds: xr.Dataset, *,
                   storage_options: Mapping[str, Any] | None = None) -> str:
    """Describe an archive store (``tb/smap.zarr`` …) as Collection ``{kind}-{name}``.

    Args:
      root: Archive root URL.
      kind: One of :data:`STORE_KINDS`.
      name: Sensor, grid, network or tower collection name.
      url: The store's URL.
      ds: The store's dataset (lazily opened is fine: only coords are read).
      storage_options: fsspec options for ``root``.

    Returns:
      The Collection's JSON URL.
    """
    if kind not in STORE_KINDS:
        raise errors.ConfigError(f"store kind {kind!r} is not one of {list(STORE_KINDS)}")
    cid = f"{kind}-{name}".lower()
    _check_id("collection id", cid)
    d = _collection(root, cid, url, ds, title=f"{kind}/{name}",
                    description=str(ds.attrs.get("title") or f"tbcube {kind} store {name}"),
                    zarr_format=stores.ZARR_FORMAT, consolidated=True, keywords=[kind, name])
    d["tbcube:kind"] = kind
    out = stores.write_json(collection_url(root, cid), d, storage_options)
    _link_in_root(root, "child", f"./collections/{cid}.json", cid, storage_options)
    return out


def register_product(root: str, product_id: str, version_url: str, ds: xr.Dataset, *,
                     storage_options: Mapping[str, Any] | None = None,
                     extra: Mapping[str, Any] | None = None) -> str:
    """Make ``version_url`` the current version of ``product_id`` (one object write).

    Args:
      root: Archive root URL.
      product_id: ``{quantity}-{source}-{grid}-v{N}``.
      version_url: The new immutable, complete store.
      ds: The new store's dataset (coords are read for the extent and datacube fields).
      storage_options: fsspec options for ``root``.
      extra: Extra facts recorded with the version (``version``, ``config_hash`` …);
        ``extra["version"]`` names the version (default: the store's file name stem).

    Returns:
      The Collection's JSON URL.
    """
    _check_id("product id", product_id)
    extra = dict(extra or {})
    version = str(extra.pop("version", None) or posixpath.basename(
        str(version_url).rstrip("/")).removesuffix(".zarr"))
    col_url = collection_url(root, product_id)
    history: list[dict] = []
    if stores.exists(col_url, storage_options):
        history = list(_read_json_retry(col_url, storage_options).get("tbcube:versions", []))
    history = [h for h in history if h.get("version") != version]
    history.append({"version": version, "href": _href_for(root, version_url),
                    "registered": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    **{k: v for k, v in extra.items() if v is not None}})
    d = _collection(root, product_id, version_url, ds, title=product_id,
                    description=str(ds.attrs.get("title") or f"tbcube product {product_id}"),
                    zarr_format=stores.ZARR_FORMAT, consolidated=True,
                    keywords=product_id.split("-")[:3])
    d["stac_extensions"] = sorted(set(d["stac_extensions"]) | {VERSION_SCHEMA})
    d["version"] = version
    d["tbcube:kind"] = "product"
    d["tbcube:versions"] = history
    stores.write_json(col_url, d, storage_options)  # the switch: one object write
    _link_in_root(root, "child", f"./collections/{product_id}.json", product_id, storage_options)
    return col_url


def register_model(root: str, model_id: str, checkpoint_url: str, sha256: str, *,
                   config: Mapping[str, Any],
                   storage_options: Mapping[str, Any] | None = None) -> str:
    """Describe a model checkpoint as a STAC Item with MLM extension fields.

    Args:
      root: Archive root URL.
      model_id: Item id (e.g. ``ft-autoencoder-n36-v1``).
      checkpoint_url: The checkpoint bytes (:mod:`models.checkpoint`).
      sha256: Hex sha256 of the checkpoint (recorded as ``file:checksum`` multihash).
      config: Model facts: ``name``, ``architecture``, ``tasks``, ``framework``,
        ``framework_version``, ``total_parameters``, ``input`` / ``output`` (MLM objects or
        short dicts ``{"name", "shape", "dim_order", "data_type"}``), ``hyperparameters``;
        anything else goes to ``tbcube:config``.

    Returns:
      The Item's JSON URL.
    """
    _check_id("model id", model_id)
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise errors.ChecksumError(f"model {model_id}: sha256 {sha256!r} is not 64 hex digits")
    cfg = dict(config)
    tasks = list(cfg.pop("tasks", ["classification"]))
    item = pystac.Item(id=model_id, geometry=None, bbox=None,
                       datetime=dt.datetime.now(dt.UTC).replace(microsecond=0), properties={})
    props = item.properties
    props["mlm:name"] = str(cfg.pop("name", model_id))
    props["mlm:architecture"] = str(cfg.pop("architecture", "unspecified"))
    props["mlm:tasks"] = tasks
    props["mlm:framework"] = str(cfg.pop("framework", "JAX"))
    for key in ("framework_version", "total_parameters", "hyperparameters", "accelerator"):
        if key in cfg:
            props[f"mlm:{key}"] = cfg.pop(key)
    props["mlm:input"] = [_mlm_io(i, None) for i in cfg.pop("input", [{"name": "features"}])]
    props["mlm:output"] = [_mlm_io(o, tasks) for o in cfg.pop("output", [{"name": "output"}])]
    if cfg:
        props["tbcube:config"] = cfg
    item.add_asset("model", pystac.Asset(
        href=_href_for(root, checkpoint_url), media_type="application/octet-stream",
        roles=["mlm:model", "mlm:weights", "data"], title=f"{model_id} checkpoint",
        extra_fields={"file:checksum": "1220" + sha256, "mlm:artifact_type": "tbcube.bundle"},
    ))
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    d["stac_extensions"] = sorted({MLM_SCHEMA, "https://stac-extensions.github.io/file/v2.1.0/"
                                                "schema.json"})
    d["links"] = [{"rel": "root", "href": "../catalog.json", "type": "application/json"},
                  {"rel": "parent", "href": "../catalog.json", "type": "application/json"}]
    out = stores.write_json(model_url(root, model_id), d, storage_options)
    _link_in_root(root, "item", f"./models/{model_id}.json", model_id, storage_options)
    return out


def _mlm_io(spec: Mapping[str, Any], tasks: list[str] | None) -> dict:
    spec = dict(spec)
    if "input" in spec or "result" in spec:  # already an MLM object
        return spec
    array = {"shape": list(spec.pop("shape", [-1])),
             "dim_order": list(spec.pop("dim_order", ["batch"])),
             "data_type": str(spec.pop("data_type", "float32"))}
    out = {"name": str(spec.pop("name")), **spec}
    if tasks is None:
        out.setdefault("bands", [])
        out["input"] = array
    else:
        out.setdefault("tasks", tasks)
        out["result"] = array
    return out


# --- reading ------------------------------------------------------------------------------
def _read_json_retry(url: str, storage_options: Mapping[str, Any] | None,
                     attempts: int = 5) -> dict:
    """Read a small JSON object, retrying briefly if a concurrent write left it partial."""
    for i in range(attempts):
        try:
            return stores.read_json(url, storage_options)
        except errors.InputDataError:
            if i == attempts - 1:
                raise
            time.sleep(0.02 * (i + 1))
    raise AssertionError("unreachable")


def list_collections(root: str, *,
                     storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Ids of the Collections linked from the root catalog, sorted."""
    url = catalog_url(root)
    if not stores.exists(url, storage_options):
        return []
    cat = _read_json_retry(url, storage_options)
    return sorted(posixpath.basename(lk["href"]).removesuffix(".json")
                  for lk in cat.get("links", []) if lk.get("rel") == "child")


def resolve(root: str, product_id: str, *,
            storage_options: Mapping[str, Any] | None = None) -> tuple[str, dict]:
    """``(url, open_kwargs)`` of the current store of a product or archive store.

    ``xarray.open_zarr(url, **open_kwargs)`` (plus the caller's ``storage_options``) opens it.

    Raises:
      errors.StoreNotFound: no Collection ``product_id`` under ``root``.
      errors.SchemaError: the Collection has no usable Zarr asset.
    """
    url = collection_url(root, product_id)
    if not stores.exists(url, storage_options):
        known = list_collections(root, storage_options=storage_options)
        raise errors.StoreNotFound(f"{url}: no collection {product_id!r} in the catalog "
                                   f"(it has {known})")
    col = _read_json_retry(url, storage_options)
    asset = col.get("assets", {}).get("zarr")
    if not asset or not asset.get("href"):
        raise errors.SchemaError(f"{url}: collection {product_id!r} has no 'zarr' asset")
    return _url_from(root, asset["href"]), {
        "zarr_format": int(asset.get("zarr:zarr_format", stores.ZARR_FORMAT)),
        "consolidated": bool(asset.get("zarr:consolidated", True)),
    }


# --- validation ---------------------------------------------------------------------------
_TYPES = {"Catalog": pystac.Catalog, "Collection": pystac.Collection, "Feature": pystac.Item}


def _core_problems(d: dict, name: str) -> list[str]:
    """Core STAC JSON-schema validation (schemas shipped in pystac) and a pystac round trip."""
    out = []
    kind = _TYPES.get(str(d.get("type")))
    if kind is None:
        return [f"{name}: 'type' {d.get('type')!r} is not Catalog, Collection or Feature"]
    try:
        pystac.validation.validate_dict(d, stac_object_type=kind.STAC_OBJECT_TYPE,
                                        extensions=[])
    except pystac.errors.STACValidationError as e:
        import jsonschema

        best = jsonschema.exceptions.best_match(getattr(e, "source", None) or [])
        if best is not None:
            where = "/".join(str(p) for p in best.absolute_path) or "top level"
            detail = f"{where}: {best.message}"
        else:
            detail = str(e).splitlines()[0]
        out.append(f"{name}: STAC {d.get('type')} schema: {detail[:300]}")
    except Exception as e:  # noqa: BLE001 - e.g. a schema fetch failing offline
        out.append(f"{name}: STAC validation could not run ({type(e).__name__}: {e})")
    try:
        kind.from_dict(d, migrate=False)
    except Exception as e:  # noqa: BLE001 - any parse failure is a catalog problem
        out.append(f"{name}: pystac cannot read it ({type(e).__name__}: {e})")
    return out


def _collection_problems(d: dict, name: str) -> list[str]:
    out = []
    exts = set(d.get("stac_extensions", []))
    for uri in (DATACUBE_SCHEMA, ZARR_SCHEMA):
        if uri not in exts:
            out.append(f"{name}: stac_extensions lacks {uri}")
    asset = d.get("assets", {}).get("zarr")
    if not isinstance(asset, dict) or not asset.get("href"):
        out.append(f"{name}: no collection-level 'zarr' asset")
    else:
        if asset.get("type") != ZARR_MEDIA_TYPE:
            out.append(f"{name}: zarr asset type {asset.get('type')!r} != {ZARR_MEDIA_TYPE!r}")
        fmt = asset.get("zarr:zarr_format")
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt not in (2, 3):
            out.append(f"{name}: zarr asset 'zarr:zarr_format' {fmt!r} is not 2 or 3")
        if not isinstance(asset.get("zarr:consolidated"), bool):
            out.append(f"{name}: zarr asset 'zarr:consolidated' is not a boolean")
    cube_dims = d.get("cube:dimensions")
    cube_vars = d.get("cube:variables")
    if not isinstance(cube_dims, dict) or not cube_dims:
        out.append(f"{name}: 'cube:dimensions' missing or empty")
        cube_dims = {}
    for dname, dim in cube_dims.items():
        if not isinstance(dim, dict) or "type" not in dim:
            out.append(f"{name}: cube dimension '{dname}' has no 'type'")
        elif dim["type"] == "spatial" and dim.get("axis") not in ("x", "y", "z"):
            out.append(f"{name}: spatial cube dimension '{dname}' has axis {dim.get('axis')!r}")
        elif dim["type"] != "spatial" and "values" not in dim and "extent" not in dim:
            out.append(f"{name}: cube dimension '{dname}' has neither 'extent' nor 'values'")
    if not isinstance(cube_vars, dict):
        out.append(f"{name}: 'cube:variables' missing")
        cube_vars = {}
    for vname, var in cube_vars.items():
        unknown = [x for x in var.get("dimensions", []) if x not in cube_dims]
        if unknown:
            out.append(f"{name}: cube variable '{vname}' uses undeclared dimensions {unknown}")
    kind = d.get("tbcube:kind")
    if kind not in (*STORE_KINDS, "product"):
        out.append(f"{name}: 'tbcube:kind' {kind!r} is not 'product' or one of "
                   f"{list(STORE_KINDS)}")
    elif kind == "product" and not _PRODUCT_ID.match(str(d.get("id"))):
        out.append(f"{name}: product id {d.get('id')!r} is not "
                   "'{quantity}-{source}-{grid}-v{N}'")
    elif kind != "product" and not str(d.get("id", "")).startswith(f"{kind}-"):
        out.append(f"{name}: store collection id {d.get('id')!r} does not start with '{kind}-'")
    if not out:
        try:  # pystac reads the datacube fields back
            cube = DatacubeExtension.ext(pystac.Collection.from_dict(d, migrate=False))
            for dim in (cube.dimensions or {}).values():
                _ = dim.dim_type
            for var in (cube.variables or {}).values():
                _ = var.dimensions
        except Exception as e:  # noqa: BLE001
            out.append(f"{name}: pystac datacube extension cannot read it ({e})")
    if kind == "product":
        versions = d.get("tbcube:versions")
        if not isinstance(versions, list) or not versions:
            out.append(f"{name}: product has no 'tbcube:versions' history")
        elif asset and asset.get("href") not in [v.get("href") for v in versions]:
            out.append(f"{name}: current zarr asset is not in the version history")
        elif d.get("version") != versions[-1].get("version"):
            out.append(f"{name}: 'version' {d.get('version')!r} is not the latest registered")
    return out


def _item_problems(d: dict, name: str) -> list[str]:
    out = []
    if MLM_SCHEMA not in d.get("stac_extensions", []):
        out.append(f"{name}: stac_extensions lacks {MLM_SCHEMA}")
    props = d.get("properties", {})
    for key in ("mlm:name", "mlm:architecture", "mlm:tasks", "mlm:input", "mlm:output"):
        if key not in props:
            out.append(f"{name}: property '{key}' missing")
    for i, inp in enumerate(props.get("mlm:input", [])):
        if not {"name", "bands", "input"} <= set(inp):
            out.append(f"{name}: mlm:input[{i}] needs name, bands and input")
    for i, res in enumerate(props.get("mlm:output", [])):
        if not {"name", "tasks", "result"} <= set(res):
            out.append(f"{name}: mlm:output[{i}] needs name, tasks and result")
    models = [a for a in d.get("assets", {}).values() if "mlm:model" in a.get("roles", [])]
    if len(models) != 1:
        out.append(f"{name}: expected one asset with role 'mlm:model', found {len(models)}")
    elif not re.fullmatch(r"1220[0-9a-f]{64}", str(models[0].get("file:checksum", ""))):
        out.append(f"{name}: model asset 'file:checksum' is not a sha2-256 multihash")
    if not (MLM_SCHEMA in d.get("stac_extensions", []) and not out):
        return out
    try:  # pystac reads the MLM fields back
        MLMExtension.ext(pystac.Item.from_dict(d, migrate=False)).input  # noqa: B018
    except Exception as e:  # noqa: BLE001
        out.append(f"{name}: pystac MLM extension cannot read it ({e})")
    return out


def _find_catalog(url: str, storage_options) -> str | None:
    if url.endswith(".json"):
        return url if stores.exists(url, storage_options) else None
    for cand in (stores.join(url, "catalog", "catalog.json"), stores.join(url, "catalog.json")):
        if stores.exists(cand, storage_options):
            return cand
    return None


def validate(catalog_url_or_dir: str, *, storage_options: Mapping[str, Any] | None = None,
             check_assets: bool = True) -> list[str]:
    """Every problem of an archive's STAC catalog (empty list: valid).

    Args:
      catalog_url_or_dir: ``catalog.json``'s URL, the ``catalog/`` directory or the archive root.
      storage_options: fsspec options.
      check_assets: Also check that every linked Zarr store / checkpoint exists.

    Returns:
      One line per problem, naming the JSON file (relative to the catalog directory).
    """
    cat_url = _find_catalog(str(catalog_url_or_dir), storage_options)
    if cat_url is None:
        return [f"{catalog_url_or_dir}: no catalog.json found"]
    base = posixpath.dirname(cat_url) if "://" not in cat_url else cat_url.rsplit("/", 1)[0]
    root = base.rsplit("/", 1)[0]
    try:
        cat = stores.read_json(cat_url, storage_options)
    except errors.TbcubeError as e:
        return [str(e)]
    out = _core_problems(cat, "catalog.json")
    if cat.get("type") != "Catalog":
        return out
    ids: dict[str, str] = {}
    for link in cat.get("links", []):
        rel, href = link.get("rel"), str(link.get("href", ""))
        if rel not in ("child", "item"):
            continue
        name = href.removeprefix("./")
        url = stores.join(base, name)
        try:
            d = stores.read_json(url, storage_options)
        except errors.TbcubeError as e:
            out.append(f"{name}: linked from catalog.json but unreadable ({e})")
            continue
        out += _core_problems(d, name)
        want = "Collection" if rel == "child" else "Feature"
        if d.get("type") != want:
            out.append(f"{name}: linked as {rel!r} but is a {d.get('type')}")
            continue
        stem = posixpath.basename(name).removesuffix(".json")
        if d.get("id") != stem:
            out.append(f"{name}: id {d.get('id')!r} does not match the file name")
        if d.get("id") in ids:
            out.append(f"{name}: duplicate id {d.get('id')!r} (also {ids[d['id']]})")
        ids[str(d.get("id"))] = name
        rels = {lk.get("rel") for lk in d.get("links", [])}
        if not {"root", "parent"} <= rels:
            out.append(f"{name}: needs 'root' and 'parent' links")
        out += _collection_problems(d, name) if rel == "child" else _item_problems(d, name)
        if check_assets:
            for key, asset in d.get("assets", {}).items():
                target = _url_from(root, str(asset.get("href", "")))
                if not stores.exists(target, storage_options):
                    out.append(f"{name}: asset '{key}' points to missing {target}")
    return out
