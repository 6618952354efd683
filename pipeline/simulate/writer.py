"""Contract-conformant datasets for the simulated stores, written through :mod:`pipeline.io.stores`.

Gridded stores (static, truth, tb) are written in phases: a lazy (dask-backed, never computed)
template with all metadata, one region write per spatial block, then consolidation.  Station and
tower stores are small and written whole at the end.  Every store is checked with
:func:`pipeline.schema.check` after writing.
"""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import xarray as xr

from pipeline import __version__, dims, grid, qc, schema
from pipeline.io import stores
from pipeline.simulate.archive import VOD_FREQUENCIES_GHZ, ArchiveSpec, Block, Plan

GM = {"grid_mapping": dims.CRS}
_P = (dims.TIME, dims.PASS, dims.Y, dims.X)
_D = (dims.TIME, dims.Y, dims.X)
_S = (dims.Y, dims.X)

STATIC_VARS = {
    "land_fraction": (_S, np.float32, {"units": "1", "long_name": "land area fraction",
                                       "standard_name": "land_area_fraction"}),
    "water_fraction": (_S, np.float32, {"units": "1", "long_name": "open water (lake) fraction"}),
    "landcover": (_S, np.int16, {"units": "1", "long_name": "IGBP land cover class (1-17)"}),
    "pft": (_S, np.int8, {"units": "1", "long_name": "SMAP L4C plant functional type (1-8)"}),
    "clay_fraction": (_S, np.float32, {"units": "1", "long_name": "clay mass fraction"}),
    "sand_fraction": (_S, np.float32, {"units": "1", "long_name": "sand mass fraction"}),
    "bulk_density": (_S, np.float32, {"units": "g cm-3", "long_name": "soil dry bulk density"}),
    "elevation": (_S, np.float32, {"units": "m", "long_name": "surface elevation",
                                   "standard_name": "surface_altitude"}),
}
_FLUX = "g C m-2 d-1"
TRUTH_VARS = {
    "soil_moisture": (_P, np.float32, {"units": "m3 m-3", "long_name":
                                       "liquid soil water at 0-5 cm (what a probe sees)"}),
    "soil_temperature": (_P, np.float32, {"units": "K", "long_name": "soil temperature at 5 cm"}),
    "surface_temperature": (_P, np.float32, {"units": "K", "long_name":
                                             "radiating surface (skin / snow) temperature",
                                             "standard_name": "surface_temperature"}),
    "frozen": (_P, np.int8, {"units": "1", "long_name": "soil at 5 cm frozen (1) or thawed (0)"}),
    "snow_wet": (_P, np.int8, {"units": "1", "long_name": "snowpack wet (1) or dry/absent (0)"}),
    "snow_water_equivalent": (_D, np.float32, {"units": "mm", "long_name":
                                               "snow water equivalent (end of day)"}),
    "lake_ice_fraction": (_D, np.float32, {"units": "1", "long_name":
                                           "ice-covered fraction of the cell's lakes (NaN: none)"}),
    "vod": ((dims.TIME, dims.PASS, dims.FREQUENCY, dims.Y, dims.X), np.float32,
            {"units": "1", "long_name": "vegetation optical depth at nadir (mean of V and H)"}),
    "gpp": (_D, np.float32, {"units": _FLUX, "long_name": "gross primary production"}),
    "reco": (_D, np.float32, {"units": _FLUX, "long_name": "ecosystem respiration"}),
    "nee": (_D, np.float32, {"units": _FLUX, "long_name": "net ecosystem exchange (>0 source)"}),
}


def _coords(spec: ArchiveSpec) -> xr.Dataset:
    return grid.grid_coords(spec.grid, spec.window)


def _time_coord(spec: ArchiveSpec) -> dict:
    return {dims.TIME: (dims.TIME, spec.times, {"long_name": "date (local solar time)"})}


def _sizes(spec: ArchiveSpec, n_chan: int = 0) -> dict[str, int]:
    ny, nx = spec.window.shape
    return {dims.TIME: len(spec.days), dims.PASS: 2, dims.CHANNEL: n_chan,
            dims.FREQUENCY: len(VOD_FREQUENCIES_GHZ), dims.Y: ny, dims.X: nx}


