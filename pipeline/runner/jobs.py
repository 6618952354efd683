"""Phased, resumable jobs: ``init`` → ``run --part i/N`` → ``finalise``, published atomically.

A *job* builds one product (see :class:`Job`).  The runner is generic
(docs/architecture.md §4.5, §4.10):

* :func:`plan` decides what to do by comparing the *staleness key* of the job (code version,
  config hash of :meth:`Job.settings`, fingerprints of :meth:`Job.inputs`, model digests) with
  the key recorded in the current version's completion marker and in an unfinished run's state:
  ``up-to-date`` (nothing to do), ``resume`` (an unfinished run with the same key) or
  ``start``.
* :func:`init` writes the new version's template only (:func:`pipeline.io.publish.begin_version`)
  and the run state ``{root}/products/{id}/run.json`` (version, part count, key, provenance).
* :func:`run_part` builds part ``i`` of ``N`` (a chunk-aligned region along
  ``Job.partition_dim``), writes it with :func:`pipeline.io.stores.write_region` (idempotent: a
  rerun overwrites the same chunks with the same bytes) and then drops a part marker
  ``{root}/products/{id}/{version}.parts/{i}-of-{N}.json``.  ``part="auto"`` is the lowest part
  without a marker.
* :func:`finalise` checks every marker, verifies the lock, seals and publishes the version
  (:func:`pipeline.io.publish.complete_version`: consolidated metadata, provenance attrs, schema
  check, completion marker, pointer + STAC switch, retention) and removes the run state.

:func:`reprocess` does all of it under a :class:`pipeline.runner.lock.RunLock` and resumes a run
that was killed (parts with markers are not rebuilt).  Readers never see the version before the
switch.  Parallel ``run --part`` invocations (one pod per part) take no lock: parts write
disjoint chunks.

Plugging in a science graph: implement :class:`Job` (or use :class:`MapJob` for a stage that
is local along the partition dim) and add a factory to :data:`JOB_KINDS`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import xarray as xr

from pipeline import dims, errors
from pipeline.io import provenance as prov
from pipeline.io import publish, stores
from pipeline.runner.lock import RunLock

__all__ = [
    "JOB_KINDS",
    "Context",
    "Job",
    "MapJob",
    "Plan",
    "finalise",
    "effective_parts",
    "init",
    "make_job",
    "max_parts",
    "parse_part",
    "partition_regions",
    "plan",
    "reprocess",
    "run_part",
    "status",
]


@runtime_checkable
class Job(Protocol):
    """What the runner needs from a product job.

    Attributes:
      product_id: ``{quantity}-{source}-{grid}-v{N}``.
      spec: A :mod:`pipeline.schema` spec for the product, or ``None``.
      partition_dim: Dim along which parts are cut (``time`` for pancake jobs, ``y`` for
        pencil jobs).
      chunks: Zarr chunks of the product, ``{dim: size}``; parts align with
        ``chunks[partition_dim]``.
    """

    product_id: str
    spec: Any
    partition_dim: str
    chunks: Mapping[str, int]

    def template(self) -> xr.Dataset:
        """The full product, lazy (dask-backed): structure, coords and attrs; never computed."""

    def partition(self, n: int) -> list[dict[str, slice]]:
        """``n`` disjoint chunk-aligned regions covering the product (see partition_regions)."""

    def build_part(self, region: Mapping[str, slice], *,
                   resources: Mapping[str, float] | None = None) -> xr.Dataset:
        """The product's data in ``region`` (index slices of the template).

        ``resources`` (:attr:`Context.resources`) is the Dask resource annotation for the
        part's model tasks.  :func:`run_part` passes it only when the context has one (a GPU
        cluster), so a job without model tasks may leave the keyword out.
        """

    def inputs(self) -> Mapping[str, str]:
        """``{name: url}`` of input stores (fingerprinted for staleness)."""

    def models(self) -> Mapping[str, str]:
        """``{model name: sha256}`` of the checkpoints used."""

    def settings(self) -> Mapping[str, Any]:
        """The configuration that determines the product's values (hashed for staleness)."""


