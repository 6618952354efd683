"""Dataset specifications of docs/data-contract.md and a checker that reports every problem.

A :class:`DatasetSpec` lists what a store must hold: variables with their dims, dtype, units,
allowed values and fill-value rule, coordinates, attrs, the CF ``crs`` variable and, for gridded
stores, ``grid``/``grid_window`` attrs that agree with the ``x``/``y`` values of
:mod:`pipeline.grid`.  :func:`check` collects every violation and raises ONE
:class:`~pipeline.errors.SchemaError` whose one-line message lists them all::

    schema.check(ds, schema.tb_spec("gmi"), context="s3://bucket/archive/tb/gmi.zarr")
    # SchemaError: s3://…/gmi.zarr: 2 problems: variable 'tb' units 'degC' != 'K'; …

Specs: :func:`tb_spec` (and :func:`calibrated_spec`) per sensor, ``STATIC``, ``TRUTH``,
``INSITU``, ``TOWERS``, ``FT_PRODUCT``, ``SM_SMAP_PRODUCT``, ``SM_HARMONISED``, ``SM_FUSED``,
``CARBON_PRODUCT``, ``VALIDATION``.  :func:`tb_template` builds an all-NaN, conformant TB dataset.

Ranges the contract gives (fractions 0-1, class codes, flag bits, ``ft_state`` values, local
time 0-24 h) are checked as such; a few other bounds are physical sanity limits, not contract
figures: TB 0-400 K, temperatures 150-350 K, soil moisture 0-1 m3 m-3, VOD 0-50, bulk density
0-3 g cm-3, elevation -500-9000 m, SWE 0-1e5 mm, VPD 0-1e4 Pa, daily SW_IN 0-1500 W m-2.

Value checks (ranges, allowed values, midnight times) read data: by default (``values="auto"``)
only numpy-backed variables and index coordinates are checked, so checking a lazily opened
archive never loads it; ``values="all"`` also computes dask-backed variables.

This module is a science-layer module: it imports numpy/xarray and pipeline.{dims,errors,grid,
sensors} only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from pipeline import dims, errors, grid, qc, sensors

__all__ = [
    "CARBON_PRODUCT",
    "FT_PRODUCT",
    "INSITU",
    "SM_FUSED",
    "SM_HARMONISED",
    "SM_SMAP_PRODUCT",
    "STATIC",
    "TOWERS",
    "TRUTH",
    "VALIDATION",
    "DatasetSpec",
    "VarSpec",
    "calibrated_spec",
    "check",
    "problems",
    "tb_spec",
    "tb_template",
]

FLUX_UNITS = "g C m-2 d-1"
SM_UNITS = "m3 m-3"
WGS84 = 4326
_DTYPE_GROUPS = {"float": "f", "int": "iu", "str": "OUST", "datetime": "M", "number": "fiu"}


@dataclasses.dataclass(frozen=True)
class VarSpec:
    """What one variable or coordinate must look like.

    Attributes:
      dims: Dimension names in order; a trailing ``?`` marks a dim that may be absent
        (e.g. ``("time", "pass?", "y", "x")``).
      dtype: A numpy dtype name (``"float32"``, ``"uint16"``, ``"int8"``) that must match
        exactly (for integers with a declared ``_FillValue`` the on-disk dtype, which xarray
        keeps in ``encoding["dtype"]`` after masking), or a group: ``float``, ``int``, ``str``,
        ``datetime``, ``number``.
      units: Required value of the ``units`` attr (None: not checked).
      valid_range: Inclusive ``(min, max)`` every non-missing value must lie in.
      allowed: The only values allowed (non-missing), e.g. ``(-1, 0, 1)``.
      fill: ``"forbidden"`` (bit flags: no ``_FillValue``), ``"required"`` (integers whose
        missing value is declared, with ``fill_value`` if given) or ``"any"``.
      fill_value: Required ``_FillValue`` when ``fill == "required"``.
      required: Whether the variable must be present.
      attrs: Attrs the variable must carry (e.g. ``depth_m``).
      daily: Values must be datetimes at 00:00 (daily grids).
    """

    dims: tuple[str, ...]
    dtype: str = "float32"
    units: str | None = None
    valid_range: tuple[float, float] | None = None
    allowed: tuple[float, ...] | None = None
    fill: Literal["forbidden", "required", "any"] = "any"
    fill_value: float | None = None
    required: bool = True
    attrs: tuple[str, ...] = ()
    daily: bool = False


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What one kind of store must look like (see docs/data-contract.md).

    Attributes:
      name: Short name used in messages (``"tb/gmi"``, ``"static"``…).
      data_vars: Data variables by name (``crs`` is handled by ``crs_epsg``).
      coords: Coordinates by name (checked whether stored as coords or data variables).
      attrs: Global attrs that must be present.
      attr_values: Global attrs that must have exactly this value.
      gridded: Check ``grid``/``grid_window`` against the ``x``/``y`` values.
      crs_epsg: ``"grid"`` (EPSG of the store's grid), an EPSG code, or None (no crs needed).
      channels: For TB stores, the sensor whose channel labels / frequencies / polarizations
        the ``channel`` coordinate must carry.
      require_any: Groups of variables of which at least one must be present.
      passes: Check the ``pass`` coordinate holds only ``"am"``/``"pm"``.
      var_dims: If set, every data variable (there must be one) has one of these dims.
    """

    name: str
    data_vars: Mapping[str, VarSpec]
    coords: Mapping[str, VarSpec] = dataclasses.field(default_factory=dict)
    attrs: tuple[str, ...] = ()
    attr_values: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    gridded: bool = True
    crs_epsg: int | Literal["grid"] | None = "grid"
    channels: str | None = None
    require_any: tuple[tuple[str, ...], ...] = ()
    passes: bool = False
    var_dims: tuple[tuple[str, ...], ...] | None = None

    def replace(self, **changes: Any) -> DatasetSpec:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


