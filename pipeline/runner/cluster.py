"""Dask clients for notebooks, tests and scheduled jobs: local, Dask Gateway or a scheduler.

One entry point, :func:`connect`, driven by a ``ClusterSection`` of the run config
(:mod:`pipeline.config`; any object with the same attribute names works)::

    with connect(job.cluster) as client:        # local by default
        runner.jobs.run_all(job)

* ``local`` — a :class:`distributed.LocalCluster` of *process* workers (spawned, distributed's
  default start method: JAX deadlocks in forked processes), one thread each (XLA does not honour
  thread caps, so processes, not threads, carry parallelism), ``memory_limit`` per worker.  The
  glibc malloc settings recommended for JAX speed (``MALLOC_TRIM_THRESHOLD_``,
  ``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_MAX_``: large buffers reused from the heap instead of
  mmap/munmap per block) are read by glibc when a process starts, so they must be in a worker's
  environment *before* it is spawned: they go into ``distributed.nanny.pre-spawn-environ``.
* ``gateway`` — a new cluster on a Dask Gateway (``address``), authenticated with ``auth``:
  ``basic`` (``username`` + the password read from the environment variable named by
  ``password_env``, never from a config file), ``jupyterhub`` (``JUPYTERHUB_API_TOKEN``) or
  ``kerberos``; the admin's cluster-option menu is filled from ``worker_cores``,
  ``worker_memory``, ``gpu`` and ``image``; ``min_workers``/``max_workers`` make it adaptive,
  otherwise it is scaled to ``n_workers``.  The cluster is shut down when the block exits.
* ``scheduler`` — a client to an existing scheduler at ``address`` (left running on exit).

On connect the client's, scheduler's and workers' package versions are compared
(``client.get_versions(check=True)``): a mismatch fails fast with one line, because mismatched
environments fail later in obscure ways (dask-gateway#405, #161).  The dashboard link is printed
to stderr.  Expected failures raise :class:`pipeline.errors.TbcubeError` subclasses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import types
from collections.abc import Iterator, Mapping
from typing import Any

import dask
import distributed

from pipeline import errors

__all__ = ["MALLOC_ENV", "ClusterUnavailable", "QuietExpectedErrors", "VersionMismatch", "connect",
           "worker_env"]

# glibc malloc settings for JAX/NumPy workers (values from docs/architecture.md).
MALLOC_ENV: dict[str, str] = {
    "MALLOC_TRIM_THRESHOLD_": "68719476736",
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
}

_DEFAULTS = types.SimpleNamespace(
    kind="local", n_workers=2, threads_per_worker=1, memory_limit="auto", address=None,
    auth="none", username=None, password_env="DASK_GATEWAY_PASSWORD", worker_cores=None,
    worker_memory=None, gpu=False, image=None, min_workers=0, max_workers=None,
    jax_platform="cpu",
)
_CONNECT_TIMEOUT_S = 60


class VersionMismatch(errors.TbcubeError):
    """Client, scheduler and workers run different package versions."""


class ClusterUnavailable(errors.TbcubeError):
    """The gateway or scheduler cannot be reached or refused to start a cluster."""


def _setting(cluster: Any, name: str) -> Any:
    return getattr(cluster, name, getattr(_DEFAULTS, name))


def worker_env(cluster: Any = None) -> dict[str, str]:
    """Environment every worker process needs (malloc tuning, JAX platform and GPU memory)."""
    env = dict(MALLOC_ENV)
    if _setting(cluster, "jax_platform") == "gpu" or _setting(cluster, "gpu"):
        # One JAX process per GPU; allocate on demand instead of grabbing 75% up front.
        env.update({"JAX_PLATFORMS": "cuda,cpu", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    else:
        env["JAX_PLATFORMS"] = "cpu"
    return env


@contextlib.contextmanager
def connect(cluster: Any = None) -> Iterator[distributed.Client]:
    """Connect to the cluster described by ``cluster`` and yield a client.

    Args:
      cluster: A ``pipeline.config.ClusterSection`` (or any object with its attributes);
        ``None`` means a local cluster with the defaults (2 process workers, 1 thread each).

    Yields:
      A connected :class:`distributed.Client` whose environment passed the version check.

    Raises:
      errors.AccessDenied: the gateway rejected the credentials.
      errors.ConfigError: the section is inconsistent (e.g. no address for gateway/scheduler).
      ClusterUnavailable: the gateway or scheduler could not be reached.
      VersionMismatch: client, scheduler and workers disagree on package versions.
    """
    kind = _setting(cluster, "kind")
    makers = {"local": _local, "gateway": _gateway, "scheduler": _scheduler}
    if kind not in makers:
        raise errors.ConfigError(f"cluster.kind: {kind!r} is not one of {sorted(makers)}")
    with makers[kind](cluster) as client:
        check_versions(client)
        client.register_plugin(QuietExpectedErrors(), name="tbcube-quiet-expected-errors")
        print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr)
        yield client


def _expected_error_names() -> set[str]:
    names, todo = set(), [errors.TbcubeError]
    while todo:
        c = todo.pop()
        names.add(c.__name__)
        todo.extend(c.__subclasses__())
    return names


class _DropExpectedComputeFailures(logging.Filter):
    """Drop a worker's "Compute Failed" record (with its traceback) when the task raised a
    :class:`pipeline.errors.TbcubeError`: the client re-raises it and the CLI prints it as one
    line.  Every other failure is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if not msg.startswith("Compute Failed"):
            return True
        line = next((ln for ln in msg.splitlines() if ln.startswith("Exception:")), "")
        return not any(f"{n}(" in line for n in _expected_error_names())