@dataclasses.dataclass(frozen=True)
class Context:
    """Where and how a job runs.

    Attributes:
      root: Archive root URL (products go to ``{root}/products/{id}/``).
      storage_options: fsspec options for ``root`` (``None``: from the environment).
      keep_versions: Retention: complete versions kept per product (``None`` keeps all).
      stale_after_s: A run lock without a heartbeat for this long is taken over.
      owner: Lock owner name (job name).
      settle_s: Lock read-back delay (see :mod:`pipeline.runner.lock`).
      heartbeat_s: Lock heartbeat period.
      resources: Dask resource annotation for model tasks (``{"GPU": 1}`` when the connected
        cluster has GPU workers, else ``None``: set from the cluster with
        :func:`pipeline.runner.placement.model_resources`).  It decides where tasks run, never
        what they compute, so it is not part of the staleness key.
    """

    root: str
    storage_options: Mapping[str, Any] | None = None
    keep_versions: int | None = 3
    stale_after_s: float = 3600.0
    owner: str = "tbcube"
    settle_s: float = 2.0
    heartbeat_s: float | None = 60.0
    resources: Mapping[str, float] | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
    """Outcome of :func:`plan`."""

    action: Literal["up-to-date", "resume", "start"]
    reason: str
    provenance: dict[str, Any]
    state: dict[str, Any] | None = None


# --- partitioning --------------------------------------------------------------------------
def partition_regions(length: int, chunk: int, n: int, dim: str) -> list[dict[str, slice]]:
    """Split ``[0, length)`` into ``n`` contiguous regions on multiples of ``chunk``.

    Args:
      length: Size of ``dim``.
      chunk: Zarr chunk size along ``dim``.
      n: Number of parts (at most the number of chunks).
      dim: Dim name.

    Returns:
      ``[{dim: slice(start, stop)}, …]`` in order; sizes differ by at most one chunk.
    """
    n_chunks = math.ceil(length / chunk)
    if not 1 <= n <= n_chunks:
        raise errors.ConfigError(
            f"parts: {n} parts requested but {dim!r} has {n_chunks} chunks of {chunk} "
            f"(length {length}); use 1..{n_chunks}"
        )
    out = []
    for group in np.array_split(np.arange(n_chunks), n):
        out.append({dim: slice(int(group[0]) * chunk, min((int(group[-1]) + 1) * chunk, length))})
    return out


def max_parts(job: Job) -> int:
    """How many parts ``job`` can be cut into: its chunk count along ``partition_dim``."""
    length = job.template().sizes[job.partition_dim]
    return math.ceil(length / job.chunks[job.partition_dim])


def effective_parts(job: Job, requested: int) -> int:
    """``requested`` capped at :func:`max_parts` (a config's ``parts`` is an upper bound)."""
    return max(1, min(int(requested), max_parts(job)))


def parse_part(part: str, n: int | None = None) -> tuple[int | None, int | None]:
    """``"i/N"`` → ``(i, N)`` (1-based); ``"auto"`` → ``(None, n)``."""
    if part == "auto":
        return None, n
    try:
        i_text, n_text = part.split("/")
        i, total = int(i_text), int(n_text)
    except ValueError:
        raise errors.ConfigError(f"--part {part!r}: expected 'i/N' (1-based) or 'auto'") from None
    if not 1 <= i <= total:
        raise errors.ConfigError(f"--part {part!r}: i must be in 1..{total}")
    if n is not None and total != n:
        raise errors.ConfigError(f"--part {part!r}: this run was initialised with {n} parts")
    return i, total


# --- run state -----------------------------------------------------------------------------
def _state_url(ctx: Context, job: Job) -> str:
    return stores.join(publish.product_url(ctx.root, job.product_id), "run.json")


def _parts_url(ctx: Context, job: Job, version: str) -> str:
    return stores.join(publish.product_url(ctx.root, job.product_id), f"{version}.parts")


def _part_name(i: int, n: int) -> str:
    return f"{i:05d}-of-{n:05d}.json"


def _read_state(ctx: Context, job: Job) -> dict[str, Any] | None:
    url = _state_url(ctx, job)
    if not stores.exists(url, ctx.storage_options):
        return None
    return stores.read_json(url, ctx.storage_options)


def _require_state(ctx: Context, job: Job) -> dict[str, Any]:
    state = _read_state(ctx, job)
    if state is None:
        raise errors.StoreNotFound(
            f"{_state_url(ctx, job)}: no run in progress for {job.product_id} (run init first)"
        )
    return state


def done_parts(ctx: Context, job: Job, state: Mapping[str, Any]) -> list[int]:
    """Parts (1-based) of the run ``state`` that have completion markers."""
    n = int(state["parts"])
    names = set(publish.list_names(_parts_url(ctx, job, state["version"]), ctx.storage_options))
    return [i for i in range(1, n + 1) if _part_name(i, n) in names]


