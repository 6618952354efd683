"""``tbcube calibrate fit|apply``: cross-calibrate the archive's sensors onto one reference."""

from __future__ import annotations

import json

import click

from pipeline.cli._common import echo_progress, print_url, root_option


@click.group("calibrate")
def calibrate() -> None:
    """Cross-calibrate sensors onto one reference sensor (default GMI) along a transfer chain.

    \b
    tbcube calibrate fit   --root URL   # fit transforms, write {root}/calibration/*.zarr
    tbcube calibrate apply --root URL   # write {root}/calibrated/{sensor}.zarr
    """


def _settings(reference: str, max_dt_h: float):
    from pipeline.graphs.calibration import FitSettings

    return FitSettings(reference=reference, max_dt_h=max_dt_h)


@calibrate.command("fit")
@root_option
@click.option("--reference", default="gmi", show_default=True,
              type=click.Choice(["gmi", "amsr2"]), help="Sensor whose scale all others join.")
@click.option("--max-dt-h", default=1.0, show_default=True, type=float,
              help="Largest local-time difference of collocated observations [h].")
def fit_cmd(root: str, reference: str, max_dt_h: float) -> None:
    """Fit per-channel transforms over each overlap; report bias before/after."""
    from pipeline.graphs import calibration

    report = calibration.fit(root, _settings(reference, max_dt_h), progress=echo_progress)
    for hop in report["hops"]:
        click.echo(f"{hop['source']:>6} → {hop['reference']:<6} {hop['method']}/"
                   f"{hop['granularity']}  overlap {hop['overlap'][0]}…{hop['overlap'][1]}",
                   err=True)
        for ch, d in hop["channels"].items():
            click.echo(f"    {ch:>7}: median bias {d['median_bias_before_K']} K → "
                       f"{d['median_bias_after_K']} K  ({d['pairs']} pairs)", err=True)
    if report.get("recovery_against_truth"):
        click.echo(json.dumps(report["recovery_against_truth"], indent=1), err=True)
    print_url(f"{root.rstrip('/')}/reports/calibration-fit.json")


@calibrate.command("apply")
@root_option
@click.option("--reference", default="gmi", show_default=True,
              type=click.Choice(["gmi", "amsr2"]))
def apply_cmd(root: str, reference: str) -> None:
    """Write calibrated TB stores for every sensor on the chain."""
    from pipeline.graphs import calibration

    report = calibration.apply(root, _settings(reference, 1.0), progress=echo_progress)
    for sensor, url in report["calibrated"].items():
        click.echo(f"{sensor}: {url}", err=True)
    print_url(f"{root.rstrip('/')}/calibrated")
