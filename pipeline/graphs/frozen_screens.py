"""Frozen-ground screens of the harmonised products when the archive has no reanalysis store.

Example::

    tbcube sm harmonise --root /data/archive   # no ancillary/{grid}.zarr: fits the screens first
    # → {root}/models/sm-frozen-screens.json, reports/sm-frozen-screens.json

With a reanalysis (``ancillary/{grid}.zarr``) every harmonised sensor is screened by the SMAP
retrieval's own rule, the pass's soil temperature (:func:`pipeline.graphs.harmonise.
ancillary_screens`).  Without one, a threshold on 36.5 GHz V (:data:`pipeline.graphs.harmonise.
FROZEN_TB36V_K`) was the only screen; on the tiny archive it let 14 % of the frozen pass-days
through and removed 34 % of the thawed ones (wet soil is radiometrically cold too).

So, as the SMAP retrieval's TB proxy does (:mod:`pipeline.graphs.retrieval_teff`), each sensor
gets a logistic classifier fitted at the in-situ stations: its calibrated TB on the channels the
LSTM uses (:data:`pipeline.harmonise.COMMON_CHANNELS`) and the observation's local time
(sine/cosine, for the precessing orbits) against frozen soil, the station's soil temperature
below 273.15 K at that local solar time (the sample nearest it, within half an hour; daily
series: the day's value).  Ground counts as frozen from probability
:data:`pipeline.graphs.retrieval_teff.FROZEN_PROBABILITY` up; where the classifier has no value,
and for a sensor with too few frozen or thawed station-days, the TB threshold stays.

Output ``{root}/models/sm-frozen-screens.json``: per sensor the model, the features, the rates
at the stations (``frozen_passed_as_thawed``, ``thawed_left_out``) or why there is none.  An
existing table is reused; delete it to refit.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from pipeline import dims, harmonise, soil_moisture
from pipeline.graphs import retrieval_teff
from pipeline.graphs.retrieval_teff import station_temperature_at
from pipeline.io import stores

__all__ = ["FEATURES", "TABLE_NAME", "ensure", "fit", "frozen_probability", "load",
           "station_temperature_at", "table_url"]

TABLE_NAME = "sm-frozen-screens.json"
FEATURES = tuple(f"tb_{c}" for c in harmonise.COMMON_CHANNELS) + ("lt_sin", "lt_cos")
MIN_PER_CLASS = 20 * (len(FEATURES) + 1)  # frozen and thawed station-days each
Progress = Callable[[str], None] | None


def table_url(root: str) -> str:
    """``{root}/models/sm-frozen-screens.json``."""
    return stores.join(root, "models", TABLE_NAME)


def load(root: str, storage_options=None) -> dict | None:
    """The fitted screens, or None when there are none."""
    return stores.read_table(table_url(root), ["sensors"], "frozen-screen table",
                             storage_options)


def _station_pairs(cal: xr.Dataset, sensor: str,
                   stations: list[tuple[xr.Dataset, str, int, int]]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, len(FEATURES)) and station soil temperature (n,) [K] of every station-day
    the sensor observed."""
    rows = [r for _, _, r, _ in stations]
    cols = [c for _, _, _, c in stations]
    pts = retrieval_teff.pointwise(cal[[dims.TB, dims.LOCAL_TIME]], rows, cols)
    pts = pts.transpose(dims.TIME, dims.PASS, dims.CHANNEL, dims.Y, dims.X, ...).load()
    feats = harmonise.dynamic_features(pts, sensor).sel({dims.FEATURE: list(FEATURES)})
    # (station, time × pass, …): one lookup per station for every observation of both passes
    n = len(stations)
    x = feats.transpose(dims.Y, dims.TIME, dims.PASS, dims.X, dims.FEATURE).values
    x = x.reshape(n, -1, len(FEATURES))
    lt = pts[dims.LOCAL_TIME].transpose(dims.Y, dims.TIME, dims.PASS, dims.X).values
    lt = lt.reshape(n, -1)
    days = pd.DatetimeIndex(pts[dims.TIME].values).normalize().repeat(pts.sizes[dims.PASS])
    xs, ys = [], []
    for k, (ins, sid, _, _) in enumerate(stations):
        seen = np.isfinite(lt[k]) & np.isfinite(x[k]).all(axis=-1)
        if not seen.any():
            continue
        when = days[seen] + pd.to_timedelta(lt[k][seen], unit="h")
        temp = station_temperature_at(ins, sid, pd.DatetimeIndex(when))
        good = np.isfinite(temp)
        xs.append(x[k][seen][good])
        ys.append(temp[good])
    if not xs:
        return np.empty((0, len(FEATURES))), np.empty(0)
    return np.concatenate(xs), np.concatenate(ys)


def _rates(model: Mapping, x: np.ndarray, frozen: np.ndarray) -> dict:
    """The classifier's errors at the stations (None for a class without days)."""
    pred = retrieval_teff.logistic_probability(x, model) >= retrieval_teff.FROZEN_PROBABILITY
    return {"frozen_passed_as_thawed": (round(float(np.mean(~pred[frozen])), 4)
                                        if frozen.any() else None),
            "thawed_left_out": (round(float(np.mean(pred[~frozen])), 4)
                                if (~frozen).any() else None)}


