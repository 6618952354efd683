"""pipeline.validation on synthetic stations and products with known answers; pytesmo metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pytesmo import metrics as pm

from pipeline import dims, errors, grid, schema, sensors
from pipeline import validation as val
from pipeline.io import ismn

T0 = np.datetime64("2015-03-20T00:00", "ns")


def _insitu(n_hours: int, values: np.ndarray, *, flags=None, ts=None, depth=(0.0508, 0.0508),
            lat=(34.0, 35.0), lon=(-100.0, -101.0)) -> xr.Dataset:
    """A 2-station contract in-situ dataset (hourly)."""
    time = T0 + np.arange(n_hours) * np.timedelta64(1, "h")
    ds = xr.Dataset(
        {dims.SOIL_MOISTURE: ((dims.STATION, dims.TIME), values.astype(np.float32),
                              {"units": "m3 m-3", "depth_m": max(depth)}),
         "soil_moisture_flag": ((dims.STATION, dims.TIME),
                                np.zeros(values.shape, np.uint8) if flags is None else flags)},
        coords={dims.STATION: ["a", "b"], dims.TIME: time, dims.LAT: (dims.STATION, list(lat)),
                dims.LON: (dims.STATION, list(lon)),
                dims.ELEVATION: (dims.STATION, [100.0, 200.0]),
                "network": (dims.STATION, ["net1", "net2"]),
                "soil_moisture_depth_to": (dims.STATION, list(depth))})
    if ts is not None:
        ds["soil_temperature"] = ((dims.STATION, dims.TIME), ts.astype(np.float32),
                                  {"units": "K", "depth_m": 0.05})
    return ds


def test_match_window_and_daily_mean():
    """Reference = hour index; estimates 20 min and 90 min off: only the first pairs (±1 h)."""
    n = 72
    ref = np.tile(np.arange(n, dtype=float), (2, 1))
    ins = _insitu(n, ref)
    t_est = np.array([T0 + np.timedelta64(6 * 60 + 20, "m"),      # 06:20 → hour 6
                      T0 + np.timedelta64(18 * 60 + 90, "m"),     # 19:30 → > 1 h from... 19/20
                      T0 + np.timedelta64(30 * 60 - 40, "m"),     # 29:20 → hour 29
                      T0 + np.timedelta64(40, "h") + np.timedelta64(3, "h")])
    est = xr.DataArray([1.0, 2.0, 3.0, np.nan], dims=(dims.TIME,), coords={dims.TIME: t_est})
    ov = val.match_series(est, ins.soil_moisture.sel(station="a"), window="1h",
                          aggregate="overpass")
    # 19:30 is 30 min from both 19:00 and 20:00: still within the window; NaN estimate dropped
    assert ov.sizes[dims.TIME] == 3
    np.testing.assert_array_equal(ov.reference.values[[0, 2]], [6.0, 29.0])
    tight = val.match_series(est, ins.soil_moisture.sel(station="a"), window="15min",
                             aggregate="overpass")
    assert tight.sizes[dims.TIME] == 0      # every estimate is ≥ 20 min from an hour
    day = val.match_series(est, ins.soil_moisture.sel(station="a"), window="1h",
                           aggregate="daily")
    assert list(day.time.values) == [T0, T0 + np.timedelta64(1, "D")]
    assert day.estimate.values[0] == pytest.approx(1.5)            # mean of 06:20 and 19:30
    assert day.reference.values[0] == pytest.approx((6.0 + ov.reference.values[1]) / 2)
    assert day.estimate.values[1] == 3.0 and day.reference.values[1] == 29.0


def test_screening_flags_frozen_and_depth():
    n = 10
    v = np.full((2, n), 0.3)
    flags = np.zeros((2, n), np.uint8)
    flags[0, 2] = ismn.FLAG_BITS["D_T"]
    flags[0, 3] = ismn.FLAG_BITS["U"]
    ts = np.full((2, n), 280.0)
    ts[1, 4] = 272.0
    ts[1, 5] = np.nan                 # not measured that hour: kept
    ds = _insitu(n, v, flags=flags, ts=ts, depth=(0.0508, 0.17))
    s = val.screen_insitu(ds)
    assert np.isnan(s.values[0, [2, 3]]).all() and np.isfinite(s.values[0, [0, 1, 4]]).all()
    assert np.isnan(s.values[1, 4]) and np.isfinite(s.values[1, 5])
    assert int(np.isnan(s.values).sum()) == 3
    assert val.screen_insitu(ds, good_flags_only=False, frozen_threshold_k=None).notnull().all()
    assert list(val.select_depth(ds).station.values) == ["a"]
    assert list(val.select_depth(ds, max_depth_m=0.2).station.values) == ["a", "b"]
    assert list(val.select_depth(ds, tolerance_m=0.0).station.values) == []


def test_insitu_daily_equals_xarray_resample_of_the_screened_series():
    n = 24 * 5 + 7                                 # a partial last day
    rng = np.random.default_rng(1)
    v = rng.uniform(0.1, 0.4, (2, n))
    v[1, 30:60] = np.nan                           # day 2 of station b: 6 values left
    v[0, 48:72] = np.nan                           # day 3 of station a: no value
    flags = np.zeros((2, n), np.uint8)
    flags[0, 5] = ismn.FLAG_BITS["D_T"]
    ts = np.full((2, n), 280.0)
    ts[1, 100:110] = 270.0
    ds = _insitu(n, v, flags=flags, ts=ts)
    got = val.insitu_daily(ds)
    ref = val.screen_insitu(ds).resample(time="1D").mean()
    assert got.dims == (dims.STATION, dims.TIME) and got.sizes[dims.TIME] == 6
    xr.testing.assert_allclose(got, ref.astype(np.float64))
    assert np.isnan(got.sel(station="a").values[2])
    assert list(got[dims.LAT].values) == [34.0, 35.0]
    raw = val.insitu_daily(ds, stations=["b"], screen=False)
    xr.testing.assert_allclose(raw, ds.soil_moisture.sel(station=["b"]).resample(time="1D")
                               .mean().astype(np.float64))


def _noisy_pairs(seed=0, n=400):
    rng = np.random.default_rng(seed)
    truth = 0.25 + 0.08 * np.sin(np.arange(n) / 20.0)
    ref = np.stack([truth + rng.normal(0, 0.01, n), truth + rng.normal(0, 0.02, n)])
    ins = _insitu(n, ref)
    t = ins.time.values
    est = {"a": xr.DataArray(0.9 * truth + 0.05 + rng.normal(0, 0.03, n), dims=(dims.TIME,),
                             coords={dims.TIME: t + np.timedelta64(10, "m")}),
           "b": xr.DataArray(truth - 0.02 + rng.normal(0, 0.04, n), dims=(dims.TIME,),
                             coords={dims.TIME: t - np.timedelta64(25, "m")})}
    est["b"][::7] = np.nan
    return est, ins


def test_station_and_network_tables_equal_pytesmo():
    est, ins = _noisy_pairs()
    pairs = val.match_stations(est, ins, val.MatchSettings(aggregate="overpass"))
    table = val.station_table(pairs)
    schema.check(table, schema.VALIDATION, context="synthetic validation")
    for s in ("a", "b"):
        p = pairs.sel(station=s)
        ok = np.isfinite(p.estimate.values) & np.isfinite(p.reference.values)
        x, y = p.estimate.values[ok], p.reference.values[ok]
        row = table.soil_moisture.sel(station=s)
        assert int(row.sel(metric="n")) == ok.sum() == (400 if s == "a" else 400 - 58)
        assert float(row.sel(metric="r")) == pytest.approx(pm.pearson_r(x, y), abs=1e-10)
        assert float(row.sel(metric="bias")) == pytest.approx(pm.bias(x, y), abs=1e-10)
        assert float(row.sel(metric="rmsd")) == pytest.approx(pm.rmsd(x, y), abs=1e-10)
        assert float(row.sel(metric="ubrmsd")) == pytest.approx(pm.ubrmsd(x, y), abs=1e-10)
    assert float(table.soil_moisture.sel(station="b", metric="bias")) == pytest.approx(
        -0.02, abs=0.01)
    net = val.network_table(pairs)
    assert list(net.network.values) == ["net1", "net2"]
    p = pairs.sel(station="a")
    ok = np.isfinite(p.estimate.values) & np.isfinite(p.reference.values)
    assert float(net.pooled.sel(network="net1", metric="ubrmsd")) == pytest.approx(
        pm.ubrmsd(p.estimate.values[ok], p.reference.values[ok]), abs=1e-10)
    assert float(net["median"].sel(network="net2", metric="r")) == float(
        table.soil_moisture.sel(station="b", metric="r"))
    # pooled over both stations (one network label)
    both = pairs.assign_coords(network=(dims.STATION, ["n", "n"]))
    x = both.estimate.values.ravel()
    y = both.reference.values.ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    pooled = val.network_table(both).pooled.sel(network="n")
    assert float(pooled.sel(metric="r")) == pytest.approx(pm.pearson_r(x[ok], y[ok]), abs=1e-10)
    assert int(pooled.sel(metric="n")) == ok.sum()


def test_sensor_epochs_follow_catalog():
    """2015-03-20 .. 2015-04-27 crosses SMAP's first day (03-31) and TMI's last (04-08)."""
    est, ins = _noisy_pairs(n=24 * 38)
    pairs = val.match_stations(est, ins, val.MatchSettings(aggregate="daily"))
    days = pairs.time.values
    labels = val.epoch_labels(days)
    for d, lab in zip(days, labels, strict=True):
        want = [s for s in dims.ARCHIVE_SENSORS if sensors.get(s).operating(d)]
        assert lab == "+".join(want)
    per = val.period_table(pairs)
    assert per.sizes["period"] == len(set(labels)) >= 2
    assert int(per.pooled.sel(metric="n").sum()) == int(np.isfinite(
        pairs.estimate.values * pairs.reference.values).sum())
    first = str(per.period.values[0])
    assert "smap" not in first and "smap" in str(per.period.values[1])
    assert per.period_end.values[0] < per.period_start.values[1]
    k = labels == str(per.period.values[1])
    p = pairs.isel(time=np.flatnonzero(k)).sel(station="a")
    ok = np.isfinite(p.estimate.values) & np.isfinite(p.reference.values)
    assert float(per.soil_moisture.sel(period=per.period.values[1], station="a",
                                       metric="bias")) == pytest.approx(
        pm.bias(p.estimate.values[ok], p.reference.values[ok]), abs=1e-10)


def test_match_gridded_nearest_cell_and_overpass_time():
    """A product whose value at each cell is its column; overpass hour recovered from UTC."""
    g = grid.get("M36")
    lat, lon = (34.0, 35.0), (-100.0, -101.0)
    rows, cols = grid.latlon_to_rowcol(g, np.array(lat), np.array(lon))
    w = grid.Window(int(rows.min()) - 1, int(rows.max()) + 2, int(cols.min()) - 1,
                    int(cols.max()) + 2)
    coords = grid.grid_coords(g, w)
    days = T0 + np.arange(5) * np.timedelta64(1, "D")
    ny, nx = w.shape
    sm = np.broadcast_to(np.arange(nx, dtype=np.float32) / 100.0,
                         (days.size, 2, ny, nx)).copy()
    local = np.empty((days.size, 2, ny, nx), np.float32)
    local[:, 0], local[:, 1] = 6.0, 18.0
    prod = coords.assign({dims.SOIL_MOISTURE: ((dims.TIME, dims.PASS, dims.Y, dims.X), sm),
                          dims.LOCAL_TIME: ((dims.TIME, dims.PASS, dims.Y, dims.X), local)})
    prod = prod.assign_coords({dims.TIME: days, dims.PASS: ["am", "pm"]})
    # in situ = UTC hour of day: the matched reference reveals the overpass time used
    n = 24 * 7
    hour = (np.arange(n) % 24).astype(float)
    ins = _insitu(n, np.stack([hour, hour]), lat=lat, lon=lon)
    pairs = val.match_gridded(prod, ins, val.MatchSettings(aggregate="overpass", window="1h"))
    for k, s in enumerate(("a", "b")):
        p = pairs.sel(station=s)
        ok = np.isfinite(p.estimate.values)
        np.testing.assert_allclose(p.estimate.values[ok], (cols[k] - w.col0) / 100.0, rtol=1e-6)
        utc_am = round((6.0 - lon[k] / 15.0) % 24)
        utc_pm = round((18.0 - lon[k] / 15.0) % 24)
        assert set(p.reference.values[ok]) == {float(utc_am), float(utc_pm)}
        assert ok.sum() == 10
    far = ins.assign_coords(lat=(dims.STATION, [-40.0, -41.0]))
    with pytest.raises(errors.InputDataError, match="no station lies inside"):
        val.match_gridded(prod, far)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="aggregate"):
        val.MatchSettings(aggregate="weekly")
    est, ins = _noisy_pairs(n=10)
    with pytest.raises(errors.InputDataError, match="no station passes the depth selection"):
        val.match_stations(est, ins, val.MatchSettings(max_depth_m=0.01, depth_tolerance_m=0))
    assert pd.Timedelta(val.MatchSettings().window) == pd.Timedelta(hours=1)


def test_daily_mean_matching_for_daily_products():
    """A daily product (nominal 00:00) against the mean of each day's screened hours."""
    n = 24 * 4
    hours = np.arange(n, dtype=float)
    ins = _insitu(n, np.stack([hours, hours]))
    flags = ins.soil_moisture_flag.values.copy()
    flags[0, 24:24 + 13] = ismn.FLAG_BITS["D_S"]        # day 2 keeps 11 hours < 12: dropped
    ins["soil_moisture_flag"] = (ins.soil_moisture_flag.dims, flags)
    days = T0 + np.arange(4) * np.timedelta64(1, "D")
    est = {s: xr.DataArray([1.0, 2.0, 3.0, np.nan], dims=(dims.TIME,),
                           coords={dims.TIME: days}, attrs={"units": "m3 m-3"}) for s in "ab"}
    pairs = val.match_stations(est, ins, val.MatchSettings(aggregate="daily_mean"))
    a = pairs.sel(station="a")
    # day 4: no estimate, so no pair; the daily axis runs from the first to the last pair
    assert list(pairs.time.values) == list(days[:3])
    np.testing.assert_array_equal(a.estimate.values, [1.0, np.nan, 3.0])
    np.testing.assert_allclose(a.reference.values, [11.5, np.nan, 59.5])
    b = pairs.sel(station="b")
    np.testing.assert_allclose(b.reference.values, [11.5, 35.5, 59.5])


def test_detrended_ubrmsd_uses_each_station_span():
    """A station with a short record is detrended on its own days, not the others' span."""
    est, ins = _noisy_pairs(n=24 * 60)
    est["b"] = est["b"].where(est["b"].time > T0 + np.timedelta64(40, "D"))
    pairs = val.match_stations(est, ins, val.MatchSettings(aggregate="daily"))
    table = val.station_table(pairs)
    from pipeline import metrics

    b = pairs.sel(station="b")
    ok = np.flatnonzero(np.isfinite(b.estimate.values) & np.isfinite(b.reference.values))
    own = b.isel(time=slice(ok[0], ok[-1] + 1))
    want = float(metrics.ubrmsd_detrended(own.estimate, own.reference, "time"))
    got = float(table.soil_moisture.sel(station="b", metric="ubrmsd_detrended"))
    assert got == pytest.approx(want, rel=1e-12)
    assert got != pytest.approx(float(metrics.ubrmsd_detrended(b.estimate, b.reference, "time")),
                                rel=1e-6)
