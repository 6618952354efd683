"""Gridding rules on hand-made swaths: local solar date/pass, masks and counts, means, merges."""

from __future__ import annotations

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from pipeline import dims, grid
from pipeline.ingest import gridding
from pipeline.ingest.common import Swath
from pipeline.qc import QC
from tests.ingest import ease_ref


def _cell(ds, grid_name, row, col):
    """The cell (row, col) of the grid, selected by its own x/y values."""
    g = grid.get(grid_name)
    return ds.sel({dims.Y: g.y[int(row)], dims.X: g.x[int(col)]})


def _swath(lat, lon, times, tb, bad=None, flags=None, channels=("1.41V", "1.41H")):
    n = len(lat)
    tb = np.asarray(tb, np.float32).reshape(n, len(channels))
    return Swath(
        channels=tuple(channels),
        lat=np.asarray(lat, float),
        lon=np.asarray(lon, float),
        time=np.asarray(times, "datetime64[ns]"),
        tb=tb,
        bad=np.zeros(tb.shape, bool) if bad is None else np.asarray(bad, bool),
        flags=np.zeros(n, np.uint16) if flags is None else np.asarray(flags, np.uint16),
    )


def test_local_solar_date_and_pass():
    # 150 E at 20:00 UTC is 06:00 local the next day; 150 W at 02:00 UTC is 16:00 the day before.
    sw = _swath([10.0, 10.0], [150.0, -150.0],
                ["2015-06-01T20:00", "2015-06-02T02:00"], [[250, 240], [260, 230]])
    ds, counts = gridding.grid_swath(sw, "smap", "M36")
    assert counts["used"] == 4
    rows, cols = ease_ref.rowcol("M36", [10.0, 10.0], [150.0, -150.0])
    lon_c = ease_ref.cell_lon("M36", rows, cols)
    exp_day, exp_pass = ease_ref.local_date_pass(
        np.array(["2015-06-01T20:00", "2015-06-02T02:00"], "datetime64[ms]"), lon_c)
    assert list(exp_day.astype(str)) == ["2015-06-02", "2015-06-01"]
    for i in range(2):
        cell = _cell(ds.sel({dims.TIME: exp_day[i], dims.PASS: exp_pass[i]}), "M36",
                     rows[i], cols[i])
        np.testing.assert_allclose(cell[dims.TB].values, sw.tb[i])
        hours = 20 + lon_c[0] / 15 - 24 if i == 0 else 2 + lon_c[1] / 15 + 24
        assert float(cell[dims.LOCAL_TIME]) == pytest.approx(hours, abs=1e-3)
    assert int(ds[dims.TB].count()) == 4


def test_masks_are_counted_and_flagged():
    lat = [45.0] * 6 + [0.0]
    lon = [10.0] * 6 + [10.0]
    t = ["2015-06-01T05:00"] * 7
    tb = [[250, 240],             # used
          [np.nan, 241],          # one fill
          [260, 242],             # V bad quality
          [30.0, 243],            # V out of range (cold)
          [251, 400.0],           # H out of range (hot)
          [252, 244],             # used
          [253, 245]]             # outside the window
    bad = np.zeros((7, 2), bool)
    bad[2, 0] = True
    sw = _swath(lat, lon, t, tb, bad=bad, flags=[0, 0, 0, 0, 0, int(QC.RFI_SUSPECTED), 0])
    r, c = ease_ref.rowcol("M36", 45.0, 10.0)
    win = grid.Window(int(r) - 1, int(r) + 2, int(c) - 1, int(c) + 2)
    ds, counts = gridding.grid_swath(sw, "smap", "M36", win)
    assert counts == {"samples": 14, "fill": 1, "bad_quality": 1, "out_of_range": 2,
                      "outside_grid": 2, "used": 8}
    assert sum(counts[k] for k in gridding.COUNT_KEYS[1:]) == counts["samples"]
    cell = _cell(ds.isel({dims.TIME: 0}).sel({dims.PASS: "am"}), "M36", r, c)
    # V: 250, 251, 252 (fill, bad and 30 K masked); H: 240, 241, 242, 243, 244 (400 K masked)
    np.testing.assert_allclose(cell[dims.TB].values, [251.0, 242.0], rtol=1e-6)
    np.testing.assert_array_equal(cell[gridding.N_OBS].values, [3, 5])
    qf = int(cell[dims.QUALITY_FLAG])
    assert qf & QC.OUT_OF_RANGE_TB and qf & QC.RFI_SUSPECTED
    assert int(ds[dims.TB].count()) == 2
    # Only the block of cells the swath touched inside the window is returned.
    assert ds.sizes[dims.Y] == ds.sizes[dims.X] == 1


