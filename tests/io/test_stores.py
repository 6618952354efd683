"""Zarr stores at local paths and ``file://`` URLs: formats, phased writes, checks, errors.

The same code paths against a real S3 server are in test_s3.py.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from pydantic import SecretStr

from pipeline import errors, grid
from pipeline.io import stores


def _tb(n_time: int = 10) -> xr.Dataset:
    """A small M36 cube (time, y, x) with coords, crs and a NaN."""
    ds = grid.grid_coords("M36", grid.Window(100, 106, 300, 308))
    ds = ds.assign_coords(time=np.datetime64("2015-04-01") + np.arange(n_time).astype(
        "timedelta64[D]"))
    rng = np.random.default_rng(7)
    tb = (180 + 100 * rng.random((n_time, 6, 8))).astype(np.float32)
    tb[3, 2, 1] = np.nan
    ds["tb"] = (("time", "y", "x"), tb, {"units": "K", "grid_mapping": "crs"})
    ds["n_obs"] = (("time", "y", "x"), rng.integers(0, 5, (n_time, 6, 8)).astype(np.uint8),
                   {"units": "1", "grid_mapping": "crs"})
    return ds


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


@pytest.fixture(params=["path", "file"])
def store(request, tmp_path) -> tuple[str, Path]:
    """``(url, local path)`` of a new store, as a plain path and as a ``file://`` URL."""
    path = tmp_path / "s.zarr"
    return (str(path) if request.param == "path" else f"file://{path}"), path


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_round_trip_with_explicit_format_and_consolidation(store, zarr_format):
    url, path = store
    ds = _tb()
    stores.write_dataset(ds, url, chunks={"time": 5}, zarr_format=zarr_format)
    if zarr_format == 3:
        meta = json.loads((path / "zarr.json").read_text())
        assert meta["zarr_format"] == 3 and "tb" in meta["consolidated_metadata"]["metadata"]
        assert not (path / ".zgroup").exists()
    else:
        assert (path / ".zgroup").exists() and (path / ".zmetadata").exists()
        assert not (path / "zarr.json").exists()
    assert stores.store_format(url) == (zarr_format, True)
    back = stores.open_dataset(url)
    assert back.tb.chunks == ((5, 5), (6,), (8,))
    xr.testing.assert_identical(back.load(), ds)
    assert stores.open_dataset(url, chunks={"time": 10}).tb.chunks[0] == (10,)


def test_small_coordinates_open_in_memory_and_stay_there_when_chunked(tmp_path, monkeypatch):
    """2-D lat/lon load at open (else xarray computes them to compare on every binary op
    between arrays from two stores); data stay lazy; over the size limit coords stay lazy."""
    url = str(tmp_path / "s.zarr")
    stores.write_dataset(_tb(), url, chunks={"time": 5})
    ds = stores.open_dataset(url)
    assert ds.tb.chunks is not None
    assert all(ds[c].variable.chunks is None for c in ("lat", "lon"))
    again = stores.chunk_variables(ds, {"time": 2})
    assert again.tb.chunks[0] == (2,) * 5 and again.lat.variable.chunks is None
    assert ds.chunk({"time": 2}).lat.variable.chunks is not None     # what it avoids
    xr.testing.assert_identical(again.load(), ds.load())
    monkeypatch.setattr(stores, "EAGER_COORD_BYTES", 8)
    assert stores.open_dataset(url).lat.variable.chunks is not None


def test_stale_encoding_is_dropped_on_rewrite(tmp_path):
    src, dst = tmp_path / "a.zarr", tmp_path / "b.zarr"
    stores.write_dataset(_tb(), str(src), chunks={"time": 5})
    opened = stores.open_dataset(str(src))
    assert opened.tb.encoding["chunks"] == (5, 6, 8)
    # Rechunking to 4 with the old encoding kept would make xarray refuse (dask chunk 4 vs
    # encoded Zarr chunk 5); the store must take the new chunks.
    stores.write_dataset(opened.chunk(time=4), str(dst))
    assert stores.open_dataset(str(dst)).tb.encoding["chunks"] == (4, 6, 8)
    xr.testing.assert_identical(stores.open_dataset(str(dst)).load(), _tb())


