"""Validation metrics over named dimensions, NaN-aware, identical on numpy- and dask-backed input.

Every metric takes two DataArrays ``x`` (the estimate: model, retrieval, product) and ``y`` (the
reference: tower, station, truth) and the name(s) of the dimension(s) to reduce over, and returns
a DataArray over the remaining (broadcast) dimensions.  Only *pairs* where both ``x`` and ``y``
are finite count; every other position is ignored.  A group with no pair gives NaN (and ``n = 0``).

Definitions (the argument order follows ``pytesmo.metrics``; ``bias`` is ``mean(x) - mean(y)``):

=====================  ==========================================================================
``n_pairs``            number of finite pairs
``pearson_r``          Pearson correlation coefficient of the pairs
``bias``               mean(x) − mean(y)
``rmsd``               sqrt(mean((x − y)²))
``ubrmsd``             sqrt(mean(((x − x̄) − (y − ȳ))²)), means removed (= pytesmo ``ubrmsd``;
                       equals sqrt(rmsd² − bias²))
``ubrmsd_detrended``   RMSD of the *linearly detrended* series (OLS on the position index along
                       ``dim``), as ``pyl4c.apps.calibration.report_fit_stats`` calls "ubRMSE"
``confusion_counts``   2 × 2 (or k × k) table of predicted vs reference classes (freeze/thaw)
=====================  ==========================================================================

``ubrmsd`` and ``ubrmsd_detrended`` differ whenever the error has a trend; reports must say which
one they quote (docs/carbon.md uses both, labelled).

Example:
  >>> from pipeline import metrics
  >>> table = metrics.score(model.nee, tower.nee, dim="time")     # Dataset over "site"
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import xarray as xr

__all__ = [
    "METRIC_NAMES",
    "accuracy",
    "bias",
    "confusion_counts",
    "detrended_differences",
    "n_pairs",
    "pearson_r",
    "rmsd",
    "score",
    "ubrmsd",
    "ubrmsd_detrended",
]

Dim = Hashable | Sequence[Hashable]

# Order of the variables written by :func:`score`.
METRIC_NAMES = ("n", "r", "bias", "rmsd", "ubrmsd", "ubrmsd_detrended")

PREDICTED = "predicted"
REFERENCE = "reference"


def _paired(x: xr.DataArray, y: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """``x`` and ``y`` broadcast against each other, NaN wherever either one is not finite."""
    x, y = xr.broadcast(x, y)
    ok = np.isfinite(x) & np.isfinite(y)
    return x.where(ok), y.where(ok)


def _float(a: xr.DataArray) -> xr.DataArray:
    # Accumulate in float64: float32 sums over decades of daily data lose digits.
    return a.astype(np.float64)


def n_pairs(x: xr.DataArray, y: xr.DataArray, dim: Dim) -> xr.DataArray:
    """Number of positions where both ``x`` and ``y`` are finite.

    Args:
      x, y: Estimate and reference, any broadcastable dims.
      dim: Dimension(s) to reduce.

    Returns:
      int64 counts over the remaining dims.
    """
    x, y = xr.broadcast(x, y)
    ok = np.isfinite(x) & np.isfinite(y)
    return ok.sum(dim).astype(np.int64).rename("n")


def bias(x: xr.DataArray, y: xr.DataArray, dim: Dim) -> xr.DataArray:
    """Mean difference ``mean(x) - mean(y)`` over the pairs (pytesmo order; units of x)."""
    xp, yp = _paired(_float(x), _float(y))
    return (xp.mean(dim) - yp.mean(dim)).rename("bias")


def rmsd(x: xr.DataArray, y: xr.DataArray, dim: Dim) -> xr.DataArray:
    """Root-mean-square difference ``sqrt(mean((x - y)**2))`` over the pairs (units of x)."""
    xp, yp = _paired(_float(x), _float(y))
    return np.sqrt(((xp - yp) ** 2).mean(dim)).rename("rmsd")


def ubrmsd(x: xr.DataArray, y: xr.DataArray, dim: Dim) -> xr.DataArray:
    """Unbiased RMSD, means removed: ``sqrt(mean(((x - x̄) - (y - ȳ))**2))`` (pytesmo ``ubrmsd``)."""
    xp, yp = _paired(_float(x), _float(y))
    d = (xp - xp.mean(dim)) - (yp - yp.mean(dim))
    return np.sqrt((d**2).mean(dim)).rename("ubrmsd")


def pearson_r(x: xr.DataArray, y: xr.DataArray, dim: Dim) -> xr.DataArray:
    """Pearson correlation of the pairs (NaN with fewer than 2 pairs or zero variance)."""
    xp, yp = _paired(_float(x), _float(y))
    dx = xp - xp.mean(dim)
    dy = yp - yp.mean(dim)
    cov = (dx * dy).sum(dim)
    var = (dx**2).sum(dim) * (dy**2).sum(dim)
    r = cov / np.sqrt(var.where(var > 0))
    return r.clip(-1.0, 1.0).rename("r")


def detrended_differences(x: xr.DataArray, y: xr.DataArray, dim: Hashable) -> xr.DataArray:
    """Difference of the linearly detrended series along ``dim`` (NaN where no pair).

    Each series is detrended on its own by ordinary least squares against the position index
    ``t = 0 … T-1`` along ``dim``; positions without a pair are filled with the series' mean
    before the fit (``pyl4c.stats.detrend(fill=True)``), which is the closed form used here:

      slope = Σ_valid (t − t̄)(v − v̄) / Σ_all (t − t̄)²,   residual = v − v̄ − slope·(t − t̄)

    with t̄ the mean over all T positions and v̄ the mean over the pairs.  RMS of the result over
    ``dim`` is :func:`ubrmsd_detrended`; pooling it over more dims (e.g. sites) gives a pooled
    detrended ubRMSD with every series detrended on its own.
    """
    if not isinstance(dim, str) and isinstance(dim, Sequence):
        raise ValueError("detrending works along one dimension; got a sequence")
    xp, yp = _paired(_float(x), _float(y))
    size = xp.sizes[dim]
    t = xr.DataArray(np.arange(size, dtype=np.float64), dims=(dim,))
    tc = t - t.mean()
    stt = float((tc**2).sum())
    if stt == 0:
        stt = np.nan
    dx = xp - xp.mean(dim)
    dy = yp - yp.mean(dim)
    slope_x = (tc * dx).sum(dim) / stt
    slope_y = (tc * dy).sum(dim) / stt
    return (dx - slope_x * tc) - (dy - slope_y * tc)


def ubrmsd_detrended(x: xr.DataArray, y: xr.DataArray, dim: Hashable) -> xr.DataArray:
    """RMSD of linearly detrended series: the "ubRMSE" of ``pyl4c`` ``report_fit_stats``.

    See :func:`detrended_differences` for the detrending (OLS on the position index along
    ``dim``, one series at a time).  It differs from :func:`ubrmsd` (means only) whenever the
    error drifts along ``dim``.

    Args:
      x, y: Estimate and reference; must share ``dim`` (one dimension, usually time).
      dim: The single dimension along which to detrend and reduce.

    Returns:
      The detrended RMSD over the remaining dims, units of x.
    """
    d = detrended_differences(x, y, dim)
    return np.sqrt((d**2).mean(dim)).rename("ubrmsd_detrended")


def score(x: xr.DataArray, y: xr.DataArray, dim: Hashable) -> xr.Dataset:
    """All continuous metrics at once: a Dataset with the variables of :data:`METRIC_NAMES`.

    Args:
      x, y: Estimate and reference (same units).
      dim: The dimension to reduce (one; also used for detrending).

    Returns:
      Dataset with ``n`` (int64), ``r`` [1], ``bias``, ``rmsd``, ``ubrmsd`` and
      ``ubrmsd_detrended`` (units of x; ``units`` attr copied from ``x`` when present).
    """
    units = x.attrs.get("units")
    out = xr.Dataset(
        {
            "n": n_pairs(x, y, dim),
            "r": pearson_r(x, y, dim),
            "bias": bias(x, y, dim),
            "rmsd": rmsd(x, y, dim),
            "ubrmsd": ubrmsd(x, y, dim),
            "ubrmsd_detrended": ubrmsd_detrended(x, y, dim),
        }
    )
    long_names = {
        "n": "number of valid pairs",
        "r": "Pearson correlation coefficient",
        "bias": "mean(estimate) - mean(reference)",
        "rmsd": "root-mean-square difference",
        "ubrmsd": "unbiased RMSD, means removed (pytesmo ubrmsd)",
        "ubrmsd_detrended": "RMSD of linearly detrended series (pyl4c report_fit_stats ubRMSE)",
    }
    for k, v in out.data_vars.items():
        v.attrs["long_name"] = long_names[k]
        v.attrs["units"] = "1" if k in ("n", "r") else (units or "")
    return out


def confusion_counts(
    predicted: xr.DataArray,
    reference: xr.DataArray,
    dim: Dim,
    classes: Sequence[int] = (0, 1),
) -> xr.DataArray:
    """Contingency table of predicted vs reference classes, counted over ``dim``.

    Positions where either value is not one of ``classes`` (e.g. −1 missing or NaN) are not
    counted.  For freeze/thaw (0 frozen, 1 thawed) the table is 2 × 2; ``[1, 0]`` counts false
    thaws (predicted thawed, reference frozen).

    Args:
      predicted, reference: Class labels (any numeric dtype), broadcastable.
      dim: Dimension(s) to count over.
      classes: The class labels, in table order.

    Returns:
      int64 DataArray with the remaining dims plus ``predicted`` and ``reference`` (coords
      ``classes``).
    """
    predicted, reference = xr.broadcast(predicted, reference)
    rows = []
    for a in classes:
        cols = [((predicted == a) & (reference == b)).sum(dim) for b in classes]
        rows.append(xr.concat(cols, dim=REFERENCE))
    out = xr.concat(rows, dim=PREDICTED).astype(np.int64)
    out = out.assign_coords({PREDICTED: list(classes), REFERENCE: list(classes)})
    out.attrs["long_name"] = "number of (predicted, reference) class pairs"
    out.attrs["units"] = "1"
    return out.rename("confusion_counts")


def accuracy(counts: xr.DataArray) -> xr.DataArray:
    """Fraction of correctly classified pairs from :func:`confusion_counts` (NaN if none)."""
    classes = counts[PREDICTED].values
    diag = sum(counts.sel({PREDICTED: c, REFERENCE: c}, drop=True) for c in classes)
    total = counts.sum((PREDICTED, REFERENCE))
    return (diag / total.where(total > 0)).rename("accuracy")
