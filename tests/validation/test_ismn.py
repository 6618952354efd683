"""ISMN .stm readers: values, times, flags and metadata checked against the raw text by hand."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pipeline import errors, schema
from pipeline.io import ismn


def _raw_lines(path: Path) -> list[str]:
    """The file's non-empty lines, splitting on any of \\r\\n, \\n\\r, \\r, \\n (independent)."""
    text = path.read_bytes().decode("latin-1")
    return [ln for ln in re.split(r"\r\n|\n\r|\r|\n", text) if ln.strip()]


def _one(d: Path, pattern: str) -> Path:
    files = sorted(d.glob(pattern))
    assert len(files) == 1, files
    return files[0]


def test_flag_encoding():
    enc = ismn.encode_flags(np.array(["G", "D01,D03", "C03,D10", "M", "U", "D05", "X9", ""]))
    b = ismn.FLAG_BITS
    assert enc.dtype == np.uint8
    assert enc.tolist() == [0, b["D_T"], b["C"] | b["D_S"], b["M"], b["U"], b["D_P"],
                            b["OTHER"], b["OTHER"]]


def test_filename_fields():
    f = ismn.parse_filename("SCAN_SCAN_AdamsRanch#1_sm_0.050800_0.050800_"
                            "Hydraprobe-Analog-(2.5-Volt)_20070101_20131231.stm")
    assert (f["network"], f["station"], f["variable"]) == ("SCAN", "AdamsRanch#1", "sm")
    assert f["depth_from"] == f["depth_to"] == 0.0508
    assert f["sensor"] == "Hydraprobe-Analog-(2.5-Volt)"
    with pytest.raises(errors.InputDataError, match="not an ISMN file name"):
        ismn.parse_filename("notes.stm")


@pytest.mark.realdata
def test_header_values_layout_newline_cr(ismn_dir):
    """COSMOS ARM-1: header line then 'date time value flag provider', lines end with \\n\\r."""
    p = _one(ismn_dir / "Data_seperate_files_header_20170810_20180809/COSMOS/ARM-1", "*_sm_*.stm")
    raw = _raw_lines(p)
    f = ismn.read_stm(p)
    head = raw[0].split()
    assert f.layout == "header_values"
    assert (f.network, f.station, f.sensor) == (head[1], head[2], "Cosmic-ray-Probe")
    assert (f.lat, f.lon, f.elevation) == (36.6054, -97.4878, 322.0)
    assert (f.depth_from, f.depth_to) == (0.0, 0.19)
    assert f.time.size == len(raw) - 1
    for k in (1, 2, 500, len(raw) - 1):            # data line k is the file's line k + 1
        d, hm, v, fl = raw[k].split()[:4]
        assert f.time[k - 1] == np.datetime64(d.replace("/", "-") + "T" + hm)
        assert f.value[k - 1] == float(v)
        assert f.ismn_flag[k - 1] == fl
    assert f.time[0] == np.datetime64("2017-08-10T00:00") and f.value[0] == 0.141


@pytest.mark.realdata
def test_header_values_cr_only_and_missing_provider_flag(ismn_dir):
    """SMOSMANIA: old Mac \\r line ends, 'U' flags, a line without a provider flag."""
    p = _one(ismn_dir / "SMOSMANIA", "*.stm")
    raw = _raw_lines(p)
    assert b"\n" not in p.read_bytes()
    f = ismn.read_stm(p)
    assert f.time.size == len(raw) - 1 == 741
    i = next(k for k, ln in enumerate(raw[1:]) if len(ln.split()) == 4)   # no provider flag
    assert f.provider_flag[i] == "" and f.ismn_flag[i] == raw[i + 1].split()[3]
    assert set(np.unique(f.ismn_flag)) == {"U", "D05"}
    ds = ismn.to_insitu_dataset([[f]], network="smosmania")
    # 'U' (unchecked) is not good: bit U set; D05 → peak-without-rain bit
    assert int(ds.soil_moisture_flag.isel(station=0, time=0)) == ismn.FLAG_BITS["U"]
    assert float(ds.soil_moisture.isel(station=0, time=0)) == pytest.approx(0.214, abs=1e-7)


@pytest.mark.realdata
def test_provider_flag_with_spaces(ismn_dir):
    """RISMA provider flags contain spaces ('DLT >= 1.5,OK,...'): value and ISMN flag intact."""
    p = _one(ismn_dir / "RISMA", "*.stm")
    raw = _raw_lines(p)
    f = ismn.read_stm(p)
    k = next(i for i, ln in enumerate(raw) if "DLT >= 1.5" in ln)
    d, hm, v, fl, prov = raw[k].split(None, 4)
    assert f.value[k - 1] == float(v) and f.ismn_flag[k - 1] == fl
    assert f.provider_flag[k - 1] == prov.strip()
    assert f.time[k - 1] == np.datetime64(d.replace("/", "-") + "T" + hm)
    assert f.sensor == "Hydraprobe II Sdi-12_C" and f.depth_to == 0.05


