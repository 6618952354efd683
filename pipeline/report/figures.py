"""PNG figures of the demo report (matplotlib, Agg backend), one function per product.

Every function takes the parsed JSON reports (and, for the coverage series, a small in-memory
series) and returns PNG bytes, or ``None`` when its inputs are missing — a missing report never
breaks the report.  Target values come from :data:`pipeline.report.targets.TARGETS` and are
drawn as dashed lines, so each figure shows the measured numbers *against* their target.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.report.targets import TARGETS  # noqa: E402

__all__ = ["calibration_bias", "carbon_sites", "coverage_series", "ft_accuracy",
           "lstm_ubrmsd", "retrieval_by_vod", "stage_times"]

PASS_C, FAIL_C, GREY = "#2e7d32", "#c62828", "#9e9e9e"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _g(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, Mapping) or p not in d:
            return None
        d = d[p]
    return d


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def ft_accuracy(rep: Mapping | None) -> bytes | None:
    """Accuracy of the autoencoder and the NPR baseline, overall and by land-cover group.

    Targets: NPR within 75–90 % (band), AE ≥ NPR + 8 pp (marker).
    """
    src = "stations" if _g(rep, "stations", "npr", "overall") else "gridded_truth"
    if not _g(rep, src, "npr", "overall"):
        return None
    groups = ["overall"] + sorted(set(_g(rep, src, "npr", "by_landcover") or {}) |
                                  set(_g(rep, src, "autoencoder", "by_landcover") or {}))
    def acc(m, g):
        node = _g(rep, src, m, "overall") if g == "overall" else _g(rep, src, m, "by_landcover", g)
        return _f(_g(node, "accuracy"))
    ae = [acc("autoencoder", g) for g in groups]
    npr = [acc("npr", g) for g in groups]
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    ax.bar(x - 0.2, npr, 0.4, label="NPR baseline", color="#90a4ae")
    ax.bar(x + 0.2, ae, 0.4, label="autoencoder", color="#1565c0")
    lo, hi = TARGETS["ft_npr_accuracy_range"]
    ax.axhspan(lo, hi, color="#90a4ae", alpha=0.15, label=f"NPR target {lo:.0%}–{hi:.0%}")
    if np.isfinite(npr[0]):
        ax.plot([0.0, 0.4], [npr[0] + TARGETS["ft_ae_margin_pp"] / 100] * 2, "k--",
                label="AE target: NPR + 8 pp")
    for xi, v in zip(x, ae, strict=True):
        if np.isfinite(v):
            ax.text(xi + 0.2, v + 0.005, f"{v:.3f}", ha="center", fontsize=7)
    for xi, v in zip(x, npr, strict=True):
        if np.isfinite(v):
            ax.text(xi - 0.2, v + 0.005, f"{v:.3f}", ha="center", fontsize=7)
    ax.set_xticks(x, groups, rotation=20, fontsize=8)
    ax.set_ylim(0.5, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title(f"Freeze/thaw accuracy vs {src.replace('_', ' ')}")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=4)
    return _png(fig)


def calibration_bias(rep: Mapping | None) -> bytes | None:
    """Median bias before and after calibration for every hop and channel (target |·| < 0.5 K)."""
    rows = [(f"{h.get('source')}→{h.get('reference')}\n{ch}", _f(d.get("median_bias_before_K")),
             _f(d.get("median_bias_after_K")))
            for h in (_g(rep, "hops") or []) for ch, d in (h.get("channels") or {}).items()]
    if not rows:
        return None
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(rows)), 3.8))
    ax.bar(x - 0.2, [r[1] for r in rows], 0.4, label="before", color="#b0bec5")
    ax.bar(x + 0.2, [r[2] for r in rows], 0.4, label="after", color="#1565c0")
    lim = TARGETS["cal_median_bias_K"]
    ax.axhline(lim, color="k", ls="--", lw=0.8, label=f"target ±{lim:g} K")
    ax.axhline(-lim, color="k", ls="--", lw=0.8)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(x, [r[0] for r in rows], fontsize=6, rotation=90)
    ax.set_ylabel("median TB bias vs reference [K]")
    ax.set_title("Cross-calibration: median bias before / after")
    ax.legend(fontsize=7)
    return _png(fig)


def retrieval_by_vod(rep: Mapping | None) -> bytes | None:
    """SMAP retrieval ubRMSD (per-pixel median) and bias by VOD bin (target where VOD ≤ 0.5)."""
    bins = _g(rep, "by_vod") or {}
    keys = [k for k, v in bins.items() if v.get("n")]
    if not keys:
        return None
    ub = [_f(bins[k].get("ubrmsd_per_pixel_median")) for k in keys]
    ubp = [_f(bins[k].get("ubrmsd_pooled")) for k in keys]
    bias = [_f(bins[k].get("bias")) for k in keys]
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    ax.bar(x - 0.27, ub, 0.27, label="ubRMSD (per-pixel median)", color="#1565c0")
    ax.bar(x, ubp, 0.27, label="ubRMSD (pooled)", color="#64b5f6")
    ax.bar(x + 0.27, np.abs(bias), 0.27, label="|bias|", color="#ffb300")
    ax.axhline(TARGETS["sm_retrieval_ubrmsd"], color="k", ls="--", lw=0.8,
               label="ubRMSD target 0.03 (VOD ≤ 0.5)")
    ax.axhline(TARGETS["sm_retrieval_abs_bias"], color="#ff6f00", ls=":", lw=0.8,
               label="|bias| target 0.01")
    ax.axvspan(-0.5, sum(1 for k in keys if _f(k.split("-")[1]) <= 0.5) - 0.5, color="#c8e6c9",
               alpha=0.3, zorder=0)
    ax.set_xticks(x, [f"VOD {k}\n(n={bins[k]['n']})" for k in keys], fontsize=7)
    ax.set_ylabel("m3 m-3")
    ax.set_title("SMAP retrieval vs truth by VOD bin")
    ax.legend(fontsize=7)
    return _png(fig)


def lstm_ubrmsd(val: Mapping | None) -> bytes | None:
    """Per-sensor harmonised ubRMSD vs truth on unseen data, SMAP and fused (target 0.04)."""
    tr = _g(val, "against_truth_unseen") or {}
    order = [s for s in ("tmi", "amsre", "amsr2", "gmi", "smap", "fused") if s in tr]
    if not order:
        return None
    v = [_f(tr[s].get("ubrmsd_per_pixel_median")) for s in order]
    pooled = [_f(tr[s].get("ubrmsd")) for s in order]
    vmax = TARGETS["sm_retrieval_vod_max"]
    sparse = _g(val, f"against_truth_unseen_vod_le_{vmax:g}") or {}
    le = [_f((sparse.get(s) or {}).get("ubrmsd_per_pixel_median")) for s in order]
    colors = ["#1565c0" if s not in ("fused", "smap") else
              ("#2e7d32" if s == "fused" else "#78909c") for s in order]
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    ax.bar(order, v, color=colors, label="per-pixel median (temporal)")
    ax.plot(order, pooled, "kD", ms=4, label="pooled")
    if sparse:
        ax.plot(order, le, "o", color="#ef6c00", ms=5, label=f"per-pixel, VOD ≤ {vmax:g}")
    for i, val_ in enumerate(v):
        if np.isfinite(val_):
            ax.text(i, val_ + 0.0008, f"{val_:.4f}", ha="center", fontsize=7)
    ax.axhline(TARGETS["lstm_ubrmsd"], color="k", ls="--", lw=0.8, label="target 0.04")
    ax.set_ylabel("ubRMSD vs truth [m3 m-3]")
    ax.set_title("Soil moisture: harmonised sensors and fused (unseen cells/year)")
    ax.legend(fontsize=7)
    return _png(fig)


def coverage_series(times: np.ndarray, coverage: np.ndarray,
                    periods: Mapping[str, tuple[str, str]]) -> bytes | None:
    """Daily land coverage of the fused product with the sensors' periods shaded.

    Args:
      times: datetime64[ns] (time,).
      coverage: Fraction of land cells with a fused value (time,) [1].
      periods: ``{sensor: (start, end)}`` ISO dates.
    """
    if times is None or len(times) == 0:
        return None
    fig, ax = plt.subplots(figsize=(8.0, 3.2))
    cmap = plt.get_cmap("tab10")
    t0, t1 = times.min(), times.max()
    for i, (s, (a, b)) in enumerate(periods.items()):
        a_, b_ = max(np.datetime64(a, "ns"), t0), min(np.datetime64(b, "ns"), t1)
        if a_ < b_:
            ax.axvspan(a_, b_, ymin=i / len(periods), ymax=(i + 1) / len(periods),
                       color=cmap(i), alpha=0.18, label=s)
    ax.plot(times, coverage, lw=0.6, color="k")
    ax.axhline(TARGETS["fused_coverage_2plus"], color="#c62828", ls="--", lw=0.8,
               label="80 % (target on ≥ 2-sensor days)")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("land coverage")
    ax.set_title("Fused soil moisture: daily land coverage (sensor periods shaded)")
    ax.legend(fontsize=7, ncol=3, loc="lower left")
    return _png(fig)


def carbon_sites(evaluation: Mapping | None) -> bytes | None:
    """Tower vs model annual NEE budgets (scatter, 1:1 line) from the carbon evaluation."""
    rows = _g(evaluation, "budgets") or []
    pairs = [(_f(r.get("nee_tower")), _f(r.get("nee_model", r.get("nee"))))
             for r in rows if isinstance(r, Mapping)]
    pairs = [(a, b) for a, b in pairs if np.isfinite(a) and np.isfinite(b)]
    if not pairs:
        return None
    a, b = np.array(pairs).T
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.scatter(a, b, s=14, color="#2e7d32")
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("tower annual NEE [g C m-2 yr-1]")
    ax.set_ylabel("model annual NEE [g C m-2 yr-1]")
    ax.set_title("Carbon: annual NEE budgets (site-years)")
    return _png(fig)


def stage_times(stages: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Wall time of every stage, coloured by status."""
    if not stages:
        return None
    names = [s["name"] for s in stages]
    secs = [float(s.get("seconds") or 0.0) for s in stages]
    col = {"ok": PASS_C, "failed": FAIL_C, "cached": GREY, "skipped": "#e0e0e0"}
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    ax.barh(names, secs, color=[col.get(s.get("status"), GREY) for s in stages])
    for i, (v, s) in enumerate(zip(secs, stages, strict=True)):
        ax.text(v, i, f" {v:.0f} s ({s.get('status')})", va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("wall time [s]")
    ax.set_title("Demo stage times")
    ax.set_xlim(0, max(secs + [1.0]) * 1.3)
    return _png(fig)
