"""The SMAP retrieval's effective temperature when the archive has no reanalysis store.

Example::

    tbcube sm retrieve --root /data/archive      # no ancillary/{grid}.zarr: fits the proxy first
    # → {root}/models/sm-teff-proxy.json, reports/sm-teff-proxy.json

The retrieval's absolute anchor is the core channel, ``TB_V = T_eff · E_V``: it needs the
effective temperature of the top centimetres of soil at 06:00 and 18:00.  Operationally that is a
reanalysis (``ancillary/{grid}.zarr``, docs/stores.md).  An archive written to the data contract
alone has none; what it does have is the multi-frequency TB of AMSR2, GMI, AMSR-E or TMI over the
same cells, and in-situ soil temperature.  Ka-band (36–37 GHz) V is the standard microwave land
temperature proxy (Holmes et al. 2009, JGR 114 D04113; used by LPRM), and adding the other
channels from 10.65 GHz up lets a regression account for the emissivity's dependence on
vegetation and wetness (McFarland et al. 1990 did so for SSM/I, rms 2–3 K).

So this module fits, per SMAP pass, over the channels ≥ 10 GHz of one such sensor (the first of
:data:`SENSORS` with enough matched pairs), against the stations' soil temperature at the SMAP
overpass hour (local solar time, the hour nearest 06:00 / 18:00; daily station series: the
daily value for every pass):

* ``T_eff ≈ c0 + Σ c_i · TB_i`` by least squares on the **thawed** station-days (≥ 274.15 K),
  where soil moisture is retrieved: frozen soil's emissivity is another regime, and one line
  through both was biased by −2 K on thawed ground (tiny archive);
* a logistic **frozen-ground classifier** on all station-days (frozen: < 273.15 K), which
  becomes the retrieval's freeze/thaw input when no ``ft-smap-{grid}-v1`` product is published.
  Ground counts as frozen from probability :data:`FROZEN_PROBABILITY` = 0.2 up: a frozen day
  retrieved as thawed costs an SM error of 0.3 m3 m-3 and more, a thawed day left out only
  coverage.  The table records both rates at the stations.

The proxy is then the regression on every cell and day the sensor saw, with gaps of up to
``max_gap_days`` days filled by linear interpolation in time
(:func:`pipeline.soil_moisture.fill_time_gaps`; the frozen probability likewise); longer gaps
stay NaN and the retrieval flags those pixels as it does any missing temperature.

It is a fallback, and the reports say so (``effective_temperature``, ``frozen_ground``,
``effective_temperature_proxy`` in ``sm-retrieval.json``): measured numbers are in
docs/soil-moisture.md.  The per-class ΔT_eff of ``sm tune`` calibrates the proxy's level per
land cover, as it does the reanalysis'.

Output ``{root}/models/sm-teff-proxy.json`` (sensor, channels, coefficients and classifier per
pass, pairs, stations, residual std, classifier rates) and ``{root}/reports/sm-teff-proxy.json``
(the same).  An existing table is reused; delete it to refit.
"""

from __future__ import annotations

import datetime as _dt
import time as _time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from pipeline import dims, errors, grid, sensors, soil_moisture
from pipeline.io import stores

__all__ = ["MIN_PAIRS_PER_TERM", "SENSORS", "TABLE_NAME", "ensure", "fit", "fit_linear",
           "fit_logistic", "load", "logistic_probability", "pointwise", "proxy_frozen_state",
           "proxy_temperature", "station_cells", "station_pass_temperature",
           "station_temperature_at", "table_url"]

TABLE_NAME = "sm-teff-proxy.json"
SENSORS = ("amsr2", "gmi", "amsre", "tmi")  # sun-synchronous and global first
MIN_FREQUENCY_GHZ = 10.0  # 6.9/7.3 GHz: RFI-prone and the most soil-moisture dependent
MIN_STATIONS = 3
MIN_PAIRS_PER_TERM = 20  # matched station-days per regression coefficient
MAX_GAP_DAYS = 5
THAWED_K = 274.15  # station days at or above: the T_eff regression's (thawed ground)
FROZEN_K = 273.15  # station days below: frozen, for the frozen-ground classifier
# Ground counts as frozen from this classifier probability up.  Below 0.5 on purpose: a frozen
# day retrieved as thawed costs far more (frozen soil's permittivity gives SM errors of
# 0.3 m3 m-3 and more) than a thawed day left out costs coverage.  The table records both
# rates at the stations.
FROZEN_PROBABILITY = 0.2
SOIL_T = "soil_temperature"  # the in-situ variable (data-contract.md)
Progress = Callable[[str], None] | None


