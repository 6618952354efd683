"""Publishing immutable product versions: pointer switch, completeness, retention, provenance."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline import dims, errors
from pipeline.io import provenance, publish, stores

PID = "ft-test-n36-v1"


def _product(level: float, n_time: int = 4) -> xr.Dataset:
    """A tiny product whose every value is ``level`` (so a torn read would show a mix)."""
    data = np.full((n_time, 3, 5), level, dtype=np.float32)
    return xr.Dataset(
        {dims.SOIL_MOISTURE: ((dims.TIME, dims.Y, dims.X), data,
                              {"units": "m3 m-3", "long_name": "soil moisture"})},
        coords={dims.TIME: pd.date_range("2020-01-01", periods=n_time),
                dims.Y: np.arange(3) * -36000.0, dims.X: np.arange(5) * 36000.0},
        attrs={"title": "test product"},
    )


def test_publish_makes_a_new_immutable_current_version(tmp_path):
    root = str(tmp_path)
    url1 = publish.publish_dataset(_product(0.1), root, PID, provenance={"config_hash": "a"})
    url2 = publish.publish_dataset(_product(0.2), root, PID, provenance={"config_hash": "b"})
    assert url1 != url2
    assert url2.startswith(str(tmp_path / "products" / PID))
    versions = publish.list_versions(root, PID)
    assert versions == sorted(versions) and len(versions) == 2
    assert publish.current_url(root, PID) == url2
    xr.testing.assert_equal(publish.open_product(root, PID)[[dims.SOIL_MOISTURE]].load(),
                                _product(0.2)[[dims.SOIL_MOISTURE]])
    # The first version is untouched and still readable by its own URL.
    old = stores.open_dataset(url1).load()
    np.testing.assert_array_equal(old[dims.SOIL_MOISTURE].values, np.float32(0.1))
    assert publish.list_products(root) == [PID]
    # The STAC catalog was switched to the same complete version.
    catalog = pytest.importorskip("pipeline.io.catalog")
    url, open_kwargs = catalog.resolve(root, PID)
    assert url == url2 and open_kwargs["consolidated"] is True


def test_version_ids_sort_by_time_and_hash_structure_and_config():
    import datetime as dt

    t0 = dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    t1 = t0 + dt.timedelta(microseconds=1)
    a = publish.make_version(_product(0.1), {"config_hash": "x"}, now=t0)
    b = publish.make_version(_product(0.1), {"config_hash": "x"}, now=t1)
    c = publish.make_version(_product(0.1), {"config_hash": "y"}, now=t0)
    assert a.startswith("20260102T030405000006Z-") and a < b
    assert a.split("-")[1] == b.split("-")[1] != c.split("-")[1]


def test_crash_before_switch_leaves_previous_version_current(tmp_path, monkeypatch):
    root = str(tmp_path)
    good = publish.publish_dataset(_product(0.1), root, PID)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(publish, "_switch", boom)
    with pytest.raises(OSError):
        publish.publish_dataset(_product(0.2), root, PID)
    monkeypatch.undo()
    assert publish.current_url(root, PID) == good
    assert len(publish.list_versions(root, PID)) == 2  # complete but never switched to


def test_store_without_marker_is_not_a_version(tmp_path, monkeypatch):
    root = str(tmp_path)
    publish.publish_dataset(_product(0.1), root, PID)
    real = stores.write_json

    def fail_marker(url, obj, storage_options=None):
        if url.endswith(".done.json"):
            raise OSError("killed")
        return real(url, obj, storage_options)

    monkeypatch.setattr(stores, "write_json", fail_marker)
    with pytest.raises(OSError):
        publish.publish_dataset(_product(0.2), root, PID)
    monkeypatch.undo()
    assert len(publish.list_versions(root, PID)) == 1
    assert float(publish.open_product(root, PID)[dims.SOIL_MOISTURE].mean()) == pytest.approx(0.1)


def test_provenance_attrs_and_marker(tmp_path):
    rec = provenance.collect(config={"run": {"name": "x"}, "storage": {"secret": "hunter2"}},
                             models={"ft_autoencoder": "ab" * 32})
    url = publish.publish_dataset(_product(0.3), str(tmp_path), PID, provenance=rec)
    attrs = stores.open_dataset(url).attrs
    stored = json.loads(attrs["tbcube_provenance"])
    assert stored["config_hash"] == rec["config_hash"] == attrs["tbcube_config_hash"]
    assert stored["config"]["storage"]["secret"] == "***"
    assert "hunter2" not in json.dumps(dict(attrs))
    assert json.loads(attrs["tbcube_model_sha256"]) == {"ft_autoencoder": "ab" * 32}
    assert attrs["tbcube_version"] == publish.current_version(str(tmp_path), PID)


def test_prune_keeps_newest_and_never_the_current(tmp_path):
    root = str(tmp_path)
    urls = [publish.publish_dataset(_product(0.1 * k), root, PID) for k in range(1, 5)]
    versions = publish.list_versions(root, PID)
    # Roll the pointer back to the oldest version: it must survive pruning.
    publish._switch(root, PID, versions[0], None)
    deleted = publish.prune(root, PID, keep=2)
    assert deleted == [versions[1]]
    assert publish.list_versions(root, PID) == [versions[0], versions[2], versions[3]]
    assert not stores.exists(urls[1])
    assert publish.current_url(root, PID) == urls[0]
    with pytest.raises(errors.ConfigError):
        publish.prune(root, PID, keep=0)


def test_prune_removes_old_orphans_but_not_a_running_version(tmp_path):
    import datetime as dt

    root = str(tmp_path)
    publish.publish_dataset(_product(0.1), root, PID)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    orphan = publish.make_version(_product(0.2), {"n": 1}, now=old)
    running = publish.make_version(_product(0.3), {"n": 2}, now=old)
    for v in (orphan, running):  # stores without completion markers (crashed / in progress)
        stores.write_dataset(_product(0.2), publish.version_url(root, PID, v))
    stores.write_json(stores.join(publish.product_url(root, PID), "run.json"),
                      {"version": running})
    assert publish.prune(root, PID, keep=1) == [orphan]
    assert stores.exists(publish.version_url(root, PID, running))
    assert not stores.exists(publish.version_url(root, PID, orphan))


def test_bad_product_id_and_missing_product(tmp_path):
    with pytest.raises(errors.ConfigError, match="product id"):
        publish.publish_dataset(_product(0.1), str(tmp_path), "FT_smap")
    with pytest.raises(errors.StoreNotFound, match="no published version"):
        publish.current_url(str(tmp_path), PID)


def test_reader_polling_during_publishes_only_sees_complete_versions(tmp_path):
    root = str(tmp_path)
    publish.publish_dataset(_product(1.0), root, PID)
    seen: list[float] = []
    problems: list[str] = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                sm = publish.open_product(root, PID)[dims.SOIL_MOISTURE].values
            except Exception as e:  # noqa: BLE001 - any failure to read is a test failure
                problems.append(repr(e))
                continue
            if np.isnan(sm).any() or np.unique(sm).size != 1:
                problems.append(f"torn read: {np.unique(sm)}")
            seen.append(float(sm.flat[0]))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for k in range(2, 8):
            publish.publish_dataset(_product(float(k)), root, PID)
            time.sleep(0.01)
    finally:
        stop.set()
        t.join()
    assert not problems, problems[:3]
    assert seen and set(seen) <= {float(k) for k in range(1, 8)}
    assert seen == sorted(seen)  # the pointer only ever moves forward
    publish.prune(root, PID, keep=2)
    assert len(publish.list_versions(root, PID)) == 2


def test_fingerprint_changes_with_content_not_with_reads(tmp_path):
    url = str(tmp_path / "in.zarr")
    stores.write_dataset(_product(0.5).chunk({dims.TIME: 1}), url)
    fp1 = provenance.fingerprint_store(url)
    stores.open_dataset(url).load()
    assert provenance.fingerprint_store(url) == fp1
    stores.write_dataset(_product(0.5, n_time=5).chunk({dims.TIME: 1}), url)
    assert provenance.fingerprint_store(url) != fp1
    assert provenance.fingerprint_store(str(tmp_path / "nope.zarr")) == "missing"
    assert provenance.config_hash({"a": 1, "b": {"password": "x"}}) == provenance.config_hash(
        {"b": {"password": "y"}, "a": 1})


@pytest.mark.s3
def test_publish_and_resolve_on_s3(s3_root, s3_server):
    so = s3_server.storage_options
    url1 = publish.publish_dataset(_product(0.1), s3_root, PID, storage_options=so)
    url2 = publish.publish_dataset(_product(0.2), s3_root, PID, storage_options=so)
    assert url2.startswith(f"{s3_root}/products/{PID}/") and url1 != url2
    assert publish.current_url(s3_root, PID, so) == url2
    sm = publish.open_product(s3_root, PID, so)[dims.SOIL_MOISTURE].values
    np.testing.assert_array_equal(sm, np.float32(0.2))
    assert publish.prune(s3_root, PID, keep=1, storage_options=so) == [
        url1.rsplit("/", 1)[-1][: -len(".zarr")]]
    # (SeaweedFS may keep an empty directory entry; what matters is that no object is left.)
    assert not stores.exists(f"{url1}/zarr.json", so)
    assert publish.list_products(s3_root, so) == [PID]


def test_staleness_key_of_hand_written_records():
    rec = {"config_hash": "h", "inputs": {"tb": "s3://b/tb/smap.zarr"}, "models": {"m": "s"}}
    key = provenance.staleness_key(rec)
    assert key["inputs"] == {"tb": None} and key["models"] == {"m": "s"}
    full = provenance.collect(config={"a": 1}, inputs={"tb": "/nonexistent/tb.zarr"})
    assert provenance.staleness_key(full)["inputs"] == {"tb": "missing"}
    assert provenance.staleness_key(full) != key
