"""Freeze/thaw stages, segments, product and validation scores (synthetic + simulated truth)."""

from __future__ import annotations

import dask
import hypothesis
import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline import dims, freeze_thaw, qc, schema, training_data
from tests.fixtures.ft import synthetic_ft

TB, TRUTH, STATIC = synthetic_ft()


def _fail(*args, **kwargs):
    raise AssertionError("a stage computed its dask-backed input")


def test_npr_formula():
    v, h = TB[dims.TB].sel(channel="1.41V"), TB[dims.TB].sel(channel="1.41H")
    npr = freeze_thaw.compute_npr(TB)
    np.testing.assert_allclose(npr.values, ((v - h) / (v + h)).values, rtol=1e-6)
    assert npr.dtype == np.float32 and npr.attrs["units"] == "1"


def test_state_from_references_numpy_and_dataarray():
    npr = np.array([0.010, 0.0199, 0.0201, 0.05, np.nan])
    got = freeze_thaw.npr_state_from_references(npr, 0.015, 0.025)
    # Δ = (npr − 0.015)/0.01: −0.5, 0.49, 0.51, 3.5, NaN → frozen, frozen, thawed, thawed, −1.
    np.testing.assert_array_equal(got, [0, 0, 1, 1, -1])
    assert got.dtype == np.int8
    # Per-cell threshold and degenerate references (th ≤ fr) → −1.
    got = freeze_thaw.npr_state_from_references(np.array([0.02, 0.02]), np.array([0.015, 0.02]),
                                                np.array([0.025, 0.02]), np.array([0.6, 0.5]))
    np.testing.assert_array_equal(got, [0, -1])
    da = freeze_thaw.npr_state_from_references(xr.DataArray(npr, dims="t"), 0.015, 0.025)
    np.testing.assert_array_equal(da.values, [0, 0, 1, 1, -1])
    clim = freeze_thaw.npr_state_from_references(
        np.array([0.0145, 0.025]), freeze_thaw.CLIMATOLOGICAL_NPR_FR,
        freeze_thaw.CLIMATOLOGICAL_NPR_TH)
    np.testing.assert_array_equal(clim, [0, 1])


def test_month_references_recover_the_frozen_and_thawed_npr():
    npr = freeze_thaw.compute_npr(TB)
    refs = freeze_thaw.npr_references(npr, freeze_thaw.ReferenceWindows())
    frozen = TRUTH["frozen"] == 1
    # Independent: the mean NPR of days that are truly frozen in Jan–Feb / thawed in Jul–Aug.
    m = npr[dims.TIME].dt.month
    want_fr = npr.where(frozen & m.isin([1, 2])).mean(dims.TIME)
    want_th = npr.where(~frozen & m.isin([7, 8])).mean(dims.TIME)
    np.testing.assert_allclose(refs["npr_fr"], want_fr, atol=1.5e-3)
    np.testing.assert_allclose(refs["npr_th"], want_th, atol=1.5e-3)
    assert bool(refs["reference_valid"].all())
    temp = freeze_thaw.npr_references(
        npr, freeze_thaw.ReferenceWindows(method="temperature"), TRUTH)
    np.testing.assert_allclose(temp["npr_fr"], refs["npr_fr"], atol=2e-3)
    short = freeze_thaw.npr_references(npr, freeze_thaw.ReferenceWindows(min_days=10_000))
    assert not bool(short["reference_valid"].any())


def test_npr_baseline_skill_and_snowmelt_false_thaws():
    npr = freeze_thaw.compute_npr(TB)
    refs = freeze_thaw.npr_references(npr, freeze_thaw.ReferenceWindows())
    base = freeze_thaw.retrieve_npr(TB, refs)
    ref = xr.where(TRUTH["frozen"] == 1, 0, 1)
    s = freeze_thaw.score_states(base[dims.FT_STATE_NPR], ref, base[dims.FT_STATE_NPR].dims)
    assert s["accuracy"] > 0.9
    # The synthetic wet-snow days (TBh −20 K on frozen ground) are NPR false thaws.
    assert s["confusion"]["th_fr"] > 0.5 * 10 * 2 * 2 * STATIC.landcover.size * 0.9


