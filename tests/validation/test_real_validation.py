"""The real case: SMAP L3 v9 (QA4SM Hawaii) against the Hawaii ISMN stations; pytesmo numbers."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import xarray as xr
from pytesmo import metrics as pm

from pipeline import schema
from pipeline import validation as val
from pipeline.graphs import validation as graph

pytestmark = pytest.mark.realdata

SCAN = ("Pua_Akala", "Silver_Sword", "Waimea_Plain")


def _xy(pairs: xr.Dataset, station: str) -> tuple[np.ndarray, np.ndarray]:
    p = pairs.sel(station=station)
    ok = np.isfinite(p.estimate.values) & np.isfinite(p.reference.values)
    return p.estimate.values[ok], p.reference.values[ok]


def test_metrics_equal_pytesmo_on_the_same_pairs(hawaii_case):
    pairs = hawaii_case["pairs"]["scan"]
    assert list(pairs.station.values) == list(SCAN)
    table = val.station_table(pairs)
    schema.check(table, schema.VALIDATION, context="hawaii validation")
    for s in SCAN:
        x, y = _xy(pairs, s)
        assert x.size > 150                      # ~200-440 matched days per station
        row = table.soil_moisture.sel(station=s)
        assert int(row.sel(metric="n")) == x.size
        for name, ref in (("r", pm.pearson_r(x, y)), ("bias", pm.bias(x, y)),
                          ("rmsd", pm.rmsd(x, y)), ("ubrmsd", pm.ubrmsd(x, y))):
            assert float(row.sel(metric=name)) == pytest.approx(float(ref), abs=1e-10), (s, name)
        # physical sanity: SMAP 0.02-0.5 m3 m-3, probes ≤ 0.6 (C02 flags removed)
        assert 0.02 <= x.min() and x.max() <= 0.5 and 0 < y.min() and y.max() <= 0.6 + 1e-6
    # the depth rule leaves the 0-0.17 m cosmic-ray probe out, and says why
    assert "cosmos" not in hawaii_case["pairs"] and "0.17" in hawaii_case["excluded"]["cosmos"]


def _stm_lines(path):
    text = path.read_bytes().decode("latin-1")
    return [ln.split() for ln in re.split(r"\r\n|\n\r|\r|\n", text) if ln.strip()]


def test_pairs_follow_the_raw_files(hawaii_case, qa4sm_dir):
    """Rebuild a few daily pairs of Waimea_Plain by hand from the raw .stm text."""
    station = "Waimea_Plain"
    d = qa4sm_dir / "input_data/ISMN/ISMN_TESTDATA_HAWAII/SCAN/WaimeaPlain"
    sm = {f"{t[0]} {t[1]}": (float(t[12]), t[13]) for t in
          _stm_lines(next(d.glob("*_sm_*.stm")))}
    ts = {f"{t[0]} {t[1]}": float(t[12]) for t in _stm_lines(next(d.glob("*_ts_*.stm")))}
    smap = hawaii_case["series"]["scan"][station]
    pairs = hawaii_case["pairs"]["scan"].sel(station=station)
    days = pairs.time.values[np.isfinite(pairs.estimate.values)]
    checked = 0
    for day in days[:: max(1, days.size // 12)]:
        obs = smap.sel(time=slice(day, day + np.timedelta64(1, "D") - np.timedelta64(1, "ns")))
        xs, ys = [], []
        for t, v in zip(obs.time.values, obs.values, strict=True):
            if not np.isfinite(v):
                continue
            hour = np.datetime64(t, "h") + (np.timedelta64(1, "h") if (
                t - np.datetime64(t, "h")) > np.timedelta64(30, "m") else np.timedelta64(0, "h"))
            key = str(hour).replace("-", "/").replace("T", " ") + ":00"
            if key in sm and sm[key][1] == "G" and ts.get(key, 99.0) >= 0.0:
                xs.append(v)
                ys.append(sm[key][0])
        assert xs, day
        p = pairs.sel(time=day)
        assert float(p.estimate) == pytest.approx(np.mean(xs), abs=1e-12)
        assert float(p.reference) == pytest.approx(np.mean(ys), abs=1e-6)   # float32 store
        checked += 1
    assert checked >= 10


def test_validate_real_writes_tables_and_figures(hawaii_case, real_data, tmp_path):
    rep = graph.validate_real(real_data, tmp_path, case=hawaii_case)
    assert set(rep["stations"]) == set(SCAN)
    pua = rep["stations"]["Pua_Akala"]
    assert pua["distance_deg"] == pytest.approx(0.174, abs=0.002)    # README: 0.17°
    table = xr.open_zarr(tmp_path / "stations.zarr")
    schema.check(table, schema.VALIDATION, context="stations.zarr")
    rows = list(csv.DictReader(open(tmp_path / "stations.csv")))
    for r in rows:
        x, y = _xy(hawaii_case["pairs"]["scan"], r["station"])
        assert int(r["n"]) == x.size
        assert float(r["ubrmsd"]) == pytest.approx(pm.ubrmsd(x, y), rel=1e-5)
        assert float(r["r"]) == pytest.approx(pm.pearson_r(x, y), rel=1e-5, abs=1e-6)
    js = json.loads((tmp_path / "validation-real.json").read_text())
    assert js["stations"]["Silver_Sword"]["n"] == rep["stations"]["Silver_Sword"]["n"]
    assert js["settings"]["window"] == "1h" and js["settings"]["aggregate"] == "daily"
    assert list(js["periods"]) == ["amsr2+gmi+smap"]        # 2017-2018: one sensor epoch
    n_pairs = sum(1 for _ in open(tmp_path / "pairs.csv")) - 1
    assert n_pairs == sum(rep["stations"][s]["n"] for s in SCAN)
    for f in ["taylor.png"] + [f"timeseries_{s}.png" for s in SCAN]:
        assert (tmp_path / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_main_reports_a_missing_directory(tmp_path, capsys):
    assert graph.main(["--real-data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "QA4SM test data not found" in err
    assert err.count("\n") == 1