def _fit_entry(x: np.ndarray, y: np.ndarray) -> dict:
    frozen = y < retrieval_teff.FROZEN_K
    counts = {"n_frozen": int(frozen.sum()), "n_thawed": int((~frozen).sum())}
    if min(counts.values()) < MIN_PER_CLASS:
        return {"model": None, **counts,
                "why": f"fewer than {MIN_PER_CLASS} frozen or thawed station-days"}
    model = retrieval_teff.fit_logistic(x, frozen.astype(np.float64))
    return {"model": model, **counts, "threshold": retrieval_teff.FROZEN_PROBABILITY,
            **_rates(model, x, frozen)}


def fit(root: str, static: xr.Dataset, sensors: Sequence[str], *, storage_options=None,
        progress: Progress = None) -> dict:
    """Fit one classifier per sensor with a calibrated store; writes and returns the table."""
    say = progress or (lambda _m: None)
    stations = []
    nets = stores.store_names(root, "insitu", storage_options)
    for net in nets:
        ins = stores.open_stations(stores.insitu_url(root, net), "insitu",
                                   storage_options=storage_options)
        if retrieval_teff.SOIL_T not in ins:
            continue
        ins = ins[[v for v in (retrieval_teff.SOIL_T, f"{retrieval_teff.SOIL_T}_flag")
                   if v in ins]].load()
        for sid, (r, c) in retrieval_teff.station_cells(static, ins).items():
            stations.append((ins, sid, r, c))
    out: dict = {"sensors": {}, "features": list(FEATURES), "networks": nets,
                 "n_stations": len(stations),
                 "fitted": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    pairs = {}
    for s in sensors:
        url = stores.calibrated_url(root, s)
        if not stores.exists(url, storage_options):
            continue
        if not stations:
            out["sensors"][s] = {"model": None, "why": "no station with soil_temperature"}
            continue
        cal = stores.open_tb(url, storage_options=storage_options)
        stores.require_on_cells(cal, static, url, what="the archive's static store")
        pairs[s] = _station_pairs(cal, s, stations)
        out["sensors"][s] = _fit_entry(*pairs[s])
    # A sensor with too few frozen or thawed station-days (TMI, south of 38°) borrows the
    # classifier fitted on every sensor's days: the TB are on one calibrated scale.
    lacking = [s for s, e in out["sensors"].items() if e["model"] is None and s in pairs]
    if lacking and pairs:
        pooled = _fit_entry(np.concatenate([p[0] for p in pairs.values()]),
                            np.concatenate([p[1] for p in pairs.values()]))
        if pooled["model"] is not None:
            for s in lacking:
                x, y = pairs[s]
                out["sensors"][s] = {
                    "model": pooled["model"], "threshold": pooled["threshold"],
                    "borrowed": f"pooled over {sorted(pairs)}",
                    "why_not_own": out["sensors"][s]["why"],
                    "n_frozen": int((y < retrieval_teff.FROZEN_K).sum()),
                    "n_thawed": int((y >= retrieval_teff.FROZEN_K).sum()),
                    **_rates(pooled["model"], x, y < retrieval_teff.FROZEN_K)}
    for s, entry in out["sensors"].items():
        say(f"frozen screen {s}: " + (
            f"{entry.get('borrowed', 'own')}; {entry['n_frozen']} frozen / "
            f"{entry['n_thawed']} thawed station-days, frozen passed as thawed "
            f"{entry['frozen_passed_as_thawed']}, thawed left out {entry['thawed_left_out']}"
            if entry["model"] else f"none ({entry['why']}): 36.5 GHz V threshold"))
    stores.write_json(table_url(root), out, storage_options)
    stores.write_json(stores.reports_url(root, TABLE_NAME), out, storage_options)
    return out


def ensure(root: str, static: xr.Dataset, sensors: Sequence[str], *, ancillary=None,
           storage_options=None, progress: Progress = None) -> dict | None:
    """The screens to use: None when ``ancillary`` has a temperature (its rule applies), else
    the existing table, else a fitted one."""
    if ancillary is not None and soil_moisture.reanalysis_temperature(ancillary) is not None:
        return None
    return load(root, storage_options) or fit(root, static, sensors,
                                              storage_options=storage_options,
                                              progress=progress)


def frozen_probability(feats: xr.DataArray, model: Mapping) -> xr.DataArray:
    """P(frozen) (time, pass, y, x) from the harmonisation features (…, feature), lazily."""
    x = feats.sel({dims.FEATURE: list(FEATURES)})

    def prob(a):
        return retrieval_teff.logistic_probability(a, model).astype(np.float32)

    return xr.apply_ufunc(prob, x, input_core_dims=[[dims.FEATURE]], dask="parallelized",
                          output_dtypes=[np.float32])
