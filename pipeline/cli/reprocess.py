"""``tbcube reprocess``: scheduled, resumable reprocessing of products (``kind: reprocess``).

\b
tbcube reprocess --config deploy/configs/reprocess-npr-demo.yaml      # everything, under a lock
tbcube reprocess plan --config …                                     # what is new or stale
tbcube reprocess init --config …                                     # template + run state
tbcube reprocess run --config … --part 3/24                          # one part (or --part auto)
tbcube reprocess finalise --config …                                 # check, seal, publish
tbcube reprocess status --config …

Without a subcommand every product of the config is brought up to date: products whose code
version, settings, input fingerprints and model digests match their current version are
skipped; an interrupted run is resumed (parts with markers are kept); the new version is
published atomically; a concurrent run is refused (run lock) and a lock without heartbeat for
``lock_stale_after_s`` is taken over.  ``run --part`` takes no lock, so one pod per part can
run in parallel between ``init`` and ``finalise``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import click

from pipeline.cli._common import echo_progress, print_url

# Lock read-back delay (pipeline.runner.lock): long enough to outlast a rival's check-then-PUT.
LOCK_SETTLE_S = 2.0

config_option = click.option(
    "--config", "config_path", required=True, metavar="FILE",
    type=click.Path(dir_okay=False), help="A 'kind: reprocess' run config (deploy/configs/).",
)
product_option = click.option(
    "--product", "only", multiple=True, metavar="ID",
    help="Only this product of the config (repeatable; default: all).",
)
cluster_option = click.option(
    "--cluster/--no-cluster", default=True, show_default=True,
    help="Connect to the config's cluster; --no-cluster computes in this process (threads).",
)


def _load(config_path: str):
    from pipeline.config import ReprocessJob, load_config

    return load_config(config_path, ReprocessJob)


def _setup(config_path: str, only: tuple[str, ...]) -> tuple[Any, Any, list[Any]]:
    """(config, context, jobs) for the selected products."""
    from pipeline import errors
    from pipeline.io import stores
    from pipeline.runner import jobs

    cfg = _load(config_path)
    unknown = sorted(set(only) - set(cfg.products))
    if unknown:
        raise errors.ConfigError(f"{config_path}: --product {unknown} not in products "
                                 f"{list(cfg.products)}")
    so = stores.storage_options_for(cfg.root, cfg.storage) or None
    ctx = jobs.Context(root=cfg.root, storage_options=so,
                       keep_versions=cfg.retention.keep_versions,
                       stale_after_s=cfg.lock_stale_after_s,
                       owner=f"tbcube-reprocess:{click.format_filename(config_path)}",
                       settle_s=LOCK_SETTLE_S)
    selected = [p for p in cfg.products if not only or p in only]
    return cfg, ctx, [jobs.make_job(p, cfg, so) for p in selected]


@contextlib.contextmanager
def _client(cfg: Any, jctx: Any, use: bool) -> Iterator[Any]:
    """Connect to the config's cluster (when ``use``); yields the job context to run with.

    On a cluster with GPU workers the context's ``resources`` is ``{"GPU": 1}``, so the parts'
    model tasks are placed on them (:func:`pipeline.runner.placement.model_resources`); it is
    ``None`` on CPU clusters and with ``--no-cluster``.
    """
    if not use:
        yield jctx
        return
    from pipeline.runner import cluster, placement

    with cluster.connect(cfg.cluster) as client:
        yield dataclasses.replace(jctx, resources=placement.model_resources(client))


@click.group("reprocess", invoke_without_command=True)
@click.option("--config", "config_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Run everything for this config (when no subcommand is given).")
@product_option
@cluster_option
@click.pass_context
def reprocess(ctx: click.Context, config_path: str | None, only: tuple[str, ...],
              cluster: bool) -> None:
    """Bring the products of a reprocess config up to date (resumable, atomic, locked).

    Up-to-date products are skipped, a killed run resumes, a concurrent run is refused, the new
    version is published atomically; the published URL(s) are printed last.

    \b
    tbcube reprocess --config deploy/configs/reprocess-npr-demo.yaml
    tbcube reprocess plan --config deploy/configs/reprocess-npr-demo.yaml
    tbcube reprocess run --config deploy/configs/reprocess-npr-demo.yaml --part 3/12
    """
    if ctx.invoked_subcommand is not None:
        return
    if config_path is None:
        raise click.UsageError("give --config FILE (or a subcommand: plan, init, run, "
                               "finalise, status)")
    from pipeline.runner import jobs

    cfg, jctx, selected = _setup(config_path, only)
    urls = []
    with _client(cfg, jctx, cluster) as run_ctx:
        for job in selected:
            _, url = jobs.reprocess(job, run_ctx, parts=cfg.parts, progress=echo_progress)
            urls.append(url)
    for url in urls[:-1]:
        click.echo(url)
    print_url(urls[-1])


@reprocess.command("plan")
@config_option
@product_option
def plan(config_path: str, only: tuple[str, ...]) -> None:
    """Say, per product, whether it is up to date, resumable or must be rebuilt (no writes)."""
    from pipeline.runner import jobs

    cfg, jctx, selected = _setup(config_path, only)
    for job in selected:
        p = jobs.plan(job, jctx, parts=cfg.parts)
        click.echo(f"{job.product_id}\t{p.action}\t{p.reason}")


@reprocess.command("init")
@config_option
@product_option
def init(config_path: str, only: tuple[str, ...]) -> None:
    """Write the template of a new version (unless up to date or resumable); prints its URL."""
    from pipeline.runner import jobs
    from pipeline.runner.lock import RunLock

    cfg, jctx, selected = _setup(config_path, only)
    urls = []
    for job in selected:
        with RunLock(jobs.lock_url(jctx, job), owner=jctx.owner,
                     stale_after_s=jctx.stale_after_s, storage_options=jctx.storage_options,
                     settle_s=jctx.settle_s):
            p = jobs.plan(job, jctx, parts=cfg.parts)
            echo_progress(p.reason)
            if p.action == "start":
                urls.append(jobs.init(job, jctx, parts=cfg.parts, provenance=p.provenance)["url"])
            elif p.action == "resume":
                urls.append(p.state["url"])
    for url in urls:
        click.echo(url)


@reprocess.command("run")
@config_option
@product_option
@click.option("--part", default="auto", show_default=True, metavar="i/N|auto",
              help="Part to build (1-based); auto = the lowest part without a marker.")
@cluster_option
def run(config_path: str, only: tuple[str, ...], part: str, cluster: bool) -> None:
    """Build one part of each selected product's initialised run (idempotent)."""
    from pipeline.runner import jobs

    cfg, jctx, selected = _setup(config_path, only)
    with _client(cfg, jctx, cluster) as run_ctx:
        for job in selected:
            i = jobs.run_part(job, run_ctx, part)
            echo_progress(f"{job.product_id}: " + (f"part {i} written"
                                                   if i else "no part left"))