# --- the checker --------------------------------------------------------------------------
def check(
    ds: xr.Dataset,
    spec: DatasetSpec,
    *,
    context: str,
    values: Literal["auto", "all", "none"] = "auto",
) -> None:
    """Raise :class:`errors.SchemaError` listing every way ``ds`` violates ``spec``.

    Args:
      ds: The dataset (numpy- or dask-backed; never loaded unless ``values="all"``).
      spec: The specification.
      context: What ``ds`` is (store URL or file name), the start of the message.
      values: Which data values to check (see module docstring).

    Raises:
      errors.SchemaError: ``"{context}: N problems: p1; p2; …"`` (one line).
    """
    found = problems(ds, spec, values=values)
    if found:
        n = len(found)
        raise errors.SchemaError(
            f"{context}: {n} problem{'s' if n > 1 else ''}: " + "; ".join(found)
        )


def problems(
    ds: xr.Dataset, spec: DatasetSpec, *, values: Literal["auto", "all", "none"] = "auto"
) -> list[str]:
    """Every violation of ``spec`` by ``ds``, as short phrases (empty list: conformant)."""
    out: list[str] = []
    for name, vs in spec.coords.items():
        _check_var(ds, name, vs, "coordinate", values, out)
    for name, vs in spec.data_vars.items():
        _check_var(ds, name, vs, "variable", values, out)
    for group in spec.require_any:
        if not any(v in ds.variables for v in group):
            out.append(f"none of the variables {list(group)} is present")
    for key in spec.attrs:
        if key not in ds.attrs:
            out.append(f"attr '{key}' missing")
    for key, want in spec.attr_values.items():
        if key in ds.attrs and not _same(ds.attrs[key], want):
            out.append(f"attr '{key}' is {ds.attrs[key]!r}, expected {want!r}")
    _check_data_var_attrs(ds, spec, out)
    epsg = _check_grid(ds, out) if spec.gridded else None
    if spec.crs_epsg is not None:
        _check_crs(ds, epsg if spec.crs_epsg == "grid" else spec.crs_epsg, out)
    if spec.passes and dims.PASS in ds.coords:
        bad = sorted({str(p) for p in np.asarray(ds[dims.PASS].values)} - set(dims.PASSES))
        if bad or ds.sizes[dims.PASS] == 0:
            out.append(f"coordinate 'pass' values {bad} not in {list(dims.PASSES)}")
    if spec.channels is not None:
        _check_channels(ds, spec.channels, out)
    if spec.var_dims is not None:
        if not ds.data_vars:
            out.append("no data variables")
        for name, var in ds.data_vars.items():
            if var.dims not in spec.var_dims:
                want = " or ".join("(" + ", ".join(d) + ")" for d in spec.var_dims)
                out.append(f"variable '{name}' dims {var.dims} != {want}")
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, float):
        try:
            return bool(np.isclose(float(a), b))
        except (TypeError, ValueError):
            return False
    return a == b


