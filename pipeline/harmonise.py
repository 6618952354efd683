"""Inputs and targets of the grid-aware LSTM that carries the SMAP retrieval back in time.

Pure stages (science.md §3.5): features common to TMI, AMSR-E, AMSR2 and GMI from 10.65 GHz
up (science.md §3.3), on calibrated TB (so one model serves all four sensors), plus derived
polarisation indices, observation local time and day of year, an availability flag, and
static cell features (position encoding, land cover, soil texture, open-water fraction) that
make the model grid-aware.  The target is the SMAP physical soil moisture (daily mean of the
available passes, good quality only).

Feature axis order (``feature`` coordinate) is fixed by :func:`feature_names`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from pipeline import calibrate, dims, qc

__all__ = [
    "CANONICAL_SENSOR",
    "COMMON_CHANNELS",
    "LANDCOVER_CLASSES",
    "dynamic_features",
    "feature_names",
    "features",
    "static_features",
    "target",
]

# Channels shared by the four sensors, labelled as on AMSR2 (science.md §3.3).
CANONICAL_SENSOR = "amsr2"
COMMON_CHANNELS = ("10.65V", "10.65H", "18.7V", "18.7H", "23.8V", "36.5V", "36.5H",
                   "89.0V", "89.0H")
# IGBP classes one-hot encoded as static features (others share an "other" column).
LANDCOVER_CLASSES = (1, 3, 4, 6, 7, 8, 9, 10, 12, 15, 16, 17)

_DERIVED = ("mpdi_10", "mpdi_18", "tb_36v_minus_18v", "lt_sin", "lt_cos", "doy_sin", "doy_cos",
            "observed")
_DYNAMIC_NAMES = tuple(f"tb_{c}" for c in COMMON_CHANNELS) + _DERIVED


def feature_names() -> tuple[str, ...]:
    """Names of the model inputs, in order (dynamic first, then static)."""
    static = ("lat_sin", "lat_cos", "lon_sin", "lon_cos", "clay", "sand", "water_fraction")
    classes = tuple(f"lc_{c}" for c in LANDCOVER_CLASSES) + ("lc_other",)
    return _DYNAMIC_NAMES + static + classes


def _to_canonical(sensor: str) -> dict[str, str]:
    """Sensor label → canonical (AMSR2) label for the common channels."""
    if sensor == CANONICAL_SENSOR:
        return {c: c for c in COMMON_CHANNELS}
    m = calibrate.match_channels(sensor, CANONICAL_SENSOR)
    return {k: v for k, v in m.items() if v in COMMON_CHANNELS}


def dynamic_features(tb: xr.Dataset, sensor: str) -> xr.DataArray:
    """Time-varying inputs (time, pass, y, x, feature) from one sensor's calibrated TB store.

    Missing observations are NaN (the model normalisation maps them to 0) with ``observed`` = 0.
    """
    to_can = _to_canonical(sensor)
    can_to_src = {v: k for k, v in to_can.items()}
    missing = [c for c in COMMON_CHANNELS if c not in can_to_src]
    if missing:
        raise ValueError(f"sensor {sensor}: no counterpart for common channels {missing}")
    tbc = tb[dims.TB].sel({dims.CHANNEL: [can_to_src[c] for c in COMMON_CHANNELS]})
    tbc = tbc.assign_coords({dims.CHANNEL: list(COMMON_CHANNELS)})
    tbc = tbc.drop_vars([c for c in tbc.coords if c not in tbc.dims], errors="ignore")
    if tbc.chunks is not None:
        tbc = tbc.chunk({dims.CHANNEL: -1})  # the channels are the block function's core dim
    lt = tb[dims.LOCAL_TIME]
    lt = lt.drop_vars([c for c in lt.coords if c not in lt.dims], errors="ignore")
    doy = tb[dims.TIME].dt.dayofyear.astype(np.float64)
    doy = dims.chunk_like(doy, lt)  # lazy like lt, so its broadcast stays out of the graph
    # One NumPy function per block: built from ~40 xarray operations, the features were
    # ~7 000 dask tasks per sensor on the demo transect (4 290 → 562 on the tiny archive).
    out = xr.apply_ufunc(_dynamic_block, tbc, lt, doy, input_core_dims=[[dims.CHANNEL], [], []],
                         output_core_dims=[[dims.FEATURE]], dask="parallelized",
                         output_dtypes=[np.float32],
                         dask_gufunc_kwargs={"output_sizes": {dims.FEATURE: len(_DYNAMIC_NAMES)}})
    out = out.assign_coords({dims.FEATURE: list(_DYNAMIC_NAMES)})
    return out.transpose(dims.TIME, dims.PASS, dims.Y, dims.X, dims.FEATURE)


def _dynamic_block(tb: np.ndarray, lt: np.ndarray, doy: np.ndarray) -> np.ndarray:
    """The dynamic features of one block: ``tb`` (..., channel) in :data:`COMMON_CHANNELS`
    order [K], local time ``lt`` [h] and day of year ``doy`` (broadcast to ``tb[..., 0]``);
    returns (..., feature) float32 in :data:`_DYNAMIC_NAMES` order."""
    ch = {c: tb[..., i] for i, c in enumerate(COMMON_CHANNELS)}
    ang_lt = 2 * np.pi * lt / 24.0
    ang_doy = 2 * np.pi * doy / 365.25
    derived = [(ch["10.65V"] - ch["10.65H"]) / (ch["10.65V"] + ch["10.65H"]),
               (ch["18.7V"] - ch["18.7H"]) / (ch["18.7V"] + ch["18.7H"]),
               ch["36.5V"] - ch["18.7V"], np.sin(ang_lt), np.cos(ang_lt),
               np.sin(ang_doy), np.cos(ang_doy),
               ~np.isnan(ch["10.65V"]) | ~np.isnan(ch["36.5V"])]
    shape = tb.shape[:-1]
    parts = [ch[c] for c in COMMON_CHANNELS] + derived
    return np.stack([np.broadcast_to(np.asarray(p).astype(np.float32), shape) for p in parts],
                    axis=-1)


def static_features(static: xr.Dataset) -> xr.DataArray:
    """Grid-aware static inputs (y, x, feature): position encoding, texture, water, land cover."""
    lat = np.deg2rad(static[dims.LAT])
    lon = np.deg2rad(static[dims.LON])
    lc = static["landcover"]
    cols = [np.sin(lat), np.cos(lat), np.sin(lon), np.cos(lon), static["clay_fraction"],
            static["sand_fraction"], static["water_fraction"]]
    onehot = [(lc == c) for c in LANDCOVER_CLASSES]
    other = ~lc.isin(list(LANDCOVER_CLASSES))
    cols += onehot + [other]
    names = feature_names()[len(COMMON_CHANNELS) + len(_DERIVED):]
    parts = [c.astype(np.float32).drop_vars([k for k in c.coords if k not in c.dims],
                                            errors="ignore") for c in cols]
    out = xr.concat(parts, dim=dims.FEATURE, coords="minimal", compat="override")
    return out.assign_coords({dims.FEATURE: list(names)}).transpose(dims.Y, dims.X, dims.FEATURE)


def features(tb: xr.Dataset, static: xr.Dataset, sensor: str) -> xr.DataArray:
    """All model inputs (time, pass, y, x, feature), static features repeated along time."""
    dyn = dynamic_features(tb, sensor)
    base = dyn.isel({dims.FEATURE: 0}, drop=True)
    # chunked before the broadcast along time, or the static features would enter the graph
    # at the full (time, pass, y, x) shape
    sta = dims.chunk_like(static_features(static), base).broadcast_like(base)
    out = xr.concat([dyn, sta.transpose(*dyn.dims[:-1], dims.FEATURE)], dim=dims.FEATURE)
    return out.transpose(dims.TIME, dims.PASS, dims.Y, dims.X, dims.FEATURE)


# Quality bits that disqualify a SMAP retrieval as a training target.
TARGET_REJECT = (qc.QC.RETRIEVAL_NOT_CONVERGED | qc.QC.FROZEN_GROUND | qc.QC.SNOW_COVER
                 | qc.QC.OPEN_WATER_DOMINATED | qc.QC.RFI_SUSPECTED)


def target(smap_product: xr.Dataset) -> xr.DataArray:
    """Daily SMAP soil moisture target (time, y, x) [m3 m-3]: mean of good-quality passes."""
    sm = smap_product[dims.SOIL_MOISTURE]
    flag = smap_product[dims.QUALITY_FLAG].astype(np.int64)
    good = (flag & int(TARGET_REJECT)) == 0
    daily = sm.where(good).mean(dims.PASS, skipna=True)
    daily = daily.drop_vars([c for c in daily.coords if c not in daily.dims], errors="ignore")
    return daily.astype(np.float32).assign_attrs(units="m3 m-3",
                                                 long_name="SMAP physical soil moisture target")
