"""The simulated world's carbon fluxes (truth) and eddy-covariance towers observing them.

The "true" ecosystem is deliberately *structurally different* from the L4C/TCF model that tbcube
evaluates (science.md §2.2), so that evaluating L4C against these towers has the kind of model
error real towers show:

* GPP = GPP_sat (1 − exp(−ε APAR / GPP_sat)) · f_T · f_VPD · f_SM · f_frozen — a light-saturating
  response (L4C is linear in APAR), a Gaussian temperature optimum on the *daily mean* air
  temperature (L4C ramps on Tmin), exponential VPD decline, a square-root ramp on liquid soil
  moisture relative to porosity (L4C ramps on rescaled root-zone wetness), and a 0.3 multiplier
  on frozen soil (L4C's ft0 is per PFT).  APAR = fPAR · 0.45 · SW↓ · 0.0864 with fPAR following
  the phenology.
* RECO = RA + RH with RA = 0.45 · GPP(7-day mean) + maintenance ∝ Q10 = 2 on air temperature and
  RH = k · SOC · 2.2^((min(T_soil, 30 °C) − 283.15)/10) · 4x(1 − x) (x = liquid soil moisture /
  porosity, optimum at half saturation) × 0.15 when frozen — a single-pool Q10 model (L4C uses
  three pools, Arrhenius kinetics and a surface-wetness ramp).  k puts the soil carbon in steady
  state with the simulated climate (as a spin-up would): over the span, mean RH = 0.9 × mean
  NPP per cell (``SOC`` adds ±25 % spatial variation), so cells are small sinks on average.
* NEE = RECO − GPP (positive: source).

Towers see the cell's fluxes with a footprint factor (±15 %), random error (0.25 + 8 %),
gap-filling (≈ 20 % of days with quality fraction < 0.5 and doubled error), missing days
(≈ 8 %) and, at some sites, no winter data; NEE is "measured", RECO comes from a noisy
partitioning and GPP = RECO − NEE (FLUXNET's partitioning identity).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal

from pipeline.simulate import rng
from pipeline.simulate.surface import Surface
from pipeline.simulate.weather import T0, Weather

RH_BALANCE = 0.9  # mean heterotrophic respiration / mean NPP over the span (a small sink)


@dataclasses.dataclass(frozen=True)
class CarbonParams:
    """Per-class parameters of the truth carbon model."""

    fpar_max: float
    evergreen: float  # fPAR fraction kept outside the growing season
    eps: float  # g C MJ-1 APAR at low light
    gpp_sat: float  # g C m-2 d-1
    t_opt: float  # K
    t_width: float  # K
    vpd_scale: float  # Pa
    r_ref: float  # g C m-2 d-1: floor of the RH rate constant is 0.05 × this


CARBON: dict[int, CarbonParams] = {  # by IGBP class
    1: CarbonParams(0.80, 0.70, 1.9, 10.0, 291.0, 9.0, 1800.0, 1.1),
    2: CarbonParams(0.92, 0.90, 2.3, 14.0, 299.0, 9.0, 2500.0, 2.4),
    3: CarbonParams(0.75, 0.25, 2.0, 9.0, 290.0, 9.0, 1700.0, 1.0),
    4: CarbonParams(0.85, 0.15, 2.4, 13.0, 294.0, 9.0, 2000.0, 1.6),
    7: CarbonParams(0.50, 0.20, 1.6, 6.0, 287.0, 8.0, 1500.0, 0.7),
    9: CarbonParams(0.60, 0.30, 1.8, 9.0, 300.0, 10.0, 2200.0, 1.2),
    10: CarbonParams(0.60, 0.15, 2.0, 9.0, 293.0, 9.0, 1600.0, 1.2),
    12: CarbonParams(0.80, 0.05, 2.6, 17.0, 296.0, 8.0, 1900.0, 1.4),
    15: CarbonParams(0.0, 0.0, 0.0, 1.0, 280.0, 5.0, 1000.0, 0.0),
    16: CarbonParams(0.05, 0.5, 1.0, 2.0, 295.0, 8.0, 1500.0, 0.1),
}


def _table(surface: Surface, name: str) -> np.ndarray:
    t = np.zeros(18)
    for k, p in CARBON.items():
        t[k] = getattr(p, name)
    return t[surface.landcover]


def carbon_fluxes(
    seed: int, surface: Surface, w: Weather, sm_liquid: np.ndarray, t_soil: np.ndarray,
    frozen: np.ndarray,
) -> dict[str, np.ndarray]:
    """Daily truth fluxes (T, N) [g C m-2 d-1]: ``gpp``, ``reco``, ``nee``.

    Args:
      sm_liquid, t_soil, frozen: Daily means of the soil state (T, N).
    """
    fpar = _table(surface, "fpar_max") * (
        _table(surface, "evergreen") + (1 - _table(surface, "evergreen")) * w.phenology)
    par = 0.45 * w.sw_in * 0.0864
    apar = fpar * par
    sat = np.maximum(_table(surface, "gpp_sat"), 1e-3)
    light = sat * (1.0 - np.exp(-_table(surface, "eps") * apar / sat))
    f_t = np.exp(-(((w.t_air - _table(surface, "t_opt")) / _table(surface, "t_width")) ** 2))
    f_t = np.where(w.t_air < T0 - 5.0, 0.0, f_t)
    f_vpd = np.exp(-w.vpd / _table(surface, "vpd_scale"))
    half = 0.5 * (surface.porosity - surface.residual_sm)
    x = np.clip((sm_liquid - surface.residual_sm) / half, 0.0, 1.0)
    gpp = light * f_t * f_vpd * np.sqrt(x) * np.where(frozen, 0.3, 1.0)
    soc = np.clip(1.0 + 0.25 * rng.smooth_field(seed, "carbon/soc", surface.lat, surface.lon,
                                                scale_km=250.0), 0.5, 1.5)
    a = 1.0 / 7.0
    gpp7 = signal.lfilter([a], [1.0, -(1 - a)], gpp, axis=0, zi=((1 - a) * gpp[0])[None, :])[0]
    ra = 0.45 * gpp7 + 0.04 * _table(surface, "fpar_max") * 2.0 ** ((w.t_air - 283.15) / 10.0)
    wet = np.clip(sm_liquid / surface.porosity, 0.0, 1.0)
    shape = (2.2 ** ((np.minimum(t_soil, 303.15) - 283.15) / 10.0)
             * np.maximum(4.0 * wet * (1.0 - wet), 0.1) * np.where(frozen, 0.15, 1.0))
    # soil carbon in steady state with the simulated climate (as after a spin-up): over the span,
    # mean RH = RH_BALANCE × mean NPP, with a floor from the class reference rate
    npp = gpp - ra
    k = RH_BALANCE * np.maximum(npp.mean(axis=0), 0.0) / np.maximum(shape.mean(axis=0), 1e-6)
    k = np.maximum(k, 0.05 * _table(surface, "r_ref"))
    rh = k * soc * shape
    reco = ra + rh
    return {"gpp": gpp, "reco": reco, "nee": reco - gpp}


def tower_observations(
    seed: int, site_keys: np.ndarray, days: np.ndarray, fluxes: dict[str, np.ndarray],
    drivers: dict[str, np.ndarray], t_air: np.ndarray,
) -> dict[str, np.ndarray]:
    """What towers at some cells report, daily.

    Args:
      site_keys: Integer key of each site (S,) (random streams).
      days: Day numbers (T,).
      fluxes: Truth ``gpp``/``reco``/``nee`` at the sites' cells, (T, S).
      drivers: Truth ``ta``, ``tmin``, ``sw_in``, ``vpd``, ``swc``, ``ts`` at the cells, (T, S).
      t_air: Daily mean air temperature at the cells [K], (T, S).

    Returns:
      Arrays (T, S) float32 for ``nee``, ``gpp``, ``reco``, their ``_qc`` fractions and drivers.
    """
    k = site_keys[None, :]
    d = days[:, None]

    def u(name):
        return rng.uniform(seed, "tower/" + name, k, d)

    def z(name):
        return rng.normal(seed, "tower/" + name, k, d)

    foot_g = 0.85 + 0.3 * rng.uniform(seed, "tower/foot_gpp", site_keys)[None, :]
    foot_r = 0.85 + 0.3 * rng.uniform(seed, "tower/foot_reco", site_keys)[None, :]
    gpp = fluxes["gpp"] * foot_g
    reco = fluxes["reco"] * foot_r
    nee_true = reco - gpp
    filled = u("filled") < 0.2
    sig = (0.25 + 0.08 * np.abs(nee_true)) * np.where(filled, 2.0, 1.0)
    nee = nee_true + sig * z("nee")
    reco_obs = np.maximum(reco * (1.0 + 0.12 * z("partition")) + 0.1 * z("reco"), 0.0)
    gpp_obs = reco_obs - nee
    qc = np.where(filled, 0.5 * u("qc_filled"), 0.75 + 0.25 * u("qc_good"))
    winter_gap = (rng.uniform(seed, "tower/winter_site", site_keys)[None, :] < 0.4) & (
        t_air < T0 - 15.0)
    missing = (u("missing") < 0.08) | winter_gap
    out = {}
    for name, val in (("nee", nee), ("gpp", gpp_obs), ("reco", reco_obs)):
        out[name] = np.where(missing, np.nan, val).astype(np.float32)
        out[name + "_qc"] = np.where(missing, np.nan, qc).astype(np.float32)
    noise = {"ta": 0.3, "tmin": 0.5, "sw_in": 8.0, "vpd": 40.0, "swc": 0.015, "ts": 0.4}
    for name, val in drivers.items():
        v = val + noise[name] * z("drv_" + name)
        if name in ("sw_in", "vpd"):
            v = np.maximum(v, 0.0)
        if name == "swc":
            v = np.clip(v + 0.03 * (rng.uniform(seed, "tower/swc_bias", site_keys)[None, :] - 0.5),
                        0.0, 0.6)
        out[name] = np.where(u("drv_missing") < 0.03, np.nan, v).astype(np.float32)
    return out
