"""EASE-Grid 2.0 grids against the data contract, published NSIDC values and Snyder's formulas.

Independent references used here (not pyproj, which pipeline.grid itself uses):
* docs/data-contract.md: cell-centre formula, shapes and cell sizes;
* Brodzik et al. (2012), EASE-Grid 2.0, NSIDC: M36 map extent x ±17367530.45 m,
  y ±7314540.83 m (so the global grids end at ±85.0445664° latitude); N grids ±9000000 m;
* Snyder (1987), Map Projections — A Working Manual, USGS PP 1395: ellipsoidal cylindrical
  equal-area (eq. 10-15) and polar Lambert azimuthal equal-area (eq. 3-12, 14-15, 21-25),
  coded below on WGS 84 with the standard parallel 30° of EPSG:6933.
"""

from __future__ import annotations

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from pipeline import dims, grid
from pipeline.io import stores

# Data-contract table: name -> (EPSG, cols, rows, cell size [m]).
CONTRACT = {
    "M36": (6933, 964, 406, 36032.220840584),
    "M25": (6933, 1388, 584, 25025.260000),
    "M09": (6933, 3856, 1624, 9008.055210146),
    "N36": (6931, 500, 500, 36000.0),
    "N25": (6931, 720, 720, 25000.0),
    "N09": (6931, 2000, 2000, 9000.0),
}

# WGS 84 and Snyder's authalic-latitude function q(phi).
A = 6378137.0
F = 1 / 298.257223563
E2 = F * (2 - F)
E = np.sqrt(E2)


def _q(lat_deg):
    s = np.sin(np.radians(lat_deg))
    return (1 - E2) * (s / (1 - E2 * s**2) - np.log((1 - E * s) / (1 + E * s)) / (2 * E))


def snyder_cea(lat_deg, lon_deg, lat_ts_deg=30.0):
    """Ellipsoidal normal cylindrical equal-area (Snyder eq. 10-15), x/y [m]."""
    s = np.sin(np.radians(lat_ts_deg))
    k0 = np.cos(np.radians(lat_ts_deg)) / np.sqrt(1 - E2 * s**2)
    return A * k0 * np.radians(lon_deg), A * _q(lat_deg) / (2 * k0)


def snyder_laea_north(lat_deg, lon_deg):
    """Ellipsoidal north-polar Lambert azimuthal equal-area (Snyder eq. 21-25), x/y [m]."""
    rho = A * np.sqrt(_q(90.0) - _q(lat_deg))
    lam = np.radians(lon_deg)
    return rho * np.sin(lam), -rho * np.cos(lam)


def snyder(name, lat, lon):
    return snyder_cea(lat, lon) if name.startswith("M") else snyder_laea_north(lat, lon)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_grid_definitions_and_coordinates_follow_the_contract(name):
    epsg, ncols, nrows, cell = CONTRACT[name]
    g = grid.get(name)
    assert (g.epsg, g.ncols, g.nrows, g.cell_m) == (epsg, ncols, nrows, cell)
    assert g.shape == (nrows, ncols) and grid.get(name.lower()) is g
    j, i = np.arange(ncols), np.arange(nrows)
    np.testing.assert_array_equal(g.x, (j + 0.5 - ncols / 2) * cell)
    np.testing.assert_array_equal(g.y, (nrows / 2 - i - 0.5) * cell)
    # Cell centres are symmetric about the projection origin.
    np.testing.assert_allclose(g.x + g.x[::-1], 0, atol=1e-6)
    np.testing.assert_allclose(g.y + g.y[::-1], 0, atol=1e-6)
    assert g.cell_area_m2 == pytest.approx(cell**2)


