"""Calibration → SMAP retrieval → LSTM → harmonise → fuse → validate on the tiny simulator
archive (a copy, so the session fixture stays clean)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings

import numpy as np
import pytest
import xarray as xr

from pipeline import dims, schema
from pipeline.graphs import calibration, harmonise
from pipeline.io import publish, stores

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chain_root(sim_tiny, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("chain") / "tiny")
    shutil.copytree(sim_tiny, root)
    return root


@pytest.fixture(scope="module")
def calibrated(chain_root):
    fit = calibration.fit(chain_root)
    applied = calibration.apply(chain_root)
    return fit, applied


def test_calibration_removes_inter_sensor_bias(calibrated, chain_root):
    fit, applied = calibrated
    hops = {(h["source"], h["reference"]): h for h in fit["hops"]}
    assert ("amsr2", "gmi") in hops and ("tmi", "gmi") in hops
    for hop in hops.values():
        before = [abs(c["median_bias_before_K"]) for c in hop["channels"].values()]
        after = [abs(c["median_bias_after_K"]) for c in hop["channels"].values()]
        # the simulator injects 0.5-3 K offsets, ±2 % gains and incidence/frequency differences
        assert max(before) > 1.0
        assert max(after) < 0.5
    for sensor, url in applied["calibrated"].items():
        ds = stores.open_dataset(url)
        schema.check(ds, schema.calibrated_spec(sensor), context=url)
        assert ds.attrs["calibrated_to"] == "gmi"
    # the reference sensor is unchanged
    raw = stores.open_dataset(stores.tb_url(chain_root, "gmi"))[dims.TB]
    cal = stores.open_dataset(applied["calibrated"]["gmi"])[dims.TB]
    xr.testing.assert_identical(raw.load(), cal.load())


def test_calibrated_tb_is_closer_to_the_reference(calibrated, chain_root):
    """On collocated overlap days, calibrated AMSR2 agrees better with GMI than raw AMSR2."""
    _, applied = calibrated
    raw = stores.open_dataset(stores.tb_url(chain_root, "amsr2"))
    cal = stores.open_dataset(applied["calibrated"]["amsr2"])
    ref = stores.open_dataset(stores.tb_url(chain_root, "gmi"))
    m = {"10.65H": "10.65H", "36.5V": "36.64V"}
    from pipeline import calibrate

    p_raw = calibrate.collocate(raw, ref, m).load()
    p_cal = calibrate.collocate(cal, ref, m).load()
    rms = lambda p: float(np.sqrt(((p["src"] - p["ref"]) ** 2).mean()))  # noqa: E731
    assert rms(p_cal) < 0.5 * rms(p_raw)


@pytest.fixture(scope="module")
def lstm_chain(calibrated, chain_root):
    from pipeline.graphs import retrieval

    retrieval.run(chain_root)
    s = dataclasses.replace(harmonise.TrainSettings(), test_year=2016, max_epochs=3)
    tr = harmonise.train(chain_root, s)
    hm = harmonise.harmonise_all(chain_root)
    fu = harmonise.fuse_all(chain_root)
    va = harmonise.validate(chain_root, s)
    return tr, hm, fu, va


def test_lstm_training_learns_and_registers(lstm_chain, chain_root):
    tr, _, _, _ = lstm_chain
    hist = tr["history"]
    assert hist[tr["best_epoch"]]["val_loss"] < hist[0]["val_loss"]
    ref = harmonise.latest_model(chain_root)
    assert stores.exists(ref.uri)
    assert tr["holdout_cells"] > 0 and tr["training_shards"]["train"] > 0


def test_harmonised_products_conform_and_have_skill(lstm_chain, chain_root):
    _, hm, _, va = lstm_chain
    assert set(hm["products"]) >= {"amsr2", "gmi", "tmi"}
    assert hm["landcover_unseen_in_training"] == harmonise.unseen_landcover(
        harmonise.latest_model(chain_root), harmonise._static(chain_root, None))
    for s, url in hm["products"].items():
        ds = xr.open_zarr(url)
        schema.check(ds, schema.SM_HARMONISED, context=url)
        assert ds.attrs["sensor"] == s
    # on unseen cells/year the LSTM must beat a constant climatology of the SMAP target
    smap = publish.open_product(chain_root, harmonise.product_id("smap", "m36"))
    tgt = harmonise.harmonise.target(smap).load()
    clim_std = float(tgt.std())
    for s in ("amsr2", "gmi"):
        assert va["against_smap_heldout"][s]["ubrmsd"] < clim_std
        assert va["against_smap_heldout"][s]["r"] > 0.5


def test_harmonised_frozen_flags_follow_the_reanalysis_rule(lstm_chain, chain_root):
    """With the archive's reanalysis store, FROZEN_GROUND is the SMAP retrieval's own rule
    (pass soil temperature < 274.15 K), not the 36.5 GHz TB heuristic."""
    from pipeline import qc, soil_moisture

    _, hm, _, _ = lstm_chain
    ds = xr.open_zarr(hm["products"]["amsr2"]).load()
    anc = stores.open_dataset(stores.ancillary_url(chain_root, ds.attrs["grid"]))
    t = anc["soil_temperature"].reindex({dims.TIME: ds[dims.TIME]}).sel(
        {dims.PASS: ds[dims.PASS]}).transpose(*ds[dims.QUALITY_FLAG].dims).load()
    frozen = (ds[dims.QUALITY_FLAG] & int(qc.QC.FROZEN_GROUND)) != 0
    known = t.notnull().values
    assert known.mean() > 0.9
    want = (t < soil_moisture.RetrievalParams().frozen_below_k).values
    np.testing.assert_array_equal(frozen.values[known], want[known])
    assert 0 < want[known].mean() < 1
    assert not bool(ds[dims.SOIL_MOISTURE].where(frozen).notnull().any())


def test_without_reanalysis_station_fitted_screens_beat_the_tb_threshold(
        lstm_chain, chain_root, tmp_path):
    """An archive without ancillary/ (data contract only): `sm harmonise` fits a frozen-ground
    classifier per sensor at the stations.  Against the truth's frozen state it lets fewer
    frozen pass-days through than the 36.5 GHz V threshold it replaces and removes fewer thawed
    ones (measured on AMSR2: 12 % → 5 % and 38 % → 21 %)."""
    from pipeline import qc
    from pipeline.graphs import frozen_screens

    root = str(tmp_path / "noanc")
    shutil.copytree(chain_root, root, ignore=shutil.ignore_patterns("ancillary"))
    hm = harmonise.harmonise_all(root)
    table = frozen_screens.load(root)
    assert hm["frozen_screen"]["table"] == frozen_screens.table_url(root)
    truth = stores.open_dataset(stores.truth_url(root, "M36"))["frozen"].load()
    for s in ("amsr2", "gmi", "tmi"):
        entry = table["sensors"][s]
        assert entry["model"] is not None, (s, entry)
        ds = xr.open_zarr(hm["products"][s]).load()
        flag = ds[dims.QUALITY_FLAG].values.astype(np.int64)
        observed = (flag & int(qc.QC.INSUFFICIENT_OBS)) == 0
        ours = (flag & int(qc.QC.FROZEN_GROUND)) != 0
        cal = stores.open_tb(stores.calibrated_url(root, s))
        tb36 = cal[dims.TB].sel({dims.CHANNEL: "36.5V" if s == "amsr2" else
                                 {"gmi": "36.64V", "tmi": "37.0V"}[s]})
        threshold = (tb36.transpose(*ds[dims.QUALITY_FLAG].dims).values
                     < harmonise.FROZEN_TB36V_K)
        frozen = truth.reindex({dims.TIME: ds[dims.TIME]}).transpose(
            *ds[dims.QUALITY_FLAG].dims).values == 1
        fz, th = observed & frozen, observed & ~frozen
        assert fz.sum() > 20 and th.sum() > 1000, s

        def rates(pred, fz=fz, th=th):
            return (pred & th).sum() / th.sum(), (~pred & fz).sum() / fz.sum()

        (lost, leak), (lost_thr, leak_thr) = rates(ours), rates(threshold)
        assert leak < leak_thr and lost < lost_thr, (s, leak, leak_thr, lost, lost_thr)
        assert not bool(ds[dims.SOIL_MOISTURE].where(ours).notnull().any())


def test_harmonised_products_flag_the_cells_of_a_dense_canopy_target(lstm_chain, chain_root):
    """DENSE_VEGETATION on every observed pass-day of the cells whose SMAP target is flagged
    dense on most retrievals; their values are kept, as the SMAP product keeps its own."""
    from pipeline import qc

    _, hm, _, _ = lstm_chain
    smap = publish.open_product(chain_root, harmonise.product_id("smap", "m36")).load()
    got_sm = smap[dims.SOIL_MOISTURE].notnull()
    share = (((smap[dims.QUALITY_FLAG].astype(int) & int(qc.QC.DENSE_VEGETATION)) != 0)
             & got_sm).sum((dims.TIME, dims.PASS)) / got_sm.sum((dims.TIME, dims.PASS))
    want = (share > 0.5).values
    assert 0 < want.sum() < want.size and hm["dense_target_cells"] == want.sum()
    ds = xr.open_zarr(hm["products"]["gmi"]).load()
    flag = ds[dims.QUALITY_FLAG].astype(int)
    dense = (flag & int(qc.QC.DENSE_VEGETATION)) != 0
    observed = (flag & int(qc.QC.INSUFFICIENT_OBS)) == 0
    np.testing.assert_array_equal(dense.values, (observed & want).values)
    assert bool(ds[dims.SOIL_MOISTURE].where(dense).notnull().any())


def test_fused_product_masks_and_coverage(lstm_chain, chain_root):
    _, _, fu, va = lstm_chain
    ds = xr.open_zarr(fu["product"])
    schema.check(ds, schema.SM_FUSED, context=fu["product"])
    n = ds[dims.N_SOURCES].load()
    mask = ds[dims.SOURCE_MASK].load().astype(int)
    popcount = sum(((mask >> b) & 1) for b in range(5))
    np.testing.assert_array_equal(n.values, popcount.values)
    assert bool((ds[dims.SOIL_MOISTURE].notnull() == (n > 0)).all())
    report = json.loads(open(stores.reports_url(chain_root, "sm-fuse.json")).read())
    assert 0 < report["land_coverage"]["mean"] <= 1
    # coverage of retrievable (thawed, snow-free) land, from the ancillary reanalysis: recount
    thawed = harmonise.thawed_land(chain_root, harmonise._static(chain_root, None), ds[dims.TIME])
    has = ds[dims.SOIL_MOISTURE].notnull().load()
    n = thawed.sum((dims.Y, dims.X))
    want = float(((has & thawed).sum((dims.Y, dims.X)) / n).where(n > 0).mean())
    assert report["land_coverage_thawed"]["mean"] == pytest.approx(want, abs=1e-5)
    # frozen or snow-covered ground has no liquid soil moisture: excluding it raises coverage
    assert report["land_coverage_thawed"]["mean"] > report["land_coverage"]["mean"]
    # the thawed land nobody observed (swath gaps) vs what the chain kept of the observed rest
    # observed = some source's raw TB store has a value that day (independent of the flags)
    seen = xr.zeros_like(has)
    for s in report["sources"]:
        tb = stores.open_dataset(stores.tb_url(chain_root, s))[dims.TB]
        o = tb.notnull().any((dims.CHANNEL, dims.PASS)).reset_coords(drop=True)
        seen = seen | o.reindex({dims.TIME: ds[dims.TIME].values}, fill_value=False).values
    assert not bool((has & ~seen).any())          # a fused value needs an observation
    obs_t = thawed & seen
    m = obs_t.sum((dims.Y, dims.X))
    want_o = float(((has & obs_t).sum((dims.Y, dims.X)) / m).where(m > 0).mean())
    lct = report["land_coverage_thawed"]
    assert lct["of_observed"]["mean"] == pytest.approx(want_o, abs=1e-5)
    assert lct["of_observed"]["mean"] >= lct["mean"]
    assert lct["unobserved_share"] == pytest.approx(1 - float(m.sum() / n.sum()), abs=1e-4)
    assert "fused" in va["against_truth_unseen"]
    # fused vs each sensor is scored on the pixel-days both cover, with equal pair counts
    common = va["fused_vs_sensor_common_support"]
    assert common and set(common) <= {"tmi", "amsre", "amsr2", "gmi"}
    for c in common.values():
        assert c["fused"]["n"] == c["sensor"]["n"] > 0

    def ub(d):
        v = d["ubrmsd_per_pixel_median"]
        return d["ubrmsd"] if v is None else v

    assert va["fused_beats_every_sensor"] == all(ub(c["fused"]) < ub(c["sensor"])
                                                 for c in common.values())


def test_validation_splits_at_the_smap_class_vod_bound(lstm_chain, chain_root):
    """Scores where the truth's L-band VOD ≤ 0.5 (VWC ≤ 5 kg m-2) and above it: the two sides
    partition the all-land pairs, and the sparse side equals pytesmo on pairs picked here."""
    from pytesmo import metrics as pm

    _, _, fu, va = lstm_chain
    le, gt = va["against_truth_unseen_vod_le_0.5"], va["against_truth_unseen_vod_gt_0.5"]
    assert set(le) == set(gt) == set(va["against_truth_unseen"])
    for s, d in va["against_truth_unseen"].items():
        assert le[s]["n"] + gt[s]["n"] == d["n"], s
    fused = xr.open_zarr(fu["product"])[dims.SOIL_MOISTURE]
    grid_name = harmonise._static(chain_root, None).attrs["grid"]
    truth = stores.open_dataset(stores.truth_url(chain_root, grid_name)).reindex(
        {dims.TIME: fused[dims.TIME]})
    f = truth[dims.FREQUENCY].values
    vod = truth[dims.VOD].isel({dims.FREQUENCY: int(np.argmin(abs(f - 1.41)))}).values
    frozen = truth["frozen"].values.max(axis=1)                     # (time, pass, y, x) -> any
    with warnings.catch_warnings():                               # all-NaN days: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = np.nanmean(np.where(frozen[:, None] == 0, truth[dims.SOIL_MOISTURE].values,
                                  np.nan), axis=1).astype(np.float64)
        vod = np.nanmean(vod, axis=1)
    est = fused.values.astype(np.float64)
    ny, nx = est.shape[1:]
    held = (np.arange(ny * nx).reshape(ny, nx) % 5) == 2
    unseen = held[None] | (fused[dims.TIME].dt.year.values == 2016)[:, None, None]
    ok = unseen & (vod <= 0.5) & np.isfinite(est) & np.isfinite(ref)
    assert le["fused"]["n"] == ok.sum() > 100
    assert le["fused"]["ubrmsd"] == pytest.approx(pm.ubrmsd(est[ok], ref[ok]), abs=1e-5)
    assert le["fused"]["bias"] == pytest.approx(pm.bias(est[ok], ref[ok]), abs=1e-5)


def test_station_scores_equal_pytesmo_at_the_station_cell(lstm_chain, chain_root):
    """Per-station scores (all stations in one vectorised call) = pytesmo on that station's
    screened daily series and the fused product at the cell holding the station."""
    from pytesmo import metrics as pm

    from pipeline import grid, validation
    from pipeline.simulate import INSITU_NETWORK

    _, _, fu, va = lstm_chain
    per = va["stations"]["fused"][INSITU_NETWORK]["stations"]
    sid = max(per, key=lambda k: per[k]["n"])
    insitu = stores.open_dataset(stores.insitu_url(chain_root, INSITU_NETWORK))
    ref = validation.insitu_daily(insitu, stations=[sid]).isel({dims.STATION: 0})
    fused = xr.open_zarr(fu["product"])
    g, w = grid.window_from_attrs(fused.attrs)
    r, c = grid.latlon_to_rowcol(g, float(insitu[dims.LAT].sel({dims.STATION: sid})),
                                 float(insitu[dims.LON].sel({dims.STATION: sid})))
    est = fused[dims.SOIL_MOISTURE].isel({dims.Y: int(r) - w.row0, dims.X: int(c) - w.col0})
    ref = ref.reindex({dims.TIME: est[dims.TIME]}).values
    est = est.values.astype(np.float64)
    ok = np.isfinite(est) & np.isfinite(ref)
    assert per[sid]["n"] == ok.sum() > 30
    assert per[sid]["ubrmsd"] == pytest.approx(pm.ubrmsd(est[ok], ref[ok]), abs=1e-5)
    assert per[sid]["bias"] == pytest.approx(pm.bias(est[ok], ref[ok]), abs=1e-5)
    r_ref = float(np.atleast_1d(pm.pearson_r(est[ok], ref[ok]))[0])
    assert per[sid]["r"] == pytest.approx(r_ref, abs=1e-5)
