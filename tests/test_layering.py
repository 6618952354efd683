"""Layering rules of docs/architecture.md §4.2, checked with import-linter.

The contracts are generated here (not read from pyproject.toml) so that modules that do not
exist yet are simply left out, and so that a self-test can prove the checker really catches a
forbidden import, direct or through another module, in a throw-away package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PURE_MODELS = ["pipeline", "xarray", "dask", "distributed", "zarr", "fsspec", "pystac"]
SCIENCE_STAGES = [
    "pipeline.grid", "pipeline.calibrate", "pipeline.fuse", "pipeline.freeze_thaw",
    "pipeline.soil_moisture", "pipeline.carbon", "pipeline.metrics",
]
STAGE_FORBIDDEN = [
    "models", "dask", "distributed", "dask_gateway", "zarr", "fsspec", "pystac",
    "pipeline.io", "pipeline.runner",
]
IO_LIBRARIES = ["zarr", "fsspec", "pystac"]
SCHEDULING = ["distributed", "dask_gateway"]


def _exists(module: str, root: Path = REPO) -> bool:
    """Whether ``module`` is a module or package under ``root`` (without importing it)."""
    path = root.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _children(package: str, root: Path = REPO) -> list[str]:
    """Top-level modules and subpackages of ``package``."""
    base = root.joinpath(*package.split("."))
    out = [f"{package}.{p.stem}" for p in base.glob("*.py") if p.stem != "__init__"]
    out += [f"{package}.{p.name}" for p in base.iterdir() if (p / "__init__.py").is_file()]
    return sorted(out)


def _internal(module: str, roots: list[str]) -> bool:
    return module.split(".")[0] in roots


def _contract(name: str, sources: list[str], forbidden: list[str], roots: list[str],
              root: Path, *, direct_only: bool = False) -> str | None:
    """One TOML ``forbidden`` contract over the modules that exist; None if nothing to check."""
    sources = [m for m in sources if _exists(m, root)]
    forbidden = [m for m in forbidden if not _internal(m, roots) or _exists(m, root)]
    if not sources or not forbidden:
        return None
    lines = [
        "[[tool.importlinter.contracts]]",
        f"name = {name!r}",
        'type = "forbidden"',
        f"source_modules = {sources!r}",
        f"forbidden_modules = {forbidden!r}",
    ]
    if direct_only:
        lines.append("allow_indirect_imports = true")
    return "\n".join(lines).replace("'", '"')


def run_import_linter(contracts: list[tuple], roots: list[str], root: Path, tmp_path: Path,
                      capsys) -> tuple[int, str]:
    """Run import-linter on ``roots`` with the given contracts; returns (exit code, report)."""
    blocks = [_contract(*c[:3], roots, root, **(c[3] if len(c) > 3 else {})) for c in contracts]
    blocks = [b for b in blocks if b]
    assert blocks, "no contract applies to any existing module"
    config = tmp_path / "importlinter.toml"
    config.write_text(
        "[tool.importlinter]\n"
        f"root_packages = {roots!r}\n".replace("'", '"')
        + "include_external_packages = true\n"
        "exclude_type_checking_imports = true\n\n"
        + "\n\n".join(blocks) + "\n"
    )
    # In a subprocess: import-linter's console keeps the stderr it saw on import, which in a
    # long pytest session can be a capture stream that an earlier test already closed.
    script = ("import sys; from importlinter.cli import lint_imports; "
              f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True, "
              "no_logo=True))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root), str(REPO), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, cwd=str(root), timeout=600)
    return res.returncode, res.stdout + res.stderr


def tbcube_contracts() -> list[tuple]:
    not_io = [m for m in _children("pipeline") if m != "pipeline.io"]
    not_runner = [m for m in _children("pipeline") if m != "pipeline.runner"]
    return [
        ("models are pure JAX", ["models"], PURE_MODELS),
        ("science stages do not do I/O or scheduling", SCIENCE_STAGES, STAGE_FORBIDDEN),
        ("only pipeline.io imports zarr, fsspec and pystac", not_io, IO_LIBRARIES,
         {"direct_only": True}),
        ("only pipeline.runner imports distributed and dask_gateway", not_runner, SCHEDULING,
         {"direct_only": True}),
    ]


def test_layering_contracts_hold(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO))
    code, report = run_import_linter(tbcube_contracts(), ["pipeline", "models"], REPO,
                                     tmp_path, capsys)
    assert code == 0, (
        "layering contracts broken (docs/architecture.md §4.2). Stages stay pure Dataset -> "
        "Dataset functions: model application (pipeline.apply), I/O and scheduling are composed "
        f"in pipeline/graphs/*, not imported by a stage, directly or indirectly.\n{report}"
    )
    assert "KEPT" in report and "BROKEN" not in report


def test_checker_catches_forbidden_imports(tmp_path, monkeypatch, capsys):
    """Self-test: a probe package whose stage imports fsspec through a helper and calls into
    its own io layer lazily must break the contract; one without them must keep it."""
    pkg = tmp_path / "src" / "layering_probe"
    (pkg / "io").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "io/__init__.py": "",
        "io/stores.py": "import json\n",
        "helper.py": "import numpy\n\n\ndef read(url):\n    import fsspec\n    return fsspec\n",
        "stage.py": textwrap.dedent("""\
            from layering_probe import helper


            def run():
                from layering_probe.io import stores
                return helper, stores
            """),
        "clean.py": "import numpy\n",
        "typed.py": textwrap.dedent("""\
            from typing import TYPE_CHECKING

            if TYPE_CHECKING:
                import fsspec
            """),
    }
    for rel, text in files.items():
        (pkg / rel).write_text(text)
    monkeypatch.syspath_prepend(str(pkg.parent))
    roots = ["layering_probe"]
    forbidden = ["fsspec", "zarr", "layering_probe.io", "layering_probe.runner"]
    contracts = [
        ("probe stage is pure", ["layering_probe.stage", "layering_probe.missing"], forbidden),
        ("probe clean stays clean", ["layering_probe.clean", "layering_probe.typed"], forbidden),
    ]
    code, report = run_import_linter(contracts, roots, pkg.parent, tmp_path, capsys)
    assert code != 0
    assert "probe stage is pure BROKEN" in report
    assert "probe clean stays clean KEPT" in report
    assert "layering_probe.stage is not allowed to import fsspec" in report
    assert "layering_probe.helper -> fsspec" in report  # the indirect chain is shown
    assert "layering_probe.stage is not allowed to import layering_probe.io" in report
    # Modules that do not exist are dropped instead of failing the run.
    assert "layering_probe.missing" not in report and "layering_probe.runner" not in report


def test_contract_generation_skips_missing_modules():
    block = _contract("x", ["pipeline.grid", "pipeline.not_yet"], ["dask", "pipeline.nope"],
                      ["pipeline", "models"], REPO)
    assert block is not None
    assert '"pipeline.grid"' in block and "not_yet" not in block and "nope" not in block
    assert _contract("y", ["pipeline.not_yet"], ["dask"], ["pipeline"], REPO) is None


@pytest.mark.parametrize("package", ["pipeline", "models"])
def test_packages_exist_for_the_contracts(package):
    assert _exists(package) and _children(package)
