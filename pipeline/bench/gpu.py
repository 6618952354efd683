"""GPU inference check: the production Dask paths on a GPU worker against the same on a CPU worker.

``tbcube bench gpu --root DIR --out DIR`` (what was run on a lent H200/H100, docs/operations.md §3):

1. **Freeze/thaw, end to end.**  Simulates the ``tiny`` archive at ``root`` (unless it exists),
   trains the autoencoder briefly in-process (on the GPU when JAX sees one) and builds the
   ``ft-smap`` product with :func:`pipeline.graphs.freeze_thaw.run` twice: on a local cluster of
   one GPU worker (``resources={"GPU": 1}``, model tasks annotated by
   :func:`pipeline.runner.placement.model_resources`) and on one CPU worker.  Reports wall time,
   pixel-days per second and the largest |ΔP(thaw)| between the two products.
2. **LSTM, through the Dask map.**  :func:`pipeline.apply.apply_sequence_model` over a dask
   array of raw-unit features (pixels × days × features, the harmonisation layout) with an
   ``sm_lstm`` bundle, again on the GPU worker and on the CPU worker (each platform's local
   cluster serves both steps: one worker start per platform).
3. **Kernels.**  :func:`pipeline.bench.inference.bench_ft` / ``bench_lstm`` (jit apply on fixed
   batches) in this process, at the product batch (256) and a GPU-sized batch.

Without a GPU the CPU half still runs and the JSON says ``gpu: null`` with the reason.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["run"]


def _gpu_available() -> tuple[bool, str]:
    import jax

    try:
        gpus = jax.devices("gpu")
    except RuntimeError as e:
        return False, f"JAX sees no GPU ({str(e).splitlines()[0]})"
    return bool(gpus), (str(gpus[0].device_kind) if gpus else "JAX sees no GPU")


def _cluster(platform: str):
    from pipeline.config import ClusterSection
    from pipeline.runner import cluster

    gpu = platform == "gpu"
    return cluster.connect(ClusterSection(n_workers=1, threads_per_worker=1, gpu=gpu,
                                          jax_platform="gpu" if gpu else "cpu"))


def _train_ft(root: str, epochs: int, max_steps: int | None, log: Callable):
    from pipeline.graphs import freeze_thaw as g

    t0 = time.perf_counter()
    ref = g.train(root, g.TrainOptions(epochs=epochs, patience=epochs, max_steps=max_steps))
    out: dict[str, Any] = {"train_s": round(time.perf_counter() - t0, 2), "model": ref.sha256}
    log(f"ft: trained {epochs} epochs in {out['train_s']} s")
    return ref, out


def _ft_product(root: str, ref, client, platform: str, log: Callable):
    """The ft-smap product on ``client``: (timings, P(thaw) values)."""
    from pipeline.graphs import freeze_thaw as g
    from pipeline.io import stores
    from pipeline.runner import placement

    resources = placement.model_resources(client)
    t0 = time.perf_counter()
    url = g.run(root, ref=ref, resources=resources)
    wall = time.perf_counter() - t0
    ds = stores.open_dataset(url)
    n = int(np.prod([ds.sizes[d] for d in ("time", "pass", "y", "x")]))
    log(f"ft product on {platform}: {wall:.1f} s, {n / wall:,.0f} pixel-days/s")
    return ({"wall_s": round(wall, 2), "pixel_days": n, "pixel_days_per_s": round(n / wall, 1),
             "resources": resources}, ds["thaw_probability"].values)


def _lstm_inputs(work: str, n_pixels: int, n_days: int):
    """A random ``sm_lstm`` bundle, raw-unit features (lazy) and the eager reference block."""
    import dask.array as da
    import xarray as xr

    from pipeline import apply, dims
    from pipeline.io import stores

    n_feat, hidden = 36, 32
    stats = {"mean": [250.0] * n_feat, "std": [20.0] * n_feat}
    bundle = apply.init_bundle("sm_lstm", {"n_features": n_feat, "hidden": hidden,
                                           "num_layers": 1, "target_mean": 0.25,
                                           "target_std": 0.1}, 0, stats)
    ref = apply.save_bundle(bundle, stores.join(work, "bench-lstm-{sha12}.tbm"))
    # Generated chunk by chunk on the workers (no large array embedded in the graph).
    x = (250 + 20 * da.random.default_rng(0).standard_normal(
        (n_pixels, n_days, n_feat), chunks=(1024, -1, -1))).astype(np.float32)
    feats = xr.DataArray(x, dims=("pixel", dims.TIME, dims.FEATURE))
    meta: dict[str, Any] = {"n_pixels": n_pixels, "n_days": n_days, "n_features": n_feat,
                            "hidden": hidden, "pixels_per_task": 1024}
    # Eager reference in this process (the same bridge function, no Dask) on the first pixels.
    ref_block = apply._run_block(x[:256].compute(), ref=ref, batch=256)
    return ref, feats, ref_block, meta


def _lstm_map(ref, feats, ref_block, client, platform: str, log: Callable):
    """The LSTM through the Dask map on ``client``: (timings, soil moisture values)."""
    from pipeline import apply
    from pipeline.runner import placement

    resources = placement.model_resources(client)
    y = apply.apply_sequence_model(feats, ref, resources=resources)
    y.isel(pixel=slice(0, 1)).compute()  # warm-up: load + compile on the worker
    t0 = time.perf_counter()
    vals = y.compute().values
    wall = time.perf_counter() - t0
    n = feats.shape[0] * feats.shape[1]
    log(f"lstm via dask on {platform}: {wall:.1f} s, {n / wall:,.0f} pixel-days/s")
    return ({"wall_s": round(wall, 2), "pixel_days_per_s": round(n / wall, 1),
             "resources": resources,
             "max_abs_diff_vs_eager": float(np.max(np.abs(vals[:256] - ref_block)))}, vals)


def _kernels(gpu: bool, n_pixels: int, log: Callable) -> dict:
    from pipeline.bench import inference

    out = {}
    for batch in (256, 4096) if gpu else (256,):
        n = max(n_pixels, batch)
        ft = inference.bench_ft(n, 368, batch, use_torch=False, repeats=3)
        lstm = inference.bench_lstm(n, 365, batch, use_torch=False, repeats=3)
        out[f"ft_batch_{batch}"] = ft["jax"]
        out[f"lstm_batch_{batch}"] = lstm["jax"]
        log(f"kernels batch {batch}: ft {ft['jax']['pixel_days_per_s']:,.0f} pixel-days/s, "
            f"lstm {lstm['jax']['pixel_steps_per_s']:,.0f} pixel-steps/s "
            f"({ft['jax_backend']})")
    return out


@dataclasses.dataclass(frozen=True)
class GpuBenchSettings:
    """Sizes of :func:`run` (defaults: about 3 minutes on one H200 plus 16 cores)."""

    ft_epochs: int = 3
    ft_max_steps: int | None = None
    lstm_pixels: int = 16384
    lstm_days: int = 365
    kernel_pixels: int = 16384


def run(root: str, work: str, settings: GpuBenchSettings = GpuBenchSettings(),
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the GPU check (see the module docstring); returns the JSON document."""
    from pipeline.bench import environment
    from pipeline.io import stores
    from pipeline.simulate import simulate

    gpu, why = _gpu_available()
    platforms = ["gpu", "cpu"] if gpu else ["cpu"]
    if not stores.exists(stores.join(root, "truth", "M36.zarr")):
        t0 = time.perf_counter()
        simulate("tiny", root, seed=0, progress=False)
        log(f"simulated tiny at {root} in {time.perf_counter() - t0:.1f} s")
    doc: dict[str, Any] = {"benchmark": "gpu", "gpu": why if gpu else None,
                           "gpu_note": None if gpu else why, "platforms": platforms,
                           "settings": dataclasses.asdict(settings)}
    ft_ref, ft = _train_ft(root, settings.ft_epochs, settings.ft_max_steps, log)
    lstm_ref, feats, ref_block, lstm = _lstm_inputs(work, settings.lstm_pixels,
                                                    settings.lstm_days)
    probs, sm = {}, {}
    for p in platforms:  # one worker per platform serves both the product and the LSTM map
        with _cluster(p) as client:
            ft[p], probs[p] = _ft_product(root, ft_ref, client, p, log)
            lstm[p], sm[p] = _lstm_map(lstm_ref, feats, ref_block, client, p, log)
    if len(platforms) == 2:
        a, b = probs.values()
        ft["max_abs_diff_p_thaw"] = float(np.nanmax(np.abs(a - b)))
        ft["same_nan_pattern"] = bool((np.isnan(a) == np.isnan(b)).all())
        a, b = sm.values()
        lstm["max_abs_diff_sm"] = float(np.nanmax(np.abs(a - b)))
    doc["ft_end_to_end"], doc["lstm_dask"] = ft, lstm
    doc["kernels"] = _kernels(gpu, settings.kernel_pixels, log)
    doc.update(environment())
    return doc
