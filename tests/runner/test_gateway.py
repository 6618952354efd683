"""Dask Gateway mode against a real local dask-gateway-server (tests/fixtures/gateway.py)."""

from __future__ import annotations

import os
import types

import pytest

from pipeline import errors
from pipeline.runner import cluster

pytestmark = pytest.mark.gateway


def _section(server, **kw):
    base = {**vars(cluster._DEFAULTS), "kind": "gateway", "address": server.address,
            "auth": "basic", "username": server.username, "password_env": server.password_env,
            "n_workers": 1, "worker_cores": 1, "worker_memory": "512MiB"}
    return types.SimpleNamespace(**{**base, **kw})


def _env_and_cores(dask_worker):
    w = dask_worker
    return os.environ.get("MALLOC_ARENA_MAX"), w.state.nthreads, w.memory_manager.memory_limit


def _cube_sum(n):
    return sum(i**3 for i in range(n))


def test_gateway_runs_a_computation_on_gateway_workers(gateway_server, monkeypatch, capsys):
    monkeypatch.setenv(gateway_server.password_env, gateway_server.password)
    with cluster.connect(_section(gateway_server)) as client:
        assert type(client.cluster).__name__ == "GatewayCluster"
        import distributed

        assert distributed.default_client() is client  # dask work in the block runs there
        info = client.run(_env_and_cores)
        result = client.submit(_cube_sum, 50).result()
    assert result == (49 * 50 // 2) ** 2  # Nicomachus: sum of cubes = square of the sum
    ((arena, nthreads, memory),) = info.values()
    assert arena == "1" and nthreads == 1
    assert memory == 512 * 2**20  # worker_memory from the option menu reached the worker
    assert "dask dashboard: http://127.0.0.1" in capsys.readouterr().err


def test_gateway_wrong_password_is_a_one_line_access_denied(gateway_server, monkeypatch):
    monkeypatch.setenv(gateway_server.password_env, "not-the-password")
    with pytest.raises(errors.AccessDenied) as info:
        with cluster.connect(_section(gateway_server)):
            pass
    msg = str(info.value)
    assert "\n" not in msg and "rejected the credentials" in msg and gateway_server.address in msg
    assert "not-the-password" not in msg


def test_gateway_missing_password_env_and_unknown_option(gateway_server, monkeypatch):
    monkeypatch.delenv(gateway_server.password_env, raising=False)
    with pytest.raises(errors.AccessDenied, match=gateway_server.password_env):
        with cluster.connect(_section(gateway_server)):
            pass
    monkeypatch.setenv(gateway_server.password_env, gateway_server.password)
    with pytest.raises(errors.ConfigError, match="offers no option 'image'"):
        with cluster.connect(_section(gateway_server, image="tbcube:0.1.0-cpu")):
            pass