def _chunks(spec: ArchiveSpec, n_chan: int = 0) -> dict[str, int]:
    ny, nx = spec.window.shape
    t = spec.tile or max(ny, nx)
    return {dims.TIME: min(spec.time_chunk, len(spec.days)), dims.PASS: 2,
            dims.CHANNEL: max(n_chan, 1), dims.FREQUENCY: len(VOD_FREQUENCIES_GHZ),
            dims.Y: min(t, ny), dims.X: min(t, nx)}


def _lazy(var_dims, dtype, sizes, chunks, fill):
    shape = tuple(sizes[d] for d in var_dims)
    return da.full(shape, fill, dtype=dtype, chunks=tuple(chunks[d] for d in var_dims))


def _fill(dtype):
    return np.nan if np.issubdtype(dtype, np.floating) else 0


def static_template(spec: ArchiveSpec, attrs: dict) -> xr.Dataset:
    """Lazy template of ``static/{grid}.zarr``."""
    ds = _coords(spec)
    sizes, chunks = _sizes(spec), _chunks(spec)
    for name, (d, dt, a) in STATIC_VARS.items():
        ds[name] = (d, _lazy(d, dt, sizes, chunks, _fill(dt)), {**a, **GM})
    ds.attrs.update(attrs, title=f"tbcube simulated static surface ({spec.name})")
    return ds


def truth_template(spec: ArchiveSpec, attrs: dict) -> xr.Dataset:
    """Lazy template of ``truth/{grid}.zarr``."""
    ds = _coords(spec).assign_coords(_time_coord(spec))
    ds = ds.assign_coords({
        dims.PASS: (dims.PASS, np.array(dims.PASSES, dtype=object),
                    {"long_name": "state at 06:00 (am) / 18:00 (pm) local solar time"}),
        dims.FREQUENCY: (dims.FREQUENCY, np.array(VOD_FREQUENCIES_GHZ, np.float32),
                         {"units": "GHz", "long_name": "frequency"}),
    })
    sizes, chunks = _sizes(spec), _chunks(spec)
    for name, (d, dt, a) in TRUTH_VARS.items():
        ds[name] = (d, _lazy(d, dt, sizes, chunks, _fill(dt)), {**a, **GM})
    ds.attrs.update(attrs, title=f"tbcube simulated truth ({spec.name})")
    return ds


def tb_template(spec: ArchiveSpec, sensor: str, attrs: dict) -> xr.Dataset:
    """Lazy template of ``tb/{sensor}.zarr`` (metadata from :func:`schema.tb_template`)."""
    one = schema.tb_template(sensor, spec.grid, spec.window, spec.times[:1],
                             title=None, source="tbcube simulator (OSSE)",
                             history=attrs.get("history", ""))
    nc = one.sizes[dims.CHANNEL]
    sizes, chunks = _sizes(spec, nc), _chunks(spec, nc)
    ds = one.drop_vars([dims.TB, dims.LOCAL_TIME, dims.QUALITY_FLAG, dims.TIME])
    ds = ds.assign_coords({dims.TIME: (dims.TIME, spec.times, one[dims.TIME].attrs)})
    for name in (dims.TB, dims.LOCAL_TIME, dims.QUALITY_FLAG):
        v = one[name]
        ds[name] = (v.dims, _lazy(v.dims, v.dtype, sizes, chunks, _fill(v.dtype)), v.attrs)
    ds.attrs.update({k: v for k, v in attrs.items() if k not in ("title", "source")})
    return ds


def block_datasets(spec: ArchiveSpec, b: Block) -> dict[str, xr.Dataset]:
    """Numpy-backed datasets of one block, keyed ``static``, ``truth``, ``tb/{sensor}``."""
    out = {}
    out["static"] = xr.Dataset({k: (STATIC_VARS[k][0], v.astype(STATIC_VARS[k][1]))
                                for k, v in b.static.items()})
    out["truth"] = xr.Dataset({k: (TRUTH_VARS[k][0], v.astype(TRUTH_VARS[k][1]))
                               for k, v in b.truth.items()})
    for sensor, arrays in b.tb.items():
        out[f"tb/{sensor}"] = xr.Dataset({
            dims.TB: ((dims.TIME, dims.PASS, dims.CHANNEL, dims.Y, dims.X), arrays[dims.TB]),
            dims.LOCAL_TIME: (_P, arrays[dims.LOCAL_TIME]),
            dims.QUALITY_FLAG: (_P, arrays[dims.QUALITY_FLAG].astype(qc.QC_DTYPE)),
        })
    return out


