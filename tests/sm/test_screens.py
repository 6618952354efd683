"""Frozen-ground and snow screens of the harmonised products: the SMAP retrieval's own rules from
the reanalysis store, TB heuristics only where the store has no value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline import dims, soil_moisture
from pipeline.graphs import harmonise

PARAMS = soil_moisture.RetrievalParams()


def _like(n_time=6, ny=4, nx=3):
    time = pd.date_range("2012-01-01", periods=n_time, freq="D")
    coords = {dims.TIME: time, dims.PASS: ["am", "pm"], dims.Y: np.arange(ny) * 25e3,
              dims.X: np.arange(nx) * 25e3}
    tb = xr.DataArray(np.full((n_time, 2, ny, nx), 250.0, np.float32),
                      dims=(dims.TIME, dims.PASS, dims.Y, dims.X), coords=coords)
    return tb.chunk({dims.TIME: -1, dims.PASS: 1, dims.Y: 2, dims.X: 2})


def _ancillary(like, *, t_k, swe_mm, days):
    """A reanalysis store covering the first ``days`` days, passes in the other order."""
    sub = like.isel({dims.TIME: slice(0, days)}).sel({dims.PASS: ["pm", "am"]})
    t = xr.full_like(sub, 0.0).load() + t_k
    swe = xr.full_like(sub.isel({dims.PASS: 0}, drop=True), 0.0).load() + swe_mm
    return xr.Dataset({"soil_temperature": t, "snow_water_equivalent": swe}).chunk(
        {dims.TIME: 3, dims.Y: 3})


def test_screens_follow_the_retrieval_rules_per_pass_and_are_nan_outside_the_store():
    like = _like()
    # am thawed by 0.5 K, pm frozen by 0.5 K; snow on (y=1) only
    t = xr.DataArray([PARAMS.frozen_below_k - 0.5, PARAMS.frozen_below_k + 0.5],
                     dims=dims.PASS, coords={dims.PASS: ["pm", "am"]})
    swe = xr.DataArray([0.0, PARAMS.snow_swe_mm + 1.0, 0.0, 0.0], dims=dims.Y,
                       coords={dims.Y: like[dims.Y]})
    anc = _ancillary(like, t_k=t, swe_mm=swe, days=4)
    frozen, snow = harmonise.ancillary_screens(anc, like)
    assert frozen.dims == like.dims and frozen.chunks == like.chunks
    f = frozen.compute()
    np.testing.assert_array_equal(f.sel({dims.PASS: "am"}).values[:4], 0.0)
    np.testing.assert_array_equal(f.sel({dims.PASS: "pm"}).values[:4], 1.0)
    assert np.isnan(f.values[4:]).all()                      # past the store's record
    s = snow.compute().values
    assert (s[:4, :, 1] == 1).all() and (s[:4, :, [0, 2, 3]] == 0).all()
    assert np.isnan(s[4:]).all()


def test_no_temperature_in_the_store_gives_no_frozen_screen():
    like = _like()
    anc = _ancillary(like, t_k=280.0, swe_mm=0.0, days=6).drop_vars("soil_temperature")
    frozen, snow = harmonise.ancillary_screens(anc, like)
    assert frozen is None and int(snow.sum()) == 0


def test_dense_target_cells_are_those_flagged_dense_on_most_retrievals():
    """A cell is dense when the SMAP retrieval flagged DENSE_VEGETATION on more than half of the
    pass-days it retrieved; flags on days without a retrieval do not count."""
    from pipeline import qc

    like = _like(n_time=10, ny=1, nx=4).load()
    d = int(qc.QC.DENSE_VEGETATION)
    flag = np.zeros(like.shape, np.uint16)
    sm = np.full(like.shape, 0.2, np.float32)
    flag[:, :, 0, 0] = d                       # always dense
    flag[:6, :, 0, 1] = d                      # 12 of 20 retrievals: dense
    flag[:5, :, 0, 2] = d                      # exactly half: not dense
    flag[:, :, 0, 3] = d                       # flagged, but retrieved on 4 days only, ...
    sm[4:, :, 0, 3] = np.nan
    flag[:2, :, 0, 3] = 0                      # ... dense on 2 of them: not more than half
    smap = xr.Dataset({dims.SOIL_MOISTURE: like.copy(data=sm),
                       dims.QUALITY_FLAG: like.copy(data=flag)}).chunk({dims.TIME: 4})
    got = harmonise.dense_target_cells(smap)
    assert got.chunks is not None              # lazy over the record
    np.testing.assert_array_equal(got.values, [[True, True, False, False]])


def test_calibrated_tb_on_other_cells_is_refused(tmp_path):
    """Features pair calibrated TB and static layers by position: another window is refused."""
    from pipeline import errors, grid
    from pipeline.graphs import harmonise as g
    from pipeline.io import stores

    root = str(tmp_path)
    win = grid.Window(100, 103, 300, 301)
    static = grid.grid_coords("M36", win).assign_attrs(grid="M36")
    ds = grid.grid_coords("M36", grid.Window(101, 104, 300, 301))
    ds = ds.assign_coords(time=np.array(["2016-01-01"], "datetime64[ns]"),
                          **{"pass": ["am", "pm"], "channel": ["10.65V"]})
    ds["tb"] = (("time", "pass", "channel", "y", "x"), np.full((1, 2, 1, 3, 1), 250, np.float32),
                {"units": "K"})
    stores.write_dataset(ds.assign_attrs(grid="M36"), stores.calibrated_url(root, "gmi"))
    with pytest.raises(errors.InputDataError, match=r"calibrated/gmi\.zarr: not on the cells of "
                                                    r"the archive's static store: dim 'y'"):
        g._calibrated(root, "gmi", None, static)
    assert g._calibrated(root, "amsr2", None, static) is None
