"""QA4SM pynetcf cell-file readers, checked against h5py reads of the same files by hand."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from pipeline import errors
from pipeline.io import qa4sm

pytestmark = pytest.mark.realdata

PUA_AKALA = (19.8, -155.333)


def _dir(qa4sm_dir, product):
    return qa4sm_dir / "input_data" / qa4sm.PRODUCTS[product].path


def test_indexed_ragged_smap(qa4sm_dir):
    """SMAP L3 AM+PM: observations of one location picked by locationIndex, J2000 seconds."""
    f = _dir(qa4sm_dir, "smap_l3") / "0165.nc"
    k = 3
    ds = qa4sm.read_location(f, k, ["soil_moisture", "Overpass"])
    with h5py.File(f) as h:
        sel = h["locationIndex"][:] == k
        sm = h["soil_moisture"][:][sel].astype(float)
        secs = h["time"][:][sel]
        gpi = int(h["location_id"][k])
    sm[sm == -9999.0] = np.nan
    t = np.datetime64("2000-01-01T12:00:00", "ns") + np.round(secs * 1e9).astype(
        "timedelta64[ns]")
    order = np.argsort(t, kind="stable")
    assert ds.sizes["time"] == sel.sum() > 1000
    np.testing.assert_array_equal(ds.time.values, t[order])
    np.testing.assert_array_equal(ds.soil_moisture.values, sm[order])
    assert int(ds.location_id) == gpi
    assert ds.time.to_index().is_monotonic_increasing
    # AM (Overpass 1) retrievals are at ~06:00 local solar time: 16-17 UTC at 155.5° W
    am = ds.time.values[ds.Overpass.values == 1]
    hours = (am - am.astype("datetime64[D]")) / np.timedelta64(1, "h")
    assert np.all((hours > 15.5) & (hours < 17.5))


def test_orthomulti_era5(qa4sm_dir):
    f = _dir(qa4sm_dir, "era5_land") / "0165.nc"
    ds = qa4sm.read_location(f, 10, ["swvl1", "stl1"])
    with h5py.File(f) as h:
        swvl1 = h["swvl1"][10, :]
        days = h["time"][:]
    assert ds.sizes["time"] == 730
    np.testing.assert_array_equal(ds.swvl1.values, swvl1.astype(float))
    assert ds.time.values[0] == np.datetime64("1858-11-17", "ns") + np.timedelta64(
        int(round(days[0] * 86400)), "s")
    assert 270 < float(ds.stl1.mean()) < 305          # K, tropical island


def test_contiguous_ragged_ascat_scaled(qa4sm_dir):
    """ASCAT: row_size blocks; sm stored ×100 with missing_value 65535 → percent saturation."""
    f = _dir(qa4sm_dir, "ascat") / "0165.nc"
    k = 5
    ds = qa4sm.read_location(f, k, ["sm"])
    with h5py.File(f) as h:
        rs = h["row_size"][:]
        a, b = int(rs[:k].sum()), int(rs[: k + 1].sum())
        raw = h["sm"][a:b].astype(float)
    raw = np.where(raw == 65535, np.nan, raw) * np.float32(0.01)
    assert ds.sizes["time"] == b - a
    np.testing.assert_allclose(np.sort(ds.sm.values), np.sort(raw), rtol=1e-6)
    assert np.nanmax(ds.sm.values) <= 100.0 + 1e-6


def test_nearest_grid_point_and_units(qa4sm_dir):
    s = qa4sm.read_series(qa4sm_dir, "smap_l3", *PUA_AKALA, quality=False)
    locs = qa4sm.locations(_dir(qa4sm_dir, "smap_l3"))
    # brute force: flat-earth distance is enough to rank points 0.4° apart at 20° N
    d2 = (locs.lat.values - PUA_AKALA[0]) ** 2 + (
        (locs.lon.values - PUA_AKALA[1]) * np.cos(np.radians(PUA_AKALA[0]))) ** 2
    assert int(s.location_id) == int(locs.location_id.values[np.argmin(d2)])
    assert float(s.distance_deg) == pytest.approx(0.174, abs=0.002)   # README: 0.17°
    assert s.attrs["units"] == "m3 m-3"
    assert set(np.unique(s.overpass.values)) == {"am", "pm"}
    v = s.values[np.isfinite(s.values)]
    assert 0.02 <= v.min() and v.max() <= 0.5           # SMAP valid_min/valid_max
    # GLDAS 0-10 cm water [kg m-2] / 100 = m3 m-3
    g = qa4sm.read_series(qa4sm_dir, "gldas", *PUA_AKALA)
    with h5py.File(_dir(qa4sm_dir, "gldas") / "0165.nc") as h:
        lat, lon = h["lat"][:], h["lon"][:]
        k = int(np.flatnonzero((lat == np.float32(float(g.lat))) & (lon == np.float32(
            float(g.lon))))[0])
        raw = h["SoilMoi0_10cm_inst"][k, :]
    np.testing.assert_allclose(g.values, raw / 100.0)


def test_quality_filter_smap(qa4sm_dir):
    """Default filter keeps only retrieval_qual_flag bit 0 clear ('recommended')."""
    d = _dir(qa4sm_dir, "smap_l3")
    with h5py.File(d / "0165.nc") as h:
        q_all = h["retrieval_qual_flag"][:]
        li = h["locationIndex"][:]
        sm_all = h["soil_moisture"][:]
        k = int(np.argmax(np.bincount(li[((q_all & 1) == 0) & (sm_all > 0)])))
        lat, lon = float(h["lat"][k]), float(h["lon"][k])
    q, sm = q_all[li == k], sm_all[li == k]
    raw = qa4sm.read_series(qa4sm_dir, "smap_l3", lat, lon, quality=False)
    good = qa4sm.read_series(qa4sm_dir, "smap_l3", lat, lon, quality=True)
    assert float(good.distance_deg) == pytest.approx(0.0, abs=1e-5)
    assert int(raw.notnull().sum()) == int((sm != -9999.0).sum())
    assert int(good.notnull().sum()) == int((((q & 1) == 0) & (sm != -9999.0)).sum()) > 0
    assert good.attrs["quality_filter"].startswith("retrieval_qual_flag bit 0")


def test_errors(qa4sm_dir, tmp_path):
    with pytest.raises(errors.InputDataError, match="unknown QA4SM product"):
        qa4sm.read_series(qa4sm_dir, "amsr9", *PUA_AKALA)
    with pytest.raises(errors.InputDataError, match="nearest grid point .* away"):
        qa4sm.read_series(qa4sm_dir, "smap_l3", 40.0, -100.0)
    with pytest.raises(errors.InputDataError, match="no pynetcf cell files"):
        qa4sm.locations(tmp_path)
    bad = tmp_path / "0001.nc"
    bad.write_bytes(b"not netcdf")
    with pytest.raises(errors.InputDataError, match="not a readable netCDF-4 file"):
        qa4sm.locations(tmp_path)