class QuietExpectedErrors(distributed.WorkerPlugin):
    """Worker plugin installing :class:`_DropExpectedComputeFailures` on the worker's logger
    (registered by :func:`connect` on local, scheduler and Gateway clusters)."""

    def setup(self, worker) -> None:  # noqa: D102
        log = logging.getLogger("distributed.worker")
        if not any(isinstance(f, _DropExpectedComputeFailures) for f in log.filters):
            log.addFilter(_DropExpectedComputeFailures())


def check_versions(client: distributed.Client) -> None:
    """Fail with one line when client, scheduler and workers run different package versions."""
    try:
        client.get_versions(check=True)
    except ValueError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = "; ".join(lines[:6])
        raise VersionMismatch(
            f"{client.scheduler.address}: package versions differ between client, scheduler and "
            f"workers (use one image everywhere): {detail}"
        ) from None


@contextlib.contextmanager
def _local(cluster: Any) -> Iterator[distributed.Client]:
    env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **worker_env(cluster)}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        lc = distributed.LocalCluster(
            n_workers=int(_setting(cluster, "n_workers")),
            threads_per_worker=int(_setting(cluster, "threads_per_worker")),
            memory_limit=_setting(cluster, "memory_limit"),
            processes=True,
            dashboard_address="127.0.0.1:0",
            host="127.0.0.1",
            # A local GPU machine: every worker is a GPU worker (run one per GPU), so model
            # tasks annotated resources={"GPU": 1} (pipeline.runner.placement) can run.
            resources={"GPU": 1} if env["JAX_PLATFORMS"].startswith("cuda") else None,
        )
    try:
        with distributed.Client(lc) as client:
            yield client
    finally:
        lc.close()


