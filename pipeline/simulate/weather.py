"""Daily weather and land state per cell, and the state at any local solar hour.

Daily step (local solar days), vectorised over cells:

* Air temperature: zonal/elevation climatology + annual cycle + synoptic anomalies (a smooth
  space–time AR(1) field, ~1200 km, lag-1 0.75) + a small per-cell AR(1); diurnal cycle
  ``T(h) = T_mean + A cos(2π (h − 15)/24)`` so am and pm passes differ.
* Precipitation: wet days where a smooth space–time moisture field exceeds a climate threshold;
  exponential amounts; snow below +0.5 °C.
* Snow: degree-day accumulation/melt (3.5 mm K⁻¹ d⁻¹), 0.2 mm d⁻¹ sublimation; wetness from
  the hourly air temperature and the day's melt.  Permanent snow/ice cells keep 1500–2500 mm
  SWE.
* Soil at 5 cm: enthalpy ``H`` [K-equivalent] relaxing to air temperature with a coupling damped
  by snow depth (insulation) plus a weak pull to the deep-soil temperature; the latent heat of the
  soil water (134 K per unit volumetric water content) gives a zero curtain in autumn and spring.
  ``T = 273.15 + H`` above 0, 273.15 inside the curtain (ice fraction ``−H/L``), below otherwise.
* Soil moisture bucket (total water, 60 mm effective layer): rain and snowmelt infiltrate when
  thawed, exponential drydown (5–20 days) towards a residual; frozen soil keeps its water as ice.
  Liquid water = total × (1 − ice fraction) + residual unfrozen water.
* Meltwater ponding: melt and rain on frozen or saturated soil collect as ponds (area fraction up
  to 0.2, liquid only above −2 °C) that drain once the soil thaws.
* Lakes: surface temperature relaxes to air temperature (0.06 d⁻¹); ice grows by Stefan's law
  and melts by degree days, so ice-on and ice-off lag the air temperature.
* Vegetation phenology: a logistic function of the 30-day running-mean air temperature.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal

from pipeline.simulate import rng
from pipeline.simulate.settings import Settings
from pipeline.simulate.surface import Surface

T0 = 273.15
LATENT_K = 134.0  # latent heat of fusion of 1 m3 m-3 of water / soil heat capacity [K]
DDF = 3.5  # degree-day melt factor [mm K-1 d-1]
SUBLIMATION = 0.2  # snow loss to sublimation and wind redistribution [mm d-1]
SWE_MAX = 2500.0  # cap on snow water equivalent (glaciers do not grow without bound) [mm]
LAYER_MM = 60.0  # effective depth of the surface soil layer [mm]
EPOCH = np.datetime64("1970-01-01", "D")


def day_numbers(start: str, end: str) -> np.ndarray:
    """Days since 1970-01-01 for each date in [start, end], int64."""
    s = (np.datetime64(start, "D") - EPOCH).astype(np.int64)
    e = (np.datetime64(end, "D") - EPOCH).astype(np.int64)
    return np.arange(s, e + 1, dtype=np.int64)


def day_of_year(days: np.ndarray) -> np.ndarray:
    """Day of year (1–366) of day numbers, int64."""
    d = (EPOCH + np.asarray(days).astype("timedelta64[D]")).astype("datetime64[D]")
    return (d - d.astype("datetime64[Y]")).astype(np.int64) + 1


def toa_insolation(lat_deg: np.ndarray, doy: np.ndarray) -> np.ndarray:
    """Daily-mean top-of-atmosphere shortwave [W m-2], shape broadcast(doy[:, None], lat)."""
    decl = np.deg2rad(23.44) * np.sin(2 * np.pi * (doy[:, None] - 81) / 365.25)
    phi = np.deg2rad(lat_deg)[None, :]
    x = np.clip(-np.tan(phi) * np.tan(decl), -1.0, 1.0)
    ws = np.arccos(x)
    return 1361.0 / np.pi * (
        ws * np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.sin(ws))


@dataclasses.dataclass(frozen=True)
class Weather:
    """Daily state, every array (T, N) float64 unless noted; T = days, N = cells."""

    days: np.ndarray  # (T,) day numbers since 1970-01-01
    t_air: np.ndarray  # daily mean air temperature [K]
    t_range: np.ndarray  # diurnal half-range of air temperature [K]
    precip: np.ndarray  # mm/d
    rain: np.ndarray  # mm/d
    swe: np.ndarray  # snow water equivalent [mm] (after the day's update)
    melt: np.ndarray  # snowmelt [mm/d]
    enthalpy: np.ndarray  # soil enthalpy at 5 cm [K-equivalent]
    latent: np.ndarray  # latent-heat capacity L = 134 θ [K]
    theta: np.ndarray  # total soil water (liquid + ice) [m3 m-3]
    soil_amp: np.ndarray  # diurnal half-range of soil temperature at 5 cm [K]
    pond: np.ndarray  # ponded meltwater area fraction (0–0.2)
    lake_ice_m: np.ndarray  # lake ice thickness [m]
    t_lake: np.ndarray  # lake surface temperature [K]
    phenology: np.ndarray  # 0–1
    sw_in: np.ndarray  # daily-mean incoming shortwave [W m-2]
    vpd: np.ndarray  # daily-mean vapour-pressure deficit [Pa]
    cloud: np.ndarray  # 0–1


def _wet_threshold(frac: np.ndarray) -> np.ndarray:
    from scipy.special import ndtri

    return ndtri(1.0 - frac)


def simulate_weather(
    seed: int, surface: Surface, cell_ids: np.ndarray, days: np.ndarray, settings: Settings
) -> Weather:
    """Run the daily weather/land model for cells over ``days`` (after ``spinup_days``).

    Args:
      seed: Random seed.
      surface: Static layers of the N cells.
      cell_ids: Global cell identifiers (N,) int64 (keys of the per-cell random streams).
      days: Consecutive day numbers since 1970-01-01 (T,).
      settings: Simulator settings.

    Returns:
      The :class:`Weather` over ``days`` (spin-up discarded).
    """
    days = np.asarray(days, np.int64)
    spin = settings.spinup_days
    full = np.arange(days[0] - spin, days[-1] + 1)
    nt, n = len(full), len(cell_ids)
    lat, lon = surface.lat, surface.lon
    alat = np.abs(lat)
    doy = day_of_year(full)
    hemi = np.where(lat >= 0, 1.0, -1.0)

    # --- air temperature -------------------------------------------------------------------
    season = -np.cos(2 * np.pi * (doy[:, None] - 20.0) / 365.25) * hemi[None, :]
    syn = rng.space_time_field(seed, "weather/synoptic", lat, lon, full, scale_km=1200.0, phi=0.75)
    sig_syn = np.interp(alat, [0, 15, 40, 60, 75], [0.8, 1.2, 3.0, 4.0, 4.2])
    winter = np.clip(-season, 0, 1)
    own = rng.ar1(rng.normal(seed, "weather/cell_t", full[:, None], cell_ids[None, :]), 0.6)
    t_air = (
        surface.t_annual[None, :]
        + surface.t_amplitude[None, :] * season
        + sig_syn[None, :] * (1.0 + 0.4 * winter) * syn
        + 0.6 * own
    )

    # --- precipitation -----------------------------------------------------------------------
    moist = rng.space_time_field(seed, "weather/moisture", lat, lon, full, scale_km=600.0, phi=0.5)
    moist = (moist + 0.6 * rng.normal(seed, "weather/cell_p", full[:, None], cell_ids[None, :]))
    moist /= np.sqrt(1.36)
    seasonal_p = 1.0 + 0.5 * np.cos(2 * np.pi * (doy[:, None] - 200.0) / 365.25) * hemi[None, :]
    wet_frac = np.clip(0.12 + 0.08 * surface.precip_mean, 0.1, 0.55)
    wet = moist > _wet_threshold(wet_frac)[None, :]
    amount = -np.log(rng.uniform(seed, "weather/amount", full[:, None], cell_ids[None, :]))
    precip = np.where(wet, amount * (surface.precip_mean / wet_frac)[None, :] * seasonal_p, 0.0)
    snowy = t_air < T0 + 0.5
    snowfall = np.where(snowy, precip, 0.0)
    rain = precip - snowfall

    cloud = np.clip(0.25 + 0.6 * wet + 0.1 * moist, 0.0, 1.0)
    toa = toa_insolation(lat, doy)
    sw_in = toa * (0.75 - 0.45 * cloud)
    t_range = (
        surface.diurnal_scale[None, :]
        * 5.0
        * (0.3 + 0.7 * np.clip(toa / 450.0, 0, 1))
        * (1.0 - 0.4 * cloud)
    )
    rh = np.clip(0.55 + 0.3 * wet + 0.08 * moist + 0.1 * np.tanh(surface.precip_mean - 2)[None],
                 0.2, 0.98)
    tc = t_air - T0
    esat = 610.7 * np.exp(17.38 * tc / (239.0 + tc))
    vpd = esat * (1.0 - rh)

    # phenology: logistic function of the 30-day running-mean air temperature
    a = 1.0 / 30.0
    zi = ((1 - a) * t_air[0])[None, :]  # start the running mean at the first day's value
    t_slow = signal.lfilter([a], [1.0, -(1 - a)], t_air, axis=0, zi=zi)[0]
    phen = 1.0 / (1.0 + np.exp(-(t_slow - 279.0) / 2.5))

    # --- recursions ----------------------------------------------------------------------------
    perm = surface.landcover == 15
    por, res = surface.porosity, surface.residual_sm
    t_deep = surface.t_annual + np.where(perm, -6.0, 1.0)
    swe = np.where(perm, 1500.0, 0.0)
    theta = 0.5 * (por + res)
    h = t_deep - T0
    pond_mm = np.zeros(n)
    t_lake = np.maximum(surface.t_annual, T0)
    ice = np.zeros(n)
    out = {k: np.empty((nt, n)) for k in
           ("swe", "melt", "enthalpy", "latent", "theta", "pond", "ice", "t_lake", "soil_amp")}
    for i in range(nt):
        ta = t_air[i]
        # snow
        swe = swe + snowfall[i]
        melt = np.minimum(swe, DDF * np.maximum(ta - T0, 0.0) + 0.1 * rain[i] * (swe > 0))
        # sublimation and wind redistribution: 0.2 mm/day from any snowpack
        swe = np.maximum(swe - melt - np.minimum(swe - melt, SUBLIMATION),
                         np.where(perm, 1500.0, 0.0))
        swe = np.minimum(swe, SWE_MAX)  # firn/ice flow removes the excess
        depth_m = swe / settings.forward.snow_density_kg_m3
        # soil enthalpy
        lat_cap = LATENT_K * theta
        t_soil = _temperature(h, lat_cap)
        k = 0.4 * np.exp(-depth_m / 0.15)
        h = h + k * (ta - t_soil) + 0.02 * (t_deep - t_soil) + 0.02 * melt * (depth_m < 0.05)
        t_soil = _temperature(h, lat_cap)
        f_ice = _ice_fraction(h, lat_cap)
        frozen = f_ice > 0.5
        # soil water and ponds
        water_in = rain[i] + melt
        to_soil = np.where(frozen, 0.0, water_in)
        room = np.maximum(por - theta, 0.0) * LAYER_MM
        infil = np.minimum(to_soil, room)
        theta = theta + infil / LAYER_MM
        excess = water_in - infil
        pond_mm = pond_mm + np.where(frozen | (theta >= por - 0.01), 0.5 * excess, 0.0)
        pond_mm = pond_mm * np.where(frozen, 0.97, 0.6)
        k_dry = (0.05 + 0.15 * np.clip((ta - T0) / 25.0, 0, 1)) * (1.0 - f_ice)
        theta = res + (theta - res) * np.exp(-k_dry)
        # lakes
        t_lake = np.where(ice > 0, T0, np.maximum(T0, t_lake + 0.06 * (ta - t_lake)))
        grow = np.where((t_lake <= T0 + 0.05) & (ta < T0),
                        0.027**2 * (T0 - ta) / (2 * np.maximum(ice, 0.02)), 0.0)
        ice = np.maximum(ice + grow - 0.012 * np.maximum(ta - T0, 0.0) * (ice > 0), 0.0)
        out["swe"][i] = swe
        out["melt"][i] = melt
        out["enthalpy"][i] = h
        out["latent"][i] = lat_cap
        out["theta"][i] = theta
        out["pond"][i] = np.clip(pond_mm / 60.0 * 0.2, 0.0, 0.2)
        out["ice"][i] = ice
        out["t_lake"][i] = t_lake
        out["soil_amp"][i] = 0.45 * np.exp(-depth_m / 0.05)

    keep = slice(spin, None)
    return Weather(
        days=days,
        t_air=t_air[keep],
        t_range=t_range[keep],
        precip=precip[keep],
        rain=rain[keep],
        swe=out["swe"][keep],
        melt=out["melt"][keep],
        enthalpy=out["enthalpy"][keep],
        latent=out["latent"][keep],
        theta=out["theta"][keep],
        soil_amp=out["soil_amp"][keep] * t_range[keep],
        pond=out["pond"][keep],
        lake_ice_m=out["ice"][keep],
        t_lake=out["t_lake"][keep],
        phenology=phen[keep],
        sw_in=sw_in[keep],
        vpd=vpd[keep],
        cloud=cloud[keep],
    )


def _temperature(h: np.ndarray, latent: np.ndarray) -> np.ndarray:
    """Soil temperature [K] from enthalpy and latent capacity (zero curtain at 273.15 K)."""
    return np.where(h > 0, T0 + h, np.where(h < -latent, T0 + h + latent, T0))


def _ice_fraction(h: np.ndarray, latent: np.ndarray) -> np.ndarray:
    """Ice fraction of the soil water (0 thawed, 1 frozen)."""
    return np.clip(-h / np.maximum(latent, 1e-6), 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class HourState:
    """The state at one local solar hour per (day, cell); arrays of the caller's shape."""

    t_air: np.ndarray  # K
    t_soil: np.ndarray  # K at 5 cm (what a probe reads)
    t_surface: np.ndarray  # K, radiating (skin) temperature
    ice_fraction: np.ndarray  # 0–1
    frozen: np.ndarray  # bool, t_soil < 273.15 K
    sm_liquid: np.ndarray  # m3 m-3
    sm_total: np.ndarray  # m3 m-3
    snow_wetness: np.ndarray  # 0–1
    canopy_frozen: np.ndarray  # bool
    pond_liquid: np.ndarray  # liquid (unfrozen) ponded area fraction


