"""pipeline.config: strict typed configs, readable one-line errors, shipped examples parse."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pydantic
import pytest

from pipeline import config, errors
from pipeline.config import (
    CONFIG_KINDS,
    ClusterSection,
    GridName,
    ReprocessJob,
    SensorName,
    SimulateJob,
    Strict,
    load_config,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "deploy" / "configs").glob("*.yaml"))


def _write(tmp_path, text: str, name: str = "job.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def _error(path, model=None) -> str:
    with pytest.raises(errors.ConfigError) as ei:
        load_config(path, model)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


def test_examples_exist_and_parse():
    names = {p.name for p in EXAMPLES}
    assert {"simulate-demo.yaml", "reprocess-ft.yaml"} <= names
    for p in EXAMPLES:
        job = load_config(p)
        assert isinstance(job, config.model_for_kind(job.kind))


def test_example_values_are_typed():
    job = load_config(REPO / "deploy/configs/reprocess-ft.yaml")
    assert isinstance(job, ReprocessJob)
    assert job.products == ("ft-smap-n36-v1",)
    assert job.time.start == dt.date(2015, 4, 1) and job.time.end == dt.date(2022, 12, 31)
    assert job.retention.keep_versions == 3 and job.parts == 24
    assert job.cluster.kind == "gateway" and job.cluster.max_workers == 24
    demo = load_config(REPO / "deploy/configs/simulate-demo.yaml")
    assert isinstance(demo, SimulateJob) and demo.preset == "demo"
    assert demo.cluster == ClusterSection(n_workers=2, memory_limit="4GiB")


def test_configs_are_frozen_and_defaults_follow_the_interface():
    c = ClusterSection()
    assert (c.kind, c.n_workers, c.threads_per_worker, c.memory_limit) == ("local", 2, 1, "auto")
    assert (c.auth, c.password_env, c.min_workers, c.jax_platform) == (
        "none", "DASK_GATEWAY_PASSWORD", 0, "cpu")
    with pytest.raises(pydantic.ValidationError):
        c.n_workers = 3  # type: ignore[misc]


def test_kinds_table_is_explicit_and_importable():
    for kind, target in CONFIG_KINDS.items():
        assert ":" in target
        model = config.model_for_kind(kind)
        assert issubclass(model, Strict)
        assert model.model_fields["kind"].default == kind


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: simulate\npreset: tiny\nroot: x\ncluster: {n_wrokers: 3}\n",
         "field 'cluster.n_wrokers': unknown key, did you mean 'n_workers'? (allowed: address,"),
        ("kind: simulate\npreset: tiny\nroot: x\nseeds: 1\n",
         "field 'seeds': unknown key, did you mean 'seed'?"),
        ("kind: simulate\npreset: tiny\nroot: x\ncluster: {n_workers: -2}\n",
         "field 'cluster.n_workers': Input should be greater than 0"),
        ("kind: simulate\npreset: tiny\nroot: x\nseed: lots\n",
         "field 'seed': Input should be a valid integer, unable to parse string as an integer "
         "(got 'lots')"),
        ("kind: simulate\npreset: tiny\nroot: x\nstart: 2020-01-02\nend: 2020-01-01\n",
         "end 2020-01-01 is before start 2020-01-02"),
        ("kind: reprocess\nproducts: [ft-smap-n36-v1]\nroot: x\n"
         "time: {start: 2021-01-01, end: 2020-01-01}\n",
         "field 'time': end 2020-01-01 is before start 2021-01-01"),
        ("kind: reprocess\nproducts: [FT_SMAP]\nroot: x\n"
         "time: {start: 2021-01-01, end: 2021-02-01}\n",
         "field 'products.0': product id 'FT_SMAP' must look like"),
        ("kind: reprocess\nproducts: [ft-smap-n36-v1]\nroot: x\n"
         "time: {start: 2021-01-01, end: 2021-02-01}\nretention: {keep_versions: 0}\n",
         "field 'retention.keep_versions': Input should be greater than 0"),
        ("kind: reprocess\nroot: x\ntime: {start: 2021-01-01, end: 2021-02-01}\n",
         "field 'products': required field missing"),
        ("kind: simulate\npreset: galactic\nroot: x\n",
         "field 'preset': Input should be 'tiny', 'demo' or 'global' (got 'galactic')"),
        ("kind: simulate\npreset: tiny\nroot: x\ncluster: {kind: scheduler}\n",
         "field 'cluster': cluster kind 'scheduler' needs 'address'"),
        ("kind: simulate\npreset: tiny\nroot: x\ncluster: {min_workers: 5, max_workers: 2}\n",
         "max_workers 2 is less than min_workers 5"),
        ("kind: fusion\n", "field 'kind': unknown kind 'fusion'; known kinds are"),
        ("preset: tiny\n", "no 'kind:' key; known kinds are"),
        ("- a\n- b\n", "top level must be a mapping of keys, got list"),
        ("", "config file is empty"),
        ("kind: simulate\npreset: tiny\n  root: x\n", "YAML syntax error at line 3, column 7"),
        ("kind: simulate\npreset: [tiny\n", "YAML syntax error at line 3"),
    ],
)
def test_errors_are_one_line_and_name_file_and_field(tmp_path, text, expected):
    msg = _error(_write(tmp_path, text))
    assert expected in msg, msg


def test_several_problems_in_one_message(tmp_path):
    p = _write(tmp_path, """\
        kind: simulate
        preset: tiny
        root: x
        seed: -1
        cluster: {n_workers: 0, threads_per_worker: 0}
        """)
    msg = _error(p)
    assert msg.startswith(f"{p}: 3 problems: ")
    for field in ("'seed'", "'cluster.n_workers'", "'cluster.threads_per_worker'"):
        assert f"field {field}" in msg


def test_missing_file_and_directory(tmp_path):
    assert _error(tmp_path / "nope.yaml").endswith("nope.yaml: no such config file")
    assert "cannot read config file" in _error(tmp_path)


def test_explicit_model_overrides_kind_lookup(tmp_path):
    p = _write(tmp_path, "preset: tiny\nroot: /tmp/x\n")
    assert load_config(p, SimulateJob).root == "/tmp/x"
    msg = _error(_write(tmp_path, "kind: reprocess\npreset: tiny\nroot: x\n", "b.yaml"),
                 SimulateJob)
    assert "field 'kind': Input should be 'simulate'" in msg


class _GridSensor(Strict):
    grid: GridName
    sensors: tuple[SensorName, ...]


def test_grid_and_sensor_names_are_validated():
    ok = config.parse_config({"grid": "n36", "sensors": ["smap", "gmi"]}, _GridSensor)
    assert ok.grid == "N36" and ok.sensors == ("smap", "gmi")
    with pytest.raises(errors.ConfigError) as ei:
        config.parse_config({"grid": "E36", "sensors": ["smap", "ssmis"]}, _GridSensor,
                            source="g.yaml")
    msg = str(ei.value)
    assert msg.startswith("g.yaml: 2 problems: ")
    assert "field 'grid': unknown grid 'E36'; known grids are ['M09'" in msg
    assert "field 'sensors.1': unknown sensor 'ssmis'; the sensor catalog has" in msg


def test_secrets_never_printed(tmp_path):
    p = _write(tmp_path, """\
        kind: simulate
        preset: tiny
        root: s3://b/x
        storage: {key: AKIAEXAMPLEKEY, secret: hunter2-very-secret}
        """)
    job = load_config(p)
    assert job.storage.secret.get_secret_value() == "hunter2-very-secret"
    dumped = str(config.dump_config(job))
    assert "hunter2" not in repr(job) and "hunter2" not in dumped and "AKIAEXAMPLE" not in dumped
    assert "**********" in dumped
    bad = _write(tmp_path, "kind: simulate\npreset: tiny\nroot: x\n"
                           "storage: {key: 12345678, secret: 987654321}\n", "bad.yaml")
    msg = _error(bad)
    assert "field 'storage.key'" in msg and "12345678" not in msg and "987654321" not in msg
    half = _write(tmp_path, "kind: simulate\npreset: tiny\nroot: x\n"
                            "storage: {secret: topsecret}\n", "half.yaml")
    msg = _error(half)
    assert "give both 'key' and 'secret'" in msg and "topsecret" not in msg
