"""``tbcube sm …``: soil moisture (stage 1: the SMAP physical retrieval).

Later stages (train / harmonise / fuse / validate) add their subcommands to this group.
"""

from __future__ import annotations

import json

import click

from pipeline.cli._common import echo_progress, parse_years, print_url, root_option


@click.group("sm")
def sm() -> None:
    """Soil moisture: tune | retrieve (SMAP multi-channel retrieval) | train | harmonise | fuse |
    validate.

    \b
    tbcube sm tune --root URL --years 2015,2016,2017   # τV/τH, T_eff per land cover
    tbcube sm retrieve --root URL   # → {root}/products/sm-smap-{grid}-v1/<version>.zarr
    """


@sm.command("tune")
@root_option
@click.option("--years", default=None, metavar="Y1,Y2",
              help="Tuning years (default: all SMAP years; score skill on the others).")
@click.option("--network", default=None,
              help="In-situ network (default: the archive's only one; 'simnet' among several).")
@click.option("--min-stations", default=3, show_default=True, type=click.IntRange(1, None),
              help="Stations a land-cover class needs for its own values.")
def tune_cmd(root: str, years: str | None, network: str | None, min_stations: int) -> None:
    """Fit the retrieval's τV/τH and T_eff offset per land-cover class against stations.

    Runs the retrieval at the station cells for trial ratios × effective-temperature offsets;
    per class, the offset zeroes the mean bias and the ratio minimises the ubRMSD.  Writes
    {root}/models/sm-retrieval-tuned.json (used by 'sm retrieve' from then on) and
    {root}/reports/sm-tune.json; prints the table's URL last.
    """
    from pipeline.graphs import retrieval_tune

    doc = retrieval_tune.tune(root, years=parse_years(years), network=network,
                              min_stations=min_stations, progress=echo_progress)
    tr = doc["trials"]
    click.echo(f"trials: τV/τH {tr['pol_ratio']} × ΔT_eff {tr['teff_offset_k']} K", err=True)
    for c, info in doc["classes"].items():
        click.echo(f"class {c:>3}: {info['n_stations']} stations, bias {info['bias_at_trials']}"
                   f", ubRMSD {info['ubrmsd_at_trials']} → τV/τH {info['pol_ratio']}, ΔT_eff "
                   f"{info['teff_offset_k']} K ({info['source']}; {info['fit']})", err=True)
    print_url(retrieval_tune.tuned_url(root))


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
@click.option("--vod-window-days", default=11, show_default=True, type=click.IntRange(0, 61),
              help="Multi-temporal VOD stage: running-median window in days (odd; 0 = off).")
@click.option("--tuned/--no-tuned", default=None,
              help="Use models/sm-retrieval-tuned.json from 'sm tune' (default: when present).")
def retrieve_cmd(root: str, dielectric: str, core_pol: str, sigma_vod_pass: float, n_iter: int,
                 no_water_correction: bool, vod_window_days: int, tuned: bool | None) -> None:
    """Retrieve soil moisture and VOD from tb/smap.zarr; publish sm-smap-{grid}-v1.

    Writes the skill report (bias / ubRMSD vs truth by VOD bin and land cover, when the archive
    has truth) to {root}/reports/sm-retrieval.json and prints the product URL last.
    """
    from pipeline import soil_moisture
    from pipeline.graphs import retrieval

    params = soil_moisture.RetrievalParams(
        dielectric=dielectric, core_pol=core_pol, sigma_vod_pass=sigma_vod_pass, n_iter=n_iter,
        water_correction=not no_water_correction, vod_window_days=vod_window_days)
    url, rep = retrieval.run(root, params, use_tuned=tuned, progress=echo_progress)
    for key, what in (("target_vod_le_0.5", "VOD ≤ 0.5"),
                      ("target_vod_le_0.5_holdout", "VOD ≤ 0.5, cells/years not tuned on")):
        target = rep.get(key)
        if target and target.get("n"):
            click.echo(f"{what}: bias {target['bias']:+.4f}, ubRMSD per pixel (median) "
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