def _dims_match(actual: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """Whether ``actual`` equals ``pattern`` with some ``?`` dims dropped (order kept)."""
    if not pattern:
        return not actual
    head, rest = pattern[0], pattern[1:]
    if head.endswith("?"):
        name = head[:-1]
        with_it = bool(actual) and actual[0] == name and _dims_match(actual[1:], rest)
        return with_it or _dims_match(actual, rest)
    return bool(actual) and actual[0] == head and _dims_match(actual[1:], rest)


def _fill_of(var: xr.Variable) -> Any:
    fv = var.attrs.get("_FillValue", var.encoding.get("_FillValue"))
    return fv


def _stored_dtype(var: xr.Variable) -> np.dtype:
    """The dtype on disk: xarray masks integers with a _FillValue to float on decode."""
    enc = var.encoding.get("dtype")
    if enc is not None and var.dtype.kind == "f" and np.dtype(enc).kind in "iu":
        return np.dtype(enc)
    return var.dtype


def _is_lazy(var: xr.Variable) -> bool:
    """True unless the values are already in memory (numpy array, pandas index, cached)."""
    return not getattr(var, "_in_memory", False)


def _check_var(ds, name, vs: VarSpec, what, values, out: list[str]) -> None:
    if name not in ds.variables:
        if vs.required:
            out.append(f"{what} '{name}' missing")
        return
    var = ds.variables[name]
    if not _dims_match(tuple(var.dims), vs.dims):
        want = "(" + ", ".join(vs.dims) + ")"
        out.append(f"{what} '{name}' dims {tuple(var.dims)} != {want}")
    dt = _stored_dtype(var)
    group = _DTYPE_GROUPS.get(vs.dtype)
    if group is not None:
        if dt.kind not in group:
            out.append(f"{what} '{name}' dtype {dt} is not {vs.dtype}")
    elif dt != np.dtype(vs.dtype):
        out.append(f"{what} '{name}' dtype {dt} != {vs.dtype}")
    if vs.units is not None:
        units = var.attrs.get("units")
        if units is None:
            out.append(f"{what} '{name}' has no units (expected {vs.units!r})")
        elif str(units) != vs.units:
            out.append(f"{what} '{name}' units {units!r} != {vs.units!r}")
    fv = _fill_of(var)
    if vs.fill == "forbidden" and fv is not None:
        out.append(f"{what} '{name}' must have no _FillValue (has {fv!r})")
    if vs.fill == "required":
        if fv is None:
            out.append(f"{what} '{name}' has no _FillValue (expected {vs.fill_value!r})")
        elif vs.fill_value is not None and not _same(fv, vs.fill_value):
            out.append(f"{what} '{name}' _FillValue {fv!r} != {vs.fill_value!r}")
    for key in vs.attrs:
        if key not in var.attrs:
            out.append(f"{what} '{name}' attr '{key}' missing")
    if values == "none" or (values == "auto" and _is_lazy(var)) or var.size == 0:
        return
    if vs.valid_range is None and vs.allowed is None and not vs.daily:
        return
    _check_values(name, np.asarray(var.values), vs, what, out)


def _check_values(name, arr: np.ndarray, vs: VarSpec, what, out: list[str]) -> None:
    if vs.daily:
        if arr.dtype.kind == "M":
            days = arr.astype("datetime64[D]").astype(arr.dtype)
            if np.any(arr[~np.isnat(arr)] != days[~np.isnat(arr)]):
                out.append(f"{what} '{name}' has times not at 00:00 (daily grid expected)")
            if arr.ndim == 1 and arr.size > 1 and np.any(np.diff(arr) <= np.timedelta64(0)):
                out.append(f"{what} '{name}' is not strictly increasing")
        return
    if arr.dtype.kind not in "fiu":
        return
    ok = np.isfinite(arr) if arr.dtype.kind == "f" else np.ones(arr.shape, bool)
    vals = arr[ok]
    if vals.size == 0:
        return
    if vs.valid_range is not None:
        lo, hi = vs.valid_range
        vmin, vmax = float(vals.min()), float(vals.max())
        if vmin < lo or vmax > hi:
            out.append(
                f"{what} '{name}' values [{vmin:g}, {vmax:g}] outside valid range [{lo:g}, {hi:g}]"
            )
    if vs.allowed is not None:
        bad = np.unique(vals[~np.isin(vals, np.asarray(vs.allowed))])
        if bad.size:
            out.append(
                f"{what} '{name}' has values {bad[:5].tolist()} not in {list(vs.allowed)}"
            )


def _check_data_var_attrs(ds: xr.Dataset, spec: DatasetSpec, out: list[str]) -> None:
    """Every data variable: ``units`` and ``long_name``; ``grid_mapping: crs`` if crs is used."""
    for name, var in ds.data_vars.items():
        if name == dims.CRS or name in spec.coords:
            continue
        for key in ("units", "long_name"):
            if key not in var.attrs and not (key == "units" and name in spec.data_vars
                                             and spec.data_vars[name].units is not None):
                out.append(f"variable '{name}' has no {key}")
        if spec.crs_epsg is not None:
            gm = var.attrs.get("grid_mapping", var.encoding.get("grid_mapping"))
            if gm != dims.CRS:
                out.append(f"variable '{name}' grid_mapping {gm!r} != 'crs'")


def _check_grid(ds: xr.Dataset, out: list[str]) -> int | None:
    """Check ``grid``/``grid_window`` against x/y; return the grid's EPSG (None if unknown)."""
    name = ds.attrs.get("grid")
    if name is None:
        out.append("attr 'grid' missing")
        return None
    try:
        g = grid.get(name)
    except KeyError:
        out.append(f"attr 'grid' {name!r} is not one of {sorted(grid.GRIDS)}")
        return None
    try:
        w = grid.window_from_attrs(ds.attrs)[1]
    except (ValueError, TypeError) as e:
        out.append(f"attr 'grid_window' {ds.attrs.get('grid_window')!r} invalid: {e}")
        return g.epsg
    for d, ref in ((dims.X, g.x[w.col0 : w.col1]), (dims.Y, g.y[w.row0 : w.row1])):
        if d not in ds.coords:
            out.append(f"coordinate '{d}' missing")
            continue
        got = np.asarray(ds[d].values, np.float64)
        if got.shape != ref.shape or not np.allclose(got, ref, rtol=0, atol=1e-3):
            out.append(
                f"coordinate '{d}' does not match grid {g.name} window {w.as_list()} "
                f"({got.size} values from {got[:1].tolist()}, expected {ref.size} from "
                f"{ref[:1].tolist()})"
            )
    return g.epsg


def _check_crs(ds: xr.Dataset, epsg: int | None, out: list[str]) -> None:
    if dims.CRS not in ds.variables:
        out.append("variable 'crs' missing")
        return
    a = ds.variables[dims.CRS].attrs
    for key in ("grid_mapping_name", "spatial_ref"):
        if key not in a:
            out.append(f"variable 'crs' attr '{key}' missing")
    code = a.get("epsg_code")
    if code is None:
        out.append("variable 'crs' attr 'epsg_code' missing")
    elif isinstance(code, bool) or not isinstance(code, (int, np.integer)):
        out.append(f"variable 'crs' attr 'epsg_code' {code!r} is not an integer")
    elif epsg is not None and int(code) != epsg:
        out.append(f"variable 'crs' epsg_code {int(code)} != {epsg}")


def _check_channels(ds: xr.Dataset, sensor: str, out: list[str]) -> None:
    s = sensors.get(sensor)
    if dims.CHANNEL not in ds.coords:
        return  # reported as a missing coordinate
    labels = [str(c) for c in np.asarray(ds[dims.CHANNEL].values)]
    missing = [c for c in s.channel_labels if c not in labels]
    extra = [c for c in labels if c not in s.channel_labels]
    if missing:
        out.append(f"channels {missing} of sensor {sensor} missing")
    if extra:
        out.append(f"channels {extra} are not channels of sensor {sensor}")
    if len(set(labels)) != len(labels):
        out.append(f"duplicate channel labels {labels}")
    for coord, attr in ((dims.FREQUENCY_COORD, "frequency_ghz"), (dims.POLARIZATION_COORD,
                                                                  "polarization")):
        if coord not in ds.coords or ds[coord].dims != (dims.CHANNEL,):
            continue
        for label, got in zip(labels, np.asarray(ds[coord].values), strict=True):
            if label in s.channel_labels:
                want = getattr(s.channel(label), attr)
                if not _same(got.item() if hasattr(got, "item") else got, want):
                    out.append(f"channel {label} {coord} {got!r} != {want!r}")


# --- specs --------------------------------------------------------------------------------
GRID_COORDS = {
    dims.Y: VarSpec((dims.Y,), "float", "m"),
    dims.X: VarSpec((dims.X,), "float", "m"),
    dims.LAT: VarSpec((dims.Y, dims.X), "float", "degrees_north", (-90.0, 90.0)),
    dims.LON: VarSpec((dims.Y, dims.X), "float", "degrees_east", (-180.0, 180.0)),
}
TIME_DAILY = {dims.TIME: VarSpec((dims.TIME,), "datetime", daily=True)}
TIME_PASS = {**TIME_DAILY, dims.PASS: VarSpec((dims.PASS,), "str")}
_TPYX = (dims.TIME, dims.PASS, dims.Y, dims.X)
_TYX = (dims.TIME, dims.Y, dims.X)
_FLAG = VarSpec(_TPYX, "uint16", "1", fill="forbidden")
_FRACTION = (0.0, 1.0)


def _tb_vars() -> dict[str, VarSpec]:
    return {
        dims.TB: VarSpec((dims.TIME, dims.PASS, dims.CHANNEL, dims.Y, dims.X), "float32", "K",
                         (0.0, 400.0)),
        dims.LOCAL_TIME: VarSpec(_TPYX, "float32", "h", (0.0, 24.0)),
        dims.QUALITY_FLAG: _FLAG,
    }


def tb_spec(sensor: str) -> DatasetSpec:
    """Spec of ``tb/{sensor}.zarr`` (channel labels, frequencies, polarizations from the catalog).

    The TB range check [0, 400] K is a physical sanity bound, not a contract figure.
    """
    s = sensors.get(sensor)
    return DatasetSpec(
        name=f"tb/{sensor}",
        data_vars=_tb_vars(),
        coords={
            **TIME_PASS,
            dims.CHANNEL: VarSpec((dims.CHANNEL,), "str"),
            dims.FREQUENCY_COORD: VarSpec((dims.CHANNEL,), "float", "GHz"),
            dims.POLARIZATION_COORD: VarSpec((dims.CHANNEL,), "str"),
            **GRID_COORDS,
        },
        attrs=("sensor", "platform", "grid", "incidence_angle_deg", "title", "source", "history"),
        attr_values={"sensor": s.name, "platform": s.platform,
                     "incidence_angle_deg": float(s.incidence_angle_deg)},
        channels=s.name,
        passes=True,
    )


def calibrated_spec(sensor: str) -> DatasetSpec:
    """Spec of ``calibrated/{sensor}.zarr``: the TB schema plus attr ``calibrated_to``."""
    base = tb_spec(sensor)
    return base.replace(name=f"calibrated/{sensor}", attrs=base.attrs + ("calibrated_to",))


def _f(units: str, rng: tuple[float, float] | None = None, d=(dims.Y, dims.X), **kw) -> VarSpec:
    return VarSpec(d, "float32", units, rng, **kw)


STATIC = DatasetSpec(
    name="static",
    data_vars={
        "land_fraction": _f("1", _FRACTION),
        "water_fraction": _f("1", _FRACTION),
        "landcover": VarSpec((dims.Y, dims.X), "int16", "1", (0, 17)),
        "pft": VarSpec((dims.Y, dims.X), "int8", "1", (0, 8)),
        "clay_fraction": _f("1", _FRACTION),
        "sand_fraction": _f("1", _FRACTION),
        "bulk_density": _f("g cm-3", (0.0, 3.0)),
        "elevation": _f("m", (-500.0, 9000.0)),
    },
    coords=GRID_COORDS,
    attrs=("grid",),
)

_T_PASS_OPT = (dims.TIME, "pass?", dims.Y, dims.X)
TRUTH = DatasetSpec(
    name="truth",
    data_vars={
        dims.SOIL_MOISTURE: VarSpec(_T_PASS_OPT, "float32", SM_UNITS, (0.0, 1.0)),
        "soil_temperature": VarSpec(_T_PASS_OPT, "float32", "K", (150.0, 350.0)),
        "surface_temperature": VarSpec(_T_PASS_OPT, "float32", "K", (150.0, 350.0)),
        "frozen": VarSpec(_T_PASS_OPT, "int8", "1", allowed=(0, 1)),
        "snow_water_equivalent": VarSpec(_T_PASS_OPT, "float32", "mm", (0.0, 1e5)),
        "snow_wet": VarSpec(_T_PASS_OPT, "int8", "1", allowed=(0, 1)),
        "lake_ice_fraction": VarSpec(_T_PASS_OPT, "float32", "1", _FRACTION),
        dims.VOD: VarSpec((dims.TIME, "pass?", "frequency_ghz?", dims.Y, dims.X), "float32",
                          "1", (0.0, 50.0)),
        "gpp": VarSpec(_T_PASS_OPT, "float32", FLUX_UNITS, required=False),
        "reco": VarSpec(_T_PASS_OPT, "float32", FLUX_UNITS, required=False),
        "nee": VarSpec(_T_PASS_OPT, "float32", FLUX_UNITS, required=False),
    },
    coords={**TIME_DAILY, dims.PASS: VarSpec((dims.PASS,), "str", required=False),
            **GRID_COORDS},
    attrs=("grid", "calibration"),
    passes=True,
)

_ST = (dims.STATION, dims.TIME)
INSITU = DatasetSpec(
    name="insitu",
    data_vars={
        dims.SOIL_MOISTURE: VarSpec(_ST, "float32", SM_UNITS, (0.0, 1.0), required=False,
                                    attrs=("depth_m",)),
        "soil_temperature": VarSpec(_ST, "float32", "K", (150.0, 350.0), required=False,
                                    attrs=("depth_m",)),
        "air_temperature": VarSpec(_ST, "float32", "K", (150.0, 350.0), required=False,
                                   attrs=("depth_m",)),
        **{f"{v}_flag": VarSpec(_ST, "uint8", "1", required=False)
           for v in (dims.SOIL_MOISTURE, "soil_temperature", "air_temperature")},
    },
    coords={
        dims.STATION: VarSpec((dims.STATION,), "str"),
        dims.TIME: VarSpec((dims.TIME,), "datetime"),
        dims.LAT: VarSpec((dims.STATION,), "float", "degrees_north", (-90.0, 90.0)),
        dims.LON: VarSpec((dims.STATION,), "float", "degrees_east", (-180.0, 180.0)),
        dims.ELEVATION: VarSpec((dims.STATION,), "float", "m"),
    },
    gridded=False,
    crs_epsg=WGS84,
    require_any=((dims.SOIL_MOISTURE, "soil_temperature", "air_temperature"),),
)

_SITE_T = (dims.SITE, dims.TIME)
TOWERS = DatasetSpec(
    name="towers",
    data_vars={
        **{v: VarSpec(_SITE_T, "float32", FLUX_UNITS) for v in ("nee", "gpp", "reco")},
        **{f"{v}_qc": VarSpec(_SITE_T, "float32", "1", _FRACTION) for v in ("nee", "gpp", "reco")},
        "ta": VarSpec(_SITE_T, "float32", "K", (150.0, 350.0)),
        "tmin": VarSpec(_SITE_T, "float32", "K", (150.0, 350.0)),
        "sw_in": VarSpec(_SITE_T, "float32", "W m-2", (0.0, 1500.0)),
        "vpd": VarSpec(_SITE_T, "float32", "Pa", (0.0, 1e4)),
        "swc": VarSpec(_SITE_T, "float32", SM_UNITS, (0.0, 1.0), required=False),
        "ts": VarSpec(_SITE_T, "float32", "K", (150.0, 350.0), required=False),
    },
    coords={
        dims.SITE: VarSpec((dims.SITE,), "str"),
        dims.TIME: VarSpec((dims.TIME,), "datetime", daily=True),
        dims.LAT: VarSpec((dims.SITE,), "float", "degrees_north", (-90.0, 90.0)),
        dims.LON: VarSpec((dims.SITE,), "float", "degrees_east", (-180.0, 180.0)),
        "igbp": VarSpec((dims.SITE,), "str"),
        "pft": VarSpec((dims.SITE,), "int8", None, (0, 8)),
    },
    gridded=False,
    crs_epsg=WGS84,
)

_FT_STATE = VarSpec(_TPYX, "int8", "1", allowed=(-1, 0, 1), fill="required", fill_value=-1)
FT_PRODUCT = DatasetSpec(
    name="freeze/thaw product",
    data_vars={
        dims.THAW_PROBABILITY: VarSpec(_TPYX, "float32", "1", _FRACTION),
        dims.FT_STATE: _FT_STATE,
        dims.FT_STATE_NPR: _FT_STATE,
        dims.NPR: VarSpec(_TPYX, "float32", "1", (-1.0, 1.0)),
        dims.QUALITY_FLAG: _FLAG,
    },
    coords={**TIME_PASS, **GRID_COORDS},
    attrs=("grid",),
    passes=True,
)

SM_SMAP_PRODUCT = DatasetSpec(
    name="SMAP soil-moisture product",
    data_vars={
        dims.SOIL_MOISTURE: VarSpec(_TPYX, "float32", SM_UNITS, (0.0, 1.0)),
        dims.VOD: VarSpec(_TPYX, "float32", "1", (0.0, 50.0)),
        dims.QUALITY_FLAG: _FLAG,
    },
    coords={**TIME_PASS, **GRID_COORDS},
    attrs=("grid",),
    passes=True,
)

SM_HARMONISED = DatasetSpec(
    name="harmonised soil-moisture product (one store per sensor)",
    data_vars={
        dims.SOIL_MOISTURE: VarSpec(_TPYX, "float32", SM_UNITS, (0.0, 1.0)),
        dims.QUALITY_FLAG: VarSpec(_TPYX, "uint16", "1", fill="forbidden", required=False),
    },
    coords={**TIME_PASS, **GRID_COORDS},
    attrs=("grid", "sensor"),
    passes=True,
)

SM_FUSED = DatasetSpec(
    name="fused soil-moisture product",
    data_vars={
        dims.SOIL_MOISTURE: VarSpec(_TYX, "float32", SM_UNITS, (0.0, 1.0)),
        dims.SOIL_MOISTURE_UNCERTAINTY: VarSpec(_TYX, "float32", SM_UNITS, (0.0, 1.0)),
        dims.N_SOURCES: VarSpec(_TYX, "uint8", "1", (0, len(dims.SOURCE_BITS)), fill="forbidden"),
        dims.SOURCE_MASK: VarSpec(_TYX, "uint8", "1", (0, 2 ** len(dims.SOURCE_BITS) - 1),
                                  fill="forbidden"),
        dims.LAND_COVERAGE: VarSpec((dims.TIME,), "float32", "1", _FRACTION),
    },
    coords={**TIME_DAILY, **GRID_COORDS},
    attrs=("grid",),
)

CARBON_PRODUCT = DatasetSpec(
    name="carbon-flux product",
    data_vars={v: VarSpec(_TYX, "float32", FLUX_UNITS) for v in ("nee", "gpp", "rh", "reco")},
    coords={**TIME_DAILY, **GRID_COORDS},
    attrs=("grid",),
)

VALIDATION = DatasetSpec(
    name="validation metrics",
    data_vars={},
    coords={dims.METRIC: VarSpec((dims.METRIC,), "str")},
    gridded=False,
    crs_epsg=None,
    var_dims=((dims.STATION, dims.METRIC), (dims.SITE, dims.METRIC)),
)
"""Validation metrics: a ``metric`` coordinate and at least one variable, every variable over
(station, metric) or (site, metric); no crs (the contract fixes only the dims)."""


# --- templates ----------------------------------------------------------------------------
def tb_template(
    sensor: str,
    grid_name: str | grid.Grid,
    window: grid.Window | None,
    times: Sequence | np.ndarray,
    *,
    title: str | None = None,
    source: str = "tbcube",
    history: str = "",
) -> xr.Dataset:
    """A contract-conformant TB dataset for ``sensor`` on ``grid_name``/``window``, all missing.

    Args:
      sensor: Catalog sensor name (``"smap"``, ``"gmi"``…).
      grid_name: EASE-Grid 2.0 grid name or :class:`grid.Grid`.
      window: Window of the grid (None: the whole grid).
      times: Days (anything ``np.datetime64`` accepts); stored as datetime64[ns] at 00:00.
      title, source, history: Global attrs.

    Returns:
      Dataset with ``tb`` (time, pass, channel, y, x) float32 [K] NaN, ``local_time``
      (time, pass, y, x) float32 [h] NaN, ``quality_flag`` (time, pass, y, x) uint16 0, the
      coords ``time``, ``pass``, ``channel``, ``frequency_ghz``, ``polarization``, ``y``, ``x``,
      ``lat``, ``lon``, the ``crs`` variable and attrs ``sensor``, ``platform``, ``grid``,
      ``grid_window``, ``incidence_angle_deg``, ``title``, ``source``, ``history``.
      numpy-backed; chunk it before writing a large template.
    """
    s = sensors.get(sensor)
    base = grid.grid_coords(grid_name, window)
    t = np.asarray(np.asarray(times, dtype="datetime64[D]"), dtype="datetime64[ns]")
    ny, nx = base.sizes[dims.Y], base.sizes[dims.X]
    nt, npass, nc = t.size, len(dims.PASSES), len(s.channels)
    gm = {"grid_mapping": dims.CRS}
    ds = base.assign_coords({
        dims.TIME: (dims.TIME, t, {"long_name": "observation date (local solar time)"}),
        dims.PASS: (dims.PASS, np.array(dims.PASSES, dtype=object),
                    {"long_name": "overpass (am / pm)"}),
        dims.CHANNEL: (dims.CHANNEL, np.array(s.channel_labels, dtype=object),
                       {"long_name": "channel label"}),
        dims.FREQUENCY_COORD: (dims.CHANNEL, s.frequencies_ghz.astype(np.float32),
                               {"units": "GHz", "long_name": "centre frequency"}),
        dims.POLARIZATION_COORD: (dims.CHANNEL, np.array(s.polarizations, dtype=object),
                                  {"long_name": "polarization"}),
    })
    ds[dims.TB] = ((dims.TIME, dims.PASS, dims.CHANNEL, dims.Y, dims.X),
                   np.full((nt, npass, nc, ny, nx), np.nan, np.float32),
                   {"units": "K", "long_name": "brightness temperature",
                    "standard_name": "brightness_temperature", **gm})
    ds[dims.LOCAL_TIME] = (_TPYX, np.full((nt, npass, ny, nx), np.nan, np.float32),
                           {"units": "h", "long_name": "local solar time of observation", **gm})
    flags = qc.flag_attrs()
    ds[dims.QUALITY_FLAG] = (_TPYX, np.zeros((nt, npass, ny, nx), qc.QC_DTYPE), {**flags, **gm})
    ds.attrs.update({
        "sensor": s.name,
        "platform": s.platform,
        "incidence_angle_deg": float(s.incidence_angle_deg),
        "title": title or f"{s.platform} {s.name.upper()} brightness temperatures".replace(
            f"{s.name.upper()} {s.name.upper()}", s.name.upper()),
        "source": source,
        "history": history,
    })
    return ds