def at_hour(
    w: Weather, ti: np.ndarray, ci: np.ndarray, hour: np.ndarray, settings: Settings
) -> HourState:
    """The state at local solar ``hour`` [h] of day index ``ti`` in cell index ``ci``.

    ``ti``, ``ci`` and ``hour`` broadcast together (e.g. (T, 1), (1, N), (T, N)).
    """
    diurnal_air = np.cos(2 * np.pi * (hour - 15.0) / 24.0)
    diurnal_soil = np.cos(2 * np.pi * (hour - 17.5) / 24.0)
    t_air = w.t_air[ti, ci] + w.t_range[ti, ci] * diurnal_air
    latent = w.latent[ti, ci]
    h = w.enthalpy[ti, ci] + w.soil_amp[ti, ci] * diurnal_soil
    t_soil = _temperature(h, latent)
    f_ice = _ice_fraction(h, latent)
    # inside the zero curtain the probe reads within ±0.1 K of 0 °C: below when mostly ice
    curtain = (h <= 0) & (h >= -latent)
    d = 0.1 * (0.5 - f_ice)
    d = np.where(f_ice > 0.5, np.minimum(d, -0.01), np.maximum(d, 0.01))
    t_soil = np.where(curtain, T0 + d, t_soil)
    theta = w.theta[ti, ci]
    resid = np.minimum(settings.forward.residual_liquid, theta)
    sm_liq = theta * (1.0 - f_ice) + resid * f_ice
    swe = w.swe[ti, ci]
    has_snow = swe > 1.0
    wet_now = np.clip((t_air - (T0 - 0.6)) / 1.5, 0.0, 1.0)
    melting = np.clip(w.melt[ti, ci] / 6.0, 0.0, 1.0) * (t_air > T0 - 4.0)
    wetness = np.where(has_snow, np.maximum(wet_now, 0.6 * melting), 0.0)
    t_snow = np.minimum(t_air, T0)
    t_surface = np.where(has_snow, np.minimum(0.5 * (t_snow + np.minimum(t_soil, T0)) + 0.0, T0),
                         0.5 * (t_air + t_soil))
    return HourState(
        t_air=t_air, t_soil=t_soil, t_surface=t_surface, ice_fraction=f_ice,
        frozen=t_soil < T0, sm_liquid=sm_liq, sm_total=theta, snow_wetness=wetness,
        canopy_frozen=t_air < T0 - 1.0,
        pond_liquid=w.pond[ti, ci] * np.clip((t_air - (T0 - 2.0)) / 2.0, 0.0, 1.0),
    )
