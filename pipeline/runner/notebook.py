"""Helpers for the user notebooks (``notebooks/gateway.ipynb``): jobs, progress, summaries.

Notebook cells only glue calls together; every function that runs on a Dask worker or
scheduler lives here (or in the package modules it calls), because functions defined in a
notebook's ``__main__`` are pickled by value and JAX kernels must be importable on the
workers (docs/architecture.md, "JAX and processes").

Typical use in a notebook::

    nb.one_line_errors()                       # TbcubeError -> "error: …", no traceback
    with cluster.connect(cfg) as client:       # gateway cluster, scaled, version-checked
        print(nb.describe(client))
        result = nb.run_with_progress(client, nb.smap_retrieval_job, root)
    ds = xr.open_zarr(publish.current_url(root, result.value))

:func:`run_with_progress` makes ``client`` the dask scheduler of the job explicitly (the job
runs in another thread, and ``client`` need not be the process-wide default client), runs
the job in that background thread and prints the scheduler's task counts every few seconds;
the scheduler's task stream then tells which workers did the work.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import dask
import distributed

from pipeline import dims, errors, qc

__all__ = ["JobResult", "describe", "gateway_clusters", "one_line_errors", "plot_summary",
           "run_with_progress", "smap_retrieval_job", "summarise", "task_states"]

Print = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class JobResult:
    """What a job returned and where its tasks ran.

    Attributes:
      value: The job function's return value.
      n_tasks: Tasks executed on the cluster's workers while the job ran.
      workers: Addresses of the workers that executed them.
      compute_s: Summed task compute time on the workers (s).
      by_prefix: Task count per task-name prefix (e.g. ``{"store-map": 12, …}``).
      wall_s: Wall-clock time of the job (s).
    """

    value: Any
    n_tasks: int
    workers: tuple[str, ...]
    compute_s: float
    by_prefix: dict[str, int]
    wall_s: float


# --- cluster information ---------------------------------------------------------------------
def describe(client: distributed.Client) -> str:
    """Cluster name, dashboard link and each worker's threads and memory limit, as text."""
    info = client.scheduler_info(n_workers=-1)
    name = getattr(client.cluster, "name", None) or client.scheduler.address
    kind = type(client.cluster).__name__ if client.cluster is not None else "scheduler"
    lines = [f"cluster {name} ({kind})",
             f"dashboard: {client.dashboard_link}"]
    for addr, w in sorted(info.get("workers", {}).items()):
        mem = w.get("memory_limit") or 0
        lines.append(f"worker {addr}: {w.get('nthreads')} thread(s), "
                     f"memory limit {mem / 2**30:.2f} GiB")
    return "\n".join(lines)


def task_states(dask_scheduler: Any = None) -> dict[str, int]:
    """Number of tasks on the scheduler in each state (run with ``client.run_on_scheduler``)."""
    return dict(collections.Counter(ts.state for ts in dask_scheduler.tasks.values()))


def gateway_clusters(cfg: Any) -> list[str]:
    """Names of the clusters the gateway in ``cfg`` runs for this user (pending or running).

    Used after the ``with connect(cfg)`` block to show that the cluster was shut down.
    """
    from dask_gateway import Gateway

    from pipeline.runner import cluster

    gateway = Gateway(cfg.address, auth=cluster._gateway_auth(cfg))
    try:
        return sorted(c.name for c in gateway.list_clusters())
    finally:
        gateway.close()
        cluster._forget_loop(gateway)


# --- running a job with textual progress ---------------------------------------------------
def _progress_line(states: dict[str, int], elapsed: float) -> str:
    total = sum(states.values())
    order = ("memory", "processing", "waiting", "no-worker", "queued", "erred")
    parts = [f"{states[s]} {s}" for s in order if states.get(s)]
    parts += [f"{n} {s}" for s, n in sorted(states.items()) if s not in order and n]
    return f"[{elapsed:6.1f} s] {total} tasks on the scheduler: {', '.join(parts) or 'idle'}"


