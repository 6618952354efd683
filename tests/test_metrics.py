"""pipeline.metrics against pytesmo.metrics, an independent numpy OLS and pyl4c."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline import metrics

pytesmo_metrics = pytest.importorskip("pytesmo.metrics")


def _pairs(seed=0, n_site=5, n_time=200, nan_fraction=0.15):
    rng = np.random.default_rng(seed)
    t = np.arange(n_time)
    truth = np.sin(2 * np.pi * t / 365.0)[None, :] * rng.uniform(1, 5, (n_site, 1))
    y = truth + rng.normal(0, 0.5, (n_site, n_time))
    # Estimate with a bias, a gain error and a drift so that the two ubRMSD definitions differ.
    x = 0.8 * truth + 0.3 + 0.004 * t[None, :] + rng.normal(0, 0.7, (n_site, n_time))
    x[rng.random(x.shape) < nan_fraction] = np.nan
    y[rng.random(y.shape) < nan_fraction] = np.nan
    coords = {"site": [f"S{i}" for i in range(n_site)], "time": t}
    return (
        xr.DataArray(x, dims=("site", "time"), coords=coords, attrs={"units": "g C m-2 d-1"}),
        xr.DataArray(y, dims=("site", "time"), coords=coords),
    )


def test_continuous_metrics_equal_pytesmo():
    x, y = _pairs()
    got = metrics.score(x, y, "time")
    for i in range(x.sizes["site"]):
        a, b = x.values[i], y.values[i]
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = a[ok], b[ok]
        assert int(got.n[i]) == ok.sum()
        np.testing.assert_allclose(float(got.bias[i]), pytesmo_metrics.bias(a, b), rtol=1e-12)
        np.testing.assert_allclose(float(got.rmsd[i]), pytesmo_metrics.rmsd(a, b), rtol=1e-12)
        np.testing.assert_allclose(float(got.ubrmsd[i]), pytesmo_metrics.ubrmsd(a, b), rtol=1e-12)
        np.testing.assert_allclose(float(got.r[i]), pytesmo_metrics.pearson_r(a, b), rtol=1e-12)
    # ubRMSD identity: ubrmsd² = rmsd² − bias².
    np.testing.assert_allclose(got.ubrmsd**2, got.rmsd**2 - got.bias**2, rtol=1e-10)


def _detrended_numpy(a, b):
    """Independent implementation: NaNs filled with the pair mean, lstsq OLS, RMSD of residuals."""
    ok = np.isfinite(a) & np.isfinite(b)
    n = a.size
    design = np.column_stack([np.ones(n), np.arange(n, dtype=float)])
    res = []
    for v in (a, b):
        filled = np.where(ok, v, v[ok].mean())
        beta, *_ = np.linalg.lstsq(design, filled, rcond=None)
        res.append((filled - design @ beta)[ok])
    return np.sqrt(np.mean((res[0] - res[1]) ** 2))


def test_detrended_ubrmsd_equals_independent_ols():
    x, y = _pairs(seed=3)
    got = metrics.ubrmsd_detrended(x, y, "time")
    for i in range(x.sizes["site"]):
        want = _detrended_numpy(x.values[i], y.values[i])
        np.testing.assert_allclose(float(got[i]), want, rtol=1e-10)
    # With a drifting error the two definitions differ; detrending removes part of the error.
    ub = metrics.ubrmsd(x, y, "time")
    assert bool((got < ub).all())


def test_detrended_ubrmsd_equals_pyl4c_report_fit_stats():
    calib = pytest.importorskip("pyl4c.apps.calibration")
    x, y = _pairs(seed=5)
    # pyl4c assumes both series have the same missingness: give it the paired NaN pattern.
    ok = np.isfinite(x.values) & np.isfinite(y.values)
    got = metrics.score(x, y, "time")
    for i in range(x.sizes["site"]):
        obs = np.where(ok[i], y.values[i], np.nan)
        pred = np.where(ok[i], x.values[i], np.nan)
        _, rmse, ubrmse, bias = calib.report_fit_stats(obs, pred, weights=None, verbose=False)
        np.testing.assert_allclose(float(got.rmsd[i]), rmse, rtol=1e-10)
        np.testing.assert_allclose(float(got.ubrmsd_detrended[i]), ubrmse, rtol=1e-10)
        np.testing.assert_allclose(float(got.bias[i]), bias, rtol=1e-10)


def _fail_if_called(*args, **kwargs):
    raise AssertionError("a metric computed its dask-backed input")


def test_dask_backed_equals_numpy_and_stays_lazy():
    x, y = _pairs(seed=7)
    eager = metrics.score(x, y, "time")
    with dask.config.set(scheduler=_fail_if_called):
        lazy = metrics.score(x.chunk(site=2, time=64), y.chunk(site=3, time=50), "time")
        cc = metrics.confusion_counts(
            (x > 0).astype(int).chunk(site=2), (y > 0).astype(int).chunk(site=2), "time"
        )
    assert lazy.bias.chunks is not None
    xr.testing.assert_allclose(eager, lazy.compute(), rtol=1e-12)
    assert cc.chunks is not None


def test_identical_series_are_perfect():
    x, _ = _pairs(seed=2)
    s = metrics.score(x, x, "time")
    np.testing.assert_allclose(s.r, 1.0)
    np.testing.assert_allclose(s.rmsd, 0.0, atol=1e-12)
    np.testing.assert_allclose(s.ubrmsd_detrended, 0.0, atol=1e-12)


def test_no_pairs_gives_nan_and_zero_count():
    x = xr.DataArray([np.nan, 1.0, np.nan], dims="time")
    y = xr.DataArray([1.0, np.nan, 2.0], dims="time")
    s = metrics.score(x, y, "time")
    assert int(s.n) == 0
    assert np.isnan(float(s.rmsd)) and np.isnan(float(s.r))


def test_multiple_dims_pool_pairs():
    x, y = _pairs(seed=9)
    pooled = metrics.rmsd(x, y, ("site", "time"))
    a, b = x.values.ravel(), y.values.ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    np.testing.assert_allclose(float(pooled), pytesmo_metrics.rmsd(a[ok], b[ok]), rtol=1e-12)


def test_confusion_counts_equal_pandas_crosstab():
    rng = np.random.default_rng(4)
    p = rng.integers(-1, 2, (3, 100))  # -1 = missing
    r = rng.integers(0, 2, (3, 100))
    da_p = xr.DataArray(p, dims=("site", "time"))
    da_r = xr.DataArray(r, dims=("site", "time"))
    got = metrics.confusion_counts(da_p, da_r, "time")
    for i in range(3):
        keep = p[i] >= 0
        tab = pd.crosstab(p[i][keep], r[i][keep]).reindex(index=[0, 1], columns=[0, 1]).fillna(0)
        np.testing.assert_array_equal(got.isel(site=i).values, tab.values.astype(int))
    acc = metrics.accuracy(got)
    for i in range(3):
        keep = p[i] >= 0
        np.testing.assert_allclose(float(acc[i]), np.mean(p[i][keep] == r[i][keep]))