def test_all_fill_gives_no_grid():
    sw = _swath([np.nan, 5.0], [np.nan, 5.0], ["NaT", "2015-01-01T00:00"],
                [[np.nan, np.nan], [np.nan, np.nan]])
    ds, counts = gridding.grid_swath(sw, "smap", "M36")
    assert counts["fill"] == counts["samples"] == 4 and counts["used"] == 0
    # The geolocated observation leaves (zero) QC bits but no TB: nothing worth writing.
    assert int(ds[dims.TB].count()) == 0 and gridding.drop_empty_days(ds) is None
    nowhere, counts = gridding.grid_swath(_swath([np.nan], [np.nan], ["NaT"], [[250, 240]]),
                                          "smap", "M36")
    assert nowhere is None and counts["fill"] == 2


def test_inverse_distance_weighting_by_hand():
    g = grid.get("N36")
    r, c = 250, 260
    xc, yc = grid.rowcol_to_xy(g, r, c)
    # One observation 2 km from the centre, one 12 km away (same cell), opposite TB.
    xs = np.array([xc + 2000.0, xc - 12000.0])
    ys = np.array([yc, yc])
    lat, lon = grid.xy_to_latlon(g, xs, ys)
    sw = _swath(lat, lon, ["2015-01-01T12:00"] * 2, [[200, 200], [260, 260]])
    ds, _ = gridding.grid_swath(sw, "smap", "N36", weighting="inverse_distance")
    val = float(_cell(ds[dims.TB], "N36", r, c).max())
    w1, w2 = 1 / 3600.0, 1 / 12000.0      # distances floored at cell/10 = 3.6 km
    assert val == pytest.approx((200 * w1 + 260 * w2) / (w1 + w2), rel=1e-5)
    plain, _ = gridding.grid_swath(sw, "smap", "N36")
    assert float(_cell(plain[dims.TB], "N36", r, c).max()) == pytest.approx(230.0)


def test_merge_is_count_weighted_and_ors_flags():
    a, _ = gridding.grid_swath(
        _swath([60.0, 60.0], [20.0, 20.0], ["2015-03-01T04:00"] * 2, [[250, 240], [252, 242]],
               flags=[int(QC.RFI_SUSPECTED), 0]), "smap", "N36")
    b, _ = gridding.grid_swath(
        _swath([60.0, 60.0], [20.0, 20.0], ["2015-03-01T04:10", "2015-03-03T04:00"],
               [[260, 250], [270, 260]], flags=[int(QC.WATER_CONTAMINATION), 0]), "smap", "N36")
    m = gridding.merge_gridded(a, b)
    r, c = ease_ref.rowcol("N36", 60.0, 20.0)
    assert list(m[dims.TIME].values.astype("datetime64[D]").astype(str)) == [
        "2015-03-01", "2015-03-03"]
    cell = _cell(m, "N36", r, c).sel({dims.PASS: "am"})
    np.testing.assert_allclose(cell[dims.TB].values[0], [(250 + 252 + 260) / 3,
                                                          (240 + 242 + 250) / 3], rtol=1e-6)
    np.testing.assert_array_equal(cell[gridding.N_OBS].values[0], [3, 3])
    np.testing.assert_allclose(cell[dims.TB].values[1], [270, 260])
    assert int(cell[dims.QUALITY_FLAG].values[0]) == int(QC.RFI_SUSPECTED | QC.WATER_CONTAMINATION)
    # Three observations (04:00, 04:00, 04:10 UTC) at the cell-centre longitude.
    lt = 4 + (10 / 60) / 3 + float(ease_ref.cell_lon("N36", r, c)) / 15
    assert float(cell[dims.LOCAL_TIME].values[0]) == pytest.approx(lt, abs=1e-4)
    # Order of merging changes nothing but rounding.
    m2 = gridding.merge_gridded(b, a)
    np.testing.assert_allclose(m2[dims.TB].values, m[dims.TB].values, rtol=1e-6)


