"""SMAP retrieval stage, graph and CLI on a synthetic archive made with different physics.

The archive (tests/fixtures/sm.py) is generated with Dobson permittivity, h = 0.18, ω = 0.06
and open water mixed in; the retrieval assumes Mironov and its land-cover table.
"""

from __future__ import annotations

import dataclasses
import json

import dask
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from pipeline import dims, errors, qc, schema
from pipeline.graphs.retrieval import retrieve
from pipeline.io import stores
from tests.fixtures import sm as smfix


def _fail_if_called(*args, **kwargs):
    raise AssertionError("the stage computed dask data")


@pytest.fixture(scope="module")
def product(sm_archive):
    # The retrieval's ancillary inputs (a reanalysis stand-in), never the truth itself.
    root, data = sm_archive
    anc = stores.open_dataset(stores.ancillary_url(root, "M36")).load()
    temp = anc["soil_temperature"] if "soil_temperature" in anc else anc["surface_temperature"]
    return retrieve(data["tb"], data["static"], surface_temperature=temp,
                    snow_water_equivalent=anc["snow_water_equivalent"])


def _has(flags, bit) -> xr.DataArray:
    return (flags & int(bit)) != 0


def test_product_matches_contract_and_truth(sm_archive, product):
    _, data = sm_archive
    schema.check(product, schema.SM_SMAP_PRODUCT, context="sm product")
    truth = data["truth"]
    sm, ref = product[dims.SOIL_MOISTURE], truth[dims.SOIL_MOISTURE]
    low = (truth[dims.VOD] <= 0.5) & sm.notnull()
    err = (sm - ref).where(low)
    # Per-pixel time-series ubRMSD (SMAP convention) against truth, pixels with ≥ 10 pairs.
    ub = np.sqrt(((err - err.mean((dims.TIME, dims.PASS))) ** 2).mean((dims.TIME, dims.PASS)))
    ub = ub.where(low.sum((dims.TIME, dims.PASS)) >= 10)
    assert int(ub.notnull().sum()) >= 25
    assert float(ub.median()) < 0.02
    r = xr.corr(sm.where(low), ref.where(low))
    assert float(r) > 0.95
    # The dielectric-model mismatch (Dobson data, Mironov retrieval) shows up as a wet bias of a
    # few hundredths (docs/soil-moisture.md quantifies it); it must not be larger.
    assert 0.0 < float(err.mean()) < 0.06
    vod_err = (product[dims.VOD] - truth[dims.VOD]).where(low)
    assert abs(float(vod_err.mean())) < 0.05


def test_quality_flags_mask_what_cannot_be_retrieved(sm_archive, product):
    _, data = sm_archive
    flags, sm = product[dims.QUALITY_FLAG], product[dims.SOIL_MOISTURE]
    assert flags.dtype == np.uint16
    sel = {dims.Y: smfix.WATER_CELL[0], dims.X: smfix.WATER_CELL[1]}
    assert bool(_has(flags.isel(sel), qc.QC.OPEN_WATER_DOMINATED).all())
    assert bool(sm.isel(sel).isnull().all())
    sel = {dims.Y: smfix.ICE_CELL[0], dims.X: smfix.ICE_CELL[1]}
    assert bool(_has(flags.isel(sel), qc.QC.PERMANENT_SNOW_ICE).all())
    assert bool(sm.isel(sel).isnull().all())
    # Frosty mornings (truth T < 273.15 K) → FROZEN_GROUND, no SM.
    frozen = data["truth"]["surface_temperature"] < 273.15
    assert int(frozen.sum()) > 0
    assert bool(_has(flags, qc.QC.FROZEN_GROUND).where(frozen, True).all())
    assert bool(sm.where(frozen).isnull().all())
    # Snow days → SNOW_COVER, no SM.
    snow = (data["truth"]["snow_water_equivalent"] > 10).broadcast_like(flags)
    assert bool(_has(flags, qc.QC.SNOW_COVER).where(snow, True).all())
    assert bool(sm.where(snow).isnull().all())
    # Swath gaps → INSUFFICIENT_OBS, no SM.
    gap = data["tb"][dims.TB].isel({dims.CHANNEL: 0}).isnull()
    assert bool(_has(flags, qc.QC.INSUFFICIENT_OBS).where(gap, True).all())
    # Dense forest: flagged, value kept.
    forest = flags.isel({dims.Y: smfix.FOREST_ROW})
    assert float(_has(forest, qc.QC.DENSE_VEGETATION).mean()) > 0.8
    assert int(sm.isel({dims.Y: smfix.FOREST_ROW}).notnull().sum()) > 0
    # Nothing retrieved where a masking flag is set.
    masking = (qc.QC.INSUFFICIENT_OBS | qc.QC.OPEN_WATER_DOMINATED | qc.QC.PERMANENT_SNOW_ICE
               | qc.QC.FROZEN_GROUND | qc.QC.SNOW_COVER | qc.QC.RETRIEVAL_NOT_CONVERGED)
    assert bool(sm.where((flags & int(masking)) != 0).isnull().all())