@contextlib.contextmanager
def _scheduler(cluster: Any) -> Iterator[distributed.Client]:
    address = _setting(cluster, "address")
    if not address:
        raise errors.ConfigError("cluster.address: required for kind 'scheduler'")
    try:
        client = distributed.Client(address, timeout=_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as e:
        raise ClusterUnavailable(f"{address}: cannot reach the dask scheduler ({e})") from None
    with client:
        yield client


def _gateway_auth(cluster: Any):
    from dask_gateway.auth import BasicAuth, JupyterHubAuth, KerberosAuth

    kind = _setting(cluster, "auth")
    if kind == "basic":
        var = _setting(cluster, "password_env")
        password = os.environ.get(var)
        if password is None:
            raise errors.AccessDenied(
                f"{_setting(cluster, 'address')}: basic auth needs the password in the "
                f"environment variable {var}, which is not set"
            )
        return BasicAuth(username=_setting(cluster, "username"), password=password)
    if kind == "jupyterhub":
        if not os.environ.get("JUPYTERHUB_API_TOKEN"):
            raise errors.AccessDenied(
                f"{_setting(cluster, 'address')}: jupyterhub auth needs JUPYTERHUB_API_TOKEN"
            )
        return JupyterHubAuth()
    if kind == "kerberos":
        return KerberosAuth()
    return None  # "none": dask_gateway's own configuration decides


def _cluster_options(gateway: Any, cluster: Any) -> Any:
    """Fill the admin-defined cluster-option menu; ask only for options the menu offers."""
    opts = gateway.cluster_options()
    wanted: Mapping[str, Any] = {
        "worker_cores": _setting(cluster, "worker_cores"),
        "worker_memory": _setting(cluster, "worker_memory"),
        "gpu": bool(_setting(cluster, "gpu")),
        "image": _setting(cluster, "image"),
    }
    for name, value in wanted.items():
        if value is None or (name == "gpu" and not value and name not in opts):
            continue
        if name not in opts:
            raise errors.ConfigError(
                f"cluster.{name}: the gateway at {_setting(cluster, 'address')} offers no option "
                f"{name!r} (it offers: {', '.join(opts) or 'none'})"
            )
        if name == "worker_memory" and isinstance(value, str):
            value = _gib(value)
        if isinstance(value, float) and value.is_integer():
            # Menus declare cores as Integer or Float; a whole number satisfies both as an int.
            value = int(value)
        try:
            opts[name] = value
        except (ValueError, TypeError) as e:
            raise errors.ConfigError(f"cluster.{name}: gateway refused {value!r}: {e}") from None
    return opts


def _gib(text: str) -> float:
    """'4GiB' / '4 GB' / '512MiB' → GiB (the unit dask-gateway's default menus use)."""
    return dask.utils.parse_bytes(text) / 2**30


@contextlib.contextmanager
def _gateway(cluster: Any) -> Iterator[distributed.Client]:
    import aiohttp
    from dask_gateway import Gateway

    address = _setting(cluster, "address")
    if not address:
        raise errors.ConfigError("cluster.address: required for kind 'gateway'")
    gateway = Gateway(address, auth=_gateway_auth(cluster))
    gw_cluster = None
    try:
        try:
            opts = _cluster_options(gateway, cluster)
            gw_cluster = gateway.new_cluster(opts, shutdown_on_close=True)
        except aiohttp.ClientResponseError as e:
            if e.status in (401, 403):
                raise errors.AccessDenied(
                    f"{address}: the gateway rejected the credentials of user "
                    f"{_setting(cluster, 'username')!r} (HTTP {e.status})"
                ) from None
            raise ClusterUnavailable(f"{address}: gateway error HTTP {e.status}") from None
        except (aiohttp.ClientConnectionError, OSError, TimeoutError) as e:
            raise ClusterUnavailable(f"{address}: cannot reach the gateway ({e})") from None
        lo, hi = int(_setting(cluster, "min_workers")), _setting(cluster, "max_workers")
        if hi is not None:
            gw_cluster.adapt(minimum=lo, maximum=int(hi))
        else:
            gw_cluster.scale(int(_setting(cluster, "n_workers")))
        # The default client inside the block, like the local kind: package functions'
        # dask computations (to_zarr, .compute()) must run on the gateway's workers.
        with gw_cluster.get_client(set_as_default=True) as client:
            if hi is None:
                client.wait_for_workers(int(_setting(cluster, "n_workers")),
                                        timeout=_CONNECT_TIMEOUT_S * 3)
            yield client
    finally:
        if gw_cluster is not None:
            gw_cluster.shutdown()
            _forget_loop(gw_cluster.gateway)
        gateway.close()
        _forget_loop(gateway)


def _forget_loop(gateway: Any) -> None:
    """Stop ``Gateway.__del__`` from closing an already-closed gateway a second time.

    dask-gateway's ``Gateway.__del__`` calls ``close()`` again, which then touches the stopped
    loop and raises ``RuntimeError`` in the finaliser; it skips objects without a loop runner.
    """
    gateway.__dict__.pop("_loop_runner", None)
