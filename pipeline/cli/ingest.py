"""``tbcube ingest FILES… --root URL``: real granules → ``{root}/tb/{sensor}.zarr``."""

from __future__ import annotations

import click

from pipeline.cli._common import echo_progress, print_url, root_option


def _grid(ctx, param, value):
    from pipeline import grid

    try:
        return grid.get(value).name
    except KeyError as e:
        raise click.BadParameter(str(e).strip("'\"")) from e


def _window(ctx, param, value):
    if value is None:
        return None
    from pipeline import grid

    try:
        return grid.Window.parse(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e


@click.command("ingest")
@click.argument("files", nargs=-1, required=True, metavar="FILES…")
@root_option
@click.option("--grid", "grid_name", default="M36", show_default=True, callback=_grid,
              help="EASE-Grid 2.0 grid of the archive: M36 M25 M09 N36 N25 N09.")
@click.option("--window", callback=_window, metavar="R0,R1,C0,C1",
              help="Window of the grid [row0, row1) × [col0, col1) (default: whole grid).")
@click.option("--weighting", default="none", show_default=True,
              type=click.Choice(["none", "inverse_distance"]),
              help="Drop-in-bucket mean, optionally weighted by inverse distance to the cell "
              "centre.")
@click.option("--scheduler", default=None,
              type=click.Choice(["threads", "processes", "synchronous"]),
              help="Dask scheduler for reading+gridding (default: active client or threads).")
def ingest(files, root, grid_name, window, weighting, scheduler) -> None:
    """Read, grid and merge granules into the TB archive (idempotent per granule sha256).

    Products are recognised from their content: SMAP L2_SM_P half-orbits and L3_SM_P daily
    files, GPM 1C / 1C-R (TMI, GMI, AMSR2, AMSR-E), CSU SSM/I FCDR swaths.  A bad file is
    reported on one line and skipped; the others are ingested; the exit code is non-zero if
    any file failed.  A JSON report is written to {root}/reports/ingest-<UTC time>.json.

    \b
    tbcube ingest SMAP_L3_SM_P_20150401_R13080_001.h5 --root ./archive --grid M36
    tbcube ingest 1C.TRMM.TMI.*.HDF5 --root s3://bucket/arch --grid M25 --window 111,473,0,1388
    """
    from pipeline import errors
    from pipeline.graphs import ingest as graph

    echo_progress(f"ingesting {len(files)} file(s) onto {grid_name}")
    report = graph.ingest_files(
        list(files), root, target=grid_name, window=window, weighting=weighting,
        scheduler=scheduler,
    )
    for f in report["files"]:
        c = f["counts"]
        line = (f"{f['status']:>22}  {f['name']}  [{f.get('sensor') or '-'}] used {c['used']}"
                f" / {c['samples']} samples (fill {c['fill']}, bad quality {c['bad_quality']}, "
                f"out of range {c['out_of_range']}, outside grid {c['outside_grid']})")
        click.echo(line, err=True)
        if f["error"]:
            click.echo(f"{'':>24}{f['error']}", err=True)
    click.echo("summary: " + ", ".join(f"{n} {s}" for s, n in report["status_counts"].items())
               + f"; stores: {', '.join(report['stores'].values()) or 'none written'}", err=True)
    click.echo(f"report: {report.get('report_url')}", err=True)
    if report["n_failed"]:
        first = next(f["error"] for f in report["files"] if f["status"] == "failed")
        raise errors.InputDataError(
            f"{report['n_failed']} of {report['n_files']} file(s) failed (the others were "
            f"ingested); first: {first}"
        )
    print_url(report.get("report_url") or root)