def test_open_water_correction_keeps_the_edge_cell_usable(sm_archive, product):
    _, data = sm_archive
    sel = {dims.Y: smfix.WET_EDGE_CELL[0], dims.X: smfix.WET_EDGE_CELL[1]}
    flags = product[dims.QUALITY_FLAG].isel(sel)
    assert bool(_has(flags, qc.QC.WATER_CONTAMINATION).all())
    err = (product[dims.SOIL_MOISTURE] - data["truth"][dims.SOIL_MOISTURE]).isel(sel)
    # 12 % water uncorrected would read ≈ +0.1 m3/m3 wetter; corrected, it is like any land cell.
    assert int(err.notnull().sum()) > 40
    assert abs(float(err.mean())) < 0.07 and float(err.std()) < 0.03


def test_ft_product_overrides_the_temperature_rule(sm_archive):
    _, data = sm_archive
    tb, truth = data["tb"].isel(time=slice(0, 4)), data["truth"].isel(time=slice(0, 4))
    ft = xr.ones_like(truth["frozen"]).astype(np.int8)  # thawed everywhere…
    ft[{dims.TIME: 3, dims.PASS: 1, dims.Y: 4, dims.X: 4}] = 0  # …but one warm evening frozen
    out = retrieve(tb, data["static"], ft_state=ft,
                                      surface_temperature=truth["surface_temperature"])
    frost = _has(out[dims.QUALITY_FLAG], qc.QC.FROZEN_GROUND)
    assert int(frost.sum()) == 1
    assert bool(frost.isel({dims.TIME: 3, dims.PASS: 1, dims.Y: 4, dims.X: 4}))


def test_rfi_is_propagated_and_unfittable_tb_is_not_converged(sm_archive):
    _, data = sm_archive
    tb = data["tb"].isel(time=slice(4, 8)).copy(deep=True)
    iv = list(tb[dims.CHANNEL].values).index("1.41V")
    tb[dims.QUALITY_FLAG][{dims.TIME: 0, dims.PASS: 0, dims.Y: 3, dims.X: 3}] = int(
        qc.QC.RFI_SUSPECTED)
    # A polarisation pair no surface can emit (H 40 K above V): the model cannot fit it.
    tb[dims.TB][{dims.TIME: 1, dims.PASS: 0, dims.CHANNEL: iv, dims.Y: 3, dims.X: 4}] = 200.0
    tb[dims.TB][{dims.TIME: 1, dims.PASS: 0, dims.CHANNEL: 1 - iv, dims.Y: 3, dims.X: 4}] = 240.0
    truth = data["truth"].isel(time=slice(4, 8))
    out = retrieve(tb, data["static"],
                                      surface_temperature=truth["surface_temperature"])
    flags = out[dims.QUALITY_FLAG]
    assert bool(_has(flags, qc.QC.RFI_SUSPECTED)[0, 0, 3, 3])
    assert int(_has(flags, qc.QC.RFI_SUSPECTED).sum()) == 1
    assert bool(_has(flags, qc.QC.RETRIEVAL_NOT_CONVERGED)[1, 0, 3, 4])
    assert np.isnan(float(out[dims.SOIL_MOISTURE][1, 0, 3, 4]))


def test_stage_is_lazy_and_equals_eager(sm_archive, product):
    root, data = sm_archive
    anc = stores.open_dataset(stores.ancillary_url(root, "M36")).load()
    temp = anc["soil_temperature"] if "soil_temperature" in anc else anc["surface_temperature"]
    tb = data["tb"].chunk({dims.TIME: 16, dims.Y: 3, dims.X: 4})
    t = temp.chunk({dims.TIME: 16, dims.Y: 3, dims.X: 4})
    swe = anc["snow_water_equivalent"].chunk({dims.TIME: 16})
    with dask.config.set(scheduler=_fail_if_called):
        lazy = retrieve(tb, data["static"], surface_temperature=t,
                                           snow_water_equivalent=swe)
    assert lazy[dims.SOIL_MOISTURE].chunks is not None
    xr.testing.assert_allclose(lazy.compute(), product, atol=1e-5)