def test_irregular_dask_chunks_are_refused_before_writing(tmp_path):
    url = str(tmp_path / "irregular.zarr")
    with pytest.raises(errors.SchemaError, match=r"'tb' dim 'time': dask chunks \[3, 5, 2\]"):
        stores.write_dataset(_tb().chunk(time=(3, 5, 2)), url)
    assert not (tmp_path / "irregular.zarr").exists()


def test_template_writes_metadata_and_coords_only(store):
    url, path = store
    ds = _tb()
    stores.write_template(ds.chunk(time=1), url, chunks={"time": 5, "y": 3})
    data_chunks = [k for k in _files(path) if k.startswith(("tb/c", "n_obs/c"))]
    assert data_chunks == []
    tmpl = stores.open_dataset(url).load()
    assert np.isnan(tmpl.tb.values).all()
    np.testing.assert_array_equal(tmpl.lat.values, ds.lat.values)
    np.testing.assert_array_equal(tmpl.time.values, ds.time.values)
    assert tmpl.crs.attrs["epsg_code"] == 6933
    assert tmpl.tb.encoding["chunks"] == (5, 3, 8)


def test_template_writes_variables_that_parts_cannot_carry(tmp_path):
    url = str(tmp_path / "static.zarr")
    ds = _tb()
    land = (ds.lat > ds.lat.mean()).astype(np.float32).chunk()  # dask-backed (y, x) layer
    land.attrs["units"] = "1"
    ds["land_fraction"] = land
    stores.write_template(ds, url, chunks={"time": 5})
    files = _files(tmp_path / "static.zarr")
    assert not [k for k in files if k.startswith("tb/c")]
    assert [k for k in files if k.startswith("land_fraction/c")]
    for part in (slice(0, 5), slice(5, 10)):
        stores.write_region(ds.isel(time=part), url, {"time": part})
    xr.testing.assert_identical(stores.open_dataset(url).load(), ds.compute())
    # Parts along y as well: then the (y, x) layer is a part's job, not the template's.
    url2 = str(tmp_path / "static2.zarr")
    stores.write_template(ds, url2, chunks={"time": 5, "y": 3})
    assert not [k for k in _files(tmp_path / "static2.zarr") if k.startswith("land_fraction/c")]


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_region_parts_reassemble_the_dataset(store, zarr_format):
    url, path = store
    ds = _tb()
    stores.write_template(ds, url, chunks={"time": 5, "y": 3}, zarr_format=zarr_format)
    # Parts carry the full coords and crs, as a stage would produce them.
    stores.write_region(ds.isel(time=slice(5, 10), y=slice(3, 6)), url,
                        {"time": slice(5, 10), "y": slice(3, 6)})
    partial = stores.open_dataset(url).load()
    assert np.isnan(partial.tb.values[:5]).all() and np.isnan(partial.tb.values[5:, :3]).all()
    np.testing.assert_array_equal(partial.tb.values[5:, 3:], ds.tb.values[5:, 3:])
    for t, y in ((slice(0, 5), slice(0, 6)), (slice(5, 10), slice(0, 3))):
        stores.write_region(ds.isel(time=t, y=y).chunk(y=3), url, {"time": t, "y": y})
    stores.finalise(url, {"history": "parts 1-3", "n_parts": np.int64(3),
                          "bounds": np.array([1.5, 2.5])})
    assert stores.store_format(url) == (zarr_format, True)
    attrs = stores.open_dataset(url).attrs
    assert attrs["n_parts"] == 3 and attrs["bounds"] == [1.5, 2.5]
    if zarr_format == 2:
        consolidated = json.loads((path / ".zmetadata").read_text())["metadata"]
        assert consolidated[".zattrs"]["history"] == "parts 1-3" and "tb/.zarray" in consolidated
    back = stores.open_dataset(url).load()
    assert back.attrs["history"] == "parts 1-3" and back.attrs["grid"] == "M36"
    xr.testing.assert_identical(back.drop_attrs(), ds.drop_attrs())


def test_region_rewrite_is_idempotent(store):
    url, path = store
    ds = _tb()
    stores.write_template(ds, url, chunks={"time": 5})
    part = ds.isel(time=slice(0, 5))
    stores.write_region(part, url, {"time": slice(0, 5)})
    first = _files(path)
    stores.write_region(part, url, {"time": slice(0, 5)})
    assert _files(path) == first
    np.testing.assert_array_equal(stores.open_dataset(url).tb.values[:5], ds.tb.values[:5])


