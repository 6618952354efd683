"""Training loop for the freeze/thaw autoencoder: jitted pure steps over NumPy batches.

A batch is a dict of NumPy arrays with a FIXED shape (the caller pads the last batch, so XLA
compiles once):

- ``x``: normalised inputs [batch, time, in_channels], float32, no NaN, ``time % 4 == 0``;
- ``mask``: valid days [batch, time], bool (observed and not padding);
- ``label``: segment label [batch], 1 frozen / 0 thawed;
- ``weight``: [batch], 1 for real segments, 0 for batch padding.

Optimiser Adam (lr 1e-3), loss = weighted mean over segments of the masked Bernoulli loss
(:mod:`models.losses`) + L2 on every kernel, as in docs/science.md §1.4.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from models import autoencoder as ae
from models import losses

__all__ = ["FitResult", "TrainState", "create_state", "eval_step", "fit", "train_step"]


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree)."""

    params: dict
    opt_state: Any
    key: jax.Array
    step: jax.Array


def create_state(config: ae.AutoencoderConfig, seed: int, tx: optax.GradientTransformation):
    """Initial :class:`TrainState` from a seed."""
    params = ae.init(config, seed)
    return TrainState(params, tx.init(params["params"]), jax.random.key(seed + 1), jnp.array(0))


def _loss(trainable, params, batch, key, config: ae.AutoencoderConfig, train: bool):
    full = {"params": trainable, "batch_stats": params["batch_stats"]}
    y, new = ae.reconstruct(full, batch["x"], config=config, train=train, dropout_key=key)
    e = ae.reconstruction_error(batch["x"], y, config.channels)
    per_seg = losses.bernoulli_reconstruction_loss(e, batch["label"], batch["mask"])
    w = batch["weight"].astype(jnp.float32)
    data = jnp.sum(w * per_seg) / jnp.maximum(jnp.sum(w), 1.0)
    total = data + losses.l2_penalty(trainable, config.l2)
    m = batch["mask"].astype(bool) & (w[:, None] > 0)
    correct, valid = losses.masked_accuracy(e, batch["label"], m)
    return total, (new["batch_stats"], data, correct, valid)


@functools.partial(jax.jit, static_argnames=("config", "tx"))
def train_step(state: TrainState, batch: dict, *, config, tx) -> tuple[TrainState, dict]:
    """One Adam step on one batch; returns the new state and metrics (loss, correct, valid)."""
    key, sub = jax.random.split(state.key)
    grad_fn = jax.value_and_grad(_loss, has_aux=True)
    (total, (stats, data, correct, valid)), grads = grad_fn(
        state.params["params"], state.params, batch, sub, config, True
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params["params"])
    trainable = optax.apply_updates(state.params["params"], updates)
    new = TrainState({"params": trainable, "batch_stats": stats}, opt_state, key, state.step + 1)
    return new, {"loss": data, "total": total, "correct": correct, "valid": valid}


@functools.partial(jax.jit, static_argnames=("config",))
def eval_step(params: dict, batch: dict, *, config) -> dict:
    """Metrics on one batch in inference mode (no dropout, running BatchNorm statistics)."""
    _, (_, data, correct, valid) = _loss(
        params["params"], params, batch, jax.random.key(0), config, False
    )
    return {"loss": data, "correct": correct, "valid": valid, "weight": jnp.sum(batch["weight"])}


@dataclasses.dataclass
class FitResult:
    """Outcome of :func:`fit`: the best parameters and the per-epoch history."""

    params: dict
    history: list[dict]
    best_epoch: int


def _mean(metrics: list[dict]) -> dict:
    if not metrics:
        return {"loss": math.nan, "accuracy": math.nan}
    w = np.array([float(m.get("weight", 1.0)) for m in metrics])
    loss = float(np.sum(w * np.array([float(m["loss"]) for m in metrics])) / max(w.sum(), 1.0))
    valid = sum(int(m["valid"]) for m in metrics)
    correct = sum(int(m["correct"]) for m in metrics)
    return {"loss": loss, "accuracy": correct / valid if valid else math.nan}


def fit(
    state: TrainState,
    train_batches: Callable[[int], Iterable[dict]],
    val_batches: Callable[[], Iterable[dict]],
    *,
    config: ae.AutoencoderConfig,
    tx: optax.GradientTransformation,
    epochs: int = 200,
    patience: int = 30,
    max_steps: int | None = None,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Train with early stopping on the validation loss (best weights restored).

    Args:
      state: Initial state from :func:`create_state`.
      train_batches: ``epoch -> iterable of batches`` (reshuffled per epoch by the caller).
      val_batches: ``() -> iterable of batches``.
      config: Model configuration.
      tx: The optax optimiser used to build ``state``.
      epochs: Maximum number of epochs.
      patience: Epochs without validation improvement before stopping.
      max_steps: Optional cap on optimiser steps (smoke tests).
      log: Optional progress callback (one line per epoch).

    Returns:
      :class:`FitResult` with the parameters of the best validation epoch.
    """
    best, best_params, best_epoch, wait, history = math.inf, state.params, -1, 0, []
    for epoch in range(epochs):
        train_metrics = []
        for batch in train_batches(epoch):
            state, m = train_step(state, batch, config=config, tx=tx)
            train_metrics.append({**m, "weight": float(np.sum(batch["weight"]))})
            if max_steps is not None and int(state.step) >= max_steps:
                break
        val = _mean([eval_step(state.params, b, config=config) for b in val_batches()])
        tr = _mean(train_metrics)
        row = {"epoch": epoch, "train_loss": tr["loss"], "train_accuracy": tr["accuracy"],
               "val_loss": val["loss"], "val_accuracy": val["accuracy"]}
        history.append(row)
        if log:
            log(f"epoch {epoch}: train loss {tr['loss']:.3f} acc {tr['accuracy']:.4f}; "
                f"val loss {val['loss']:.3f} acc {val['accuracy']:.4f}")
        score = val["loss"] if math.isfinite(val["loss"]) else tr["loss"]
        if score < best:
            best, best_params, best_epoch, wait = score, state.params, epoch, 0
        else:
            wait += 1
            if wait >= patience:
                break
        if max_steps is not None and int(state.step) >= max_steps:
            break
    return FitResult(jax.device_get(best_params), history, best_epoch)
