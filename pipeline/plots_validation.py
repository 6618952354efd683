"""Figures of the soil-moisture validation: station time series and a Taylor diagram (Agg PNG).

Both take the matched pairs of :mod:`pipeline.validation` (``estimate``/``reference`` over
(station, time)), so a figure shows exactly the numbers of the tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from pipeline import dims
from pipeline.validation import ESTIMATE, REFERENCE

__all__ = ["plot_station_series", "plot_taylor", "taylor_stats"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_station_series(pairs: xr.Dataset, station: str, path: str | Path, *,
                        estimate_series: xr.DataArray | None = None,
                        reference_series: xr.DataArray | None = None,
                        estimate_label: str = "satellite", title: str | None = None) -> Path:
    """Time series at one station: in situ vs satellite, matched pairs marked.

    Args:
      pairs: Matched pairs (station, time) [m3 m-3].
      station: Station id.
      path: Output PNG.
      estimate_series, reference_series: Optional full series (time) drawn faintly behind the
        pairs (e.g. all satellite retrievals and the hourly screened in-situ record).
      estimate_label: Legend label of the estimate.
      title: Figure title (default: the station id).

    Returns:
      The PNG path.
    """
    plt = _plt()
    p = pairs.sel({dims.STATION: station})
    ok = np.isfinite(p[ESTIMATE].values) & np.isfinite(p[REFERENCE].values)
    t = p[dims.TIME].values[ok]
    fig, ax = plt.subplots(figsize=(9, 3.4), dpi=80)
    if reference_series is not None:
        ax.plot(reference_series[dims.TIME].values, reference_series.values, color="0.7", lw=0.6,
                label="in situ (all, screened)")
    if estimate_series is not None:
        ax.plot(estimate_series[dims.TIME].values, estimate_series.values, ".", color="#9ecae1",
                ms=2, label=f"{estimate_label} (all)")
    ax.plot(t, p[REFERENCE].values[ok], "-", color="k", lw=1.0, label="in situ (matched)")
    ax.plot(t, p[ESTIMATE].values[ok], "o", color="#d62728", ms=2.5,
            label=f"{estimate_label} (matched)")
    if t.size:
        ax.set_xlim(t.min(), t.max())
    ax.set_ylabel("soil moisture [m³ m⁻³]")
    ax.set_title(title or str(station), fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def taylor_stats(pairs: xr.Dataset) -> xr.Dataset:
    """Per station: ``r``, ``std_ratio`` = σ_estimate/σ_reference and centred RMSD / σ_reference.

    Standard deviations are population ones (ddof 0) over the pairs, so that
    ``crmsd_norm² = std_ratio² + 1 − 2·std_ratio·r`` holds exactly (the Taylor relation).
    """
    x, y = pairs[ESTIMATE], pairs[REFERENCE]
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x.where(ok), y.where(ok)
    sx, sy = x.std(dims.TIME), y.std(dims.TIME)
    dx, dy = x - x.mean(dims.TIME), y - y.mean(dims.TIME)
    r = (dx * dy).mean(dims.TIME) / (sx * sy)
    crmsd = np.sqrt(((dx - dy) ** 2).mean(dims.TIME))
    return xr.Dataset({"r": r, "std_ratio": sx / sy, "crmsd_norm": crmsd / sy})


def plot_taylor(pairs: xr.Dataset, path: str | Path, *, title: str = "Taylor diagram") -> Path:
    """Normalised Taylor diagram of the stations (reference = in situ at radius 1, angle 0).

    Angle = arccos(r) (negative r allowed: the half plane), radius = σ_est/σ_ref; grey arcs
    are centred-RMSD/σ_ref contours around the reference point.
    """
    plt = _plt()
    st = taylor_stats(pairs)
    rmax = float(np.nanmax(np.r_[st["std_ratio"].values, 1.0])) * 1.25
    fig = plt.figure(figsize=(7.6, 4.0), dpi=80)
    ax = fig.add_axes((0.04, 0.12, 0.58, 0.74), projection="polar")
    ax.set_thetamin(0)
    ax.set_thetamax(180)
    ax.set_rlim(0, rmax)
    step = 0.25 if rmax <= 2 else 0.5
    ax.set_rticks(np.arange(step, rmax, step))
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(alpha=0.35)
    th = np.linspace(0, np.pi, 361)
    for c in (0.5, 1.0, 1.5):
        # points at distance c from the reference (1, 0): r² − 2 r cosθ + 1 = c²
        disc = c**2 - np.sin(th) ** 2
        ok = disc >= 0
        for sign in (1.0, -1.0):
            rr = np.cos(th[ok]) + sign * np.sqrt(disc[ok])
            good = (rr >= 0) & (rr <= rmax)
            ax.plot(th[ok][good], rr[good], color="#2ca02c", lw=0.7, ls="--", alpha=0.7)
    ticks = np.array([-1, -0.9, -0.6, -0.3, 0, 0.3, 0.6, 0.9, 0.99, 1])
    ax.set_thetagrids(np.degrees(np.arccos(ticks)), [f"{t:g}" for t in ticks], fontsize=7)
    ax.plot([0], [1.0], "k*", ms=11, label="in situ (reference)")
    markers = "osD^vP<>"
    for i, s in enumerate(st[dims.STATION].values):
        r, sr = float(st["r"].sel({dims.STATION: s})), float(st["std_ratio"].sel(
            {dims.STATION: s}))
        if np.isfinite(r) and np.isfinite(sr):
            ax.plot([np.arccos(np.clip(r, -1, 1))], [sr], markers[i % len(markers)], ms=7,
                    label=f"{s} (R={r:.2f}, σ ratio={sr:.2f})")
    fig.suptitle(title, fontsize=10)
    fig.text(0.02, 0.03, "angle: correlation R;  radius: σ_satellite / σ_in situ;  "
             "dashed: centred RMSD / σ_in situ = 0.5, 1, 1.5", ha="left", fontsize=7)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