def test_runs_to_segments_by_hand():
    rules = training_data.SegmentRules(min_days=3, max_len=4, min_observed_fraction=0.5)
    labels = np.array([1, 1, 1, 1, 1, 1, -1, 0, 0, 0, 1, 1])
    obs = np.array([1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1], bool)
    got = training_data.runs_to_segments(labels, obs, rules)
    # Frozen run 0–6 splits into [0, 4) and [4, 6)→ too short; thawed 7–10 has 1/3 observed;
    # the final frozen run is 2 days.
    assert got == [(0, 4, 1)]


def test_segments_are_labelled_by_the_temperature_thresholds():
    rules = training_data.SegmentRules(max_len=32)
    seg = training_data.build_segments(TB, TRUTH, STATIC, rules, tile=2)
    assert len(seg) > 50 and set(np.unique(seg.label)) == {0, 1}
    assert seg.x.shape[1:] == (32, 3 + len(freeze_thaw.LANDCOVER_GROUPS) + 1)
    assert (seg.length >= rules.min_days).all() and (seg.length <= 32).all()
    assert not seg.mask[np.arange(32)[None] >= seg.length[:, None]].any()
    # Frozen segments have the large winter TBh, thawed ones the low summer TBh (K).
    tbh = np.where(seg.mask, seg.x[..., 0], np.nan)
    assert np.nanmean(tbh[seg.label == 1]) > np.nanmean(tbh[seg.label == 0]) + 5


def test_gap_filling_is_linear_in_time_and_flags_unobserved_days():
    tb = TB.isel({dims.Y: [0], dims.X: [0]}).copy(deep=True)
    ramp = np.linspace(200, 260, tb.sizes[dims.TIME], dtype=np.float32)
    data = np.broadcast_to(ramp[:, None, None, None, None], tb[dims.TB].shape).copy()
    data[10:15] = np.nan
    data[0:3] = np.nan
    tb[dims.TB].values[:] = data
    feat = freeze_thaw.ft_features(tb).sel({dims.FEATURE: "tbh", dims.PASS: "am"})
    np.testing.assert_allclose(feat.values[0, 0, 10:15], ramp[10:15], rtol=1e-6)
    np.testing.assert_allclose(feat.values[0, 0, 0:3], ramp[3], rtol=1e-6)
    obs = freeze_thaw.observed_mask(tb)
    assert not bool(obs.isel({dims.TIME: slice(10, 15)}).any())


def test_stages_are_lazy_on_dask_input():
    lazy = TB.chunk({dims.Y: 2, dims.X: 2})
    with dask.config.set(scheduler=_fail):
        npr = freeze_thaw.compute_npr(lazy)
        refs = freeze_thaw.npr_references(npr, freeze_thaw.ReferenceWindows())
        base = freeze_thaw.retrieve_npr(lazy, refs)
        feat = freeze_thaw.ft_features(lazy, STATIC.chunk({dims.Y: 2}))
    assert base[dims.FT_STATE_NPR].chunks is not None and feat.chunks is not None


def test_static_conditioning_channels_stay_out_of_the_graph():
    """In-memory static layers are chunked before they are broadcast along time: embedded in
    NumPy they made the demo's Alaska graph 50 MiB (values: the chunk-invariance test below)."""
    import pickle

    lazy = TB.chunk({dims.Y: 2, dims.X: 2})
    feat = freeze_thaw.ft_features(lazy, STATIC)
    assert feat.sizes[dims.FEATURE] > 3  # conditioning channels present
    embedded = len(pickle.dumps(dict(feat.__dask_graph__()), protocol=5))
    one_channel = feat.isel({dims.FEATURE: 0}).size * 4  # float32, full (pass, y, x, time)
    assert embedded < lazy[dims.TB].nbytes + one_channel, embedded


