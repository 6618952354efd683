"""Calibrate the SMAP retrieval per land cover against in-situ stations: τ_V/τ_H and T_eff.

Example::

    tbcube sm tune --root /data/transect-m25 --years 2015-2017
    tbcube sm retrieve --root /data/transect-m25     # uses {root}/models/sm-retrieval-tuned.json

Why: a polarisation-dependent canopy (τ_V ≠ τ_H, the MCCA premise of channel-specific VOD) that
the retrieval does not know biases soil moisture by ≈ 0.02–0.04 m3 m-3 and compresses its
dynamic range (docs/soil-moisture.md), and one day's two channels cannot identify the ratio.  As
SMAP tuned its per-land-cover vegetation parameters and its effective-temperature
parameterisation at core validation sites (Chaubell et al. 2020, MDCA; O'Neill et al. ATBD),
this job runs the retrieval at the station cells in the tuning years on a grid of trial ratios
p (:data:`P_TRIALS`) × effective-temperature offsets ΔT (:data:`TEFF_TRIALS`), and per
land-cover class:

* for each trial p, the ΔT at which the station-mean bias is zero (the core channel's absolute
  level: T_eff sets the mean, the T-free V/H ratio hardly changes the anomalies), and the
  station-mean ubRMSD² at that ΔT;
* the p that minimises that ubRMSD² (parabola through the trials around the best one): the
  ratio shapes the dynamic range, which station anomalies score independently of the stations'
  own offsets.

A station's error (offset a, gain b ~ U(0.8, 1.2) with mean 1, AR(1) noise in the simulator;
similar in ISMN) is independent of the retrieval's, so the class mean of station ubRMSD² ranks
trials as ubRMSD against the cell truth would, and the class-mean bias averages the offsets
out.  Classes with fewer than ``min_stations`` stations get the values fitted on all stations
together; where p has no leverage (bare soil) only ΔT is fitted.  Skill must be scored on cells
and years the tuning did not see (``sm retrieve`` reports both).

Output ``{root}/models/sm-retrieval-tuned.json``: ``pol_ratio_by_class``,
``teff_offset_by_class``, the defaults for other classes, the per-class bias and ubRMSD grids,
the station list and years, and ``reports/sm-tune.json`` (the same plus timings).
"""

from __future__ import annotations

import dataclasses
import time as _time
from collections.abc import Callable, Sequence

import dask
import numpy as np
import xarray as xr

from pipeline import dims, errors, soil_moisture, validation
from pipeline.graphs import retrieval
from pipeline.graphs.retrieval_teff import pointwise as _pointwise
from pipeline.graphs.retrieval_teff import station_cells
from pipeline.io import stores

__all__ = ["P_TRIALS", "TEFF_TRIALS", "TUNED_NAME", "choose", "load_tuned", "station_cells",
           "tune", "tuned_url"]

TUNED_NAME = "sm-retrieval-tuned.json"
P_TRIALS = (1.0, 1.05, 1.1, 1.15, 1.2)
P_LIMITS = (0.85, 1.25)  # plausible L-band τV/τH range for the fit [1]
TEFF_TRIALS = (-4.0, 0.0)  # K; the bias is close to linear in ΔT (≈ 0.013 m3 m-3 per K)
TEFF_LIMITS = (-8.0, 8.0)  # K; a larger miss is the ancillary temperature's to fix
MIN_LEVERAGE = 0.01  # m3 m-3 of bias change over the trials (less: bare soil)
Progress = Callable[[str], None] | None


def tuned_url(root: str) -> str:
    """``{root}/models/sm-retrieval-tuned.json``."""
    return stores.join(root, "models", TUNED_NAME)


def load_tuned(root: str, storage_options=None) -> dict | None:
    """The tuned table of ``root`` (None when ``tbcube sm tune`` has not run)."""
    return stores.read_table(tuned_url(root), ["pol_ratio_by_class"], "tuned-retrieval table",
                             storage_options)


