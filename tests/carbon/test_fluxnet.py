"""Tower and SPL4CMDL readers: real FLUXNET files reproduced exactly; a small SPL4CMDL file."""

from __future__ import annotations

import csv

import h5py
import numpy as np
import pytest

from pipeline import errors, grid, schema
from pipeline.io import fluxnet

DD = "fluxdatakit/FLX_US-Wi7_FLUXNET2015_FULLSET_DD_2005-2005_1-4.csv"
SITES = "fluxdatakit/fluxnet2015_site_list.csv"
ZARR = "fluxnet2015_zarr_subset/fluxnet.zarr"


@pytest.fixture(scope="module")
def meta(real_data):
    return fluxnet.read_site_list(str(real_data / SITES))


@pytest.fixture(scope="module")
def dd(real_data, meta):
    return fluxnet.read_fluxnet_dd([str(real_data / DD)], meta)


def _raw_rows(path):
    with open(path, newline="") as f:
        return {r["TIMESTAMP"]: r for r in csv.DictReader(f)}


@pytest.mark.realdata
def test_dd_reader_reproduces_the_file(real_data, dd):
    rows = _raw_rows(real_data / DD)
    site = dd.sel(site="US-Wi7")
    for day in ("20050102", "20050415", "20050719", "20051231"):
        r = rows[day]
        d = site.sel(time=np.datetime64(f"{day[:4]}-{day[4:6]}-{day[6:]}"))
        for var, col, scale, off in (
            ("nee", "NEE_VUT_REF", 1, 0), ("gpp", "GPP_NT_VUT_REF", 1, 0),
            ("reco", "RECO_NT_VUT_REF", 1, 0), ("nee_qc", "NEE_VUT_REF_QC", 1, 0),
            ("ta", "TA_F", 1, 273.15), ("sw_in", "SW_IN_F", 1, 0), ("vpd", "VPD_F", 100, 0),
            ("tmin", "TA_F_NIGHT", 1, 273.15),
        ):
            want = float(r[col]) * scale + off
            assert float(d[var]) == pytest.approx(want, rel=1e-6, abs=1e-5), (day, var)
    # One literal check straight from the file: 2005-01-01 TA_F = -13.113 degC.
    assert float(site.ta[0]) == pytest.approx(-13.113 + 273.15, abs=1e-4)
    assert site.sizes["time"] == 365
    assert "TA_F_NIGHT" in site.tmin.attrs["source_column"]
    assert int(site.pft) == 5 and str(site.igbp.values) == "OSH"
    schema.check(dd, schema.TOWERS, context="US-Wi7 DD")


@pytest.mark.realdata
def test_dd_reader_missing_values_and_errors(real_data, meta, tmp_path):
    text = (real_data / DD).read_text().splitlines()
    header = text[0].split(",")
    i = header.index("NEE_VUT_REF")
    row = text[5].split(",")
    row[i] = "-9999"
    text[5] = ",".join(row)
    p = tmp_path / "FLX_US-Wi7_FLUXNET2015_FULLSET_DD_2005-2005_1-4.csv"
    p.write_text("\n".join(text) + "\n")
    ds = fluxnet.read_fluxnet_dd([str(p)], meta)
    assert np.isnan(float(ds.nee[0, 4])) and np.isfinite(float(ds.gpp[0, 4]))
    bad = tmp_path / "FLX_US-Wi7_bad.csv"
    bad.write_text("TIMESTAMP,TA_F\n20050101,1.0\n")
    with pytest.raises(errors.InputDataError, match="NEE_VUT_REF"):
        fluxnet.read_fluxnet_dd([str(bad)], meta)


@pytest.mark.realdata
def test_zarr_daily_aggregation_equals_the_dd_file(real_data, meta, dd):
    z = fluxnet.read_fluxnet_zarr(str(real_data / ZARR), ["US-Wi7"], meta).sel(site="US-Wi7")
    assert int(z.utc_offset_hours) == -6
    rows = _raw_rows(real_data / DD)
    ustar50 = {k: np.array([float(rows[t][c]) for t in sorted(rows)]) for k, c in
               (("nee", "NEE_VUT_USTAR50"), ("gpp", "GPP_NT_VUT_USTAR50"))}
    zz = z.sel(time=dd.time)
    # The Zarr holds the USTAR50 variant: µmol CO2 m-2 s-1 -> g C m-2 d-1 daily means agree with
    # the official daily file to the uint16 packing precision.
    np.testing.assert_allclose(zz.nee.values, ustar50["nee"], atol=2e-3)
    np.testing.assert_allclose(zz.gpp.values, ustar50["gpp"], atol=2e-3)
    np.testing.assert_allclose(zz.ta.values, dd.ta.sel(site="US-Wi7").values, atol=2e-3)
    np.testing.assert_allclose(zz.sw_in.values, dd.sw_in.sel(site="US-Wi7").values, atol=0.01)
    np.testing.assert_allclose(zz.vpd.values, dd.vpd.sel(site="US-Wi7").values, atol=0.2)
    # Daily minimum from the half-hours is never above the mean night-time temperature proxy.
    assert bool((zz.tmin <= dd.tmin.sel(site="US-Wi7") + 1e-3).all())
    assert fluxnet.UMOL_CO2_TO_G_C_PER_DAY == pytest.approx(1.0377504)


