"""``tbcube sm …``: soil moisture (stage 1: the SMAP physical retrieval).

Later stages (train / harmonise / fuse / validate) add their subcommands to this group.
"""

from __future__ import annotations

import json

import click

from pipeline.cli._common import echo_progress, print_url, root_option


@click.group("sm")
def sm() -> None:
    """Soil moisture: retrieve (SMAP multi-channel retrieval) | train | harmonise | fuse | validate.

    \b
    tbcube sm retrieve --root URL   # → {root}/products/sm-smap-{grid}-v1/<version>.zarr
    """


@sm.command("retrieve")
@root_option
@click.option("--dielectric", default="mironov", show_default=True,
              type=click.Choice(["mironov", "dobson"]),
              help="Dielectric model the retrieval assumes.")
@click.option("--core-pol", default="V", show_default=True, type=click.Choice(["V", "H"]),
              help="Core channel polarisation (the other is the collaborative channel).")
@click.option("--sigma-vod-pass", default=0.05, show_default=True, type=float,
              help="AM/PM VOD coupling width (inf = independent passes).")
@click.option("--n-iter", default=25, show_default=True, type=click.IntRange(1, 500),
              help="Levenberg–Marquardt iterations.")
@click.option("--no-water-correction", is_flag=True, help="Do not remove open-water emission.")
def retrieve_cmd(root: str, dielectric: str, core_pol: str, sigma_vod_pass: float, n_iter: int,
                 no_water_correction: bool) -> None:
    """Retrieve soil moisture and VOD from tb/smap.zarr; publish sm-smap-{grid}-v1.

    Writes the skill report (bias / ubRMSD vs truth by VOD bin and land cover, when the archive
    has truth) to {root}/reports/sm-retrieval.json and prints the product URL last.
    """
    from pipeline import soil_moisture
    from pipeline.graphs import retrieval

    params = soil_moisture.RetrievalParams(
        dielectric=dielectric, core_pol=core_pol, sigma_vod_pass=sigma_vod_pass, n_iter=n_iter,
        water_correction=not no_water_correction)
    url, rep = retrieval.run(root, params, progress=echo_progress)
    target = rep.get("target_vod_le_0.5")
    if target and target.get("n"):
        click.echo(f"VOD ≤ 0.5: bias {target['bias']:+.4f}, ubRMSD per pixel (median) "
                   f"{target['ubrmsd_per_pixel_median']}, pooled {target['ubrmsd_pooled']} "
                   f"m3/m3 (n={target['n']})", err=True)
    click.echo(json.dumps(rep.get("flag_counts", {})), err=True)
    print_url(url)


def _attach_later_stages() -> None:
    """Add the MCCA-ML chain commands (train / harmonise / fuse / validate) when present."""
    import importlib.util

    if importlib.util.find_spec("pipeline.cli.sm_ml") is None:
        return
    from pipeline.cli import sm_ml

    for command in sm_ml.COMMANDS:
        sm.add_command(command)


_attach_later_stages()
