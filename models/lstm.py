"""Grid-aware LSTM: multi-frequency TB sequences (+ static cell features) → soil moisture.

Sequence-to-sequence: every time step of a window gets a prediction, so one model maps a
sensor's whole record when applied to long series.  Grid awareness comes from static cell
features (position encoding, land cover, texture, water fraction) that the pipeline repeats
along time and appends to the dynamic features; missing observations enter as 0 (after
normalisation) together with an availability flag, so the LSTM can carry information across gaps.

Axis order: ``x[batch, time, feature]`` float32 (normalised), ``y[batch, time]`` (normalised
target units).  Parameters are a pure dict pytree; configs are frozen dataclasses.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

__all__ = ["LSTMConfig", "SoilMoistureLSTM", "apply", "fit", "init", "masked_mse"]

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class LSTMConfig:
    """Hyper-parameters (science.md §3.5 gives typical values; the paper's own are [NF]).

    Attributes:
      n_features: Inputs per time step (dynamic + static + availability flags).
      hidden: LSTM hidden size per layer.
      num_layers: Stacked LSTM layers.
      dropout: Dropout between layers and before the head (training only).
      target_mean, target_std: The network learns the standardised target; :func:`apply`
        returns ``target_mean + target_std · output`` (physical units), training compares the
        raw output with the standardised target.
    """

    n_features: int
    hidden: int = 64
    num_layers: int = 1
    dropout: float = 0.1
    target_mean: float = 0.0
    target_std: float = 1.0


class SoilMoistureLSTM(nnx.Module):
    """Stacked LSTM with a linear head: x[batch, time, feature] → y[batch, time]."""

    def __init__(self, config: LSTMConfig, *, rngs: nnx.Rngs):
        self.config = config
        sizes = [config.n_features] + [config.hidden] * config.num_layers
        self.layers = nnx.List([
            nnx.RNN(nnx.OptimizedLSTMCell(a, b, rngs=rngs), rngs=rngs)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        ])
        self.dropout = nnx.Dropout(config.dropout, rngs=rngs)
        self.head = nnx.Linear(config.hidden, 1, rngs=rngs)

    def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
        h = x
        for layer in self.layers:
            h = self.dropout(layer(h), rngs=rngs)
        return self.head(h)[..., 0]


def init(config: LSTMConfig, seed: int) -> Params:
    """Initial parameters from an integer seed (pure dict pytree)."""
    model = SoilMoistureLSTM(config, rngs=nnx.Rngs(seed))
    _, params, _ = nnx.split(model, nnx.Param, ...)
    return {"params": nnx.to_pure_dict(params)}


def _model(params: Params, config: LSTMConfig, *, train: bool, seed: int = 0
           ) -> SoilMoistureLSTM:
    # A concrete module (its RNG streams seed the RNN carry initialisation); under jit this
    # is traced once per config, so construction costs nothing per call.
    model = SoilMoistureLSTM(config, rngs=nnx.Rngs(seed))
    graphdef, p_state, rest = nnx.split(model, nnx.Param, ...)
    nnx.replace_by_pure_dict(p_state, params["params"])
    model = nnx.merge(graphdef, p_state, rest)
    if train:
        model.train()
    else:
        model.eval()
    return model


def apply(params: Params, x: jax.Array, *, config: LSTMConfig) -> jax.Array:
    """Predict (inference mode, no dropout).

    Args:
      params: From :func:`init` / training.
      x: Normalised inputs [batch, time, feature], float32.

    Returns:
      Predictions [batch, time] in target units (``target_mean + target_std · output``).
    """
    out = _model(params, config, train=False)(jnp.asarray(x, jnp.float32))
    return config.target_mean + config.target_std * out


def masked_mse(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean squared error over entries where ``mask`` is 1 (0 when the mask is empty)."""
    m = mask.astype(pred.dtype)
    return jnp.sum(m * (pred - jnp.where(mask, target, 0.0)) ** 2) / jnp.maximum(m.sum(), 1.0)


class TrainState(NamedTuple):
    """Parameters, optimiser state and step counter."""

    params: Params
    opt_state: Any
    step: jax.Array


@functools.partial(jax.jit, static_argnames=("config", "tx", "seed"))
def train_step(state: TrainState, batch: dict, *, config: LSTMConfig,
               tx: optax.GradientTransformation, seed: int = 0) -> tuple[TrainState, jax.Array]:
    """One optimiser step on ``batch`` (keys ``x``, ``y``, ``mask``); returns (state, loss)."""

    def loss_fn(p):
        model = _model({"params": p}, config, train=True, seed=0)
        rngs = nnx.Rngs(dropout=jax.random.fold_in(jax.random.key(seed), state.step))
        return masked_mse(model(batch["x"], rngs=rngs), _standardise(batch["y"], config),
                          batch["mask"])

    loss, grads = jax.value_and_grad(loss_fn)(state.params["params"])
    updates, opt_state = tx.update(grads, state.opt_state, state.params["params"])
    new = optax.apply_updates(state.params["params"], updates)
    return TrainState({"params": new}, opt_state, state.step + 1), loss


def _standardise(y: jax.Array, config: LSTMConfig) -> jax.Array:
    return (y - config.target_mean) / config.target_std


@functools.partial(jax.jit, static_argnames=("config",))
def eval_loss(params: Params, batch: dict, *, config: LSTMConfig) -> jax.Array:
    """Masked MSE in inference mode, on the standardised target."""
    pred = _model(params, config, train=False)(jnp.asarray(batch["x"], jnp.float32))
    return masked_mse(pred, _standardise(batch["y"], config), batch["mask"])


@dataclasses.dataclass
class FitResult:
    """Best parameters and the loss history."""

    params: Params
    history: list[dict]
    best_epoch: int


def fit(
    config: LSTMConfig,
    train_batches: Iterable[dict] | Any,
    val_batches: Iterable[dict] | Any,
    *,
    seed: int = 0,
    learning_rate: float = 1e-3,
    max_epochs: int = 50,
    patience: int = 5,
    lr_patience: int | None = 2,
    lr_factor: float = 0.5,
    log=None,
) -> FitResult:
    """Train with Adam, a learning rate that drops on plateaus, and early stopping.

    The learning rate is multiplied by ``lr_factor`` after every ``lr_patience`` epochs without
    a better validation loss (None: constant rate); training stops after ``patience`` such
    epochs.

    Args:
      train_batches, val_batches: Callables returning a fresh iterator of batches per epoch
        (``dict(x=[b, t, f], y=[b, t], mask=[b, t])`` NumPy arrays of FIXED shape, so the step
        compiles once), or re-iterable collections.
      log: Optional ``callable(str)`` for progress lines.

    Returns:
      The parameters of the best validation epoch.
    """
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
    params = init(config, seed)
    state = TrainState(params, tx.init(params["params"]), jnp.zeros((), jnp.int32))
    best, best_epoch, history, waited = np.inf, -1, [], 0
    best_params = params
    for epoch in range(max_epochs):
        losses = []
        for b in _iter(train_batches):
            state, loss = train_step(state, b, config=config, tx=tx, seed=seed)
            losses.append(float(loss))
        vals = [float(eval_loss(state.params, b, config=config)) for b in _iter(val_batches)]
        rec = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else np.nan,
               "val_loss": float(np.mean(vals)) if vals else np.nan,
               "learning_rate": float(state.opt_state.hyperparams["learning_rate"])}
        history.append(rec)
        if log:
            log(f"epoch {epoch}: train {rec['train_loss']:.4f} val {rec['val_loss']:.4f}")
        if rec["val_loss"] < best - 1e-6:
            best, best_epoch, waited = rec["val_loss"], epoch, 0
            best_params = jax.tree.map(np.asarray, state.params)
        else:
            waited += 1
            if waited >= patience:
                break
            if lr_patience and waited % lr_patience == 0:
                hp = state.opt_state.hyperparams
                hp["learning_rate"] = hp["learning_rate"] * lr_factor
                if log:
                    log(f"learning rate → {float(hp['learning_rate']):.2e}")
    return FitResult(best_params, history, best_epoch)


def _iter(batches) -> Iterator[dict]:
    return iter(batches() if callable(batches) else batches)

