"""Targeted physics of the simulator: emission responses and the land-state model."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.simulate import emission, observe, rng
from pipeline.simulate.settings import ForwardModel, Observation, Settings
from pipeline.simulate.surface import make_surface
from pipeline.simulate.weather import T0, at_hour, day_numbers, simulate_weather

FM = ForwardModel()
THAWED = dict(sm_liquid=0.25, sm_total=0.25, ice_fraction=0.0, clay=0.2, sand=0.4,
              bulk_density=1.3, t_soil=285.0, t_surface=288.0, t_air=290.0, t_air_mean=288.0,
              tau_l=0.2, omega_l=0.05, vod_pol=1.08, h=0.14, swe=0.0, snow_wetness=0.0,
              pond=0.0, water_fraction=0.0, lake_ice_fraction=0.0, lake_ice_m=0.0,
              t_lake=285.0, canopy_frozen=0.0, rain_now=0.0)
FROZEN = {**THAWED, "sm_liquid": 0.03, "ice_fraction": 1.0, "t_soil": 265.0, "t_surface": 258.0,
          "t_air": 255.0, "t_air_mean": 255.0, "canopy_frozen": 1.0}
SMAP = (40.0, np.array([1.41, 1.41]), ("V", "H"))
AMSR2_37 = (55.0, np.array([36.5, 36.5, 18.7, 18.7, 89.0]), ("V", "H", "V", "H", "V"))


def tb(cases: list[dict], sensor=SMAP, fm=FM) -> np.ndarray:
    scenes = {k: np.array([c[k] for c in cases], np.float32) for k in emission.INPUTS}
    return emission.scene_tb(fm, sensor[0], sensor[1], sensor[2], scenes)


def npr(x):
    return (x[:, 0] - x[:, 1]) / (x[:, 0] + x[:, 1])


def test_lband_tb_falls_monotonically_with_soil_moisture():
    sms = np.linspace(0.03, 0.45, 8)
    out = tb([{**THAWED, "sm_liquid": s, "sm_total": s} for s in sms])
    assert np.all(np.diff(out[:, 0]) < 0) and np.all(np.diff(out[:, 1]) < 0)
    # vegetation damps the sensitivity
    dense = tb([{**THAWED, "sm_liquid": s, "sm_total": s, "tau_l": 0.9} for s in sms])
    assert (dense[0, 1] - dense[-1, 1]) < 0.5 * (out[0, 1] - out[-1, 1])


@pytest.mark.parametrize("dielectric", ["mironov", "dobson"])
def test_both_dielectric_models_give_land_npr_ranges(dielectric):
    fm = ForwardModel(dielectric=dielectric)
    thawed = tb([{**THAWED, "tau_l": t} for t in (0.15, 0.3, 0.6)], fm=fm)
    frozen = tb([{**FROZEN, "tau_l": t, "swe": 100.0} for t in (0.15, 0.3, 0.6)], fm=fm)
    assert np.all((npr(thawed) > 0.015) & (npr(thawed) < 0.09))
    assert np.all((npr(frozen) > 0.005) & (npr(frozen) < 0.025))
    assert np.all(npr(frozen) < npr(thawed))


def test_open_water_and_lake_ice():
    water = tb([{**THAWED, "water_fraction": 1.0, "t_lake": 288.0}])[0]
    assert 70 <= water[1] <= 100 and 110 <= water[0] <= 140  # science.md §1.7, §3.8
    cells = tb([{**THAWED, "water_fraction": f} for f in (0.0, 0.1, 0.3, 0.5)])
    assert np.all(np.diff(cells[:, 1]) < -5)  # more open water, lower TBh
    ice = {**FROZEN, "water_fraction": 0.3, "lake_ice_fraction": 1.0, "lake_ice_m": 1.0}
    open_ = {**FROZEN, "water_fraction": 0.3, "t_lake": T0}
    t_ice, t_open = tb([ice, open_])
    assert t_ice[1] > t_open[1] + 10  # ice cover raises the lake's TBh


def test_dry_snow_scatters_at_high_frequency_and_slightly_raises_lband_h():
    swe = [0.0, 50.0, 100.0, 200.0]
    # tundra: the snow buries the shrubs (caller's burial factor), so tau above the snow is small
    hi = tb([{**FROZEN, "swe": s, "tau_l": 0.2 * np.exp(-s / 260 / 0.3)} for s in swe],
            sensor=AMSR2_37)
    assert np.all(np.diff(hi[:, 0]) < 0)  # 36.5V falls with SWE
    assert np.all(np.diff(hi[:, 4]) < 0)  # 89V too
    assert hi[0, 0] - hi[2, 0] > 10 and hi[0, 0] - hi[3, 0] > 20  # 0.1-0.3 K per mm SWE
    assert 165 < hi[3, 0] < 225  # science.md §3.8: dry snow ~170-220 K at 36-37 GHz
    assert (hi[0, 2] - hi[2, 2]) < (hi[0, 0] - hi[2, 0])  # 18.7 less affected than 36.5
    lb = tb([{**FROZEN, "swe": s} for s in (0.0, 100.0)])
    assert 0.5 < lb[1, 1] - lb[0, 1] < 15  # L-band H rises a little under dry snow
    assert abs(lb[1, 0] - lb[0, 0]) < abs(lb[1, 1] - lb[0, 1])


def test_wet_snow_raises_tb_and_shrinks_polarization_difference():
    dry = {**FROZEN, "swe": 150.0, "t_air": 272.0, "t_surface": 272.0, "tau_l": 0.05}
    wet = {**dry, "snow_wetness": 1.0, "t_air": 274.0, "t_surface": T0}
    d, w = tb([dry, wet], sensor=AMSR2_37)
    assert w[0] > d[0] + 20  # 36.5V
    assert (w[0] - w[1]) < 0.5 * (d[0] - d[1])


def test_meltwater_ponding_lowers_tbh_and_spikes_npr():
    melt = {**FROZEN, "swe": 80.0, "snow_wetness": 1.0, "t_air": 275.0, "t_surface": T0,
            "t_soil": 272.5}
    out = tb([melt, {**melt, "pond": 0.2}])
    assert out[1, 1] < out[0, 1] - 10
    assert npr(out)[1] > max(1.5 * npr(out)[0], 0.02)  # reads as "thawed" to an NPR threshold
    assert 220 < out[1, 1] < 245  # science.md §1.7: TBh ≈ 230-235 K at snowmelt


def test_emission_is_batch_invariant():
    n = emission.BLOCK + 37
    u = rng.uniform(3, "t", np.arange(n))
    cases = {k: np.full(n, v, np.float32) for k, v in THAWED.items()}
    cases["sm_liquid"] = cases["sm_total"] = (0.03 + 0.4 * u).astype(np.float32)
    whole = emission.scene_tb(FM, 40.0, np.array([1.41]), ("H",), cases)
    part = emission.scene_tb(FM, 40.0, np.array([1.41]), ("H",),
                             {k: v[-40:] for k, v in cases.items()})
    assert np.array_equal(whole[-40:], part)


def test_calibration_formula_exact_without_noise_or_rfi():
    obs = Observation(noise_scale=0.0, rfi_rate_lband=0.0, rfi_rate_cband=0.0, rfi_rate_xband=0.0)
    cal = observe.calibration("gmi", 0, obs)
    m = 5
    true = np.full((m, 9), 250.0, np.float32)
    days = (np.datetime64("2019-03-04") - np.datetime64("1970-01-01")).astype(int) + np.arange(m)
    out, flag = observe.apply_errors("gmi", 0, obs, true, days, np.arange(m), np.zeros(m, int),
                                     np.zeros(m), np.zeros(m), np.zeros(m), cal)
    years = (days - days[0] + 5 * 365.25) / 365.25  # GMI's first day is 2014-03-04
    for k, label in enumerate(("10.65V", "10.65H", "18.7V", "18.7H", "23.8V", "36.64V",
                               "36.64H", "89.0V", "89.0H")):
        c = cal[label]
        want = c["gain"] * 250.0 + c["offset_K"] + c["drift_K_per_decade"] * years / 10
        np.testing.assert_allclose(out[:, k], want, atol=2e-3)
    assert not flag.any()


def test_noise_level_and_rfi_flags():
    obs = Observation()
    m = 20000
    true = np.full((m, 2), 250.0, np.float32)
    ident = observe.calibration("smap", 0, obs)
    out, flag = observe.apply_errors("smap", 0, obs, true, np.arange(m), np.arange(m) % 97,
                                     np.zeros(m, int), np.full(m, 0.5), np.zeros(m), np.zeros(m),
                                     ident)
    resid = out[:, 1] - 250.0
    clean = np.abs(resid) < 5
    assert 0.3 < resid[clean].std() < 1.2  # NEDT 0.3-1 K
    rfi = resid > 5
    assert 0.001 < rfi.mean() < 0.05
    flagged = (flag & 1) > 0
    assert flagged.sum() > 0 and (rfi & ~flagged).sum() > 0  # some flagged, not all


@pytest.fixture(scope="module")
def arctic():
    """Weather of a few high-latitude cells over 3 years."""
    lat = np.array([64.0, 66.0, 67.0, 68.0, 69.0, 63.0])
    lon = np.array([-150.0, -148.0, -152.0, -149.0, -151.0, -147.0])
    surf = make_surface(0, lat, lon, Settings().classes)
    days = day_numbers("2015-01-01", "2017-12-31")
    w = simulate_weather(0, surf, np.arange(6) + 10**9, days, Settings())
    return surf, w


def test_soil_lags_air_and_is_insulated_by_snow_with_a_zero_curtain(arctic):
    surf, w = arctic
    st = at_hour(w, np.arange(len(w.days))[:, None], np.arange(6)[None, :], np.full((1, 1), 6.0),
                 Settings())
    winter = slice(20, 60)  # late January–February
    # snow insulation: soil much warmer and less variable than the air in midwinter
    deep = w.swe[winter] > 80.0
    assert deep.sum() > 20
    assert np.mean((st.t_soil[winter] - w.t_air[winter])[deep]) > 5.0
    assert np.mean(np.std(st.t_soil[winter], axis=0) < 0.5 * np.std(w.t_air[winter], axis=0))
    # autumn zero curtain: days with soil within 0.2 K of 0 °C while the air is below -2 °C
    curtain = (np.abs(st.t_soil - T0) < 0.2) & (w.t_air < T0 - 2)
    assert curtain.sum(axis=0).max() >= 10
    # frozen soil holds little liquid water
    assert np.median(st.sm_liquid[st.frozen]) < 0.05


def test_lake_ice_lags_air_temperature(arctic):
    surf, w = arctic
    ice = w.lake_ice_m > 0
    t = w.t_air
    for c in range(6):
        for year in (2016, 2017):
            y0 = int((np.datetime64(f"{year}-01-01") - np.datetime64("2015-01-01")).astype(int))
            spring = slice(y0 + 60, y0 + 240)
            thaw_air = np.argmax(t[spring, c] > T0 + 3) if (t[spring, c] > T0 + 3).any() else None
            if thaw_air is None or not ice[y0 + 60, c] or ice[spring, c].all():
                continue
            ice_off = np.argmax(~ice[spring, c])
            assert ice_off >= thaw_air + 7, (c, year)


def test_precipitation_and_soil_moisture_drydown(arctic):
    surf, w = arctic
    summer = slice(180, 240)
    th = w.theta[summer]
    rain = w.rain[summer]
    dry_days = (rain[1:] == 0) & (w.melt[summer][1:] == 0)
    d = np.diff(th, axis=0)
    assert np.all(d[dry_days] <= 1e-9)  # no rain: the bucket only dries
    assert (d[rain[1:] > 5] > 0).mean() > 0.8  # rain wets it (unless saturated)
    assert np.all((w.theta >= surf.residual_sm - 1e-9) & (w.theta <= surf.porosity + 1e-9))
