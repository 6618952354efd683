"""Zarr I/O through ``s3://`` against a real S3 server (SeaweedFS, tests/fixtures/s3.py).

Covers the round trip, phased writes, consolidated metadata, idempotent region rewrites,
credential sources, and the one-line errors: wrong or read-only credentials → AccessDenied
(the secret never appears in the message, logs or stderr), missing store/bucket →
StoreNotFound, unreachable endpoint → StoreError, misaligned chunks → SchemaError before any
byte is written.
"""

from __future__ import annotations

import logging
import time
import types

import numpy as np
import pytest
import s3fs
import xarray as xr
from pydantic import SecretStr

from pipeline import errors, grid
from pipeline.io import stores

pytestmark = pytest.mark.s3


def _tb(n_time: int = 12) -> xr.Dataset:
    """A small N36 TB cube (time, y, x) with the grid coordinates and crs."""
    ds = grid.grid_coords("N36", grid.Window(240, 246, 250, 258))
    ds = ds.assign_coords(time=np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-01")
                                         + np.timedelta64(n_time, "D")))
    rng = np.random.default_rng(42)
    tb = (200 + 80 * rng.random((n_time, 6, 8))).astype(np.float32)
    tb[0, 0, 0] = np.nan
    ds["tb"] = (("time", "y", "x"), tb,
                {"units": "K", "long_name": "brightness temperature", "grid_mapping": "crs"})
    return ds


def _fs(opts: dict) -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(**opts, skip_instance_cache=True)


def _objects(fs: s3fs.S3FileSystem, url: str) -> dict[str, bytes]:
    """Every object under a store, key → bytes."""
    fs.invalidate_cache()
    root = url.removeprefix("s3://")
    return {p: fs.cat_file(p) for p in fs.find(root)}


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_round_trip_through_s3(s3_server, s3_root, zarr_format):
    ds = _tb()
    url = f"{s3_root}/tb/smap.zarr"
    opts = s3_server.storage_options
    stores.write_dataset(ds, url, storage_options=opts, chunks={"time": 4},
                         zarr_format=zarr_format)
    assert stores.store_format(url, opts) == (zarr_format, True)
    back = stores.open_dataset(url, storage_options=opts)
    assert back.tb.chunks[0] == (4, 4, 4)
    xr.testing.assert_identical(back.load(), ds)
    # The documented reader path: plain xarray with only an endpoint and credentials.
    plain = xr.open_zarr(url, storage_options=opts)
    np.testing.assert_array_equal(plain.tb.values, ds.tb.values)
    assert plain.attrs["grid"] == "N36"


def test_template_regions_finalise_on_s3(s3_server, s3_root):
    ds = _tb()
    url = f"{s3_root}/products/ft.zarr"
    opts = s3_server.storage_options
    fs = _fs(opts)
    stores.write_template(ds, url, chunks={"time": 4, "y": 3, "x": 4}, storage_options=opts)
    keys = list(_objects(fs, url))
    assert not [k for k in keys if "/tb/c/" in k], "the template must not write data chunks"
    tmpl = stores.open_dataset(url, storage_options=opts).load()
    assert np.isnan(tmpl.tb.values).all()
    np.testing.assert_array_equal(tmpl.lat.values, ds.lat.values)

    for a, b in ((0, 4), (4, 12)):
        stores.write_region(ds.isel(time=slice(a, b)).chunk(time=4), url,
                            {"time": slice(a, b)}, storage_options=opts)
    stores.finalise(url, {"history": "written by test"}, storage_options=opts)

    meta = stores.read_json(f"{url}/zarr.json", storage_options=opts)
    assert meta["attributes"]["history"] == "written by test"
    assert {"tb", "lat", "lon", "x", "y", "time", "crs"} <= set(
        meta["consolidated_metadata"]["metadata"])
    back = stores.open_dataset(url, storage_options=opts)
    xr.testing.assert_identical(back.drop_attrs().load(), ds.drop_attrs())