def table_url(root: str) -> str:
    """``{root}/models/sm-teff-proxy.json``."""
    return stores.join(root, "models", TABLE_NAME)


def load(root: str, storage_options=None) -> dict | None:
    """The fitted proxy table, or None when there is none.

    Raises:
      errors.ConfigError: the file is not a proxy table.
    """
    return stores.read_table(table_url(root), ["sensor", "channels", "coefficients"],
                             "T_eff proxy table", storage_options)


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


def pointwise(obj, rows: Sequence[int], cols: Sequence[int]):
    """``obj`` (DataArray or Dataset, or None) at the (row, col) cells, as a (…, y = cell,
    x = 1) object with plain indices: what per-cell kernels and features expect."""
    if obj is None:
        return None
    drop = [c for c in (dims.Y, dims.X, dims.LAT, dims.LON) if c in obj.coords]
    out = obj.drop_vars(drop).isel({dims.Y: xr.DataArray(np.asarray(rows), dims="_cell"),
                                    dims.X: xr.DataArray(np.asarray(cols), dims="_cell")})
    out = out.rename({"_cell": dims.Y}).expand_dims({dims.X: [0.0]}, axis=-1)
    return out.assign_coords({dims.Y: np.arange(len(rows), dtype=float)})


def _station_series(insitu: xr.Dataset, station: str) -> tuple[pd.Series, bool]:
    """One station's unflagged soil temperature [K] and whether the series is daily: indexed
    by local solar time (sub-daily) or by date (daily)."""
    da = insitu[SOIL_T].sel({dims.STATION: station})
    flag = f"{SOIL_T}_flag"
    if flag in insitu:
        da = da.where(insitu[flag].sel({dims.STATION: station}) == 0)
    s = da.to_pandas().astype(np.float64).dropna()
    t = pd.DatetimeIndex(s.index)
    daily = t.size < 2 or np.median(np.diff(t.values)) >= np.timedelta64(1, "D")
    if daily:
        index = t.normalize()
    else:
        index = t + pd.to_timedelta(float(insitu[dims.LON].sel({dims.STATION: station})) / 15.0,
                                    unit="h")
    s = pd.Series(s.to_numpy(), index=index)
    return s[~s.index.duplicated()], daily


def _at(series: pd.Series, daily: bool, when: pd.DatetimeIndex) -> np.ndarray:
    out = np.full(len(when), np.nan)
    ok = ~pd.isna(when)
    if series.empty or not ok.any():
        return out
    if daily:
        out[ok] = series.reindex(when[ok].normalize()).to_numpy()
    else:
        out[ok] = series.reindex(when[ok], method="nearest",
                                 tolerance=pd.Timedelta(minutes=30)).to_numpy()
    return out


def station_temperature_at(insitu: xr.Dataset, station: str,
                           when: pd.DatetimeIndex) -> np.ndarray:
    """A station's soil temperature at local solar times ``when`` [K]: the sample nearest each
    (within half an hour; a daily series: that day's value); NaN where none or flagged
    (``*_flag`` ≠ 0)."""
    return _at(*_station_series(insitu, station), pd.DatetimeIndex(when))


def station_pass_temperature(insitu: xr.Dataset, station: str,
                             hours: Mapping[str, float]) -> dict[str, pd.Series]:
    """One station's soil temperature at each pass's local solar hour, by local date
    (:func:`station_temperature_at` on every date of its record).  Returns ``{pass: Series
    indexed by date}`` (may be empty)."""
    series, daily = _station_series(insitu, station)
    days = series.index.normalize().unique()
    return {p: pd.Series(_at(series, daily, days + pd.to_timedelta(float(h), unit="h")),
                         index=days).dropna()
            for p, h in hours.items()}


