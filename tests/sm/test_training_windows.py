"""LSTM training windows: the warm-up days are context only; settings are checked."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline import errors
from pipeline.graphs import harmonise


def test_warmup_days_are_never_scored_and_every_later_day_is():
    st = dataclasses.replace(harmonise.TrainSettings(), window_days=10, stride_days=4,
                             warmup_days=3, min_valid_targets=1)
    n_pix, n_time = 2, 30
    x = np.arange(n_pix * n_time * 2, dtype=np.float32).reshape(n_pix, n_time, 2)
    y = np.tile(np.arange(n_time, dtype=np.float32), (n_pix, 1))
    y[1, 12] = np.nan                                   # a missing target stays unscored
    xw, yw, mw = harmonise._tile_windows(x, y, np.ones((n_pix, n_time), bool), st)
    starts = range(0, n_time - 10 + 1, 4)
    assert xw.shape == (n_pix * len(starts), 10, 2) and mw.shape == yw.shape
    assert not mw[:, :3].any()                          # the warm-up: inputs only
    scored = {(int(p), int(d)) for k, t0 in enumerate(starts) for p in range(n_pix)
              for d in (yw[k * n_pix + p][mw[k * n_pix + p]])}
    # windows start every 4 days and score days 3..9 of each: every day from 3 on is scored
    for p in range(n_pix):
        want = {d for d in range(3, n_time) if not (p == 1 and d == 12)}
        assert {d for q, d in scored if q == p} == want
    np.testing.assert_array_equal(xw[0], x[0, :10])


def test_train_settings_reject_a_warmup_that_leaves_days_unscored():
    with pytest.raises(errors.ConfigError, match="warmup_days"):
        harmonise.TrainSettings(window_days=20, warmup_days=20)
    with pytest.raises(errors.ConfigError, match="stride_days"):
        harmonise.TrainSettings(window_days=60, warmup_days=50, stride_days=15)


def test_a_model_trained_on_other_features_is_refused_in_one_line(tmp_path):
    from pipeline.io import stores

    root = str(tmp_path)
    n = len(harmonise.harmonise.feature_names())
    doc = {"model": {"uri": f"{root}/models/sm-lstm-old.ckpt", "sha256": "0" * 64,
                     "config": {"n_features": n - 3, "hidden": 32}}}
    stores.write_json(stores.reports_url(root, "sm-train.json"), doc)
    with pytest.raises(errors.ConfigError) as e:
        harmonise.latest_model(root)
    msg = str(e.value)
    assert "\n" not in msg and f"trained on {n - 3} input features" in msg
    assert f"makes {n}" in msg and "tbcube sm train" in msg
    doc["model"]["config"]["n_features"] = n  # the current feature set loads
    stores.write_json(stores.reports_url(root, "sm-train.json"), doc)
    assert harmonise.latest_model(root).sha256 == "0" * 64


def test_static_features_stay_out_of_the_graph_and_values_match(sim_tiny):
    """In-memory static features are chunked before they are broadcast along time: broadcast
    in NumPy they entered the graph at the full (time, pass, y, x) shape (35 MiB on the demo's
    training-window graph)."""
    import pickle

    import xarray as xr

    from pipeline import dims
    from pipeline import harmonise as features_mod
    from pipeline.io import stores

    tb = stores.open_dataset(stores.tb_url(sim_tiny, "gmi")).isel({dims.TIME: slice(0, 120)})
    static = stores.open_dataset(stores.static_url(sim_tiny, tb.attrs["grid"])).load()
    lazy = features_mod.features(tb.chunk({dims.TIME: -1, dims.Y: 16}), static, "gmi")
    embedded = len(pickle.dumps(dict(lazy.__dask_graph__()), protocol=5))
    one_feature = lazy.isel({dims.FEATURE: 0}).size * 4  # float32 at the full 4-D shape
    n_static = lazy.sizes[dims.FEATURE] - len(features_mod._DERIVED) - len(
        features_mod.COMMON_CHANNELS)
    assert n_static >= 10
    assert embedded < one_feature, (embedded, one_feature)
    xr.testing.assert_allclose(lazy.compute(), features_mod.features(tb.load(), static, "gmi"))


def test_dynamic_features_follow_their_formulas(sim_tiny):
    """The one-block NumPy features equal the formulas written out with xarray (an independent
    reference): TB, MPDI at 10.65 and 18.7 GHz, 36.5V − 18.7V, local time and day of year as
    sine/cosine, and the observed flag."""
    import numpy as np
    import xarray as xr

    from pipeline import dims
    from pipeline import harmonise as features_mod
    from pipeline.io import stores

    tb = stores.open_dataset(stores.tb_url(sim_tiny, "amsr2")).isel({dims.TIME: slice(0, 90)})
    got = features_mod.dynamic_features(tb.chunk({dims.TIME: 40, dims.Y: 16}), "amsr2")
    got = got.compute()

    def ch(label):
        return tb[dims.TB].sel({dims.CHANNEL: label}, drop=True).drop_vars(
            [c for c in tb.coords if c not in tb[dims.TB].dims], errors="ignore")

    lt = tb[dims.LOCAL_TIME]
    doy = xr.broadcast(tb[dims.TIME].dt.dayofyear.astype(np.float64), lt)[0]
    want = {f"tb_{c}": ch(c) for c in features_mod.COMMON_CHANNELS}
    want.update({
        "mpdi_10": (ch("10.65V") - ch("10.65H")) / (ch("10.65V") + ch("10.65H")),
        "mpdi_18": (ch("18.7V") - ch("18.7H")) / (ch("18.7V") + ch("18.7H")),
        "tb_36v_minus_18v": ch("36.5V") - ch("18.7V"),
        "lt_sin": np.sin(2 * np.pi * lt / 24.0), "lt_cos": np.cos(2 * np.pi * lt / 24.0),
        "doy_sin": np.sin(2 * np.pi * doy / 365.25), "doy_cos": np.cos(2 * np.pi * doy / 365.25),
        "observed": ch("10.65V").notnull() | ch("36.5V").notnull(),
    })
    assert list(got[dims.FEATURE].values) == list(want)
    for name, ref in want.items():
        ref = ref.astype(np.float32).transpose(dims.TIME, dims.PASS, dims.Y, dims.X)
        np.testing.assert_array_equal(got.sel({dims.FEATURE: name}).values, ref.values,
                                      err_msg=name)
    assert 0 < float(got.sel({dims.FEATURE: "observed"}).mean()) < 1


def _shard(tmp_path, name, value, n, t=4, f=2):
    import xarray as xr

    from pipeline.io import stores

    ds = xr.Dataset({"x": (("sample", "time", "feature"), np.full((n, t, f), value, np.float32)),
                     "y": (("sample", "time"), np.full((n, t), value, np.float32)),
                     "mask": (("sample", "time"), np.ones((n, t), bool))})
    return stores.write_dataset(ds, str(tmp_path / f"{name}.zarr"),
                                chunks={"sample": harmonise.SHARD_PIECE, "time": t,
                                        "feature": f})


def test_shard_stream_batches_mix_shards_and_visit_every_window_once(tmp_path, monkeypatch):
    # Each shard is one tile of one sensor.  Batches drawn one shard at a time made the
    # model chase one latitude band after another; the stream now mixes pieces of all shards.
    monkeypatch.setattr(harmonise, "SHARD_PIECE", 16)
    sizes = (40, 33, 50, 21)
    urls = [_shard(tmp_path, f"s{k}", float(k), n) for k, n in enumerate(sizes)]
    st = harmonise.ShardStream(urls, batch=8, seed=3, mix=4)
    from pipeline.io import stores

    plain = stores.open_dataset(urls[0], use_dask=False)   # how the stream opens a shard
    assert plain["x"].chunks is None and float(plain["y"][3, 0]) == 0.0
    for epoch in range(2):
        batches = list(st())
        assert all(b["x"].shape == (8, 4, 2) for b in batches)
        assert len(batches) == sum(sizes) // 8       # only the incomplete tail is dropped
        seen = np.concatenate([b["y"][:, 0] for b in batches])
        counts = np.bincount(seen.astype(int), minlength=4)
        assert (counts <= np.array(sizes)).all() and counts.sum() >= sum(sizes) - 7
        mixed = np.mean([len(np.unique(b["y"][:, 0])) > 1 for b in batches])
        assert mixed > 0.5, f"epoch {epoch}: only {mixed:.0%} of batches mix shards"
    # validation order is fixed: the same batches every time
    val = harmonise.ShardStream(urls, batch=8, seed=3, shuffle=False)
    a, b = list(val()), list(val())
    assert len(a) == len(b) and all((p["y"] == q["y"]).all() for p, q in zip(a, b, strict=True))
    np.testing.assert_array_equal(np.concatenate([p["y"][:, 0] for p in a])[:40], 0.0)


def test_training_statistics_see_every_tile(tmp_path):
    # The statistics were taken from the first 40 batches, i.e. the first shard (one tile): a
    # land-cover class outside it got std 1e-6 and entered the model at ~10⁶, which froze the
    # output (a constant over the whole record) on every such cell.  Now: all training windows.
    import xarray as xr

    from pipeline import dims
    from pipeline import harmonise as hf

    names = list(hf.feature_names())
    ny, nt = 6, 40
    rng = np.random.default_rng(1)
    x = rng.normal(250, 10, (nt, 1, ny, 1, len(names))).astype(np.float32)
    x[..., names.index("observed")] = 1.0
    lc = names.index("lc_7")
    x[..., [i for i, n in enumerate(names) if n.startswith("lc_")]] = 0.0
    x[:, :, 4:, :, lc] = 1.0                       # the class exists in the second tile only
    f = xr.DataArray(x, dims=(dims.TIME, dims.PASS, dims.Y, dims.X, dims.FEATURE),
                     coords={dims.FEATURE: names})
    t = xr.DataArray(rng.random((nt, ny, 1)).astype(np.float32), dims=(dims.TIME, dims.Y, dims.X))
    st = dataclasses.replace(harmonise.TrainSettings(), window_days=10, stride_days=10,
                             tile_rows=3, val_share=0.0, min_valid_targets=1)
    out = harmonise.write_training_shards({"amsr2": f}, t, np.ones((ny, 1), bool),
                                          np.ones(nt, bool), st, str(tmp_path))
    assert len(out["train"]) == 2
    whole = x.reshape(-1, len(names))
    np.testing.assert_allclose(out["stats"]["mean"], whole.mean(0), rtol=1e-5)
    np.testing.assert_allclose(out["stats"]["std"][lc], whole[:, lc].std(), rtol=1e-5)
    assert "lc_7" not in out["constant"] and "lc_1" in out["constant"]
    assert out["stats"]["std"][names.index("lc_1")] == 1.0


def test_shard_stream_reads_in_its_own_process_under_a_cluster(tmp_path):
    # Training runs in the client; a Dask cluster set as the default scheduler must not see
    # one task per shard piece (each would be a round trip through the workers).
    distributed = pytest.importorskip("distributed")
    urls = [_shard(tmp_path, f"s{k}", float(k), 40) for k in range(3)]
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                            dashboard_address=None) as client:
        with distributed.get_task_stream(client) as ts:
            batches = list(harmonise.ShardStream(urls, batch=8, seed=0)())
        assert len(batches) == 15
        assert ts.data == []


def test_harmonise_names_the_land_cover_the_model_never_saw(monkeypatch):
    import types

    import xarray as xr

    from pipeline import apply
    from pipeline import harmonise as hf

    names = hf.feature_names()
    mean, std = [0.5] * len(names), [0.3] * len(names)
    for n, m, sd in (("lc_7", 0.0, 1.0),          # constant in training (session 6 bundles)
                     ("lc_1", 0.0, 1e-6),         # the floor of older bundles
                     ("lc_other", 0.0, 1.0)):
        mean[names.index(n)], std[names.index(n)] = m, sd
    monkeypatch.setattr(apply, "load_bundle", lambda ref: types.SimpleNamespace(
        norm_stats={"mean": mean, "std": std}))
    lc = np.array([[7], [7], [1], [10], [15], [2], [7]], np.int16)
    static = xr.Dataset({"landcover": (("y", "x"), lc),
                         "land_fraction": (("y", "x"), np.array([[1], [0.2], [1], [1], [1], [1],
                                                                  [1]]))})
    got = harmonise.unseen_landcover(apply.ModelRef("m", "0" * 64), static)
    # class 7: two land cells (one is water); 15 (permanent ice) has no soil moisture at all;
    # 10 was seen; 2 is not one-hot encoded ("other")
    assert got == {"1": 1, "7": 2, "other": 1}
