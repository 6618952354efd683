"""Bad inputs: one-line InputDataError naming the file; nothing written; the batch goes on."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from pipeline import errors, ingest
from pipeline.cli import main
from pipeline.graphs import ingest as graph
from pipeline.io import stores

GOOD = dict(lat=[45.0, 46.0], lon=[10.0, 11.0], times=["2015-06-01T05:00:00.000Z"] * 2,
            tbv=[260.0, 262.0], tbh=[250.0, 251.0])


def _bad_files(tmp_path, fake_smap_l2) -> dict[str, tuple]:
    """name → (path, words the error must contain)."""
    good = fake_smap_l2(tmp_path / "template.h5", **GOOD).read_bytes()
    out = {}
    p = tmp_path / "empty.h5"
    p.write_bytes(b"")
    out["empty"] = (p, "empty file")
    p = tmp_path / "garbage.h5"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    out["garbage"] = (p, "not an HDF5")
    p = tmp_path / "truncated.h5"
    p.write_bytes(good[: len(good) // 2])
    out["truncated"] = (p, "truncated")
    p = tmp_path / "wrong_groups.h5"
    with h5py.File(p, "w") as f:
        f.create_group("Some_Other_Product")["x"] = np.arange(3)
    out["wrong_groups"] = (p, "not a recognised product")
    p = tmp_path / "missing_tb.h5"
    with h5py.File(p, "w") as f:
        g = f.create_group("Soil_Moisture_Retrieval_Data")
        g["latitude"] = np.zeros(3, np.float32)
        g["longitude"] = np.zeros(3, np.float32)
    out["missing_tb"] = (p, "missing tb_time_utc")
    p = tmp_path / "unknown_instrument.HDF5"
    with h5py.File(p, "w") as f:
        f.attrs["FileHeader"] = b"AlgorithmID=1CSSMIS;\nInstrumentName=SSMIS;\n"
        f.create_group("S1")
    out["unknown_instrument"] = (p, "InstrumentName 'SSMIS' is not in the sensor catalog")
    return out


def test_each_bad_file_gives_one_line_error(tmp_path, fake_smap_l2):
    for _, (path, words) in _bad_files(tmp_path, fake_smap_l2).items():
        with pytest.raises(errors.InputDataError) as e:
            ingest.read_bytes(path.read_bytes(), path.name)
        msg = str(e.value)
        assert msg.startswith(f"{path.name}: ") and "\n" not in msg, msg
        assert words in msg, msg


def test_truncated_real_granule(tmp_path, real_data):
    src = next((real_data / "gpm_1c_tmi").glob("*.HDF5")).read_bytes()
    for cut in (len(src) // 3, len(src) - 1000):
        p = tmp_path / f"cut{cut}.HDF5"
        p.write_bytes(src[:cut])
        with pytest.raises(errors.InputDataError, match=f"^{p.name}: .*truncated"):
            ingest.read_bytes(p.read_bytes(), p.name)


def test_batch_continues_and_nothing_is_written_for_bad_files(tmp_path, fake_smap_l2):
    bad = _bad_files(tmp_path, fake_smap_l2)
    good = fake_smap_l2(tmp_path / "good.h5", **GOOD)
    root = tmp_path / "root"
    rep = graph.ingest_files([str(p) for p, _ in bad.values()] + [str(good)], str(root),
                             target="M36", window="50,65,500,520", scheduler="threads")
    status = {f["name"]: f["status"] for f in rep["files"]}
    assert status.pop("good.h5") == "ingested"
    assert set(status.values()) == {"failed"} and len(status) == len(bad)
    assert rep["n_failed"] == len(bad)
    ds = stores.open_dataset(stores.tb_url(str(root), "smap"))
    assert [g["name"] for g in ds.attrs["ingested_granules"]] == ["good.h5"]
    assert int(ds["tb"].count()) == 4
    assert sorted(p.name for p in (root / "tb").iterdir()) == ["smap.zarr"]


def test_cli_exit_code_and_summary(tmp_path, fake_smap_l2, capsys):
    good = fake_smap_l2(tmp_path / "good.h5", **GOOD)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    root = tmp_path / "root"
    with pytest.raises(SystemExit) as e:
        main(["ingest", str(good), str(empty), "--root", str(root), "--grid", "M36",
              "--window", "50,65,500,520", "--scheduler", "synchronous"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "summary: 1 failed, 1 ingested" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: 1 of 2 file(s) failed") and "empty.h5: empty file" in last
    reports = sorted((root / "reports").glob("ingest-*.json"))
    assert len(reports) == 1
    assert json.loads(reports[0].read_text())["n_failed"] == 1
    assert stores.exists(stores.tb_url(str(root), "smap"))

    with pytest.raises(SystemExit) as e:
        main(["ingest", str(good), "--root", str(root), "--grid", "M36",
              "--window", "50,65,500,520", "--scheduler", "synchronous"])
    assert e.value.code == 0
    out = capsys.readouterr()
    assert "already_ingested" in out.err
    assert out.out.strip().endswith(".json")


@pytest.mark.realdata
def test_corrupt_compressed_data_in_a_real_granule(tmp_path, smap_l3_file):
    data = bytearray(smap_l3_file.read_bytes())
    mid = len(data) // 2  # inside the gzip-compressed TB chunks of this granule
    data[mid : mid + 20000] = bytes(20000)
    with pytest.raises(errors.InputDataError) as e:
        ingest.read_bytes(bytes(data), "corrupt_l3.h5")
    msg = str(e.value)
    assert msg.startswith("corrupt_l3.h5: unreadable smap_l3 data") and "\n" not in msg
