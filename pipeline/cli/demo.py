"""``tbcube demo``: the whole chain on the embedded simulator archive, ending with a report.

\b
tbcube demo --root demo-output                      # what `make demo` runs
tbcube demo --root /tmp/t --preset tiny             # one small archive (~2–3 min)
tbcube demo --root demo-output --skip carbon --force

Progress (stage, elapsed time) goes to stderr; the report path and then every product URL are
printed LAST on stdout.  Exit code 0 only when every stage ran (or was cached); a failed stage
is recorded in the report (red) and the other stages go on, then the exit code is 1.
"""

from __future__ import annotations

import contextlib
import os

import click


@click.command("demo")
@click.option("--root", default="demo-output", show_default=True, metavar="URL",
              help="Output root (local path or fsspec URL).")
@click.option("--preset", type=click.Choice(["demo", "tiny"]), default="demo",
              show_default=True, help="demo: two archives (Alaska N36, M25 transect); "
              "tiny: one small archive.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--skip", "skip", multiple=True, metavar="STAGE",
              help="Stage not to run (repeatable): simulate, calibrate, ft, sm-retrieval, "
              "sm-lstm, carbon.")
@click.option("--force", is_flag=True, help="Re-run stages whose report already exists.")
@click.option("--cluster/--no-cluster", default=True, show_default=True,
              help="Run the graphs on a local Dask cluster (dashboard link on stderr).")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Local cluster process workers.")
@click.option("--ft-epochs", type=int, default=None, help="Autoencoder epochs (demo: 6).")
@click.option("--lstm-epochs", type=int, default=None, help="LSTM epochs (demo: 12).")
@click.option("--bplut", default=None, metavar="PATH", help="L4C BPLUT CSV for the carbon stage.")
@click.pass_context
def demo(ctx: click.Context, root: str, preset: str, seed: int, skip: tuple[str, ...],
         force: bool, cluster: bool, workers: int, ft_epochs: int | None,
         lstm_epochs: int | None, bplut: str | None) -> None:
    """Run simulate → calibrate → freeze/thaw → SMAP retrieval → LSTM + fusion → carbon → report."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from pipeline.graphs import demo as graph

    kw = {}
    if ft_epochs is not None:
        kw["ft_epochs"] = ft_epochs
    if lstm_epochs is not None:
        kw["lstm_epochs"] = lstm_epochs
    settings = graph.DemoSettings(preset=preset, seed=seed, skip=tuple(skip), force=force,
                                  bplut=bplut, cluster=cluster, n_workers=workers, **kw)
    ctx_mgr: contextlib.AbstractContextManager = contextlib.nullcontext()
    if cluster:
        from pipeline.config import ClusterSection
        from pipeline.runner import cluster as cl

        ctx_mgr = cl.connect(ClusterSection(kind="local", n_workers=workers))
    with ctx_mgr as client:
        summary = graph.run(root, settings, client=client, progress=lambda m: click.echo(
            m, err=True))
    for s in summary["stages"]:
        click.echo(f"{s['name']:>13} {s['status']:>8} {float(s['seconds']):7.1f} s"
                   + (f"  {s['error']}" if s.get("error") else ""), err=True)
    checks = summary.get("checks") or {}
    click.echo(f"targets: {checks.get('pass', 0)} pass, {checks.get('fail', 0)} fail, "
               f"{checks.get('missing', 0)} missing", err=True)
    # Report path, then every product URL: LAST on stdout.
    if summary.get("report"):
        click.echo(summary["report"])
    for url in graph.product_urls(summary):
        click.echo(url)
    if summary["failed"]:
        ctx.exit(1)
