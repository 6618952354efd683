"""Fitted per-channel normalisation statistics: a small dict of lists, JSON-serialisable.

The FTC-Encoder's normalisation recipe is [NF] in docs/science.md §1.2 (the authors normalised
upstream).  tbcube's documented choice: a global z-score per input channel, fitted on the
observed days of the training segments (``{"mean": [...], "std": [...]}``, one entry per input
channel; conditioning channels get mean 0 and std 1 so they pass through unchanged).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["combine_moments", "fit_stats", "identity_stats", "moments", "moments_std",
           "normalize", "stats_from_moments"]


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


def moments(x: np.ndarray) -> dict:
    """Count, mean and sum of squared deviations per channel of the finite values of ``x``
    [..., channel] (float64): one part of a data set, merged by :func:`combine_moments`."""
    v = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
    ok = np.isfinite(v)
    n = ok.sum(0).astype(np.float64)
    s = np.where(ok, v, 0.0).sum(0)
    mean = np.divide(s, n, out=np.zeros_like(s), where=n > 0)
    m2 = (np.where(ok, v - mean, 0.0) ** 2).sum(0)
    return {"n": n, "mean": mean, "m2": m2}


def combine_moments(parts) -> dict:
    """Merge :func:`moments` of disjoint parts (Chan et al.'s pairwise update: exact, stable)."""
    out = None
    for p in parts:
        if p is None:
            continue
        p = {k: np.asarray(v, np.float64) for k, v in p.items()}
        if out is None:
            out = p
            continue
        n = out["n"] + p["n"]
        d = p["mean"] - out["mean"]
        w = np.divide(p["n"], n, out=np.zeros_like(n), where=n > 0)
        out = {"n": n, "mean": out["mean"] + d * w,
               "m2": out["m2"] + p["m2"] + d**2 * out["n"] * w}
    return out


# A channel whose spread over the training data is below this (in its own units) is constant
# there: a one-hot land-cover class the training never saw, the longitude of a one-column
# transect.  It gets std 1, so a value the model never saw enters at its own size, not ×10⁶.
CONSTANT_STD = 1e-3


def moments_std(m: dict) -> np.ndarray:
    """Population std per channel of merged :func:`moments` (0 for empty channels)."""
    n = np.asarray(m["n"], np.float64)
    return np.sqrt(np.divide(m["m2"], n, out=np.zeros_like(n), where=n > 0))


def stats_from_moments(m: dict) -> dict:
    """``{"mean", "std"}`` from merged :func:`moments`; constant (or empty) channels get std 1
    (:data:`CONSTANT_STD`)."""
    std = moments_std(m)
    std = np.where(std < CONSTANT_STD, 1.0, std)
    return {"mean": [float(v) for v in m["mean"]], "std": [float(v) for v in std]}


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
