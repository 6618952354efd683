"""CPU throughput benchmarks written as JSON (``tbcube bench {ft,lstm,sm-retrieval,all}``).

* ``ft`` — freeze/thaw autoencoder inference, pixel-days per second: JAX (``jax.jit`` of
  :func:`models.autoencoder.apply`) vs the PyTorch ``Conv1d`` twin with the same weights.
* ``lstm`` — LSTM inference, pixel-steps per second: :func:`models.lstm.apply` vs
  ``torch.nn.LSTM`` with the same sizes and weights.
* ``sm-retrieval`` — the SMAP retrieval kernel (:func:`pipeline.graphs.retrieval.bench_retrieval`).

Every JSON holds both numbers and their ratio, the batch shapes, the versions, the machine
(cores) and the malloc environment.  Both implementations are warmed up, then timed over several
repeats and the MEDIAN is reported.  PyTorch is optional: without it the JAX number is still
reported and ``torch`` is ``null`` with a one-line reason.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

__all__ = ["MALLOC_VARS", "bench_sm_retrieval", "environment", "time_median"]

MALLOC_VARS = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
RECOMMENDED_MALLOC = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0",
                      "MALLOC_TRIM_THRESHOLD_": "68719476736"}


def environment() -> dict[str, Any]:
    """Machine, versions and the malloc settings in effect (as this process saw them)."""
    import jax
    import numpy as np

    from pipeline.bench import torch_models

    env = {k: os.environ.get(k) for k in MALLOC_VARS}
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    torch_threads = None
    if torch_models.available():
        import torch

        torch_threads = torch.get_num_threads()
    return {
        "machine": {"cpu_count": os.cpu_count(),
                    "affinity_cores": len(os.sched_getaffinity(0))
                    if hasattr(os, "sched_getaffinity") else None,
                    "processor": platform.processor() or platform.machine(),
                    "platform": platform.platform(), "load_average_1_5_15": load},
        "versions": {"python": platform.python_version(), "jax": jax.__version__,
                     "jaxlib": _version("jaxlib"), "flax": _version("flax"),
                     "numpy": np.__version__, "torch": torch_models.torch_version()},
        "jax_backend": jax.default_backend(),
        "torch_threads": torch_threads,
        "malloc_env": env,
        "malloc_env_recommended": env == RECOMMENDED_MALLOC,
        "malloc_note": "glibc reads MALLOC_* at process start; `make bench` exports "
                       "MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736",
    }


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def bench_sm_retrieval(n_pixels: int = 16384, repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    """The SMAP retrieval kernel benchmark plus this machine's description.

    Wraps :func:`pipeline.graphs.retrieval.bench_retrieval` (best of ``repeats`` after one
    compile call; there is no PyTorch counterpart of the τ-ω inversion).
    """
    from pipeline.graphs import retrieval

    res = retrieval.bench_retrieval(n_pixels=n_pixels, repeats=repeats, seed=seed)
    return {**res, "metric": "retrievals_per_s (pixel-passes, higher is better)",
            "torch": None, "ratio_jax_over_torch": None,
            "torch_note": "no PyTorch counterpart of the tau-omega inversion",
            "shapes": {"n_pixels": n_pixels, "time": 1, "pass": 2}, **environment()}


def time_median(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 5
                ) -> tuple[float, list[float]]:
    """Median wall time [s] of ``fn()`` after ``warmup`` untimed calls; also every repeat.

    ``fn`` must block until its result is ready (``block_until_ready`` / numpy conversion).
    """
    for _ in range(max(warmup, 0)):
        fn()
    times = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), [round(t, 5) for t in times]
