"""Calibrate the SMAP retrieval's τ_V/τ_H per land cover against in-situ stations.

Example::

    tbcube sm tune --root /data/transect-m25 --years 2015-2017
    tbcube sm retrieve --root /data/transect-m25     # uses {root}/models/sm-retrieval-tuned.json

Why: a polarisation-dependent canopy (τ_V ≠ τ_H, the MCCA premise of channel-specific VOD) that
the retrieval does not know biases soil moisture by ≈ 0.02–0.04 m3 m-3 (docs/soil-moisture.md),
and one day's two channels cannot identify the ratio.  As SMAP tuned its per-land-cover
vegetation and roughness parameters at core validation sites (Chaubell et al. 2020, MDCA), this
job runs the retrieval at the station cells in the tuning years for a few trial ratios, finds
per land-cover class the ratio at which the mean station-weighted bias against in-situ soil
moisture is zero (linear fit through the trials), and writes the table.  Classes with fewer than
``min_stations`` stations get the ratio fitted on all stations together.

Station soil moisture is a point: its offset from the cell (σ ≈ 0.03 m3 m-3 in the simulator's
network, similar in ISMN) is why many stations per class are needed and why skill must be
scored on cells and years the tuning did not see (``sm retrieve`` reports both).

Output ``{root}/models/sm-retrieval-tuned.json``: ``pol_ratio_by_class``, the per-class bias
curves, the station list and years, and ``reports/sm-tune.json`` (the same plus timings).
"""

from __future__ import annotations

import dataclasses
import time as _time
from collections.abc import Callable, Sequence

import dask
import numpy as np
import xarray as xr

from pipeline import dims, errors, grid, soil_moisture, validation
from pipeline.graphs import retrieval
from pipeline.io import stores

__all__ = ["P_TRIALS", "TUNED_NAME", "load_tuned", "station_cells", "tune", "tuned_url"]

TUNED_NAME = "sm-retrieval-tuned.json"
P_TRIALS = (0.95, 1.05, 1.15)
P_LIMITS = (0.85, 1.25)  # plausible L-band τV/τH range for the fit [1]
MIN_LEVERAGE = 0.01  # m3 m-3 of bias change over the trials (less: bare soil)
Progress = Callable[[str], None] | None


def tuned_url(root: str) -> str:
    """``{root}/models/sm-retrieval-tuned.json``."""
    return stores.join(root, "models", TUNED_NAME)


def load_tuned(root: str, storage_options=None) -> dict | None:
    """The tuned table of ``root`` (None when ``tbcube sm tune`` has not run)."""
    url = tuned_url(root)
    if not stores.exists(url, storage_options):
        return None
    doc = stores.read_json(url, storage_options)
    if not isinstance(doc, dict) or "pol_ratio_by_class" not in doc:
        raise errors.ConfigError(f"{url}: not a tuned-retrieval table (no 'pol_ratio_by_class')")
    return doc


def station_cells(static: xr.Dataset, insitu: xr.Dataset) -> dict[str, tuple[int, int]]:
    """``{station id: (row, col)}`` in the window of ``static`` (stations outside left out)."""
    g, w = grid.window_from_attrs(static.attrs)
    rows, cols = grid.latlon_to_rowcol(g, insitu[dims.LAT].values, insitu[dims.LON].values)
    out = {}
    for k, sid in enumerate(insitu[dims.STATION].values):
        r, c = int(rows[k]) - w.row0, int(cols[k]) - w.col0
        if rows[k] >= 0 and 0 <= r < static.sizes[dims.Y] and 0 <= c < static.sizes[dims.X]:
            out[str(sid)] = (r, c)
    return out


def _pointwise(da, rows: np.ndarray, cols: np.ndarray):
    """``da`` at the (row, col) cells, as a (…, y = cell, x = 1) array with plain indices."""
    if da is None:
        return None
    drop = [c for c in (dims.Y, dims.X, dims.LAT, dims.LON) if c in da.coords]
    out = da.drop_vars(drop).isel({dims.Y: xr.DataArray(rows, dims="_cell"),
                                   dims.X: xr.DataArray(cols, dims="_cell")})
    out = out.rename({"_cell": dims.Y}).expand_dims({dims.X: [0.0]}, axis=-1)
    return out.assign_coords({dims.Y: np.arange(len(rows), dtype=float)})