@hypothesis.settings(max_examples=5, deadline=None)
@hypothesis.given(cy=st.integers(1, 3), cx=st.integers(1, 4))
def test_baseline_and_features_are_chunk_invariant(cy, cx):
    refs = freeze_thaw.npr_references(freeze_thaw.compute_npr(TB), freeze_thaw.ReferenceWindows())
    eager = freeze_thaw.retrieve_npr(TB, refs)
    lazy = TB.chunk({dims.Y: cy, dims.X: cx})
    lrefs = freeze_thaw.npr_references(freeze_thaw.compute_npr(lazy),
                                       freeze_thaw.ReferenceWindows())
    with dask.config.set(scheduler="synchronous"):
        xr.testing.assert_allclose(eager, freeze_thaw.retrieve_npr(lazy, lrefs).compute())
        xr.testing.assert_allclose(freeze_thaw.ft_features(TB, STATIC),
                                   freeze_thaw.ft_features(lazy, STATIC).compute())


def test_product_matches_the_data_contract(ft_model_ref):
    from pipeline.graphs import freeze_thaw as g

    ds = g.build_product(TB, STATIC, ft_model_ref)
    schema.check(ds, schema.FT_PRODUCT, context="synthetic ft product")
    obs = freeze_thaw.observed_mask(TB).transpose(*ds[dims.FT_STATE].dims)
    assert bool((ds[dims.FT_STATE].where(~obs) == -1).where(~obs, True).all())
    assert bool(ds[dims.THAW_PROBABILITY].where(~obs).isnull().all())
    assert bool(ds[dims.THAW_PROBABILITY].where(obs).notnull().sum() == obs.sum())
    flags = ds[dims.QUALITY_FLAG]
    assert bool(((flags & qc.QC.INSUFFICIENT_OBS) > 0).equals(~obs))
    water = (STATIC["water_fraction"] > 0.5).broadcast_like(flags)
    assert bool((((flags & qc.QC.OPEN_WATER_DOMINATED) > 0) == water).all())
    assert ds[dims.FT_STATE].encoding["_FillValue"] == -1


def test_scores_agree_with_pytesmo_ftmetrics():
    from pytesmo.validation_framework.metric_calculators import FTMetrics

    rng = np.random.default_rng(3)
    n = 500
    temp_c = rng.normal(0, 6, n)
    pred = np.where(temp_c + rng.normal(0, 4, n) < 0, 0, 1).astype(np.int8)
    ours = freeze_thaw.score_states(xr.DataArray(pred, dims="t"),
                                    freeze_thaw.state_from_temperature(
                                        xr.DataArray(temp_c + 273.15, dims="t")), "t")
    # pytesmo: 'ref' is the retrieval with frozen flag 2, 'k1' the temperature in °C.
    df = pd.DataFrame({"ref": np.where(pred == 0, 2, 1), "k1": temp_c})
    res = FTMetrics(frozen_flag=2).calc_metrics(df, (0, 0.0, 0.0))
    c = ours["confusion"]
    assert c["fr_fr"] == res["ssf_fr_temp_fr"][0] and c["fr_th"] == res["ssf_fr_temp_un"][0]
    assert c["th_fr"] == res["ssf_un_temp_fr"][0] and c["th_th"] == res["ssf_un_temp_un"][0]
    assert ours["n"] == res["n_obs"][0]
    want = (res["ssf_fr_temp_fr"][0] + res["ssf_un_temp_un"][0]) / res["n_obs"][0]
    assert ours["accuracy"] == pytest.approx(want)


def test_station_truth_samples_the_overpass_hour_in_utc():
    from pipeline.graphs import freeze_thaw as g

    hours = pd.date_range("2016-01-01", "2016-01-06", freq="h", inclusive="left")
    lon = np.array([-150.0, 30.0])
    # Thawed (275 K) only in the UTC hour of the am overpass of each station, frozen otherwise.
    temp = np.full((2, len(hours)), 260.0, np.float32)
    for i, lo in enumerate(lon):
        utc_h = int(round((6.0 - lo / 15.0) % 24))  # 6 h local solar time → 16 UTC / 4 UTC
        temp[i, hours.hour == utc_h] = 275.0
    insitu = xr.Dataset(
        {"soil_temperature": ((dims.STATION, dims.TIME), temp, {"units": "K", "depth_m": 0.05})},
        coords={dims.STATION: ["A", "B"], dims.TIME: hours, dims.LAT: (dims.STATION, [60.0, 60.0]),
                dims.LON: (dims.STATION, lon)})
    dates = xr.DataArray(pd.date_range("2016-01-02", periods=2), dims=dims.TIME)
    got = g.station_truth(insitu, dates, np.array([0, 1]), {"am": 6.0, "pm": 18.0})
    assert (got.sel(**{dims.PASS: "am"}) == 1).all() and (got.sel(**{dims.PASS: "pm"}) == 0).all()
    deep = insitu.assign(soil_temperature=insitu.soil_temperature.assign_attrs(depth_m=0.2))
    with pytest.raises(Exception, match="depth_m"):
        g.station_truth(deep, dates, np.array([0]), {"am": 6.0})


