"""Real-data soil-moisture validation: SMAP L3 (QA4SM Hawaii test data) against ISMN stations.

Reproduces the real case of docs/validation.md::

    python -m pipeline.graphs.validation --real-data ../shared/data/real \\
        --out reports/validation-real

or ``validate_real(real_data_dir, out_dir)`` (the lead's ``tbcube sm validate-real`` calls
:func:`main`).  Steps: read the ISMN stations of ``qa4sm_hawaii`` (:func:`pipeline.io.qa4sm.
read_ismn`), read the product's series at the grid point nearest to each station
(:func:`pipeline.io.qa4sm.read_series`), match and score them with :mod:`pipeline.validation`
(depth ≤ 0.05 m, ISMN flag G, no frozen soil, nearest in-situ hour within ± 1 h, daily means of
the pairs), then write the tables (JSON, CSV, the contract validation Zarr) and the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from pipeline import dims, errors, schema
from pipeline import validation as val
from pipeline.io import qa4sm, stores

__all__ = ["main", "real_case_pairs", "validate_real"]

QA4SM_DIR = "qa4sm_hawaii"
DEFAULT_OUT = "reports/validation-real"


def _qa4sm_root(real_data_dir: str | Path) -> Path:
    root = Path(real_data_dir) / QA4SM_DIR
    if not root.is_dir():
        raise errors.InputDataError(f"{root}: QA4SM test data not found (set --real-data)")
    return root


def real_case_pairs(real_data_dir: str | Path, *, product: str = "smap_l3",
                    settings: val.MatchSettings | None = None,
                    quality: bool = False) -> dict[str, Any]:
    """Matched pairs of ``product`` and the QA4SM Hawaii ISMN stations, per network.

    Args:
      real_data_dir: The real-data directory (holding ``qa4sm_hawaii/``).
      product: Key of :data:`pipeline.io.qa4sm.PRODUCTS`.
      settings: Matching choices (:class:`pipeline.validation.MatchSettings`).
      quality: Apply the product's default quality filter.  Off by default for the real case:
        every SMAP L3 retrieval at the Hawaii grid points has ``retrieval_qual_flag`` bit 0 set
        ("not recommended": mountainous terrain), so the filter would leave nothing.

    Returns:
      ``{"pairs": {network: Dataset (station, time)}, "series": {network: {station:
      DataArray}}, "insitu": {network: Dataset}, "excluded": {network: reason}}``.
    """
    settings = settings or val.MatchSettings()
    root = _qa4sm_root(real_data_dir)
    insitu = qa4sm.read_ismn(root)
    out: dict[str, Any] = {"pairs": {}, "series": {}, "insitu": insitu, "excluded": {}}
    for net, ds in insitu.items():
        series = {}
        for sid in ds[dims.STATION].values:
            s = ds.sel({dims.STATION: sid})
            series[str(sid)] = qa4sm.read_series(root, product, float(s[dims.LAT]),
                                                 float(s[dims.LON]), quality=quality)
        out["series"][net] = series
        try:
            out["pairs"][net] = val.match_stations(series, ds, settings)
        except errors.InputDataError as e:
            depths = {str(k): float(v) for k, v in zip(
                ds[dims.STATION].values, ds[f"{dims.SOIL_MOISTURE}_depth_to"].values, strict=True)}
            out["excluded"][net] = f"{e}; sensor bottoms [m]: {depths}"
    return out


def _combine(pairs: dict[str, xr.Dataset]) -> xr.Dataset:
    """Concatenate networks along ``station``; ids prefixed ``network:`` only if they clash."""
    ids = [str(s) for p in pairs.values() for s in p[dims.STATION].values]
    clash = len(ids) != len(set(ids))
    parts = []
    for net, p in pairs.items():
        if clash:
            p = p.assign_coords({dims.STATION: [f"{net}:{s}" for s in p[dims.STATION].values]})
        parts.append(p)
    out = xr.concat(parts, dim=dims.STATION, join="outer", combine_attrs="override",
                    coords="minimal", compat="override")
    return out


def _f(v) -> float | None:
    v = float(v)
    return round(v, 6) if np.isfinite(v) else None


def _rows(table: xr.DataArray, key: str) -> dict[str, dict[str, float | int | None]]:
    out = {str(k): {str(m): _f(table.sel({key: k, dims.METRIC: m}))
                    for m in table[dims.METRIC].values} for k in table[key].values}
    for row in out.values():
        if row.get("n") is not None:
            row["n"] = int(row["n"])
    return out


def _csv(table: xr.DataArray, key: str, extra: dict[str, Sequence] | None = None) -> str:
    cols = list(table[dims.METRIC].values)
    head = [key] + list(extra or {}) + cols
    lines = [",".join(head)]
    for i, k in enumerate(table[key].values):
        vals = [str(k)] + [str(v[i]) for v in (extra or {}).values()]
        vals += [("" if not np.isfinite(x) else f"{x:.6g}")
                 for x in table.sel({key: k}).values.astype(float)]
        lines.append(",".join(vals))
    return "\n".join(lines) + "\n"


def validate_real(real_data_dir: str | Path, out_dir: str | Path | None = DEFAULT_OUT, *,
                  product: str = "smap_l3", settings: val.MatchSettings | None = None,
                  quality: bool = False, figures: bool = True,
                  case: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``product`` against the QA4SM Hawaii ISMN stations; write tables and figures.

    Args:
      real_data_dir: The real-data directory (``TBCUBE_REAL_DATA``).
      out_dir: Local output directory (None: write nothing).  Files: ``validation-real.json``,
        ``stations.csv``, ``networks.csv``, ``periods.csv``, ``pairs.csv``, ``stations.zarr``
        (data-contract validation dataset), ``timeseries_{station}.png``, ``taylor.png``.
      product, settings, quality: See :func:`real_case_pairs`.
      figures: Draw the PNGs.
      case: The output of :func:`real_case_pairs` for the same arguments, if already computed.

    Returns:
      The report: settings, per-station metrics (with the satellite grid point), per-network
      and per-epoch metrics, excluded networks and the written files.
    """
    settings = settings or val.MatchSettings()
    if case is None:
        case = real_case_pairs(real_data_dir, product=product, settings=settings,
                               quality=quality)
    if not case["pairs"]:
        raise errors.InputDataError(f"{real_data_dir}: no station could be matched: "
                                    f"{case['excluded']}")
    pairs = _combine(case["pairs"])
    table = val.station_table(pairs)
    nets = val.network_table(pairs)
    periods = val.period_table(pairs)
    report: dict[str, Any] = {
        "product": product, "product_quality_filter": quality,
        "settings": dataclasses.asdict(settings),
        "metrics_note": "bias = mean(satellite) - mean(in situ); units m3 m-3; ubrmsd = means "
                        "removed (pytesmo); ubrmsd_detrended = linear trends removed",
        "stations": _rows(table[dims.SOIL_MOISTURE], dims.STATION),
        "networks": {str(k): {"pooled": _rows(nets["pooled"], val.NETWORK)[k],
                         "median": _rows(nets["median"], val.NETWORK)[k],
                         "n_stations": int(nets["n_stations"].sel({val.NETWORK: k}))}
                     for k in nets[val.NETWORK].values},
        "periods": {str(k): {"start": str(periods["period_start"].sel({val.PERIOD: k}).values)[:10],
                             "end": str(periods["period_end"].sel({val.PERIOD: k}).values)[:10],
                             "pooled": _rows(periods["pooled"], val.PERIOD)[str(k)]}
                    for k in periods[val.PERIOD].values},
        "excluded": case["excluded"],
        "files": [],
    }
    for net, ser in case["series"].items():
        for sid, s in ser.items():
            key = sid if sid in report["stations"] else f"{net}:{sid}"
            if key in report["stations"]:
                report["stations"][key].update(
                    network=net, grid_point=int(s["location_id"]),
                    grid_point_lat=_f(s["lat"]), grid_point_lon=_f(s["lon"]),
                    distance_deg=_f(s["distance_deg"]))
    if out_dir is None:
        return report
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    schema.check(table, schema.VALIDATION, context=f"{out}/stations.zarr")
    # variable-length strings: Zarr v3 has no specification for fixed-width unicode
    strings = {c: table[c].astype(object) for c in table.coords if table[c].dtype.kind == "U"}
    files = [stores.write_dataset(table.assign_coords(strings), str(out / "stations.zarr"))]
    nets_col = {"network": [str(v) for v in table["network"].values]}
    for name, text in (
        ("stations.csv", _csv(table[dims.SOIL_MOISTURE], dims.STATION, nets_col)),
        ("networks.csv", _csv(nets["pooled"], val.NETWORK)),
        ("periods.csv", _csv(periods["pooled"], val.PERIOD)),
        ("pairs.csv", _pairs_csv(pairs)),
    ):
        files.append(stores.write_bytes(str(out / name), text.encode()))
    if figures:
        from pipeline import plots_validation as pv

        for net, p in case["pairs"].items():
            screened = val.screen_insitu(case["insitu"][net])
            for sid in p[dims.STATION].values:
                files.append(str(pv.plot_station_series(
                    p, str(sid), out / f"timeseries_{sid}.png",
                    estimate_series=case["series"][net][str(sid)],
                    reference_series=screened.sel({dims.STATION: sid}),
                    estimate_label=product.upper().replace("_", " "),
                    title=f"{net.upper()} {sid}: {product} vs in situ (daily pairs)")))
        files.append(str(pv.plot_taylor(pairs, out / "taylor.png",
                                        title=f"{product} vs ISMN, Hawaii (daily pairs)")))
    files.append(str(out / "validation-real.json"))
    report["files"] = files
    stores.write_json(str(out / "validation-real.json"), report)
    return report


