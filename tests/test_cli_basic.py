"""``tbcube catalog`` and ``tbcube config``: CliRunner and the installed entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import catalogs
from pipeline import errors, grid, schema, sensors
from pipeline.cli import cli
from pipeline.io import catalog as stac
from pipeline.io import stores

REPO = Path(__file__).resolve().parents[1]
TBCUBE = REPO / ".venv" / "bin" / "tbcube"
# The installed entry point must work without the repo on PYTHONPATH (catalogs/ is a package).
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "JAX_PLATFORMS": "cpu"}


def _run(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    if not TBCUBE.exists():
        pytest.skip(f"{TBCUBE} not installed")
    return subprocess.run([str(TBCUBE), *args], cwd=cwd, env=env or ENV, capture_output=True,
                          text=True, timeout=120)


def _one_error_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    return last


@pytest.fixture
def bad_catalog_dir(tmp_path) -> Path:
    d = tmp_path / "cat"
    d.mkdir()
    for name in ("sensors.yaml", "networks.yaml", "towers.yaml"):
        shutil.copy(catalogs.path(name), d / name)
    towers = yaml.safe_load((d / "towers.yaml").read_text())
    towers["collections"]["fluxnet2015"]["sites"][0]["igbp"] = "TAIGA"
    (d / "towers.yaml").write_text(yaml.safe_dump(towers))
    (d / "networks.yaml").write_text("networks:\n  scan: {provider: x\n")
    return d


# --- the installed entry point --------------------------------------------------------------
def test_help_lists_catalog_and_config():
    p = _run("--help")
    assert p.returncode == 0, p.stderr
    assert "catalog" in p.stdout and "config" in p.stdout


def test_catalog_validate_shipped_catalogs():
    p = _run("catalog", "validate")
    assert p.returncode == 0, p.stderr
    rows = {line.split()[0]: line for line in p.stdout.splitlines()[2:]}
    n_sensors = len(sensors.catalog().sensors)
    assert f"{n_sensors} sensors" in rows["sensors.yaml"] and rows["sensors.yaml"].endswith("ok")
    assert rows["networks.yaml"].endswith("ok") and rows["towers.yaml"].endswith("ok")


def test_catalog_validate_reports_each_problem(bad_catalog_dir):
    p = _run("catalog", "validate", "--catalog-dir", str(bad_catalog_dir))
    assert _one_error_line(p) == "error: 2 catalog problems (listed above)"
    lines = p.stderr.strip().splitlines()
    assert lines[0].startswith("networks.yaml: YAML syntax error at line 3")
    assert lines[1].startswith("towers.yaml: collections.fluxnet2015.sites[US-Prr].igbp: ")
    assert "(got 'TAIGA')" in lines[1]
    assert "INVALID" in p.stdout


def test_config_check_good_file():
    p = _run("config", "check", "deploy/configs/reprocess-ft.yaml")
    assert p.returncode == 0, p.stderr
    first, body = p.stdout.split("\n", 1)
    assert "valid 'reprocess' config (pipeline.config:ReprocessJob)" in first
    resolved = yaml.safe_load(body)
    assert resolved["products"] == ["ft-smap-n36-v1"] and resolved["parts"] == 24
    assert resolved["cluster"]["threads_per_worker"] == 1  # default filled in


def test_config_check_bad_file(tmp_path):
    bad = tmp_path / "job.yaml"
    bad.write_text("kind: simulate\npreset: tiny\nroot: x\ncluster: {n_workers: 0}\n")
    p = _run("config", "check", str(bad))
    line = _one_error_line(p)
    assert line == f"error: {bad}: field 'cluster.n_workers': Input should be greater than 0"
    assert len(p.stderr.strip().splitlines()) == 1 and p.stdout == ""
    missing = _one_error_line(_run("config", "check", "--config", str(tmp_path / "nope.yaml")))
    assert missing == f"error: {tmp_path / 'nope.yaml'}: no such config file"


def test_installed_tbcube_works_outside_the_repo(tmp_path):
    """The shipped catalogs are found from any working directory (package data)."""
    p = _run("catalog", "validate", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-300:]


# --- CliRunner ------------------------------------------------------------------------------
def test_show_table_and_one_sensor():
    r = CliRunner().invoke(cli, ["catalog", "show"])
    assert r.exit_code == 0, r.output
    names = [line.split()[0] for line in r.output.splitlines()[2:]]
    assert names == list(sensors.catalog().sensors)
    r = CliRunner().invoke(cli, ["catalog", "show", "amsr2"])
    assert r.exit_code == 0, r.output
    labels = [line.split()[0] for line in r.output.splitlines()[3:]]
    assert labels == list(sensors.get("amsr2").channel_labels)
    r = CliRunner().invoke(cli, ["catalog", "show", "ssmis"])
    assert r.exit_code == 2 and "unknown sensor 'ssmis'" in r.output


def test_validate_with_archive_root(tmp_path):
    root = str(tmp_path / "arch")
    ds = schema.tb_template("gmi", "M25", grid.Window(200, 202, 300, 303),
                            np.arange("2016-05-01", "2016-05-03", dtype="datetime64[D]"))
    url = stores.write_dataset(ds, stores.tb_url(root, "gmi"))
    stac.register_store(root, "tb", "gmi", url, ds)
    r = CliRunner().invoke(cli, ["catalog", "validate", "--root", root])
    assert r.exit_code == 0, r.output
    assert f"{root} (STAC)" in r.output and "1 collections" in r.output
    shutil.rmtree(stores.tb_url(root, "gmi"))
    r = CliRunner().invoke(cli, ["catalog", "validate", "--root", root])
    assert isinstance(r.exception, errors.SchemaError)
    assert "collections/tb-gmi.json: asset 'zarr' points to missing" in r.output
    r = CliRunner().invoke(cli, ["catalog", "validate", "--root", root, "--no-assets"])
    assert r.exit_code == 0, r.output


def test_config_check_masks_secrets(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("kind: simulate\npreset: tiny\nroot: s3://b/x\n"
                 "storage: {key: AKIAEXAMPLE, secret: hunter2-secret}\n")
    r = CliRunner().invoke(cli, ["config", "check", str(p)])
    assert r.exit_code == 0, r.output
    assert "hunter2" not in r.output and "AKIAEXAMPLE" not in r.output
    assert yaml.safe_load(r.output.split("\n", 1)[1])["storage"]["secret"] == "**********"
    r = CliRunner().invoke(cli, ["config", "check", str(tmp_path / "none.yaml")])
    assert isinstance(r.exception, errors.ConfigError)
    r = CliRunner().invoke(cli, ["config", "check"])
    assert r.exit_code == 2 and "give the config FILE" in r.output


def test_networks_and_towers_tables():
    from pipeline import stations

    r = CliRunner().invoke(cli, ["catalog", "networks"])
    assert r.exit_code == 0, r.output
    assert [line.split()[0] for line in r.output.splitlines()[2:]] == list(
        stations.networks().networks)
    r = CliRunner().invoke(cli, ["catalog", "networks", "soilscape"])
    assert r.exit_code == 0, r.output
    ids = [line.split()[0] for line in r.output.splitlines()[4:]]
    assert ids == [s.id for s in stations.network("soilscape").stations]
    r = CliRunner().invoke(cli, ["catalog", "towers"])
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line.split() for line in r.output.splitlines()[3:]}
    for s in stations.tower_collection("fluxnet2015").resolved_sites():
        assert rows[s.id][3:5] == [s.igbp, str(s.pft)]
    r = CliRunner().invoke(cli, ["catalog", "towers", "ameriflux"])
    assert r.exit_code == 2 and "unknown tower collection 'ameriflux'" in r.output