def region_of(spec: ArchiveSpec, b: Block) -> dict[str, slice]:
    """Region of a block inside the archive's stores."""
    w = spec.window
    return {dims.TIME: slice(0, len(spec.days)),
            dims.Y: slice(b.window.row0 - w.row0, b.window.row1 - w.row0),
            dims.X: slice(b.window.col0 - w.col0, b.window.col1 - w.col0)}


def insitu_dataset(spec: ArchiveSpec, pl: Plan, series: dict, attrs: dict) -> xr.Dataset:
    """``insitu/{network}.zarr`` from the stations' hourly series."""
    from pipeline.simulate.insitu import utc_hours

    ids = [s.id for s in pl.stations]
    hours = utc_hours(spec.days)
    times = (np.datetime64("1970-01-01T00", "h") + hours).astype("datetime64[ns]")
    cells = np.array([s.cell for s in pl.stations])
    lat = pl.lat[cells] + 0.1 * (_jitter(pl, "lat") - 0.5)
    lon = pl.lon[cells] + 0.1 * (_jitter(pl, "lon") - 0.5)
    ds = xr.Dataset(coords={
        dims.STATION: (dims.STATION, np.array(ids, dtype=object), {"long_name": "station id"}),
        dims.TIME: (dims.TIME, times, {"long_name": "time (UTC)"}),
        dims.LAT: (dims.STATION, lat, {"units": "degrees_north", "standard_name": "latitude"}),
        dims.LON: (dims.STATION, lon, {"units": "degrees_east", "standard_name": "longitude"}),
        dims.ELEVATION: (dims.STATION, pl.surface.elevation[cells].astype(np.float64),
                         {"units": "m", "standard_name": "surface_altitude"}),
        "landcover": (dims.STATION, pl.surface.landcover[cells].astype(np.int16),
                      {"long_name": "IGBP class of the station's cell"}),
        "station_group": (dims.STATION,
                          np.array([_group_name(s.group) for s in pl.stations], dtype=object),
                          {"long_name": "stratum the station was placed in"}),
    })
    meta = {
        "soil_moisture": {"units": "m3 m-3", "long_name": "liquid soil moisture at 5 cm",
                          "standard_name": "volume_fraction_of_condensed_water_in_soil",
                          "depth_m": 0.05},
        "soil_temperature": {"units": "K", "long_name": "soil temperature at 5 cm",
                             "standard_name": "soil_temperature", "depth_m": 0.05},
        "air_temperature": {"units": "K", "long_name": "air temperature at 2 m",
                            "standard_name": "air_temperature", "depth_m": -2.0},
    }
    for name, a in meta.items():
        ds[name] = ((dims.STATION, dims.TIME), np.stack([series[i][name] for i in ids]),
                    {**a, **GM})
        ds[f"{name}_flag"] = ((dims.STATION, dims.TIME),
                              np.stack([series[i][f"{name}_flag"] for i in ids]),
                              {"units": "1", "long_name": f"{name} flag", **GM,
                               "flag_values": np.array([0, 1, 2], np.uint8),
                               "flag_meanings": "good suspect_frozen_soil missing"})
    ds[dims.CRS] = grid.crs_variable(4326)
    ds.attrs.update(attrs, title=f"tbcube simulated in-situ network {spec.network}",
                    featureType="timeSeries")
    return ds


def _group_name(g: int) -> str:
    from pipeline.simulate.insitu import ABBR

    return ABBR.get(g, "LAKE")


def _jitter(pl: Plan, name: str) -> np.ndarray:
    from pipeline.simulate import rng

    return rng.uniform(0, "station/jitter/" + name, np.array([s.key for s in pl.stations]))


