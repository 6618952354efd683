"""Fusion: triple collocation vs pytesmo, inverse-variance weights, coverage, masks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline import dims, fuse

tcol = pytest.importorskip("pytesmo.metrics").tcol_metrics

SIGMA = {"tmi": 0.04, "amsre": 0.03, "amsr2": 0.02, "gmi": 0.025}


def _sources(n_time=600, ny=2, nx=3, seed=0, gaps=0.2):
    rng = np.random.default_rng(seed)
    time = pd.date_range("2014-01-01", periods=n_time, freq="D")
    truth = 0.25 + 0.08 * np.sin(np.arange(n_time) / 30.0)[:, None, None] + rng.normal(
        0, 0.03, (n_time, ny, nx))
    out = {}
    for s, sig in SIGMA.items():
        v = truth + rng.normal(0, sig, truth.shape)
        v[rng.random(v.shape) < gaps] = np.nan
        out[s] = xr.DataArray(v, dims=(dims.TIME, dims.Y, dims.X),
                              coords={dims.TIME: time, dims.Y: np.arange(ny) * 1.0,
                                      dims.X: np.arange(nx) * 1.0})
    truth = xr.DataArray(truth, dims=(dims.TIME, dims.Y, dims.X), coords=out["tmi"].coords)
    return out, truth


def test_triplet_error_variance_equals_pytesmo():
    src, _ = _sources(gaps=0.0)
    x, y, z = (src[s].isel(y=0, x=0).values for s in ("tmi", "amsr2", "gmi"))
    res = fuse.triplet_error_variance(*(src[s].isel(y=0, x=0) for s in ("tmi", "amsr2", "gmi")))
    _, err_std, beta = tcol(x, y, z, ref_ind=0)
    np.testing.assert_allclose(np.sqrt(res["err_var"].values), err_std, rtol=1e-10)
    np.testing.assert_allclose(res["beta"].values, beta, rtol=1e-10)


def test_tc_recovers_known_error_levels():
    src, _ = _sources(n_time=3000, gaps=0.1)
    stack = fuse.stack_sources(src)
    ev = fuse.tc_error_variance(stack)
    got = np.sqrt(ev["err_var"].median((dims.Y, dims.X))).to_series()
    for s, sig in SIGMA.items():
        assert got[s] == pytest.approx(sig, rel=0.15)
    assert (ev["err_var_source"] == 1).all()


def test_fallback_when_no_triplet():
    src, _ = _sources()
    two = {k: src[k] for k in ("amsr2", "gmi")}
    ev = fuse.tc_error_variance(fuse.stack_sources(two), fallback={"amsr2": 4e-4, "gmi": 9e-4})
    assert (ev["err_var_source"] == 2).all()
    assert float(ev["err_var"].sel(sensor="gmi").max()) == pytest.approx(9e-4)


def test_fused_beats_every_single_source_and_masks():
    src, truth = _sources(n_time=1500)
    stack = fuse.stack_sources(src)
    ev = fuse.tc_error_variance(stack)
    land = xr.DataArray(np.ones((2, 3), bool), dims=(dims.Y, dims.X))
    out = fuse.fuse_sensors(stack, ev["err_var"], land)

    def ubrmsd(a):
        d = (a - truth)
        return float(np.sqrt(((d - d.mean()) ** 2).mean()))

    fused = ubrmsd(out[dims.SOIL_MOISTURE])
    assert all(fused < ubrmsd(src[s]) for s in SIGMA)
    # expected uncertainty where all four are present: 1/sqrt(sum 1/sigma^2)
    expect = 1 / np.sqrt(sum(1 / s**2 for s in SIGMA.values()))
    all4 = out[dims.N_SOURCES] == 4
    assert float(out[dims.SOIL_MOISTURE_UNCERTAINTY].where(all4).median()) == pytest.approx(
        expect, rel=0.15)
    # source mask bits agree with the availability of each source
    tmi_bit = (out[dims.SOURCE_MASK] & (1 << dims.SOURCE_BITS["tmi"])) > 0
    assert bool((tmi_bit == src["tmi"].notnull()).all())
    cov = out[dims.LAND_COVERAGE]
    any_src = stack.notnull().any(dims.SENSOR).mean((dims.Y, dims.X))
    np.testing.assert_allclose(cov.values, any_src.values, rtol=1e-6)


def test_fusing_one_source_is_identity_and_chunk_invariant():
    src, _ = _sources(n_time=200)
    stack = fuse.stack_sources({"gmi": src["gmi"]})
    ev = xr.full_like(stack.isel(time=0, drop=True), 4e-4)
    land = xr.DataArray(np.ones((2, 3), bool), dims=(dims.Y, dims.X))
    out = fuse.fuse_sensors(stack, ev, land)
    xr.testing.assert_allclose(out[dims.SOIL_MOISTURE],
                               src["gmi"].astype(np.float32).drop_vars([], errors="ignore"))
    lazy = fuse.fuse_sensors(stack.chunk({dims.TIME: 37, dims.X: 1}), ev, land)
    xr.testing.assert_allclose(out, lazy.compute())


def test_handover_shift_detects_a_step():
    src, truth = _sources(n_time=400, gaps=0.0)
    sm = truth.copy()
    sm[200:] += 0.02
    t = str(sm[dims.TIME].values[200])[:10]
    d = fuse.handover_diagnostics(sm, {"step": t}, window_days=60, reference=truth)
    assert d["step"]["shift"] == pytest.approx(0.02, abs=1e-9)
    assert d["step"]["same_date_other_years"] == {"n": 0}       # 400 days: no other year


def test_handover_shift_is_set_against_the_same_date_in_other_years():
    """A seasonal error makes a 'shift' on that date every year; the step is the difference."""
    time = pd.date_range("2010-01-01", "2015-12-31", freq="D")
    doy = time.day_of_year.values
    err = 0.01 * np.sin(2 * np.pi * doy / 365.25)             # recurring seasonal error
    err = err + np.where(time >= pd.Timestamp("2013-03-04"), 0.015, 0.0)
    sm = xr.DataArray(0.25 + err, dims=(dims.TIME,), coords={dims.TIME: time})
    ref = xr.DataArray(np.full(len(time), 0.25), dims=(dims.TIME,), coords={dims.TIME: time})
    d = fuse.handover_diagnostics(sm, {"h": "2013-03-04"}, reference=ref)["h"]
    null = d["same_date_other_years"]
    assert null["n"] == 5                                     # 2010-2012, 2014, 2015
    assert null["min"] == pytest.approx(null["max"], abs=1e-3)   # the seasonal part alone
    assert d["shift"] - null["median"] == pytest.approx(0.015, abs=1e-3)


def test_handover_shift_per_pixel_ignores_pixels_that_join_across_the_window():
    """Ground that thaws in spring joins the spatial mean after the date: with its own error
    level it moved the mean of the error although no pixel changed.  Per pixel, no shift."""
    time = pd.date_range("2012-01-01", "2012-12-31", freq="D")
    rng = np.random.default_rng(0)
    err = np.zeros((len(time), 1, 2))
    err[:, 0, 0] = 0.01 + rng.normal(0, 1e-4, len(time))   # always there
    err[:, 0, 1] = -0.03                                   # thaws on the hand-over date
    err[time < pd.Timestamp("2012-04-01"), 0, 1] = np.nan
    sm = xr.DataArray(0.25 + err, dims=(dims.TIME, dims.Y, dims.X), coords={dims.TIME: time})
    ref = xr.full_like(sm, 0.25)
    spatial = fuse.handover_diagnostics(sm.mean((dims.Y, dims.X)), {"h": "2012-04-01"},
                                        reference=ref.mean((dims.Y, dims.X)))["h"]
    assert spatial["shift"] == pytest.approx(-0.02, abs=1e-3)  # the joining pixel's level
    d = fuse.handover_diagnostics(sm, {"h": "2012-04-01"}, reference=ref)["h"]
    assert d["n_pixels"] == 1 and abs(d["shift"]) < 1e-4
    # a real step in the pixel seen on both sides is still measured in full
    sm2 = sm.copy()
    sm2[time >= pd.Timestamp("2012-04-01"), 0, 0] += 0.015
    d2 = fuse.handover_diagnostics(sm2, {"h": "2012-04-01"}, reference=ref)["h"]
    assert d2["shift"] == pytest.approx(0.015, abs=1e-4)


def _chain_sources(seed=1):
    """SMAP = truth (+ noise); the others with constant and seasonal offsets, in their periods."""
    rng = np.random.default_rng(seed)
    time = pd.date_range("2009-01-01", "2019-12-31", freq="D")
    ny, nx = 3, 2
    doy = time.day_of_year.values[:, None, None]
    truth = 0.25 + 0.08 * np.sin(2 * np.pi * doy / 365.25) + rng.normal(0, 0.03, (len(time), ny,
                                                                                     nx))
    season = 0.03 * np.cos(2 * np.pi * doy / 365.25)  # a seasonal error relative to SMAP
    spec = {"tmi": ("2009-01-01", "2015-04-08", +0.04, 0.0),
            "amsre": ("2009-01-01", "2011-10-04", -0.05, 0.0),
            "amsr2": ("2012-07-02", "2019-12-31", +0.03, 1.0),
            "gmi": ("2014-03-04", "2019-12-31", -0.02, 0.0),
            "smap": ("2015-03-31", "2019-12-31", 0.0, 0.0)}
    out = {}
    for s, (t0, t1, off, seas) in spec.items():
        v = truth + off + seas * season + rng.normal(0, 0.02, truth.shape)
        v[(time < pd.Timestamp(t0)) | (time > pd.Timestamp(t1))] = np.nan
        v[rng.random(v.shape) < 0.3] = np.nan
        out[s] = xr.DataArray(v.astype(np.float32), dims=(dims.TIME, dims.Y, dims.X),
                              coords={dims.TIME: time, dims.Y: np.arange(ny) * 1.0,
                                      dims.X: np.arange(nx) * 1.0})
    truth = xr.DataArray(truth, dims=(dims.TIME, dims.Y, dims.X), coords=out["smap"].coords)
    return out, truth


def test_mean_matching_puts_every_source_on_smap_through_the_overlap_chain():
    sources, truth = _chain_sources()
    stack = fuse.stack_sources(sources)
    matched = fuse.match_means(stack)
    month = truth[dims.TIME].dt.month
    for s in ("tmi", "amsre", "amsr2", "gmi"):
        before = (stack.sel({dims.SENSOR: s}) - truth)
        after = (matched.sel({dims.SENSOR: s}) - truth)
        assert abs(float(before.mean())) > 0.015
        # every source ends on SMAP's mean (AMSR-E through TMI, TMI through GMI/AMSR2) ...
        assert abs(float(after.mean())) < 0.004, s
        # ... month by month: AMSR2's seasonal error relative to SMAP is gone too (TMI and AMSR-E
        # learn each month from ~13 months / one chain step more: sampling noise ≈ 0.006)
        tol = 0.01 if s in ("amsr2", "gmi") else 0.02
        assert float(abs(after.groupby(month).mean()).max()) < tol, s
    # SMAP is the reference: untouched
    xr.testing.assert_identical(matched.sel({dims.SENSOR: "smap"}),
                                stack.sel({dims.SENSOR: "smap"}))
    # lazy, part by part along y (as the sm-fused job builds it) == eager
    lazy = fuse.match_means(stack.chunk({dims.TIME: -1, dims.Y: 1}))
    assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.values, matched.values, rtol=0, atol=1e-7)
    offs = fuse.mean_offsets(stack)
    assert set(offs) == {"tmi", "amsre", "amsr2", "gmi"}
    assert offs["amsr2"].sizes["month"] == 12
    assert float(offs["gmi"].mean()) == pytest.approx(0.02, abs=0.004)


def test_mean_matching_leaves_sources_without_enough_overlap_alone():
    sources, _ = _chain_sources(seed=2)
    sources["amsre"] = sources["amsre"].where(sources["amsre"][dims.TIME] < np.datetime64(
        "2009-01-20"))  # 19 days: < 30 days of overlap with TMI
    stack = fuse.stack_sources(sources)
    matched = fuse.match_means(stack)
    xr.testing.assert_allclose(matched.sel({dims.SENSOR: "amsre"}),
                               stack.sel({dims.SENSOR: "amsre"}))
    assert float(abs(fuse.mean_offsets(stack)["amsre"]).max()) == 0.0


def test_amsre_outside_tmi_is_matched_by_climatology_across_the_gap():
    """AMSR-E where TMI never looks (row 0): its long-term mean is matched to the (SMAP-matched)
    AMSR2's over their own, non-overlapping periods, one offset per cell; elsewhere via TMI."""
    sources, truth = _chain_sources(seed=3)
    sources["tmi"] = sources["tmi"].where(sources["tmi"][dims.Y] > 0)
    # whole years of AMSR-E: a record ending in October would weigh the seasons differently
    # from AMSR2's and bias the mean difference by the seasonal cycle (documented assumption)
    sources["amsre"] = sources["amsre"].where(sources["amsre"][dims.TIME] < np.datetime64(
        "2011-01-01"))
    stack = fuse.stack_sources(sources)
    how = fuse.match_methods(stack)["amsre"]
    assert (how.isel({dims.Y: 0}) == fuse.BY_CLIMATOLOGY).all()
    assert (how.isel({dims.Y: slice(1, None)}) == fuse.BY_OVERLAP).all()
    assert (fuse.match_methods(stack)["tmi"].isel({dims.Y: 0}) == fuse.NOT_MATCHED).all()
    matched = fuse.match_means(stack)
    err = (matched.sel({dims.SENSOR: "amsre"}) - truth).isel({dims.Y: 0})
    raw = (stack.sel({dims.SENSOR: "amsre"}) - truth).isel({dims.Y: 0})
    assert float(raw.mean()) == pytest.approx(-0.05, abs=0.005)
    # the -0.05 offset is gone, with one offset per cell (all months alike)
    assert abs(float(err.mean())) < 0.005
    off = fuse.mean_offsets(stack)["amsre"].isel({dims.Y: 0})
    assert float(off.std("month").max()) < 1e-7
    assert float(off.mean()) == pytest.approx(0.05, abs=0.005)
    # switched off: AMSR-E outside TMI keeps its offset
    plain = fuse.match_means(stack, climatology={})
    xr.testing.assert_allclose(plain.sel({dims.SENSOR: "amsre"}).isel({dims.Y: 0}),
                               stack.sel({dims.SENSOR: "amsre"}).isel({dims.Y: 0}))
    lazy = fuse.match_means(stack.chunk({dims.TIME: -1, dims.Y: 1}))
    np.testing.assert_allclose(lazy.values, matched.values, rtol=0, atol=1e-7)