def test_bad_inputs_raise_one_line_errors(sm_archive):
    _, data = sm_archive
    tb, static = data["tb"].isel(time=slice(0, 2)), data["static"]
    t = data["truth"]["surface_temperature"].isel(time=slice(0, 2))
    with pytest.raises(errors.InputDataError, match="surface_temperature"):
        retrieve(tb, static)
    with pytest.raises(errors.InputDataError, match="1.41 GHz H"):
        retrieve(tb.isel(channel=[0]) if str(
            tb.polarization.values[0]) == "V" else tb.isel(channel=[1]), static,
            surface_temperature=t)
    with pytest.raises(errors.InputDataError, match="'clay_fraction' missing"):
        retrieve(tb, static.drop_vars("clay_fraction"), surface_temperature=t)
    bad_units = tb.copy()
    bad_units[dims.TB] = bad_units[dims.TB].assign_attrs(units="degC")
    with pytest.raises(errors.InputDataError, match="units 'degC'"):
        retrieve(bad_units, static, surface_temperature=t)
    with pytest.raises(errors.InputDataError, match="dim 'x'"):
        retrieve(tb, static.isel(x=slice(0, 3)), surface_temperature=t)


def test_cli_publishes_product_and_report(sm_archive, product):
    from pipeline.cli import cli

    root, _ = sm_archive
    res = CliRunner().invoke(cli, ["sm", "retrieve", "--root", root], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    url = res.stdout.strip().splitlines()[-1]
    assert "/products/sm-smap-m36-v1/" in url and url.endswith(".zarr")
    written = xr.open_zarr(url)
    schema.check(written, schema.SM_SMAP_PRODUCT, context=url)
    # Equivalence: the distributed, written and re-read product equals the eager stage.
    xr.testing.assert_allclose(written[[dims.SOIL_MOISTURE, dims.VOD]].load(),
                               product[[dims.SOIL_MOISTURE, dims.VOD]], atol=1e-5)
    np.testing.assert_array_equal(written[dims.QUALITY_FLAG].values,
                                  product[dims.QUALITY_FLAG].values)
    with open(f"{root}/reports/sm-retrieval.json") as f:
        rep = json.load(f)
    target = rep["target_vod_le_0.5"]
    assert target["n"] > 1000 and target["ubrmsd_per_pixel_median"] < 0.02
    assert set(rep["by_vod"]) == {"0-0.25", "0.25-0.5", "0.5-0.8", "0.8-1.2", "1.2-inf"}
    assert rep["by_vod"]["0.8-1.2"]["n"] > 0  # the hard bin is reported, not hidden
    assert "4" in rep["by_landcover"] and rep["flag_counts"]["FROZEN_GROUND"] > 0


@pytest.mark.slow
def test_bench_reports_throughput_and_recovery():
    from pipeline.graphs import retrieval

    out = retrieval.bench_retrieval(n_pixels=512, repeats=1)
    assert out["n_retrievals"] == 1024 and out["retrievals_per_s"] > 0
    assert out["max_abs_sm_error"] < 0.02


@pytest.mark.slow
def test_pipeline_retrieval_defaults_are_the_kernel_defaults():
    """``RetrievalParams`` (pipeline side, no models import by layering) repeats the kernel's
    settings; its defaults must be the kernel's own, and its settings tuple a valid config."""
    import dataclasses

    from models import retrieval
    from pipeline import soil_moisture

    params = soil_moisture.RetrievalParams()
    handed = dict(params.kernel_settings(incidence_deg=40.0))
    cfg = retrieval.RetrievalConfig(**handed)          # every key is a kernel field
    kernel_defaults = {f.name: f.default for f in dataclasses.fields(retrieval.RetrievalConfig)}
    for name, value in handed.items():
        if name == "max_water_fraction":               # named water_mask_fraction on this side
            assert value == params.water_mask_fraction == kernel_defaults[name]
        else:
            assert value == kernel_defaults[name], name
    assert cfg.incidence_deg == 40.0 and cfg.freq_ghz == soil_moisture.SMAP_FREQ_GHZ


def test_skipping_rows_without_tb_changes_nothing():
    """Rows with no TB in either pass are not computed (``skip_empty``): the kernel's own output
    for such rows is ``KERNEL_EMPTY_ROW``, and skipping them gives identical products."""
    from pipeline import apply, soil_moisture

    rng = np.random.default_rng(7)
    n = 40
    tb_v = rng.uniform(200, 280, (n, 2)).astype(np.float32)
    tb_h = tb_v - rng.uniform(5, 40, (n, 2)).astype(np.float32)
    tb_v[:10] = np.nan                       # both passes missing: skipped
    tb_v[10:15, 0] = np.nan                  # one pass missing: still computed
    tb_h[:10] = np.nan
    t = rng.uniform(275, 300, (n, 2)).astype(np.float32)
    stat = [np.full(n, v, np.float32) for v in (0.02, 0.2, 0.4, 1.3, 0.1, 0.05, 0.3)]
    arrays = [xr.DataArray(a, dims=("row", dims.PASS)) for a in (tb_v, tb_h, t)] + \
        [xr.DataArray(a, dims=("row",)) for a in stat]
    settings = soil_moisture.RetrievalParams().kernel_settings(incidence_deg=40.0)
    kw = dict(core_dim=dims.PASS, n_outputs=4, config=settings, batch=16)
    full = apply.apply_array_kernel(soil_moisture.KERNEL, arrays, **kw)
    skip = apply.apply_array_kernel(soil_moisture.KERNEL, arrays, **kw,
                                    skip_empty=(0, soil_moisture.KERNEL_EMPTY_ROW))
    for a, b, fill in zip(full, skip, soil_moisture.KERNEL_EMPTY_ROW, strict=True):
        np.testing.assert_array_equal(a.values, b.values)        # NaNs compare equal here
        np.testing.assert_array_equal(a.values[:10], np.full((10, 2), fill, np.float32))
    assert np.isfinite(full[0].values[10:15, 1]).all()           # the half-missing rows ran


def test_retrieval_compute_blocks_grow_in_time_on_small_windows():
    """About BLOCK_RETRIEVALS retrievals per block: a one-column transect gets the whole record
    in one time chunk (64-day blocks made the demo's retrieval 3x slower on a LocalCluster);
    a full 32 x 32 tile keeps 128 days; never less than TIME_CHUNK."""
    from pipeline.graphs import retrieval

    transect = {"time": 3501, "pass": 2, "y": 204, "x": 1}
    assert retrieval.compute_time_chunk(transect) == 3501
    assert retrieval.compute_time_chunk({"time": 3501, "pass": 2, "y": 1624, "x": 3856}) == 128
    assert retrieval.compute_time_chunk({"time": 40, "pass": 2, "y": 64, "x": 64}) == 40
    square = {"time": 9000, "pass": 2, "y": 8, "x": 8}
    assert retrieval.compute_time_chunk(square) == retrieval.BLOCK_RETRIEVALS // 128


def test_teff_offset_acts_in_the_emission_model_only(sm_archive):
    """The tuned T_eff offset equals retrieving with the shifted temperature, for its class
    only, and never moves the frozen-ground rule (which reads the ancillary value)."""
    from pipeline import soil_moisture

    root, data = sm_archive
    anc = stores.open_dataset(stores.ancillary_url(root, "M36")).load()
    temp = anc["soil_temperature"] if "soil_temperature" in anc else anc["surface_temperature"]
    tb, static = data["tb"].isel(time=slice(0, 12)), data["static"]
    cls = 10
    assert int((static["landcover"] == cls).sum()) >= 3
    base = soil_moisture.RetrievalParams(vod_window_days=0)
    plain = retrieve(tb, static, surface_temperature=temp, params=base)
    off = retrieve(tb, static, surface_temperature=temp, params=dataclasses.replace(
        base, teff_offset_by_class=((cls, 3.0),)))
    shifted = retrieve(tb, static, surface_temperature=temp + 3.0, params=base)
    # the input rules (frozen ground, snow, water, RFI, no data) are untouched; only the
    # bits that judge the retrieval's own result may change
    outcome = int(qc.QC.RETRIEVAL_NOT_CONVERGED) | int(qc.QC.DENSE_VEGETATION)
    xr.testing.assert_identical(off[dims.QUALITY_FLAG] & ~np.uint16(outcome),
                                plain[dims.QUALITY_FLAG] & ~np.uint16(outcome))
    assert int(_has(off[dims.QUALITY_FLAG], qc.QC.FROZEN_GROUND).sum()) > 0
    in_cls = static["landcover"].reset_coords(drop=True) == cls
    in_cls = in_cls.assign_coords({d: plain[d] for d in (dims.Y, dims.X)})
    sm_off, sm_plain = off[dims.SOIL_MOISTURE], plain[dims.SOIL_MOISTURE]
    xr.testing.assert_equal(sm_off.where(~in_cls), sm_plain.where(~in_cls))
    both = in_cls & sm_off.notnull() & shifted[dims.SOIL_MOISTURE].notnull()
    assert int(both.sum()) >= 20
    np.testing.assert_allclose(sm_off.where(both).values,
                               shifted[dims.SOIL_MOISTURE].where(both).values, atol=1e-6)
    # a warmer T_eff means a lower emissivity for the same TB: wetter soil
    assert float((sm_off - sm_plain).where(both).mean()) > 0.005


def test_cli_names_the_store_without_the_h_channel(sm_archive, tmp_path, capsys):
    """A SMAP TB store lacking 1.41 GHz H: one line naming the store, nothing published."""
    from pathlib import Path

    from pipeline.io import stores
    from tests.fixtures.common import archive_copy, cli_error_lines, rewrite_store

    root = archive_copy(sm_archive[0], tmp_path / "archive", products=False)
    url = rewrite_store(stores.tb_url(root, "smap"), lambda tb: tb.sel(channel=["1.41V"]))
    err = cli_error_lines(["sm", "retrieve", "--root", root], capsys)
    assert err[-1] == f"error: {url}: variable 'tb' has no 1.41 GHz H channel"
    assert not (Path(root) / "products").exists()


def test_static_layers_of_another_window_are_refused(sm_archive, tmp_path, capsys):
    """A static store of the same size but one column east: refused, not aligned by position."""
    from pathlib import Path

    from pipeline.io import stores
    from tests.fixtures.common import archive_copy, cli_error_lines, rewrite_store

    root = archive_copy(sm_archive[0], tmp_path / "archive", products=False)
    url = rewrite_store(stores.static_url(root, "M36"),
                        lambda ds: ds.assign_coords(x=ds["x"] + 36032.22))
    err = cli_error_lines(["sm", "retrieve", "--root", root], capsys)[-1]
    assert err.startswith(f"error: {url}: not on the cells of the TB store: dim 'x' "
                          "coordinates differ (x[0] = ")
    assert err.endswith(" m in the other store): another grid or window")
    assert not (Path(root) / "products").exists()


def test_the_stage_itself_refuses_static_layers_of_other_cells(sm_archive):
    """The science stage checks too (callers that build inputs by hand, e.g. notebooks)."""
    from pipeline import errors
    from pipeline.graphs import retrieval

    root, data = sm_archive
    inputs = retrieval.open_inputs(root)
    static = inputs["static"].assign_coords(x=inputs["static"]["x"] + 36032.22)
    with pytest.raises(errors.InputDataError, match=r"^static: dim 'x' coordinates differ "
                                                    r"\(x\[0\] = .* m in tb\): another grid"):
        retrieval.retrieve(inputs["tb"], static,
                           surface_temperature=inputs["surface_temperature"])


def test_fill_values_in_the_tb_store_are_flagged_out_of_range_in_the_product(sm_archive,
                                                                              tmp_path):
    """−9999 in tb/smap.zarr: the store's screen makes it NaN and flags the pixel; the product
    keeps OUT_OF_RANGE_TB there (not only INSUFFICIENT_OBS) and retrieves nothing."""
    import shutil

    from pipeline.graphs import retrieval
    from pipeline.io import stores

    root = str(tmp_path / "archive")
    shutil.copytree(sm_archive[0], root)
    url = stores.tb_url(root, "smap")
    tb = stores.open_dataset(url).load()
    obs = np.isfinite(tb["tb"].values).all(axis=2)             # (time, pass, y, x)
    t, p, y, x = (a[:5] for a in np.nonzero(obs))
    vals = tb["tb"].values
    vals[t, p, 1, y, x] = -9999.0                               # the H channel of 5 pixels
    shutil.rmtree(url)
    stores.write_dataset(tb, url)
    from pipeline import soil_moisture

    ds = retrieval.build_product(retrieval.open_inputs(root),
                                 soil_moisture.RetrievalParams()).load()
    q = ds[dims.QUALITY_FLAG].values[t, p, y, x]
    assert ((q & int(qc.QC.OUT_OF_RANGE_TB)) > 0).all()
    assert np.isnan(ds[dims.SOIL_MOISTURE].values[t, p, y, x]).all()