def towers_dataset(spec: ArchiveSpec, pl: Plan, series: dict, attrs: dict) -> xr.Dataset:
    """``towers/{collection}.zarr`` from the sites' daily series."""
    from pipeline.simulate.insitu import ABBR

    ids = [s.id for s in pl.towers]
    cells = np.array([s.cell for s in pl.towers], dtype=np.int64)
    ds = xr.Dataset(coords={
        dims.SITE: (dims.SITE, np.array(ids, dtype=object), {"long_name": "site id"}),
        dims.TIME: (dims.TIME, spec.times, {"long_name": "date"}),
        dims.LAT: (dims.SITE, pl.lat[cells], {"units": "degrees_north"}),
        dims.LON: (dims.SITE, pl.lon[cells], {"units": "degrees_east"}),
        "igbp": (dims.SITE, np.array([ABBR[s.group] for s in pl.towers], dtype=object),
                 {"long_name": "IGBP class"}),
        "pft": (dims.SITE, pl.surface.pft[cells].astype(np.int8), {"long_name": "L4C PFT"}),
    })
    meta = {
        "nee": (_FLUX, "net ecosystem exchange (>0 source)"),
        "gpp": (_FLUX, "gross primary production (partitioned)"),
        "reco": (_FLUX, "ecosystem respiration (partitioned)"),
        "nee_qc": ("1", "fraction of measured/good half-hours"),
        "gpp_qc": ("1", "fraction of measured/good half-hours"),
        "reco_qc": ("1", "fraction of measured/good half-hours"),
        "ta": ("K", "daily mean air temperature"), "tmin": ("K", "daily minimum air temperature"),
        "sw_in": ("W m-2", "daily mean incoming shortwave"),
        "vpd": ("Pa", "vapour-pressure deficit"),
        "swc": ("m3 m-3", "soil water content at 5 cm"), "ts": ("K", "soil temperature at 5 cm"),
    }
    for name, (units, ln) in meta.items():
        if ids:
            arr = np.stack([series[i][name] for i in ids])
        else:
            arr = np.zeros((0, len(spec.days)), np.float32)
        ds[name] = ((dims.SITE, dims.TIME), arr.astype(np.float32),
                    {"units": units, "long_name": ln, **GM})
    ds[dims.CRS] = grid.crs_variable(4326)
    ds.attrs.update(attrs, title=f"tbcube simulated flux towers {spec.collection}",
                    simulator_carbon_model=carbon_model_json())
    return ds


def archive_attrs(spec: ArchiveSpec, seed: int) -> dict:
    """Global attrs shared by an archive's stores."""
    return {
        "source": "tbcube simulator (observing-system simulation with known truth)",
        "history": f"tbcube {__version__} simulate archive={spec.name} seed={seed}",
        "simulated": 1,
        "simulator_archive": spec.name,
        "simulator_seed": int(seed),
        "Conventions": "CF-1.10",
    }


def truth_attrs(spec: ArchiveSpec, seed: int, pl: Plan) -> dict:
    """Truth-store attrs: the settings as JSON, including ``calibration``."""
    return {
        "calibration": json.dumps(pl.calibration, sort_keys=True),
        "simulator_settings": spec.settings.to_json(),
        "simulator_spec": json.dumps({"grid": spec.grid, "window": spec.window.as_list(),
                                      "start": spec.start, "end": spec.end,
                                      "sensors": list(spec.sensors()),
                                      "insitu_network": spec.network,
                                      "tower_collection": spec.collection}),
        "pass_hours": json.dumps({"am": 6.0, "pm": 18.0}),
        "carbon_model": carbon_model_json(),
    }


def carbon_model_json() -> str:
    """The truth carbon model's form and per-IGBP parameters, as JSON."""
    import dataclasses

    from pipeline.simulate import towers

    return json.dumps({
        "form": "GPP = sat (1 - exp(-eps APAR / sat)) f_T(Gaussian on daily mean T) "
                "f_VPD(exp) sqrt(f_SM) (x0.3 frozen); RECO = 0.45 GPP_7d + maintenance "
                "Q10=2 + k SOC 2.2^((min(Tsoil,303.15)-283.15)/10) 4x(1-x) (x0.15 frozen), "
                "k: mean RH = 0.9 mean NPP over the span (steady-state soil carbon); "
                "NEE = RECO - GPP (see pipeline/simulate/towers.py)",
        "parameters_by_igbp": {str(k): dataclasses.asdict(v) for k, v in towers.CARBON.items()},
        "towers": {"footprint": "x U(0.85, 1.15) on GPP and RECO", "gap_filled_fraction": 0.2,
                   "missing_fraction": 0.08, "winter_outage_sites": 0.4,
                   "random_error": "0.25 + 0.08 |NEE| (x2 gap-filled)",
                   "partitioning_error": 0.12},
    }, sort_keys=True)


def check_store(url: str, spec: schema.DatasetSpec, storage_options=None) -> None:
    """Open a written store and check it against the contract (raises SchemaError)."""
    ds = stores.open_dataset(url, storage_options=storage_options)
    schema.check(ds, spec, context=url)
