"""pipeline.carbon stages: matching, scores, seasons, budgets, aggregation (numpy == dask)."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline import carbon, grid

pytesmo_metrics = pytest.importorskip("pytesmo.metrics")

TIMES = pd.date_range("2016-01-01", "2017-12-31", freq="D")


WINDOW = grid.Window(100, 104, 200, 205)


def _product(window=WINDOW, with_pft=True):
    """N36 window product whose value at (row, col) is row + col/1000 (+ day, + 0.1·pft)."""
    ds = grid.grid_coords("N36", window)
    rows = np.arange(window.row0, window.row1)[:, None]
    cols = np.arange(window.col0, window.col1)[None, :]
    base = (rows + cols / 1000.0).astype(np.float32)
    day = np.arange(len(TIMES), dtype=np.float32)[:, None, None] * 1e-3
    ds = ds.assign_coords(time=TIMES)
    ds["nee"] = (("time", "y", "x"), base[None] + day)
    ds["gpp"] = (("time", "y", "x"), 2 * base[None] + day)
    if with_pft:
        ds = ds.assign_coords(pft=("pft", np.arange(1, 9, dtype=np.int8)))
        p = np.arange(1, 9, dtype=np.float32)[None, :, None, None] * 0.1
        ds["nee_pft"] = (("time", "pft", "y", "x"), (base[None] + day)[:, None] + p)
        ds["gpp_pft"] = (("time", "pft", "y", "x"), (2 * base[None] + day)[:, None] + p)
    return ds, window


def _towers(lat, lon, pft, seed=0, n_time=None):
    n_time = len(TIMES) if n_time is None else n_time
    rng = np.random.default_rng(seed)
    n = len(lat)
    t = np.arange(n_time)
    ta = 268 + 15 * -np.cos(2 * np.pi * (t - 15) / 365)[None, :] + rng.normal(0, 2, (n, n_time))
    vals = {v: rng.normal(0, 2, (n, n_time)) for v in ("nee", "gpp", "reco")}
    vals.update({f"{v}_qc": rng.uniform(0.5, 1.0, (n, n_time)) for v in ("nee", "gpp", "reco")})
    ds = xr.Dataset({k: (("site", "time"), v.astype(np.float32)) for k, v in vals.items()},
                    coords={"site": [f"S{i}" for i in range(n)], "time": TIMES[:n_time],
                            "lat": ("site", np.asarray(lat, float)),
                            "lon": ("site", np.asarray(lon, float)),
                            "pft": ("site", np.asarray(pft, np.int8)),
                            "igbp": ("site", ["X"] * n)})
    ds["ta"] = (("site", "time"), ta.astype(np.float32))
    return ds


def test_match_towers_picks_the_containing_cell_and_pft_flux():
    prod, w = _product()
    r, c = 101, 203
    lat, lon = grid.xy_to_latlon("N36", *grid.rowcol_to_xy("N36", r + 0.3, c - 0.2))
    tw = _towers([float(lat), 10.0, float(lat)], [float(lon), 0.0, float(lon)], [5, 1, 0])
    m = carbon.match_towers(prod, tw)
    assert m["matched"].values.tolist() == ["pft", "outside", "cell"]
    assert int(m["row"][0]) == r and int(m["col"][0]) == c
    want = r + c / 1000.0
    np.testing.assert_allclose(float(m.nee.isel(site=0, time=0)), want + 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(m.nee.isel(site=2, time=0)), want, rtol=1e-6)
    np.testing.assert_allclose(float(m.reco.isel(site=0, time=3)),
                               (want + 3e-3 + 0.5) + (2 * want + 3e-3 + 0.5), rtol=1e-6)
    assert bool(m.nee.isel(site=1).isnull().all())
    # The cell mean is used when the product has no PFT sub-grid.
    m2 = carbon.match_towers(_product(with_pft=False)[0], tw)
    assert m2["matched"].values.tolist()[0] == "cell"


def test_evaluate_equals_pytesmo_on_qc_filtered_pairs():
    tw = _towers([65, 66], [-150, -148], [1, 6], seed=1)
    rng = np.random.default_rng(2)
    model = xr.Dataset({v: tw[v] + rng.normal(0.3, 1.0, tw[v].shape).astype(np.float32)
                        for v in ("nee", "gpp", "reco")})
    out = carbon.evaluate(model, tw, min_qc=0.8)
    for i in range(2):
        x = model.nee.values[i]
        y = tw.nee.values[i]
        ok = tw.nee_qc.values[i] >= 0.8
        got = out.nee.isel(site=i)
        assert int(got.sel(metric="n")) == ok.sum()
        np.testing.assert_allclose(float(got.sel(metric="bias")),
                                   pytesmo_metrics.bias(x[ok], y[ok]), rtol=1e-6)
        np.testing.assert_allclose(float(got.sel(metric="ubrmsd")),
                                   pytesmo_metrics.ubrmsd(x[ok], y[ok]), rtol=1e-6)
        np.testing.assert_allclose(float(got.sel(metric="r")),
                                   pytesmo_metrics.pearson_r(x[ok], y[ok]), rtol=1e-6)
    assert out.attrs["nee_ubrmse_target"] == 1.6
    # Pooled over all sites equals pytesmo on the concatenated QC-passing pairs.
    g = carbon.group_metrics(model, tw, min_qc=0.8)
    ok = tw.nee_qc.values >= 0.8
    x, y = model.nee.values[ok], tw.nee.values[ok]
    pooled = g.nee.sel(group="all", season="all")
    np.testing.assert_allclose(float(pooled.sel(metric="rmsd")), pytesmo_metrics.rmsd(x, y),
                               rtol=1e-6)
    pft_enf = g.nee.sel(group="pft:ENF", season="all")
    ok0 = ok[0]
    np.testing.assert_allclose(float(pft_enf.sel(metric="rmsd")),
                               pytesmo_metrics.rmsd(model.nee.values[0][ok0],
                                                    tw.nee.values[0][ok0]), rtol=1e-6)


def test_group_metrics_by_season_equal_pytesmo_on_that_seasons_pairs(monkeypatch):
    """Groups × seasons in one vectorised call (and in batches of groups) = pytesmo per pair set."""
    tw = _towers([45, 55, 66], [-120, -110, -150], [1, 1, 6])
    rng = np.random.default_rng(3)
    model = xr.Dataset({v: tw[v] + rng.normal(0.5, 1.0, tw[v].shape).astype(np.float32)
                        for v in ("nee", "gpp", "reco")})
    seasons = carbon.season_labels(tw)
    g = carbon.group_metrics(model, tw, min_qc=0.8, seasons=seasons)
    assert list(g.season.values) == ["all", *carbon.SEASONS.values()]
    groups = carbon.tower_groups(tw)
    assert list(g.group.values) == list(groups)
    for code, name in carbon.SEASONS.items():
        for gname in ("all", "pft:ENF", "lat:60-70"):
            ok = (tw.nee_qc.values >= 0.8) & (seasons.values == code) & groups[gname][:, None]
            got = g.nee.sel(group=gname, season=name)
            x, y = model.nee.values[ok], tw.nee.values[ok]
            assert int(got.sel(metric="n")) == ok.sum() > 10
            np.testing.assert_allclose(float(got.sel(metric="ubrmsd")),
                                       pytesmo_metrics.ubrmsd(x, y), rtol=1e-6)
            np.testing.assert_allclose(float(got.sel(metric="bias")),
                                       pytesmo_metrics.bias(x, y), rtol=1e-6)
    monkeypatch.setattr(carbon, "GROUP_BATCH_VALUES", 1)       # one group per batch
    xr.testing.assert_allclose(carbon.group_metrics(model, tw, min_qc=0.8, seasons=seasons), g)


def test_mean_seasonal_cycle_equals_xarray_groupby():
    tw = _towers([45, 55], [-120, -110], [1, 6])
    da = tw.nee.where(tw.nee_qc >= 0.7)
    da[1, :40] = np.nan
    ref = da.groupby(da.time.dt.dayofyear).mean()
    ref = ref.rolling(dayofyear=7, center=True, min_periods=1).mean()
    got = carbon.mean_seasonal_cycle(da)
    assert got.dims == ("site", "dayofyear") and got.sizes["dayofyear"] == 366
    xr.testing.assert_allclose(got, ref.transpose(*got.dims).astype(np.float64))
    one = carbon.mean_seasonal_cycle(da.isel(site=1))
    assert one.dims == ("dayofyear",) and str(one.site.values) == "S1"


def test_season_labels_from_ft_and_from_temperature():
    tw = _towers([65], [-150], [1], n_time=60)
    ft = xr.DataArray(np.r_[np.zeros(20), np.ones(40)][None, :], dims=("site", "time"),
                      coords={"site": tw.site, "time": tw.time})
    lab = carbon.season_labels(tw, ft, window_days=15).values[0]
    assert (lab[:20] == 0).all()  # frozen -> cold
    assert (lab[20:27] == 1).all() and lab[27] == 2  # within 7 days of a frozen day -> shoulder
    tw2 = tw.copy()
    tw2["ta"] = xr.full_like(tw.ta, 260.0).where(tw.time < TIMES[30], 290.0)
    lab2 = carbon.season_labels(tw2).values[0]
    # A centred 15-day mean with k warm days is 260 + 2k K: shoulder (273.15–278.15 K) for
    # k = 7, 8, 9 only.
    assert lab2[0] == 0 and lab2[-1] == 2 and (lab2 == 1).sum() == 3


def test_budgets_need_80_percent_valid_days():
    tw = _towers([65, 66], [-150, -148], [1, 6])
    tw["nee"] = xr.full_like(tw.nee, 1.0)
    model = xr.Dataset({v: xr.full_like(tw[v], 2.0) for v in ("nee", "gpp", "reco")})
    # Site 1 misses 30 % of 2016 -> no 2016 budget; site 0 misses 10 % -> scaled to 366 days.
    nee = tw.nee.values.copy()
    nee[1, :110] = np.nan
    nee[0, :36] = np.nan
    tw["nee"] = (("site", "time"), nee)
    b = carbon.budgets(model, tw, min_valid=0.8)
    assert float(b.nee_tower.sel(site="S0", year=2016)) == pytest.approx(366.0)
    assert float(b.nee_model.sel(site="S0", year=2016)) == pytest.approx(732.0)
    assert np.isnan(float(b.nee_tower.sel(site="S1", year=2016)))
    assert float(b.nee_tower.sel(site="S1", year=2017)) == pytest.approx(365.0)


def _fail(*a, **k):
    raise AssertionError("computed")


def test_aggregate_budgets_area_weighted_numpy_equals_dask():
    prod, w = _product(with_pft=False)
    prod["reco"] = prod.nee + prod.gpp
    pft = xr.DataArray(np.array([[1, 1, 5, 6, 0]] * 4, np.int8), dims=("y", "x"))
    land = xr.DataArray(np.full((4, 5), 0.5), dims=("y", "x"))
    area = grid.get("N36").cell_area_m2 * land
    ones = prod.copy()
    for v in ("nee", "gpp", "reco"):
        ones[v] = xr.ones_like(prod[v])
    groups = carbon.aggregation_groups(prod.lat, pft, bands=(-90, 50, 90))
    eager = carbon.aggregate_budgets(ones, area, groups)
    n_land = 16
    want_total = 366 * n_land * 36000.0**2 * 0.5 * 1e-12
    np.testing.assert_allclose(float(eager.nee_total.sel(group="all", year=2016)), want_total)
    np.testing.assert_allclose(float(eager.nee_mean.sel(group="all", year=2016)), 366.0)
    np.testing.assert_allclose(float(eager.gpp_mean.sel(group="pft:SHR", year=2017)), 365.0)
    # Real values: numpy-backed == dask-backed (and the dask graph is not computed when built).
    e2 = carbon.aggregate_budgets(prod, area, groups)
    with dask.config.set(scheduler=_fail):
        lazy = carbon.aggregate_budgets(prod.chunk(time=366, y=2), area.chunk(y=2), groups)
    xr.testing.assert_allclose(e2, lazy.compute(), rtol=1e-6)
    assert float(e2.gpp_total.sel(group="all", year=2016)) > 0


def test_tcf_drivers_units_and_assumptions():
    tw = _towers([65], [-150], [5])
    tw["tmin"] = tw.ta - 5
    tw["sw_in"] = xr.full_like(tw.ta, 200.0)
    tw["vpd"] = xr.full_like(tw.ta, 500.0)
    d = carbon.tcf_drivers(tw, tw.pft)
    assert float(d.par[0, 0]) == pytest.approx(0.45 * 0.0036 * 24 * 200, rel=1e-6)
    assert bool(((d.ft == 0) == (tw.tmin < 273.15)).all())
    assert float(d.smrz.max()) == 100.0 and float(d.smrz_min[0]) == 0.0
    lo, hi = carbon.FPAR_RANGE[5]
    assert float(d.fpar.min()) >= lo - 1e-6 and float(d.fpar.max()) <= hi + 1e-6
    ta15 = pd.Series(tw.ta.values[0]).rolling(15, min_periods=1).mean().to_numpy()
    want = lo + (hi - lo) * np.clip((ta15 - 273.15) / 10.0, 0, 1)
    np.testing.assert_allclose(d.fpar.values[0], want, atol=1e-5)


@pytest.mark.slow
def test_aggregation_on_a_local_cluster_equals_eager(dask_client):
    prod, w = _product(with_pft=False)
    prod["reco"] = prod.nee + prod.gpp
    pft = xr.DataArray(np.array([[1, 1, 5, 6, 0]] * 4, np.int8), dims=("y", "x"))
    area = grid.get("N36").cell_area_m2 * xr.DataArray(np.full((4, 5), 0.7), dims=("y", "x"))
    groups = carbon.aggregation_groups(prod.lat, pft, bands=(-90, 50, 90))
    eager = carbon.aggregate_budgets(prod, area, groups)
    lazy = carbon.aggregate_budgets(prod.chunk(time=366, y=2), area, groups)
    got = dask_client.compute(lazy).result()
    xr.testing.assert_allclose(eager, got, rtol=1e-6)


def test_site_scores_aggregated_by_group_are_medians():
    tw = _towers([65, 66, 72], [-150, -148, -155], [1, 6, 6], seed=3)
    rng = np.random.default_rng(4)
    model = xr.Dataset({v: tw[v] + rng.normal(0, 1 + i, tw[v].shape).astype(np.float32)
                        for i, v in enumerate(("nee", "gpp", "reco"))})
    sites = carbon.evaluate(model, tw)
    agg = carbon.aggregate_site_scores(sites, tw)
    ub = sites.nee.sel(metric="ubrmsd").values
    np.testing.assert_allclose(float(agg.nee.sel(group="all", metric="ubrmsd")), np.median(ub))
    np.testing.assert_allclose(float(agg.nee.sel(group="pft:GRS", metric="ubrmsd")),
                               np.median(ub[1:]))
    np.testing.assert_allclose(float(agg.gpp.sel(group="lat:70-90", metric="bias")),
                               float(sites.gpp.sel(metric="bias")[2]))


@pytest.mark.parametrize("days", [1, 5, 15])
def test_trailing_mean_equals_rolling_and_keeps_the_chunks(days):
    """The TCF drivers' trailing means (cumulative sums) = xarray's rolling mean with
    min_periods=1, gaps included; on dask the space chunks stay as they came (rolling splits
    them to one row at 15 days, and the TCF kernel then ran once per row)."""
    rng = np.random.default_rng(days)
    a = rng.normal(270.0, 8.0, (200, 32, 3)).astype(np.float32)
    a[rng.random(a.shape) < 0.2] = np.nan
    a[40:60, 5] = np.nan                           # a gap longer than every window
    da = xr.DataArray(a, dims=("time", "y", "x"))
    want = da.rolling(time=days, min_periods=1).mean()
    got = carbon._trailing_mean(da, days)
    assert got.dtype == np.float32 and got.dims == da.dims
    np.testing.assert_allclose(got.values, want.values, rtol=2e-6, equal_nan=True)
    assert bool(np.isnan(got.values[40 + days:60, 5]).all())
    lazy = carbon._trailing_mean(da.chunk({"time": -1, "y": 16}), days)
    assert lazy.chunks == ((200,), (16, 16), (3,))
    np.testing.assert_array_equal(lazy.values, got.values)