@pytest.mark.parametrize(
    ("region", "chunks", "boundaries"),
    [
        (slice(0, 10), {"time": 3}, "[3, 6, 9]"),   # dask chunks straddle Zarr chunks of 5
        (slice(2, 7), None, "[2, 7]"),             # region not on Zarr chunk edges
        (slice(5, 10), {"time": 2}, "[7, 9]"),
    ],
)
def test_misaligned_part_is_refused_before_any_write(tmp_path, region, chunks, boundaries):
    path = tmp_path / "m.zarr"
    ds = _tb()
    stores.write_template(ds, str(path), chunks={"time": 5})
    before = _files(path)
    part = ds.isel(time=region)
    part = part.chunk(chunks) if chunks else part
    with pytest.raises(errors.SchemaError) as info:
        stores.write_region(part, str(path), {"time": region})
    msg = str(info.value)
    assert str(path) in msg and ("variable 'tb'" in msg or "variable 'n_obs'" in msg)
    assert "dim 'time'" in msg and boundaries in msg and "Zarr chunk 5" in msg
    assert "\n" not in msg
    assert _files(path) == before


def test_parts_must_align_with_shards_of_a_sharded_store(tmp_path):
    url = str(tmp_path / "sharded.zarr")
    ds = _tb(20)
    stores.write_template(ds, url, chunks={"time": 10},
                          encoding={"tb": {"chunks": (5, 6, 8), "shards": (10, 6, 8)}})
    assert stores.open_dataset(url).tb.encoding["shards"] == (10, 6, 8)
    with pytest.raises(errors.SchemaError, match=r"boundaries \[5\] .* Zarr shard 10"):
        stores.write_region(ds.isel(time=slice(0, 5)), url, {"time": slice(0, 5)})
    stores.write_region(ds.isel(time=slice(10, 20)), url, {"time": slice(10, 20)})
    back = stores.open_dataset(url).tb.values
    np.testing.assert_array_equal(back[10:], ds.tb.values[10:])
    assert np.isnan(back[:10]).all()


def test_part_that_does_not_fit_the_store_is_refused(tmp_path):
    url = str(tmp_path / "f.zarr")
    ds = _tb()
    stores.write_template(ds, url, chunks={"time": 5})
    with pytest.raises(errors.SchemaError, match="coordinate 'time'"):
        stores.write_region(ds.isel(time=slice(0, 5)), url, {"time": slice(5, 10)})
    with pytest.raises(errors.SchemaError, match="part has 5 along 'time'"):
        stores.write_region(ds.isel(time=slice(0, 5)), url, {"time": slice(0, 10)})
    with pytest.raises(errors.SchemaError, match="not in the store template"):
        stores.write_region(ds.isel(time=slice(0, 5)).assign(extra=ds.tb[:5] * 2), url,
                            {"time": slice(0, 5)})
    with pytest.raises(errors.SchemaError, match="not a dim of the store"):
        stores.write_region(ds, url, {"band": slice(0, 1)})


def test_missing_stores_raise_store_not_found(tmp_path):
    absent = tmp_path / "absent.zarr"
    for call in (
        lambda: stores.open_dataset(str(absent)),
        lambda: stores.open_dataset(f"file://{absent}"),
        lambda: stores.finalise(str(absent), {"a": 1}),
        lambda: stores.write_region(_tb(), str(absent), {"time": slice(0, 10)}),
        lambda: stores.read_bytes(str(tmp_path / "absent.json")),
    ):
        with pytest.raises(errors.StoreNotFound) as info:
            call()
        assert "absent" in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "plain").mkdir()
    with pytest.raises(errors.StoreNotFound, match="holds no Zarr group metadata"):
        stores.open_dataset(str(tmp_path / "plain"))


def test_corrupt_root_metadata_is_a_one_line_error(tmp_path):
    url = str(tmp_path / "corrupt.zarr")
    stores.write_dataset(_tb(), url)
    (tmp_path / "corrupt.zarr" / "zarr.json").write_bytes(b"\x00garbage{")
    with pytest.raises(errors.StoreError, match="corrupt.zarr: corrupt Zarr metadata"):
        stores.open_dataset(url)