@reprocess.command("finalise")
@config_option
@product_option
def finalise(config_path: str, only: tuple[str, ...]) -> None:
    """Check all part markers, then publish each product's version; prints the URLs."""
    from pipeline.runner import jobs
    from pipeline.runner.lock import RunLock

    cfg, jctx, selected = _setup(config_path, only)
    urls = []
    for job in selected:
        with RunLock(jobs.lock_url(jctx, job), owner=jctx.owner,
                     stale_after_s=jctx.stale_after_s, storage_options=jctx.storage_options,
                     settle_s=jctx.settle_s) as lock:
            urls.append(jobs.finalise(job, jctx, lock=lock))
    for url in urls[:-1]:
        click.echo(url)
    if urls:
        print_url(urls[-1])


@reprocess.command("status")
@config_option
@product_option
def status(config_path: str, only: tuple[str, ...]) -> None:
    """Current version and unfinished-run progress per product."""
    from pipeline.runner import jobs

    cfg, jctx, selected = _setup(config_path, only)
    for job in selected:
        s = jobs.status(job, jctx)
        run = s["run"]
        progress = (f"run {run['version']}: {len(run['done'])}/{run['parts']} parts"
                    if run else "no run in progress")
        click.echo(f"{job.product_id}\tcurrent={s['current'] or '-'}\t{progress}")
