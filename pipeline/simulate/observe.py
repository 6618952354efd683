"""How each sensor samples the scene: swaths and revisit, pass local times, noise, RFI, calibration.

Coverage: each day a sensor flies ``1436 / P`` orbits (P the orbital period in minutes); at
latitude φ the ascending (descending) ground tracks are ``Δλ = 360 P / 1436`` degrees apart and
shift by ``Δλ · frac(1436 / P)`` per day.  A cell is seen by a pass when its cross-track
distance to the nearest track, ``|δλ| · 111.32 km · cos φ · cos ψ(φ)`` with the track heading
``cos ψ = √(1 − cos² i / cos² φ)``, is less than half the swath.  This gives SMAP a 2–3 day
revisit at mid-latitudes and daily coverage at high latitudes; the inclined TMI/GMI orbits
sample most often near their latitude limits (catalog ``max_abs_lat_deg``).

Local time: sun-synchronous passes at the catalog local time (± the cross-track longitude
offset / 15 h); precessing orbits have an ascending-node local time drifting through the day
with the precession period, ``LT = LT_node + Δλ_in(φ)/15`` (ascending) and ``LT_node + 12 −
Δλ_in(φ)/15`` (descending); each is filed as ``am``/``pm`` by local solar time before/after noon.

Errors: Gaussian noise (catalog NEDT × ``noise_scale``); RFI outliers at L/C/X band in
susceptible cells, some flagged (quality_flag bit 0); rain at the overpass (bit 1) for sensors
with ≥ 80 GHz channels; ``tb_obs = g · tb_true + a + d · years / 10`` per channel (recorded in
the truth attrs under ``calibration``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline import qc, sensors
from pipeline.simulate import rng
from pipeline.simulate.settings import Observation

MIN_PER_SIDEREAL_DAY = 1436.07


@dataclasses.dataclass(frozen=True)
class Orbit:
    """Orbit and swath of a sensor (documented approximations)."""

    period_min: float
    swath_km: float
    inclination_deg: float
    precession_days: float | None = None  # non-sun-synchronous orbits only


ORBITS: dict[str, Orbit] = {
    "smap": Orbit(98.5, 1000.0, 98.1),
    "amsre": Orbit(98.8, 1445.0, 98.2),
    "amsr2": Orbit(98.6, 1450.0, 98.2),
    "tmi": Orbit(92.5, 878.0, 35.0, precession_days=46.0),
    "gmi": Orbit(92.6, 931.0, 65.0, precession_days=83.0),
}


def _in_plane(lat_deg: np.ndarray, inc_deg: float):
    """Argument of latitude u [rad] and in-plane longitude offset [deg] on the ascending leg."""
    si = np.sin(np.deg2rad(inc_deg))
    ci = np.cos(np.deg2rad(inc_deg))
    s = np.clip(np.sin(np.deg2rad(lat_deg)) / si, -1.0, 1.0)
    u = np.arcsin(s)
    dlon = np.rad2deg(np.arctan2(ci * np.sin(u), np.cos(u)))
    return u, dlon


def passes(
    sensor: str, seed: int, lat: np.ndarray, lon: np.ndarray, days: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Coverage and local time of each pass slot.

    Args:
      sensor: Catalog sensor name.
      seed: Random seed (sets the orbit phases).
      lat, lon: Cell positions [deg], (N,).
      days: Day numbers since 1970-01-01, (T,).

    Returns:
      ``{"am": (seen, local_time), "pm": (seen, local_time)}``: ``seen`` bool (T, N) (False
      outside the operational period and latitude limit) and ``local_time`` [h] float64 (T, N),
      NaN where not seen.
    """
    s = sensors.get(sensor)
    orb = ORBITS[sensor]
    lat = np.asarray(lat, np.float64)[None, :]
    lon = np.asarray(lon, np.float64)[None, :]
    d = np.asarray(days, np.int64)[:, None]
    dlam = 360.0 * orb.period_min / MIN_PER_SIDEREAL_DAY
    shift = dlam * ((MIN_PER_SIDEREAL_DAY / orb.period_min) % 1.0)
    ci = np.cos(np.deg2rad(orb.inclination_deg))
    cos_psi = np.sqrt(np.clip(1.0 - ci**2 / np.maximum(np.cos(np.deg2rad(lat)) ** 2, 1e-9), 0, 1))
    u_asc, dl_asc = _in_plane(lat, orb.inclination_deg)
    epoch = np.datetime64("1970-01-01", "D")
    period_day = np.array([s.operating(epoch + int(x)) for x in days])[:, None]
    inside = (np.abs(lat) <= s.max_abs_lat_deg) & period_day

    legs = {}
    for leg, u, dl in (("asc", u_asc, dl_asc), ("desc", np.pi - u_asc, 180.0 - dl_asc)):
        lam0 = 360.0 * rng.uniform(seed, f"orbit/{sensor}/{leg}", 0)
        ground = dl - 360.0 * (u / (2 * np.pi)) * orb.period_min / MIN_PER_SIDEREAL_DAY
        rel = (lon - lam0 - ground - d * shift) % dlam  # offset east of the nearest track west
        signed = np.where(rel > dlam / 2, rel - dlam, rel)
        dist = np.abs(signed) * 111.32 * np.cos(np.deg2rad(lat)) * cos_psi
        seen = (dist <= orb.swath_km / 2) & inside
        if orb.precession_days is None:
            slot = "am" if s.direction["am"] == ("ascending" if leg == "asc" else "descending") \
                else "pm"
            lt = s.local_time_h[slot] + signed / 15.0 * cos_psi
        else:
            lt_node = (24.0 * rng.uniform(seed, f"orbit/{sensor}/node", 0)
                       - 24.0 * d / orb.precession_days) % 24.0
            lt = lt_node + (dl_asc / 15.0 if leg == "asc" else 12.0 - dl_asc / 15.0)
            lt = lt + signed / 15.0 * cos_psi
            slot = None
        legs[leg] = (seen, np.mod(lt, 24.0), slot)

    out = {}
    for p in ("am", "pm"):
        seen_p = np.zeros(np.broadcast_shapes(d.shape, lat.shape), bool)
        lt_p = np.full(seen_p.shape, np.nan)
        for leg in ("asc", "desc"):  # ascending first: it wins a slot both legs fall into
            seen, lt, slot = legs[leg]
            in_slot = (lt < 12.0) if p == "am" else (lt >= 12.0)
            if slot is not None:
                in_slot = np.full(seen.shape, slot == p)
            take = seen & in_slot & ~seen_p
            lt_p = np.where(take, lt, lt_p)
            seen_p = seen_p | take
        out[p] = (seen_p, lt_p)
    return out


