"""Shared pytest configuration.  Fixtures live in ``tests/fixtures/<area>.py`` (one per area)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
