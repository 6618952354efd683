"""``tbcube catalog``: validate the shipped catalogs (and an archive's STAC), show sensors.

    tbcube catalog validate                      # catalogs/sensors.yaml, networks.yaml, towers.yaml
    tbcube catalog validate --root s3://b/arch   # … and the archive's STAC catalog
    tbcube catalog show                          # table of sensors
    tbcube catalog show gmi                      # one sensor's channels
    tbcube catalog networks [scan]               # in-situ networks / one network's stations
    tbcube catalog towers [fluxnet2015]          # tower sites with IGBP class and L4C PFT

``validate`` prints a summary table on stdout; each problem is one line on stderr, and the exit
code is 2 when there is any.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import pydantic
import yaml

import catalogs
from pipeline import errors


def _table(rows: list[tuple], header: tuple) -> str:
    cols = list(zip(header, *rows, strict=True)) if rows else [(h,) for h in header]
    widths = [max(len(str(c)) for c in col) for col in cols]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def _pydantic_lines(name: str, e: pydantic.ValidationError, raw: object) -> list[str]:
    """One line per pydantic error; list indices shown as the entry's id where it has one."""
    out = []
    for err in e.errors(include_url=False):
        parts, node = [], raw
        for p in err["loc"]:
            if str(p).startswith("function-"):
                continue
            if isinstance(p, int) and isinstance(node, list) and p < len(node):
                node = node[p]
                label = node.get("id") if isinstance(node, dict) else None
                parts[-1] += f"[{label or p}]"
                continue
            node = node.get(p) if isinstance(node, dict) else None
            parts.append(str(p))
        msg = str(err["msg"]).removeprefix("Value error, ")
        value = err.get("input")
        if isinstance(value, (str, int, float)) and err["type"] != "value_error":
            msg += f" (got {value!r})"
        out.append(f"{name}: {'.'.join(parts) or 'top level'}: {msg}")
    return out


def _check_file(path: Path, load: Callable[[Path], object], count: Callable[[object], str]):
    """``(entries, problems)`` of one catalog file."""
    if not path.is_file():
        return "-", [f"{path.name}: file missing ({path})"]
    try:
        obj = load(path)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        return "-", [f"{path.name}: YAML syntax error{where}: {getattr(e, 'problem', e)}"]
    except pydantic.ValidationError as e:
        return "-", _pydantic_lines(path.name, e, yaml.safe_load(path.read_text()))
    except (ValueError, TypeError, KeyError) as e:
        return "-", [f"{path.name}: {e}"]
    return count(obj), []


def _load_sensors(path: Path):
    from pipeline import sensors

    return sensors.parse_catalog(yaml.safe_load(path.read_text()))


def _load_networks(path: Path):
    from pipeline import stations

    return stations.load_networks(path)


def _load_towers(path: Path):
    from pipeline import stations

    return stations.load_towers(path)


def _count_towers(t) -> str:
    sites = sum(len(c.sites) for c in t.collections.values())
    return f"{len(t.collections)} collections, {sites} sites"


def _count_networks(n) -> str:
    st = sum(len(x.stations) for x in n.networks.values())
    return f"{len(n.networks)} networks, {st} stations"


@click.group("catalog")
def catalog() -> None:
    """Validate and inspect catalogs (sensors, networks, towers, an archive's STAC)."""


@catalog.command("validate")
@click.option("--root", metavar="URL", default=None,
              help="Also validate the STAC catalog of this archive root ({root}/catalog/).")
@click.option("--catalog-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory holding sensors.yaml, networks.yaml, towers.yaml "
                   "(default: the shipped catalogs/).")
@click.option("--no-assets", is_flag=True, help="Do not check that STAC assets exist.")
def validate_cmd(root: str | None, catalog_dir: Path | None,
                 no_assets: bool) -> None:
    """Check every catalog file (and, with --root, an archive's STAC catalog)."""
    base = catalog_dir or catalogs.path("sensors.yaml").parent
    rows, problems = [], []
    for name, load, count in (
        ("sensors.yaml", _load_sensors, lambda c: f"{len(c.sensors)} sensors"),
        ("networks.yaml", _load_networks, _count_networks),
        ("towers.yaml", _load_towers, _count_towers),
    ):
        entries, found = _check_file(base / name, load, count)
        rows.append((name, entries, len(found), "ok" if not found else "INVALID"))
        problems += found
    if root is not None:
        from pipeline.io import catalog as stac

        found = stac.validate(root, check_assets=not no_assets)
        n = len(stac.list_collections(root)) if not any("no catalog.json" in p
                                                        for p in found) else 0
        rows.append((f"{root} (STAC)", f"{n} collections", len(found),
                     "ok" if not found else "INVALID"))
        problems += found
    click.echo(_table(rows, ("catalog", "entries", "problems", "status")))
    for p in problems:
        click.echo(p, err=True)
    if problems:
        n = len(problems)
        raise errors.SchemaError(f"{n} catalog problem{'s' if n > 1 else ''} (listed above)")


