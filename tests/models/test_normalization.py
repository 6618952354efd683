"""Normalisation statistics merged from parts equal those of the whole; constant channels."""

from __future__ import annotations

import numpy as np

from models import normalization


def test_moments_merged_over_parts_equal_the_whole_data_set():
    rng = np.random.default_rng(0)
    # TB-like channel (large mean, small spread: the case a naive sum of squares loses),
    # a ratio, and a channel with gaps
    parts = []
    for k, n in enumerate((50, 1, 300, 7)):
        x = np.stack([260 + 0.01 * rng.standard_normal(n) + k * 1e-3,
                      rng.random(n), rng.standard_normal(n)], -1).reshape(n, 1, 3)
        x[rng.random(n) < 0.3, 0, 2] = np.nan
        parts.append(x)
    whole = np.concatenate(parts).reshape(-1, 3)
    m = normalization.combine_moments([None] + [normalization.moments(p) for p in parts])
    st = normalization.stats_from_moments(m)
    np.testing.assert_allclose(m["n"], np.isfinite(whole).sum(0))
    np.testing.assert_allclose(st["mean"], np.nanmean(whole, 0), rtol=1e-12)
    np.testing.assert_allclose(st["std"], np.nanstd(whole, 0), rtol=1e-9)


def test_a_channel_constant_in_training_passes_through_unscaled():
    x = np.zeros((20, 4, 3))
    x[..., 0] = np.linspace(0, 1, 80).reshape(20, 4)
    x[..., 1] = 0.0                 # a land-cover class the training never saw
    x[..., 2] = -0.98 + 1e-5 * np.arange(80).reshape(20, 4)  # one-column transect longitude
    st = normalization.stats_from_moments(normalization.moments(x))
    assert st["std"][1] == 1.0 and st["std"][2] == 1.0 and st["std"][0] < 1.0
    # the unseen class enters as 1 (its own size), not 10⁶ (a floored std)
    z = np.asarray(normalization.normalize(np.array([0.5, 1.0, -0.98]), st))
    assert abs(z[1] - 1.0) < 1e-6 and abs(z[2]) < 1e-3
    assert normalization.combine_moments([None, None]) is None