def test_parallel_parts_assemble_correctly(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    url = str(tmp_path / "parallel.zarr")
    ds = _tb(20)
    stores.write_template(ds, url, chunks={"time": 2, "y": 3})
    parts = [(slice(t, t + 2), slice(y, y + 3)) for t in range(0, 20, 2) for y in (0, 3)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda p: stores.write_region(ds.isel(time=p[0], y=p[1]), url,
                                                    {"time": p[0], "y": p[1]}), parts))
    xr.testing.assert_identical(stores.open_dataset(url).load(), ds)


def test_write_mode_w_minus_refuses_to_overwrite(tmp_path):
    url = str(tmp_path / "once.zarr")
    stores.write_dataset(_tb(), url)
    with pytest.raises(errors.StoreError, match="already exists"):
        stores.write_dataset(_tb(), url, mode="w-")


def test_bytes_and_json_helpers(tmp_path):
    url = stores.join(f"file://{tmp_path}", "reports", "deep", "r.json")
    stores.write_json(url, {"b": 1, "a": [1.5, "x"]})
    assert stores.read_json(url) == {"a": [1.5, "x"], "b": 1}
    assert stores.exists(url) and not stores.exists(url + ".nope")
    assert stores.read_bytes(url).startswith(b"{\n  \"a\"")
    stores.write_bytes(str(tmp_path / "bad.json"), b"{not json")
    with pytest.raises(errors.InputDataError, match="bad.json: not valid JSON"):
        stores.read_json(str(tmp_path / "bad.json"))


def test_layout_helpers_follow_the_data_contract():
    root = "s3://bucket/archive/"
    assert stores.tb_url(root, "gmi") == "s3://bucket/archive/tb/gmi.zarr"
    assert stores.static_url(root, "N36") == "s3://bucket/archive/static/N36.zarr"
    assert stores.calibrated_url(root, "amsr2") == "s3://bucket/archive/calibrated/amsr2.zarr"
    assert stores.truth_url(root, "M25") == "s3://bucket/archive/truth/M25.zarr"
    assert stores.insitu_url(root, "scan") == "s3://bucket/archive/insitu/scan.zarr"
    assert stores.towers_url(root, "fluxnet") == "s3://bucket/archive/towers/fluxnet.zarr"
    assert stores.reports_url("/data/a", "x.csv") == "/data/a/reports/x.csv"


# --- credentials ----------------------------------------------------------------------------
_AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
             "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")


@pytest.fixture
def clean_env(monkeypatch):
    for var in _AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _section(**kw):
    base = dict(endpoint_url=None, profile=None, region=None, anon=False, key=None, secret=None)
    return types.SimpleNamespace(**{**base, **kw})


def test_storage_options_precedence(clean_env):
    url = "s3://b/p.zarr"
    assert stores.storage_options_for("/local/x.zarr") == {}
    assert stores.storage_options_for("file:///x.zarr", _section(key=SecretStr("k"))) == {}
    assert stores.storage_options_for(url) == {}
    clean_env.setenv("AWS_ENDPOINT_URL", "http://env:9000")
    clean_env.setenv("AWS_ACCESS_KEY_ID", "envkey")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    clean_env.setenv("AWS_SESSION_TOKEN", "envtoken")
    assert stores.storage_options_for(url) == {
        "endpoint_url": "http://env:9000", "key": "envkey", "secret": "envsecret",
        "token": "envtoken"}
    clean_env.setenv("AWS_ENDPOINT_URL_S3", "http://env-s3:9000")
    assert stores.storage_options_for(url)["endpoint_url"] == "http://env-s3:9000"
    cfg = _section(endpoint_url="http://cfg:9000", key=SecretStr("ck"), secret=SecretStr("cs"),
                   region="eu-west-1")
    assert stores.storage_options_for(url, cfg) == {
        "endpoint_url": "http://cfg:9000", "key": "ck", "secret": "cs",
        "client_kwargs": {"region_name": "eu-west-1"}}
    assert stores.storage_options_for(url, _section(profile="lab")) == {
        "endpoint_url": "http://env-s3:9000", "profile": "lab"}
    assert stores.storage_options_for(url, _section(anon=True))["anon"] is True
    clean_env.delenv("AWS_ACCESS_KEY_ID")
    clean_env.setenv("AWS_PROFILE", "envprofile")
    assert stores.storage_options_for(url)["profile"] == "envprofile"
    with pytest.raises(errors.ConfigError, match="only one of 'key' and 'secret'"):
        stores.storage_options_for(url, _section(key=SecretStr("only-key")))


