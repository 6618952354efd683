"""``pipeline`` and ``models`` are generic names: make sure the ones imported are this project's.

Guards against shadowing by an unrelated installed distribution called ``pipeline`` or
``models`` (docs/architecture.md §4.1), both in this interpreter and in a fresh one started
from another directory, as Dask workers and the CLI are.  A module counts as ours when it lies
in this checkout or is a file of the installed ``tbcube`` distribution.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tbcube_files() -> set[Path]:
    try:
        dist = importlib.metadata.distribution("tbcube")
    except importlib.metadata.PackageNotFoundError:
        return set()
    return {Path(dist.locate_file(f)).resolve() for f in dist.files or ()}


def _is_ours(path: Path, name: str) -> bool:
    path = path.resolve()
    return path == REPO / name / "__init__.py" or path in _tbcube_files()


@pytest.mark.parametrize("name", ["pipeline", "models"])
def test_package_resolves_inside_the_repo(name):
    module = __import__(name)
    path = Path(module.__file__)
    assert _is_ours(path, name), f"{name} imported from {path}, not from {REPO} or tbcube"
    assert module.__doc__ and "tbcube" in module.__doc__


def test_packages_resolve_to_ours_from_another_directory(tmp_path):
    code = "import pipeline, models; print(pipeline.__file__); print(models.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    assert len(out) == 2
    for name, path in zip(("pipeline", "models"), out, strict=True):
        assert _is_ours(Path(path), name), f"{name} imported from {path} in a fresh interpreter"


def test_a_shadowing_package_would_be_detected(tmp_path):
    fake = tmp_path / "pipeline"
    fake.mkdir()
    (fake / "__init__.py").write_text('"""Someone else\'s pipeline."""\n')
    code = "import pipeline; print(pipeline.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, check=True).stdout.strip()
    assert not _is_ours(Path(out), "pipeline")
