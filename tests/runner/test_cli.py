"""``tbcube reprocess`` and ``tbcube products`` on a tiny TB archive (NPR demo job)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from pipeline import dims
from pipeline.cli import cli, main
from pipeline.io import publish, stores

PID = "npr-smap-m36-v1"
START, END = "2015-06-01", "2015-07-31"


@pytest.fixture
def archive(tmp_path):
    """An archive root with a tiny SMAP-like tb/smap.zarr (61 days, 2 passes, 1.41 V/H)."""
    import pandas as pd
    import xarray as xr

    rng = np.random.default_rng(3)
    time = pd.date_range(START, END)
    shape = (time.size, 2, 2, 3, 4)
    tb = (240 + 30 * rng.random(shape)).astype(np.float32)
    tb[:, :, 1] -= 20  # H below V, as over land
    tb[rng.random(shape) < 0.1] = np.nan  # swath gaps
    ds = xr.Dataset(
        {dims.TB: ((dims.TIME, dims.PASS, dims.CHANNEL, dims.Y, dims.X), tb,
                   {"units": "K", "long_name": "brightness temperature"})},
        coords={dims.TIME: time, dims.PASS: list(dims.PASSES), dims.CHANNEL: ["1.41V", "1.41H"],
                dims.FREQUENCY_COORD: (dims.CHANNEL, [1.41, 1.41]),
                dims.POLARIZATION_COORD: (dims.CHANNEL, ["V", "H"]),
                dims.Y: -36000.0 * np.arange(3), dims.X: 36000.0 * np.arange(4)},
        attrs={"sensor": "smap", "grid": "M36"},
    )
    root = str(tmp_path / "archive")
    stores.write_dataset(ds, stores.tb_url(root, "smap"), chunks={dims.TIME: 8})
    return root


@pytest.fixture(autouse=True)
def _fast_lock_fixed_version(monkeypatch):
    """A short lock settle delay (no rival writers here) and a pinned code version (commits
    landing mid-test must not make the product stale)."""
    import pipeline.cli.reprocess as cli_reprocess
    from pipeline.io import provenance

    monkeypatch.setattr(cli_reprocess, "LOCK_SETTLE_S", 0.05)
    monkeypatch.setenv("TBCUBE_CODE_VERSION", "0.0.0+test")
    provenance.code_version.cache_clear()
    yield
    provenance.code_version.cache_clear()


def _config(tmp_path, root, **over):
    cfg = {"kind": "reprocess", "products": [PID], "root": root,
           "time": {"start": START, "end": END}, "parts": 3, "retention": {"keep_versions": 2},
           "lock_stale_after_s": 600,
           "cluster": {"kind": "local", "n_workers": 1, "memory_limit": "1GiB"}, **over}
    path = tmp_path / "reprocess.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _npr_by_hand(root):
    """NPR computed directly from the 1.41 GHz V and H channels (independent of the stage)."""
    tb = stores.open_dataset(stores.tb_url(root, "smap")).load()
    labels = list(map(str, tb[dims.CHANNEL].values))
    v = tb[dims.TB].values[:, :, labels.index("1.41V")]
    h = tb[dims.TB].values[:, :, labels.index("1.41H")]
    return (v - h) / (v + h)


def _invoke(args):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_reprocess_all_then_up_to_date_and_products_commands(archive, tmp_path):
    cfg = _config(tmp_path, archive)
    first = _invoke(["reprocess", "--config", cfg, "--no-cluster"])
    url = first.stdout.strip().splitlines()[-1]
    assert "no published version" in first.stderr
    resolved = _invoke(["products", "resolve", PID, "--root", archive]).stdout.strip()
    assert resolved == url
    got = stores.open_dataset(url)[dims.NPR].values
    want = _npr_by_hand(archive)
    assert np.isfinite(want).any()
    np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)

    again = _invoke(["reprocess", "--config", cfg, "--no-cluster"])
    assert again.stdout.strip().splitlines()[-1] == url and "up to date" in again.stderr
    plan = _invoke(["reprocess", "plan", "--config", cfg]).stdout
    assert plan.startswith(f"{PID}\tup-to-date")

    listing = _invoke(["products", "list", "--root", archive]).stdout.strip().split("\t")
    assert listing[0] == PID and listing[2] == url
    versions = _invoke(["products", "versions", PID, "--root", archive]).stdout
    assert versions.startswith("* ")
    code = _invoke(["products", "open", PID, "--root", archive]).stdout
    namespace: dict = {}
    exec(code, namespace)  # the printed snippet opens the product with plain xarray
    np.testing.assert_allclose(namespace["ds"][dims.NPR].values, want, rtol=1e-6,
                               equal_nan=True)


def test_reprocess_by_phases_with_a_local_cluster(archive, tmp_path):
    cfg = _config(tmp_path, archive)
    init_url = _invoke(["reprocess", "init", "--config", cfg]).stdout.strip()
    assert not publish.list_versions(archive, PID)
    _invoke(["reprocess", "run", "--config", cfg, "--part", "2/3"])  # spawned worker process
    status = _invoke(["reprocess", "status", "--config", cfg]).stdout
    assert "1/3 parts" in status and "current=-" in status
    for _ in range(2):
        _invoke(["reprocess", "run", "--config", cfg, "--part", "auto", "--no-cluster"])
    url = _invoke(["reprocess", "finalise", "--config", cfg]).stdout.strip().splitlines()[-1]
    assert url == init_url == publish.current_url(archive, PID)
    np.testing.assert_allclose(stores.open_dataset(url)[dims.NPR].values, _npr_by_hand(archive),
                               rtol=1e-6, equal_nan=True)


def test_concurrent_run_and_bad_inputs_are_one_line_errors(archive, tmp_path, capsys):
    cfg = _config(tmp_path, archive)
    lock = stores.join(publish.product_url(archive, PID), "lock.json")
    stores.write_json(lock, {"owner": "other-run", "token": "t", "host": "h", "pid": 1,
                             "acquired_at": "now", "heartbeat_at": _utc_now()})
    with pytest.raises(SystemExit) as info:
        main(["reprocess", "--config", cfg, "--no-cluster"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error: ") and "locked by 'other-run'" in err
    assert len(err.splitlines()) == 1

    with pytest.raises(SystemExit) as info:
        main(["reprocess", "--config", _config(tmp_path, archive, products=["xx-smap-m36-v1"])])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "no job kind builds 'xx-smap-m36-v1'" in err
    with pytest.raises(SystemExit) as info:
        main(["products", "resolve", "ft-smap-n36-v1", "--root", archive])
    assert info.value.code == 2 and "no published version" in capsys.readouterr().err


def _utc_now():
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat()


def test_every_deploy_reprocess_config_parses():
    from pathlib import Path

    from pipeline.config import ReprocessJob, load_config

    paths = sorted((Path(__file__).parents[2] / "deploy" / "configs").glob("reprocess-*.yaml"))
    assert paths
    for p in paths:
        assert isinstance(load_config(p, ReprocessJob), ReprocessJob), p