def _zero_crossing(p: np.ndarray, bias: np.ndarray) -> tuple[float | None, str]:
    """Ratio at which the bias curve through the trials is zero, and how it was found.

    Piecewise-linear between the trials that bracket zero (the curve is convex, so one line
    through all trials would miss), else extrapolated along the nearest end segment and clipped
    to :data:`P_LIMITS`.  None where the curve is not increasing or the ratio has no leverage
    (bias changes by < :data:`MIN_LEVERAGE` over the trials: bare soil).
    """
    ok = np.isfinite(bias)
    p, b = p[ok], bias[ok]
    if p.size < 2:
        return None, "too few trials"
    if b[-1] - b[0] < MIN_LEVERAGE:
        return None, "no leverage" if abs(b[-1] - b[0]) < MIN_LEVERAGE else "not increasing"
    for k in range(p.size - 1):
        if b[k] <= 0.0 <= b[k + 1] and b[k + 1] > b[k]:
            return float(p[k] - b[k] * (p[k + 1] - p[k]) / (b[k + 1] - b[k])), "interpolated"
    k = 0 if b[0] > 0 else p.size - 2
    slope = (b[k + 1] - b[k]) / (p[k + 1] - p[k])
    if not slope > 0:
        return None, "not increasing"
    ratio = float(p[k] - b[k] / slope)
    clipped = float(np.clip(ratio, *P_LIMITS))
    return clipped, "extrapolated" + (" (clipped)" if clipped != ratio else "")


