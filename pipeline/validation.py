"""Soil-moisture validation against in-situ stations: matching, screening and metric tables.

A pure stage (numpy/xarray; no I/O): it takes contract datasets (``insitu/{network}.zarr``
stations, gridded soil-moisture products, or one satellite series per station) and returns
matched pairs and metric tables.  Steps, each a documented, configurable choice
(:class:`MatchSettings`; docs/validation.md):

1. **Depth** (:func:`select_depth`): stations whose soil-moisture sensor bottom is at most
   ``max_depth_m`` = 0.05 m (+ ``depth_tolerance_m`` = 0.01 m, so the 2-inch = 0.0508 m SCAN
   probes count; a 0–0.17 m cosmic-ray probe does not).
2. **Screening** (:func:`screen_insitu`): keep a value only when its ISMN flag is ``G``
   (``<var>_flag == 0``; ``U`` "unchecked" values of older ISMN releases are dropped too), and
   mask frozen soil, ``soil_temperature < 273.15 K`` at the same hour (where the station
   measures it; the ISMN D01/D03 flags, which are not ``G``, cover the rest).
3. **Temporal matching** (:func:`match_series`, :func:`match_gridded`): each satellite
   observation is paired with the in-situ value *nearest in time* within ``window`` (± 1 h
   by default; ISMN data are hourly).  For gridded products the observation time in UTC is the
   day + the stored ``local_time`` (or the nominal pass hour: am 06:00, pm 18:00) − lon/15 h.
4. **Aggregation**: ``"overpass"`` keeps every pair at its observation time; ``"daily"``
   averages the pairs of each UTC day (estimate and reference over the same pairs).
5. **Metrics** (:mod:`pipeline.metrics`; identical to pytesmo): per station
   (:func:`station_table`, a data-contract "validation" dataset over (station, metric)), per
   network (:func:`network_table`: pooled and median) and per sensor epoch
   (:func:`period_table`: periods with a fixed set of operating sensors).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from pipeline import dims, errors, grid, metrics, sensors

__all__ = [
    "ESTIMATE",
    "FREEZING_K",
    "PASS_HOURS",
    "REFERENCE",
    "MatchSettings",
    "epoch_labels",
    "insitu_daily",
    "match_gridded",
    "match_series",
    "match_stations",
    "network_table",
    "period_table",
    "screen_insitu",
    "select_depth",
    "station_table",
]

FREEZING_K = 273.15
ESTIMATE = "estimate"
REFERENCE = "reference"
PERIOD = "period"
NETWORK = "network"
PASS_HOURS = {"am": 6.0, "pm": 18.0}  # nominal local solar time of the passes [h]
_CAT = {"coords": "minimal", "compat": "override"}
AGGREGATES = ("overpass", "daily", "daily_mean")
DAILY_MIN_HOURS = 12  # in-situ hours a day needs for a daily mean ("daily_mean" matching)


@dataclasses.dataclass(frozen=True)
class MatchSettings:
    """How products are matched to stations (see the module docstring).

    Attributes:
      max_depth_m: Deepest allowed soil-moisture sensor bottom [m].
      depth_tolerance_m: Added to ``max_depth_m`` (2-inch probes are "5 cm" probes).
      good_flags_only: Keep only values whose ISMN flag is ``G``.
      frozen_threshold_k: Mask in-situ soil moisture where soil temperature is below [K].
      window: Largest |t_satellite − t_in_situ| of a pair (pandas timedelta string).
      aggregate: ``"overpass"``, ``"daily"`` (pairs at the observation times, averaged per
        UTC day) or ``"daily_mean"`` (for daily products with nominal times: the product's
        value of a UTC day against the mean of the day's screened in-situ hours, at least
        :data:`DAILY_MIN_HOURS` of them; ``window`` is not used).
    """

    max_depth_m: float = 0.05
    depth_tolerance_m: float = 0.01
    good_flags_only: bool = True
    frozen_threshold_k: float = FREEZING_K
    window: str = "1h"
    aggregate: str = "daily"

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")
        if pd.Timedelta(self.window) < pd.Timedelta(0):
            raise ValueError(f"window must be >= 0, got {self.window!r}")


def select_depth(insitu: xr.Dataset, variable: str = dims.SOIL_MOISTURE, *,
                 max_depth_m: float = 0.05, tolerance_m: float = 0.01) -> xr.Dataset:
    """The stations whose ``variable`` sensor bottom is ≤ ``max_depth_m + tolerance_m``.

    Uses the per-station ``<variable>_depth_to`` coordinate [m] of :mod:`pipeline.io.ismn`
    datasets, else the variable's ``depth_m`` attr (one depth for every station).
    """
    key = f"{variable}_depth_to"
    if key in insitu.coords:
        depth = insitu[key]
    elif "depth_m" in insitu[variable].attrs:
        depth = xr.full_like(insitu[dims.STATION], insitu[variable].attrs["depth_m"], float)
    else:
        raise errors.InputDataError(f"in-situ dataset: variable '{variable}' has no depth "
                                    f"(no '{key}' coordinate, no 'depth_m' attr)")
    keep = np.asarray(depth.values <= max_depth_m + tolerance_m)
    return insitu.isel({dims.STATION: np.flatnonzero(keep)})


def screen_insitu(insitu: xr.Dataset, variable: str = dims.SOIL_MOISTURE, *,
                  good_flags_only: bool = True, frozen_threshold_k: float | None = FREEZING_K
                  ) -> xr.DataArray:
    """``variable`` with rejected values set to NaN (ISMN flag not G; frozen soil).

    Args:
      insitu: An ``insitu/{network}.zarr`` dataset (station, time).
      variable: Variable to screen.
      good_flags_only: Keep only values with ``<variable>_flag == 0`` (ISMN ``G``).
      frozen_threshold_k: Mask where ``soil_temperature`` < this [K] (None: no masking).
        Where soil temperature is not measured the value is kept.

    Returns:
      The screened DataArray (station, time), float as stored.
    """
    out = insitu[variable]
    flag = f"{variable}_flag"
    if good_flags_only and flag in insitu:
        out = out.where(insitu[flag] == 0)
    if frozen_threshold_k is not None and "soil_temperature" in insitu:
        ts = insitu["soil_temperature"]
        out = out.where(~(ts < frozen_threshold_k))
    return out


def insitu_daily(insitu: xr.Dataset, variable: str = dims.SOIL_MOISTURE, *,
                 stations: Sequence[str] | None = None, screen: bool = True) -> xr.DataArray:
    """Daily (UTC) means of an in-situ variable, (station, time), every day of the record.

    Args:
      insitu: An ``insitu/{network}.zarr`` dataset (station, time), e.g. hourly.
      variable: Variable to average.
      stations: Station ids to keep (default: all).
      screen: Apply :func:`screen_insitu` first (ISMN flag G only; frozen soil masked).

    Returns:
      float64 (station, time) with one step per calendar day from the first to the last; NaN on
      days without a value.  Equals ``resample(time="1D").mean()``, through pandas' resampler
      (about 15x faster than xarray's on the tiny archive's 24 hourly stations).
    """
    sub = insitu if stations is None else insitu.sel({dims.STATION: list(stations)})
    da = screen_insitu(sub, variable) if screen else sub[variable]
    frame = da.transpose(dims.TIME, dims.STATION).load().to_pandas().astype(np.float64)
    daily = frame.resample("1D").mean()
    coords = {k: c for k, c in da.coords.items() if dims.TIME not in c.dims}
    coords[dims.TIME] = daily.index.values
    return xr.DataArray(daily.to_numpy().T, dims=(dims.STATION, dims.TIME), coords=coords,
                        name=variable, attrs=da.attrs)


def _pairs_only(x: xr.DataArray, y: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    ok = np.isfinite(x) & np.isfinite(y)
    return x.where(ok), y.where(ok)


def _daily(x: xr.DataArray, y: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """Means per UTC day of the pairs (estimate and reference over the same pairs)."""
    xv, yv = np.asarray(x.values, np.float64), np.asarray(y.values, np.float64)
    ok = np.isfinite(xv) & np.isfinite(yv)
    day = np.asarray(x[dims.TIME].values).astype("datetime64[D]")[ok]
    days, inv = np.unique(day, return_inverse=True)
    n = np.bincount(inv, minlength=days.size)
    xd = np.bincount(inv, weights=xv[ok], minlength=days.size) / n
    yd = np.bincount(inv, weights=yv[ok], minlength=days.size) / n
    t = {dims.TIME: days.astype("datetime64[ns]")}
    return (xr.DataArray(xd, dims=(dims.TIME,), coords=t),
            xr.DataArray(yd, dims=(dims.TIME,), coords=t))


def _day_means(a: xr.DataArray, min_count: int = 1) -> xr.DataArray:
    """Mean of the finite values of each UTC day (days with fewer than ``min_count`` dropped)."""
    v = np.asarray(a.values, np.float64)
    ok = np.isfinite(v)
    day = np.asarray(a[dims.TIME].values).astype("datetime64[D]")[ok]
    days, inv = np.unique(day, return_inverse=True)
    n = np.bincount(inv, minlength=days.size)
    mean = np.bincount(inv, weights=v[ok], minlength=days.size) / np.maximum(n, 1)
    keep = n >= min_count
    return xr.DataArray(mean[keep], dims=(dims.TIME,),
                        coords={dims.TIME: days[keep].astype("datetime64[ns]")})


def match_series(estimate: xr.DataArray, reference: xr.DataArray, *,
                 window: str = "1h", aggregate: str = "daily") -> xr.Dataset:
    """Pair a satellite series with one station's series (nearest in time within ``window``).

    Args:
      estimate: Satellite/model values over ``time`` (UTC observation times; may repeat).
      reference: Screened in-situ values over a sorted, unique ``time`` axis (UTC).
      window: Largest time difference of a pair.
      aggregate: ``"overpass"`` (one pair per observation), ``"daily"`` (mean per UTC day of
        the pairs) or ``"daily_mean"`` (daily product vs the day's in-situ mean; see
        :class:`MatchSettings`).

    Returns:
      Dataset over ``time`` with ``estimate`` and ``reference`` (float64), only times where
      both are finite.
    """
    est = estimate.drop_vars([c for c in estimate.coords if c != dims.TIME]).astype(np.float64)
    est = est.isel({dims.TIME: np.flatnonzero(~np.isnat(est[dims.TIME].values))})
    ref = reference.drop_vars([c for c in reference.coords if c != dims.TIME])
    ref = ref.astype(np.float64)
    if not ref.indexes[dims.TIME].is_monotonic_increasing or not ref.indexes[dims.TIME].is_unique:
        ref = ref.sortby(dims.TIME).drop_duplicates(dims.TIME)
    if aggregate == "daily_mean":
        x, y = xr.align(_day_means(est), _day_means(ref, DAILY_MIN_HOURS), join="inner")
        ds = xr.Dataset({ESTIMATE: x, REFERENCE: y})
        return ds.isel({dims.TIME: np.flatnonzero(np.isfinite(x.values) & np.isfinite(y.values))})
    y = ref.reindex({dims.TIME: est[dims.TIME].values}, method="nearest",
                    tolerance=pd.Timedelta(window))
    y = y.assign_coords({dims.TIME: est[dims.TIME].values})
    x, y = _pairs_only(est, y)
    if aggregate == "daily":
        x, y = _daily(x, y)
    elif aggregate != "overpass":
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    ds = xr.Dataset({ESTIMATE: x, REFERENCE: y})
    ok = np.isfinite(ds[ESTIMATE].values) & np.isfinite(ds[REFERENCE].values)
    ds = ds.isel({dims.TIME: np.flatnonzero(ok)})
    if aggregate == "overpass" and ds.indexes[dims.TIME].has_duplicates:
        ds = ds.groupby(dims.TIME).mean()
    return ds


def _station_coords(insitu: xr.Dataset) -> dict:
    keep = [c for c in (dims.LAT, dims.LON, dims.ELEVATION, NETWORK) if c in insitu.coords]
    return {c: insitu[c] for c in keep}


def match_stations(estimates: Mapping[str, xr.DataArray], insitu: xr.Dataset,
                   settings: MatchSettings = MatchSettings(),
                   variable: str = dims.SOIL_MOISTURE) -> xr.Dataset:
    """Pair one satellite series per station with the screened stations of ``insitu``.

    Args:
      estimates: ``{station id: series over time}`` (e.g. the nearest grid point's series);
        stations of ``insitu`` without an entry are left out.
      insitu: An in-situ contract dataset; depth selection and screening are applied here.
      settings: The matching choices.
      variable: The in-situ variable (``soil_moisture``).

    Returns:
      Dataset over (station, time) with ``estimate`` and ``reference`` (NaN where no pair;
      time: the union of pair times, or every day from the first to the last for ``daily``),
      the station coords of ``insitu`` and attrs recording the
      settings.
    """
    sel = select_depth(insitu, variable, max_depth_m=settings.max_depth_m,
                       tolerance_m=settings.depth_tolerance_m)
    screened = screen_insitu(sel, variable, good_flags_only=settings.good_flags_only,
                             frozen_threshold_k=settings.frozen_threshold_k)
    ids = [str(s) for s in sel[dims.STATION].values if str(s) in estimates]
    if not ids:
        raise errors.InputDataError("no station passes the depth selection and has a series "
                                    f"(max depth {settings.max_depth_m} m)")
    parts = []
    for sid in ids:
        p = match_series(estimates[sid], screened.sel({dims.STATION: sid}), window=settings.window,
                         aggregate=settings.aggregate)
        parts.append(p.expand_dims({dims.STATION: [sid]}))
    out = xr.concat(parts, dim=dims.STATION, join="outer", **_CAT)
    if settings.aggregate in ("daily", "daily_mean") and out.sizes[dims.TIME]:
        # a regular daily axis: positions along time are days (ubrmsd_detrended's OLS index)
        t = out[dims.TIME].values
        out = out.reindex({dims.TIME: np.arange(t.min(), t.max() + np.timedelta64(1, "D"),
                                                np.timedelta64(1, "D"))})
    coords = _station_coords(sel.sel({dims.STATION: ids}))
    out = out.assign_coords({k: (dims.STATION, v.values) for k, v in coords.items()})
    out.attrs.update({k: (str(v) if not isinstance(v, bool) else int(v))
                      for k, v in dataclasses.asdict(settings).items()})
    out[REFERENCE].attrs["units"] = insitu[variable].attrs.get("units", "")
    out[ESTIMATE].attrs["units"] = estimates[ids[0]].attrs.get(
        "units", out[REFERENCE].attrs["units"])
    return out


def _overpass_times(product: xr.Dataset, lon: xr.DataArray) -> xr.DataArray:
    """UTC observation times (…, time[, pass]) of a gridded product at the stations."""
    if dims.LOCAL_TIME in product:
        hours = product[dims.LOCAL_TIME]
    elif dims.PASS in product.dims:
        hours = xr.DataArray([PASS_HOURS[str(p)] for p in product[dims.PASS].values],
                             dims=(dims.PASS,), coords={dims.PASS: product[dims.PASS]})
    else:
        hours = xr.DataArray(12.0)
    utc_h = hours - lon / 15.0
    ns = (utc_h * 3.6e12).fillna(0).astype(np.int64).astype("timedelta64[ns]")
    return product[dims.TIME] + ns


def match_gridded(product: xr.Dataset, insitu: xr.Dataset,
                  settings: MatchSettings = MatchSettings(),
                  variable: str = dims.SOIL_MOISTURE) -> xr.Dataset:
    """Pair a gridded product with stations: nearest cell, overpass time, ``settings``.

    Args:
      product: Dataset with ``variable`` over (time[, pass], y, x), ``grid``/``grid_window``
        attrs and optionally ``local_time`` (h) — any soil-moisture product of the contract.
      insitu: In-situ contract dataset (station, time).
      settings: The matching choices.

    Returns:
      As :func:`match_stations`; stations outside the product window are left out.
    """
    g, w = grid.window_from_attrs(product.attrs)
    lat, lon = insitu[dims.LAT].values, insitu[dims.LON].values
    rows, cols = grid.latlon_to_rowcol(g, lat, lon)
    r, c = rows - w.row0, cols - w.col0
    inside = (rows >= 0) & (r >= 0) & (r < w.shape[0]) & (c >= 0) & (c < w.shape[1])
    estimates = {}
    for k in np.flatnonzero(inside):
        sid = str(insitu[dims.STATION].values[k])
        cell = product.isel({dims.Y: int(r[k]), dims.X: int(c[k])})
        sm = cell[variable]
        times = _overpass_times(cell, xr.DataArray(float(lon[k])))
        if dims.PASS in sm.dims:
            sm = sm.stack(obs=(dims.TIME, dims.PASS))
            times = times.broadcast_like(cell[variable]).stack(obs=(dims.TIME, dims.PASS))
        else:
            sm = sm.rename({dims.TIME: "obs"})
            times = times.broadcast_like(cell[variable]).rename({dims.TIME: "obs"})
        vals = np.asarray(sm.values, np.float64)
        t = np.asarray(times.values)
        ok = np.isfinite(vals) & ~np.isnat(t)
        estimates[sid] = xr.DataArray(vals[ok], dims=(dims.TIME,), coords={dims.TIME: t[ok]})
    if not estimates:
        raise errors.InputDataError(f"no station lies inside the product window {w}")
    return match_stations(estimates, insitu, settings, variable)


def _trimmed(x: xr.DataArray, y: xr.DataArray, dim: str):
    """Both series cut to the span from their first to their last pair along ``dim``."""
    ok = np.isfinite(np.asarray(x.values, np.float64)) & np.isfinite(
        np.asarray(y.values, np.float64))
    idx = np.flatnonzero(ok.reshape(-1, x.sizes[dim]).any(axis=0) if x.ndim > 1 else ok)
    if idx.size:
        sl = {dim: slice(int(idx[0]), int(idx[-1]) + 1)}
        return x.isel(sl), y.isel(sl)
    return x, y


def _score_rows(x: xr.DataArray, y: xr.DataArray, dim) -> xr.DataArray:
    """metrics.score as a DataArray with a trailing ``metric`` dim (float64).

    With one ``dim`` and a ``station`` dim, each station is scored on its own span (first to
    last pair), so the detrending OLS index does not depend on the other stations' records.
    """
    if isinstance(dim, str) and dims.STATION in x.dims:
        keep = {c: x[c] for c in x.coords if x[c].dims == (dims.STATION,)}
        xb = x.drop_vars(list(keep))
        yb = y.drop_vars([c for c in keep if c in y.coords])
        rows = [_score_rows(xb.isel({dims.STATION: k}), yb.isel({dims.STATION: k}), dim)
                for k in range(x.sizes[dims.STATION])]
        out = xr.concat(rows, dim=dims.STATION, **_CAT).assign_coords(keep)
        return out.transpose(dims.STATION, ..., dims.METRIC)
    if isinstance(dim, str):
        x, y = _trimmed(x, y, dim)
        s = metrics.score(x, y, dim)
    else:  # pooled over several dims: detrending along a stacked axis is meaningless
        xs = x.stack(sample=dim)
        ys = y.stack(sample=dim)
        s = xr.Dataset({"n": metrics.n_pairs(xs, ys, "sample"),
                        "r": metrics.pearson_r(xs, ys, "sample"),
                        "bias": metrics.bias(xs, ys, "sample"),
                        "rmsd": metrics.rmsd(xs, ys, "sample"),
                        "ubrmsd": metrics.ubrmsd(xs, ys, "sample")})
        s["ubrmsd_detrended"] = xr.full_like(s["rmsd"], np.nan)
    da = xr.concat([s[k].astype(np.float64) for k in metrics.METRIC_NAMES], dim=dims.METRIC,
                   **_CAT)
    da = da.assign_coords({dims.METRIC: list(metrics.METRIC_NAMES)})
    return da.transpose(..., dims.METRIC)


def _metric_attrs(units: str) -> dict:
    return {"units": units, "long_name": "soil moisture validation metrics",
            "comment": "metric n [1], r [1], bias/rmsd/ubrmsd/ubrmsd_detrended [units]; "
                       "bias = mean(estimate) - mean(reference)"}


def station_table(pairs: xr.Dataset, variable: str = dims.SOIL_MOISTURE) -> xr.Dataset:
    """Per-station metrics: the data-contract "validation" dataset.

    Args:
      pairs: Output of :func:`match_stations`/:func:`match_gridded` (station, time).
      variable: Name of the metrics variable.

    Returns:
      Dataset with ``variable`` (station, metric) float64 (metrics of
      :data:`pipeline.metrics.METRIC_NAMES`), the station coords and the pairs' attrs.
    """
    da = _score_rows(pairs[ESTIMATE], pairs[REFERENCE], dims.TIME)
    out = da.to_dataset(name=variable)
    out[variable].attrs = _metric_attrs(pairs[ESTIMATE].attrs.get("units", ""))
    out.attrs.update(pairs.attrs)
    return out


def network_table(pairs: xr.Dataset, variable: str = dims.SOIL_MOISTURE) -> xr.Dataset:
    """Per-network metrics: ``pooled`` (all pairs of the network) and ``median`` (of stations).

    Returns:
      Dataset over (network, metric) with ``pooled`` and ``median`` (float64; pooled
      ``ubrmsd_detrended`` is NaN: detrending along pooled stations is undefined) and
      ``n_stations`` (network).
    """
    nets = (pairs[NETWORK].values if NETWORK in pairs.coords
            else np.array(["all"] * pairs.sizes[dims.STATION]))
    per_station = _score_rows(pairs[ESTIMATE], pairs[REFERENCE], dims.TIME)
    pooled, median, count = [], [], []
    names = sorted({str(n) for n in nets})
    for n in names:
        idx = np.flatnonzero(nets == n)
        p = pairs.isel({dims.STATION: idx})
        pooled.append(_score_rows(p[ESTIMATE], p[REFERENCE], (dims.STATION, dims.TIME)))
        median.append(per_station.isel({dims.STATION: idx}).median(dims.STATION))
        count.append(len(idx))
    units = pairs[ESTIMATE].attrs.get("units", "")
    out = xr.Dataset({
        "pooled": xr.concat(pooled, dim=NETWORK, **_CAT).assign_attrs(_metric_attrs(units)),
        "median": xr.concat(median, dim=NETWORK, **_CAT).assign_attrs(_metric_attrs(units)),
        "n_stations": (NETWORK, np.array(count, np.int64)),
    }).assign_coords({NETWORK: names})
    return out


def epoch_labels(times: np.ndarray | xr.DataArray,
                 sensor_names: Sequence[str] = dims.ARCHIVE_SENSORS) -> np.ndarray:
    """For each time, the ``+``-joined sensors operating that day (``"none"`` if none).

    Uses ``pipeline.sensors.get(name).operating(day)``; e.g. ``"amsr2+gmi+smap"``.
    """
    t = np.asarray(times, dtype="datetime64[ns]")
    days = t.astype("datetime64[D]")
    uniq, inv = np.unique(days, return_inverse=True)
    cat = [sensors.get(s) for s in sensor_names]
    labels = np.array(["+".join(s.name for s in cat if s.operating(d)) or "none" for d in uniq],
                      dtype=object)
    return labels[inv].astype(str) if t.size else np.array([], dtype=str)


def period_table(pairs: xr.Dataset, sensor_names: Sequence[str] = dims.ARCHIVE_SENSORS,
                 variable: str = dims.SOIL_MOISTURE) -> xr.Dataset:
    """Metrics per sensor epoch (periods with a fixed set of operating sensors).

    Args:
      pairs: Output of :func:`match_stations`/:func:`match_gridded` (station, time).
      sensor_names: Sensors whose operating periods define the epochs.

    Returns:
      Dataset with ``variable`` (period, station, metric) (per-station metrics within each
      epoch), ``pooled`` (period, metric), coords ``period`` (sensor-set label),
      ``period_start``/``period_end`` (first/last day with a pair) and ``n_days``.
    """
    labels = epoch_labels(pairs[dims.TIME].values, sensor_names)
    if labels.size == 0:
        raise errors.InputDataError("no pairs to split into sensor epochs")
    order = []
    for lab in labels:
        if lab not in order:
            order.append(lab)
    per, pooled, start, end, ndays = [], [], [], [], []
    t = pairs[dims.TIME].values
    for lab in order:
        idx = np.flatnonzero(labels == lab)
        p = pairs.isel({dims.TIME: idx})
        per.append(_score_rows(p[ESTIMATE], p[REFERENCE], dims.TIME))
        pooled.append(_score_rows(p[ESTIMATE], p[REFERENCE], (dims.STATION, dims.TIME)))
        start.append(t[idx].min())
        end.append(t[idx].max())
        ndays.append(np.unique(t[idx].astype("datetime64[D]")).size)
    units = pairs[ESTIMATE].attrs.get("units", "")
    out = xr.Dataset({
        variable: xr.concat(per, dim=PERIOD, **_CAT).assign_attrs(_metric_attrs(units)),
        "pooled": xr.concat(pooled, dim=PERIOD, **_CAT).assign_attrs(_metric_attrs(units)),
    })
    return out.assign_coords({PERIOD: order, "period_start": (PERIOD, np.array(start)),
                              "period_end": (PERIOD, np.array(end)),
                              "n_days": (PERIOD, np.array(ndays, np.int64))})
