"""Readers for the QA4SM test data: pynetcf cell time series and the ISMN stations beside them.

QA4SM (the soil-moisture validation service of TU Wien / AWST) keeps satellite and model soil
moisture as **pynetcf cell files**: one netCDF-4 file per 5° × 5° cell (``0165.nc``…) holding the
time series of every grid point of the cell, plus a ``grid.nc`` with the whole grid.  Three CF
discrete-sampling layouts occur and are all read here (:func:`read_location` detects which):

* ``OrthoMultiTs`` — variables (locations, time) with one shared ``time`` axis (ESA CCI, C3S,
  SMOS-IC, ERA5-Land, GLDAS);
* ``IndexedRaggedTs`` — variables (obs,) with ``locationIndex`` naming the location of each
  observation (SMAP L3 AM+PM: each observation at its own UTC time, ``Overpass`` 1 = AM
  descending 06:00, 2 = PM ascending 18:00 local solar time);
* ``ContiguousRaggedTs`` — variables (obs,) stored location after location, ``row_size``
  observations each (ASCAT H SAF).

Values are decoded CF-style (``_FillValue``/``missing_value`` → NaN, then ``scale_factor``,
``add_offset``); ``-9999`` (pynetcf's default fill, used without an attribute for some flags) is
also missing.  :data:`PRODUCTS` lists the products of the Hawaii test data with their soil-moisture
variable, units and the quality filter applied by default (a documented choice, see
docs/validation.md).  :func:`read_series` returns the series of the grid point nearest to a
position as an xarray DataArray (dim ``time``, coords ``lat``, ``lon``, ``location_id``,
``distance_deg``).  :func:`read_ismn` reads the ISMN stations of the test data with
:mod:`pipeline.io.ismn` (one contract dataset per network).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from pipeline import dims, errors
from pipeline.io import ismn

__all__ = [
    "PRODUCTS",
    "Product",
    "locations",
    "read_ismn",
    "read_location",
    "read_series",
]

SUBDIR = "input_data"
ISMN_DIR = "ISMN/ISMN_TESTDATA_HAWAII"
PYNETCF_FILL = -9999.0
_CELL = re.compile(r"^\d{4}\.nc$")
_UNITS = re.compile(r"^\s*(days|hours|minutes|seconds)\s+since\s+(\d{4}-\d{2}-\d{2})"
                    r"(?:[ T](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?))?")
_NS = {"days": 86_400e9, "hours": 3_600e9, "minutes": 60e9, "seconds": 1e9}

Filter = Callable[[Mapping[str, np.ndarray]], np.ndarray]


def _bit0_clear(v: Mapping[str, np.ndarray]) -> np.ndarray:
    q = v["retrieval_qual_flag"]
    return np.isfinite(q) & ((np.nan_to_num(q).astype(np.int64) & 1) == 0)


def _zero(name: str) -> Filter:
    def f(v: Mapping[str, np.ndarray]) -> np.ndarray:
        return v[name] == 0
    f.__doc__ = f"{name} == 0"
    return f


def _ascat_ok(v: Mapping[str, np.ndarray]) -> np.ndarray:
    return (v["proc_flag"] == 0) & (v["ssf"] <= 1)


@dataclasses.dataclass(frozen=True)
class Product:
    """A product of the QA4SM test data.

    Attributes:
      name: Short name (key of :data:`PRODUCTS`).
      path: Directory of the cell files, relative to ``{qa4sm_root}/input_data``.
      variable: Soil-moisture variable in the files.
      units: Units after ``factor`` (``"m3 m-3"``, or ``"percent saturation"`` for ASCAT).
      factor: Multiplier turning the decoded value into ``units`` (GLDAS 0–10 cm water in
        kg m-2 / 100 = m3 m-3).
      quality: Default quality filter (True = keep) and ``quality_vars`` it needs.
      kind: ``"satellite"`` or ``"model"``.
    """

    name: str
    path: str
    variable: str
    units: str
    long_name: str
    factor: float = 1.0
    quality: Filter | None = None
    quality_vars: tuple[str, ...] = ()
    quality_doc: str = "none"
    kind: str = "satellite"


PRODUCTS: dict[str, Product] = {p.name: p for p in (
    Product("smap_l3", "SMAP_L3/SMAP_V9_AM_PM/netcdf", "soil_moisture", "m3 m-3",
            "SMAP L3 SPL3SMP v9 DCA soil moisture (AM + PM)", quality=_bit0_clear,
            quality_vars=("retrieval_qual_flag",),
            quality_doc="retrieval_qual_flag bit 0 clear (retrieval recommended)"),
    Product("esa_cci", "ESA_CCI_SM_combined/ESA_CCI_SM_C_V09_2", "sm", "m3 m-3",
            "ESA CCI SM COMBINED v09.2", quality=_zero("flag"), quality_vars=("flag",),
            quality_doc="flag == 0"),
    Product("c3s", "C3S_combined/C3S_V202505/TCDR/063_images_to_ts/combined-daily", "sm",
            "m3 m-3", "C3S SM COMBINED v202505", quality=_zero("flag"), quality_vars=("flag",),
            quality_doc="flag == 0"),
    Product("smos_ic", "SMOS_IC/SMOS_105_ASC", "Soil_Moisture", "m3 m-3",
            "SMOS-IC v105 ascending", quality=_zero("Quality_Flag"),
            quality_vars=("Quality_Flag",), quality_doc="Quality_Flag == 0"),
    Product("ascat", "ASCAT/ASCAT_H119/data", "sm", "percent saturation",
            "H SAF ASCAT SSM CDR H119", quality=_ascat_ok, quality_vars=("proc_flag", "ssf"),
            quality_doc="proc_flag == 0 and ssf <= 1 (unknown or unfrozen)"),
    Product("era5_land", "ERA5_LAND/ERA5_LAND_V20190904", "swvl1", "m3 m-3",
            "ERA5-Land volumetric soil water layer 1 (0-7 cm)", kind="model"),
    Product("gldas", "GLDAS/GLDAS_NOAH025_3H_2_1", "SoilMoi0_10cm_inst", "m3 m-3",
            "GLDAS Noah 2.1 soil moisture 0-10 cm", factor=0.01, kind="model"),
)}


def _attr(obj, name, default=None):
    v = obj.attrs.get(name, default)
    if isinstance(v, bytes | np.bytes_):
        return v.decode()
    if isinstance(v, np.ndarray) and v.size == 1:
        return v.reshape(()).item()
    return v


def _decode(ds: h5py.Dataset, sel=slice(None)) -> np.ndarray:
    """CF-decode a variable to float64 (fill/missing → NaN, scale/offset, -9999 → NaN)."""
    raw = ds[sel]
    out = raw.astype(np.float64)
    for key in ("_FillValue", "missing_value"):
        fv = _attr(ds, key)
        if fv is not None:
            out[raw == fv] = np.nan
    out[out == PYNETCF_FILL] = np.nan
    scale, offset = _attr(ds, "scale_factor"), _attr(ds, "add_offset")
    if scale is not None:
        out *= float(scale)
    if offset is not None:
        out += float(offset)
    return out


def _times(ds: h5py.Dataset, values: np.ndarray, path: Path) -> np.ndarray:
    units = _attr(ds, "units", "")
    m = _UNITS.match(units or "")
    if not m:
        raise errors.InputDataError(f"{path}: variable 'time' has units {units!r}, "
                                    "expected '<unit> since <date>'")
    base = np.datetime64(f"{m.group(2)}T{m.group(3) or '00:00:00'}", "ns")
    ns = np.round(values * _NS[m.group(1)])
    return np.where(np.isfinite(ns), base + ns.astype("int64").astype("timedelta64[ns]"),
                    np.datetime64("NaT", "ns"))


def _cells(product_dir: Path) -> list[Path]:
    if not product_dir.is_dir():
        raise errors.InputDataError(f"{product_dir}: product directory not found")
    files = sorted(p for p in product_dir.iterdir() if _CELL.match(p.name))
    if not files:
        raise errors.InputDataError(f"{product_dir}: no pynetcf cell files (NNNN.nc)")
    return files


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise errors.InputDataError(f"{path}: not a readable netCDF-4 file ({e})") from None


def locations(product_dir: str | Path) -> xr.Dataset:
    """Every grid point in the cell files of a product directory (cached per directory).

    Returns:
      Dataset over ``location`` with ``location_id`` (grid point index), ``lat``, ``lon``
      [degrees], ``cell_file`` (path) and ``index`` (position in its file).
    """
    return _locations(str(Path(product_dir).resolve())).copy()


@functools.lru_cache(maxsize=32)
def _locations(product_dir: str) -> xr.Dataset:
    rows = {"location_id": [], "lat": [], "lon": [], "cell_file": [], "index": []}
    for p in _cells(Path(product_dir)):
        with _open(p) as h:
            for key in ("lat", "lon", "location_id"):
                if key not in h:
                    raise errors.InputDataError(f"{p}: variable '{key}' missing (not pynetcf)")
            n = h["lat"].shape[0]
            rows["location_id"] += list(h["location_id"][:].astype(np.int64))
            rows["lat"] += list(h["lat"][:].astype(np.float64))
            rows["lon"] += list(h["lon"][:].astype(np.float64))
            rows["cell_file"] += [str(p)] * n
            rows["index"] += list(range(n))
    return xr.Dataset({k: ("location", np.asarray(v)) for k, v in rows.items()})


def read_location(path: str | Path, index: int, variables: Sequence[str]) -> xr.Dataset:
    """The time series of one location of a pynetcf cell file (any of the three layouts).

    Args:
      path: Cell file.
      index: Position of the location in the file's ``locations`` dimension.
      variables: Variables to read (decoded to float64).

    Returns:
      Dataset over ``time`` (UTC, sorted), one float64 variable per name; coords ``lat``,
      ``lon``, ``location_id``.
    """
    path = Path(path)
    with _open(path) as h:
        missing = [v for v in variables if v not in h]
        if missing:
            raise errors.InputDataError(f"{path}: variables {missing} missing; "
                                        f"has {sorted(k for k in h if h[k].ndim)}")
        if "locationIndex" in h:                                   # IndexedRaggedTs
            sel = np.flatnonzero(h["locationIndex"][:] == index)
            t = h["time"][:][sel]
            data = {v: _decode(h[v])[sel] for v in variables}
        elif "row_size" in h:                                      # ContiguousRaggedTs
            rs = h["row_size"][:].astype(np.int64)
            start = int(rs[:index].sum())
            sel = slice(start, start + int(rs[index]))
            t = h["time"][sel]
            data = {v: _decode(h[v], sel) for v in variables}
        else:                                                      # OrthoMultiTs
            t = h["time"][:]
            data = {}
            for v in variables:
                if h[v].ndim != 2:
                    raise errors.InputDataError(f"{path}: variable '{v}' is not (location, time)")
                data[v] = _decode(h[v], (index, slice(None)))
        time = _times(h["time"], np.asarray(t, np.float64), path)
        lat, lon = float(h["lat"][index]), float(h["lon"][index])
        gpi = int(h["location_id"][index])
    order = np.argsort(time, kind="stable")
    ok = ~np.isnat(time[order])
    ds = xr.Dataset({v: (dims.TIME, a[order][ok]) for v, a in data.items()},
                    coords={dims.TIME: time[order][ok]})
    return ds.assign_coords(lat=lat, lon=lon, location_id=gpi)


def _distance_deg(lat0, lon0, lat, lon) -> np.ndarray:
    """Great-circle distance [degrees of arc]."""
    p0, p = np.radians(lat0), np.radians(lat)
    dl = np.radians(lon - lon0)
    c = np.sin(p0) * np.sin(p) + np.cos(p0) * np.cos(p) * np.cos(dl)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def read_series(qa4sm_root: str | Path, product: str, lat: float, lon: float, *,
                max_distance_deg: float = 0.5, quality: bool = True) -> xr.DataArray:
    """Soil moisture of ``product`` at the grid point nearest to (lat, lon).

    Args:
      qa4sm_root: The QA4SM test-data directory (holding ``input_data/``).
      product: Key of :data:`PRODUCTS`.
      lat, lon: Position [degrees].
      max_distance_deg: Refuse a nearest grid point farther than this (great circle).
      quality: Apply the product's default quality filter (rejected values become NaN).

    Returns:
      float64 DataArray over ``time`` (UTC; the observation time for SMAP L3, the nominal
      day otherwise) in the product's units, with coords ``lat``, ``lon``, ``location_id``,
      ``distance_deg`` and, for SMAP L3, ``overpass`` (time) ``"am"``/``"pm"``; attrs
      ``units``, ``long_name``, ``product``, ``quality_filter``.
    """
    if product not in PRODUCTS:
        raise errors.InputDataError(f"unknown QA4SM product {product!r}; known {sorted(PRODUCTS)}")
    p = PRODUCTS[product]
    pdir = Path(qa4sm_root) / SUBDIR / p.path
    locs = locations(pdir)
    d = _distance_deg(lat, lon, locs["lat"].values, locs["lon"].values)
    k = int(np.argmin(d))
    if d[k] > max_distance_deg:
        raise errors.InputDataError(f"{pdir}: nearest grid point to ({lat}, {lon}) is "
                                    f"{d[k]:.2f}° away (limit {max_distance_deg}°)")
    extra = ("Overpass",) if product == "smap_l3" else ()
    names = (p.variable,) + (p.quality_vars if quality else ()) + extra
    ds = read_location(locs["cell_file"].values[k], int(locs["index"].values[k]), names)
    sm = ds[p.variable] * p.factor
    if quality and p.quality is not None:
        sm = sm.where(p.quality({v: ds[v].values for v in p.quality_vars}))
    if product == "smap_l3":
        ov = ds["Overpass"].values
        sm = sm.assign_coords(overpass=(dims.TIME, np.where(ov == 1, "am", np.where(
            ov == 2, "pm", ""))))
    sm = sm.assign_coords(distance_deg=float(d[k]))
    sm.attrs = {"units": p.units, "long_name": p.long_name, "product": p.name,
                "quality_filter": p.quality_doc if quality else "none"}
    return sm.rename(dims.SOIL_MOISTURE)


def read_ismn(qa4sm_root: str | Path, *, max_depth_m: float | None = None
              ) -> dict[str, xr.Dataset]:
    """The ISMN stations of the QA4SM test data, one contract dataset per network.

    Returns:
      ``{"scan": Dataset, "cosmos": Dataset}`` (keys: network names, lower case) as
      :func:`pipeline.io.ismn.to_insitu_dataset` builds them.
    """
    base = Path(qa4sm_root) / SUBDIR / ISMN_DIR
    if not base.is_dir():
        raise errors.InputDataError(f"{base}: ISMN folder not found")
    out = {}
    for net_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        files = [ismn.read_station(s) for s in sorted(net_dir.iterdir()) if s.is_dir()
                 and any(s.glob("*.stm"))]
        if files:
            out[net_dir.name.lower()] = ismn.to_insitu_dataset(
                files, network=net_dir.name.lower(), max_depth_m=max_depth_m)
    return out