def test_region_rewrite_is_idempotent_on_s3(s3_server, s3_root):
    ds = _tb()
    url = f"{s3_root}/idem.zarr"
    opts = s3_server.storage_options
    fs = _fs(opts)
    stores.write_template(ds, url, chunks={"time": 4}, storage_options=opts)
    part = ds.isel(time=slice(4, 8))
    stores.write_region(part, url, {"time": slice(4, 8)}, storage_options=opts)
    first = _objects(fs, url)
    stores.write_region(part, url, {"time": slice(4, 8)}, storage_options=opts)
    assert _objects(fs, url) == first
    back = stores.open_dataset(url, storage_options=opts).tb.load()
    np.testing.assert_array_equal(back.values[4:8], ds.tb.values[4:8])
    assert np.isnan(back.values[:4]).all() and np.isnan(back.values[8:]).all()


def test_misaligned_part_is_refused_before_writing(s3_server, s3_root):
    ds = _tb()
    url = f"{s3_root}/misaligned.zarr"
    opts = s3_server.storage_options
    fs = _fs(opts)
    stores.write_template(ds, url, chunks={"time": 4}, storage_options=opts)
    before = _objects(fs, url)
    with pytest.raises(errors.SchemaError) as info:
        stores.write_region(ds.isel(time=slice(2, 6)), url, {"time": slice(2, 6)},
                            storage_options=opts)
    msg = str(info.value)
    assert url in msg and "'tb'" in msg and "'time'" in msg and "[2, 6]" in msg
    assert _objects(fs, url) == before


def _assert_secret_hidden(secret, exc, caplog, capfd):
    out, err = capfd.readouterr()
    assert "\n" not in str(exc)
    for text in (str(exc), repr(exc), caplog.text, out, err):
        assert secret not in text
    assert exc.__cause__ is None and exc.__suppress_context__


def test_wrong_secret_is_access_denied_without_leaking(s3_server, s3_root, caplog, capfd):
    url = f"{s3_root}/denied.zarr"
    stores.write_dataset(_tb(), url, storage_options=s3_server.storage_options)
    wrong = "WRONG-" + s3_server.secret[::-1]
    bad = {**s3_server.storage_options, "secret": wrong}
    caplog.set_level(logging.DEBUG)
    for call in (
        lambda: stores.open_dataset(url, storage_options=bad),
        lambda: stores.write_dataset(_tb(), f"{s3_root}/other.zarr", storage_options=bad),
        lambda: stores.read_bytes(f"{url}/zarr.json", storage_options=bad),
        lambda: stores.exists(url, storage_options=bad),
    ):
        with pytest.raises(errors.AccessDenied) as info:
            call()
        assert url.split("/denied")[0] in str(info.value)
        _assert_secret_hidden(wrong, info.value, caplog, capfd)
        _assert_secret_hidden(s3_server.secret, info.value, caplog, capfd)


def test_read_only_identity_reads_but_cannot_write(s3_server, s3_root, caplog, capfd):
    url = f"{s3_root}/ro.zarr"
    ds = _tb()
    stores.write_dataset(ds, url, storage_options=s3_server.storage_options)
    ro = s3_server.reader_options
    xr.testing.assert_identical(stores.open_dataset(url, storage_options=ro).load(), ds)
    with pytest.raises(errors.AccessDenied) as info:
        stores.write_dataset(ds, f"{s3_root}/ro2.zarr", storage_options=ro)
    _assert_secret_hidden(s3_server.reader_secret, info.value, caplog, capfd)


def test_anonymous_access_is_denied(s3_server, s3_root):
    url = f"{s3_root}/anon.zarr"
    stores.write_dataset(_tb(), url, storage_options=s3_server.storage_options)
    with pytest.raises(errors.AccessDenied):
        stores.open_dataset(url, storage_options={"endpoint_url": s3_server.endpoint_url,
                                                  "anon": True})