@pytest.mark.realdata
def test_zarr_arctic_sites_and_missing_site(real_data, meta):
    z = fluxnet.read_fluxnet_zarr(str(real_data / ZARR), ["US-Prr", "RU-Cok", "US-Myb"], meta)
    assert list(z.site.values) == ["US-Prr", "RU-Cok"]  # US-Myb's chunks are not in the subset
    assert z.utc_offset_hours.values.tolist() == [-9, 11]
    schema.check(z, schema.TOWERS, context="zarr towers")
    prr = z.sel(site="US-Prr").dropna("time", subset=["nee"])
    assert str(prr.time.values[0])[:10] == "2010-01-01" and prr.sizes["time"] == 1826
    with pytest.raises(errors.InputDataError, match="not in the store"):
        fluxnet.read_fluxnet_zarr(str(real_data / ZARR), ["XX-Nop"], meta)


def _write_spl4cmdl(path, day_value, pft_offset=True, shape=(1624, 3856), cells=()):
    with h5py.File(path, "w") as f:
        for grp, var in (("NEE", "nee"), ("GPP", "gpp"), ("RH", "rh")):
            names = [f"{var}_mean"] + ([f"{var}_pft{p}_mean" for p in range(1, 9)]
                                      if pft_offset else [])
            for n in names:
                d = f.create_dataset(f"{grp}/{n}", shape=shape, dtype="f4", chunks=(64, 64),
                                     fillvalue=-9999.0, compression="gzip")
                d.attrs["_FillValue"] = np.float32(-9999.0)
                d.attrs["units"] = "g C m-2 day-1"
                for (r, c), v in cells:
                    k = int(n.split("pft")[1][0]) if "pft" in n else 0
                    d[r, c] = v + day_value + {"NEE": 0, "GPP": 10, "RH": 20}[grp] + 0.1 * k


def test_spl4cmdl_reader_on_a_file_in_the_product_layout(tmp_path):
    g = grid.get("M09")
    r, c = (int(v) for v in grid.latlon_to_rowcol(g, 65.1237, -147.4876))  # US-Prr
    cells = [((r, c), 1.0), ((r, c + 1), 2.0)]
    for i, day in enumerate(("20160701", "20160702")):
        _write_spl4cmdl(tmp_path / f"SMAP_L4_C_mdl_{day}T000000_Vv7042_001.h5", i, cells=cells)
    w = grid.Window(r - 1, r + 2, c - 1, c + 3)
    ds = fluxnet.read_spl4cmdl(sorted(str(p) for p in tmp_path.glob("*.h5")), window=w)
    assert ds.sizes == {"time": 2, "y": 3, "x": 4, "pft": 8}
    assert float(ds.nee.isel(time=1, y=1, x=1)) == pytest.approx(2.0)
    assert float(ds.gpp.isel(time=0, y=1, x=2)) == pytest.approx(12.0)
    assert float(ds.reco.isel(time=0, y=1, x=1)) == pytest.approx(1.0 + 11.0)
    assert float(ds.rh_pft.isel(time=0, y=1, x=1).sel(pft=5)) == pytest.approx(21.5)
    assert np.isnan(float(ds.nee.isel(time=0, y=0, x=0)))  # fill -> NaN
    np.testing.assert_allclose(float(ds.lat[1, 1]), 65.1237, atol=0.1)
    schema.check(ds[["nee", "gpp", "rh", "reco", "crs"]], schema.CARBON_PRODUCT, context="l4c")


def test_spl4cmdl_reader_rejects_wrong_layout(tmp_path):
    p = tmp_path / "SMAP_L4_C_mdl_20160701T000000_Vv7042_001.h5"
    _write_spl4cmdl(p, 0, pft_offset=False, shape=(406, 964))
    with pytest.raises(errors.InputDataError, match="not M09"):
        fluxnet.read_spl4cmdl([str(p)], window=grid.Window(0, 2, 0, 2))
    bad = tmp_path / "SMAP_L4_C_mdl_20160702T000000_Vv7042_001.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(errors.InputDataError, match="HDF5"):
        fluxnet.read_spl4cmdl([str(bad)], window=grid.Window(0, 2, 0, 2))
