"""Station catalogs (networks, towers) and the archive STAC catalog (pipeline.io.catalog)."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pydantic
import pytest
import xarray as xr
import yaml

import catalogs
from pipeline import errors, grid, schema, stations
from pipeline.io import catalog, stores

DAYS = np.arange("2016-01-01", "2016-01-04", dtype="datetime64[D]")


# --- networks.yaml / towers.yaml ----------------------------------------------------------
def test_network_catalog_contents():
    nets = stations.networks().networks
    assert {"simnet", "cosmos", "scan", "maqu", "soilscape", "risma", "smosmania"} <= set(nets)
    scan = stations.network("scan")
    assert scan.kind == "ismn" and set(scan.variables) == {"soil_moisture", "soil_temperature"}
    assert scan.variables["soil_moisture"].depths_m == ((0.0508, 0.0508),)
    assert stations.network("cosmos").station("Barrow-ARM").lat == pytest.approx(71.3298)
    assert stations.network("simnet").stations == ()
    with pytest.raises(KeyError, match="unknown network 'fluxnet'"):
        stations.network("fluxnet")


def test_tower_catalog_and_pft_mapping():
    flux = stations.tower_collection("fluxnet2015")
    assert len(flux.sites) == 18
    pft = {s.id: s.pft for s in flux.resolved_sites()}
    # science.md 2.3: boreal forest ENF -> 1; tundra wetlands -> GRS (6); shrub tundra -> SHR (5)
    assert pft["US-Prr"] == 1 and pft["FI-Hyy"] == 1 and pft["US-Ha1"] == 4
    assert pft["US-Atq"] == 6 and pft["RU-Cok"] == 5 and pft["GL-ZaH"] == 6
    assert pft["DK-Fou"] == 7
    table = stations.towers().igbp_to_pft
    assert set(table) == set(stations.IGBP_CLASSES)
    assert stations.igbp_to_pft("WAT") == 0 and stations.igbp_to_pft("DNF") == 3
    assert stations.tower_collection("simflux").sites == ()


def _load(kind, tmp_path, mutate):
    raw = yaml.safe_load(catalogs.path(f"{kind}.yaml").read_text())
    mutate(raw)
    p = tmp_path / f"{kind}.yaml"
    p.write_text(yaml.safe_dump(raw))
    loader = stations.load_networks if kind == "networks" else stations.load_towers
    with pytest.raises((pydantic.ValidationError, ValueError)) as ei:
        loader(p)
    return str(ei.value)


def test_bad_network_catalogs_are_rejected(tmp_path):
    def outside(raw):
        raw["networks"]["scan"]["stations"][0]["lat"] = 60.0

    assert "station Adams_Ranch_#1 (60.0, -105.417) is outside" in _load("networks", tmp_path,
                                                                       outside)

    def dup(raw):
        st = raw["networks"]["maqu"]["stations"]
        st.append(dict(st[0]))

    assert "duplicate station ids ['CST_01']" in _load("networks", tmp_path, dup)

    def bad_var(raw):
        raw["networks"]["risma"]["variables"]["soil_moist"] = {"depths_m": [[0, 0.05]],
                                                               "source": "sm"}

    assert "soil_moist" in _load("networks", tmp_path, bad_var)

    def bad_depth(raw):
        raw["networks"]["risma"]["variables"]["soil_moisture"]["depths_m"] = [[0.05, 0.0]]

    assert "bottom above top" in _load("networks", tmp_path, bad_depth)


def test_bad_tower_catalogs_are_rejected(tmp_path):
    def igbp(raw):
        raw["collections"]["fluxnet2015"]["sites"][0]["igbp"] = "TUNDRA"

    assert "TUNDRA" in _load("towers", tmp_path, igbp)

    def table(raw):
        del raw["igbp_to_pft"]["WET"]

    assert "IGBP classes ['WET'] have no PFT" in _load("towers", tmp_path, table)

    def site_id(raw):
        raw["collections"]["fluxnet2015"]["sites"][0]["id"] = "USPrr"

    assert "USPrr" in _load("towers", tmp_path, site_id)


def _stm_header(path: Path) -> tuple[str, float, float]:
    """Station name, lat, lon from an ISMN .stm file (header+values or CEOP-separate format)."""
    first = path.read_text().splitlines()[0].split()
    if "/" in first[0]:  # CEOP: date time date time CSE network station lat lon ...
        return first[6], float(first[7]), float(first[8])
    return first[2], float(first[3]), float(first[4])


@pytest.mark.realdata
def test_network_stations_match_ismn_headers(real_data):
    n = 0
    for net in stations.networks().networks.values():
        for st in net.stations:
            files = sorted((real_data / st.path).glob("*_sm_*.stm"))
            assert files, f"{net.name}/{st.id}: no soil-moisture file under {st.path}"
            name, lat, lon = _stm_header(files[0])
            assert name == st.id
            assert (lat, lon) == pytest.approx((st.lat, st.lon), abs=1e-4)
            n += 1
    assert n == 16


@pytest.mark.realdata
def test_tower_sites_match_fluxnet_site_list_and_zarr(real_data):
    with open(real_data / "fluxdatakit" / "fluxnet2015_site_list.csv") as f:
        listed = {r["id"]: r for r in csv.DictReader(f)}
    flux = stations.tower_collection("fluxnet2015")
    for s in flux.sites:
        row = listed[s.id]
        assert (s.lat, s.lon) == (float(row["latitude"]), float(row["longitude"]))
        assert s.igbp == row["IGBP"]
    z = xr.open_zarr(real_data / "fluxnet2015_zarr_subset" / "fluxnet.zarr", consolidated=True,
                     zarr_format=2)
    ids = [s.id for s in flux.sites]
    sub = z[["latitude", "longitude"]].sel(site=ids).load()
    # the Zarr subset packs coordinates into uint16: agreement to ~0.01 deg is all it can give
    np.testing.assert_allclose(sub.latitude, [s.lat for s in flux.sites], atol=0.01)
    np.testing.assert_allclose(sub.longitude, [s.lon for s in flux.sites], atol=0.01)


# --- STAC -----------------------------------------------------------------------------------
def _tb() -> xr.Dataset:
    ds = schema.tb_template("smap", "N36", grid.Window(150, 153, 120, 124), DAYS)
    ds["tb"][:] = 250.0
    return ds


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict:
    """A tiny archive root with a TB store, two product versions and a model (read-only use;
    tests that corrupt a file restore it)."""
    root = str(tmp_path_factory.mktemp("stac") / "arch")
    ds = _tb()
    tb = stores.write_dataset(ds, stores.tb_url(root, "smap"))
    catalog.register_store(root, "tb", "smap", tb, stores.open_dataset(tb))
    versions = []
    for i in range(2):
        prod = ds[["tb"]].assign(tb=ds.tb + i)
        url = stores.write_dataset(prod, stores.join(root, "products", "tb-smap-n36-v1",
                                                     f"2026010{i}T000000Z.zarr"))
        catalog.register_product(root, "tb-smap-n36-v1", url, prod,
                                 extra={"config_hash": f"sha256:{i}"})
        versions.append(url)
    blob = b"not really a checkpoint"
    ckpt = stores.write_bytes(stores.join(root, "models", "ft-ae-v1.bin"), blob)
    catalog.register_model(root, "ft-ae-v1", ckpt, hashlib.sha256(blob).hexdigest(), config={
        "name": "freeze/thaw autoencoder", "architecture": "1-D conv autoencoder",
        "total_parameters": 44611,
        "input": [{"name": "tb", "shape": [-1, -1, 3], "dim_order": ["batch", "time", "feature"]}],
        "output": [{"name": "reconstruction", "shape": [-1, -1, 3],
                    "dim_order": ["batch", "time", "feature"]}],
        "crop_multiple": 4})
    return {"root": root, "versions": versions, "tb": tb, "ds": ds}


def test_catalog_is_valid_and_resolves(archive):
    root = archive["root"]
    assert catalog.validate(root) == []
    assert catalog.validate(catalog.catalog_url(root)) == []
    assert catalog.list_collections(root) == ["tb-smap", "tb-smap-n36-v1"]
    url, kw = catalog.resolve(root, "tb-smap-n36-v1")
    assert url == archive["versions"][-1]
    assert kw == {"zarr_format": 3, "consolidated": True}
    opened = xr.open_zarr(url, **kw)
    assert float(opened.tb.max()) == 251.0  # the second version (tb + 1)
    url, kw = catalog.resolve(root, "tb-smap")
    schema.check(xr.open_zarr(url, **kw), schema.tb_spec("smap"), context=url)


def test_collection_content(archive):
    col = stores.read_json(catalog.collection_url(archive["root"], "tb-smap-n36-v1"))
    assert col["assets"]["zarr"]["href"].startswith("../../products/tb-smap-n36-v1/")
    assert col["assets"]["zarr"]["zarr:zarr_format"] == 3
    assert [v["config_hash"] for v in col["tbcube:versions"]] == ["sha256:0", "sha256:1"]
    assert col["version"] == "20260101T000000Z"
    cube = col["cube:dimensions"]
    assert cube["x"]["reference_system"] == 6931 and cube["x"]["step"] == 36000.0
    assert cube["time"]["extent"] == ["2016-01-01T00:00:00Z", "2016-01-03T00:00:00Z"]
    assert col["cube:variables"]["tb"] == {"dimensions": ["time", "pass", "channel", "y", "x"],
                                           "type": "data", "unit": "K",
                                           "description": "brightness temperature"}
    lat = archive["ds"].lat.values
    bbox = col["extent"]["spatial"]["bbox"][0]
    assert bbox[1] == pytest.approx(float(lat.min())) and bbox[3] == pytest.approx(
        float(lat.max()))
    item = stores.read_json(catalog.model_url(archive["root"], "ft-ae-v1"))
    assert item["properties"]["mlm:total_parameters"] == 44611
    assert item["properties"]["tbcube:config"] == {"crop_multiple": 4}
    blob = b"not really a checkpoint"
    assert item["assets"]["model"]["file:checksum"] == "1220" + hashlib.sha256(blob).hexdigest()


def test_catalog_can_be_moved(archive, tmp_path):
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(archive["root"], moved)
    assert catalog.validate(str(moved)) == []
    url, _ = catalog.resolve(str(moved), "tb-smap-n36-v1")
    assert url.startswith(str(moved))


def _corrupt(root: str, rel: str, mutate) -> list[str]:
    url = stores.join(root, "catalog", rel)
    d = stores.read_json(url)
    good = copy.deepcopy(d)
    mutate(d)
    stores.write_json(url, d)
    found = catalog.validate(root)
    stores.write_json(url, good)
    return found


CORRUPTIONS = {
    "missing license": ("collections/tb-smap.json", lambda d: d.pop("license"),
                        "collections/tb-smap.json: STAC Collection schema: top level: "
                        "'license' is a required property"),
    "zarr format": ("collections/tb-smap.json",
                    lambda d: d["assets"]["zarr"].update({"zarr:zarr_format": "3"}),
                    "zarr asset 'zarr:zarr_format' '3' is not 2 or 3"),
    "no asset": ("collections/tb-smap.json", lambda d: d.pop("assets"),
                 "collections/tb-smap.json: no collection-level 'zarr' asset"),
    "cube dims": ("collections/tb-smap.json", lambda d: d["cube:dimensions"].pop("channel"),
                  "cube variable 'tb' uses undeclared dimensions ['channel']"),
    "id": ("collections/tb-smap.json", lambda d: d.update(id="tb-gmi"),
           "id 'tb-gmi' does not match the file name"),
    "dangling": ("collections/tb-smap-n36-v1.json",
                 lambda d: d["assets"]["zarr"].update(href="../../products/nope.zarr"),
                 "asset 'zarr' points to missing"),
    "history": ("collections/tb-smap-n36-v1.json", lambda d: d["tbcube:versions"].pop(),
                "current zarr asset is not in the version history"),
    "mlm field": ("models/ft-ae-v1.json", lambda d: d["properties"].pop("mlm:architecture"),
                  "models/ft-ae-v1.json: property 'mlm:architecture' missing"),
    "checksum": ("models/ft-ae-v1.json",
                 lambda d: d["assets"]["model"].update({"file:checksum": "abc"}),
                 "'file:checksum' is not a sha2-256 multihash"),
    "item datetime": ("models/ft-ae-v1.json", lambda d: d["properties"].pop("datetime"),
                      "models/ft-ae-v1.json: STAC Feature schema"),
    "kind": ("collections/tb-smap.json", lambda d: d.update({"tbcube:kind": "tiles"}),
             "'tbcube:kind' 'tiles' is not 'product' or one of"),
    "store id": ("collections/tb-smap.json", lambda d: d.update({"tbcube:kind": "static"}),
                 "store collection id 'tb-smap' does not start with 'static-'"),
    "links": ("catalog.json", lambda d: d["links"].append(
        {"rel": "child", "href": "./collections/ghost.json"}),
        "collections/ghost.json: linked from catalog.json but unreadable"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_validate_reports_corruption(archive, case):
    rel, mutate, expected = CORRUPTIONS[case]
    found = _corrupt(archive["root"], rel, mutate)
    assert any(expected in p for p in found), found
    assert catalog.validate(archive["root"]) == []  # restored


def test_validate_without_catalog(tmp_path):
    assert catalog.validate(str(tmp_path)) == [f"{tmp_path}: no catalog.json found"]


def test_resolve_errors(archive, tmp_path):
    with pytest.raises(errors.StoreNotFound, match=r"no collection 'sm-smap-m25-v1' in the "
                                                   r"catalog \(it has \['tb-smap', "):
        catalog.resolve(archive["root"], "sm-smap-m25-v1")
    with pytest.raises(errors.ChecksumError, match="is not 64 hex digits"):
        catalog.register_model(archive["root"], "m", "x", "abc", config={})
    with pytest.raises(errors.ConfigError, match="store kind 'tbs'"):
        catalog.register_store(archive["root"], "tbs", "smap", archive["tb"], archive["ds"])


def test_switch_is_atomic_for_a_polling_reader(archive, tmp_path):
    """A reader polling resolve() only ever sees complete, registered versions."""
    root, ds = str(tmp_path / "arch"), archive["ds"][["tb"]]
    urls = [stores.write_dataset(ds, stores.join(root, "products", "ft-x-n36-v1",
                                                 f"v{i:02d}.zarr")) for i in range(12)]
    catalog.register_product(root, "ft-x-n36-v1", urls[0], ds)
    seen: list[str] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def poll():
        while not done.is_set():
            try:
                seen.append(catalog.resolve(root, "ft-x-n36-v1")[0])
            except BaseException as e:  # noqa: BLE001 - recorded and asserted below
                failures.append(e)

    reader = threading.Thread(target=poll)
    reader.start()
    for url in urls[1:]:
        catalog.register_product(root, "ft-x-n36-v1", url, ds)
    done.set()
    reader.join()
    assert not failures, failures[:3]
    assert seen and set(seen) <= set(urls)
    order = [urls.index(u) for u in seen]
    assert order == sorted(order)  # never goes back to an older version
    col = stores.read_json(catalog.collection_url(root, "ft-x-n36-v1"))
    assert [v["version"] for v in col["tbcube:versions"]] == [f"v{i:02d}" for i in range(12)]
    assert json.dumps(col).count("v11.zarr") == 2  # current asset + last history entry