def run_with_progress(client: distributed.Client, job: Callable[..., Any], *args: Any,
                      poll_s: float = 2.0, heartbeat_s: float = 30.0, out: Print | None = None,
                      **kwargs: Any) -> JobResult:
    """Run ``job(*args, **kwargs)`` with ``client`` as its dask scheduler, printing progress.

    The job runs in a background thread while this thread polls the scheduler every
    ``poll_s`` seconds and prints its task counts by state (a line when they change, and at
    least every ``heartbeat_s`` seconds).
    Every dask computation the job makes (``.compute()``, ``to_zarr``) is sent to ``client``.

    Args:
      client: A connected client (e.g. from :func:`pipeline.runner.cluster.connect`).
      job: An importable function (not defined in the notebook).
      *args, **kwargs: Its arguments.
      poll_s: Seconds between polls of the scheduler.
      heartbeat_s: Longest silence between progress lines (s).
      out: Where progress lines go (default: print to stdout).

    Returns:
      A :class:`JobResult` with the job's value and the task stream's summary.

    Raises:
      Whatever the job raises (a TbcubeError keeps its one-line message).
    """
    out = out or print
    box: dict[str, Any] = {}

    def _target() -> None:
        try:
            box["value"] = job(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
            box["error"] = e

    t0 = time.monotonic()
    with dask.config.set(scheduler=client), distributed.get_task_stream(client) as stream:
        thread = threading.Thread(target=_target, name="tbcube-job", daemon=True)
        thread.start()
        last, last_t = None, t0
        while thread.is_alive():
            thread.join(poll_s)
            try:
                states = client.run_on_scheduler(task_states)
            except (OSError, distributed.comm.CommClosedError):
                continue
            now = time.monotonic()
            line = _progress_line(states, now - t0)
            # A line when the counts change, and a heartbeat while one long task runs.
            if line.split("]", 1)[1] != last or now - last_t >= heartbeat_s:
                out(line)
                last, last_t = line.split("]", 1)[1], now
    wall = time.monotonic() - t0
    if "error" in box:
        raise box["error"]
    records = list(stream.data)
    compute = sum(ss["stop"] - ss["start"] for r in records for ss in r.get("startstops", ())
                  if ss.get("action") == "compute")
    prefixes = collections.Counter(distributed.utils.key_split(r["key"]) for r in records)
    result = JobResult(value=box.get("value"), n_tasks=len(records),
                       workers=tuple(sorted({r["worker"] for r in records})),
                       compute_s=round(compute, 3), by_prefix=dict(prefixes.most_common()),
                       wall_s=round(wall, 3))
    out(f"done in {wall:.1f} s: {result.n_tasks} tasks ran on {len(result.workers)} worker(s) "
        f"{', '.join(result.workers)} ({result.compute_s:.1f} s of compute)")
    return result


# --- the job ---------------------------------------------------------------------------------
def smap_retrieval_job(root: str, *, simulate_if_missing: bool = True, start: str | None = None,
                       end: str | None = None, seed: int = 0, storage_options=None,
                       progress: Print | None = print) -> str:
    """Simulate the ``tiny`` archive if ``root`` has no SMAP TB, then run the SMAP retrieval.

    Args:
      root: Archive root (local path or URL).
      simulate_if_missing: Write ``pipeline.simulate.simulate("tiny", root, …)`` when
        ``{root}/tb/smap.zarr`` does not exist (otherwise that is an error).
      start, end: Span of the simulated archive (``YYYY-MM-DD``; default: the preset's).
      seed: Simulator seed.
      storage_options: fsspec options for ``root``.
      progress: Callback for step messages.

    Returns:
      The product id that was published (``sm-smap-{grid}-v1``).
    """
    from pipeline.graphs import retrieval
    from pipeline.io import stores

    tb = stores.tb_url(root, retrieval.SENSOR)
    if not stores.exists(tb, storage_options):
        if not simulate_if_missing:
            raise errors.StoreNotFound(f"{tb}: no SMAP TB store under the archive root")
        from pipeline.simulate import simulate

        if progress:
            progress(f"simulating the tiny archive into {root} ({start or 'preset'}.."
                     f"{end or 'preset'}, seed {seed})")
        simulate("tiny", root, seed=seed, start=start, end=end,
                 storage_options=storage_options, progress=False)
    url, report = retrieval.run(root, storage_options=storage_options, progress=progress)
    return str(report["product_id"])


# --- output summaries ------------------------------------------------------------------------
def summarise(ds: Any) -> dict:
    """A small numeric summary of a soil-moisture product (loads it: tiny products only).

    Returns:
      dict with ``sizes``, ``variables``, the fraction of observations retrieved, soil
      moisture mean/min/max (m3 m-3) per pass, and the QC flag counts.
    """
    sm = ds[dims.SOIL_MOISTURE].load()
    flags = ds[dims.QUALITY_FLAG].load()
    attempted = int(((flags & int(qc.QC.INSUFFICIENT_OBS)) == 0).sum())
    per_pass = {}
    for p in sm[dims.PASS].values:
        v = sm.sel({dims.PASS: p})
        per_pass[str(p)] = {"mean": round(float(v.mean()), 4), "min": round(float(v.min()), 4),
                            "max": round(float(v.max()), 4)}
    return {
        "sizes": {k: int(v) for k, v in ds.sizes.items()},
        "variables": sorted(str(v) for v in ds.data_vars),
        "retrieved_fraction": round(int(sm.notnull().sum()) / max(attempted, 1), 3),
        "soil_moisture_by_pass": per_pass,
        "qc_counts": {m.name: int(((flags & int(m)) != 0).sum()) for m in qc.QC
                      if int(((flags & int(m)) != 0).sum())},
    }


def plot_summary(ds: Any) -> bytes:
    """PNG of the daily spatial-mean soil moisture per pass (display with IPython's Image).

    Drawn on a bare :class:`matplotlib.figure.Figure` (no pyplot, no backend state), so it
    works the same in a notebook, a test or a batch job.
    """
    import io

    from matplotlib.figure import Figure

    sm = ds[dims.SOIL_MOISTURE]
    mean = sm.mean([d for d in sm.dims if d not in (dims.TIME, dims.PASS)]).load()
    fig = Figure(figsize=(8, 3))
    ax = fig.add_subplot()
    for p in mean[dims.PASS].values:
        ax.plot(mean[dims.TIME].values, mean.sel({dims.PASS: p}).values, ".-", ms=3,
                label=f"{p} pass")
    ax.set_ylabel("soil moisture (m3 m-3)")
    ax.set_title(f"{ds.attrs.get('tbcube_product_id', 'product')}: spatial mean")
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


# --- errors ----------------------------------------------------------------------------------
def one_line_errors() -> bool:
    """In IPython, show a TbcubeError as one line ``error: …`` instead of a traceback.

    Other exceptions keep their full traceback (they are bugs).  Returns whether a handler
    was installed (False outside IPython).
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False

    def _handler(self, etype, value, tb, tb_offset=None):
        line = f"error: {value}"
        print(line, file=sys.stderr)
        return [line]

    shell.set_custom_exc((errors.TbcubeError,), _handler)
    return True
