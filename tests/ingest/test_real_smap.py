"""Real SMAP granules ingest, and stored values trace back to the files (read here with h5py).

Expectations are computed from the raw HDF5 in the test (h5py, pyproj and the data-contract
grid formula), not through the readers under test.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from pipeline import dims, freeze_thaw, schema
from pipeline.graphs import ingest as graph
from pipeline.ingest import gridding
from pipeline.io import stores
from tests.ingest import ease_ref

pytestmark = pytest.mark.realdata

G = "Soil_Moisture_Retrieval_Data"
TOOLIK = (68.63, -149.60)


def _raw(path, names):
    with h5py.File(path, "r") as f:
        return {n: f[G][n][()] for n in names}


def _great_circle_deg(lat0, lon0, lat, lon):
    p0, p = np.radians(lat0), np.radians(lat)
    dl = np.radians(lon - lon0)
    c = np.sin(p0) * np.sin(p) + np.cos(p0) * np.cos(p) * np.cos(dl)
    return np.degrees(np.arccos(np.clip(c, -1, 1)))


def _utc(strings):
    """ISO strings → datetime64[ms]; SMAP writes unknown milliseconds as '.***'."""
    text = [s.decode().strip().rstrip("Z").replace(".***", "") for s in strings]
    return np.array([t if t[:1].isdigit() else "NaT" for t in text], "datetime64[ms]")


@pytest.fixture(scope="module")
def l2_orbit_archive(tmp_path_factory, smap_l2_files):
    root = tmp_path_factory.mktemp("l2")
    rep = graph.ingest_files([str(smap_l2_files[0])], str(root), target="M36",
                             scheduler="synchronous")
    return root, rep


def test_l2_toolik_cell_traces_to_the_granule(l2_orbit_archive, smap_l2_files):
    root, rep = l2_orbit_archive
    path = smap_l2_files[0]
    assert "02801" in path.name and rep["files"][0]["status"] == "ingested"
    raw = _raw(path, ["latitude", "longitude", "tb_h_corrected", "tb_v_corrected",
                      "EASE_row_index", "EASE_column_index", "tb_time_utc"])
    i = int(np.argmin(_great_circle_deg(*TOOLIK, raw["latitude"], raw["longitude"])))
    assert _great_circle_deg(*TOOLIK, raw["latitude"][i], raw["longitude"][i]) < 0.2
    tbh, tbv = float(raw["tb_h_corrected"][i]), float(raw["tb_v_corrected"][i])
    assert tbh == pytest.approx(246.9, abs=0.05) and tbv == pytest.approx(255.9, abs=0.05)
    row, col = int(raw["EASE_row_index"][i]), int(raw["EASE_column_index"][i])
    # The granule's own EASE indices agree with an independent projection of its lat/lon.
    r2, c2 = ease_ref.rowcol("M36", raw["latitude"][i], raw["longitude"][i])
    assert (int(r2), int(c2)) == (row, col)
    day, pas = ease_ref.local_date_pass(_utc(raw["tb_time_utc"][i : i + 1]),
                                        ease_ref.cell_lon("M36", row, col))
    # 02:17 UTC at 150 W is 16:20 local solar time on 10 August (the 6 PM ascending pass).
    assert (str(day[0]), str(pas[0])) == ("2015-08-10", "pm")
    ds = stores.open_dataset(stores.tb_url(str(root), "smap"))
    cell = ds.sel({dims.TIME: day[0], dims.PASS: pas[0]}).isel({dims.Y: row, dims.X: col})
    assert float(cell[dims.TB].sel({dims.CHANNEL: "1.41H"})) == tbh
    assert float(cell[dims.TB].sel({dims.CHANNEL: "1.41V"})) == tbv
    assert float(cell[dims.LAT]) == pytest.approx(raw["latitude"][i], abs=0.01)


def test_l2_every_good_cell_is_in_the_store(l2_orbit_archive, smap_l2_files):
    root, rep = l2_orbit_archive
    raw = _raw(smap_l2_files[0], ["latitude", "longitude", "tb_h_corrected", "tb_qual_flag_h",
                                  "tb_time_utc"])
    tb = raw["tb_h_corrected"].astype(float)
    good = (tb > -9990) & ((raw["tb_qual_flag_h"] & 0b11) == 0) & (tb >= 50) & (tb <= 350)
    rows, cols = ease_ref.rowcol("M36", raw["latitude"], raw["longitude"])
    day, pas = ease_ref.local_date_pass(_utc(raw["tb_time_utc"]),
                                        ease_ref.cell_lon("M36", rows, cols))
    ds = stores.open_dataset(stores.tb_url(str(root), "smap")).load()
    ti = np.searchsorted(ds[dims.TIME].values, day.astype("datetime64[ns]"))
    pi = np.where(pas == "am", 0, 1)
    ci = list(ds[dims.CHANNEL].values).index("1.41H")
    stored = ds[dims.TB].values[ti, pi, ci, rows, cols]
    np.testing.assert_array_equal(stored[good], tb[good].astype(np.float32))
    assert np.isnan(stored[~good]).all()
    # Sample accounting: every H and V sample is in exactly one class.
    c = rep["files"][0]["counts"]
    assert c["samples"] == 2 * len(tb)
    assert c["used"] + c["fill"] + c["bad_quality"] + c["out_of_range"] + c["outside_grid"] \
        == c["samples"]
    assert int(ds[gridding.N_OBS].sum()) == c["used"]


def test_l3_global_day_ingests_and_passes_schema(smap_l3_archive, smap_l3_file):
    root, rep = smap_l3_archive
    url = stores.tb_url(str(root), "smap")
    assert rep["files"][0]["status"] == "ingested" and rep["checks"]["schema"]["smap"] == "passed"
    ds = stores.open_dataset(url)
    schema.check(ds, schema.tb_spec("smap"), context=url)
    assert ds.sizes[dims.Y] == 406 and ds.sizes[dims.X] == 964
    raw = _raw(smap_l3_file, ["tb_v_corrected", "tb_qual_flag_v", "EASE_row_index",
                              "EASE_column_index", "tb_time_utc"])
    tb = raw["tb_v_corrected"].astype(float)
    good = (tb > -9990) & ((raw["tb_qual_flag_v"] & 0b11) == 0) & (tb >= 50) & (tb <= 350)
    rows, cols = np.nonzero(good)
    assert (raw["EASE_row_index"][rows, cols] == rows).all()
    assert (raw["EASE_column_index"][rows, cols] == cols).all()
    day, pas = ease_ref.local_date_pass(_utc(raw["tb_time_utc"][rows, cols]),
                                        ease_ref.cell_lon("M36", rows, cols))
    ds = ds.load()
    ti = np.searchsorted(ds[dims.TIME].values, day.astype("datetime64[ns]"))
    stored = ds[dims.TB].values[ti, np.where(pas == "am", 0, 1), 0, rows, cols]
    assert list(ds[dims.CHANNEL].values).index("1.41V") == 0
    np.testing.assert_array_equal(stored, tb[rows, cols].astype(np.float32))
    assert int(ds[dims.TB].isel({dims.CHANNEL: 0}).count()) == good.sum()
    # The file's 9+13 cells above 350 K are masked and counted as out of range.
    n_hot = int(((raw["tb_v_corrected"] > 350)).sum())
    assert rep["files"][0]["counts"]["out_of_range"] >= n_hot > 0
    assert float(ds[dims.TB].max()) <= 350.0
    lt = ds[dims.LOCAL_TIME]
    assert bool((lt.sel({dims.PASS: "am"}).fillna(0) < 12).all())
    assert bool((lt.sel({dims.PASS: "pm"}).fillna(12) >= 12).all())


def test_l3_ft_npr_baseline_reported(smap_l3_archive, smap_l3_file):
    root, rep = smap_l3_archive
    ft = rep["checks"]["smap_ft_npr_baseline"]
    main = next(r for r in ft["by_day_pass"] if (r["date"], r["pass"]) == ("2015-04-01", "am"))
    with h5py.File(smap_l3_file, "r") as f:
        g = f[G]
        v = g["tb_v_corrected"][()].astype(float)
        h = g["tb_h_corrected"][()].astype(float)
        qv, qh = g["tb_qual_flag_v"][()], g["tb_qual_flag_h"][()]
        ftf = g["freeze_thaw_fraction"][()].astype(float)
        times = g["tb_time_utc"][()]
    ok = (v > 50) & (v <= 350) & (h >= 50) & (h <= 350) & ((qv & 3) == 0) & ((qh & 3) == 0)
    rows, cols = np.nonzero(ok)
    lat = ease_ref_lat(rows, cols)
    day, pas = ease_ref.local_date_pass(_utc(times[rows, cols]),
                                        ease_ref.cell_lon("M36", rows, cols))
    sel = (lat >= 60) & (day == np.datetime64("2015-04-01")) & (pas == "am")
    vv, hh = v[rows, cols][sel], h[rows, cols][sel]
    npr = (vv - hh) / (vv + hh)
    delta = (npr - freeze_thaw.CLIMATOLOGICAL_NPR_FR) / (
        freeze_thaw.CLIMATOLOGICAL_NPR_TH - freeze_thaw.CLIMATOLOGICAL_NPR_FR)
    frozen = delta < 0.5
    granule_frozen = ftf[rows, cols][sel] >= 0.5
    assert main["all"]["n_cells"] == sel.sum()
    assert main["all"]["frozen_fraction_npr"] == pytest.approx(frozen.mean(), abs=1e-9)
    assert main["all"]["frozen_fraction_granule"] == pytest.approx(granule_frozen.mean(),
                                                                   abs=1e-9)
    assert main["all"]["agreement"] == pytest.approx((frozen == granule_frozen).mean(), abs=1e-9)
    # Early April north of 60 N is mostly frozen according to the granule itself.
    assert main["all"]["frozen_fraction_granule"] > 0.8
    assert 0 <= main["land"]["frozen_fraction_npr"] <= 1


def ease_ref_lat(rows, cols):
    """Latitude of M36 cell centres (independent pyproj inverse)."""
    import pyproj

    epsg, ncols, nrows, cell = ease_ref.GRIDS["M36"]
    x = (cols + 0.5 - ncols / 2) * cell
    y = (nrows / 2 - rows - 0.5) * cell
    tr = pyproj.Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
    return np.asarray(tr.transform(x, y)[1])