def test_transition_errors_by_hand():
    t = pd.date_range("2016-01-01", "2016-12-31")
    doy = t.day_of_year.values
    ref = np.where((doy >= 120) & (doy < 280), 1, 0)
    pred = np.where((doy >= 110) & (doy < 283), 1, 0)  # thaws 10 d early, freezes 3 d late
    da = lambda a: xr.DataArray(a[:, None, None], dims=(dims.TIME, dims.STATION, dims.PASS),  # noqa
                                coords={dims.TIME: t})
    out = freeze_thaw.transition_errors(da(pred), da(ref))
    assert out["spring_thaw"]["mean_error_days"] == -10
    assert out["autumn_freeze"]["mean_error_days"] == 3


@pytest.mark.slow
def test_end_to_end_on_sim_tiny(sim_tiny, tmp_path):
    """train (few epochs) → run → validate on the simulated tiny archive (a private copy)."""
    import json
    import shutil

    from pipeline.graphs import freeze_thaw as g
    from pipeline.io import catalog, publish

    root = tmp_path / "tiny"
    shutil.copytree(sim_tiny, root, ignore=shutil.ignore_patterns("tmi.zarr", "gmi.zarr",
                                                                  "amsr2.zarr", "towers"))
    root = str(root)
    opts = g.TrainOptions(epochs=4, patience=4, batch_size=16, rules=training_data.SegmentRules(
        max_segments=1200))
    ref = g.train(root, opts)
    report = json.loads(open(f"{root}/reports/ft-training.json").read())
    # Learned skill on easy truth: held-out peak-season segments (labels from 271/275 K).
    assert report["best"]["val_accuracy"] > 0.85
    assert report["parameters"]["trainable"] == 44611 + 8 * 9 * 64
    assert g.current_model(root) == ref
    cal = report["calibration"]  # thresholds chosen on the training years (all years here)
    assert set(cal["thresholds"]) == set(freeze_thaw.LANDCOVER_GROUPS)
    assert all(0.0 < v < 1.0 for v in cal["thresholds"].values())
    assert sum(cal["pairs"].values()) > 1000
    url = g.run(root)
    ds = publish.open_product(root, "ft-smap-m36-v1")
    schema.check(ds, schema.FT_PRODUCT, context=url)
    # Default calibration: one threshold per cell and pass over the whole (training) window.
    from pipeline import apply

    cfg = apply.load_bundle(ref).config
    assert cal["level"] == "cell" and cal["cells"]["total"] == len(cfg["cell_thresholds"])
    assert [cal["thresholds"][n] for n in freeze_thaw.LANDCOVER_GROUPS] == cfg["thaw_thresholds"]
    table = np.asarray(cfg["cell_thresholds"]).reshape(
        len(cfg["cell_threshold_pass"]), len(cfg["cell_threshold_y"]), len(cfg["cell_threshold_x"]))
    p = ds[dims.THAW_PROBABILITY].transpose(dims.TIME, dims.PASS, dims.Y, dims.X).values
    expect = np.where(np.isfinite(p), (p >= table[None]).astype(int), -1)
    got = ds[dims.FT_STATE].fillna(-1).transpose(dims.TIME, dims.PASS, dims.Y, dims.X).values
    np.testing.assert_array_equal(got, expect)
    acc = cal["training_years_accuracy"]  # calibrated on the same days: never below 0.5's
    assert acc["threshold_cell"] >= acc["threshold_group"] - 1e-9
    assert acc["threshold_group"] >= acc["threshold_0.5"] - 1e-9
    assert json.loads(ds.attrs["tbcube_model_sha256"]) == {"ft_autoencoder": ref.sha256}
    out = g.validate(root)
    rep = json.loads(open(out).read())
    st = rep["stations"]
    assert st["n_stations"] > 5
    for m in ("autoencoder", "npr"):
        o = st[m]["overall"]
        assert o["n"] == sum(o["confusion"].values()) > 1000
        assert sum(v["n"] for v in st[m]["by_pass"].values()) == o["n"]
        assert sum(v["n"] for v in st[m]["by_landcover"].values()) == o["n"]
        assert 0.6 < rep["gridded_truth"][m]["overall"]["accuracy"] <= 1.0
    assert set(rep["figures"]) == {"station-series", "accuracy-by-landcover", "accuracy-maps"}
    assert not catalog.validate(f"{root}/catalog")