@pytest.mark.realdata
def test_ceop_layout_soil_temperature_kelvin(qa4sm_dir):
    """CEOP lines (nominal time, actual time, metadata, value, flags); °C → K."""
    d = qa4sm_dir / "input_data/ISMN/ISMN_TESTDATA_HAWAII/SCAN/PuaAkala"
    p = _one(d, "*_ts_*.stm")
    raw = _raw_lines(p)
    f = ismn.read_stm(p)
    assert f.layout == "ceop"
    tok = raw[0].split()
    assert (f.network, f.station) == (tok[5], tok[6]) == ("SCAN", "Pua_Akala")
    assert (f.lat, f.lon, f.elevation) == (19.8, -155.333, 1948.89)
    assert f.depth_to == 0.0508        # file name's precision (header says 0.05)
    ds = ismn.to_insitu_dataset([ismn.read_station(d)], network="scan")
    schema.check(ds, schema.INSITU, context=str(d))
    for k in (0, 1, 1000):
        t = raw[k].split()
        when = np.datetime64(t[0].replace("/", "-") + "T" + t[1])
        assert f.time[k] == when and f.value[k] == float(t[12]) and f.ismn_flag[k] == t[13]
        ts = ds.soil_temperature.sel(station="Pua_Akala", time=when)
        assert float(ts) == pytest.approx(float(t[12]) + 273.15, abs=1e-4)
        assert ds.soil_temperature.attrs["units"] == "K"
    assert ds.soil_moisture.attrs["depth_m"] == 0.0508
    assert str(ds.soil_moisture_sensor.values[0]) == "Hydraprobe-Analog-(2.5-Volt)"
    # precipitation ('p') is not a contract variable and is not read
    assert "p" not in {v.split("_")[0] for v in ds.data_vars}


@pytest.mark.realdata
def test_qa4sm_stations_match_station_list(qa4sm_dir):
    """Positions and depths agree with the independent ismn_station_list.csv of the data."""
    import csv

    from pipeline.io import qa4sm

    rows = list(csv.DictReader(open(qa4sm_dir / "input_data/ISMN/ismn_station_list.csv")))
    nets = qa4sm.read_ismn(qa4sm_dir)
    assert set(nets) == {"scan", "cosmos"}
    assert list(nets["scan"].station.values) == ["Pua_Akala", "Silver_Sword", "Waimea_Plain"]
    for net, ds in nets.items():
        schema.check(ds, schema.INSITU, context=net)
        for s in ds.station.values:
            name = str(s).replace("_", "")
            row = next(r for r in rows if r["Network name"].lower() == net
                       and r["Station name"] == name and r["Variable"] == "soil_moisture")
            st = ds.sel(station=s)
            assert float(st.lat) == pytest.approx(float(row["Latitude [deg]"]), abs=1e-6)
            assert float(st.lon) == pytest.approx(float(row["Longitude [deg]"]), abs=1e-6)
            assert float(st.soil_moisture_depth_to) == pytest.approx(
                float(row["Depth to [cm]"]), abs=1e-9)   # the csv's "cm" column holds metres
            first = np.datetime64(row["Period from"].replace(" ", "T"))
            sm = st.soil_moisture
            assert sm.time.values[np.flatnonzero(np.isfinite(sm.values))[0]] == first


@pytest.mark.realdata
def test_catalog_network_and_depth_limit(ismn_dir, real_data):
    ds = ismn.read_network("cosmos", real_data, station_ids=["ARM-1", "Barrow-ARM"])
    schema.check(ds, schema.INSITU, context="cosmos")
    assert list(ds.soil_moisture_depth_to.values) == [0.19, 0.21]
    assert ds.soil_moisture.attrs["depth_m"] == 0.21
    with pytest.raises(errors.InputDataError, match="no sensor within depth 0.05"):
        ismn.read_network("cosmos", real_data, station_ids=["ARM-1"], max_depth_m=0.05)
    good = ds.soil_moisture_flag == 0
    assert 0 < int(good.sum()) < int(ds.soil_moisture.notnull().sum())


def test_bad_files_give_one_line_errors(tmp_path):
    p = tmp_path / "X_X_st_sm_0.050000_0.050000_probe_20200101_20200102.stm"
    p.write_text("X X st 10.0 20.0 5.0 0.05 0.05 probe\n2020/01/01 00:00 0.2 G M\n"
                 "2020/13/01 01:00 0.3 G M\n")
    with pytest.raises(errors.InputDataError) as e:
        ismn.read_stm(p)
    assert "bad time" in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)
    p.write_text("X X st 10.0\n2020/01/01 00:00 0.2 G M\n")
    with pytest.raises(errors.InputDataError, match="header line has 4 fields"):
        ismn.read_stm(p)
    p.write_text("X X st 95.0 20.0 5.0 0.05 0.05 probe\n2020/01/01 00:00 0.2 G M\n")
    with pytest.raises(errors.InputDataError, match="out of range"):
        ismn.read_stm(p)
    p.write_text("X X st 10.0 20.0 5.0 0.05 0.05 probe\n2020/01/01 00:00\n")
    with pytest.raises(errors.InputDataError, match="data line 1 has 2 fields"):
        ismn.read_stm(p)
    with pytest.raises(errors.InputDataError, match="station folder not found"):
        ismn.read_station(tmp_path / "nope")