def tune(root: str, *, years: Sequence[int] | None = None, network: str | None = None,
         params: soil_moisture.RetrievalParams | None = None, min_stations: int = 3,
         min_days: int = 30, trials: Sequence[float] = P_TRIALS, storage_options=None,
         progress: Progress = None) -> dict:
    """Fit the per-class τ_V/τ_H and write ``models/sm-retrieval-tuned.json``; returns it.

    Args:
      root: Archive root with ``tb/smap.zarr``, ``static``, ``ancillary`` and ``insitu``.
      years: Tuning years (default: every SMAP year); skill should be judged on the others.
      network: In-situ network (default: the simulator's, ``simnet``).
      params: Retrieval settings other than the ratio (default :class:`RetrievalParams`).
      min_stations: Stations a class needs for its own ratio.
      min_days: Matched days a station needs to count.
      trials: Trial ratios (≥ 2); the bias is nearly linear in the ratio over 0.9–1.2.

    Raises:
      errors.StoreNotFound: no in-situ network store.
      errors.InputDataError: no station inside the window, or no station with ``min_days``.
    """
    from pipeline.simulate import INSITU_NETWORK

    t0 = _time.perf_counter()
    params = params or soil_moisture.RetrievalParams()
    network = network or INSITU_NETWORK
    say = progress or (lambda _m: None)
    if len(trials) < 2:
        raise errors.ConfigError("sm tune: need at least two trial ratios")
    inputs = retrieval.open_inputs(root, storage_options)
    if inputs["surface_temperature"] is None:
        raise errors.InputDataError(
            f"{stores.ancillary_url(root, inputs['grid'])}: no 'soil_temperature' or "
            "'surface_temperature' (the retrieval's effective temperature)")
    i_url = stores.insitu_url(root, network)
    if not stores.exists(i_url, storage_options):
        raise errors.StoreNotFound(f"{i_url}: no in-situ network store (needed by sm tune)")
    insitu = stores.open_dataset(i_url, storage_options=storage_options)
    cells = station_cells(inputs["static"], insitu)
    if not cells:
        raise errors.InputDataError(f"{i_url}: no station inside the window of {root}")
    ids = sorted(cells)
    rows = np.array([cells[s][0] for s in ids])
    cols = np.array([cells[s][1] for s in ids])
    tb = inputs["tb"]
    all_years = sorted({int(y) for y in tb[dims.TIME].dt.year.values})
    years = sorted(int(y) for y in (years or all_years))
    tsel = tb[dims.TIME].dt.year.isin(years).values
    if not tsel.any():
        raise errors.InputDataError(f"{stores.tb_url(root, 'smap')}: no time step in years "
                                    f"{years}")
    tb = tb.isel({dims.TIME: np.flatnonzero(tsel)})
    say(f"{len(ids)} stations of {network} in {len(set(zip(rows, cols, strict=True)))} cells; "
        f"years {years[0]}–{years[-1]}; trial τV/τH {list(trials)}")

    def point(da):
        return _pointwise(da, rows, cols)

    static = inputs["static"]
    sub_static = xr.Dataset({k: point(static[k]) for k in (
        "clay_fraction", "sand_fraction", "bulk_density", "water_fraction", "landcover")})
    sub_tb = point(tb.drop_vars([c for c in ("lat", "lon") if c in tb.coords]))
    sub_tb = sub_tb.assign_attrs(tb.attrs).chunk({dims.Y: -1})
    kw = {"surface_temperature": point(inputs["surface_temperature"]),
          "snow_water_equivalent": point(inputs["snow_water_equivalent"]),
          "ft_state": point(inputs["ft_state"])}
    lazy = []
    for p in trials:
        prm = dataclasses.replace(params, vod_pol_ratio=float(p), pol_ratio_by_class=())
        ds = retrieval.retrieve(sub_tb, sub_static, params=prm, **kw)
        lazy.append(ds[dims.SOIL_MOISTURE].mean(dims.PASS).isel({dims.X: 0}, drop=True))
    with dask.config.set({"array.slicing.split_large_chunks": False}):
        est = dask.compute(*lazy)
    ref = validation.insitu_daily(insitu, stations=ids)  # flag G only, no frozen soil
    days = est[0][dims.TIME].values
    ref = ref.reindex({dims.TIME: days}).transpose(dims.STATION, dims.TIME).values
    e = np.stack([a.transpose(dims.Y, dims.TIME).values for a in est])  # (trial, station, time)
    ok = np.isfinite(ref)[None] & np.isfinite(e)
    ok = ok.all(axis=0)  # the same days for every trial
    n_days = ok.sum(axis=1)
    usable = n_days >= min_days
    if not usable.any():
        raise errors.InputDataError(
            f"{i_url}: no station has {min_days} days matched with the retrieval in {years}")
    diff = np.where(ok[None], e - ref[None], 0.0)
    bias_st = np.where(usable[None], diff.sum(axis=2) / np.maximum(n_days, 1)[None], np.nan)
    lc = np.asarray(sub_static["landcover"].isel({dims.X: 0}).values).astype(int)
    p = np.asarray(trials, float)
    # The all-station ratio (classes with too few stations, classes without any) is fitted on
    # the stations where the ratio acts: bare-soil stations would only shift the curve.
    curves = {c: bias_st[:, usable & (lc == c)].mean(axis=1)
              for c in sorted(set(lc[usable].tolist()))}
    acts = np.isin(lc, [c for c, b in curves.items() if b[-1] - b[0] >= MIN_LEVERAGE])
    pooled_curve = bias_st[:, usable & acts].mean(axis=1) if (usable & acts).any() else \
        bias_st[:, usable].mean(axis=1)
    pooled_p, pooled_how = _zero_crossing(p, pooled_curve)
    table, classes = [], {}
    for c, curve in curves.items():
        members = usable & (lc == c)
        ratio, how = _zero_crossing(p, curve)
        enough = int(members.sum()) >= min_stations
        if how == "no leverage":
            chosen, source = None, "none: the ratio has no leverage here (bare soil)"
        elif enough and ratio is not None:
            chosen, source = ratio, "class"
        else:
            chosen, source = pooled_p, "all stations"
        classes[str(c)] = {"n_stations": int(members.sum()),
                           "n_days": int(n_days[members].sum()),
                           "bias_at_trials": [round(float(b), 5) for b in curve],
                           "fit": how,
                           "fitted_ratio": None if ratio is None else round(ratio, 4),
                           "source": source,
                           "pol_ratio": None if chosen is None else round(chosen, 4)}
        if chosen is not None:
            table.append([c, round(chosen, 4)])
    doc = {
        "pol_ratio_by_class": table,
        "default_pol_ratio": None if pooled_p is None else round(pooled_p, 4),
        "trials": list(map(float, trials)),
        "years": years,
        "network": network,
        "stations": [s for s, u in zip(ids, usable, strict=True) if u],
        "station_cells": [list(rc) for rc in sorted({(int(r), int(c)) for r, c, u in
                                                     zip(rows, cols, usable, strict=True) if u})],
        "classes": classes,
        "pooled_bias_at_trials": [round(float(b), 5) for b in pooled_curve],
        "pooled_fit": pooled_how,
        "retrieval_settings": {"vod_window_days": params.vod_window_days,
                               "dielectric": params.dielectric},
        "seconds": round(_time.perf_counter() - t0, 1),
    }
    stores.write_json(tuned_url(root), doc, storage_options)
    stores.write_json(stores.reports_url(root, "sm-tune.json"), doc, storage_options)
    say(f"τV/τH by class {table} (all stations: {doc['default_pol_ratio']}); "
        f"wrote {tuned_url(root)}")
    return doc
