"""``tbcube ft``: freeze/thaw autoencoder training, product run and validation.

\b
tbcube ft train --root /tmp/demo/alaska-n36
tbcube ft run --root /tmp/demo/alaska-n36
tbcube ft validate --root /tmp/demo/alaska-n36
"""

from __future__ import annotations

import os

import click

from pipeline.cli._common import echo_progress, parse_years, print_url, root_option


def _storage(root: str):
    from pipeline.io import stores

    return stores.storage_options_for(root) or None


@click.group("ft")
def ft() -> None:
    """Freeze/thaw (FTC-Encoder autoencoder + SMAP NPR baseline): train | run | validate."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


@ft.command("train")
@root_option
@click.option("--stratify", type=click.Choice(["conditioned", "none"]), default="conditioned",
              show_default=True, help="conditioned: one model with land-cover/water-fraction "
              "input channels; none: the authors' 3-channel model for every cell.")
@click.option("--epochs", type=int, default=40, show_default=True)
@click.option("--patience", type=int, default=6, show_default=True,
              help="Early stopping: epochs without validation-loss improvement.")
@click.option("--balance/--no-balance", default=True, show_default=True,
              help="Oversample rare (land-cover group, frozen/thawed) strata of the training "
              "split (each to >= 5 % of it, at most 10x its own size).")
@click.option("--calibrate", type=click.Choice(["cell", "group", "none"]), default="cell",
              show_default=True, help="P(thaw) decision thresholds chosen on the training years "
              "against the gridded top-soil temperature (273.15 K): per cell and pass (cell), "
              "per land-cover group (group), or the paper's 0.5 (none).")
@click.option("--max-segments", type=int, default=20000, show_default=True,
              help="Cap on training segments (random, seeded).")
@click.option("--max-steps", type=int, default=None, help="Cap on optimiser steps (smoke runs).")
@click.option("--years", default=None, metavar="Y1,Y2",
              help="Training years (default: all years of the archive).")
@click.option("--seed", type=int, default=0, show_default=True)
def train(root: str, stratify: str, epochs: int, patience: int, balance: bool, calibrate: str,
          max_segments: int, max_steps: int | None, years: str | None, seed: int) -> None:
    """Train the autoencoder on peak-winter / peak-summer segments; prints the checkpoint URL."""
    import dataclasses

    from pipeline.graphs import freeze_thaw as g
    from pipeline.training_data import SegmentRules

    opts = g.TrainOptions(
        stratify=stratify, epochs=epochs, patience=patience, max_steps=max_steps, seed=seed,
        balance=balance, calibrate=calibrate,
        rules=dataclasses.replace(SegmentRules(), max_segments=max_segments, seed=seed),
        years=parse_years(years))
    echo_progress(f"training ft autoencoder on {root} ({stratify})")
    ref = g.train(root, opts, storage_options=_storage(root), progress=echo_progress)
    echo_progress(f"sha256 {ref.sha256}")
    print_url(ref.uri)


@ft.command("run")
@root_option
@click.option("--reference", type=click.Choice(["months", "temperature"]), default="months",
              show_default=True, help="NPR reference windows: Jan-Feb / Jul-Aug means, or days "
              "with gridded temperature < 271 K / > 275 K.")
@click.option("--threshold", type=float, default=0.5, show_default=True,
              help="NPR seasonal-threshold T.")
@click.option("--ae-threshold", type=float, default=None,
              help="P(thaw) decision threshold for every cell (default: the model's calibrated "
              "per-land-cover thresholds, or 0.5 for a model without them).")
@click.option("--workers", type=int, default=0, show_default=True,
              help="Local Dask process workers (0: threads in this process).")
def run(root: str, reference: str, threshold: float, ae_threshold: float | None,
        workers: int) -> None:
    """Build and publish ft-smap-{grid}-v1; prints the new version's URL."""
    import contextlib

    from pipeline import freeze_thaw
    from pipeline.graphs import freeze_thaw as g

    opts = g.RunOptions(windows=freeze_thaw.ReferenceWindows(method=reference),
                        threshold=threshold, ae_threshold=ae_threshold)
    ctx, resources = contextlib.nullcontext(), None
    if workers:
        import types

        from pipeline.runner import cluster, placement

        ctx = cluster.connect(types.SimpleNamespace(
            **{**vars(cluster._DEFAULTS), "n_workers": workers}))
    with ctx as client:
        if client is not None:
            from pipeline.runner import placement

            resources = placement.model_resources(client)
        echo_progress(f"freeze/thaw product for {root}")
        url = g.run(root, opts, storage_options=_storage(root), resources=resources,
                    progress=echo_progress)
    print_url(url)


@ft.command("validate")
@root_option
@click.option("--network", default=None,
              help="In-situ network store insitu/{network}.zarr (default: the archive's only "
                   "one; 'simnet' among several).")
@click.option("--years", default=None, metavar="Y1,Y2",
              help="Score only these years (e.g. those not used for training).")
def validate(root: str, network: str | None, years: str | None) -> None:
    """Score AE and NPR against stations and gridded truth; prints the report URL."""
    from pipeline.graphs import freeze_thaw as g

    echo_progress(f"validating freeze/thaw on {root}")
    url = g.validate(root, network=network,
                     years=parse_years(years),
                     storage_options=_storage(root),
                     progress=echo_progress)
    print_url(url)