def test_storage_options_repr_hides_secrets(clean_env):
    opts = stores.storage_options_for(
        "s3://b/x", _section(key=SecretStr("AKIDEXAMPLE"), secret=SecretStr("s3cr3t-value")))
    assert opts["secret"] == "s3cr3t-value"
    for text in (repr(opts), str(opts), f"{opts}"):
        assert "s3cr3t-value" not in text and "AKIDEXAMPLE" not in text and "***" in text


def test_url_user_info_never_appears_in_errors():
    for url in ("http://user:hunter2-password@127.0.0.1:9/x.zarr",
                "s3://user:hunter2-password@bucket/x.zarr"):
        with pytest.raises(errors.StoreError) as info:
            stores.open_dataset(url, storage_options={
                "endpoint_url": "http://127.0.0.1:9",
                "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
            } if url.startswith("s3") else {})
        assert "hunter2-password" not in str(info.value) and "\n" not in str(info.value)


def test_storage_options_from_the_run_config_section(clean_env):
    config = pytest.importorskip("pipeline.config")
    section = config.StorageSection(endpoint_url="http://127.0.0.1:9000", region="us-east-1",
                                    key="AKIDCONFIG", secret="config-secret-value")
    assert "config-secret-value" not in repr(section)
    opts = stores.storage_options_for("s3://b/x.zarr", section)
    assert opts == {"endpoint_url": "http://127.0.0.1:9000", "key": "AKIDCONFIG",
                    "secret": "config-secret-value",
                    "client_kwargs": {"region_name": "us-east-1"}}
    assert "config-secret-value" not in repr(opts)
    assert stores.storage_options_for("s3://b/x", config.StorageSection(anon=True)) == {
        "anon": True}


def _tb5(**attrs) -> xr.Dataset:
    """A TB store in the contract's layout (time, pass, channel, y, x)."""
    ds = grid.grid_coords("M36", grid.Window(100, 102, 300, 303))
    ds = ds.assign_coords(time=np.array(["2015-04-01", "2015-04-02"], "datetime64[ns]"),
                          **{"pass": ["am", "pm"], "channel": ["1.41V", "1.41H"]})
    ds["tb"] = (("time", "pass", "channel", "y", "x"), np.full((2, 2, 2, 2, 3), 250, np.float32),
                {"units": "K", "grid_mapping": "crs", **attrs})
    return ds.assign_attrs(grid="M36")


@pytest.mark.parametrize(("mutate", "problem"), [
    (lambda ds: ds.assign(tb=ds.tb.assign_attrs(units="degC")),
     "variable 'tb' units 'degC', expected 'K'"),
    (lambda ds: ds.rename({"pass": "overpass"}),
     "variable 'tb' dims ('time', 'overpass', 'channel', 'y', 'x'), expected"),
    (lambda ds: ds.rename(tb="tbs"), "variable 'tb' missing"),
    (lambda ds: ds.assign_attrs(grid=""), "attr 'grid' missing"),
])
def test_open_tb_refuses_what_every_stage_relies_on(tmp_path, mutate, problem):
    url = stores.write_dataset(_tb5(), str(tmp_path / "ok.zarr"))
    assert stores.open_tb(url)["tb"].dims == stores.TB_DIMS
    bad = stores.write_dataset(mutate(_tb5()), str(tmp_path / "bad.zarr"))
    with pytest.raises(errors.InputDataError) as e:
        stores.open_tb(bad)
    assert str(e.value).startswith(f"{bad}: {problem}") and "\n" not in str(e.value)


def test_open_tb_reads_another_dim_order_in_the_contracts(tmp_path):
    """The contract's dims in another order are read in its order, lazily (not refused)."""
    ok = _tb5()
    ok["tb"] = ok["tb"] + xr.DataArray(np.arange(3.0), dims="x")  # values that tell x apart
    other = ok.assign(tb=ok.tb.transpose("x", "channel", "time", "y", "pass"))
    url = stores.write_dataset(other, str(tmp_path / "other.zarr"))
    got = stores.open_tb(url)
    assert got["tb"].dims == stores.TB_DIMS and got["tb"].chunks is not None
    xr.testing.assert_equal(got["tb"].load().reset_coords(drop=True),
                            ok["tb"].reset_coords(drop=True))


