"""One simulated archive: its specification and the generation of one spatial block.

A block is a window of cells with the whole time span; every number in it is a function of the
seed and the cells' global (grid, row, col) keys only, so generating a window block by block
gives the same bytes as generating it whole.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline import dims, grid, sensors
from pipeline.simulate import emission, observe, rng, towers
from pipeline.simulate.insitu import ABBR, Station, choose_stations, station_series
from pipeline.simulate.settings import Settings
from pipeline.simulate.surface import Surface, make_surface
from pipeline.simulate.weather import T0, Weather, at_hour, day_numbers, simulate_weather

VOD_FREQUENCIES_GHZ = (1.41, 6.93, 10.65, 18.7, 36.5, 89.0)
INSITU_NETWORK = "simnet"  # insitu/{network}.zarr of every simulated archive
TOWER_COLLECTION = "simflux"  # towers/{collection}.zarr
PASS_HOURS = {"am": 6.0, "pm": 18.0}
_GRID_INDEX = {name: i + 1 for i, name in enumerate(sorted(grid.GRIDS))}


@dataclasses.dataclass(frozen=True)
class ArchiveSpec:
    """What to simulate for one archive root.

    Attributes:
      name: Archive name (``tiny``, ``alaska-n36``…), used in messages and attrs.
      grid: EASE-Grid 2.0 grid name.
      window: Window of the grid.
      start, end: Inclusive dates ``YYYY-MM-DD`` (local solar days).
      tile: Edge of the square spatial blocks [cells]; None: the whole window at once.
      stations_per_class: In-situ stations per land-cover class (0: no in-situ store).
      n_towers: Flux-tower sites (0: no tower store).
      network, collection: Names of the in-situ and tower stores.
      time_chunk: Zarr chunk length along time.
      max_blocks: Generate only the first blocks (scale smoke tests); None: all.
      settings: Simulator settings.
    """

    name: str
    grid: str
    window: grid.Window
    start: str
    end: str
    tile: int | None = None
    stations_per_class: int = 5
    n_towers: int = 8
    network: str = INSITU_NETWORK
    collection: str = TOWER_COLLECTION
    time_chunk: int = 366
    max_blocks: int | None = None
    settings: Settings = Settings()

    @property
    def days(self) -> np.ndarray:
        """Day numbers since 1970-01-01, (T,)."""
        return day_numbers(self.start, self.end)

    @property
    def times(self) -> np.ndarray:
        """Dates as datetime64[ns] at 00:00, (T,)."""
        return (np.datetime64("1970-01-01", "D") + self.days).astype("datetime64[ns]")

    def sensors(self) -> tuple[str, ...]:
        """Archive sensors whose operational period overlaps [start, end]."""
        return tuple(s for s in dims.ARCHIVE_SENSORS if sensors.get(s).overlaps(self.start,
                                                                                 self.end))

    def blocks(self) -> list[grid.Window]:
        """Spatial blocks (row-major), aligned to ``tile``."""
        w = self.window
        if not self.tile:
            out = [w]
        else:
            out = [grid.Window(r, min(r + self.tile, w.row1), c, min(c + self.tile, w.col1))
                   for r in range(w.row0, w.row1, self.tile)
                   for c in range(w.col0, w.col1, self.tile)]
        return out if self.max_blocks is None else out[: self.max_blocks]


def cell_geometry(grid_name: str, w: grid.Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat (row-major) lat, lon [deg] float64 and global cell ids (int64) of a window."""
    g = grid.get(grid_name)
    rows = np.arange(w.row0, w.row1)
    cols = np.arange(w.col0, w.col1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    x, y = grid.rowcol_to_xy(g, rr.ravel(), cc.ravel())
    lat, lon = grid.xy_to_latlon(g, x, y)
    ids = _GRID_INDEX[g.name] * 10**9 + rr.ravel().astype(np.int64) * g.ncols + cc.ravel()
    return lat, lon, ids


@dataclasses.dataclass(frozen=True)
class Plan:
    """Whole-window decisions made before generating blocks."""

    stations: list[Station]
    towers: list[Station]
    calibration: dict[str, dict[str, dict[str, float]]]
    lat: np.ndarray | None  # whole window, flat (None when no stations/towers are placed)
    lon: np.ndarray | None
    ids: np.ndarray | None
    surface: Surface | None


def plan(spec: ArchiveSpec, seed: int) -> Plan:
    """Stations, tower sites and calibration of an archive (from the static surface only)."""
    cal = {s: observe.calibration(s, seed, spec.settings.observation) for s in spec.sensors()}
    if spec.stations_per_class <= 0 and spec.n_towers <= 0:  # no whole-window surface needed
        return Plan([], [], cal, None, None, None, None)
    lat, lon, ids = cell_geometry(spec.grid, spec.window)
    surf = make_surface(seed, lat, lon, spec.settings.classes)
    st = (choose_stations(seed, surf.landcover, surf.water_fraction, ids, spec.stations_per_class)
          if spec.stations_per_class > 0 else [])
    tw = choose_towers(seed, surf, ids, spec.n_towers)
    return Plan(st, tw, cal, lat, lon, ids, surf)


def choose_towers(seed: int, surf: Surface, ids: np.ndarray, n: int) -> list[Station]:
    """Tower sites, round-robin over the vegetated classes present (most common first)."""
    if n <= 0:
        return []
    order = rng.uniform(seed, "towers/order", ids)
    ok = (surf.pft > 0) & (surf.water_fraction < 0.3)
    classes = [int(c) for c in np.unique(surf.landcover[ok])]
    classes.sort(key=lambda c: (-int(np.sum(surf.landcover[ok] == c)), c))
    pools = {c: list(np.flatnonzero(ok & (surf.landcover == c))[
        np.argsort(order[ok & (surf.landcover == c)], kind="stable")]) for c in classes}
    out: list[Station] = []
    count = {c: 0 for c in classes}
    while len(out) < n and any(pools.values()):
        for c in classes:
            if pools[c] and len(out) < n:
                cell = int(pools[c].pop(0))
                count[c] += 1
                out.append(Station(f"XS-{ABBR[c][:2]}{count[c]}", cell, 50000 + c * 100 + count[c],
                                   c))
    return out


@dataclasses.dataclass
class Block:
    """Generated arrays of one block (ny, nx cells; T days)."""

    window: grid.Window
    static: dict[str, np.ndarray]  # (ny, nx)
    truth: dict[str, np.ndarray]  # (T, 2, ny, nx) | (T, ny, nx) | vod (T, 2, F, ny, nx)
    tb: dict[str, dict[str, np.ndarray]]  # sensor → tb (T,2,C,ny,nx), local_time, quality_flag
    stations: dict[str, dict[str, np.ndarray]]  # station id → var → (H,)
    towers: dict[str, dict[str, np.ndarray]]  # site id → var → (T,)


def optical_depth_l(settings: Settings, surf: Surface, w: Weather, ti, ci) -> np.ndarray:
    """L-band nadir vegetation optical depth above the snow (phenology, burial by snow)."""
    lc = surf.landcover[ci]
    tmin, tmax = settings.class_param("tau_min")[lc], settings.class_param("tau_max")[lc]
    depth = w.swe[ti, ci] / settings.forward.snow_density_kg_m3
    burial = np.exp(-depth / settings.class_param("height_m")[lc])
    return surf.veg_scale[ci] * (tmin + (tmax - tmin) * w.phenology[ti, ci]) * burial


def _scenes(spec: ArchiveSpec, surf: Surface, w: Weather, ti, ci, hour, rain_now) -> dict:
    """Emission-kernel inputs for M (day, cell, hour) points."""
    st = at_hour(w, ti, ci, hour, spec.settings)
    cls = spec.settings
    lc = surf.landcover[ci]
    tau_l = optical_depth_l(cls, surf, w, ti, ci)
    return {
        "sm_liquid": st.sm_liquid, "sm_total": st.sm_total, "ice_fraction": st.ice_fraction,
        "clay": surf.clay[ci], "sand": surf.sand[ci], "bulk_density": surf.bulk_density[ci],
        "t_soil": st.t_soil, "t_surface": st.t_surface, "t_air": st.t_air,
        "t_air_mean": w.t_air[ti, ci], "tau_l": tau_l, "omega_l": cls.class_param("omega")[lc],
        "vod_pol": cls.class_param("vod_pol")[lc], "h": cls.class_param("h")[lc],
        "swe": w.swe[ti, ci], "snow_wetness": st.snow_wetness, "pond": st.pond_liquid,
        "water_fraction": surf.water_fraction[ci],
        "lake_ice_fraction": np.clip(w.lake_ice_m[ti, ci] / 0.1, 0.0, 1.0),
        "lake_ice_m": w.lake_ice_m[ti, ci], "t_lake": w.t_lake[ti, ci],
        "canopy_frozen": st.canopy_frozen.astype(np.float32), "rain_now": rain_now,
    }


def _rain_now(seed: int, w: Weather, ti, ci, ids, hour) -> np.ndarray:
    """Rain intensity (0–1) at an overpass: on wet days, raining in 30 % of 3-hour windows."""
    raining = rng.uniform(seed, "weather/rain_now", ids[ci], w.days[ti],
                          np.floor(hour / 3.0).astype(np.int64)) < 0.3
    return np.where(raining, np.clip(w.rain[ti, ci] / 15.0, 0.0, 1.0), 0.0)


def simulate_block(spec: ArchiveSpec, seed: int, block: grid.Window, pl: Plan) -> Block:
    """Generate every array of one block."""
    ny, nx = block.shape
    lat, lon, ids = cell_geometry(spec.grid, block)
    surf = make_surface(seed, lat, lon, spec.settings.classes)
    days = spec.days
    nt = len(days)
    w = simulate_weather(seed, surf, ids, days, spec.settings)
    fm = spec.settings.forward

    def grid3(a):  # (T, N) -> (T, ny, nx)
        return a.reshape(a.shape[0], ny, nx)

    # --- truth -------------------------------------------------------------------------------
    ti = np.arange(nt)[:, None]
    ci = np.arange(len(ids))[None, :]
    states = {p: at_hour(w, ti, ci, np.full((1, 1), h), spec.settings)
              for p, h in PASS_HOURS.items()}

    def both(fn, dtype=np.float32):
        return np.stack([grid3(fn(states[p])) for p in ("am", "pm")], axis=1).astype(dtype)

    lc = surf.landcover
    vod_pol = spec.settings.class_param("vod_pol")[lc]
    tau_l = optical_depth_l(spec.settings, surf, w, ti, ci)  # (T, N)
    vod = np.empty((nt, 2, len(VOD_FREQUENCIES_GHZ), ny, nx), np.float32)
    for pi, p in enumerate(("am", "pm")):
        frz = np.where(states[p].canopy_frozen, fm.frozen_tau_factor, 1.0)
        for fi, f in enumerate(VOD_FREQUENCIES_GHZ):
            v = tau_l * (f / 1.41) ** fm.tau_freq_exponent * frz * 0.5 * (1.0 + vod_pol)
            vod[:, pi, fi] = grid3(v)
    has_lake = surf.water_fraction > 0
    truth = {
        "soil_moisture": both(lambda s: s.sm_liquid),
        "soil_temperature": both(lambda s: s.t_soil),
        "surface_temperature": both(lambda s: s.t_surface),
        "frozen": both(lambda s: s.frozen, np.int8),
        "snow_wet": both(lambda s: (s.snow_wetness > 0.2) & (w.swe > 1.0), np.int8),
        "snow_water_equivalent": grid3(w.swe).astype(np.float32),
        "lake_ice_fraction": grid3(np.where(has_lake, np.clip(w.lake_ice_m / 0.1, 0, 1),
                                            np.nan)).astype(np.float32),
        "vod": vod,
    }
    sm_day = 0.5 * (states["am"].sm_liquid + states["pm"].sm_liquid)
    ts_day = 0.5 * (states["am"].t_soil + states["pm"].t_soil)
    frozen_day = 0.5 * (states["am"].ice_fraction + states["pm"].ice_fraction) > 0.5
    flux = towers.carbon_fluxes(seed, surf, w, sm_day, ts_day, frozen_day)
    for k, v in flux.items():
        truth[k] = grid3(v).astype(np.float32)

    # --- sensors -----------------------------------------------------------------------------
    tb_out = {}
    for sensor in spec.sensors():
        s = sensors.get(sensor)
        nc = len(s.channels)
        tb = np.full((nt, 2, nc, len(ids)), np.nan, np.float32)
        lt = np.full((nt, 2, len(ids)), np.nan, np.float32)
        fl = np.zeros((nt, 2, len(ids)), np.uint16)
        cover = observe.passes(sensor, seed, lat, lon, days)
        for pi, p in enumerate(("am", "pm")):
            seen, ltime = cover[p]
            t_i, c_i = np.nonzero(seen)
            if t_i.size == 0:
                continue
            hour = ltime[t_i, c_i]
            rain = _rain_now(seed, w, t_i, c_i, ids, hour)
            sc = _scenes(spec, surf, w, t_i, c_i, hour, rain)
            true = emission.scene_tb(fm, s.incidence_angle_deg, s.frequencies_ghz,
                                     s.polarizations, sc)
            obs, flag = observe.apply_errors(
                sensor, seed, spec.settings.observation, true, days[t_i], ids[c_i],
                np.full(t_i.shape, pi), surf.rfi_susceptibility[c_i], rain,
                surf.water_fraction[c_i], pl.calibration[sensor])
            tb[t_i, pi, :, c_i] = obs
            lt[t_i, pi, c_i] = hour
            fl[t_i, pi, c_i] = flag
        tb_out[sensor] = {
            dims.TB: tb.reshape(nt, 2, nc, ny, nx),
            dims.LOCAL_TIME: lt.reshape(nt, 2, ny, nx),
            dims.QUALITY_FLAG: fl.reshape(nt, 2, ny, nx),
        }

    # --- stations and towers in this block ----------------------------------------------------
    local = _local_index(spec.window, block)
    stations = {}
    mine = [st for st in pl.stations if st.cell in local]
    if mine:
        cells = np.array([local[st.cell] for st in mine])
        keys = np.array([st.key for st in mine])
        series = station_series(seed, w, cells, keys, lon[cells], surf.porosity[cells],
                                spec.settings)
        for j, st in enumerate(mine):
            stations[st.id] = {k: v[j] for k, v in series.items()}
    tw = {}
    mine = [st for st in pl.towers if st.cell in local]
    if mine:
        cells = np.array([local[st.cell] for st in mine])
        drivers = {"ta": w.t_air[:, cells], "tmin": w.t_air[:, cells] - w.t_range[:, cells],
                   "sw_in": w.sw_in[:, cells], "vpd": w.vpd[:, cells], "swc": sm_day[:, cells],
                   "ts": ts_day[:, cells]}
        obs = towers.tower_observations(seed, np.array([st.key for st in mine]), days,
                                        {k: v[:, cells] for k, v in flux.items()}, drivers,
                                        w.t_air[:, cells])
        for j, st in enumerate(mine):
            tw[st.id] = {k: v[:, j] for k, v in obs.items()}

    static = {
        "land_fraction": surf.land_fraction, "water_fraction": surf.water_fraction,
        "landcover": surf.landcover, "pft": surf.pft, "clay_fraction": surf.clay,
        "sand_fraction": surf.sand, "bulk_density": surf.bulk_density,
        "elevation": surf.elevation,
    }
    static = {k: v.reshape(ny, nx) for k, v in static.items()}
    return Block(block, static, truth, tb_out, stations, tw)


def _local_index(whole: grid.Window, block: grid.Window) -> dict[int, int]:
    """Map flat index in the whole window → flat index in the block, for the block's cells."""
    wn = whole.col1 - whole.col0
    out = {}
    bn = block.col1 - block.col0
    for r in range(block.row0, block.row1):
        for c in range(block.col0, block.col1):
            out[(r - whole.row0) * wn + (c - whole.col0)] = (r - block.row0) * bn + (c - block.col0)
    return out


__all__ = ["ArchiveSpec", "Block", "Plan", "plan", "simulate_block", "T0"]
