"""Real GPM 1C (TMI, GMI, AMSR2, AMSR-E) and CSU SSM/I FCDR swaths.

Expected cell values are drop-in-bucket means computed here from the raw HDF5 (h5py), with the
channel order written out from the files' documented Tc LongName / variable names, and cell,
date and pass from pyproj + the data-contract formulas.
"""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from pipeline import dims, schema, sensors
from pipeline.graphs import ingest as graph
from pipeline.io import stores
from tests.ingest import ease_ref

pytestmark = pytest.mark.realdata

TMI_CHANNELS = {"S1": ["10.65V", "10.65H"],
                "S2": ["19.35V", "19.35H", "21.3V", "37.0V", "37.0H"],
                "S3": ["85.5V", "85.5H"]}
SSMI_VARS = {"fcdr_tb19v": ("19.35V", "lores"), "fcdr_tb37h": ("37.0H", "lores"),
             "fcdr_tb22v": ("22.235V", "lores"), "fcdr_tb85h": ("85.5H", "hires")}


def _expected_means(grid_name, lat, lon, utc, tb, channel) -> pd.DataFrame:
    """Mean TB per (date, pass, row, col) of valid samples, by independent code."""
    ok = np.isfinite(lat) & np.isfinite(tb) & (tb > -9990) & (tb >= 50) & (tb <= 350)
    rows, cols = ease_ref.rowcol(grid_name, lat[ok], lon[ok])
    day, pas = ease_ref.local_date_pass(utc[ok], ease_ref.cell_lon(grid_name, rows, cols))
    df = pd.DataFrame({"day": day.astype("datetime64[ns]"), "pass": pas, "row": rows,
                       "col": cols, "tb": tb[ok].astype(float), "channel": channel})
    out = df.groupby(["day", "pass", "channel", "row", "col"], as_index=False)["tb"].agg(
        ["sum", "count"])
    out["mean"] = out["sum"] / out["count"]
    return out


def _stored(ds, exp: pd.DataFrame, row0=0, col0=0):
    ti = np.searchsorted(ds[dims.TIME].values, exp["day"].values)
    assert (ds[dims.TIME].values[ti] == exp["day"].values).all()
    pi = np.where(exp["pass"].values == "am", 0, 1)
    labels = list(ds[dims.CHANNEL].values)
    ci = np.array([labels.index(c) for c in exp["channel"]])
    return ds[dims.TB].values[ti, pi, ci, exp["row"].values - row0, exp["col"].values - col0]


def test_tmi_cells_are_means_of_the_granule_pixels(real_data, tmp_path):
    path = next((real_data / "gpm_1c_tmi").glob("1C.TRMM.TMI*.HDF5"))
    # A window at the eastern edge of M36 (the cut lies just west of the dateline, 32 S).
    rep = graph.ingest_files([str(path)], str(tmp_path), target="M36", window="300,320,940,964",
                             scheduler="synchronous")
    f0 = rep["files"][0]
    assert f0["status"] == "ingested" and f0["sensor"] == "tmi"
    assert f0["counts"]["used"] == f0["counts"]["samples"] == 900
    parts = []
    with h5py.File(path, "r") as f:
        for s, labels in TMI_CHANNELS.items():
            st = f[s]["ScanTime"]
            utc = pd.to_datetime(pd.DataFrame({
                "year": st["Year"][()], "month": st["Month"][()], "day": st["DayOfMonth"][()],
                "hour": st["Hour"][()], "minute": st["Minute"][()], "second": st["Second"][()],
                "ms": st["MilliSecond"][()]})).values
            npix = f[s]["Latitude"].shape[1]
            for k, label in enumerate(labels):
                parts.append(_expected_means(
                    "M36", f[s]["Latitude"][()].ravel(), f[s]["Longitude"][()].ravel(),
                    np.repeat(utc, npix), f[s]["Tc"][:, :, k].ravel(), label))
    exp = pd.concat(parts, ignore_index=True)
    ds = stores.open_dataset(stores.tb_url(str(tmp_path), "tmi")).load()
    schema.check(ds, schema.tb_spec("tmi"), context="tmi")
    np.testing.assert_allclose(_stored(ds, exp, 300, 940), exp["mean"].values, rtol=1e-5)
    assert int(ds[dims.TB].count()) == len(exp)
    # 23:57 UTC at ~178.7 E is ~11.9-12.1 h local solar time on 8 December (am and pm cells).
    assert list(ds[dims.TIME].values.astype("datetime64[D]").astype(str)) == ["1997-12-08"]
    assert float(ds[dims.TB].min()) > 80 and float(ds[dims.TB].max()) < 270