def _pairs_csv(pairs: xr.Dataset) -> str:
    lines = ["station,time,estimate,reference"]
    for sid in pairs[dims.STATION].values:
        p = pairs.sel({dims.STATION: sid})
        ok = np.isfinite(p[val.ESTIMATE].values) & np.isfinite(p[val.REFERENCE].values)
        for t, x, y in zip(p[dims.TIME].values[ok], p[val.ESTIMATE].values[ok],
                           p[val.REFERENCE].values[ok], strict=True):
            lines.append(f"{sid},{np.datetime_as_string(t, unit='s')},{x:.8g},{y:.8g}")
    return "\n".join(lines) + "\n"


def format_table(report: dict[str, Any]) -> str:
    """The per-station table as Markdown (n, R, bias, RMSD, ubRMSD)."""
    rows = ["| station | network | n | R | bias | RMSD | ubRMSD |", "|---|---|---|---|---|---|---|"]
    def g(m: dict, k: str) -> str:
        v = m.get(k)
        return "–" if v is None else (f"{int(v)}" if k == "n" else f"{v:.3f}")

    for sid, m in report["stations"].items():
        rows.append(f"| {sid} | {m.get('network', '')} | {g(m, 'n')} | {g(m, 'r')} | "
                    f"{g(m, 'bias')} | {g(m, 'rmsd')} | {g(m, 'ubrmsd')} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m pipeline.graphs.validation --real-data DIR --out DIR``; exit 2 on error."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.graphs.validation",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--real-data", default=None,
                    help="real-data directory (default: $TBCUBE_REAL_DATA or ../shared/data/real)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (local)")
    ap.add_argument("--product", default="smap_l3", choices=sorted(qa4sm.PRODUCTS))
    ap.add_argument("--window", default="1h", help="matching window, e.g. 1h, 30min")
    ap.add_argument("--aggregate", default="daily", choices=val.AGGREGATES,
                    help="daily: pairs at the observation times averaged per day; overpass: "
                         "every pair; daily_mean: for daily products (c3s, era5_land, ...)")
    ap.add_argument("--quality", action="store_true",
                    help="apply the product's default quality filter")
    ap.add_argument("--no-figures", action="store_true")
    a = ap.parse_args(argv)
    import os

    real = a.real_data or os.environ.get("TBCUBE_REAL_DATA") or str(
        Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real")
    try:
        settings = val.MatchSettings(window=a.window, aggregate=a.aggregate)
        rep = validate_real(real, a.out, product=a.product, settings=settings,
                            quality=a.quality, figures=not a.no_figures)
    except (errors.TbcubeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(rep))
    for k, v in rep["excluded"].items():
        print(f"excluded {k}: {v}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
