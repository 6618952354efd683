"""Freeze/thaw autoencoder inference benchmark: JAX (production path) vs an equivalent PyTorch.

The PyTorch model has the same layers and the *same weights* (copied from the JAX bundle) and
reproduces Flax's "SAME" padding exactly (transposed convolutions as zero-dilated input + pad
(4, 4) + cross-correlation, as ``lax.conv_transpose`` does), so both produce the same P(thaw);
the benchmark reports the max abs difference as a check.  Both run on CPU on the same
normalised batches: JAX through :func:`pipeline.apply._run_block` (the code path of the product
job, one jit), PyTorch in eval mode under ``torch.inference_mode``.  Numbers are
pixel-days per second (pixels × days / wall time, best of ``repeats``).
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from pipeline import apply

__all__ = ["run"]


def _torch_model(params: dict, eps: float):
    import torch
    import torch.nn.functional as F  # noqa: N812

    p = {k: {n: torch.from_numpy(np.array(v, np.float32)) for n, v in d.items()}
         for k, d in params["params"].items()}
    s = {k: {n: torch.from_numpy(np.array(v, np.float32)) for n, v in d.items()}
         for k, d in params["batch_stats"].items()}

    def w(layer):  # flax (k, in, out) → torch (out, in, k), cross-correlation in both
        return p[layer]["kernel"].permute(2, 1, 0).contiguous()

    weights = {k: w(k) for k in ("conv1", "conv2", "deconv1", "deconv2", "out")}

    def bn(x, k):
        scale = p[k]["scale"] / torch.sqrt(s[k]["var"] + eps)
        return (x - s[k]["mean"][:, None]) * scale[:, None] + p[k]["bias"][:, None]

    def conv_same_s2(x, k):
        return F.conv1d(x, weights[k], p[k]["bias"], stride=2, padding=3)

    def deconv(x, k, stride, pads):
        if stride > 1:
            d = x.new_zeros(x.shape[0], x.shape[1], (x.shape[2] - 1) * stride + 1)
            d[..., ::stride] = x
            x = d
        return F.conv1d(F.pad(x, pads), weights[k], p[k]["bias"])

    def forward(x):  # x [batch, time, channel] normalised
        h = x.permute(0, 2, 1)
        h = bn(torch.relu(conv_same_s2(h, "conv1")), "bn1")
        h = bn(torch.relu(conv_same_s2(h, "conv2")), "bn2")
        h = bn(torch.relu(deconv(h, "deconv1", 2, (4, 4))), "bn3")
        h = bn(torch.relu(deconv(h, "deconv2", 2, (4, 4))), "bn4")
        y = deconv(h, "out", 1, (4, 3)).permute(0, 2, 1)
        e = torch.mean((x[..., : y.shape[-1]] - y) ** 2, dim=-1)
        return -torch.expm1(-e)

    return forward


def _best(fn, repeats: int, timer) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = timer()
        fn()
        best = min(best, timer() - t0)
    return best


def run(*, n_pixels: int, n_days: int, batch: int, repeats: int, seed: int, torch_compare: bool,
        timer=time.perf_counter, tmp_url: str | None = None) -> dict:
    """Benchmark dict (see module docstring); ``n_days`` is rounded up to a multiple of 4."""
    import tempfile

    n_days += (-n_days) % 4
    stats = {"mean": [245.0, 258.0, 13.0], "std": [8.0, 4.0, 6.0]}
    bundle = apply.init_bundle("ft_autoencoder", {}, seed, stats)
    with tempfile.TemporaryDirectory() as tmp:
        ref = apply.save_bundle(bundle, tmp_url or os.path.join(tmp, "bench-{sha12}.tbm"))
        rng = np.random.default_rng(seed)
        h = 245 + rng.normal(0, 8, (n_pixels, n_days))
        v = 258 + rng.normal(0, 4, (n_pixels, n_days))
        x = np.stack([h, v, v - h], -1).astype(np.float32)
        apply._run_block(x[:batch], ref=ref, batch=batch)  # compile
        out = {}
        t_jax = _best(lambda: out.__setitem__("jax", apply._run_block(x, ref=ref, batch=batch)),
                      repeats, timer)
    import jax

    result = {
        "model": "ft_autoencoder (FTC-Encoder, 44611 parameters)",
        "n_pixels": n_pixels, "n_days": n_days, "batch": batch, "repeats": repeats,
        "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "jax": {"version": jax.__version__, "backend": jax.default_backend(),
                "seconds": t_jax, "pixel_days_per_s": n_pixels * n_days / t_jax},
        "torch": None, "ratio_jax_over_torch": None,
    }
    if not torch_compare:
        return result
    try:
        import torch
    except ImportError:
        result["torch_skipped"] = "torch is not installed"
        return result
    fwd = _torch_model(bundle.params, float(bundle.config["bn_epsilon"]))
    mean = torch.tensor(stats["mean"])
    std = torch.tensor(stats["std"])
    xt = torch.from_numpy(x)

    def torch_all():
        res = []
        with torch.inference_mode():
            for i in range(0, n_pixels, batch):
                res.append(fwd((xt[i:i + batch] - mean) / std))
        out["torch"] = torch.cat(res).numpy()

    torch_all()  # warm-up
    t_torch = _best(torch_all, repeats, timer)
    result["torch"] = {"version": torch.__version__, "threads": torch.get_num_threads(),
                       "seconds": t_torch, "pixel_days_per_s": n_pixels * n_days / t_torch}
    result["ratio_jax_over_torch"] = result["jax"]["pixel_days_per_s"] / result["torch"][
        "pixel_days_per_s"]
    result["max_abs_diff_p_thaw"] = float(np.max(np.abs(out["jax"] - out["torch"])))
    return result