def test_cli_missing_inputs_fail_with_one_line(tmp_path, capsys):
    from pipeline.cli import main

    for cmd in (["ft", "validate"], ["ft", "run"], ["ft", "train"]):
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--root", str(tmp_path / "nowhere")])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and "nowhere" in err[-1]


def test_product_graph_distributed_and_written_equals_eager(dask_client, ft_model_ref, tmp_path):
    """build_product on pencil chunks, computed by 2 spawn workers and written to Zarr."""
    from pipeline.graphs import freeze_thaw as g
    from pipeline.io import stores

    eager = g.build_product(TB, STATIC, ft_model_ref)
    lazy = g.build_product(TB.chunk({dims.Y: 2, dims.X: 3}), STATIC, ft_model_ref)
    assert lazy[dims.THAW_PROBABILITY].chunks is not None
    url = str(tmp_path / "ft.zarr")
    with dask.config.set(scheduler=dask_client.get):
        stores.write_dataset(lazy, url)
    back = stores.open_dataset(url).load()
    schema.check(back, schema.FT_PRODUCT, context=url)
    for v in eager.data_vars:
        got = back[v].fillna(-1) if v in (dims.FT_STATE, dims.FT_STATE_NPR) else back[v]
        np.testing.assert_allclose(np.asarray(got, float), np.asarray(eager[v], float),
                                   rtol=1e-5, atol=1e-6, err_msg=v)


# --- decision thresholds and balanced segments ---------------------------------------------
def _brute_best(p, thawed, candidates):
    """Independent reference: accuracy of every candidate by a plain loop, ties nearest 0.5."""
    acc = [np.mean((p >= c) == thawed) for c in candidates]
    top = max(acc)
    return min((abs(c - 0.5), c) for c, a in zip(candidates, acc, strict=True) if a == top)[1]


def test_choose_thresholds_known_optimum_and_pooled_fallback():
    rng = np.random.default_rng(0)
    n = 2000
    # Group 0: frozen P in [0, 0.3), thawed in [0.42, 1): every T in {0.3, 0.35, 0.4} is
    # perfect; the tie goes to the one nearest 0.5 → 0.4.
    p0 = np.concatenate([rng.uniform(0, 0.3, n), rng.uniform(0.42, 1, n)])
    # Group 1: frozen in [0, 0.7), thawed in [0.82, 1): perfect for T in {0.7, 0.75, 0.8} → 0.7.
    p1 = np.concatenate([rng.uniform(0, 0.7, n), rng.uniform(0.82, 1, n)])
    lab = np.concatenate([np.zeros(n), np.ones(n)])
    # Group 2: 10 pairs (< min_pairs) → the threshold chosen on all groups pooled.
    p2, lab2 = rng.uniform(0, 1, 10), rng.integers(0, 2, 10).astype(float)
    p = np.concatenate([p0, p1, p2, [0.9, 0.1]])
    thawed = np.concatenate([lab, lab, lab2, [np.nan, -1]])  # last two: no reference
    group = np.concatenate([np.zeros(2 * n), np.ones(2 * n), np.full(10, 2), [0, 1]])
    th, counts = freeze_thaw.choose_thresholds(p, thawed, group, 4, min_pairs=100)
    np.testing.assert_array_equal(counts, [2 * n, 2 * n, 10, 0])
    assert th[0] == pytest.approx(0.4) and th[1] == pytest.approx(0.7)
    cand = freeze_thaw.THRESHOLD_CANDIDATES
    pooled = _brute_best(np.concatenate([p0, p1, p2]), np.concatenate([lab, lab, lab2]), cand)
    assert th[2] == pytest.approx(pooled) and th[3] == pytest.approx(pooled)
    for k, (pk, lk) in enumerate(((p0, lab), (p1, lab))):
        assert th[k] == pytest.approx(_brute_best(pk, lk, cand))


