"""Writing into tb/{sensor}.zarr: contract schema, idempotency, merges, time-axis extension."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from pipeline import dims, grid, schema
from pipeline.graphs import ingest as graph
from pipeline.ingest import gridding
from pipeline.io import stores
from tests.ingest import ease_ref

# Two cells near Toolik on N36, observed on the 6 PM ascending pass (local time ~ 18 h).
LAT = [68.63, 68.95]
LON = [-149.60, -149.0]
WINDOW = "190,196,213,219"


def _window_cell(lat, lon):
    r, c = ease_ref.rowcol("N36", lat, lon)
    w = grid.Window.parse(WINDOW)
    return int(r) - w.row0, int(c) - w.col0


def _ingest(paths, root, **kw):
    return graph.ingest_files([str(p) for p in paths], str(root), target="N36", window=WINDOW,
                              scheduler="synchronous", **kw)


@pytest.fixture
def granules(tmp_path, fake_smap_l2):
    """Three fake half-orbits: A and B on the same day (B re-observes cell 0), C a day earlier."""
    a = fake_smap_l2(tmp_path / "A.h5", LAT, LON, ["2015-08-11T04:00:00.000Z"] * 2,
                     [255.0, 250.0], [245.0, 238.0])
    b = fake_smap_l2(tmp_path / "B.h5", LAT[:1], LON[:1], ["2015-08-11T04:30:00.000Z"],
                     [259.0], [249.0], qual_h=[1 << 2])  # H RFI detected (kept, flagged)
    c = fake_smap_l2(tmp_path / "C.h5", LAT, LON, ["2015-08-10T04:00:00.000Z"] * 2,
                     [254.0, 251.0], [244.0, 239.0], qual_v=[0, 1])  # V of cell 1 bad
    return a, b, c


def test_new_store_conforms_and_traces(tmp_path, granules):
    a, _, _ = granules
    root = tmp_path / "root"
    rep = _ingest([a], root)
    url = stores.tb_url(str(root), "smap")
    assert rep["stores"] == {"smap": url} and rep["n_failed"] == 0
    ds = stores.open_dataset(url)
    schema.check(ds, schema.tb_spec("smap"), context=url)
    assert ds.attrs["grid"] == "N36" and ds.attrs["grid_window"] == [190, 196, 213, 219]
    assert "_FillValue" not in ds[dims.QUALITY_FLAG].attrs
    assert "_FillValue" not in ds[dims.QUALITY_FLAG].encoding
    day, pas = ease_ref.local_date_pass(np.array(["2015-08-11T04:00"], "datetime64[ms]"),
                                        np.array(LON[:1]))
    assert (str(day[0]), pas[0]) == ("2015-08-10", "pm")
    for k in range(2):
        y, x = _window_cell(LAT[k], LON[k])
        cell = ds.sel({dims.TIME: "2015-08-10", dims.PASS: "pm"}).isel({dims.Y: y, dims.X: x})
        np.testing.assert_allclose(cell[dims.TB].sel(channel=["1.41V", "1.41H"]).values,
                                   [[255.0, 245.0], [250.0, 238.0]][k])
    assert int(ds[dims.TB].count()) == 4
    granule = ds.attrs["ingested_granules"][0]
    import hashlib

    assert granule["name"] == "A.h5"
    assert granule["sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()
    report = json.loads((root / "reports").glob("ingest-*.json").__next__().read_text())
    assert report["files"][0]["status"] == "ingested"


def test_idempotent_and_merges(tmp_path, granules):
    a, b, c = granules
    root = tmp_path / "root"
    _ingest([a], root)
    url = stores.tb_url(str(root), "smap")
    first = stores.open_dataset(url).load()
    again = _ingest([a], root)
    assert [f["status"] for f in again["files"]] == ["already_ingested"]
    xr.testing.assert_identical(stores.open_dataset(url).load(), first)

    # Same day: region merge, count-weighted with what is stored.
    _ingest([b], root)
    ds = stores.open_dataset(url).load()
    y, x = _window_cell(LAT[0], LON[0])
    cell = ds.sel({dims.TIME: "2015-08-10", dims.PASS: "pm"}).isel({dims.Y: y, dims.X: x})
    np.testing.assert_allclose(cell[dims.TB].values, [(255 + 259) / 2, (245 + 249) / 2])
    np.testing.assert_array_equal(cell[gridding.N_OBS].values, [2, 2])
    assert int(cell[dims.QUALITY_FLAG]) & 1  # RFI from B
    assert ds.sizes[dims.TIME] == 1

    # Earlier day: the time axis grows and stays sorted; stored days are unchanged.
    _ingest([c], root)
    ds2 = stores.open_dataset(url).load()
    assert list(ds2[dims.TIME].values.astype("datetime64[D]").astype(str)) == [
        "2015-08-09", "2015-08-10"]
    xr.testing.assert_identical(ds2.sel({dims.TIME: ["2015-08-10"]})[dims.TB],
                                ds.sel({dims.TIME: ["2015-08-10"]})[dims.TB])
    y1, x1 = _window_cell(LAT[1], LON[1])
    c1 = ds2.sel({dims.TIME: "2015-08-09", dims.PASS: "pm"}).isel({dims.Y: y1, dims.X: x1})
    assert np.isnan(float(c1[dims.TB].sel(channel="1.41V")))  # bad quality masked
    assert float(c1[dims.TB].sel(channel="1.41H")) == pytest.approx(239.0)
    names = [g["name"] for g in ds2.attrs["ingested_granules"]]
    assert names == ["A.h5", "B.h5", "C.h5"]
    schema.check(stores.open_dataset(url), schema.tb_spec("smap"), context=url)


def test_batch_order_and_scheduler_do_not_matter(tmp_path, granules):
    a, b, c = granules
    serial = tmp_path / "one_by_one"
    for g in (a, b, c):
        _ingest([g], serial)
    batch = tmp_path / "batch"
    graph.ingest_files([str(c), str(a), str(b)], str(batch), target="N36", window=WINDOW,
                       scheduler="threads")
    s = stores.open_dataset(stores.tb_url(str(serial), "smap")).load()
    t = stores.open_dataset(stores.tb_url(str(batch), "smap")).load()
    for v in (dims.TB, dims.LOCAL_TIME):
        np.testing.assert_allclose(t[v].values, s[v].values, rtol=1e-6)
    for v in (gridding.N_OBS, dims.QUALITY_FLAG):
        np.testing.assert_array_equal(t[v].values, s[v].values)


def test_grid_mismatch_with_existing_store_is_refused(tmp_path, granules):
    a, b, _ = granules
    root = tmp_path / "root"
    _ingest([a], root)
    rep = graph.ingest_files([str(b)], str(root), target="N36", window="180,200,200,230",
                             scheduler="synchronous")
    assert rep["files"][0]["status"] == "failed"
    assert "window [190, 196, 213, 219]" in rep["files"][0]["error"]
    assert "\n" not in rep["files"][0]["error"]


@pytest.mark.slow
def test_distributed_client_gives_the_same_store(tmp_path, granules, dask_client):
    a, b, c = granules
    ref = tmp_path / "sync"
    _ingest([a, b, c], ref)
    dist = tmp_path / "dist"
    distributed = pytest.importorskip("distributed")
    with distributed.get_task_stream(dask_client) as ts:
        # the session client is not the default scheduler: hand it over explicitly
        rep = graph.ingest_files([str(a), str(b), str(c)], str(dist), target="N36",
                                 window=WINDOW, scheduler=dask_client)
    assert rep["status_counts"] == {"ingested": 3}
    # Phase 1 ran as one task per file on the cluster's workers.
    names = [t["key"][0] if isinstance(t["key"], tuple) else t["key"] for t in ts.data]
    assert sum(str(k).startswith("process_file") for k in names) == 3
    s = stores.open_dataset(stores.tb_url(str(ref), "smap")).load()
    t = stores.open_dataset(stores.tb_url(str(dist), "smap")).load()
    xr.testing.assert_identical(s.drop_attrs(), t.drop_attrs())


@pytest.mark.s3
def test_ingest_from_and_into_s3(granules, s3_root, s3_server):
    a, b, _ = granules
    opts = s3_server.storage_options
    src = [stores.write_bytes(f"{s3_root}/in/{p.name}", p.read_bytes(), opts) for p in (a, b)]
    root = f"{s3_root}/archive"
    rep = graph.ingest_files(src + src[:1], root, target="N36", window=WINDOW,
                             storage_options=opts, scheduler="threads")
    assert sorted(f["status"] for f in rep["files"]) == ["already_ingested", "ingested",
                                                         "ingested"]
    url = stores.tb_url(root, "smap")
    ds = stores.open_dataset(url, storage_options=opts).load()
    schema.check(ds, schema.tb_spec("smap"), context=url)
    y, x = _window_cell(LAT[0], LON[0])
    cell = ds.sel({dims.TIME: "2015-08-10", dims.PASS: "pm"}).isel({dims.Y: y, dims.X: x})
    np.testing.assert_allclose(cell[dims.TB].values, [(255 + 259) / 2, (245 + 249) / 2])
    assert rep["report_url"].startswith(f"{root}/reports/ingest-")
    assert stores.read_json(rep["report_url"], opts)["n_files"] == 3


def test_unreadable_existing_store_fails_its_granules_only(tmp_path, granules, fake_smap_l2):
    a, _, _ = granules
    root = tmp_path / "root"
    broken = root / "tb" / "smap.zarr"
    broken.mkdir(parents=True)
    (broken / "zarr.json").write_text("{ not json")
    ssmi_like = tmp_path / "other.h5"
    ssmi_like.write_bytes(b"")
    rep = _ingest([a, ssmi_like], root)
    by_name = {f["name"]: f for f in rep["files"]}
    assert by_name["A.h5"]["status"] == "failed"
    assert by_name["A.h5"]["error"].startswith("A.h5: not written: ")
    assert "\n" not in by_name["A.h5"]["error"]
    assert rep["stores"] == {} and rep["n_failed"] == 2
    assert (broken / "zarr.json").read_text() == "{ not json"


def test_masked_only_days_are_not_added(tmp_path, fake_smap_l2):
    root = tmp_path / "root"
    ok = fake_smap_l2(tmp_path / "ok.h5", LAT[:1], LON[:1], ["2015-08-11T04:00:00.000Z"],
                      [255.0], [245.0])
    hot = fake_smap_l2(tmp_path / "hot.h5", LAT[:1], LON[:1], ["2015-08-12T04:00:00.000Z"],
                       [400.0], [390.0])  # out of range on another day
    # Same day: cell 1 out of range (flagged, no TB), cell 0 valid (so this granule is written).
    hot_same_day = fake_smap_l2(tmp_path / "hot2.h5", LAT[::-1], LON[::-1],
                                ["2015-08-11T04:05:00.000Z"] * 2, [420.0, 257.0],
                                [410.0, 247.0])
    rep = _ingest([ok, hot, hot_same_day], root)
    by = {f["name"]: f for f in rep["files"]}
    assert by["hot.h5"]["status"] == "no_valid_observations"
    assert by["hot.h5"]["counts"]["out_of_range"] == 2
    ds = stores.open_dataset(stores.tb_url(str(root), "smap")).load()
    assert list(ds[dims.TIME].values.astype("datetime64[D]").astype(str)) == ["2015-08-10"]
    y, x = _window_cell(LAT[1], LON[1])
    from pipeline.qc import QC

    cell = ds.sel({dims.TIME: "2015-08-10", dims.PASS: "pm"}).isel({dims.Y: y, dims.X: x})
    assert np.isnan(cell[dims.TB].values).all()
    assert int(cell[dims.QUALITY_FLAG]) == int(QC.OUT_OF_RANGE_TB)
    y0, x0 = _window_cell(LAT[0], LON[0])
    c0 = ds.sel({dims.TIME: "2015-08-10", dims.PASS: "pm"}).isel({dims.Y: y0, dims.X: x0})
    np.testing.assert_allclose(c0[dims.TB].values, [(255 + 257) / 2, (245 + 247) / 2])
    assert int(c0[dims.QUALITY_FLAG]) == 0
    # A granule without a single usable sample writes nothing, not even QC bits.
    assert [g["name"] for g in ds.attrs["ingested_granules"]] == ["hot2.h5", "ok.h5"]
