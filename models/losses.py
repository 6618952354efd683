"""Losses for the freeze/thaw autoencoder (docs/science.md §1.4).

The Bernoulli likelihood on reconstruction error: with e_t ≥ 0 the per-day squared
reconstruction error and P(frozen)_t = exp(−e_t), a segment labelled y (1 frozen, 0 thawed)
costs ``L = Σ_t m_t [y·e_t − (1−y)·log(1 − exp(−e_t))]`` where ``m_t`` masks padded and
unobserved days out of the sum (the authors clipped padded days to e = 1e-7 instead, which adds
a parameter-independent ≈16.1 per padded thawed day).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["E_FLOOR", "bernoulli_reconstruction_loss", "l2_penalty", "log1mexp", "masked_accuracy"]

# Added to e so that −log(1 − exp(−e)) stays finite (≈ 16.1) as e → 0 while keeping a gradient.
E_FLOOR = 1e-7


def log1mexp(e: jax.Array) -> jax.Array:
    """Numerically stable log(1 − exp(−e)) for e > 0 (Mächler 2012 switch at ln 2)."""
    return jnp.where(e < jnp.log(2.0), jnp.log(-jnp.expm1(-e)), jnp.log1p(-jnp.exp(-e)))


def bernoulli_reconstruction_loss(
    e: jax.Array, label: jax.Array, mask: jax.Array
) -> jax.Array:
    """Per-segment Bernoulli loss, masked days excluded.

    Args:
      e: Reconstruction error [batch, time] [1], ≥ 0.
      label: Segment label [batch] (1 frozen, 0 thawed).
      mask: Valid (observed, unpadded) days [batch, time], bool or {0, 1}.

    Returns:
      Loss per segment [batch] (sum over valid days).
    """
    e = e + E_FLOOR
    y = label.astype(e.dtype)[:, None]
    per_day = y * e - (1.0 - y) * log1mexp(e)
    return jnp.sum(jnp.where(mask.astype(bool), per_day, 0.0), axis=-1)


def l2_penalty(params: dict, weight: float) -> jax.Array:
    """``weight · Σ kernel²`` over every convolution kernel (Keras ``l2`` regulariser)."""
    total = jnp.zeros((), jnp.float32)
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if str(getattr(path[-1], "key", "")) == "kernel":
            total = total + jnp.sum(leaf.astype(jnp.float32) ** 2)
    return weight * total


def masked_accuracy(e: jax.Array, label: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(correct days, valid days) with frozen decided by exp(−e) > 0.5, i.e. e < ln 2."""
    frozen = e < jnp.log(2.0)
    truth = label.astype(bool)[:, None]
    m = mask.astype(bool)
    return jnp.sum((frozen == truth) & m), jnp.sum(m)
