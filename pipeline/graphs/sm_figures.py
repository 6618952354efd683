"""Figures of the soil-moisture record (PNG, matplotlib Agg), written under ``{root}/reports/``.

- ``sm-coverage.png``: daily land coverage of the fused product over the whole record, with the
  operating period of each sensor shaded and the 80 % target line.
- ``sm-maps.png``: one day of the fused product, its uncertainty and number of sources.
- ``sm-station.png``: a station's in-situ soil moisture with the fused and per-sensor products.
- ``sm-target.png``: target diagram (bias vs signed ubRMSD) of every product against the truth
  on unseen cells and years.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from pipeline import dims, fuse, sensors, validation
from pipeline.io import publish, stores

COLORS = {"tmi": "#9467bd", "amsre": "#ff7f0e", "amsr2": "#d62728", "gmi": "#2ca02c",
          "smap": "#1f77b4", "fused": "#000000"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _plt().close(fig)
    return buf.getvalue()


def coverage_figure(coverage: xr.DataArray) -> bytes:
    """Land coverage (time) with sensor periods shaded."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.2))
    t = coverage[dims.TIME].values
    lo, hi = t.min(), t.max()
    names = [s for s in ("tmi", "amsre", "amsr2", "gmi", "smap")]
    for k, s in enumerate(names):
        p = sensors.get(s).period
        a = max(np.datetime64(p.start, "ns"), lo)
        b = min(np.datetime64(p.end or "2100-01-01", "ns"), hi)
        if a < b:
            ax.axvspan(a, b, ymin=k / len(names), ymax=(k + 1) / len(names),
                       color=COLORS[s], alpha=0.15, lw=0)
            ax.text(a, 0.02 + 0.2 * k, f" {s}", fontsize=7, color=COLORS[s],
                    transform=ax.get_xaxis_transform())
    ax.plot(t, coverage.values, lw=0.6, color="k")
    ax.axhline(0.8, color="r", ls="--", lw=0.8, label="80 % target (≥ 2 sensors)")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("land coverage")
    ax.set_title("Fused soil moisture: daily land coverage (sensor periods shaded)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def maps_figure(fused: xr.Dataset, day) -> bytes:
    """Maps of one day: fused soil moisture, its uncertainty and the number of sources."""
    plt = _plt()
    d = fused.sel({dims.TIME: day}, method="nearest")
    fig, axes = plt.subplots(1, 3, figsize=(10, 4.5))
    for ax, (v, cmap, label) in zip(axes, (
            (dims.SOIL_MOISTURE, "YlGnBu", "m³/m³"),
            (dims.SOIL_MOISTURE_UNCERTAINTY, "magma_r", "m³/m³"),
            (dims.N_SOURCES, "viridis", "sources")), strict=True):
        # grid space (rows × cols): works for narrow transects as well as square windows
        im = ax.imshow(d[v].values.astype(float), cmap=cmap, aspect="auto",
                       interpolation="nearest")
        fig.colorbar(im, ax=ax, label=label, shrink=0.8)
        ax.set_title(f"{v} {str(d[dims.TIME].values)[:10]}", fontsize=8)
        lat = d[dims.LAT].values[:, 0]
        rows = np.linspace(0, len(lat) - 1, min(6, len(lat))).astype(int)
        ax.set_yticks(rows, [f"{lat[r]:.0f}°" for r in rows])
        ax.set_xlabel("column")
    axes[0].set_ylabel("latitude")
    fig.tight_layout()
    return _png(fig)


def station_figure(series: Mapping[str, xr.DataArray], insitu: xr.DataArray, name: str) -> bytes:
    """One station: in-situ daily soil moisture with the products at its cell."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.plot(insitu[dims.TIME].values, insitu.values, color="0.5", lw=1.2, label="in situ")
    for s, da in series.items():
        ax.plot(da[dims.TIME].values, da.values, ".", ms=2 if s != "fused" else 1.5,
                color=COLORS.get(s, "k"), label=s, alpha=0.8 if s != "fused" else 1)
    ax.set_ylabel("soil moisture [m³/m³]")
    ax.set_title(f"station {name}", fontsize=9)
    ax.legend(fontsize=7, ncol=7, loc="upper left")
    fig.tight_layout()
    return _png(fig)


def target_figure(scores: Mapping[str, Mapping[str, float]], target_ubrmsd: float = 0.04) -> bytes:
    """Target diagram: x = signed ubRMSD (sign of the std difference is not kept: ubRMSD ≥ 0),
    y = bias, with the ubRMSD target circle."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    th = np.linspace(0, 2 * np.pi, 200)
    ax.plot(target_ubrmsd * np.cos(th), target_ubrmsd * np.sin(th), "r--", lw=0.8,
            label=f"{target_ubrmsd} m³/m³")
    for s, d in scores.items():
        if d.get("ubrmsd") is None or d.get("bias") is None:
            continue
        ax.plot(d["ubrmsd"], d["bias"], "o", color=COLORS.get(s, "k"), label=s)
    lim = max([0.06] + [abs(d.get("ubrmsd") or 0) * 1.2 for d in scores.values()]
              + [abs(d.get("bias") or 0) * 1.2 for d in scores.values()])
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("ubRMSD [m³/m³]")
    ax.set_ylabel("bias [m³/m³]")
    ax.set_aspect("equal")
    ax.set_title("Target diagram vs truth (unseen cells/years)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def write_figures(root: str, grid_name: str, validation: dict[str, Any],
                  storage_options=None) -> dict[str, str]:
    """Write every figure the available products allow; returns {name: url}."""
    out: dict[str, str] = {}
    try:
        fused = publish.open_product(root, f"sm-fused-{grid_name}-v1", storage_options)
    except Exception:  # noqa: BLE001 - no fused product yet: nothing to draw from it
        fused = None
    if fused is not None:
        cov = fused[dims.LAND_COVERAGE].load()
        out["coverage"] = _put(root, "sm-coverage.png", coverage_figure(cov), storage_options)
        n = fused[dims.N_SOURCES].sum((dims.Y, dims.X)).load()
        day = n[dims.TIME].values[int(np.argmax(n.values))]
        out["maps"] = _put(root, "sm-maps.png", maps_figure(fused.load(), day), storage_options)
    if validation.get("against_truth_unseen"):
        out["target"] = _put(root, "sm-target.png",
                             target_figure(validation["against_truth_unseen"]), storage_options)
    station = _best_station(validation)
    if station and fused is not None:
        try:
            out["station"] = _station(root, grid_name, station, fused, storage_options)
        except Exception:  # noqa: BLE001 - a missing in-situ store only skips this figure
            pass
    return out


def _put(root, name, data, storage_options) -> str:
    url = stores.reports_url(root, name)
    stores.write_bytes(url, data, storage_options)
    return url


def _best_station(validation) -> tuple[str, str] | None:
    """(network, station) of the fused product's station with the most matched days."""
    st = validation.get("stations", {}).get("fused", {})
    best = None
    for name, net in st.items():
        for sid, info in net.get("stations", {}).items():
            if best is None or info["n"] > best[0]:
                best = (info["n"], name, sid)
    return None if best is None else (best[1], best[2])


def _station(root, grid_name, where, fused, storage_options) -> str:
    from pipeline import grid

    network, station = where
    st = stores.open_stations(stores.insitu_url(root, network), "insitu",
                              storage_options=storage_options)
    sm = validation.insitu_daily(st, stations=[station]).isel({dims.STATION: 0})
    g, w = grid.window_from_attrs(fused.attrs)
    r, c = grid.latlon_to_rowcol(g, float(st[dims.LAT].sel({dims.STATION: station})),
                                 float(st[dims.LON].sel({dims.STATION: station})))
    sel = {dims.Y: int(r) - w.row0, dims.X: int(c) - w.col0}
    series = {"fused": fused[dims.SOIL_MOISTURE].isel(sel).load()}
    for s in ("tmi", "amsre", "amsr2", "gmi", "smap"):
        try:
            p = publish.open_product(root, f"sm-{s}-{grid_name}-v1", storage_options)
        except Exception:  # noqa: BLE001 - that sensor has no product in this archive
            continue
        series[s] = fuse.daily_mean_of_passes(p[dims.SOIL_MOISTURE].isel(sel)).load()
    return _put(root, "sm-station.png", station_figure(series, sm, station), storage_options)