def test_missing_store_and_bucket_are_store_not_found(s3_server, s3_root):
    opts = s3_server.storage_options
    with pytest.raises(errors.StoreNotFound, match="does not exist"):
        stores.open_dataset(f"{s3_root}/absent.zarr", storage_options=opts)
    with pytest.raises(errors.StoreNotFound):
        stores.read_bytes(f"{s3_root}/absent.json", storage_options=opts)
    with pytest.raises(errors.StoreNotFound):
        stores.open_dataset("s3://no-such-bucket-tbcube/x.zarr", storage_options=opts)
    with pytest.raises(errors.StoreNotFound):
        stores.finalise(f"{s3_root}/absent.zarr", {"a": 1}, storage_options=opts)


def test_unreachable_endpoint_is_one_line_store_error(s3_server):
    from tests.fixtures.s3 import _free_ports

    (port,) = _free_ports(1)
    opts = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "k", "secret": "s-unreachable",
            "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}}}
    t0 = time.monotonic()
    with pytest.raises(errors.StoreError, match="unreachable") as info:
        stores.open_dataset("s3://bucket/x.zarr", storage_options=opts)
    assert time.monotonic() - t0 < 60
    assert type(info.value) is errors.StoreError and "\n" not in str(info.value)
    assert "s-unreachable" not in str(info.value)


def test_credentials_from_environment(s3_server, s3_root, monkeypatch):
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    url = f"{s3_root}/env.zarr"
    ds = _tb()
    stores.write_dataset(ds, url)  # no storage_options: resolved from the environment
    xr.testing.assert_identical(stores.open_dataset(url).load(), ds)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(errors.AccessDenied):
        stores.open_dataset(url)


def test_credentials_from_run_config_section(s3_server, s3_root, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    section = types.SimpleNamespace(
        endpoint_url=s3_server.endpoint_url, profile=None, region=None, anon=False,
        key=SecretStr(s3_server.key), secret=SecretStr(s3_server.secret),
    )
    url = f"{s3_root}/cfg.zarr"
    opts = stores.storage_options_for(url, section)
    assert s3_server.secret not in repr(opts) and s3_server.secret not in str(opts)
    ds = _tb()
    stores.write_dataset(ds, url, storage_options=opts)
    back = stores.open_dataset(url, storage_options=opts)
    xr.testing.assert_identical(back.load(), ds)
    for text in (repr(back), str(back.attrs), str(back.encoding), str(back.tb.encoding)):
        assert s3_server.secret not in text


def test_secret_is_never_written_into_attrs(s3_server, s3_root):
    ds = _tb()
    ds.attrs["config"] = f"storage: {{secret: {s3_server.secret}}}"
    with pytest.raises(errors.ConfigError) as info:
        stores.write_dataset(ds, f"{s3_root}/leak.zarr", storage_options=s3_server.storage_options)
    assert s3_server.secret not in str(info.value)
    assert not stores.exists(f"{s3_root}/leak.zarr", storage_options=s3_server.storage_options)


def test_existence_is_not_answered_from_a_stale_listing(s3_server, s3_root):
    """Another client writes after this process listed the prefix: the store must be found."""
    opts = s3_server.storage_options
    url = f"{s3_root}/late.zarr"
    stores.write_bytes(f"{s3_root}/other.json", b"{}", storage_options=opts)
    cached = s3fs.S3FileSystem(**opts)  # the instance stores.* reuse (fsspec instance cache)
    cached.ls(s3_root.removeprefix("s3://"))  # populate its listing cache
    stores.write_dataset(_tb(), url, storage_options={**opts, "skip_instance_cache": True})
    assert stores.exists(url, storage_options=opts)
    xr.testing.assert_identical(stores.open_dataset(url, storage_options=opts).load(), _tb())


def test_missing_weed_binary_fails_instead_of_skipping(tmp_path, monkeypatch):
    from tests.fixtures import s3 as s3_fixture

    monkeypatch.setattr(s3_fixture.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="must not be skipped"):
        s3_fixture.weed_binary()
