"""Fitted per-channel normalisation statistics: a small dict of lists, JSON-serialisable.

The FTC-Encoder's normalisation recipe is [NF] in docs/science.md §1.2 (the authors normalised
upstream).  tbcube's documented choice: a global z-score per input channel, fitted on the
observed days of the training segments (``{"mean": [...], "std": [...]}``, one entry per input
channel; conditioning channels get mean 0 and std 1 so they pass through unchanged).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["fit_stats", "identity_stats", "normalize"]


def fit_stats(x: np.ndarray, mask: np.ndarray, *, passthrough: int = 0) -> dict:
    """Per-channel mean and std of the valid samples.

    Args:
      x: Inputs [..., time, channel] (raw units, e.g. K).
      mask: Valid samples [..., time] (bool).
      passthrough: Number of trailing channels left unnormalised (mean 0, std 1).

    Returns:
      ``{"mean": list[float], "std": list[float]}`` (std floored at 1e-6).
    """
    vals = np.asarray(x)[np.asarray(mask, bool)]
    n_chan = vals.shape[-1]
    mean = np.nanmean(vals, axis=0).astype(np.float64)
    std = np.maximum(np.nanstd(vals, axis=0), 1e-6).astype(np.float64)
    if passthrough:
        mean[n_chan - passthrough:] = 0.0
        std[n_chan - passthrough:] = 1.0
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def identity_stats(n_channels: int) -> dict:
    """Statistics that leave ``n_channels`` channels unchanged."""
    return {"mean": [0.0] * n_channels, "std": [1.0] * n_channels}


def normalize(x, stats: dict):
    """(x − mean)/std over the last axis; NaN → 0 (the training mean).

    Args:
      x: Inputs [..., channel] (NumPy or JAX), raw units.
      stats: From :func:`fit_stats`.

    Returns:
      Normalised inputs, same shape, float32, no NaN.
    """
    mean = jnp.asarray(stats["mean"], jnp.float32)
    std = jnp.asarray(stats["std"], jnp.float32)
    z = (jnp.asarray(x, jnp.float32) - mean) / std
    return jnp.where(jnp.isnan(z), 0.0, z)
