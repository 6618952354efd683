"""In-situ stations: where they are, and what their probes read (hourly, UTC).

Stations are placed per land-cover class (``per_class`` in every class present, plus a
"lake-rich" group in cells with ≥ 5 % open water), so per-class validation has ≥ 5 stations
wherever the class exists; a class with fewer cells gets several stations in one cell.  A
station samples the truth at a point with representativeness error:

* soil moisture at 5 cm (liquid): ``a + b θ_cell + AR(1) (σ 0.015, hourly φ 0.995) + 0.005
  white``, with a ~ N(0, 0.03), b ~ U(0.8, 1.2); flag 1 when the probe's soil is frozen;
* soil temperature at 5 cm: the cell's departure from 0 °C scaled by U(0.85, 1.15) plus an offset
  that fades near 0 °C (so the station keeps the zero curtain), AR(1) noise (σ 0.4 K);
* air temperature at 2 m (``depth_m`` = −2): cell air temperature + N(0, 0.8) K offset +
  AR(1) noise (σ 0.5 K);
* outages: a few multi-day gaps per station.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.simulate import rng
from pipeline.simulate.settings import Settings
from pipeline.simulate.weather import T0, Weather, at_hour

ABBR = {1: "ENF", 2: "EBF", 3: "DNF", 4: "DBF", 7: "OSH", 9: "SAV", 10: "GRA", 12: "CRO",
        15: "SNO", 16: "BSV"}  # FLUXNET / IGBP abbreviations
LAKE = 99  # pseudo class of lake-rich cells


@dataclasses.dataclass(frozen=True)
class Station:
    """A station: id, the flat index of its cell in the archive window, a key and a class."""

    id: str
    cell: int
    key: int
    group: int


def choose_stations(
    seed: int, landcover: np.ndarray, water_fraction: np.ndarray, cell_ids: np.ndarray,
    per_class: int,
) -> list[Station]:
    """Stations for a window (flat arrays over its cells), deterministic for the seed.

    Args:
      landcover: IGBP class per cell (N,).
      water_fraction: Open-water fraction per cell (N,).
      cell_ids: Global cell ids (N,).
      per_class: Stations per class (and for lake-rich cells).

    Returns:
      Stations ordered by class then number.
    """
    order = rng.uniform(seed, "stations/order", cell_ids)
    groups = {int(c): np.flatnonzero((landcover == c) & (water_fraction < 0.05))
              for c in np.unique(landcover) if int(c) in ABBR}
    groups[LAKE] = np.flatnonzero(water_fraction >= 0.05)
    out = []
    for g in sorted(groups):
        cells = groups[g]
        if cells.size == 0:
            continue
        cells = cells[np.argsort(order[cells], kind="stable")]
        for k in range(per_class):
            cell = int(cells[k % cells.size])
            name = ABBR.get(g, "LAK")
            out.append(Station(f"{name}{k + 1:02d}", cell, g * 1000 + k, g))
    return out


def utc_hours(days: np.ndarray) -> np.ndarray:
    """Hours since 1970-01-01T00 UTC covering the days (T·24,), int64."""
    return np.arange(days[0] * 24, (days[-1] + 1) * 24, dtype=np.int64)


def station_series(
    seed: int, w: Weather, cells: np.ndarray, keys: np.ndarray, lon: np.ndarray,
    porosity: np.ndarray, settings: Settings,
) -> dict[str, np.ndarray]:
    """Hourly probe readings of stations, (S, H) float32, H = 24 × days, UTC.

    Args:
      w: Weather of the cells that hold the stations (block-local).
      cells: Block-local cell index of each station (S,).
      keys: Station keys (S,) (random streams).
      lon: Station longitudes [deg] (S,) (UTC → local solar time).
      porosity: Saturated water content of each station's cell (S,).
    """
    hours = utc_hours(w.days)
    nt = len(w.days)
    local = hours[None, :] + lon[:, None] / 15.0  # local solar hours since epoch
    ti = np.clip(np.floor(local / 24.0).astype(np.int64) - w.days[0], 0, nt - 1)
    hour = np.mod(local, 24.0)
    st = at_hour(w, ti, cells[:, None], hour, settings)
    k = keys[:, None]
    hh = hours[None, :]

    def ar(name, phi):
        return rng.ar1(rng.normal(seed, "station/" + name, k, hh), phi, axis=1)

    a = 0.03 * rng.normal(seed, "station/sm_a", keys)[:, None]
    b = 0.8 + 0.4 * rng.uniform(seed, "station/sm_b", keys)[:, None]
    sm = a + b * st.sm_liquid + 0.015 * ar("sm", 0.995)
    sm = sm + 0.005 * rng.normal(seed, "station/sm_w", k, hh)
    sm = np.clip(sm, 0.01, porosity[:, None] + 0.05)
    scale = 0.85 + 0.3 * rng.uniform(seed, "station/ts_scale", keys)[:, None]
    off = 0.8 * rng.normal(seed, "station/ts_off", keys)[:, None]
    dep = st.t_soil - T0
    ts = T0 + dep * scale + off * np.tanh(np.abs(dep) / 2.0) + 0.4 * ar("ts", 0.98) * np.tanh(
        np.abs(dep) / 1.0)
    ta = st.t_air + 0.8 * rng.normal(seed, "station/ta_off", keys)[:, None] + 0.5 * ar("ta", 0.9)
    # outages: ~3 gaps of 2–10 days per station-year
    day_idx = (hours[None, :] // 24)
    gap = rng.uniform(seed, "station/gap", k, day_idx // 6) < 0.05
    out = {
        "soil_moisture": np.where(gap, np.nan, sm),
        "soil_temperature": np.where(gap, np.nan, ts),
        "air_temperature": np.where(gap, np.nan, ta),
    }
    flags = {
        "soil_moisture_flag": np.where(gap, 2, np.where(ts < T0, 1, 0)),
        "soil_temperature_flag": np.where(gap, 2, 0),
        "air_temperature_flag": np.where(gap, 2, 0),
    }
    res = {k_: v.astype(np.float32) for k_, v in out.items()}
    res.update({k_: v.astype(np.uint8) for k_, v in flags.items()})
    return res