def test_state_with_per_cell_thresholds():
    lc = xr.DataArray(np.array([[1, 16], [7, 0]], np.int16), dims=(dims.Y, dims.X))
    names = list(freeze_thaw.LANDCOVER_GROUPS)
    th = np.full(len(names), 0.5)
    th[names.index("urban_barren")] = 0.9
    th[names.index("shrubland")] = 0.3
    cell = freeze_thaw.thresholds_by_cell(lc, th)
    np.testing.assert_allclose(cell.values, [[0.5, 0.9], [0.3, 0.5]])
    p = xr.DataArray(np.full((3, 2, 2), 0.6, np.float32), dims=(dims.TIME, dims.Y, dims.X))
    p[1] = 0.95
    p[2] = 0.2
    obs = xr.ones_like(p, dtype=bool)
    obs[2, 0, 0] = False
    got = freeze_thaw.ft_state_from_probability(p, obs, cell).values
    # 0.6 ≥ 0.5 thawed, < 0.9 frozen (barren), ≥ 0.3 thawed; 0.95 thawed everywhere; 0.2
    # frozen everywhere (< 0.3) and −1 where unobserved.
    np.testing.assert_array_equal(got, [[[1, 0], [1, 1]], [[1, 1], [1, 1]], [[-1, 0], [0, 0]]])
    with pytest.raises(ValueError, match="one per land-cover group"):
        freeze_thaw.thresholds_by_cell(lc, [0.5, 0.5])


def test_oversample_strata_counts():
    n_big, n_small, n_tiny = 900, 30, 2
    group = np.concatenate([np.zeros(n_big), np.full(n_small, 5), np.full(n_tiny, 6)])
    label = np.concatenate([np.arange(n_big) % 2, np.arange(n_small) % 2, [1, 1]])
    n = len(group)
    seg = training_data.Segments(np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 4, 3)),
                                 np.ones((n, 4), bool), label.astype(np.int8),
                                 group.astype(np.int8), np.full(n, 4, np.int32))
    out = training_data.oversample_strata(seg, min_share=0.05, max_repeat=10, seed=3)
    target = int(np.ceil(0.05 * n))  # 47
    count = lambda g, lab: int(((out.group == g) & (out.label == lab)).sum())  # noqa: E731
    assert count(0, 0) == count(0, 1) == n_big // 2          # common strata untouched
    assert count(5, 0) == count(5, 1) == target               # 15 → 47 (< 10 × 15)
    assert count(6, 1) == 10 * n_tiny and count(6, 0) == 0    # capped at 10 × its size
    np.testing.assert_array_equal(out.x[:n], seg.x)           # originals first, in order
    # Repeats are copies of their own stratum's segments.
    extra = out.x[n:, 0, 0].astype(int)
    np.testing.assert_array_equal(out.group[n:], seg.group[extra])
    np.testing.assert_array_equal(out.label[n:], seg.label[extra])


def test_product_uses_checkpoint_thresholds_and_override(ft_model_ref, tmp_path):
    """A checkpoint's per-group thresholds decide ft_state; --ae-threshold overrides them."""
    import dataclasses

    from pipeline import apply
    from pipeline.graphs import freeze_thaw as g

    bundle = apply.load_bundle(ft_model_ref)
    names = list(freeze_thaw.LANDCOVER_GROUPS)
    th = [0.5] * len(names)
    th[names.index("forest")], th[names.index("shrubland")] = 0.2, 0.8
    cfg = {**bundle.config, "thaw_thresholds": th}
    ref = apply.save_bundle(dataclasses.replace(bundle, config=cfg),
                            str(tmp_path / "ae-{sha12}.tbm"))
    out = g.build_product(TB, STATIC, ref)
    p, state = out[dims.THAW_PROBABILITY], out[dims.FT_STATE]
    cell = freeze_thaw.thresholds_by_cell(STATIC["landcover"], th)
    ok = p.notnull()
    expect = xr.where(ok, (p >= cell).astype(int), -1)
    np.testing.assert_array_equal(state.values, expect.transpose(*state.dims).values)
    assert "forest 0.2" in state.attrs["comment"]
    same = g.build_product(TB, STATIC, ref, g.RunOptions(ae_threshold=0.5))
    plain = g.build_product(TB, STATIC, ft_model_ref)
    np.testing.assert_array_equal(same[dims.FT_STATE].values, plain[dims.FT_STATE].values)
    np.testing.assert_array_equal(
        same[dims.FT_STATE].values,
        xr.where(ok, (p >= 0.5).astype(int), -1).transpose(*state.dims).values)