def test_cli_refuses_tb_in_the_wrong_units(sim_tiny, tmp_path, capsys):
    """`calibrate fit` on a GMI store that declares °C: one line naming store and variable."""
    import zarr

    from tests.fixtures.common import archive_copy, cli_error_lines

    root = archive_copy(sim_tiny, tmp_path / "archive")
    url = stores.tb_url(root, "gmi")
    zarr.open_group(url, mode="r+")["tb"].attrs["units"] = "degC"
    zarr.consolidate_metadata(url)
    err = cli_error_lines(["calibrate", "fit", "--root", root], capsys)
    assert err[-1] == f"error: {url}: variable 'tb' units 'degC', expected 'K' (data-contract.md)"
    assert not (tmp_path / "archive" / "calibration").exists()


def test_impossible_tb_is_screened_and_flagged(tmp_path):
    """Undeclared fill values (0, −9999, 65535) and ±inf: NaN and OUT_OF_RANGE_TB on the pixel;
    a clean store reads back unchanged, and the screen stays lazy and keeps the chunks."""
    import dask.callbacks

    from pipeline import qc

    ds = _tb5()
    ds["quality_flag"] = (("time", "pass", "y", "x"), np.zeros((2, 2, 2, 3), np.uint16),
                          {"units": "1"})
    clean = stores.write_dataset(ds, str(tmp_path / "clean.zarr"), chunks={"time": 1})
    computed = []

    class Count(dask.callbacks.Callback):
        def _start(self, dsk):
            computed.append(1)

    with Count():
        plain = stores.open_dataset(clean)
    n_plain = len(computed)                           # open_dataset's own (eager coords)
    with Count():
        lazy = stores.open_tb(clean)                  # lazy: the screen computes nothing more
    assert len(computed) == 2 * n_plain
    assert lazy["tb"].chunks == plain["tb"].chunks and lazy["tb"].chunks[0] == (1, 1)
    assert lazy["quality_flag"].chunks == plain["quality_flag"].chunks
    xr.testing.assert_identical(lazy.load(), plain.load())
    tb = ds["tb"].values.copy()
    tb[0, 0, 0, 0, 0] = 0.0
    tb[0, 1, 0, 1, 2] = -9999.0
    tb[1, 0, 1, 0, 0] = 65535.0
    tb[1, 1, 1, 1, 1] = np.inf
    ds["tb"].values[:] = tb
    got = stores.open_tb(stores.write_dataset(ds, str(tmp_path / "fill.zarr"))).load()
    bad = ~np.isfinite(tb) | (tb <= 0) | (tb > 400)
    np.testing.assert_array_equal(np.isnan(got["tb"].values), bad)
    np.testing.assert_array_equal(got["tb"].values[~bad], tb[~bad])
    flagged = (got["quality_flag"].values & int(qc.QC.OUT_OF_RANGE_TB)) > 0
    np.testing.assert_array_equal(flagged, bad.any(axis=2))
    assert got["tb"].attrs["units"] == "K" and got["quality_flag"].dtype == np.uint16


def _fill_every_50th(ds: xr.Dataset) -> xr.Dataset:
    flat = ds["tb"].values.reshape(-1)
    flat[np.flatnonzero(np.isfinite(flat))[::50]] = -9999.0
    return ds


@pytest.mark.slow
def test_fill_values_do_not_move_the_calibration(sim_tiny, tmp_path):
    """2 % of AMSR2's TB replaced by an undeclared −9999: the fit is the clean one (it chose a
    CDF match by land cover with 0.5 K residual bias before the screen)."""
    from pipeline.graphs import calibration
    from tests.fixtures.common import archive_copy, rewrite_store

    fits = {}
    for case in ("clean", "fill"):
        root = archive_copy(sim_tiny, tmp_path / case)
        if case == "fill":
            rewrite_store(stores.tb_url(root, "amsr2"), _fill_every_50th)
        fits[case] = {(h["source"], h["reference"]): h for h in calibration.fit(root)["hops"]}
    for hop, clean in fits["clean"].items():
        fill = fits["fill"][hop]
        assert (fill["method"], fill["granularity"]) == (clean["method"], clean["granularity"])
        for ch, c in clean["channels"].items():
            f = fill["channels"][ch]
            assert abs(f["median_bias_after_K"] - c["median_bias_after_K"]) < 0.05, (hop, ch)
            assert abs(f["rms_before_K"] - c["rms_before_K"]) < 0.1, (hop, ch)
