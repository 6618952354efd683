"""Shared pytest configuration.  Fixtures live in ``tests/fixtures/<area>.py`` (one per area)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent JAX compilation cache per test session, fresh each run (so the suite's time is
# a cold start's), shared by the spawned Dask workers, notebook kernels and CLI subprocesses
# that inherit this environment: the same kernels are otherwise compiled again in every process.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _jax_cache = tempfile.mkdtemp(prefix="tbcube-jax-cache-")
    atexit.register(shutil.rmtree, _jax_cache, ignore_errors=True)
    os.environ.update(JAX_COMPILATION_CACHE_DIR=_jax_cache,
                      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.2",
                      # a size limit turns on JAX's file lock (workers write concurrently)
                      JAX_COMPILATION_CACHE_MAX_SIZE=str(2**30))

# Every module in tests/fixtures/ is a fixture plugin (one per area: s3, gateway, sim, ...).
pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu`` tests where JAX sees no GPU."""
    try:
        import jax

        has_gpu = any(d.platform == "gpu" for d in jax.devices())
    except Exception:  # noqa: BLE001 - no JAX backend at all also means no GPU
        has_gpu = False
    if not has_gpu:
        skip = pytest.mark.skip(reason="no GPU visible to JAX on this machine")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


REPO = Path(__file__).resolve().parents[1]