@pytest.mark.parametrize(
    ("name", "half_x", "half_y"),
    [
        ("M36", 17367530.45, 7314540.83),
        ("M25", 17367530.44, 7307375.92),
        ("M09", 17367530.45, 7314540.83),
        ("N36", 9000000.0, 9000000.0),
        ("N25", 9000000.0, 9000000.0),
        ("N09", 9000000.0, 9000000.0),
    ],
)
def test_map_extent_matches_published_nsidc_values(name, half_x, half_y):
    g = grid.get(name)
    assert g.x[0] - g.cell_m / 2 == pytest.approx(-half_x, abs=0.01)
    assert g.x[-1] + g.cell_m / 2 == pytest.approx(half_x, abs=0.01)
    assert g.y[0] + g.cell_m / 2 == pytest.approx(half_y, abs=0.01)
    assert g.y[-1] - g.cell_m / 2 == pytest.approx(-half_y, abs=0.01)
    # The corner of the grid in row/col space is (-0.5, -0.5).
    r, c = grid.xy_to_rowcol(g, -half_x, half_y)
    assert (float(r), float(c)) == pytest.approx((-0.5, -0.5), abs=1e-6)


def test_global_grid_edges_are_at_published_latitude():
    for name in ("M36", "M09"):
        g = grid.get(name)
        lat, lon = grid.xy_to_latlon(g, -g.ncols * g.cell_m / 2, g.nrows * g.cell_m / 2)
        assert float(lat) == pytest.approx(85.0445664, abs=1e-6)
        assert float(lon) == pytest.approx(-180.0, abs=1e-9)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_projection_matches_snyder_formulas(name):
    g = grid.get(name)
    top = 84.9 if g.is_global else 89.99
    bottom = -84.9 if g.is_global else 0.0
    lat = np.array([bottom, -45.0, 0.0, 30.0, 45.0, 68.63, top])
    lat = lat[lat >= bottom]
    lat, lon = np.meshgrid(lat, [-179.5, -149.6, -45.0, 0.0, 12.5, 90.0, 179.5])
    x, y = grid.latlon_to_xy(g, lat, lon)
    xs, ys = snyder(name, lat, lon)
    np.testing.assert_allclose(x, xs, atol=1e-3)
    np.testing.assert_allclose(y, ys, atol=1e-3)
    # And the inverse: the centres of a few cells unproject to Snyder-consistent lat/lon.
    rows = np.array([0, g.nrows // 3, g.nrows // 2, g.nrows - 1])
    cols = np.array([0, g.ncols // 4, g.ncols // 2 - 1, g.ncols - 1])
    if not g.is_global:  # corners of the N grids lie beyond the equator; stay inside 0-90 N
        rows, cols = rows[1:3], cols[1:3]
    cx, cy = grid.rowcol_to_xy(g, rows, cols)
    la, lo = grid.xy_to_latlon(g, cx, cy)
    xs, ys = snyder(name, la, lo)
    np.testing.assert_allclose(xs, cx, atol=1e-3)
    np.testing.assert_allclose(ys, cy, atol=1e-3)


def test_origin_cells_of_m36():
    g = grid.get("M36")
    assert g.shape == (406, 964)
    # The origin (0 N, 0 E) is the corner shared by rows 202/203 and columns 481/482.
    assert grid.xy_to_rowcol(g, 0.0, 0.0) == pytest.approx((202.5, 481.5))
    rows, cols = grid.latlon_to_rowcol(g, [0.1, 0.1, -0.1, -0.1], [0.1, -0.1, 0.1, -0.1])
    assert rows.tolist() == [202, 202, 203, 203] and cols.tolist() == [482, 481, 482, 481]
    x, y = grid.rowcol_to_xy(g, 203, 482)
    assert (float(x), float(y)) == pytest.approx((g.cell_m / 2, -g.cell_m / 2))
    lat, lon = grid.xy_to_latlon(g, x, y)
    xs, ys = snyder_cea(lat, lon)
    assert (float(xs), float(ys)) == pytest.approx((float(x), float(y)), abs=1e-3)
    assert float(lon) == pytest.approx(np.degrees(g.cell_m / 2 / (A * np.cos(np.radians(30))
                                                                   / np.sqrt(1 - E2 / 4))))


def test_north_pole_is_the_centre_corner_of_n36():
    g = grid.get("N36")
    assert grid.xy_to_rowcol(g, 0.0, 0.0) == pytest.approx((249.5, 249.5))
    lat, lon = grid.xy_to_latlon(g, 0.0, 0.0)
    assert float(lat) == pytest.approx(90.0)
    rows, cols = grid.latlon_to_rowcol(g, [89.9] * 4, [45.0, 135.0, -45.0, -135.0])
    # y = -rho cos(lon): 45 E lies below the pole (row 250), 135 E above (row 249).
    assert rows.tolist() == [250, 249, 250, 249] and cols.tolist() == [250, 250, 249, 249]
    # Centre of cell (249, 249), north-west of the pole: x = -18 km, y = +18 km, i.e. on the
    # 135 W meridian at rho = 18 km * sqrt(2) from the pole.
    cx, cy = grid.rowcol_to_xy(g, 249, 249)
    assert (float(cx), float(cy)) == (-18000.0, 18000.0)
    la, lo = grid.xy_to_latlon(g, cx, cy)
    assert float(lo) == pytest.approx(-135.0)
    xs, ys = snyder_laea_north(la, lo)
    assert (float(xs), float(ys)) == pytest.approx((-18000.0, 18000.0), abs=1e-3)
    assert float(A * np.sqrt(_q(90.0) - _q(la))) == pytest.approx(18000 * np.sqrt(2), abs=1e-3)


def test_outside_the_grid_is_minus_one():
    rows, cols = grid.latlon_to_rowcol("M36", [86.0, -86.0, 10.0], [0.0, 0.0, 10.0])
    assert rows.tolist()[:2] == [-1, -1] and cols.tolist()[:2] == [-1, -1]
    assert rows[2] >= 0 and cols[2] >= 0
    rows, cols = grid.latlon_to_rowcol("N36", [-10.0, -60.0], [0.0, 100.0])
    assert rows.tolist() == [-1, -1] and cols.tolist() == [-1, -1]
    rows, cols = grid.latlon_to_rowcol("N36", [np.nan, 70.0], [0.0, np.nan])
    assert rows.tolist() == [-1, -1] and cols.tolist() == [-1, -1]
    lat, lon = grid.xy_to_latlon("M36", [0.0, 0.0], [np.nan, 1e9])  # off the map: NaN, no error
    assert np.isnan(lat).all()


# --- round trips ------------------------------------------------------------------------------
def _round_trip_error_m(name, lat, lon):
    x, y = grid.latlon_to_xy(name, lat, lon)
    lat2, lon2 = grid.xy_to_latlon(name, x, y)
    x2, y2 = grid.latlon_to_xy(name, lat2, lon2)
    return np.hypot(x2 - x, y2 - y)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_latlon_xy_round_trip_within_a_millimetre(name):
    rng = np.random.default_rng(3)
    lat = rng.uniform(-85, 85, 2000) if name.startswith("M") else rng.uniform(0, 90, 2000)
    lon = rng.uniform(-180, 180, 2000)
    assert _round_trip_error_m(name, lat, lon).max() < 1e-3
    g = grid.get(name)
    # And x/y → lat/lon → x/y for every cell centre on a coarse sub-lattice.
    xx, yy = np.meshgrid(g.x[:: max(1, g.ncols // 50)], g.y[:: max(1, g.nrows // 50)])
    la, lo = grid.xy_to_latlon(g, xx, yy)
    ok = np.isfinite(la)
    x2, y2 = grid.latlon_to_xy(g, la[ok], lo[ok])
    assert np.hypot(x2 - xx[ok], y2 - yy[ok]).max() < 1e-3


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(
    name=st.sampled_from(sorted(CONTRACT)),
    lat=st.floats(-85.04, 85.04),
    lon=st.floats(-180.0, 180.0),
)
def test_round_trip_property(name, lat, lon):
    if name.startswith("N"):
        lat = abs(lat)
    assert float(_round_trip_error_m(name, lat, lon)) < 1e-3
    row, col = grid.latlon_to_rowcol(name, lat, lon)
    if row >= 0:
        # The cell found contains the point: its centre is within half a cell in x and y.
        x, y = grid.latlon_to_xy(name, lat, lon)
        cx, cy = grid.rowcol_to_xy(name, row, col)
        half = grid.get(name).cell_m / 2 + 1e-6
        assert abs(float(x - cx)) <= half and abs(float(y - cy)) <= half


# --- windows ----------------------------------------------------------------------------------
def test_window_parse_check_and_attrs():
    w = grid.Window.parse("10, 20, 30, 45")
    assert w == grid.Window(10, 20, 30, 45) == grid.Window.parse([10, 20, 30, 45])
    assert w.shape == (10, 15) and w.as_list() == [10, 20, 30, 45]
    for bad in ("1,2,3", "5,5,0,1", "3,2,0,1", [-1, 2, 0, 1]):
        with pytest.raises(ValueError):
            grid.Window.parse(bad)
    with pytest.raises(ValueError, match="exceeds grid N36"):
        grid.Window(0, 501, 0, 10).check(grid.get("N36"))
    g, w2 = grid.window_from_attrs({"grid": "n36", "grid_window": [10, 20, 30, 45]})
    assert g.name == "N36" and w2 == w
    g, w3 = grid.window_from_attrs({"grid": "M09"})
    assert w3 == grid.Window(0, 1624, 0, 3856)
    with pytest.raises(KeyError):
        grid.window_from_attrs({})
    with pytest.raises(KeyError, match="unknown EASE-Grid"):
        grid.get("S36")


def test_window_for_bbox_contains_the_box_and_is_minimal():
    g = grid.get("N36")
    box = (55.0, 72.0, -170.0, -130.0)  # Alaska
    w = grid.window_for_bbox(g, *box)
    la, lo = np.meshgrid(np.linspace(box[0], box[1], 300), np.linspace(box[2], box[3], 300))
    rows, cols = grid.latlon_to_rowcol(g, la, lo)
    assert rows.min() >= 0
    assert (w.row0, w.col0) == (rows.min(), cols.min())
    assert (w.row1, w.col1) == (rows.max() + 1, cols.max() + 1)
    # Toolik Field Station falls inside; a point in Siberia does not.
    (r,), (c,) = grid.latlon_to_rowcol(g, [68.63], [-149.60])
    assert w.row0 <= r < w.row1 and w.col0 <= c < w.col1
    (r,), (c,) = grid.latlon_to_rowcol(g, [62.0], [130.0])
    assert not (w.row0 <= r < w.row1 and w.col0 <= c < w.col1)
    assert grid.window_for_bbox("M36", -90, 90, -180, 180) == grid.get("M36").full_window()
    with pytest.raises(ValueError, match="invalid lat/lon box"):
        grid.window_for_bbox(g, 10, 5, 0, 1)


def test_grid_coords_of_a_window_and_attrs_round_trip(tmp_path):
    g = grid.get("M25")
    w = grid.Window(100, 112, 700, 716)
    ds = grid.grid_coords(g, w)
    np.testing.assert_array_equal(ds[dims.X].values, g.x[700:716])
    np.testing.assert_array_equal(ds[dims.Y].values, g.y[100:112])
    assert ds[dims.LAT].dtype == np.float32 and ds[dims.LAT].dims == (dims.Y, dims.X)
    xx, yy = np.meshgrid(ds[dims.X].values, ds[dims.Y].values)
    xs, ys = snyder_cea(ds[dims.LAT].values.astype(np.float64),
                        ds[dims.LON].values.astype(np.float64))
    # float32 lat/lon: 1e-5 deg is about 1 m.
    np.testing.assert_allclose(xs, xx, atol=3.0)
    np.testing.assert_allclose(ys, yy, atol=3.0)
    crs = ds[dims.CRS].attrs
    assert crs["epsg_code"] == 6933 and crs["standard_parallel"] == 30.0
    assert crs["grid_mapping_name"] == "lambert_cylindrical_equal_area"
    assert "EASE-Grid 2.0 Global" in crs["spatial_ref"]
    n = grid.crs_variable("N09").attrs
    assert n["grid_mapping_name"] == "lambert_azimuthal_equal_area"
    assert n["latitude_of_projection_origin"] == 90.0 and n["epsg_code"] == 6931
    assert grid.crs_variable(4326).attrs["epsg_code"] == 4326
    url = str(tmp_path / "coords.zarr")
    stores.write_dataset(ds, url)
    g2, w2 = grid.window_from_attrs(stores.open_dataset(url).attrs)
    assert (g2, w2) == (g, w)


# --- binning ----------------------------------------------------------------------------------
def test_bin_to_grid_against_hand_computation():
    g = grid.get("N36")
    w = grid.Window(200, 203, 300, 304)
    # Observation positions: offsets [m] from the centres of chosen cells, well inside them.
    cells = [(200, 300), (200, 300), (200, 300), (201, 302), (202, 303), (202, 303), (199, 300)]
    offsets = [(1000, -2000), (-5000, 3000), (0, 0), (10000, 10000), (-17000, 0), (0, 17000),
               (0, 0)]
    values = np.array([[250.0, 200.0], [260.0, np.nan], [270.0, 210.0], [240.0, 190.0],
                       [230.0, 180.0], [np.nan, np.nan], [999.0, 999.0]])
    cx, cy = grid.rowcol_to_xy(g, *np.array(cells).T)
    lat, lon = grid.xy_to_latlon(g, cx + np.array(offsets)[:, 0], cy + np.array(offsets)[:, 1])
    mean, count = grid.bin_to_grid(g, lat, lon, values, window=w)
    assert mean.shape == (3, 4, 2) and count.dtype == np.int32
    expect_mean = np.full((3, 4, 2), np.nan)
    expect_count = np.zeros((3, 4, 2), int)
    expect_mean[0, 0] = [(250 + 260 + 270) / 3, (200 + 210) / 2]
    expect_count[0, 0] = [3, 2]
    expect_mean[1, 2] = [240, 190]
    expect_count[1, 2] = [1, 1]
    expect_mean[2, 3] = [230, 180]
    expect_count[2, 3] = [1, 1]  # the all-NaN observation adds nothing; row 199 is outside
    np.testing.assert_allclose(mean, expect_mean)
    np.testing.assert_array_equal(count, expect_count)
    # One channel, with weights: weighted mean sum(w v) / sum(w).
    wts = np.array([1.0, 3.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    m1, c1 = grid.bin_to_grid(g, lat, lon, values[:, 0], window=w, weights=wts)
    assert m1.shape == (3, 4)
    assert m1[0, 0] == pytest.approx((250 * 1 + 260 * 3) / 4)
    assert c1[0, 0] == 2  # zero weight excludes the observation
    assert np.isnan(m1[0, 1]) and c1[0, 1] == 0


def test_cells_mismatch_names_the_dim_and_the_first_differing_cell():
    a = grid.grid_coords("M36", grid.Window(100, 103, 300, 304))
    assert grid.cells_mismatch(a, a.copy()) is None
    assert grid.cells_mismatch(a, grid.grid_coords("M36", grid.Window(100, 103, 300, 305))) == \
        "dim 'x' has 4 cells, the other store 5"
    moved = grid.grid_coords("M36", grid.Window(101, 104, 300, 304))
    msg = grid.cells_mismatch(a, moved)
    assert msg.startswith("dim 'y' coordinates differ (y[0] = ") and "another grid" in msg
    # float32-stored coordinates of the same cells still match, also at the grid's edge
    assert grid.cells_mismatch(a.assign_coords(x=a["x"].astype("float32")), a) is None
    edge = grid.grid_coords("M09", grid.Window(0, 2, 3852, 3856))
    assert abs(float(edge["x"].max())) > 1.7e7
    assert grid.cells_mismatch(edge.assign_coords(x=edge["x"].astype("float32")), edge) is None