def test_product_cell_thresholds_by_coordinate_with_group_fallback(ft_model_ref, tmp_path):
    """Per-cell/pass thresholds apply to the calibration window's cells (matched by y/x/pass
    coordinate, so any sub-window works); other cells use their land-cover group's."""
    import dataclasses

    from pipeline import apply
    from pipeline.graphs import freeze_thaw as g

    bundle = apply.load_bundle(ft_model_ref)
    names = list(freeze_thaw.LANDCOVER_GROUPS)
    groups = [0.5] * len(names)
    passes = [str(v) for v in TB[dims.PASS].values]
    ys, xs = TB[dims.Y].values[:2], TB[dims.X].values[1:3]  # a 2 × 2 calibration window
    cells = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9][: len(passes) * 4])
    cfg = {**bundle.config, "thaw_thresholds": groups, "cell_thresholds": cells.tolist(),
           "cell_threshold_pass": passes, "cell_threshold_y": ys.tolist(),
           "cell_threshold_x": xs.tolist()}
    ref = apply.save_bundle(dataclasses.replace(bundle, config=cfg),
                            str(tmp_path / "ae-{sha12}.tbm"))
    out = g.build_product(TB, STATIC, ref)
    p = out[dims.THAW_PROBABILITY]
    expect_t = np.full((len(passes), TB.sizes[dims.Y], TB.sizes[dims.X]), 0.5)
    expect_t[:, :2, 1:3] = cells.reshape(len(passes), 2, 2)
    thr = xr.DataArray(expect_t, dims=(dims.PASS, dims.Y, dims.X))
    pv = p.transpose(dims.TIME, dims.PASS, dims.Y, dims.X).values
    expect = np.where(np.isfinite(pv), (pv >= thr.values[None]).astype(int), -1)
    got = out[dims.FT_STATE].transpose(dims.TIME, dims.PASS, dims.Y, dims.X).values
    np.testing.assert_array_equal(got, expect)
    # A sub-window (rows 1…) keeps the same thresholds for the same cells.
    sub = g.build_product(TB.isel({dims.Y: slice(1, None)}), STATIC.isel({dims.Y: slice(1, None)}),
                          ref)
    np.testing.assert_array_equal(
        sub[dims.FT_STATE].transpose(dims.TIME, dims.PASS, dims.Y, dims.X).values, got[:, :, 1:])
    bad = {**cfg, "cell_thresholds": cells.tolist()[:-1]}
    ref_bad = apply.save_bundle(dataclasses.replace(bundle, config=bad),
                                str(tmp_path / "bad-{sha12}.tbm"))
    with pytest.raises(Exception, match="cell_thresholds has"):
        g.build_product(TB, STATIC, ref_bad)


def test_static_layers_of_another_window_are_refused_before_training(sim_tiny, tmp_path, capsys):
    """Static layers one row north of the TB cells: one line (it was an IndexError)."""
    from pipeline.io import stores
    from tests.fixtures.common import archive_copy, cli_error_lines, rewrite_store

    root = archive_copy(sim_tiny, tmp_path / "archive")
    url = rewrite_store(stores.static_url(root, "M36"),
                        lambda ds: ds.assign_coords(y=ds["y"] + 36032.22))
    err = cli_error_lines(["ft", "train", "--root", root, "--epochs", "1"], capsys)
    assert err[-1].startswith(f"error: {url}: not on the cells of the TB store: dim 'y' "
                              "coordinates differ (y[0] = ")
    assert not any("Traceback" in ln for ln in err)