@pytest.mark.parametrize("folder", ["gpm_1c_gmi", "gpm_1c_amsr2", "gpm_1c_amsre"])
def test_all_fill_cuts_ingest_as_no_valid_observations(real_data, tmp_path, folder):
    files = sorted((real_data / folder).glob("*.HDF5"))
    assert files
    rep = graph.ingest_files([str(p) for p in files], str(tmp_path), target="M36",
                             scheduler="synchronous")
    assert rep["n_failed"] == 0 and rep["stores"] == {}
    for f in rep["files"]:
        assert f["status"] == "no_valid_observations", f
        assert f["counts"]["used"] == 0 and f["counts"]["samples"] > 0
        assert f["counts"]["fill"] + f["counts"]["bad_quality"] == f["counts"]["samples"]
        assert f["sensor"] == folder.split("_")[-1]
        with h5py.File(real_data / folder / f["name"], "r") as h:
            # Every archived Tc value in the file is the fill value: nothing could be used.
            assert all((h[s]["Tc"][()] <= -9990).all() for s in h if s.startswith("S"))
    assert not (tmp_path / "tb").exists()


def test_ssmi_ingests_as_the_added_catalog_sensor(real_data, tmp_path):
    files = sorted((real_data / "ssmi_fcdr_pmesdr").glob("CSU_SSMI_FCDR_*.nc"))
    assert len(files) == 2
    rep = graph.ingest_files([str(p) for p in files], str(tmp_path), target="N36",
                             scheduler="threads")
    assert [f["status"] for f in rep["files"]] == ["ingested", "ingested"]
    url = stores.tb_url(str(tmp_path), "ssmi")
    ds = stores.open_dataset(url)
    assert not sensors.get("ssmi").archive
    schema.check(ds, schema.tb_spec("ssmi"), context=url)
    assert list(ds[dims.CHANNEL].values) == list(sensors.get("ssmi").channel_labels)
    ds = ds.load()
    r0, r1, c0, c1 = 0, 500, 0, 500
    parts = []
    for path in files:
        with h5py.File(path, "r") as f:
            for var, (label, res) in SSMI_VARS.items():
                secs = f[f"scan_time_{res}"][()]
                utc = (np.datetime64("1987-01-01T00:00:00", "ms")
                       + np.round(secs * 1000).astype("timedelta64[ms]"))
                npix = f[f"lat_{res}"].shape[1]
                lat = f[f"lat_{res}"][()].ravel().astype(float)
                lon = f[f"lon_{res}"][()].ravel().astype(float)
                rows, cols = ease_ref.rowcol("N36", lat, lon)
                inside = (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)
                tb = np.where(inside, f[var][()].ravel(), np.nan)
                parts.append(_expected_means("N36", lat, lon, np.repeat(utc, npix), tb, label))
    exp = pd.concat(parts).groupby(["day", "pass", "channel", "row", "col"], as_index=False)[
        ["sum", "count"]].sum()
    exp["mean"] = exp["sum"] / exp["count"]
    np.testing.assert_allclose(_stored(ds, exp, r0, c0), exp["mean"].values, rtol=1e-5)
    for label in {lab for lab, _ in SSMI_VARS.values()}:
        assert int(ds[dims.TB].sel({dims.CHANNEL: label}).count()) == int(
            (exp["channel"] == label).sum())
    assert 100 < float(ds[dims.TB].min()) and float(ds[dims.TB].max()) < 302
    # Frozen/snow-covered March land north of 60 N: 37 GHz V below 19 GHz V (scattering).
    north = ds[dims.LAT] > 60
    tb = ds[dims.TB].where(north)
    assert float((tb.sel(channel="37.0V") - tb.sel(channel="19.35V")).median()) < 0