def calibration(sensor: str, seed: int, obs: Observation) -> dict[str, dict[str, float]]:
    """Per-channel calibration ``{label: {"offset_K", "gain", "drift_K_per_decade"}}``.

    The reference sensor has the identity; the others have offsets of ``offset_range_k`` K
    (random sign), gains of 1 ± ``gain_range`` and drifts within ``drift_range_k_per_decade``.
    """
    s = sensors.get(sensor)
    out = {}
    for k, label in enumerate(s.channel_labels):
        if sensor == obs.reference_sensor:
            out[label] = {"offset_K": 0.0, "gain": 1.0, "drift_K_per_decade": 0.0}
            continue
        u = [float(rng.uniform(seed, f"calib/{sensor}/{j}", k)) for j in range(6)]
        sign = [1.0 if x < 0.5 else -1.0 for x in u[3:]]
        lo, hi = obs.offset_range_k
        glo, ghi = obs.gain_range
        dlo, dhi = obs.drift_range_k_per_decade
        out[label] = {
            "offset_K": round(sign[0] * (lo + (hi - lo) * u[0]), 4),
            "gain": round(1.0 + sign[1] * (glo + (ghi - glo) * u[1]), 5),
            "drift_K_per_decade": round(sign[2] * (dlo + (dhi - dlo) * u[2]), 4),
        }
    return out


def apply_errors(
    sensor: str,
    seed: int,
    obs: Observation,
    tb_true: np.ndarray,
    days: np.ndarray,
    cell_ids: np.ndarray,
    pass_index: np.ndarray,
    rfi_susceptibility: np.ndarray,
    rain_now: np.ndarray,
    water_fraction: np.ndarray,
    calib: dict[str, dict[str, float]],
) -> tuple[np.ndarray, np.ndarray]:
    """Calibration, noise and RFI for M observations.

    Args:
      tb_true: Scene TB [K], (M, C) for the sensor's channels.
      days, cell_ids, pass_index: Keys of each observation, (M,) int (pass 0 am, 1 pm).
      rfi_susceptibility, rain_now, water_fraction: Per observation, (M,).
      calib: From :func:`calibration`.

    Returns:
      ``(tb_observed (M, C) float32, quality_flag (M,) uint16)``.
    """
    s = sensors.get(sensor)
    years = (days - (np.datetime64(s.period.start, "D") - np.datetime64("1970-01-01", "D"))
             .astype(np.int64)) / 365.25
    out = np.empty_like(tb_true, dtype=np.float64)
    flag = np.zeros(len(days), qc.QC_DTYPE)
    sigma = s.nedt_k * obs.noise_scale
    freqs = s.frequencies_ghz
    noise_base = rng.hash_keys(seed, f"noise/{sensor}", cell_ids, days, pass_index)
    rfi_base = rng.hash_keys(seed, f"rfi/{sensor}", cell_ids, days, pass_index)
    # one RFI event per (observation, band): both polarizations of the band are hit
    for k, label in enumerate(s.channel_labels):
        c = calib[label]
        tb = c["gain"] * tb_true[:, k] + c["offset_K"] + c["drift_K_per_decade"] * years / 10.0
        tb = tb + sigma * rng.normal_from(noise_base, k)
        f = freqs[k]
        rate = (obs.rfi_rate_lband if f < 2 else obs.rfi_rate_cband if 6 < f < 7.0 else
                0.3 * obs.rfi_rate_cband if 7.0 <= f < 8 else obs.rfi_rate_xband if f < 11 else
                0.1 * obs.rfi_rate_xband if f < 20 else 0.0)
        if rate > 0:
            band = 3 * int(round(f * 100))
            hit = rng.uniform_from(rfi_base, band) < rate * (0.2 + 8.0 * rfi_susceptibility)
            size = np.minimum(3.0 - 15.0 * np.log(rng.uniform_from(rfi_base, band + 1)),
                              obs.rfi_max_k)
            pol_h = s.channels[k].polarization == "H"
            tb = np.where(hit, tb + size * (1.1 if pol_h else 1.0), tb)
            flagged = hit & (rng.uniform_from(rfi_base, band + 2) < obs.rfi_flagged_fraction)
            flag = flag | np.where(flagged, qc.QC.RFI_SUSPECTED, 0).astype(qc.QC_DTYPE)
        out[:, k] = tb
    if freqs.max() >= 80.0:
        flag = flag | np.where(rain_now > 0.3, qc.QC.PRECIPITATION, 0).astype(qc.QC_DTYPE)
    flag = flag | np.where(water_fraction > 0.35, qc.QC.WATER_CONTAMINATION, 0).astype(qc.QC_DTYPE)
    return out.astype(np.float32), flag
