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
    tb: xr.Dataset,
    freeze_thaw_fraction: xr.DataArray | None = None,
    *,
    min_lat_deg: float = 60.0,
    npr_fr: float = freeze_thaw.CLIMATOLOGICAL_NPR_FR,
    npr_th: float = freeze_thaw.CLIMATOLOGICAL_NPR_TH,
    threshold: float = THRESHOLD,
) -> dict:
    """NPR-baseline frozen fraction north of ``min_lat_deg`` and agreement with the granule.

    NPR comes from :func:`pipeline.freeze_thaw.compute_npr` on the archive itself, the state
    from :func:`pipeline.freeze_thaw.npr_state_from_references` (0 frozen, 1 thawed, −1
    missing) — the same stages that process simulated archives.

    Args:
      tb: A data-contract SMAP TB dataset (``tb`` with ``frequency_ghz``/``polarization``,
        ``quality_flag``, ``lat``), (time, pass, channel, y, x).
      freeze_thaw_fraction: The granules' own frozen fraction [0-1], (time, pass, y, x) on the
        same grid, or None.
      min_lat_deg: Southern limit of the reported domain [deg N].
      npr_fr, npr_th: Frozen / thawed NPR references [1].
      threshold: Δ threshold [1].

    Returns:
      JSON-ready dict; ``by_day_pass`` lists, per (local date, pass) with data, the ``all`` and
      ``land`` domains: cell count, median NPR, NPR frozen fraction, and where
      ``freeze_thaw_fraction`` is given its frozen fraction and the per-cell agreement.
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
    npr_all = freeze_thaw.compute_npr(tb)
    state_all = freeze_thaw.npr_state_from_references(npr_all, npr_fr, npr_th, threshold)
    north = np.asarray(tb[dims.LAT]) >= min_lat_deg
    for t in tb[dims.TIME].values:
        for p in tb[dims.PASS].values:
            at = {dims.TIME: t, dims.PASS: p}
            npr = npr_all.sel(at).transpose(dims.Y, dims.X).values.astype(np.float64)
            if not (north & np.isfinite(npr)).any():
                continue
            state = state_all.sel(at).transpose(dims.Y, dims.X).values
            qf = tb[dims.QUALITY_FLAG].sel(at).transpose(dims.Y, dims.X).values
            water = (qf & int(QC.WATER_CONTAMINATION)) != 0
            ftf = None
            if freeze_thaw_fraction is not None and t in freeze_thaw_fraction[dims.TIME].values:
                ftf = freeze_thaw_fraction.sel(at).transpose(dims.Y, dims.X).values.astype(float)
            out["by_day_pass"].append({
                "date": str(np.datetime_as_string(t, "D")),
                "pass": str(p),
                "all": _domain_stats(npr, state, ftf, north),
                "land": _domain_stats(npr, state, ftf, north & ~water),
            })
    return out
