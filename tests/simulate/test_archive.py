"""The tiny simulated archive: contract conformance and plausibility against science.md ranges."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from pipeline import qc, schema, sensors
from pipeline.io import stores

SENSORS_IN_TINY = ("tmi", "amsr2", "gmi", "smap")


def _open(root, *parts):
    return xr.open_zarr(stores.join(root, *parts), zarr_format=3).load()


@pytest.fixture(scope="module")
def tiny(sim_tiny):
    out = {"static": _open(sim_tiny, "static", "M36.zarr"),
           "truth": _open(sim_tiny, "truth", "M36.zarr"),
           "insitu": _open(sim_tiny, "insitu", "simnet.zarr"),
           "towers": _open(sim_tiny, "towers", "simflux.zarr")}
    for s in SENSORS_IN_TINY:
        out[s] = _open(sim_tiny, "tb", f"{s}.zarr")
    return out


def test_every_store_passes_the_schema_check_with_values(tiny):
    specs = {"static": schema.STATIC, "truth": schema.TRUTH, "insitu": schema.INSITU,
             "towers": schema.TOWERS, **{s: schema.tb_spec(s) for s in SENSORS_IN_TINY}}
    for name, spec in specs.items():
        schema.check(tiny[name], spec, context=name, values="all")


def test_stores_exist_only_for_sensors_whose_period_overlaps(sim_tiny):
    for s in ("tmi", "amsre", "amsr2", "gmi", "smap"):
        expected = sensors.get(s).overlaps("2014-06-01", "2016-05-31")
        assert stores.exists(stores.tb_url(sim_tiny, s)) == expected, s
    assert not stores.exists(stores.tb_url(sim_tiny, "amsre"))  # ended 2011-10-04


def test_observations_only_inside_period_and_latitude_limit(tiny):
    for s in SENSORS_IN_TINY:
        ds = tiny[s]
        sen = sensors.get(s)
        seen = np.isfinite(ds.tb).any(dim=("channel",))  # (time, pass, y, x)
        inside_lat = np.abs(ds.lat) <= sen.max_abs_lat_deg
        assert not bool((seen & ~inside_lat).any()), f"{s} observes beyond its latitude limit"
        days = ds.time.values.astype("datetime64[D]")
        op = np.array([sen.operating(d) for d in days])
        assert not bool(seen.isel(time=np.flatnonzero(~op)).any()), f"{s} outside its period"
        assert bool(seen.any()), f"{s} saw nothing"
        # local_time present exactly where TB is
        assert bool((np.isfinite(ds.local_time) == seen).all())


def test_revisit_smap_two_to_three_days_midlatitudes_daily_at_high_latitudes(tiny):
    ds = tiny["smap"]
    # one pass type (6 am descending), as the "2-3 day revisit" is usually quoted
    seen = np.isfinite(ds.tb.isel(channel=0).sel({"pass": "am"})).isel(x=0)  # (time, y)
    seen = seen.sel(time=slice("2015-04-01", None))
    frac = seen.mean("time").values
    lat = ds.lat.isel(x=0).values
    mid = (lat > 38) & (lat < 50)
    high = lat > 62
    # a cell seen on a fraction f of days has a mean revisit of ~1/f days
    assert 1 / 3.5 < frac[mid].mean() < 1 / 1.8
    assert frac[high].mean() > frac[mid].mean() + 0.1
    # TMI/GMI are sparser than AMSR2 where all three can see
    a2 = np.isfinite(tiny["amsr2"].tb.isel(channel=0)).mean().item()
    gm = np.isfinite(tiny["gmi"].tb.isel(channel=0)).mean().item()
    assert gm < a2


def test_pass_local_times(tiny):
    am = tiny["amsr2"].local_time.sel({"pass": "am"}).values
    pm = tiny["smap"].local_time.sel({"pass": "pm"}).values
    assert abs(np.nanmedian(am) - 1.5) < 0.1 and abs(np.nanmedian(pm) - 18.0) < 0.1
    gmi = tiny["gmi"].local_time
    # precessing: the local time of the am pass drifts through the whole morning
    am_g = gmi.sel({"pass": "am"}).values
    assert np.nanmin(am_g) < 2 and np.nanmax(am_g) > 10 and np.nanmax(am_g) < 12
    assert np.nanmin(gmi.sel({"pass": "pm"}).values) >= 12


SCIENCE_RANGES = {  # science.md §3.8 (land), [K]
    "1.41V": (200, 295), "1.41H": (150, 290), "10.65V": (215, 300), "10.65H": (160, 295),
    "36.5V": (170, 300), "36.64V": (170, 300), "37.0V": (170, 300),
}


def test_tb_within_science_ranges_over_land(tiny):
    land = (tiny["static"].water_fraction == 0).values
    for s in SENSORS_IN_TINY:
        ds = tiny[s]
        clean = (ds.quality_flag & int(qc.QC.RFI_SUSPECTED)) == 0
        for ch in ds.channel.values:
            v = ds.tb.sel(channel=ch).where(clean).values[..., land]
            v = v[np.isfinite(v)]
            assert v.size > 50, (s, ch)
            # every value is physical (RFI outliers included)
            assert v.min() > 50 and v.max() < 360, (s, ch, v.min(), v.max())
            lo, hi = SCIENCE_RANGES.get(str(ch), (150, 300))
            p1, p99 = np.percentile(v, [1, 99])
            assert lo <= p1 and p99 <= hi, (s, ch, p1, p99)


def _npr(ds):
    v, h = ds.tb.sel(channel="1.41V"), ds.tb.sel(channel="1.41H")
    return (v - h) / (v + h)


def test_lband_npr_frozen_and_thawed(tiny):
    smap, truth, static = tiny["smap"], tiny["truth"], tiny["static"]
    npr = _npr(smap)
    fr = truth.frozen.sel(time=smap.time)
    land = static.water_fraction == 0
    frozen = npr.where(land & (fr == 1)).values
    thawed = npr.where(land & (fr == 0)).values
    assert np.isfinite(frozen).sum() > 200 and np.isfinite(thawed).sum() > 200
    assert 0.01 <= np.nanmedian(frozen) <= 0.02
    assert 0.02 <= np.nanmedian(thawed) <= 0.06
    assert np.nanmedian(thawed) > np.nanmedian(frozen) + 0.01


def test_water_rich_cells_have_lower_tbh(tiny):
    smap, truth, static = tiny["smap"], tiny["truth"], tiny["static"]
    thawed = truth.frozen.sel(time=smap.time) == 0
    tbh = smap.tb.sel(channel="1.41H").where(thawed).mean(("time", "pass")).isel(x=0)
    wf = static.water_fraction.isel(x=0)
    lat = static.lat.isel(x=0)
    wet = (wf >= 0.2).values
    dry = (wf == 0).values & (lat > float(lat[wet].min()) - 3).values
    assert wet.sum() >= 2 and dry.sum() >= 5
    assert float(tbh[wet].mean()) < float(tbh[dry].mean()) - 15.0


def test_lband_tb_falls_as_soil_moisture_rises(tiny):
    smap, truth, static = tiny["smap"], tiny["truth"], tiny["static"]
    sm = truth.soil_moisture.sel(time=smap.time)
    ok = (truth.frozen.sel(time=smap.time) == 0) & (static.water_fraction == 0) & (
        truth.snow_water_equivalent.sel(time=smap.time) == 0)
    tbh = smap.tb.sel(channel="1.41H").where(ok).values.ravel()
    s = sm.where(ok).values.ravel()
    m = np.isfinite(tbh) & np.isfinite(s)
    assert m.sum() > 500
    assert np.corrcoef(s[m], tbh[m])[0, 1] < -0.4


def test_truth_attrs_record_settings_and_calibration(tiny):
    attrs = tiny["truth"].attrs
    cal = json.loads(attrs["calibration"])
    settings = json.loads(attrs["simulator_settings"])
    carbon = json.loads(attrs["carbon_model"])
    assert set(carbon["parameters_by_igbp"]) >= {"1", "3", "7", "10", "12"}
    assert settings["forward"]["dielectric"] in ("mironov", "dobson")
    assert set(cal) == set(SENSORS_IN_TINY)
    for s in SENSORS_IN_TINY:
        assert set(cal[s]) == set(sensors.get(s).channel_labels)
        for c in cal[s].values():
            if s == "smap":
                assert c == {"offset_K": 0.0, "gain": 1.0, "drift_K_per_decade": 0.0}
            else:
                assert 0.5 <= abs(c["offset_K"]) <= 3.0
                assert 0.0 < abs(c["gain"] - 1.0) <= 0.02
                assert abs(c["drift_K_per_decade"]) <= 1.0


def test_truth_states_consistent(tiny):
    t = tiny["truth"]
    # frozen ⇔ soil temperature below 0 °C; liquid water small when frozen
    st = t.soil_temperature.values
    fr = t.frozen.values
    assert np.array_equal(fr == 1, st < 273.15)
    # (partly frozen soil inside the zero curtain keeps some liquid water)
    assert np.nanmedian(t.soil_moisture.values[fr == 1]) <= 0.05
    assert np.nanmedian(t.soil_moisture.values[fr == 0]) >= 0.08
    # am and pm states differ (diurnal cycle sampled at 06:00 and 18:00)
    d = t.surface_temperature.sel({"pass": "pm"}) - t.surface_temperature.sel({"pass": "am"})
    assert float(np.abs(d).mean()) > 1.0
    assert 0.0 < float((t.frozen == 1).mean()) < 0.8
    assert float(t.snow_water_equivalent.max()) > 50
    assert 0.02 <= float(t.soil_moisture.min()) and float(t.soil_moisture.max()) <= 0.6
    vod = t.vod.sel(frequency_ghz=[1.41, 10.65, 36.5], method="nearest")
    assert bool((vod.diff("frequency_ghz") >= 0).all())  # VOD rises with frequency
    assert float(t.vod.sel(frequency_ghz=1.41, method="nearest").max()) < 1.4


def test_stations_cover_every_class_and_see_the_truth(tiny):
    ins, static, truth = tiny["insitu"], tiny["static"], tiny["truth"]
    classes = set(np.unique(static.landcover.where(static.water_fraction < 0.05, -1).values))
    classes.discard(-1)
    groups = ins.station_group.values
    for c in classes:
        n = int(np.sum(ins.landcover.values[groups != "LAKE"] == c))
        assert n >= 3, c
    assert np.sum(groups == "LAKE") >= 3
    assert ins.soil_moisture.attrs["depth_m"] == 0.05
    # at the station hour nearest 06:00 local, station frozen state agrees with the truth
    agree = []
    for i in range(ins.sizes["station"]):
        lat, lon = float(ins.lat[i]), float(ins.lon[i])
        cell = int(np.argmin(np.abs(static.lat.values[:, 0] - lat)))
        utc = (6.0 - lon / 15.0) % 24
        ts = ins.soil_temperature.isel(station=i)
        ts = ts.where(ts.time.dt.hour == int(round(utc)) % 24, drop=True)
        local = ts.time.values + np.timedelta64(int(round(lon / 15.0 * 3600)), "s")
        days = local.astype("datetime64[D]")
        tr = truth.frozen.sel({"pass": "am"}).isel(y=cell, x=0).sel(
            time=days.astype("datetime64[ns]"), method="nearest")
        ok = np.isfinite(ts.values)
        agree.append(np.mean((ts.values[ok] < 273.15) == (tr.values[ok] == 1)))
    assert np.median(agree) > 0.85


def test_towers_follow_fluxnet_conventions(tiny):
    tw = tiny["towers"]
    nee, gpp, reco = tw.nee.values, tw.gpp.values, tw.reco.values
    ok = np.isfinite(nee) & np.isfinite(gpp) & np.isfinite(reco)
    assert 0.7 < ok.mean() < 0.99  # gaps, but most days present
    np.testing.assert_allclose(nee[ok], (reco - gpp)[ok], atol=1e-4)
    qcv = tw.nee_qc.values[ok]
    assert qcv.min() >= 0 and qcv.max() <= 1 and (qcv < 0.5).mean() > 0.1
    assert np.nanmax(gpp) > 2.0 and np.nanmean(gpp) > 0
    assert all(len(s) == 6 and s[2] == "-" for s in tw.site.values)
    # tower NEE tracks the truth NEE of its cell (noise and footprint, not a different world)
    truth = tiny["truth"]
    static = tiny["static"]
    for i in range(tw.sizes["site"]):
        cell = int(np.argmin(np.abs(static.lat.values[:, 0] - float(tw.lat[i]))))
        t = truth.nee.isel(y=cell, x=0).values
        m = np.isfinite(nee[i])
        assert np.corrcoef(nee[i][m], t[m])[0, 1] > 0.6


def test_am_and_pm_passes_see_the_diurnal_cycle(tiny):
    """AMSR2 at 13:30 sees a warmer surface than at 01:30 (36.5 GHz V, thawed summer land)."""
    a2, static = tiny["amsr2"], tiny["static"]
    summer = a2.time.dt.month.isin([6, 7, 8])
    tb = a2.tb.sel(channel="36.5V").where(summer & (static.water_fraction == 0))
    d = (tb.sel({"pass": "pm"}) - tb.sel({"pass": "am"})).values
    d = d[np.isfinite(d)]
    assert d.size > 200
    assert 2.0 < np.median(d) < 15.0