@catalog.command("show")
@click.argument("sensor", required=False)
def show_cmd(sensor: str | None) -> None:
    """A table of the sensor catalog, or one SENSOR's channels."""
    from pipeline import sensors

    if sensor is None:
        rows = []
        for s in sensors.catalog().sensors.values():
            lt = ("precessing" if s.local_time_h is None else
                  " / ".join(f"{p} {h:05.2f}h" for p, h in s.local_time_h.items()))
            end = s.period.end.isoformat() if s.period.end else "operating"
            rows.append((s.name, s.platform, "yes" if s.archive else "no",
                         f"{s.incidence_angle_deg:g}", lt, f"{s.max_abs_lat_deg:g}",
                         f"{s.period.start} → {end}", len(s.channels)))
        click.echo(_table(rows, ("sensor", "platform", "archive", "incidence°", "passes",
                                 "|lat|≤", "period", "channels")))
        return
    try:
        s = sensors.get(sensor)
    except KeyError as e:
        raise click.BadParameter(str(e.args[0]), param_hint="SENSOR") from None
    click.echo(f"{s.name}: {s.platform}, {s.orbit}, incidence {s.incidence_angle_deg:g}°, "
               f"|lat| ≤ {s.max_abs_lat_deg:g}°, NEΔT {s.nedt_k:g} K, "
               f"{s.period.start} → {s.period.end or 'operating'}")
    rows = [(c.label, f"{c.frequency_ghz:g}", c.polarization) for c in s.channels]
    click.echo(_table(rows, ("channel", "GHz", "pol")))


@catalog.command("networks")
@click.argument("network", required=False)
def networks_cmd(network: str | None) -> None:
    """A table of the in-situ networks, or one NETWORK's stations."""
    from pipeline import stations

    if network is None:
        rows = [(n.name, n.kind, n.time_step, ", ".join(n.variables), len(n.stations),
                 n.region.name) for n in stations.networks().networks.values()]
        click.echo(_table(rows, ("network", "kind", "step", "variables", "stations", "region")))
        return
    try:
        net = stations.network(network)
    except KeyError as e:
        raise click.BadParameter(str(e.args[0]), param_hint="NETWORK") from None
    click.echo(f"{net.name}: {net.provider}; {net.time_step}; {net.region.name}")
    for v, spec in net.variables.items():
        depths = ", ".join(f"{a:g}-{b:g} m" for a, b in spec.depths_m)
        click.echo(f"  {v}: {depths} (source {spec.source})")
    rows = [(s.id, f"{s.lat:.4f}", f"{s.lon:.4f}",
             "-" if s.elevation_m is None else f"{s.elevation_m:g}") for s in net.stations]
    click.echo(_table(rows, ("station", "lat", "lon", "elevation_m")))


@catalog.command("towers")
@click.argument("collection", required=False, default="fluxnet2015")
def towers_cmd(collection: str) -> None:
    """The sites of a tower COLLECTION (default fluxnet2015) with IGBP class and L4C PFT."""
    from pipeline import stations

    try:
        col = stations.tower_collection(collection)
    except KeyError as e:
        raise click.BadParameter(str(e.args[0]), param_hint="COLLECTION") from None
    click.echo(f"{col.name}: {col.provider} ({len(col.sites)} sites)")
    rows = [(s.id, f"{s.lat:.4f}", f"{s.lon:.4f}", s.igbp, s.pft,
             "override" if any(x.id == s.id and x.pft is not None for x in col.sites)
             else "IGBP table") for s in col.resolved_sites()]
    click.echo(_table(rows, ("site", "lat", "lon", "igbp", "pft", "pft from")))
