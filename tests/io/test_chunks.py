"""A chunk that does not decode is a one-line InputDataError naming the store, the variable and
the chunk (pipeline/io/chunks.py), in this process, on Dask workers, on S3 and through the CLI,
and a failed publish leaves no version behind."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from pipeline import errors, grid
from pipeline.io import chunks, stores


def _tb(n_time: int = 12) -> xr.Dataset:
    ds = grid.grid_coords("M36", grid.Window(100, 106, 300, 308))
    ds = ds.assign_coords(time=np.datetime64("2015-04-01") + np.arange(n_time).astype(
        "timedelta64[D]"))
    rng = np.random.default_rng(3)
    ds["tb"] = (("time", "y", "x"), (180 + 100 * rng.random((n_time, 6, 8))).astype(np.float32),
                {"units": "K", "grid_mapping": "crs"})
    ds["n_obs"] = (("time", "y", "x"), rng.integers(0, 5, (n_time, 6, 8)).astype(np.uint8),
                   {"units": "1", "grid_mapping": "crs"})
    return ds


def _written(tmp_path: Path, zarr_format: int = 3) -> str:
    url = str(tmp_path / "tb.zarr")
    stores.write_dataset(_tb(), url, chunks={"time": 4},      # tb chunks 0.0.0, 1.0.0, 2.0.0
                         zarr_format=zarr_format)
    return url


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(("damage", "zarr_format"),
                         [("garbage", 3), ("truncated", 3), ("garbage", 2)])
def test_a_corrupt_chunk_names_store_variable_and_chunk(tmp_path, damage, zarr_format):
    url = _written(tmp_path, zarr_format)
    chunk = Path(url) / "tb" / ("c/1/0/0" if zarr_format == 3 else "1.0.0")
    data = chunk.read_bytes()
    chunk.write_bytes(b"\x00not zstd\xff" * 8 if damage == "garbage" else data[: len(data) // 3])
    ds = stores.open_dataset(url)
    with pytest.raises(errors.InputDataError) as e:
        ds["tb"].load()
    msg = _one_line(e)
    assert msg.startswith(f"{url}: variable 'tb', chunk 1.0.0 cannot be decoded "
                          "(corrupt or truncated data?): ")
    # The other chunks and variables still read, and equal what was written.
    np.testing.assert_array_equal(ds["tb"].isel(time=slice(0, 4)).values,
                                  _tb()["tb"].isel(time=slice(0, 4)).values)
    xr.testing.assert_equal(ds["n_obs"].load().reset_coords(drop=True),
                            _tb()["n_obs"].reset_coords(drop=True))


def test_the_bad_chunk_is_found_inside_a_batch(tmp_path):
    """zarr decodes `codec_pipeline.batch_size` chunks at a time; the error names the bad one."""
    url = _written(tmp_path)
    (Path(url) / "tb" / "c" / "2" / "0" / "0").write_bytes(b"garbage")
    with zarr.config.set({"codec_pipeline.batch_size": 3}):
        tb = zarr.open_group(url, mode="r")["tb"]      # no Dask: one read of all 3 chunks
        with pytest.raises(errors.InputDataError, match=r"variable 'tb', chunk 2\.0\.0 "):
            tb[:]


def test_a_corrupt_chunk_on_a_dask_worker_reaches_the_client(tmp_path, dask_client):
    url = _written(tmp_path)
    (Path(url) / "n_obs" / "c" / "0" / "0" / "0").write_bytes(b"garbage")
    ds = stores.open_dataset(url)
    with pytest.raises(errors.InputDataError) as e:
        dask_client.compute(ds["n_obs"].sum()).result()
    assert f"{url}: variable 'n_obs', chunk 0.0.0 cannot be decoded" in _one_line(e)


@pytest.mark.s3
def test_a_corrupt_chunk_on_s3_names_the_s3_url(s3_server, s3_root):
    import s3fs

    url = f"{s3_root}/corrupt/tb.zarr"
    opts = s3_server.storage_options
    stores.write_dataset(_tb(), url, storage_options=opts, chunks={"time": 4})
    fs = s3fs.S3FileSystem(**opts, skip_instance_cache=True)
    fs.pipe_file(url.removeprefix("s3://") + "/tb/c/0/0/0", b"garbage")
    ds = stores.open_dataset(url, storage_options=opts)
    with pytest.raises(errors.InputDataError) as e:
        ds["tb"].load()
    msg = _one_line(e)
    assert msg.startswith(f"{url}: variable 'tb', chunk 0.0.0 cannot be decoded")
    assert opts["secret"] not in msg and opts["key"] not in msg


def test_a_corrupt_gzip_chunk_is_corrupt_not_a_fetch_error(tmp_path):
    """gzip reports bad data as an OSError (BadGzipFile): still named as a corrupt chunk."""
    import numcodecs

    url = str(tmp_path / "gz.zarr")
    z = zarr.create_array(url, shape=(8,), chunks=(4,), dtype="f4", zarr_format=2,
                          compressors=numcodecs.GZip())
    z[:] = np.arange(8)
    (Path(url) / "1").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(errors.InputDataError, match=r"chunk 1 cannot be decoded .*BadGzipFile"):
        zarr.open_array(url, mode="r")[:]


def test_chunk_keys_of_both_zarr_formats_and_fsspec_stores():
    fs = types.SimpleNamespace(protocol=("s3", "s3a"))
    s3 = types.SimpleNamespace(fs=fs, path="bucket/arch/tb/gmi.zarr")
    assert chunks._where(types.SimpleNamespace(store=s3, path="tb/c/3/0/1")) == \
        "s3://bucket/arch/tb/gmi.zarr: variable 'tb', chunk 3.0.1"
    local = types.SimpleNamespace(root=Path("/data/a.zarr"))
    assert chunks._where(types.SimpleNamespace(store=local, path="sm/2.0.1")) == \
        "/data/a.zarr: variable 'sm', chunk 2.0.1"           # zarr v2 key
    assert chunks._where(types.SimpleNamespace(store=local, path="sm/2/0/1")) == \
        "/data/a.zarr: variable 'sm', chunk 2.0.1"           # zarr v2, "/" separator
    assert chunks._where(types.SimpleNamespace(store=local, path="c/c/4")) == \
        "/data/a.zarr: variable 'c', chunk 4"                 # a variable named "c"
    http = types.SimpleNamespace(
        protocol=("http", "https"),
        unstrip_protocol=lambda p: p)                         # http paths are full URLs
    signed = types.SimpleNamespace(fs=http, path="https://u:pw@host/a.zarr")
    where = chunks._where(types.SimpleNamespace(store=signed, path="tb/c/0"))
    assert where.startswith("https://***@host/a.zarr: variable 'tb'") and "pw" not in where


def test_a_user_chosen_codec_pipeline_is_left_alone():
    path = "zarr.core.codec_pipeline.BatchedCodecPipeline"
    assert zarr.config.get("codec_pipeline.path") == "pipeline.io.chunks.CheckedCodecPipeline"
    with zarr.config.set({"codec_pipeline.path": "somewhere.FastPipeline"}):
        chunks.install()
        assert zarr.config.get("codec_pipeline.path") == "somewhere.FastPipeline"
    with zarr.config.set({"codec_pipeline.path": path}):
        chunks.install()
        assert zarr.config.get("codec_pipeline.path").endswith("CheckedCodecPipeline")


@pytest.mark.slow
def test_cli_on_a_corrupt_input_is_one_line_and_publishes_nothing(sm_archive, tmp_path, capsys):
    from tests.fixtures.common import archive_copy, cli_error_lines

    root = archive_copy(sm_archive[0], tmp_path / "archive", products=False)
    tb = Path(stores.tb_url(root, "smap"))
    victim = sorted(p for p in (tb / "tb" / "c").rglob("*") if p.is_file())[0]
    victim.write_bytes(b"garbage")
    key = ".".join(victim.relative_to(tb / "tb" / "c").parts)
    err = cli_error_lines(["sm", "retrieve", "--root", root], capsys)
    assert err[-1] == (f"error: {tb}: variable 'tb', chunk {key} cannot be decoded (corrupt or "
                       "truncated data?): RuntimeError: Zstd decompression error: invalid input "
                       "data")
    assert not any("Traceback" in ln for ln in err)
    # No half-published output: no version store, no current pointer.
    prod = Path(root) / "products"
    assert not prod.exists() or not [p for p in prod.rglob("*.zarr")]


def test_a_failed_fetch_is_not_called_corrupt(tmp_path, monkeypatch):
    """Errors from fetching the bytes (denied, unreachable) keep their type, so the storage
    layer can classify them (tests/io/test_s3.py); only decoding failures are 'corrupt'."""
    from zarr.storage import LocalStore

    url = _written(tmp_path)

    get = LocalStore.get

    async def denied(self, key, *a, **k):
        if "/c/" in key:                                   # chunks only; metadata reads fine
            raise PermissionError(f"denied: {key}")
        return await get(self, key, *a, **k)

    monkeypatch.setattr(LocalStore, "get", denied)
    with pytest.raises(PermissionError, match="denied: tb/c/0/0/0"):
        zarr.open_array(zarr.storage.LocalStore(url, read_only=True), path="tb", mode="r")[:4]
