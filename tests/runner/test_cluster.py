"""Cluster connections: local (spawned process workers with malloc env), scheduler, gateway."""

from __future__ import annotations

import os
import types

import distributed
import pytest

from pipeline import errors
from pipeline.runner import cluster

ONE = dict(n_workers=1, threads_per_worker=1, memory_limit="1GiB")


def _section(**kw):
    """A stand-in for ``pipeline.config.ClusterSection`` (same attribute names)."""
    return types.SimpleNamespace(**{**vars(cluster._DEFAULTS), **kw})


def _env_of_worker(names):
    return {n: os.environ.get(n) for n in names}


def _start_method():
    import multiprocessing

    return multiprocessing.get_start_method(allow_none=True), os.getpid()


def _square_sum(n):
    return sum(i * i for i in range(n))


def test_local_cluster_spawned_workers_see_malloc_env(capsys):
    with cluster.connect(_section(**ONE)) as client:
        assert distributed.default_client() is client
        env = client.run(_env_of_worker, [*cluster.MALLOC_ENV, "JAX_PLATFORMS"])
        workers = client.scheduler_info()["workers"]
        method = client.run(_start_method)
        total = client.submit(_square_sum, 100).result()
    assert len(env) == len(workers) == 1
    (seen,) = env.values()
    assert seen == {**cluster.MALLOC_ENV, "JAX_PLATFORMS": "cpu"}
    assert all(w["nthreads"] == 1 for w in workers.values())
    # The worker is a separate process started with spawn, not fork (JAX deadlocks in forks).
    (start, pid), = method.values()
    assert pid != os.getpid() and start == "spawn"
    assert total == 99 * 100 * 199 // 6
    assert "dask dashboard: http" in capsys.readouterr().err


def _raise_expected():
    raise errors.InputDataError("/x/tb/smap.zarr: variable 'tb', chunk 0 cannot be decoded")


def _raise_bug():
    raise ZeroDivisionError("a real bug")


def test_workers_do_not_log_expected_errors_but_still_log_bugs(capfd):
    """A task raising a TbcubeError reaches the client as itself, and the worker does not log
    its "Compute Failed" traceback to stderr (the CLI prints one line); other failures are
    still logged in full."""
    with cluster.connect(_section(**ONE)) as client:
        with pytest.raises(errors.InputDataError, match="chunk 0 cannot be decoded"):
            client.submit(_raise_expected, pure=False).result()
        expected_err = capfd.readouterr().err
        with pytest.raises(ZeroDivisionError):
            client.submit(_raise_bug, pure=False).result()
        import time

        deadline = time.monotonic() + 10
        bug_err = ""
        while "a real bug" not in bug_err and time.monotonic() < deadline:
            time.sleep(0.2)
            bug_err += capfd.readouterr().err
    assert "Compute Failed" not in expected_err and "Traceback" not in expected_err
    assert "Compute Failed" in bug_err and "ZeroDivisionError" in bug_err


def test_scheduler_mode_connects_to_an_existing_scheduler(capsys):
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  protocol="tcp://", dashboard_address="127.0.0.1:0",
                                  host="127.0.0.1") as lc:
        with cluster.connect(_section(kind="scheduler", address=lc.scheduler_address)) as client:
            assert client.scheduler.address == lc.scheduler_address
            assert distributed.default_client() is client
            assert client.submit(_square_sum, 10).result() == 285
        # Leaving the block closes our client but leaves the existing scheduler running.
        assert lc.status.name == "running"


def test_scheduler_mode_unreachable_and_misconfigured(monkeypatch):
    monkeypatch.setattr(cluster, "_CONNECT_TIMEOUT_S", 2)
    with pytest.raises(cluster.ClusterUnavailable, match="cannot reach"):
        with cluster.connect(_section(kind="scheduler", address="tcp://127.0.0.1:9")):
            pass
    with pytest.raises(errors.ConfigError, match="cluster.address"):
        with cluster.connect(_section(kind="scheduler")):
            pass
    with pytest.raises(errors.ConfigError, match="cluster.kind"):
        with cluster.connect(_section(kind="yarn")):
            pass


def test_version_mismatch_is_one_line(monkeypatch):
    def fake(self, check=False, packages=None):
        raise ValueError("Mismatched versions found\n\n+---------+\n| numpy | 2.0 | 1.26 |")

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  protocol="tcp://", dashboard_address="127.0.0.1:0",
                                  host="127.0.0.1") as lc:
        with distributed.Client(lc) as client:
            monkeypatch.setattr(distributed.Client, "get_versions", fake)
            with pytest.raises(cluster.VersionMismatch) as info:
                cluster.check_versions(client)
    msg = str(info.value)
    assert "\n" not in msg and "numpy" in msg and "one image" in msg
