"""The soil-moisture LSTM: shapes, jit, masked loss, learning, checkpoint round trip."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from models import checkpoint, lstm, registry

CFG = lstm.LSTMConfig(n_features=4, hidden=8)


def _toy(rng, n=16, t=20):
    x = rng.normal(size=(n, t, 4)).astype(np.float32)
    # target: a causal running mean of feature 0 (needs memory, which an LSTM has)
    y = (np.cumsum(x[..., 0], 1) / np.arange(1, t + 1)).astype(np.float32)
    return {"x": x, "y": y, "mask": np.ones((n, t), bool)}


def test_shapes_and_jit_equal_eager():
    p = lstm.init(CFG, 0)
    x = np.random.default_rng(0).normal(size=(3, 11, 4)).astype(np.float32)
    y = lstm.apply(p, x, config=CFG)
    assert y.shape == (3, 11) and y.dtype == np.float32
    yj = jax.jit(lambda p, x: lstm.apply(p, x, config=CFG))(p, x)
    np.testing.assert_allclose(np.asarray(yj), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_prediction_is_causal():
    """Changing a late input leaves earlier predictions unchanged (no look-ahead)."""
    p = lstm.init(CFG, 1)
    x = np.random.default_rng(1).normal(size=(2, 15, 4)).astype(np.float32)
    y0 = np.asarray(lstm.apply(p, x, config=CFG))
    x2 = x.copy()
    x2[:, 10:] += 5.0
    y1 = np.asarray(lstm.apply(p, x2, config=CFG))
    np.testing.assert_allclose(y0[:, :10], y1[:, :10], rtol=1e-6)
    assert np.abs(y0[:, 10:] - y1[:, 10:]).max() > 1e-3


def test_masked_mse_ignores_masked_targets():
    pred = np.array([[1.0, 2.0, 3.0]], np.float32)
    tgt = np.array([[1.0, 0.0, np.nan]], np.float32)
    mask = np.array([[True, True, False]])
    assert float(lstm.masked_mse(pred, tgt, mask)) == pytest.approx((0 + 4) / 2)
    assert float(lstm.masked_mse(pred, tgt, np.zeros_like(mask))) == 0.0


def test_training_learns_running_mean():
    rng = np.random.default_rng(2)
    train = [_toy(rng) for _ in range(12)]
    val = [_toy(rng) for _ in range(3)]
    base = np.mean([float(lstm.eval_loss(lstm.init(CFG, 0), b, config=CFG)) for b in val])
    res = lstm.fit(CFG, train, val, max_epochs=15, patience=3, learning_rate=1e-2)
    best = min(h["val_loss"] for h in res.history)
    # the target variance is about 0.2: the trained model must explain most of it
    assert best < 0.5 * base
    assert res.history[res.best_epoch]["val_loss"] == best


def test_learning_rate_drops_on_plateaus_and_training_stops_after_patience(monkeypatch):
    """Scripted validation losses: the rate halves after every 2 epochs without a better
    loss, an improvement resets the count, and 4 such epochs stop training."""
    script = iter([1.0, 1.1, 1.2, 1.3, 0.9, 1.0, 1.0, 1.0, 1.0, 0.1])
    monkeypatch.setattr(lstm, "eval_loss", lambda *a, **k: next(script))
    data = [_toy(np.random.default_rng(0), n=4, t=6)]
    res = lstm.fit(CFG, data, data, max_epochs=10, patience=4, lr_patience=2,
                   learning_rate=1e-2)
    lrs = [h["learning_rate"] for h in res.history]
    assert len(res.history) == 9 and res.best_epoch == 4  # stopped before the 0.1
    np.testing.assert_allclose(lrs, [1e-2] * 3 + [5e-3] * 4 + [2.5e-3] * 2, rtol=1e-6)
    # lr_patience=None keeps the rate constant
    script = iter([1.0, 1.1, 1.2])
    res = lstm.fit(CFG, data, data, max_epochs=3, patience=4, lr_patience=None,
                   learning_rate=1e-2)
    np.testing.assert_allclose([h["learning_rate"] for h in res.history], [1e-2] * 3)


def test_checkpoint_round_trip_through_registry():
    p = lstm.init(CFG, 3)
    b = checkpoint.Bundle("sm_lstm", dataclasses.asdict(CFG), p, {"x_mean": [0.0]}, {})
    data, digest = checkpoint.to_bytes(b)
    b2 = checkpoint.from_bytes(data, expected_sha256=digest)
    cfg2 = registry.config_from_dict(b2.name, b2.config)
    assert cfg2 == CFG
    x = np.random.default_rng(3).normal(size=(2, 7, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(registry.get("sm_lstm").apply(b2.params, x, config=cfg2)),
        np.asarray(lstm.apply(p, x, config=CFG)),
    )


def test_target_standardisation_round_trip():
    """apply() returns physical units: mean + std · network output."""
    cfg = dataclasses.replace(CFG, target_mean=0.25, target_std=0.1)
    p = lstm.init(cfg, 4)
    x = np.random.default_rng(4).normal(size=(2, 5, 4)).astype(np.float32)
    raw = np.asarray(lstm.apply(p, x, config=CFG))
    np.testing.assert_allclose(np.asarray(lstm.apply(p, x, config=cfg)), 0.25 + 0.1 * raw,
                               rtol=1e-6)
