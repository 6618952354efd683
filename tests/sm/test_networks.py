"""Archives written by others: station networks and tower collections under any name, and
station, tower and static stores checked against the contract's units and ranges.

The data contract names the store ``insitu/{network}.zarr`` with any network name; archives
written by others (independent test data, real networks) are not called ``simnet``.
"""

from __future__ import annotations

import shutil

import pytest

from pipeline import errors
from pipeline.graphs import harmonise, retrieval_tune, sm_figures
from pipeline.io import stores
from tests.fixtures.common import archive_copy


@pytest.fixture
def renamed(sim_tiny, tmp_path):
    """The tiny archive with its network stored as ``insitu/mynet.zarr``."""
    root = archive_copy(sim_tiny, tmp_path / "tiny", products=False)
    shutil.move(stores.insitu_url(root, "simnet"), stores.insitu_url(root, "mynet"))
    return root


def test_default_network_is_the_only_one_else_the_preferred_else_an_error(renamed, tmp_path):
    assert stores.store_names(renamed, "insitu") == ["mynet"]
    assert stores.default_store_name(renamed, "insitu", preferred="simnet") == "mynet"
    shutil.copytree(stores.insitu_url(renamed, "mynet"), stores.insitu_url(renamed, "other"))
    assert stores.store_names(renamed, "insitu") == ["mynet", "other"]
    several = r"several stores \['mynet', 'other'\]; name one with --network"
    with pytest.raises(errors.ConfigError, match=several):
        stores.default_store_name(renamed, "insitu", preferred="simnet")
    assert stores.default_store_name(renamed, "insitu", preferred="other") == "other"
    with pytest.raises(errors.StoreNotFound, match="no in-situ network store"):
        stores.default_store_name(str(tmp_path / "empty"), "insitu")


def test_tower_collection_default(renamed):
    assert stores.default_store_name(renamed, "towers", preferred="simflux") == "simflux"
    shutil.move(stores.towers_url(renamed, "simflux"), stores.towers_url(renamed, "fluxnet"))
    assert stores.default_store_name(renamed, "towers", preferred="simflux") == "fluxnet"


def test_sm_validate_reads_every_network(renamed):
    daily = harmonise._station_daily(renamed, None)
    assert list(daily) == ["mynet"]
    assert daily["mynet"]["sm"].sizes["station"] > 10


def test_station_figure_picks_the_station_with_most_days_across_networks():
    val = {"stations": {"fused": {
        "a": {"stations": {"s1": {"n": 10}, "s2": {"n": 40}}},
        "b": {"stations": {"s3": {"n": 30}}}}}}
    assert sm_figures._best_station(val) == ("a", "s2")
    assert sm_figures._best_station({"stations": {}}) is None


@pytest.mark.slow
def test_sm_tune_uses_the_archives_network(renamed):
    doc = retrieval_tune.tune(renamed, years=(2015,), trials=(1.0, 1.1),
                              teff_trials=(-4.0, 0.0))
    assert doc["network"] == "mynet" and len(doc["stations"]) >= 10


def test_station_stores_in_other_units_are_one_line(renamed, capsys):
    """A probe network in °C or per cent, or fluxes in µmol m-2 s-1, would be scored silently;
    each command that reads them refuses in one line instead."""
    from tests.fixtures.common import cli_error_lines, rewrite_store

    url = stores.insitu_url(renamed, "mynet")
    ok = stores.open_stations(url, "insitu")
    assert {"soil_moisture", "soil_temperature"} <= set(ok.data_vars)

    def celsius(ds):
        ds["soil_temperature"] = (ds["soil_temperature"] - 273.15).assign_attrs(units="degC")
        return ds

    rewrite_store(url, celsius)
    lines = cli_error_lines(["sm", "tune", "--root", renamed, "--years", "2015"], capsys)
    assert lines[-1] == (f"error: {url}: variable 'soil_temperature' units 'degC', "
                         "expected 'K' (data-contract.md)")
    assert not any("Traceback" in ln for ln in lines)
    with pytest.raises(errors.InputDataError, match="'soil_temperature' units 'degC'"):
        harmonise._station_daily(renamed, None)

    t_url = stores.towers_url(renamed, "simflux")
    assert stores.open_stations(t_url, "towers")["nee"].attrs["units"] == "g C m-2 d-1"

    def micromol(ds):
        ds["nee"] = ds["nee"].assign_attrs(units="umol m-2 s-1")
        return ds

    rewrite_store(t_url, micromol)
    with pytest.raises(errors.InputDataError,
                       match=r"variable 'nee' units 'umol m-2 s-1', expected 'g C m-2 d-1'"):
        stores.open_stations(t_url, "towers")


def test_station_store_on_other_dims_is_one_line(renamed):
    from tests.fixtures.common import rewrite_store

    url = stores.insitu_url(renamed, "mynet")
    rewrite_store(url, lambda ds: ds.rename({"station": "site"}))
    with pytest.raises(errors.InputDataError, match=r"expected \('station', 'time'\)"):
        stores.open_stations(url, "insitu")


@pytest.mark.parametrize("var, change, expect", [
    ("clay_fraction", lambda v: v * 100.0, "expected a fraction 0–1 (per cent?)"),
    ("bulk_density", lambda v: v * 1000.0, "expected g cm-3"),
])
def test_static_layers_out_of_range_are_one_line(renamed, capsys, var, change, expect):
    from tests.fixtures.common import cli_error_lines, rewrite_store

    url = stores.static_url(renamed, "M36")
    stores.open_static(url)  # the simulator's layers pass
    rewrite_store(url, lambda ds: ds.assign({var: change(ds[var]).assign_attrs(ds[var].attrs)}))
    lines = cli_error_lines(["sm", "retrieve", "--root", renamed], capsys)
    assert lines[-1].startswith(f"error: {url}: variable {var!r} has values ")
    assert lines[-1].endswith(f"{expect} (data-contract.md)")
    assert not any("Traceback" in ln for ln in lines)
