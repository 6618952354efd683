"""Freeze/thaw autoencoder (FTC-Encoder): 1-D convolutions over time on per-pixel TB features.

Architecture (docs/science.md §1.3, the authors' ``utils_main.AutoencoderModel``), all "same"
padding, L2 = 1e-3 on every kernel:

====  =====================  =======  ======  ======  ==================================
 #    layer                  filters  kernel  stride  after
====  =====================  =======  ======  ======  ==================================
 1    Conv1D                 64       8       2       ReLU, BatchNorm, Dropout 0.1
 2    Conv1D                 32       8       2       ReLU, BatchNorm (latent T/4 × 32)
 3    Conv1DTranspose        32       8       2       ReLU, BatchNorm, Dropout 0.1
 4    Conv1DTranspose        64       8       2       ReLU, BatchNorm
 5    Conv1DTranspose        3        8       1       linear (reconstruction)
====  =====================  =======  ======  ======  ==================================

With ``condition_channels = 0`` this has exactly 44 611 trainable parameters (as the authors'
Keras summary) plus 384 BatchNorm running statistics.  ``condition_channels > 0`` appends
time-constant conditioning channels (land-cover one-hot, water fraction) to the *input* only;
the network still reconstructs the 3 TB channels.

Flax NNX is used inside this module only: :func:`init` and :func:`apply` split / merge the
module so what crosses the boundary is a plain nested dict of arrays
(``{"params": …, "batch_stats": …}``) plus the frozen :class:`AutoencoderConfig`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = [
    "AutoencoderConfig",
    "FreezeThawAutoencoder",
    "apply",
    "init",
    "n_parameters",
    "reconstruct",
    "reconstruction_error",
    "thaw_probability",
]

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
    """Hyper-parameters of the FTC-Encoder (hashable: usable as a jit static argument).

    Attributes:
      channels: Reconstructed TB channels (normalised H, V, V−H) [1].
      condition_channels: Extra time-constant input channels (0 = the authors' model).
      filters: Filters of the two encoder stages (the decoder mirrors them).
      kernel_days: Convolution kernel length [days] (the authors' code uses 8).
      dropout: Dropout rate after layers 1 and 3.
      l2: L2 weight on every convolution kernel.
      bn_momentum: BatchNorm running-average momentum (Keras default 0.99).
      bn_epsilon: BatchNorm epsilon (Keras default 1e-3).
      thaw_thresholds: Decision thresholds on P(thaw) [1], one per land-cover group (the
        caller's group order), chosen after training on the training years; ``()`` means the
        paper's 0.5 everywhere.  Not used by the network: carried so that the checkpoint
        (and its sha256) identifies the whole retrieval, decision rule included.
      cell_thresholds: Optional per-cell, per-pass thresholds [1], flattened in (pass, y, x)
        order over ``cell_threshold_pass`` × ``cell_threshold_y`` × ``cell_threshold_x`` (the
        calibration window's pass labels and grid coordinates [m]); cells outside that window
        use ``thaw_thresholds``.  Also unused by the network.
    """

    channels: int = 3
    condition_channels: int = 0
    filters: tuple[int, int] = (64, 32)
    kernel_days: int = 8
    dropout: float = 0.1
    l2: float = 1e-3
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    thaw_thresholds: tuple[float, ...] = ()
    cell_thresholds: tuple[float, ...] = ()
    cell_threshold_pass: tuple[str, ...] = ()
    cell_threshold_y: tuple[float, ...] = ()
    cell_threshold_x: tuple[float, ...] = ()

    @property
    def in_channels(self) -> int:
        """Input channels: TB features plus conditioning channels."""
        return self.channels + self.condition_channels


class FreezeThawAutoencoder(nnx.Module):
    """Maps x[batch, time, in_channels] to a reconstruction [batch, time, channels]."""

    def __init__(self, config: AutoencoderConfig, *, rngs: nnx.Rngs):
        """Build the layers (time length is free; it must be a multiple of 4)."""
        f1, f2 = config.filters
        k = (config.kernel_days,)
        bn = functools.partial(
            nnx.BatchNorm, momentum=config.bn_momentum, epsilon=config.bn_epsilon, rngs=rngs
        )
        self.conv1 = nnx.Conv(config.in_channels, f1, k, strides=(2,), padding="SAME", rngs=rngs)
        self.bn1 = bn(f1)
        self.conv2 = nnx.Conv(f1, f2, k, strides=(2,), padding="SAME", rngs=rngs)
        self.bn2 = bn(f2)
        self.deconv1 = nnx.ConvTranspose(f2, f2, k, strides=(2,), padding="SAME", rngs=rngs)
        self.bn3 = bn(f2)
        self.deconv2 = nnx.ConvTranspose(f2, f1, k, strides=(2,), padding="SAME", rngs=rngs)
        self.bn4 = bn(f1)
        self.out = nnx.ConvTranspose(
            f1, config.channels, k, strides=(1,), padding="SAME", rngs=rngs
        )
        self.dropout = nnx.Dropout(config.dropout)

    def __call__(
        self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None
    ) -> jax.Array:
        """Reconstruct x [batch, time, in_channels] → [batch, time, channels]; time % 4 == 0."""
        eval_bn = not train
        det = not train
        h = self.bn1(jax.nn.relu(self.conv1(x)), use_running_average=eval_bn)
        h = self.dropout(h, deterministic=det, rngs=rngs)
        h = self.bn2(jax.nn.relu(self.conv2(h)), use_running_average=eval_bn)
        h = self.bn3(jax.nn.relu(self.deconv1(h)), use_running_average=eval_bn)
        h = self.dropout(h, deterministic=det, rngs=rngs)
        h = self.bn4(jax.nn.relu(self.deconv2(h)), use_running_average=eval_bn)
        return self.out(h)


@functools.cache
def _split_abstract(config: AutoencoderConfig):
    abstract = nnx.eval_shape(lambda: FreezeThawAutoencoder(config, rngs=nnx.Rngs(0)))
    graphdef, params, stats = nnx.split(abstract, nnx.Param, nnx.BatchStat)
    return graphdef, params, stats


def init(config: AutoencoderConfig, seed: int) -> Params:
    """Initialise parameters (Flax default initialisers) from an integer seed.

    Returns:
      ``{"params": nested dict of trainable arrays, "batch_stats": BatchNorm statistics}``.
    """
    return _init_jit(config, jax.random.key(seed))


@functools.partial(jax.jit, static_argnums=0)
def _init_jit(config: AutoencoderConfig, key: jax.Array) -> Params:
    # Jitted: eager NNX initialisation dispatches hundreds of tiny ops.
    model = FreezeThawAutoencoder(config, rngs=nnx.Rngs(key))
    _, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return {"params": nnx.to_pure_dict(params), "batch_stats": nnx.to_pure_dict(stats)}


def _merge(params: Params, config: AutoencoderConfig) -> FreezeThawAutoencoder:
    graphdef, abs_params, abs_stats = _split_abstract(config)
    p = jax.tree.map(lambda a: a, abs_params)
    s = jax.tree.map(lambda a: a, abs_stats)
    nnx.replace_by_pure_dict(p, params["params"])
    nnx.replace_by_pure_dict(s, params["batch_stats"])
    return nnx.merge(graphdef, p, s)


def reconstruct(
    params: Params,
    x: jax.Array,
    *,
    config: AutoencoderConfig,
    train: bool = False,
    dropout_key: jax.Array | None = None,
) -> tuple[jax.Array, Params]:
    """Run the network on normalised inputs whose time length is a multiple of 4.

    Args:
      params: Parameter dict from :func:`init` (or a checkpoint).
      x: Normalised inputs [batch, time, in_channels], float32, ``time % 4 == 0``, no NaN.
      config: The model configuration.
      train: Training mode (BatchNorm batch statistics, dropout active).
      dropout_key: PRNG key for dropout, required when ``train``.

    Returns:
      (reconstruction [batch, time, channels], params with updated ``batch_stats`` in training
      mode, else ``params`` unchanged).
    """
    model = _merge(params, config)
    rngs = nnx.Rngs(dropout=dropout_key) if train else None
    y = model(x, train=train, rngs=rngs)
    if not train:
        return y, params
    _, _, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return y, {"params": params["params"], "batch_stats": nnx.to_pure_dict(stats)}


def reconstruction_error(x: jax.Array, y: jax.Array, channels: int = 3) -> jax.Array:
    """Squared reconstruction error averaged over the TB channels: e [batch, time] [1]."""
    return jnp.mean((x[..., :channels] - y) ** 2, axis=-1)


def thaw_probability(e: jax.Array) -> jax.Array:
    """P(thaw) = 1 − exp(−e) for reconstruction error e ≥ 0 (same shape, [0, 1))."""
    return -jnp.expm1(-e)


def apply(params: Params, x: jax.Array, *, config: AutoencoderConfig) -> jax.Array:
    """Thaw probability for whole normalised series (inference mode).

    The time axis is edge-padded to a multiple of 4 and the result cropped back, so any series
    length works (the stride-2 stages need ``time % 4 == 0``).

    Args:
      params: Parameter dict.
      x: Normalised inputs [batch, time, in_channels], float32, gap-filled (no NaN).
      config: The model configuration.

    Returns:
      P(thaw) [batch, time] in [0, 1), float32.
    """
    n_time = x.shape[1]
    pad = (-n_time) % 4
    xp = jnp.pad(x, ((0, 0), (0, pad), (0, 0)), mode="edge") if pad else x
    y, _ = reconstruct(params, xp, config=config)
    e = reconstruction_error(xp, y, config.channels)[:, :n_time]
    return thaw_probability(e).astype(jnp.float32)


def n_parameters(params: Params) -> tuple[int, int]:
    """(trainable parameters, BatchNorm statistics) counts."""
    count = lambda tree: sum(int(a.size) for a in jax.tree.leaves(tree))  # noqa: E731
    return count(params["params"]), count(params["batch_stats"])