def _zero_crossing(p: np.ndarray, bias: np.ndarray,
                   limits: tuple[float, float] = P_LIMITS) -> tuple[float | None, str]:
    """Setting at which the bias curve through the trials is zero, and how it was found.

    Piecewise-linear between the trials that bracket zero (the curve may be convex, so one line
    through all trials would miss), else extrapolated along the nearest end segment and clipped
    to ``limits``.  None where the curve is not increasing or the setting has no leverage
    (bias changes by < :data:`MIN_LEVERAGE` over the trials: bare soil for the ratio).
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
    clipped = float(np.clip(ratio, *limits))
    return clipped, "extrapolated" + (" (clipped)" if clipped != ratio else "")


def choose(p: Sequence[float], dt: Sequence[float], bias: np.ndarray,
           ub2: np.ndarray) -> dict:
    """τ_V/τ_H and T_eff offset of one class from its station means on the trial grid.

    Args:
      p: Trial ratios (n_p,), increasing.
      dt: Trial effective-temperature offsets (n_t,), increasing [K].
      bias: Station-mean bias of each trial (n_p, n_t) [m3 m-3].
      ub2: Station-mean ubRMSD² of each trial (n_p, n_t) [m6 m-6].

    Returns:
      ``{"pol_ratio", "teff_offset_k", "fit", "teff_at_zero_bias", "ubrmsd_at_zero_bias",
      "ratio_has_leverage"}``;
      ``pol_ratio`` is None where the ratio has no leverage (bare soil), ``teff_offset_k`` None
      where the offset has none (then the ratio of zero bias at ΔT = 0 is taken, as before the
      offset existed).
    """
    p, dt = np.asarray(p, float), np.asarray(dt, float)
    bias, ub2 = np.asarray(bias, float), np.asarray(ub2, float)
    t_star = [_zero_crossing(dt, bias[i], TEFF_LIMITS) for i in range(p.size)]
    t_zero = np.array([np.nan if t is None else t for t, _ in t_star])
    # ubRMSD² at that offset; beyond the trials np.interp holds the nearest trial's value
    u_zero = np.array([np.nan if not np.isfinite(t) else float(np.interp(t, dt, ub2[i]))
                       for i, t in enumerate(t_zero)])
    lev_p = np.abs(bias[-1] - bias[0])
    no_p = p.size < 2 or not np.nanmax(lev_p, initial=0.0) >= MIN_LEVERAGE
    out = {"teff_at_zero_bias": [None if not np.isfinite(t) else round(float(t), 3)
                                 for t in t_zero],
           "ubrmsd_at_zero_bias": [None if not np.isfinite(u) else round(float(np.sqrt(u)), 5)
                                   for u in u_zero],
           "ratio_has_leverage": not no_p}
    ok = np.isfinite(u_zero)
    if not ok.any():
        j0 = int(np.argmin(np.abs(dt)))
        ratio, how = (None, "no leverage") if no_p else _zero_crossing(p, bias[:, j0])
        return {**out, "pol_ratio": ratio, "teff_offset_k": None,
                "fit": f"ratio of zero bias at ΔT = {dt[j0]:g} K ({how}); ΔT has no leverage"}
    if no_p:
        return {**out, "pol_ratio": None, "teff_offset_k": float(np.nanmean(t_zero)),
                "fit": "ΔT of zero bias; the ratio has no leverage"}
    k = int(np.nanargmin(np.where(ok, u_zero, np.nan)))
    ratio, how = float(p[k]), "best trial"
    if 0 < k < p.size - 1 and ok[k - 1:k + 2].all():
        a, b, _ = np.polyfit(p[k - 1:k + 2], u_zero[k - 1:k + 2], 2)
        if a > 0:
            ratio, how = float(np.clip(-b / (2 * a), p[k - 1], p[k + 1])), "parabola"
    teff = float(np.interp(ratio, p[ok], t_zero[ok]))
    return {**out, "pol_ratio": ratio, "teff_offset_k": teff,
            "fit": f"least ubRMSD at zero bias ({how})"}


def tune(root: str, *, years: Sequence[int] | None = None, network: str | None = None,
         params: soil_moisture.RetrievalParams | None = None, min_stations: int = 3,
         min_days: int = 30, trials: Sequence[float] = P_TRIALS,
         teff_trials: Sequence[float] = TEFF_TRIALS, storage_options=None,
         progress: Progress = None) -> dict:
    """Fit τ_V/τ_H and the T_eff offset per class; writes ``models/sm-retrieval-tuned.json``.

    Args:
      root: Archive root with ``tb/smap.zarr``, ``static``, ``ancillary`` and ``insitu``.
      years: Tuning years (default: every SMAP year); skill should be judged on the others.
      network: In-situ network (default: the archive's only one; ``simnet`` among several).
      params: Retrieval settings other than the tuned ones (default :class:`RetrievalParams`).
      min_stations: Stations a class needs for its own values.
      min_days: Matched days a station needs to count.
      trials: Trial ratios (≥ 2), increasing.
      teff_trials: Trial effective-temperature offsets [K] (≥ 2), increasing.

    Returns:
      The table written (see the module doc).

    Raises:
      errors.StoreNotFound: no in-situ network store.
      errors.InputDataError: no station inside the window, or no station with ``min_days``.
    """
    from pipeline.simulate import INSITU_NETWORK

    t0 = _time.perf_counter()
    params = params or soil_moisture.RetrievalParams()
    network = network or stores.default_store_name(root, "insitu", storage_options,
                                                   preferred=INSITU_NETWORK)
    say = progress or (lambda _m: None)
    trials, teff_trials = [float(t) for t in trials], [float(t) for t in teff_trials]
    for name, tr in (("ratios", trials), ("T_eff offsets", teff_trials)):
        if len(tr) < 2 or not (np.diff(tr) > 0).all():
            raise errors.ConfigError(
                f"sm tune: trial {name} {tr} must be ≥ 2 increasing values")
    inputs = retrieval.open_inputs(root, storage_options, fit_proxy=True, progress=progress)
    i_url = stores.insitu_url(root, network)
    if not stores.exists(i_url, storage_options):
        raise errors.StoreNotFound(f"{i_url}: no in-situ network store (needed by sm tune)")
    insitu = stores.open_stations(i_url, "insitu", storage_options=storage_options)
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
        f"years {years[0]}–{years[-1]}; trial τV/τH {trials} × ΔT_eff {teff_trials} K")

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
        for dt in teff_trials:
            prm = dataclasses.replace(params, vod_pol_ratio=p, pol_ratio_by_class=(),
                                      teff_offset_k=dt, teff_offset_by_class=())
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
    n = np.maximum(n_days, 1)[None]
    bias_st = diff.sum(axis=2) / n
    ub2_st = (diff**2).sum(axis=2) / n - bias_st**2  # per station, over its matched days
    shape = (len(trials), len(teff_trials))
    lc = np.asarray(sub_static["landcover"].isel({dims.X: 0}).values).astype(int)

    def grids(members):
        return (bias_st[:, members].mean(axis=1).reshape(shape),
                ub2_st[:, members].mean(axis=1).reshape(shape))

    curves = {c: grids(usable & (lc == c)) for c in sorted(set(lc[usable].tolist()))}
    # The all-station values (classes with too few stations, classes without any) are fitted on
    # the stations where the ratio acts: bare-soil stations would only blur the ratio's effect.
    fits = {c: choose(trials, teff_trials, b, u) for c, (b, u) in curves.items()}
    acts = np.isin(lc, [c for c, f in fits.items() if f["ratio_has_leverage"]])
    pooled_b, pooled_u = grids(usable & acts) if (usable & acts).any() else grids(usable)
    pooled = choose(trials, teff_trials, pooled_b, pooled_u)

    def r(x, nd=4):
        return None if x is None else round(float(x), nd)

    ratios, offsets, classes = [], [], {}
    for c, (b, u) in curves.items():
        members = usable & (lc == c)
        fit = fits[c]
        enough = int(members.sum()) >= min_stations
        if enough and (fit["pol_ratio"] is not None or fit["teff_offset_k"] is not None):
            chosen, source = fit, "class"
            if not fit["ratio_has_leverage"]:
                source = "class (ΔT only: the ratio has no leverage here, bare soil)"
        else:
            chosen, source = pooled, "all stations"
            if not fit["ratio_has_leverage"]:  # bare soil: no ratio, the pooled ΔT
                chosen = {**pooled, "pol_ratio": None}
        classes[str(c)] = {"n_stations": int(members.sum()),
                           "n_days": int(n_days[members].sum()),
                           "bias_at_trials": np.round(b, 5).tolist(),
                           "ubrmsd_at_trials": np.round(np.sqrt(np.maximum(u, 0)), 5).tolist(),
                           "fit": fit["fit"],
                           "teff_at_zero_bias": fit["teff_at_zero_bias"],
                           "ubrmsd_at_zero_bias": fit["ubrmsd_at_zero_bias"],
                           "source": source,
                           "pol_ratio": r(chosen["pol_ratio"]),
                           "teff_offset_k": r(chosen["teff_offset_k"], 2)}
        if chosen["pol_ratio"] is not None:
            ratios.append([c, r(chosen["pol_ratio"])])
        if chosen["teff_offset_k"] is not None:
            offsets.append([c, r(chosen["teff_offset_k"], 2)])
    doc = {
        "pol_ratio_by_class": ratios,
        "default_pol_ratio": r(pooled["pol_ratio"]),
        "teff_offset_by_class": offsets,
        "default_teff_offset_k": r(pooled["teff_offset_k"], 2),
        "trials": {"pol_ratio": trials, "teff_offset_k": teff_trials},
        "years": years,
        "network": network,
        "stations": [s for s, u in zip(ids, usable, strict=True) if u],
        "station_cells": [list(rc) for rc in sorted({(int(r), int(c)) for r, c, u in
                                                     zip(rows, cols, usable, strict=True) if u})],
        "classes": classes,
        "pooled_bias_at_trials": np.round(pooled_b, 5).tolist(),
        "pooled_ubrmsd_at_trials": np.round(np.sqrt(np.maximum(pooled_u, 0)), 5).tolist(),
        "pooled_fit": pooled["fit"],
        "retrieval_settings": {"vod_window_days": params.vod_window_days,
                               "dielectric": params.dielectric},
        "seconds": round(_time.perf_counter() - t0, 1),
    }
    stores.write_json(tuned_url(root), doc, storage_options)
    stores.write_json(stores.reports_url(root, "sm-tune.json"), doc, storage_options)
    say(f"by class τV/τH {ratios}, ΔT_eff {offsets} K (all stations: "
        f"{doc['default_pol_ratio']}, {doc['default_teff_offset_k']} K); "
        f"wrote {tuned_url(root)}")
    return doc