# --- phases --------------------------------------------------------------------------------
def _describe_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    reasons = []
    if old.get("code_version") != new.get("code_version"):
        reasons.append(f"code version {old.get('code_version')} → {new.get('code_version')}")
    if old.get("config_hash") != new.get("config_hash"):
        reasons.append("settings changed")
    changed = sorted(k for k in set(old.get("inputs", {})) | set(new.get("inputs", {}))
                     if old.get("inputs", {}).get(k) != new.get("inputs", {}).get(k))
    if changed:
        reasons.append(f"inputs changed: {', '.join(changed)}")
    if old.get("models") != new.get("models"):
        reasons.append("model checkpoints changed")
    return "; ".join(reasons) or "provenance differs"


def plan(job: Job, ctx: Context, *, parts: int) -> Plan:
    """Decide whether ``job`` is up to date, has a run to resume, or must start afresh.

    ``parts`` is capped at the job's chunk count (:func:`effective_parts`).
    """
    parts = effective_parts(job, parts)
    record = prov.collect(config=dict(job.settings()), inputs=dict(job.inputs()),
                          models=dict(job.models()), storage_options=ctx.storage_options)
    key = prov.staleness_key(record)
    state = _read_state(ctx, job)
    try:
        current = publish.current_version(ctx.root, job.product_id, ctx.storage_options)
    except errors.StoreNotFound:
        current = None
    published = publish.marker(ctx.root, job.product_id, current,
                               ctx.storage_options) if current else None
    if published is not None:
        old = prov.staleness_key(published.get("provenance") or {})
        if old == key:
            return Plan("up-to-date", f"{job.product_id}: current version {current} is up to "
                        "date", record)
    if state is not None and state.get("key") == key and int(state["parts"]) == parts:
        done = len(done_parts(ctx, job, state))
        return Plan("resume", f"{job.product_id}: resuming version {state['version']} "
                    f"({done}/{parts} parts done)", record, state)
    if published is None:
        why = "no published version"
    else:
        why = _describe_change(prov.staleness_key(published.get("provenance") or {}), key)
    return Plan("start", f"{job.product_id}: {why}", record)


def init(job: Job, ctx: Context, *, parts: int, provenance: Mapping[str, Any] | None = None
         ) -> dict[str, Any]:
    """Write the template of a new version and the run state; abandon an unfinished run.

    Returns:
      The run state ``{"version", "url", "parts", "key", "provenance", "started_at"}``
      (``parts`` capped at the job's chunk count).
    """
    parts = effective_parts(job, parts)
    record = dict(provenance or prov.collect(
        config=dict(job.settings()), inputs=dict(job.inputs()), models=dict(job.models()),
        storage_options=ctx.storage_options))
    template = job.template()
    job.partition(parts)  # validate the part count before writing anything
    old = _read_state(ctx, job)
    if old is not None:  # an unfinished run with another key or part count: discard it
        publish.remove(_parts_url(ctx, job, old["version"]), ctx.storage_options)
        publish.remove(publish.version_url(ctx.root, job.product_id, old["version"]),
                       ctx.storage_options)
    version, url = publish.begin_version(template, ctx.root, job.product_id, chunks=job.chunks,
                                         storage_options=ctx.storage_options,
                                         provenance=record, spec=job.spec)
    state = {"product_id": job.product_id, "version": version, "url": url, "parts": parts,
             "key": prov.staleness_key(record), "provenance": record,
             "started_at": dt.datetime.now(dt.UTC).isoformat()}
    stores.write_json(_state_url(ctx, job), state, ctx.storage_options)
    return state


def run_part(job: Job, ctx: Context, part: str = "auto") -> int | None:
    """Build and write one part; returns its number (``None`` when ``auto`` finds none left).

    The part's model tasks carry ``ctx.resources`` as their Dask resource annotation (when set).
    """
    state = _require_state(ctx, job)
    n = int(state["parts"])
    i, _ = parse_part(part, n)
    if i is None:
        missing = sorted(set(range(1, n + 1)) - set(done_parts(ctx, job, state)))
        if not missing:
            return None
        i = missing[0]
    region = job.partition(n)[i - 1]
    data = (job.build_part(region, resources=dict(ctx.resources)) if ctx.resources
            else job.build_part(region))
    stores.write_region(data, state["url"], region, storage_options=ctx.storage_options)
    stores.write_json(stores.join(_parts_url(ctx, job, state["version"]), _part_name(i, n)),
                      {"part": i, "of": n, "finished_at": dt.datetime.now(dt.UTC).isoformat(),
                       "region": {d: [s.start, s.stop] for d, s in region.items()}},
                      ctx.storage_options)
    return i