def test_merge_unites_disjoint_blocks_and_places_on_the_window():
    a, _ = gridding.grid_swath(_swath([60.0], [20.0], ["2015-03-01T04:00"], [[250, 240]]),
                               "smap", "N36")
    b, _ = gridding.grid_swath(_swath([62.0], [30.0], ["2015-03-01T03:00"], [[230, 220]]),
                               "smap", "N36")
    m = gridding.merge_gridded(a, b)
    ra, ca = ease_ref.rowcol("N36", 60.0, 20.0)
    rb, cb = ease_ref.rowcol("N36", 62.0, 30.0)
    assert int(m[dims.TB].count()) == 4
    np.testing.assert_allclose(_cell(m, "N36", ra, ca)[dims.TB].isel(
        {dims.TIME: 0}).sel({dims.PASS: "am"}).values, [250, 240])
    np.testing.assert_allclose(_cell(m, "N36", rb, cb)[dims.TB].isel(
        {dims.TIME: 0}).sel({dims.PASS: "am"}).values, [230, 220])
    assert list(m[dims.Y].values) == sorted(m[dims.Y].values, reverse=True)
    g = grid.get("N36")
    win = grid.Window(min(ra, rb) - 2, max(ra, rb) + 3, min(ca, cb) - 2, max(ca, cb) + 3)
    full = gridding.place_on(m, g.y[win.row0 : win.row1], g.x[win.col0 : win.col1])
    assert full.sizes[dims.Y] == win.shape[0] and full.sizes[dims.X] == win.shape[1]
    assert int(full[dims.TB].count()) == 4 and int(full[gridding.N_OBS].sum()) == 4
    assert full[dims.QUALITY_FLAG].dtype == np.uint16


def _random_swath(rng, n):
    lat = rng.uniform(55, 70, n)
    lon = rng.uniform(-160, -140, n)
    t = np.datetime64("2015-08-10T00:00", "s") + rng.integers(0, 3 * 86400, n).astype(
        "timedelta64[s]")
    tb = rng.uniform(30, 380, (n, 2))
    tb[rng.random((n, 2)) < 0.1] = np.nan
    bad = rng.random((n, 2)) < 0.1
    flags = rng.choice([0, 1, 4], n).astype(np.uint16)
    return _swath(lat, lon, t, tb, bad=bad, flags=flags)


def _subset(sw, sel):
    return Swath(channels=sw.channels, lat=sw.lat[sel], lon=sw.lon[sel], time=sw.time[sel],
                 tb=sw.tb[sel], bad=sw.bad[sel], flags=sw.flags[sel])


@hypothesis.settings(max_examples=6, deadline=None)
@hypothesis.given(seed=st.integers(0, 10_000), n=st.integers(2, 120),
                  split=st.floats(0.05, 0.95))
def test_gridding_a_split_swath_and_merging_equals_gridding_it_whole(seed, n, split):
    sw = _random_swath(np.random.default_rng(seed), n)
    k = max(1, int(n * split))
    whole, cw = gridding.grid_swath(sw, "smap", "N36")
    parts = [gridding.grid_swath(_subset(sw, s), "smap", "N36")
             for s in (slice(0, k), slice(k, n))]
    total = {key: parts[0][1][key] + parts[1][1][key] for key in gridding.COUNT_KEYS}
    assert total == cw
    assert sum(cw[key] for key in gridding.COUNT_KEYS[1:]) == cw["samples"]
    grids = [p[0] for p in parts if p[0] is not None]
    if whole is None:
        assert not grids
        return
    merged = grids[0] if len(grids) == 1 else gridding.merge_gridded(*grids)
    merged = gridding.place_on(merged, whole[dims.Y].values, whole[dims.X].values)
    np.testing.assert_allclose(merged[dims.TB].values, whole[dims.TB].values, rtol=1e-5)
    np.testing.assert_array_equal(merged[gridding.N_OBS].values, whole[gridding.N_OBS].values)
    np.testing.assert_array_equal(merged[dims.QUALITY_FLAG].values,
                                  whole[dims.QUALITY_FLAG].values)
    np.testing.assert_allclose(merged[dims.LOCAL_TIME].values, whole[dims.LOCAL_TIME].values,
                               rtol=1e-5)