def fit_linear(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Least squares ``y ≈ c0 + x @ c[1:]``; returns (coefficients, residual std)."""
    a = np.c_[np.ones(len(x)), x]
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return coef, float(np.std(y - a @ coef))


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-3,
                 iterations: int = 30) -> dict:
    """Logistic regression ``P(y = 1) = σ(w0 + ((x − mean)/scale) @ w[1:])`` by Newton steps
    (features standardised, a small ridge term keeps separable data finite).

    Returns ``{"mean", "scale", "weights"}`` (lists) for :func:`logistic_probability`.
    """
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    a = np.c_[np.ones(len(x)), (x - mean) / scale]
    w = np.zeros(a.shape[1])
    ridge = l2 * np.eye(a.shape[1])
    ridge[0, 0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a @ w)))
        h = a.T @ (a * (p * (1.0 - p) + 1e-9)[:, None]) + ridge
        step = np.linalg.solve(h, a.T @ (p - y) + ridge @ w)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return {"mean": [float(v) for v in mean], "scale": [float(v) for v in scale],
            "weights": [float(v) for v in w]}


def logistic_probability(x, model: Mapping):
    """``P(y = 1)`` of a :func:`fit_logistic` model for features ``x`` (…, n) (numpy or xarray
    with the features along the last axis)."""
    z = (np.asarray(x, np.float64) - np.asarray(model["mean"])) / np.asarray(model["scale"])
    w = np.asarray(model["weights"])
    return 1.0 / (1.0 + np.exp(-(w[0] + z @ w[1:])))


def _proxy_channels(tb: xr.Dataset) -> list[str]:
    freq = np.asarray(tb[dims.FREQUENCY_COORD].values, np.float64)
    return [str(c) for c, f in zip(tb[dims.CHANNEL].values, freq, strict=True)
            if f >= MIN_FREQUENCY_GHZ]


def fit(root: str, smap_tb: xr.Dataset, static: xr.Dataset, *, storage_options=None,
        candidates: Sequence[str] = SENSORS, max_gap_days: int = MAX_GAP_DAYS,
        progress: Progress = None) -> dict:
    """Fit the proxy on the archive's stations and write the table (see the module doc).

    Args:
      root: Archive root.
      smap_tb: The opened ``tb/smap.zarr`` (its cells and days define the product's).
      static: The static layers on those cells (window attrs locate the stations).

    Raises:
      errors.InputDataError: no station soil temperature, or no sensor with enough pairs.
    """
    say = progress or (lambda _m: None)
    t0 = _time.perf_counter()
    anc = stores.ancillary_url(root, static.attrs["grid"])
    nets = stores.store_names(root, "insitu", storage_options)
    hours = dict(sensors.get("smap").local_time_h)
    series: dict[str, dict[str, pd.Series]] = {}
    cells: dict[str, tuple[int, int]] = {}
    for net in nets:
        ins = stores.open_stations(stores.insitu_url(root, net), "insitu",
                                   storage_options=storage_options)
        if SOIL_T not in ins:
            continue
        for sid, rc in station_cells(static, ins).items():
            key = f"{net}:{sid}"
            series[key] = station_pass_temperature(ins, sid, hours)
            cells[key] = rc
    if not series:
        raise errors.InputDataError(
            f"{anc}: no reanalysis temperature, and no in-situ station with soil_temperature "
            f"in the window under {stores.join(root, 'insitu')} to calibrate a TB temperature "
            "proxy; provide ancillary/{grid}.zarr (docs/stores.md)")
    smap_days = pd.DatetimeIndex(smap_tb[dims.TIME].values).normalize()
    tried = []
    for name in candidates:
        url = stores.tb_url(root, name)
        if not stores.exists(url, storage_options):
            continue
        tb = stores.open_tb(url, storage_options=storage_options)
        stores.require_on_cells(tb, smap_tb, url, what="tb/smap.zarr")
        chans = _proxy_channels(tb)
        days = pd.DatetimeIndex(tb[dims.TIME].values).normalize()
        if not chans or not days.isin(smap_days).any():
            tried.append(f"{name}: {'no channel ≥ 10 GHz' if not chans else 'no SMAP day'}")
            continue
        keys = sorted(cells)
        rows = xr.DataArray([cells[k][0] for k in keys], dims="_s")
        cols = xr.DataArray([cells[k][1] for k in keys], dims="_s")
        at = (tb["tb"].sel({dims.CHANNEL: chans}).isel({dims.Y: rows, dims.X: cols})
              .transpose("_s", dims.PASS, dims.TIME, dims.CHANNEL).load().values)
        coef, resid, n_pairs, classifier = {}, {}, {}, {}
        used: set[str] = set()
        short = None
        for ip, p in enumerate(tb[dims.PASS].values):
            p = str(p)
            xs, ys = [], []
            for k, key in enumerate(keys):
                ref = series[key].get(p)
                if ref is None or ref.empty:
                    continue
                x = pd.DataFrame(at[k, ip], index=days, columns=chans)
                j = x.join(ref.rename("_t"), how="inner").dropna()
                j = j[j.index.isin(smap_days)]
                if len(j):
                    xs.append(j[chans].to_numpy())
                    ys.append(j["_t"].to_numpy())
                    used.add(key)
            n = sum(len(v) for v in ys)
            need = MIN_PAIRS_PER_TERM * (len(chans) + 1)
            if n < need:
                short = f"{name} {p}: {n} station-days with all of {len(chans)} channels < {need}"
                break
            x, y = np.concatenate(xs), np.concatenate(ys)
            thawed = y >= THAWED_K
            if thawed.sum() < need:
                short = f"{name} {p}: {int(thawed.sum())} thawed station-days < {need}"
                break
            # T_eff where SM is retrieved (thawed ground); frozen ground by its own classifier
            c, r = fit_linear(x[thawed], y[thawed])
            coef[p], resid[p], n_pairs[p] = [float(v) for v in c], round(r, 3), int(n)
            frozen = y < FROZEN_K
            if min(frozen.sum(), (~frozen).sum()) >= need:  # as many days a class as the fit
                model = fit_logistic(x, frozen.astype(np.float64))
                pred = logistic_probability(x, model) >= FROZEN_PROBABILITY
                model["threshold"] = FROZEN_PROBABILITY
                model["station_agreement"] = round(float(np.mean(pred == frozen)), 4)
                model["frozen_passed_as_thawed"] = round(float(np.mean(~pred[frozen])), 4)
                model["thawed_left_out"] = round(float(np.mean(pred[~frozen])), 4)
                model["n_frozen"] = int(frozen.sum())
                classifier[p] = model
        if short is not None:
            tried.append(short)
            continue
        if len(used) < MIN_STATIONS:
            tried.append(f"{name}: {len(used)} stations with matched days < {MIN_STATIONS}")
            continue
        table = {"sensor": name, "tb_store": url, "channels": chans, "coefficients": coef,
                 "n_pairs": n_pairs, "n_stations": len(used), "stations": sorted(used),
                 "networks": nets, "residual_std_thawed_k": resid,
                 "frozen_classifier": classifier or None, "max_gap_days": int(max_gap_days),
                 "pass_hours": hours, "min_frequency_ghz": MIN_FREQUENCY_GHZ,
                 "fitted": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                 "seconds": round(_time.perf_counter() - t0, 1)}
        stores.write_json(table_url(root), table, storage_options)
        stores.write_json(stores.reports_url(root, TABLE_NAME), table, storage_options)
        leak = {p: m["frozen_passed_as_thawed"] for p, m in classifier.items()}
        say(f"T_eff proxy: {name} {len(chans)} channels at {len(used)} stations, thawed "
            f"residual {resid} K, frozen station-days passed as thawed {leak or 'n/a'} "
            f"({table_url(root)})")
        return table
    detail = "; ".join(tried) if tried else f"none of {list(candidates)} under {root}/tb"
    raise errors.InputDataError(
        f"{anc}: no reanalysis temperature, and no TB temperature proxy could be fitted "
        f"({detail}); provide ancillary/{{grid}}.zarr (docs/stores.md)")


def proxy_temperature(root: str, table: Mapping, like: xr.Dataset,
                      storage_options=None) -> xr.DataArray:
    """The proxy T_eff (time, pass, y, x) [K] on ``like``'s days and cells, lazily.

    Raises:
      errors.InputDataError: the table's sensor store or channels are missing, or it lies on
        other cells.
    """
    url, chans, passes, x = _channels_on(root, table, like, storage_options)
    c = np.array([table["coefficients"][p] for p in passes], np.float64)
    w = xr.DataArray(c[:, 1:].astype(np.float32), dims=(dims.PASS, dims.CHANNEL),
                     coords={dims.PASS: like[dims.PASS], dims.CHANNEL: chans})
    c0 = xr.DataArray(c[:, 0].astype(np.float32), dims=(dims.PASS,),
                      coords={dims.PASS: like[dims.PASS]})
    t = (c0 + (x * w).sum(dims.CHANNEL, skipna=False)).astype(np.float32)
    t = t.transpose(dims.TIME, dims.PASS, dims.Y, dims.X)
    t = soil_moisture.fill_time_gaps(t, int(table.get("max_gap_days", MAX_GAP_DAYS)))
    drop = [k for k in t.coords if k not in t.dims]
    return t.drop_vars(drop).rename("soil_temperature").assign_attrs(
        units="K", long_name="effective temperature proxy from multi-frequency TB",
        source=f"{url} channels {chans}, {table_url(root)}")


def _channels_on(root: str, table: Mapping, like: xr.Dataset, storage_options):
    """The table's sensor channels (time, pass, y, x, channel) on ``like``'s days and cells."""
    url = stores.tb_url(root, str(table["sensor"]))
    tb = stores.open_tb(url, storage_options=storage_options)
    stores.require_on_cells(tb, like, url, what="tb/smap.zarr")
    chans = list(table["channels"])
    missing = [c for c in chans if c not in set(map(str, tb[dims.CHANNEL].values))]
    if missing:
        raise errors.InputDataError(
            f"{url}: variable 'tb' has no channel {missing} that {table_url(root)} needs")
    passes = [str(p) for p in like[dims.PASS].values]
    absent = [p for p in passes if p not in table["coefficients"]]
    if absent:
        raise errors.InputDataError(f"{table_url(root)}: no coefficients for pass {absent}")
    x = tb["tb"].sel({dims.CHANNEL: chans}).reindex({dims.PASS: like[dims.PASS]})
    x = x.reindex({dims.TIME: like[dims.TIME]})
    return url, chans, passes, x.transpose(dims.TIME, dims.PASS, dims.Y, dims.X, dims.CHANNEL)


def proxy_frozen_state(root: str, table: Mapping, like: xr.Dataset,
                       storage_options=None) -> xr.DataArray | None:
    """Frozen ground from the table's classifier, as ``ft_state`` (time, pass, y, x) int8:
    0 frozen, 1 thawed, −1 unknown (the retrieval's freeze/thaw input).  The frozen probability
    is gap-filled like the temperature.  None when the table has no classifier (too few frozen
    or thawed station-days): the retrieval then applies its temperature rule to the proxy."""
    models = table.get("frozen_classifier") or {}
    url, chans, passes, x = _channels_on(root, table, like, storage_options)
    if any(p not in models for p in passes):
        return None

    def prob(a, p):
        return logistic_probability(a, models[p]).astype(np.float32)

    parts = [xr.apply_ufunc(prob, x.sel({dims.PASS: p}), input_core_dims=[[dims.CHANNEL]],
                            kwargs={"p": p}, dask="parallelized", output_dtypes=[np.float32])
             for p in passes]
    pf = xr.concat(parts, dim=dims.PASS).transpose(dims.TIME, dims.PASS, dims.Y, dims.X)
    pf = soil_moisture.fill_time_gaps(pf, int(table.get("max_gap_days", MAX_GAP_DAYS)))
    thr = {p: float(models[p].get("threshold", FROZEN_PROBABILITY)) for p in passes}
    cut = xr.DataArray([thr[p] for p in passes], dims=(dims.PASS,),
                       coords={dims.PASS: pf[dims.PASS]})
    state = xr.where(pf >= cut, 0, 1).where(np.isfinite(pf), -1).astype(np.int8)
    drop = [k for k in state.coords if k not in state.dims]
    return state.drop_vars(drop).rename("ft_state").assign_attrs(
        long_name="freeze/thaw state from the TB proxy classifier (0 frozen, 1 thawed)",
        source=f"{url} channels {chans}, {table_url(root)}")


def ensure(root: str, smap_tb: xr.Dataset, static: xr.Dataset, *, storage_options=None,
           progress: Progress = None) -> dict | None:
    """The proxy table to use, fitting it when needed; None when the archive has a reanalysis.

    A reanalysis store with ``soil_temperature`` or ``surface_temperature`` always wins; else an
    existing table is reused (delete it to refit), else :func:`fit` writes one.
    """
    a_url = stores.ancillary_url(root, static.attrs["grid"])
    if stores.exists(a_url, storage_options):
        anc = stores.open_dataset(a_url, storage_options=storage_options)
        if soil_moisture.reanalysis_temperature(anc) is not None:
            return None
    table = load(root, storage_options)
    if table is not None:
        return table
    return fit(root, smap_tb, static, storage_options=storage_options, progress=progress)
