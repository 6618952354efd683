"""Model inference throughput on CPU: JAX (the production path) vs a PyTorch twin.

Both run the same weights (copied, :mod:`pipeline.bench.torch_models`) on the same fixed-shape
batches, the way :func:`pipeline.apply.apply_sequence_model` feeds a model: the pixels of a
block are cut into batches of ``batch`` series of ``n_time`` steps and run one after the other.
JAX runs ``jax.jit(apply)`` (compiled once for the batch shape); PyTorch runs the ``nn.Module``
in eval mode under ``torch.inference_mode()``, timed with its default intra-op threads and
with one thread; the faster of the two is the headline number (both are in the JSON).  The outputs
of the two on the benchmark batches are compared and the largest difference is reported.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.bench import environment, time_median, torch_models

__all__ = ["bench_ft", "bench_lstm", "random_params"]

TORCH_MISSING = ("torch not installed: PyTorch comparison skipped "
                 "(pip install torch==2.13.0 into the venv to enable it)")


def random_params(params: Any, seed: int, scale: float = 0.2) -> Any:
    """Replace every leaf of a params pytree with N(0, scale²) values (variances: U(0.5, 2)).

    Freshly initialised networks have trivial BatchNorm statistics and zero biases; random
    values make an output comparison meaningful.
    """
    import jax

    rng = np.random.default_rng(seed)

    def leaf(path, a):
        name = str(path[-1])
        shape = np.shape(a)
        if "var" in name:
            return rng.uniform(0.5, 2.0, shape).astype(np.float32)
        return rng.normal(0.0, scale, shape).astype(np.float32)

    return jax.tree_util.tree_map_with_path(leaf, params)


def _batches(x: np.ndarray, batch: int) -> list[np.ndarray]:
    """Cut [pixels, time, feature] into fixed-size batches (last one zero-padded)."""
    out = []
    for i in range(0, len(x), batch):
        piece = x[i:i + batch]
        if len(piece) < batch:
            piece = np.concatenate([piece, np.zeros((batch - len(piece),) + piece.shape[1:],
                                                    piece.dtype)])
        out.append(np.ascontiguousarray(piece))
    return out


def _compare(jax_fn: Callable, torch_model: Any, batches: list[np.ndarray], *, unit_per_batch:
             int, unit: str, warmup: int, repeats: int) -> dict[str, Any]:
    """Time both implementations over ``batches``; compare their outputs."""
    import jax

    def run_jax():
        return [np.asarray(jax.block_until_ready(jax_fn(b))) for b in batches]

    t_jax, all_jax = time_median(run_jax, warmup=warmup, repeats=repeats)
    total = unit_per_batch * len(batches)
    out: dict[str, Any] = {
        "jax": {f"{unit}_per_s": round(total / t_jax, 1), "median_s": round(t_jax, 7),
                "repeats_s": all_jax},
        "torch": None, "ratio_jax_over_torch": None, "max_abs_diff": None,
        "torch_note": None,
    }
    if torch_model is None:
        out["torch_note"] = TORCH_MISSING
        return out
    import torch

    tb = [torch.from_numpy(b) for b in batches]

    def run_torch():
        with torch.inference_mode():
            return [torch_model(b).numpy() for b in tb]

    # PyTorch's default intra-op threads (all cores) can be much slower than one thread on a
    # busy machine (OpenMP spinning); time both and compare against the faster.
    default_threads = torch.get_num_threads()
    runs = {}
    try:
        for threads in dict.fromkeys((default_threads, 1)):
            torch.set_num_threads(threads)
            t, every = time_median(run_torch, warmup=warmup, repeats=repeats)
            runs[threads] = {f"{unit}_per_s": round(total / t, 1), "median_s": round(t, 7),
                             "repeats_s": every, "threads": threads}
        best = min(runs.values(), key=lambda r: r["median_s"])
        torch.set_num_threads(best["threads"])
        yt = run_torch()
    finally:
        torch.set_num_threads(default_threads)
    yj = run_jax()
    out["torch"] = {**best, "by_threads": {str(k): v for k, v in runs.items()}}
    out["ratio_jax_over_torch"] = float(f"{best['median_s'] / t_jax:.4g}")
    out["max_abs_diff"] = float(max(np.max(np.abs(a - b)) for a, b in zip(yj, yt, strict=True)))
    return out


def bench_ft(n_pixels: int = 2048, n_days: int = 368, batch: int = 256, *, warmup: int = 2,
             repeats: int = 5, seed: int = 0, use_torch: bool = True) -> dict[str, Any]:
    """Autoencoder inference (P(thaw) from normalised TB features), pixel-days per second.

    Args:
      n_pixels: Series in the benchmark block.
      n_days: Days per series (a multiple of 4 avoids edge padding).
      batch: Series per model call (``RunOptions.batch`` of the product is 256).
      warmup, repeats: Untimed calls, timed calls (the median is reported).
      seed: Data and weight seed.
      use_torch: Compare with PyTorch when it is installed.
    """
    import jax

    from models import autoencoder as ae

    cfg = ae.AutoencoderConfig()
    params = random_params(ae.init(cfg, seed), seed, scale=0.1)
    x = np.random.default_rng(seed).normal(size=(n_pixels, n_days, cfg.in_channels)) \
        .astype(np.float32)
    batches = _batches(x, batch)
    fn = jax.jit(functools.partial(ae.apply, config=cfg))
    jax_fn = functools.partial(fn, params)
    twin = torch_models.autoencoder_from_jax(params, cfg) if use_torch and \
        torch_models.available() else None
    res = _compare(jax_fn, twin, batches, unit_per_batch=batch * n_days, unit="pixel_days",
                   warmup=warmup, repeats=repeats)
    return {"benchmark": "ft", "model": "FTC-Encoder autoencoder (docs/science.md §1.3)",
            "metric": "pixel_days_per_s (higher is better)",
            "shapes": {"n_pixels": n_pixels, "n_days": n_days, "batch": batch,
                       "n_batches": len(batches), "batch_shape": [batch, n_days,
                                                                  cfg.in_channels]},
            "config": {"filters": list(cfg.filters), "kernel_days": cfg.kernel_days,
                       "in_channels": cfg.in_channels},
            "warmup": warmup, "repeats": repeats, **res, **environment()}


def bench_lstm(n_pixels: int = 1024, n_steps: int = 365, batch: int = 256, *, n_features: int = 36,
               hidden: int = 32, warmup: int = 2, repeats: int = 5, seed: int = 0,
               use_torch: bool = True) -> dict[str, Any]:
    """LSTM inference (``models.lstm``, one layer) vs ``torch.nn.LSTM``, pixel-steps per second.

    Args:
      n_pixels: Series in the benchmark block.
      n_steps: Time steps per series.
      batch: Series per model call.
      n_features, hidden: :class:`models.lstm.LSTMConfig` sizes (the demo's model: 36 / 32).
      warmup, repeats, seed, use_torch: As :func:`bench_ft`.
    """
    import jax

    from models import lstm

    cfg = lstm.LSTMConfig(n_features=n_features, hidden=hidden, num_layers=1,
                          target_mean=0.25, target_std=0.1)
    params = random_params(lstm.init(cfg, seed), seed)
    x = np.random.default_rng(seed).normal(size=(n_pixels, n_steps, n_features)) \
        .astype(np.float32)
    batches = _batches(x, batch)
    fn = jax.jit(functools.partial(lstm.apply, config=cfg))
    jax_fn = functools.partial(fn, params)
    twin = torch_models.lstm_from_jax(params, cfg) if use_torch and \
        torch_models.available() else None
    res = _compare(jax_fn, twin, batches, unit_per_batch=batch * n_steps, unit="pixel_steps",
                   warmup=warmup, repeats=repeats)
    return {"benchmark": "lstm", "model": "SoilMoistureLSTM (models/lstm.py) vs torch.nn.LSTM",
            "metric": "pixel_steps_per_s (higher is better)",
            "shapes": {"n_pixels": n_pixels, "n_steps": n_steps, "batch": batch,
                       "n_batches": len(batches), "batch_shape": [batch, n_steps, n_features]},
            "config": {"n_features": n_features, "hidden": hidden, "num_layers": 1},
            "warmup": warmup, "repeats": repeats, **res, **environment()}
