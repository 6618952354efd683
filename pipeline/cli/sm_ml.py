"""``tbcube sm train|harmonise|fuse|validate``: the MCCA-ML chain after the SMAP retrieval.

These commands are attached to the ``sm`` group (:mod:`pipeline.cli.sm`).
"""

from __future__ import annotations

import click

from pipeline.cli._common import echo_progress, print_url, root_option


def _settings(test_year: int | None, epochs: int | None):
    import dataclasses

    from pipeline.graphs.harmonise import TrainSettings

    s = TrainSettings()
    if test_year is not None:
        s = dataclasses.replace(s, test_year=test_year)
    if epochs is not None:
        s = dataclasses.replace(s, max_epochs=epochs)
    return s


@click.command("train")
@root_option
@click.option("--test-year", type=int, default=None,
              help="Year held out of training (default 2018).")
@click.option("--epochs", type=int, default=None, help="Maximum epochs (early stopping).")
def train(root: str, test_year: int | None, epochs: int | None) -> None:
    """Train the grid-aware LSTM (calibrated TB → SMAP soil moisture) on the overlap years."""
    from pipeline.graphs import harmonise

    rep = harmonise.train(root, _settings(test_year, epochs), progress=echo_progress)
    click.echo(f"model {rep['model']['uri']} (sha256 {rep['model']['sha256'][:12]}…), "
               f"best epoch {rep['best_epoch']} of {rep['epochs']}", err=True)
    print_url(f"{root.rstrip('/')}/reports/sm-train.json")


@click.command("harmonise")
@root_option
def harmonise_cmd(root: str) -> None:
    """Apply the LSTM to each sensor's whole record (TMI, AMSR-E, AMSR2, GMI)."""
    from pipeline.graphs import harmonise

    rep = harmonise.harmonise_all(root, progress=echo_progress)
    for s, url in rep["products"].items():
        click.echo(f"{s}: {url}", err=True)
    print_url(f"{root.rstrip('/')}/reports/sm-harmonise.json")


@click.command("fuse")
@root_option
def fuse_cmd(root: str) -> None:
    """Fuse the harmonised records (+ SMAP) into one daily product."""
    from pipeline.graphs import harmonise

    rep = harmonise.fuse_all(root, progress=echo_progress)
    cov = rep["land_coverage"]
    click.echo(f"land coverage: mean {cov['mean']}, min on days with ≥2 sensors "
               f"{cov['min_when_2plus_sensors']}", err=True)
    print_url(rep["product"])


@click.command("validate")
@root_option
def validate_cmd(root: str) -> None:
    """Score every soil-moisture product against truth, held-out SMAP and stations."""
    from pipeline.graphs import harmonise

    rep = harmonise.validate(root, progress=echo_progress)
    sparse = rep.get("against_truth_unseen_vod_le_0.5") or {}
    for s, d in rep["against_truth_unseen"].items():
        le = (sparse.get(s) or {}).get("ubrmsd_per_pixel_median")
        click.echo(f"{s:>6}: ubRMSD vs truth {d['ubrmsd']} m3/m3 (per-pixel median "
                   f"{d.get('ubrmsd_per_pixel_median')}, where VOD ≤ 0.5 {le}), R {d['r']}, "
                   f"bias {d['bias']} (n={d['n']})", err=True)
    print_url(f"{root.rstrip('/')}/reports/sm-validation.json")


@click.command("validate-real")
@click.option("--real-data", default=None, metavar="DIR",
              help="Real-data directory (default $TBCUBE_REAL_DATA or ../shared/data/real).")
@click.option("--out", default="reports/validation-real", show_default=True, metavar="DIR",
              help="Output directory for the tables (JSON, CSV, Zarr) and figures.")
@click.option("--product", default="smap_l3", show_default=True,
              help="Satellite product of the QA4SM bundle to validate.")
def validate_real_cmd(real_data: str | None, out: str, product: str) -> None:
    """Validate a real satellite product against the real ISMN stations (QA4SM Hawaii case)."""
    import os
    from pathlib import Path

    from pipeline.graphs import validation

    real = real_data or os.environ.get("TBCUBE_REAL_DATA") or str(
        Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real")
    rep = validation.validate_real(real, out, product=product)
    click.echo(validation.format_table(rep), err=True)
    print_url(str(Path(out) / "validation-real.json"))


COMMANDS = (train, harmonise_cmd, fuse_cmd, validate_cmd, validate_real_cmd)