def finalise(job: Job, ctx: Context, *, lock: RunLock | None = None) -> str:
    """Check all part markers, then seal and publish the version; returns its URL."""
    state = _require_state(ctx, job)
    n = int(state["parts"])
    missing = sorted(set(range(1, n + 1)) - set(done_parts(ctx, job, state)))
    if missing:
        raise errors.StoreError(
            f"{state['url']}: cannot finalise {job.product_id}: parts {missing} of {n} have no "
            "completion marker (run them, e.g. --part auto)"
        )
    if lock is not None:
        lock.verify()
    record = {**state["provenance"], "finished_at": dt.datetime.now(dt.UTC).isoformat()}
    url = publish.complete_version(ctx.root, job.product_id, state["version"], spec=job.spec,
                                   storage_options=ctx.storage_options, provenance=record,
                                   keep=ctx.keep_versions)
    publish.remove(_state_url(ctx, job), ctx.storage_options)
    publish.remove(_parts_url(ctx, job, state["version"]), ctx.storage_options)
    return url


def status(job: Job, ctx: Context) -> dict[str, Any]:
    """Current version and the progress of an unfinished run (for ``tbcube reprocess status``)."""
    try:
        current = publish.current_version(ctx.root, job.product_id, ctx.storage_options)
    except errors.StoreNotFound:
        current = None
    state = _read_state(ctx, job)
    out: dict[str, Any] = {"product_id": job.product_id, "current": current, "run": None}
    if state is not None:
        out["run"] = {"version": state["version"], "parts": state["parts"],
                      "done": done_parts(ctx, job, state)}
    return out


def lock_url(ctx: Context, job: Job) -> str:
    """``{root}/products/{id}/lock.json``."""
    return stores.join(publish.product_url(ctx.root, job.product_id), "lock.json")


def reprocess(job: Job, ctx: Context, *, parts: int,
              progress: Callable[[str], None] | None = None) -> tuple[Plan, str | None]:
    """Bring ``job``'s product up to date: plan, (init), run missing parts, finalise.

    Holds the product's run lock throughout; a concurrent run gets
    :class:`pipeline.runner.lock.LockHeld`.  Killed runs resume where they stopped.

    Returns:
      ``(plan, url)``: ``url`` is the published version (the current one when up to date).
    """
    say = progress or (lambda msg: None)
    with RunLock(lock_url(ctx, job), owner=ctx.owner, stale_after_s=ctx.stale_after_s,
                 storage_options=ctx.storage_options, settle_s=ctx.settle_s,
                 heartbeat_s=ctx.heartbeat_s) as lock:
        if lock.took_over:
            say(f"{job.product_id}: took over a stale lock of {lock.took_over.get('owner')!r}")
        parts = effective_parts(job, parts)
        p = plan(job, ctx, parts=parts)
        say(p.reason)
        if p.action == "up-to-date":
            return p, publish.current_url(ctx.root, job.product_id, ctx.storage_options)
        state = p.state if p.action == "resume" else init(job, ctx, parts=parts,
                                                          provenance=p.provenance)
        while (i := run_part(job, ctx, "auto")) is not None:
            lock.verify()
            say(f"{job.product_id}: part {i}/{parts} written")
        url = finalise(job, ctx, lock=lock)
        say(f"{job.product_id}: published {state['version'] if state else ''}")
        return p, url


# --- a generic job: a stage that is local along the partition dim ---------------------------
def _resolve(name: str) -> Callable[..., Any]:
    module, _, attr = name.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is not None and module.startswith(e.name):
            raise errors.ConfigError(f"{name!r}: no module {module!r}") from None
        raise  # a genuine missing dependency inside the module: keep the traceback
    if not hasattr(mod, attr):
        raise errors.ConfigError(f"{name!r}: module {module!r} has no {attr!r}")
    return getattr(mod, attr)


