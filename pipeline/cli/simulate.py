"""``tbcube simulate``: write a simulated archive (observing-system simulation) with its truth."""

from __future__ import annotations

import datetime as dt

import click

from pipeline.cli._common import echo_progress, print_url, root_option


def _date(ctx, param, value):
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from e


@click.command("simulate")
@click.option("--preset", type=click.Choice(["tiny", "demo", "global"]), default="tiny",
              show_default=True, help="tiny: seconds (tests); demo: Alaska N36 + M25 transect "
              "archives; global: full grids, block by block.")
@root_option
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed (the same seed writes the same bytes).")
@click.option("--start", callback=_date, default=None, metavar="YYYY-MM-DD",
              help="First day (default: the preset's).")
@click.option("--end", callback=_date, default=None, metavar="YYYY-MM-DD",
              help="Last day, inclusive (default: the preset's).")
@click.option("--dielectric", type=click.Choice(["mironov", "dobson"]), default="mironov",
              show_default=True, help="Soil dielectric model of the simulated world.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def simulate(preset: str, root: str, seed: int, start: str | None, end: str | None,
             dielectric: str, quiet: bool) -> None:
    """Write static/, tb/{sensor}, insitu/, towers/ and truth/ stores of a simulated archive.

    Prints every store URL, then the archive root(s) last.

    \b
    tbcube simulate --preset tiny --root /tmp/tiny
    tbcube simulate --preset demo --root s3://bucket/demo --start 1997-12-07
    """
    import dataclasses

    from pipeline.io import stores
    from pipeline.simulate import Settings
    from pipeline.simulate import simulate as run

    base = Settings()
    settings = dataclasses.replace(
        base, forward=dataclasses.replace(base.forward, dielectric=dielectric))

    if not quiet:
        echo_progress(f"simulating preset {preset} (seed {seed}) into {root}")
    urls = run(preset, root, seed=seed, start=start, end=end,
               storage_options=stores.storage_options_for(root) or None, progress=not quiet,
               settings=settings)
    roots = [k for k in urls if k.endswith("root")]
    for k, url in urls.items():
        if k not in roots:
            click.echo(url)
    for k in roots:  # archive roots last; the overall root is the very last line
        if k != "root":
            click.echo(urls[k])
    print_url(urls["root"])
