"""FTC-Encoder: architecture, loss numerics, training behaviour."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from models import autoencoder as ae
from models import losses, train

CFG = ae.AutoencoderConfig()
_apply = jax.jit(ae.apply, static_argnames="config")


def test_parameter_count_matches_the_authors_keras_model():
    # Conv 3→64 k8 (1600) + BN (128) + Conv 64→32 (16416) + BN (64) + ConvT 32→32 (8224)
    # + BN (64) + ConvT 32→64 (16448) + BN (128) + ConvT 64→3 (1539) = 44611 (science.md §1.3).
    trainable, stats = ae.n_parameters(ae.init(CFG, 0))
    assert trainable == 8 * 3 * 64 + 64 + 128 + 8 * 64 * 32 + 32 + 64 + 8 * 32 * 32 + 32 + 64 \
        + 8 * 32 * 64 + 64 + 128 + 8 * 64 * 3 + 3
    assert trainable == 44611
    assert stats == 2 * (64 + 32 + 32 + 64)


def test_conditioning_adds_only_first_layer_inputs():
    cond = ae.AutoencoderConfig(condition_channels=9)
    trainable, _ = ae.n_parameters(ae.init(cond, 0))
    assert trainable == 44611 + 8 * 9 * 64


@pytest.mark.parametrize("n_time", [28, 33])
def test_apply_any_length_shapes_and_range(n_time):
    params = ae.init(CFG, 1)
    x = jax.random.normal(jax.random.key(0), (3, n_time, 3))
    p = _apply(params, x, config=CFG)
    assert p.shape == (3, n_time) and p.dtype == jnp.float32
    assert bool(jnp.all((p >= 0) & (p < 1)))


def test_jit_equals_eager_and_batch_rows_are_independent():
    params = ae.init(CFG, 2)
    x = jax.random.normal(jax.random.key(1), (4, 64, 3))
    with jax.disable_jit():
        eager = ae.apply(params, x, config=CFG)
    jitted = _apply(params, x, config=CFG)
    np.testing.assert_allclose(eager, jitted, rtol=1e-5, atol=1e-6)
    # Inference mode uses running statistics: a row's output does not depend on its batch.
    np.testing.assert_allclose(_apply(params, x[:1], config=CFG), eager[:1], rtol=1e-5,
                               atol=1e-6)


def test_thaw_probability_is_one_minus_exp_minus_e():
    e = jnp.array([0.0, np.log(2.0), 3.0])
    np.testing.assert_allclose(ae.thaw_probability(e), [0.0, 0.5, 1 - np.exp(-3.0)], rtol=1e-6)


def test_log1mexp_is_stable_and_exact():
    e = jnp.array([1e-30, 1e-7, 1e-3, 0.5, 0.7, 5.0, 50.0], jnp.float32)
    got = np.asarray(losses.log1mexp(e), np.float64)
    want = np.log(-np.expm1(-np.asarray(e, np.float64)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-20)
    assert np.all(np.isfinite(np.asarray(jax.grad(lambda v: losses.log1mexp(v).sum())(e[1:]))))


def test_bernoulli_loss_formula_and_masking():
    e = jnp.array([[0.1, 2.0, 7.0, 0.3]])
    mask = jnp.array([[True, True, False, True]])
    frozen = losses.bernoulli_reconstruction_loss(e, jnp.array([1]), mask)
    thawed = losses.bernoulli_reconstruction_loss(e, jnp.array([0]), mask)
    ee = np.array([0.1, 2.0, 0.3]) + losses.E_FLOOR
    np.testing.assert_allclose(frozen, [ee.sum()], rtol=1e-6)
    np.testing.assert_allclose(thawed, [-np.log(1 - np.exp(-ee)).sum()], rtol=1e-5)
    # Masked days contribute nothing, whatever their error (padding is masked, not clipped).
    e2 = e.at[0, 2].set(1e-12)
    np.testing.assert_allclose(losses.bernoulli_reconstruction_loss(e2, jnp.array([0]), mask),
                               thawed, rtol=1e-6)
    # e → 0 on a thawed day stays finite (≈ −log(1e-7) ≈ 16.1 per day).
    z = losses.bernoulli_reconstruction_loss(jnp.zeros((1, 1)), jnp.array([0]), jnp.ones((1, 1)))
    np.testing.assert_allclose(z, [-np.log(1e-7)], rtol=1e-3)


def _toy_batch(n=32, t=32, seed=0):
    """Frozen segments are smooth, thawed ones noisy: learnable reconstruction contrast."""
    rng = np.random.default_rng(seed)
    label = (np.arange(n) % 2).astype(np.int32)
    base = np.sin(np.linspace(0, 3, t))[None, :, None] * np.ones((n, 1, 3))
    noise = rng.normal(0, 1.5, (n, t, 3)) * (1 - label)[:, None, None]
    return {"x": (base + noise).astype(np.float32), "mask": np.ones((n, t), bool),
            "label": label, "weight": np.ones(n, np.float32)}


def test_training_reduces_loss_and_learns_toy_contrast():
    tx = optax.adam(1e-3)
    state = train.create_state(CFG, 0, tx)
    batch = _toy_batch()
    before = train.eval_step(state.params, batch, config=CFG)
    seen = []
    state, m = train.train_step(state, batch, config=CFG, tx=tx)
    seen.append(float(m["loss"]))
    compiled = train.train_step._cache_size()
    for _ in range(29):
        state, m = train.train_step(state, batch, config=CFG, tx=tx)
        seen.append(float(m["loss"]))
    after = train.eval_step(state.params, batch, config=CFG)
    # Training-mode loss (batch statistics) falls by > 5x; inference-mode accuracy improves
    # (running BatchNorm statistics, momentum 0.99, lag behind after only 30 steps).
    assert seen[-1] < 0.2 * seen[0]
    acc = lambda m: int(m["correct"]) / int(m["valid"])  # noqa: E731
    assert acc(after) > acc(before)
    assert train.train_step._cache_size() == compiled  # fixed shapes: no recompilation


def test_weight_zero_rows_do_not_change_the_loss():
    params = ae.init(CFG, 0)
    batch = _toy_batch(n=8)
    padded = {k: np.concatenate([v, v[:4]]) for k, v in batch.items()}
    padded["weight"][8:] = 0.0
    padded["mask"][8:] = False
    a = train.eval_step(params, batch, config=CFG)
    b = train.eval_step(params, padded, config=CFG)
    np.testing.assert_allclose(float(a["loss"]), float(b["loss"]), rtol=1e-5)
    assert int(a["valid"]) == int(b["valid"])


def test_fit_early_stopping_restores_best_epoch():
    tx = optax.adam(1e-3)
    batch = _toy_batch(n=16, t=16)
    res = train.fit(train.create_state(CFG, 0, tx), lambda ep: [batch], lambda: [batch],
                    config=CFG, tx=tx, epochs=6, patience=2)
    losses_ = [h["val_loss"] for h in res.history]
    assert res.best_epoch == int(np.argmin(losses_))
    best = train.eval_step(res.params, batch, config=CFG)
    np.testing.assert_allclose(float(best["loss"]), min(losses_), rtol=1e-4)


def test_thaw_thresholds_round_trip_and_do_not_change_the_network():
    """Thresholds live in the config (so in the checkpoint's sha256) but not in the network."""
    import dataclasses

    from models import checkpoint, registry

    base = ae.AutoencoderConfig()
    cfg = dataclasses.replace(base, thaw_thresholds=(0.6, 0.9))
    params = ae.init(base, 0)
    assert ae.n_parameters(ae.init(cfg, 0)) == ae.n_parameters(params)
    x = jax.random.normal(jax.random.key(1), (2, 16, 3))
    np.testing.assert_array_equal(ae.apply(params, x, config=cfg), ae.apply(params, x, config=base))
    b = checkpoint.Bundle("ft_autoencoder", dataclasses.asdict(cfg), params,
                          {"mean": [0.0] * 3, "std": [1.0] * 3})
    data, digest = checkpoint.to_bytes(b)
    back = checkpoint.from_bytes(data, expected_sha256=digest)
    assert registry.config_from_dict("ft_autoencoder", back.config) == cfg
    assert digest != checkpoint.to_bytes(dataclasses.replace(
        b, config=dataclasses.asdict(base)))[1]
    # A bundle written before the field existed still loads (default: the paper's 0.5 rule).
    old = {k: v for k, v in dataclasses.asdict(base).items() if k != "thaw_thresholds"}
    assert registry.config_from_dict("ft_autoencoder", old).thaw_thresholds == ()
