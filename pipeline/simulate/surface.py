"""The simulated surface: climate zones, land cover, soils, elevation and lakes per cell.

Every layer is a deterministic function of the cell's position (latitude zonation plus smooth
random fields from :mod:`pipeline.simulate.rng`), so any window or chunk of any grid sees the
same world.  The simulated world has no ocean: ``land_fraction = 1 − water_fraction`` where the
open water is lakes (0.05–0.5 of a lake-rich cell).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.simulate import rng

# Zonal climate (documented choice, roughly the observed zonal means of the Northern Hemisphere).
_LAT = np.array([0.0, 20.0, 35.0, 45.0, 55.0, 65.0, 72.0, 90.0])
_T_ANN = np.array([299.5, 298.0, 291.0, 284.0, 277.0, 269.5, 262.0, 252.0])  # K at sea level
_T_AMP = np.array([1.0, 4.0, 9.0, 13.0, 16.0, 19.5, 18.0, 17.0])  # K, annual half-range
_P_MEAN = np.array([5.0, 1.5, 1.6, 2.2, 1.8, 1.0, 0.6, 0.4])  # mm/day
LAPSE_K_PER_M = 0.0060


@dataclasses.dataclass(frozen=True)
class Surface:
    """Static layers for N cells (all arrays shape (N,))."""

    lat: np.ndarray
    lon: np.ndarray
    elevation: np.ndarray  # m
    t_annual: np.ndarray  # K, annual mean air temperature
    t_amplitude: np.ndarray  # K, half the annual range
    precip_mean: np.ndarray  # mm/day
    landcover: np.ndarray  # IGBP int16
    pft: np.ndarray  # int8
    water_fraction: np.ndarray  # open water (lakes), 0–0.5
    clay: np.ndarray  # 0–1
    sand: np.ndarray  # 0–1
    bulk_density: np.ndarray  # g cm-3
    porosity: np.ndarray  # m3 m-3 (saturated water content)
    residual_sm: np.ndarray  # m3 m-3 (drydown floor)
    veg_scale: np.ndarray  # multiplier of the class VOD range
    rfi_susceptibility: np.ndarray  # 0–1, scales RFI rates (a few hot spots)
    diurnal_scale: np.ndarray  # multiplier of the diurnal air-temperature range

    @property
    def land_fraction(self) -> np.ndarray:
        """1 − open-water fraction."""
        return 1.0 - self.water_fraction


def _pft_of(igbp: np.ndarray, classes) -> np.ndarray:
    table = np.zeros(18, np.int8)
    for c in classes:
        table[c.igbp] = c.pft
    return table[igbp]


def make_surface(seed: int, lat: np.ndarray, lon: np.ndarray, classes) -> Surface:
    """Static surface layers at cells ``lat``/``lon`` [deg] (shape (N,)), deterministic per cell."""
    lat = np.asarray(lat, np.float64)
    lon = np.asarray(lon, np.float64)
    alat = np.abs(lat)

    def field(name: str, scale: float) -> np.ndarray:
        return rng.smooth_field(seed, "surface/" + name, lat, lon, scale_km=scale)

    # Elevation: smooth relief plus mountain ridges (|field| shaping), 0–3500 m.
    relief = field("relief", 500.0)
    ridge = np.maximum(0.0, 1.2 - np.abs(field("ridge", 350.0))) ** 3
    elevation = np.clip(250.0 + 260.0 * relief + 750.0 * ridge, 0.0, 3500.0)

    t_annual = np.interp(alat, _LAT, _T_ANN) - LAPSE_K_PER_M * elevation + 1.2 * field("tclim", 800)
    t_amplitude = np.interp(alat, _LAT, _T_AMP) * (1.0 + 0.08 * field("tamp", 900))
    aridity = field("aridity", 700.0)
    precip_mean = np.interp(alat, _LAT, _P_MEAN) * np.exp(0.35 * aridity)

    # Land cover by climate zone and smooth random fields.
    u1 = field("lc1", 250.0)
    u2 = field("lc2", 180.0)
    lc = np.full(lat.shape, 10, np.int16)  # grassland by default
    tropical = t_annual > 295.0
    wet = precip_mean > 2.5
    lc = np.where(tropical & wet & (u1 > -0.3), 2, lc)
    lc = np.where(tropical & ~wet & (u1 > 0.2), 9, lc)
    lc = np.where(tropical & ~wet & (u2 > 0.6), 12, lc)
    subtrop_dry = (t_annual > 287.0) & (t_annual <= 295.0) & (precip_mean < 1.3)
    lc = np.where(subtrop_dry, np.where(u1 > 0.5, 7, 16), lc)
    temperate = (t_annual > 276.0) & (t_annual <= 295.0) & ~subtrop_dry
    lc = np.where(temperate & (u1 > 0.1), 12, lc)
    lc = np.where(temperate & (u2 > 0.7), 4, lc)
    lc = np.where(temperate & (t_annual < 281.0) & (u2 > 0.2), 1, lc)
    boreal = (t_annual > 266.5) & (t_annual <= 276.0)
    lc = np.where(boreal, np.where(u2 > 0.35, 3, 1), lc)
    lc = np.where(boreal & (u1 > 1.0), 7, lc)
    lc = np.where(boreal & (u1 < -1.1), 10, lc)
    arctic = t_annual <= 266.5
    lc = np.where(arctic, np.where(u2 > 1.1, 10, 7), lc)
    lc = np.where((elevation > 1300.0) & (alat > 50.0), np.where(u1 > 0.2, 16, 7), lc)
    # glaciers and ice fields: high cold mountains, and anywhere too cold for summer snowmelt
    lc = np.where(((elevation > 1500.0) & (t_annual < 268.0)) | (t_annual < 259.0), 15, lc)
    lc = lc.astype(np.int16)

    # Lakes: lowland lake districts (thermokarst, glacial) with 5–50 % open water.
    lakes = field("lakes", 220.0) + 0.6 * (alat > 55) - elevation / 600.0
    lake_rich = (lakes > 0.55) & (lc != 15) & (lc != 16)
    water_fraction = np.where(
        lake_rich, np.clip(0.05 + 0.45 * (lakes - 0.55) / 1.2, 0.05, 0.5), 0.0
    )

    # Soils: texture from smooth fields; organic (low density) in cold, wet places.
    clay = np.clip(0.2 + 0.1 * field("clay", 300.0), 0.04, 0.5)
    sand = np.clip(0.42 + 0.18 * field("sand", 300.0) + 0.25 * (lc == 16), 0.05, 0.9)
    sand = np.minimum(sand, 0.97 - clay)
    organic = np.clip((272.0 - t_annual) / 10.0, 0.0, 1.0) * (lc != 16)
    bulk_density = np.clip(1.45 - 0.35 * organic + 0.08 * field("bd", 300.0), 0.9, 1.7)
    porosity = np.clip(1.0 - bulk_density / 2.66, 0.3, 0.6)
    residual_sm = np.clip(0.02 + 0.12 * clay, 0.02, 0.09)
    veg_scale = np.clip(1.0 + 0.15 * field("veg", 200.0), 0.7, 1.3)
    rfi = np.clip(field("rfi", 150.0) - 1.2, 0.0, 1.0)
    diurnal_scale = np.clip(1.0 - 0.25 * (precip_mean - 1.5) / 2.0, 0.6, 1.4)

    return Surface(
        lat=lat, lon=lon, elevation=elevation, t_annual=t_annual, t_amplitude=t_amplitude,
        precip_mean=precip_mean, landcover=lc, pft=_pft_of(lc, classes),
        water_fraction=water_fraction, clay=clay, sand=sand, bulk_density=bulk_density,
        porosity=porosity, residual_sm=residual_sm, veg_scale=veg_scale,
        rfi_susceptibility=rfi, diurnal_scale=diurnal_scale,
    )