@dataclasses.dataclass(frozen=True)
class MapJob:
    """Apply a pure stage ``Dataset -> Dataset`` to an input store, part by part.

    The stage must be local along ``partition_dim`` (output slice ``k`` depends only on input
    slice ``k``), e.g. a per-day computation on a pancake store.

    Attributes:
      product_id: Output product id.
      input_url: Input store URL.
      stage: ``"module:function"`` of the stage (importable, so workers pickle it by reference).
      chunks: Output Zarr chunks.
      partition_dim: Partition dim (default ``time``).
      time_range: Optional ``(start, end)`` ISO dates selecting the input's time range.
      stage_kwargs: Keyword arguments for the stage (plain values).
      spec: Optional schema spec of the product.
      storage_options: fsspec options for the input.
    """

    product_id: str
    input_url: str
    stage: str
    chunks: Mapping[str, int]
    partition_dim: str = dims.TIME
    time_range: tuple[str, str] | None = None
    stage_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    spec: Any = None
    storage_options: Mapping[str, Any] | None = None

    def _input(self) -> xr.Dataset:
        ds = stores.open_dataset(self.input_url, storage_options=self.storage_options)
        if self.time_range is not None:
            ds = ds.sel({dims.TIME: slice(*self.time_range)})
        if ds.sizes.get(self.partition_dim, 0) == 0:
            raise errors.InputDataError(
                f"{self.input_url}: no data along {self.partition_dim!r} in {self.time_range}"
            )
        return ds.chunk({self.partition_dim: self.chunks[self.partition_dim]})

    def template(self) -> xr.Dataset:
        return _resolve(self.stage)(self._input(), **dict(self.stage_kwargs))

    def partition(self, n: int) -> list[dict[str, slice]]:
        length = self.template().sizes[self.partition_dim]
        return partition_regions(length, self.chunks[self.partition_dim], n, self.partition_dim)

    def build_part(self, region: Mapping[str, slice], *,
                   resources: Mapping[str, float] | None = None) -> xr.Dataset:
        # a MapJob stage has no model tasks: ``resources`` places nothing
        return _resolve(self.stage)(self._input().isel(dict(region)), **dict(self.stage_kwargs))

    def inputs(self) -> Mapping[str, str]:
        return {"input": self.input_url}

    def models(self) -> Mapping[str, str]:
        return {}

    def settings(self) -> Mapping[str, Any]:
        return {"stage": self.stage, "stage_kwargs": dict(self.stage_kwargs),
                "chunks": dict(self.chunks), "partition_dim": self.partition_dim,
                "time_range": list(self.time_range) if self.time_range else None}


# --- registry of job kinds (product id prefix → factory) ----------------------------------
def npr_product(tb: xr.Dataset, frequency_ghz: float = 1.41) -> xr.Dataset:
    """NPR product (time, pass, y, x) [1] from a TB store: (TBv − TBh)/(TBv + TBh).

    Uses the channel pair nearest ``frequency_ghz``; keeps ``crs`` and the grid attrs.
    """
    from pipeline import freeze_thaw

    npr = freeze_thaw.compute_npr(tb, frequency_ghz).assign_attrs(grid_mapping=dims.CRS)
    out = npr.to_dataset()
    if dims.CRS in tb:
        out[dims.CRS] = tb[dims.CRS]
    keep = ("grid", "grid_window", "sensor", "platform")
    return out.assign_attrs({k: tb.attrs[k] for k in keep if k in tb.attrs},
                            title=f"normalized polarization ratio, {tb.attrs.get('sensor', '')}",
                            Conventions="CF-1.10")


def npr_job(product_id: str, config: Any, storage_options: Mapping[str, Any] | None) -> Job:
    """Job kind ``npr-{sensor}``: :func:`npr_product` of ``tb/{sensor}.zarr`` (demo job)."""
    sensor = product_id.split("-")[1]
    time_range = None
    if getattr(config, "time", None) is not None:
        time_range = (str(config.time.start), str(config.time.end))
    return MapJob(product_id=product_id, input_url=stores.tb_url(config.root, sensor),
                  stage="pipeline.runner.jobs:npr_product", chunks={dims.TIME: 8},
                  time_range=time_range, storage_options=storage_options)


# "{quantity}-{source}" prefix of a product id → "module:factory" (imported lazily), where
# factory(product_id, config, storage_options) -> Job and config is a ReprocessJob.  Science
# graphs add their line here.
JOB_KINDS: dict[str, str] = {
    **{f"npr-{sensor}": "pipeline.runner.jobs:npr_job" for sensor in dims.ARCHIVE_SENSORS},
    "ft-smap": "pipeline.runner.kinds:freeze_thaw_job",
    "sm-smap": "pipeline.runner.kinds:smap_retrieval_job",
    **{f"sm-{sensor}": "pipeline.runner.kinds_sm:harmonised_job"
       for sensor in ("tmi", "amsre", "amsr2", "gmi")},
    "sm-fused": "pipeline.runner.kinds_sm:fused_job",
}


def make_job(product_id: str, config: Any,
             storage_options: Mapping[str, Any] | None = None) -> Job:
    """The job that builds ``product_id`` (looked up in :data:`JOB_KINDS`)."""
    prefix = "-".join(product_id.split("-")[:2])
    if prefix not in JOB_KINDS:
        raise errors.ConfigError(
            f"products: no job kind builds {product_id!r} yet (known prefixes: "
            f"{', '.join(sorted(JOB_KINDS))})"
        )
    return _resolve(JOB_KINDS[prefix])(product_id, config, storage_options)
