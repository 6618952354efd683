"""Simulated reanalysis: error statistics follow the configured model; deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline import dims
from pipeline.simulate import ancillary


def _truth(n_time=3000, ny=6, nx=7):
    t = pd.date_range("2015-01-01", periods=n_time, freq="D")
    temp = 270 + 15 * np.sin(np.arange(n_time) / 58.0)[:, None, None, None] + np.zeros(
        (n_time, 2, ny, nx))
    swe = np.where(np.arange(n_time)[:, None, None] % 365 < 120, 80.0, 0.0) + np.zeros(
        (n_time, ny, nx))
    return xr.Dataset(
        {"soil_temperature": ((dims.TIME, dims.PASS, dims.Y, dims.X), temp),
         "surface_temperature": ((dims.TIME, dims.PASS, dims.Y, dims.X), temp + 1.0),
         "snow_water_equivalent": ((dims.TIME, dims.Y, dims.X), swe)},
        coords={dims.TIME: t, dims.PASS: ["am", "pm"], dims.Y: np.arange(ny) * 1.0,
                dims.X: np.arange(nx) * 1.0},
        attrs={"grid": "N36"},
    )


def test_temperature_errors_follow_the_model():
    e = ancillary.AncillaryErrors(temp_bias_sd_k=1.0, temp_noise_sd_k=1.5, temp_ar1=0.7)
    truth = _truth()
    anc = ancillary.ancillary_from_truth(truth, seed=3, errors=e)
    err = (anc["soil_temperature"] - truth["soil_temperature"]).values  # (t, pass, y, x)
    bias = err.mean(0)
    noise = err - bias
    assert np.std(bias) == pytest.approx(1.0, rel=0.3)
    assert np.std(noise) == pytest.approx(1.5, rel=0.1)
    lag1 = np.mean([np.corrcoef(noise[1:, p, i, j], noise[:-1, p, i, j])[0, 1]
                    for p in range(2) for i in range(6) for j in range(7)])
    assert lag1 == pytest.approx(0.7, abs=0.05)
    # surface and soil errors are independent draws
    e2 = (anc["surface_temperature"] - truth["surface_temperature"]).values
    assert abs(np.corrcoef(err.ravel(), e2.ravel())[0, 1]) < 0.1


def test_snow_errors_and_detection_limit():
    truth = _truth(n_time=400)
    anc = ancillary.ancillary_from_truth(truth, seed=1)
    est = anc["snow_water_equivalent"].values
    tr = truth["snow_water_equivalent"].values
    assert (est[tr == 0] == 0).all()
    ratio = est[tr > 0] / tr[tr > 0]
    ratio = ratio[ratio > 0]
    assert np.std(np.log(ratio)) == pytest.approx(0.3, rel=0.2)


def test_deterministic_per_seed():
    truth = _truth(n_time=50)
    a = ancillary.ancillary_from_truth(truth, seed=7)
    b = ancillary.ancillary_from_truth(truth, seed=7)
    c = ancillary.ancillary_from_truth(truth, seed=8)
    xr.testing.assert_identical(a, b)
    assert not np.allclose(a["soil_temperature"], c["soil_temperature"])
