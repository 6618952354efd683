"""Reader details: channel parsing/mapping, SPL3SMP AM+PM groups, catalog vs real metadata."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from pipeline import dims, ingest, sensors
from pipeline.ingest import common, gridding

GMI_LONG_NAME = (
    "\nIntercalibrated Tb for channels \n 1) 10.65 GHz V-Pol 2) 10.65 GHz H-Pol\n"
    " 3) 18.7 GHz V-Pol 4) 18.7 GHz H-Pol 5) 23.8 GHz V-Pol 6) 36.64 GHz V-Pol\n"
    " 7) 36.64 GHz H-Pol 8) 89.0 GHz V-Pol and 9) 89.0 GHz H-Pol\n")


def test_channel_list_parsing_and_catalog_mapping():
    found = common.parse_channel_list(GMI_LONG_NAME)
    assert found[0] == (10.65, "V") and found[-1] == (89.0, "H") and len(found) == 9
    assert common.map_channels("gmi", found) == list(sensors.get("gmi").channel_labels)
    high = common.parse_channel_list(
        "1) 166.0 GHz V-Pol 2) 166.0 GHz H-Pol 3) 183.31 +/-3 GHz V-Pol and "
        "4) 183.31 +/-7 GHz V-Pol")
    assert high == [(166.0, "V"), (166.0, "H"), (183.31, "V"), (183.31, "V")]
    assert common.map_channels("gmi", high) == [None] * 4
    # AMSR2 89 GHz A- and B-scan both map onto 89.0V/H; 36.5 GHz maps to its own label.
    amsr2 = common.parse_channel_list("1) 89 GHz V-Pol A-Scan and 2) 89 GHz H-Pol A-Scan")
    assert common.map_channels("amsr2", amsr2) == ["89.0V", "89.0H"]
    assert common.map_channels("amsr2", [(36.5, "H")]) == ["36.5H"]
    assert common.map_channels("tmi", [(19.35, "V"), (21.3, "V")]) == ["19.35V", "21.3V"]


def _write_l3_am_pm(path):
    """A 2 x 3 SPL3SMP-like file with the later-release AM and PM groups."""
    lat = np.array([[50.0, 50.0, 50.0], [49.7, 49.7, 49.7]], np.float32)
    lon = np.array([[10.0, 10.4, 10.8], [10.0, 10.4, 10.8]], np.float32)
    with h5py.File(path, "w") as f:
        for grp, sfx, utc in (("Soil_Moisture_Retrieval_Data_AM", "", "2016-05-01T05:20:00.000Z"),
                              ("Soil_Moisture_Retrieval_Data_PM", "_pm",
                               "2016-05-01T17:20:00.000Z")):
            g = f.create_group(grp)
            g["latitude" + sfx] = lat
            g["longitude" + sfx] = lon
            t = np.full(lat.shape, utc.encode(), "S24")
            t[1, 2] = b"N/A"
            g["tb_time_utc" + sfx] = t
            base = 250.0 if sfx == "" else 240.0
            v = np.full(lat.shape, base + 10, np.float32)
            v[1, 2] = -9999.0
            h = np.full(lat.shape, base, np.float32)
            h[1, 2] = -9999.0
            g["tb_v_corrected" + sfx] = v
            g["tb_h_corrected" + sfx] = h
            g["tb_qual_flag_v" + sfx] = np.zeros(lat.shape, np.uint16)
            g["tb_qual_flag_h" + sfx] = np.zeros(lat.shape, np.uint16)
    return path


def test_l3_reads_am_and_pm_groups(tmp_path):
    p = _write_l3_am_pm(tmp_path / "SMAP_L3_SM_P_20160501_R16010_001.h5")
    g = ingest.read_bytes(p.read_bytes(), p.name)
    assert g.family == "smap_l3" and g.sensor == "smap" and len(g.swaths) == 2
    ds, counts = gridding.grid_granule(g, "M36")
    assert counts["samples"] == 24 and counts["fill"] == 4 and counts["used"] == 20
    # 05:20 UTC at 10 E is ~06:00 local (am), 17:20 UTC is ~18:00 (pm), both on 1 May.
    assert list(ds[dims.TIME].values.astype("datetime64[D]").astype(str)) == ["2016-05-01"]
    am = ds[dims.TB].sel({dims.PASS: "am", dims.CHANNEL: "1.41H"})
    pm = ds[dims.TB].sel({dims.PASS: "pm", dims.CHANNEL: "1.41H"})
    assert set(np.unique(am.values[np.isfinite(am.values)])) == {250.0}
    assert set(np.unique(pm.values[np.isfinite(pm.values)])) == {240.0}
    assert int(ds[gridding.N_OBS].sum()) == 20


@pytest.mark.realdata
def test_ssmi_catalog_matches_the_real_file_metadata(real_data):
    path = next((real_data / "ssmi_fcdr_pmesdr").glob("*S1727*.nc"))
    cat = sensors.get("ssmi")
    with h5py.File(path, "r") as f:
        eia = np.concatenate([f["eia_lores"][()].ravel(), f["eia_hires"][()].ravel()])
        eia = eia[eia > 0]
        found = sorted(
            (float(common.attr_text(f[v].attrs["long_name"]).split(" GHz")[0].split()[-1]),
             "V" if "vertically" in common.attr_text(f[v].attrs["long_name"]) else "H")
            for v in f if v.startswith("fcdr_tb"))
    assert cat.incidence_angle_deg == pytest.approx(float(eia.mean()), abs=0.1)
    assert sorted((c.frequency_ghz, c.polarization) for c in cat.channels) == found
