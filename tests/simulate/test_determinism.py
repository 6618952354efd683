"""Counter-based randomness: same seed → same bytes, chunked == whole, window independence."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from pipeline import grid
from pipeline.io import stores
from pipeline.simulate import ArchiveSpec, generate, preset_specs

# 4 × 3 cells, 16 days across SMAP's first day and TMI's last: every sensor has a store
SPEC = ArchiveSpec("check", "N36", grid.Window(180, 184, 205, 208), "2015-03-28", "2015-04-12",
                   stations_per_class=1, n_towers=2)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _load_all(root: str) -> dict[str, xr.Dataset]:
    out = {}
    for kind in ("static", "tb", "truth", "insitu", "towers"):
        for p in sorted(Path(root, kind).glob("*.zarr")):
            out[f"{kind}/{p.stem}"] = xr.open_zarr(str(p), zarr_format=3).load()
    return out


def _assert_same_values(a: dict[str, xr.Dataset], b: dict[str, xr.Dataset]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert set(a[k].variables) == set(b[k].variables), k
        for v in a[k].variables:
            x, y = a[k][v].values, b[k][v].values
            if x.dtype.kind == "f":
                assert np.array_equal(x, y, equal_nan=True), (k, v)
            else:
                assert np.array_equal(x, y), (k, v)
        assert a[k].attrs == b[k].attrs, k


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("whole")
    generate(SPEC, str(root), seed=7)
    return str(root)


def test_same_seed_gives_the_same_bytes(whole, tmp_path):
    generate(SPEC, str(tmp_path), seed=7)
    a, b = _files(Path(whole)), _files(tmp_path)
    assert a.keys() == b.keys() and len(a) > 50
    different = [k for k in a if a[k] != b[k]]
    assert not different, different[:5]


def test_other_seed_gives_other_data(whole, tmp_path):
    generate(SPEC, str(tmp_path), seed=8)
    a = xr.open_zarr(stores.tb_url(whole, "smap")).tb.values
    b = xr.open_zarr(stores.tb_url(str(tmp_path), "smap")).tb.values
    both = np.isfinite(a) & np.isfinite(b)
    assert both.sum() > 0 and not np.array_equal(a[both], b[both])


def test_chunked_generation_equals_whole_generation(whole, tmp_path):
    # 2 × 2 blocks over 4 × 3 cells: full and partial blocks
    generate(dataclasses.replace(SPEC, tile=2), str(tmp_path), seed=7)
    _assert_same_values(_load_all(whole), _load_all(str(tmp_path)))


def test_a_cell_is_the_same_in_any_window(whole, tmp_path):
    """The global preset's first block equals the same cells of a regional window."""
    glob = preset_specs("global", start=SPEC.start, end=SPEC.end)["global-n36"]
    glob = dataclasses.replace(glob, end="2015-03-31", max_blocks=1, stations_per_class=0,
                               n_towers=0)
    generate(glob, str(tmp_path), seed=7)
    blk = glob.blocks()[0]
    sub = dataclasses.replace(SPEC, window=grid.Window(blk.row0 + 8, blk.row0 + 11, blk.col0 + 5,
                                                        blk.col0 + 7), end="2015-03-31",
                              stations_per_class=0, n_towers=0)
    generate(sub, str(tmp_path / "sub"), seed=7)
    full = xr.open_zarr(stores.tb_url(str(tmp_path), "amsr2"))
    assert full.sizes["y"] == 500 and full.sizes["x"] == 500  # whole grid, lazily
    part = full.tb.isel(y=slice(8, 11), x=slice(5, 7)).values
    ref = xr.open_zarr(stores.tb_url(str(tmp_path / "sub"), "amsr2")).tb.values
    assert np.array_equal(part, ref, equal_nan=True)
    assert np.isfinite(ref).any()
    # unwritten blocks read as missing
    assert np.isnan(full.tb.isel(y=slice(40, 44), x=slice(0, 4)).values).all()


def test_cli_prints_store_urls_then_the_root(tmp_path):
    from pipeline.cli import cli

    root = tmp_path / "cli"
    res = CliRunner().invoke(cli, ["simulate", "--preset", "tiny", "--root", str(root),
                                   "--start", "2015-04-01", "--end", "2015-04-20", "--quiet",
                                   "--dielectric", "dobson"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[-1] == str(root)
    assert stores.tb_url(str(root), "smap") in lines and stores.tb_url(str(root), "tmi") in lines
    assert stores.tb_url(str(root), "amsre") not in lines
    assert all(stores.exists(u) for u in lines)
    truth = xr.open_zarr(stores.truth_url(str(root), "M36"))
    assert '"dielectric": "dobson"' in truth.attrs["simulator_settings"]


def test_cli_rejects_bad_dates(tmp_path):
    from pipeline.cli import main

    with pytest.raises(SystemExit) as e:
        main(["simulate", "--root", str(tmp_path), "--start", "2016-01-01", "--end",
              "2015-01-01", "--quiet"])
    assert e.value.code == 2


@pytest.mark.s3
@pytest.mark.slow
def test_tiny_archive_on_s3(s3_server, tmp_path):
    """A (short) tiny archive written to S3 passes the schema checks and matches local."""
    from pipeline.simulate import simulate

    root = s3_server.url("sim-tiny")
    urls = simulate("tiny", root, seed=0, start="2015-04-01", end="2015-04-15",
                    storage_options=s3_server.storage_options, progress=False)
    assert urls["root"] == root and urls["tb/smap"] == f"{root}/tb/smap.zarr"
    local = simulate("tiny", str(tmp_path), seed=0, start="2015-04-01", end="2015-04-15",
                     progress=False)
    a = stores.open_dataset(urls["tb/gmi"], storage_options=s3_server.storage_options).load()
    b = xr.open_zarr(local["tb/gmi"]).load()
    assert np.array_equal(a.tb.values, b.tb.values, equal_nan=True)
