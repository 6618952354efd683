"""Benchmarks: the PyTorch twins compute the SAME function as the JAX models (same weights →
same outputs to ~1e-4, which is what makes the throughput comparison honest), and every bench
writes a complete JSON on tiny sizes (no timing is asserted: speed lives in the JSON)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.bench import inference, torch_models
from pipeline.io import stores  # noqa: F401 — imported before CliRunner swaps sys.stderr

BENCH_KEYS = {"benchmark", "metric", "shapes", "jax", "torch", "ratio_jax_over_torch",
              "max_abs_diff", "machine", "versions", "malloc_env", "warmup", "repeats"}


@pytest.mark.parametrize("n_time", [96, 37])   # 37: not a multiple of 4 → edge padding path
@pytest.mark.parametrize("conditioned", [0, 5])
def test_autoencoder_twin_matches_jax(n_time, conditioned):
    pytest.importorskip("torch")
    import torch

    from models import autoencoder as ae

    cfg = ae.AutoencoderConfig(condition_channels=conditioned)
    params = inference.random_params(ae.init(cfg, 3), seed=1, scale=0.1)
    x = np.random.default_rng(2).normal(size=(6, n_time, cfg.in_channels)).astype(np.float32)
    want = np.asarray(ae.apply(params, x, config=cfg))
    assert 0.05 < want.mean() < 0.95               # not saturated: the comparison means something
    twin = torch_models.autoencoder_from_jax(params, cfg)
    with torch.inference_mode():
        got = twin(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (6, n_time)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_twin_matches_jax(num_layers):
    pytest.importorskip("torch")
    import torch

    from models import lstm

    cfg = lstm.LSTMConfig(n_features=36, hidden=32, num_layers=num_layers, target_mean=0.2,
                          target_std=0.08)
    params = inference.random_params(lstm.init(cfg, 0), seed=4)
    x = np.random.default_rng(5).normal(size=(5, 40, 36)).astype(np.float32)
    want = np.asarray(lstm.apply(params, x, config=cfg))
    assert want.std() > 1e-3
    twin = torch_models.lstm_from_jax(params, cfg)
    with torch.inference_mode():
        got = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def _check_doc(doc: dict, unit: str, total: int) -> None:
    assert BENCH_KEYS <= set(doc)
    j = doc["jax"]
    assert j[f"{unit}_per_s"] == pytest.approx(total / j["median_s"], rel=1e-3)
    assert doc["machine"]["cpu_count"] >= 1 and doc["versions"]["jax"]
    t = doc["torch"]
    if t is None:
        assert "torch not installed" in doc["torch_note"]
        return
    assert t[f"{unit}_per_s"] == pytest.approx(total / t["median_s"], rel=1e-3)
    assert doc["ratio_jax_over_torch"] == pytest.approx(t["median_s"] / j["median_s"], rel=1e-2)
    assert doc["max_abs_diff"] < 1e-4


def test_bench_ft_json():
    doc = inference.bench_ft(n_pixels=10, n_days=20, batch=4, warmup=1, repeats=2)
    assert doc["shapes"]["n_batches"] == 3 and doc["shapes"]["batch_shape"] == [4, 20, 3]
    _check_doc(doc, "pixel_days", 3 * 4 * 20)


def test_bench_lstm_json():
    doc = inference.bench_lstm(n_pixels=6, n_steps=12, batch=4, warmup=1, repeats=2)
    assert doc["config"] == {"n_features": 36, "hidden": 32, "num_layers": 1}
    _check_doc(doc, "pixel_steps", 2 * 4 * 12)


def test_bench_without_torch_reports_jax_only(monkeypatch):
    monkeypatch.setattr(torch_models, "available", lambda: False)
    doc = inference.bench_lstm(n_pixels=4, n_steps=8, batch=4, warmup=0, repeats=1)
    assert doc["torch"] is None and doc["ratio_jax_over_torch"] is None
    assert doc["torch_note"].startswith("torch not installed")
    assert doc["jax"]["pixel_steps_per_s"] > 0


def test_cli_bench_writes_json_and_prints_path_last(tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import cli

    res = CliRunner().invoke(cli, ["bench", "ft", "--out", str(tmp_path), "--pixels", "8",
                                   "--days", "16", "--batch", "8", "--warmup", "0",
                                   "--repeats", "1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    path = res.stdout.strip().splitlines()[-1]
    doc = json.loads(open(path).read())
    assert path.endswith("bench-ft.json") and doc["benchmark"] == "ft"
    _check_doc(doc, "pixel_days", 8 * 16)


def test_bench_sm_retrieval_json():
    from pipeline import bench

    doc = bench.bench_sm_retrieval(n_pixels=32, repeats=1)
    assert doc["benchmark"] == "sm-retrieval" and doc["retrievals_per_s"] > 0
    assert doc["n_retrievals"] == 64 and doc["machine"]["cpu_count"] >= 1
    # Noise-free synthetic TB: the inversion recovers SM (science.md §5: < 0.01 m3 m-3).
    assert doc["max_abs_sm_error"] < 0.01
