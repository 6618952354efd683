"""pipeline.graphs.carbon: TCF over datasets (numpy == dask == direct model), archive jobs, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner

from models import l4c
from pipeline import carbon, grid, schema
from pipeline.graphs import carbon as graph
from pipeline.io import bplut as bplut_io
from pipeline.io import stores
from tests.fixtures.common import real_data_dir

BPLUT = real_data_dir() / "pyl4c_bplut" / "SMAP_BPLUT_2020-07-31.csv"
pytestmark = pytest.mark.skipif(not BPLUT.exists(), reason=f"real BPLUT not found at {BPLUT}")
TIMES = pd.date_range("2015-01-01", "2016-12-31", freq="D")


@pytest.fixture(scope="module")
def table():
    return bplut_io.read_bplut(str(BPLUT)).table


def _met(n_site=3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(len(TIMES))
    season = -np.cos(2 * np.pi * (t - 15) / 365.0)[None, :]
    shape = (n_site, len(TIMES))
    ta = 268 + 16 * season + rng.normal(0, 2, shape)
    ds = xr.Dataset(
        {"ta": (("site", "time"), ta), "tmin": (("site", "time"), ta - 4),
         "sw_in": (("site", "time"), np.clip(140 + 120 * season + rng.normal(0, 20, shape), 0,
                                             None)),
         "vpd": (("site", "time"), np.clip(300 + 400 * season, 0, None) + 0 * ta)},
        coords={"site": [f"S{i}" for i in range(n_site)], "time": TIMES,
                "pft": ("site", np.array([1, 5, 6][:n_site], np.int8))})
    return ds.astype(np.float32)


def test_run_tcf_numpy_equals_dask_equals_direct_model(table):
    met = _met()
    drv = carbon.tcf_drivers(met, met.pft)
    eager = graph.run_tcf(drv, met.pft, table)
    lazy = graph.run_tcf(drv.chunk(site=1), met.pft.chunk(site=1), table)
    assert lazy.nee.chunks is not None
    xr.testing.assert_allclose(eager, lazy.compute(), rtol=1e-5, atol=1e-6)
    # Direct use of models.l4c for site 0: spin-up on the climatology, then the run.
    # (Copies of site 0 in the padded batch shape the kernel uses: one XLA compile.)
    k = graph.PAD_MIN
    p = l4c.params_for_pft(table, np.repeat(met.pft.values[:1], k))
    d = l4c.Drivers(*[np.repeat(drv[v].values[:1], k, axis=0) for v in graph.DRIVER_ORDER])
    ords = l4c.ordinals365(TIMES.day_of_year.values, TIMES.year.values)
    smin = np.repeat(drv.smrz_min.values[:1], k)
    npp = p.cue[:, None] * np.asarray(l4c.gpp(p, d, smin))
    litter = np.asarray(l4c.litterfall(npp, ords))
    clim = l4c.Drivers(*[graph._clim365(a, ords) for a in d])
    soc, n, delta = l4c.spin_up(p, clim, litter, smrz_min=smin)
    f = l4c.run(p, d, soc, litter, smin)
    np.testing.assert_allclose(eager.nee.values[0], np.asarray(f.nee)[0], rtol=1e-5, atol=1e-5)
    # Physics: NEE = RECO − GPP; GPP ≥ 0; near-zero GPP in the frozen depth of winter; the
    # spun-up site is close to carbon neutral over the two years (|mean NEE| ≪ mean GPP).
    np.testing.assert_allclose(eager.nee, eager.reco - eager.gpp, atol=1e-5)
    assert float(eager.gpp.min()) >= 0
    assert float(eager.gpp.sel(time="2016-01-10").max()) < 0.05 * float(eager.gpp.max())
    assert bool((np.abs(eager.nee.mean("time")) < 0.2 * eager.gpp.mean("time")).all())


def _archive(root, n_days=None):
    n_days = len(TIMES) if n_days is None else n_days
    w = grid.Window(120, 123, 100, 103)
    g = grid.grid_coords("N36", w)
    times = TIMES[:n_days]
    t = np.arange(n_days)
    season = -np.cos(2 * np.pi * (t - 15) / 365.0)[:, None, None]
    ts = (268 + 16 * season + np.zeros((1, 3, 3))).astype(np.float32)
    truth = g.assign_coords(time=times, **{"pass": ["am", "pm"]})
    st = np.stack([ts - 3, ts + 3], axis=1)
    truth["surface_temperature"] = (("time", "pass", "y", "x"), st)
    truth["soil_temperature"] = (("time", "pass", "y", "x"), np.stack([ts, ts], axis=1))
    truth["soil_moisture"] = (("time", "pass", "y", "x"), np.full(st.shape, 0.25, np.float32))
    truth["frozen"] = (("time", "pass", "y", "x"), (st < 273.15).astype(np.int8))
    gpp = np.clip(4 * season, 0, None) * np.ones((1, 3, 3))
    reco = 0.3 + 1.5 * np.clip(season + 0.3, 0, None) * np.ones((1, 3, 3))
    for k, v in (("gpp", gpp), ("reco", reco), ("nee", reco - gpp)):
        truth[k] = (("time", "y", "x"), v.astype(np.float32))
    static = g.copy()
    static["pft"] = (("y", "x"), np.array([[1, 1, 5], [5, 6, 6], [0, 1, 6]], np.int8))
    static["land_fraction"] = (("y", "x"), np.where(static.pft.values > 0, 1.0, 0.0)
                               .astype(np.float32))
    static["bulk_density"] = (("y", "x"), np.full((3, 3), 1.3, np.float32))
    stores.write_dataset(truth, stores.truth_url(root, "N36"))
    stores.write_dataset(static, stores.static_url(root, "N36"))
    # Two towers at cell centres (1, 1) GRS and (0, 0) ENF observing truth + noise.
    rng = np.random.default_rng(0)
    rc = [(121, 101), (120, 100)]
    lat, lon = zip(*[grid.xy_to_latlon("N36", *grid.rowcol_to_xy("N36", r, c)) for r, c in rc],
                   strict=True)
    data = {}
    for k in ("nee", "gpp", "reco"):
        data[k] = np.stack([truth[k].values[:, r - 120, c - 100] for r, c in rc]) \
            + rng.normal(0, 0.3, (2, n_days))
        data[f"{k}_qc"] = np.ones((2, n_days))
    ta = np.stack([st.mean(1)[:, r - 120, c - 100] for r, c in rc])
    data.update(ta=ta, tmin=ta - 3, sw_in=np.full((2, n_days), 150.0),
                vpd=np.full((2, n_days), 400.0))
    from pipeline.io import fluxnet

    meta = pd.DataFrame({"lat": np.ravel(lat), "lon": np.ravel(lon), "igbp": ["GRA", "ENF"]},
                        index=["SIM-1", "SIM-2"])
    tw = fluxnet.towers_dataset(data, ["SIM-1", "SIM-2"], times.values, meta)
    schema.check(tw, schema.TOWERS, context="synthetic towers")
    stores.write_dataset(tw, stores.towers_url(root, "simflux"))
    return truth, static


@pytest.mark.slow
def test_model_archive_product_and_cli_jobs(tmp_path, table):
    from pipeline.cli import cli

    root = str(tmp_path / "arch")
    truth, static = _archive(root, n_days=365)
    runner = CliRunner()
    env = {"TBCUBE_BPLUT": str(BPLUT)}
    r = runner.invoke(cli, ["carbon", "model", "--root", root, "--grid", "N36"], env=env)
    assert r.exit_code == 0, r.output
    assert "products/carbon-l4c-n36-v1/" in r.output.strip().splitlines()[-1]
    product = xr.open_zarr(r.output.strip().splitlines()[-1])
    schema.check(product, schema.CARBON_PRODUCT, context="carbon product")
    p = product.compute()
    assert bool(p.nee.isel(y=2, x=0).isnull().all())  # PFT 0 (no vegetation) -> no flux
    np.testing.assert_allclose(p.reco, p.nee + p.gpp, atol=1e-5)
    veg = static.pft > 0
    summer = p.gpp.sel(time=slice("2015-07-01", "2015-07-31")).mean("time")
    winter = p.gpp.sel(time=slice("2015-01-01", "2015-01-31")).mean("time")
    assert bool((summer > 10 * winter + 0.1).where(veg, True).all())
    # GPP is exactly 0 on days whose Tmin (the am surface temperature) is below the PFT's tmin0.
    tmin0 = xr.DataArray(table["tmin0"][np.clip(static.pft.values, 0, 8)], dims=("y", "x"))
    cold = truth.surface_temperature.sel({"pass": "am"}) < tmin0
    assert int(cold.where(veg, False).sum()) > 100
    assert float(abs(p.gpp).where(cold & veg).max()) == 0.0
    rep = json.loads((tmp_path / "arch/reports/carbon-model.json").read_text())
    assert rep["sizes"] == {"time": 365, "y": 3, "x": 3}
    r = runner.invoke(cli, ["carbon", "evaluate", "--root", root, "--grid", "N36"], env=env)
    assert r.exit_code == 0, r.output
    ev = json.loads((tmp_path / "arch/reports/carbon-evaluation/evaluation.json").read_text())
    assert ev["pooled"]["nee"]["n"] == 2 * 365
    for f in ("sites.csv", "groups.csv", "budgets.csv", "scatter_nee_by_pft.png",
              "seasonal_cycles.png", "budgets_nee.png"):
        assert (tmp_path / "arch/reports/carbon-evaluation" / f).stat().st_size > 0
    sites = xr.open_zarr(tmp_path / "arch/reports/carbon-evaluation/sites.zarr")
    schema.check(sites, schema.VALIDATION, context="carbon validation")
    r = runner.invoke(cli, ["carbon", "aggregate", "--root", root, "--grid", "N36"])
    assert r.exit_code == 0, r.output
    agg = json.loads((tmp_path / "arch/reports/carbon-aggregate.json").read_text())
    rows = {(x["group"], x["year"]): x for x in agg["rows"]}
    # Area-weighted mean of the 'all' group = mean over the 8 vegetated cells of annual GPP.
    annual = p.gpp.groupby("time.year").sum().where(static.pft > 0).mean(("y", "x"))
    assert rows[("all", 2015)]["gpp_mean"] == pytest.approx(float(annual.sel(year=2015)),
                                                           rel=1e-4)
    assert rows[("all", 2015)]["area"] == pytest.approx(8 * 36.0**2)
    # Missing archive -> one-line error, exit 2.
    from pipeline.cli import main

    with pytest.raises(SystemExit) as e:
        main(["carbon", "model", "--root", str(tmp_path / "nothing"), "--grid", "N36",
              "--bplut", str(BPLUT)])
    assert e.value.code == 2


@pytest.mark.slow
@pytest.mark.realdata
def test_towers_cli_on_real_fluxnet(tmp_path, real_data):
    from pipeline.cli import cli
    from pipeline.io import fluxnet

    out = tmp_path / "real"
    r = CliRunner().invoke(cli, ["carbon", "towers", "--real-data", str(real_data), "--out",
                                 str(out), "--sites", "US-Atq,US-Ivo"])
    assert r.exit_code == 0, r.output
    ev = json.loads((out / "evaluation.json").read_text())
    tw = fluxnet.read_fluxnet_zarr(str(real_data / "fluxnet2015_zarr_subset/fluxnet.zarr"),
                                   ["US-Atq", "US-Ivo"])
    n_good = int(((tw.nee_qc >= 0.8) & tw.nee.notnull()).sum())
    assert ev["pooled"]["nee"]["n"] == n_good
    assert ev["bplut_release"].startswith("L4_C_SUBSYSTEM_OPS_v7")
    df = pd.read_csv(out / "sites.csv")
    assert set(df.site) == {"US-Atq", "US-Ivo"}
    # The model captures the seasonal cycle of GPP at tundra sites.
    assert (df[(df.variable == "gpp") & (df.season == "all")].r > 0.6).all()


@pytest.mark.slow
def test_model_and_evaluate_on_the_simulated_tiny_archive(sim_tiny, tmp_path):
    import shutil

    root = tmp_path / "tiny"
    for part in ("static", "truth", "towers"):
        shutil.copytree(f"{sim_tiny}/{part}", root / part)
    rep = graph.model_root(str(root), "M36", str(BPLUT))
    product = xr.open_zarr(rep["url"])
    schema.check(product, schema.CARBON_PRODUCT, context="tiny carbon product")
    # TCF and the simulator's own flux model both follow the seasons: GPP correlates.
    assert rep["vs_truth_median_over_cells"]["gpp"]["r"] > 0.6
    s = graph.evaluate_root(str(root), "M36")
    assert s["pooled"]["gpp"]["n"] > 300 and s["pooled"]["gpp"]["r"] > 0.5
    agg = graph.aggregate_root(str(root), "M36")
    rows = {(r["group"], r["year"]): r for r in agg["rows"]}
    assert rows[("all", 2015)]["area"] > 0 and rows[("all", 2015)]["gpp_total"] > 0
