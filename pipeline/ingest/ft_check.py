"""Freeze/thaw NPR baseline on freshly ingested SMAP TB: a sanity report, not a product.

With a single day there are no seasonal (per-cell multi-year) NPR references, so the baseline
uses the *climatological constant* references of :mod:`pipeline.freeze_thaw`
(``CLIMATOLOGICAL_NPR_FR`` = 0.0145, ``CLIMATOLOGICAL_NPR_TH`` = 0.025; science.md §1.7, read
off the FTC-Encoder figure [V]) and :func:`pipeline.freeze_thaw.npr_state_from_references`:
``Δ = (NPR − NPR_fr)/(NPR_th − NPR_fr)``, frozen if ``Δ < 0.5`` (science.md §1.8).  The seasonal
per-cell references of the real algorithm replace them once a season of TB is archived.

The result is compared with the granule's own ``freeze_thaw_fraction`` (SPL2SMP/SPL3SMP: the
fraction of the 36 km cell flagged frozen), a cell counting as frozen there when the fraction is
≥ 0.5.  Two domains are reported: every cell north of ``min_lat_deg`` and the land cells among
them (no ``QC.WATER_CONTAMINATION`` bit: open water raises NPR and reads as thawed).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from pipeline import dims, freeze_thaw
from pipeline.qc import QC

THRESHOLD = 0.5
FTF_FROZEN = 0.5
V, H = "1.41V", "1.41H"
FTF = "anc_freeze_thaw_fraction"


def _domain_stats(npr, state, ftf, mask) -> dict:
    ok = mask & np.isfinite(npr) & (state >= 0)
    rec = {"n_cells": int(ok.sum())}
    if not ok.any():
        return rec
    rec["npr_median"] = float(np.median(npr[ok]))
    rec["frozen_fraction_npr"] = float((state[ok] == 0).mean())
    if ftf is not None:
        both = ok & np.isfinite(ftf)
        if both.any():
            g_frozen = ftf[both] >= FTF_FROZEN
            rec.update(
                n_cells_with_granule_ft=int(both.sum()),
                frozen_fraction_granule=float(g_frozen.mean()),
                mean_freeze_thaw_fraction=float(ftf[both].mean()),
                agreement=float(((state[both] == 0) == g_frozen).mean()),
            )
    return rec


def ft_baseline_summary(
    gridded: xr.Dataset,
    lat: np.ndarray,
    *,
    min_lat_deg: float = 60.0,
    npr_fr: float = freeze_thaw.CLIMATOLOGICAL_NPR_FR,
    npr_th: float = freeze_thaw.CLIMATOLOGICAL_NPR_TH,
    threshold: float = THRESHOLD,
) -> dict:
    """NPR-baseline frozen fraction north of ``min_lat_deg`` and agreement with the granule.

    Args:
      gridded: Gridded SMAP TB (``tb`` with channels 1.41V/1.41H, ``quality_flag``, optional
        ``anc_freeze_thaw_fraction``), (time, pass, channel, y, x) / (time, pass, y, x).
      lat: Cell-centre latitude [deg], (y, x).
      min_lat_deg: Southern limit of the reported domain [deg N].
      npr_fr, npr_th: Frozen / thawed NPR references [1].
      threshold: Δ threshold [1].

    Returns:
      JSON-ready dict; ``by_day_pass`` lists, per (local date, pass) with data, the ``all`` and
      ``land`` domains: cell count, median NPR, NPR frozen fraction, and where the granule has
      ``freeze_thaw_fraction`` its frozen fraction and the per-cell agreement.
    """
    out = {
        "method": "NPR seasonal-threshold form with climatological constant references "
                  "(single day: no seasonal references; science.md 1.7-1.8)",
        "npr_frozen_ref": npr_fr,
        "npr_thawed_ref": npr_th,
        "threshold": threshold,
        "min_lat_deg": min_lat_deg,
        "granule_frozen_if_freeze_thaw_fraction_ge": FTF_FROZEN,
        "by_day_pass": [],
    }
    north = np.asarray(lat) >= min_lat_deg
    for t in gridded[dims.TIME].values:
        for p in gridded[dims.PASS].values:
            sel = gridded.sel({dims.TIME: t, dims.PASS: p})
            v = sel[dims.TB].sel({dims.CHANNEL: V}).values.astype(np.float64)
            h = sel[dims.TB].sel({dims.CHANNEL: H}).values.astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                npr = (v - h) / (v + h)
            if not (north & np.isfinite(npr)).any():
                continue
            state = np.asarray(freeze_thaw.npr_state_from_references(
                np.where(north, npr, np.nan), npr_fr, npr_th, threshold))
            water = (sel[dims.QUALITY_FLAG].values & int(QC.WATER_CONTAMINATION)) != 0
            ftf = sel[FTF].values.astype(np.float64) if FTF in sel else None
            out["by_day_pass"].append({
                "date": str(np.datetime_as_string(t, "D")),
                "pass": str(p),
                "all": _domain_stats(npr, state, ftf, north),
                "land": _domain_stats(npr, state, ftf, north & ~water),
            })
    return out
