"""Scene brightness temperature per channel: soil, vegetation, snow, ponds, lakes, atmosphere.

One jitted JAX kernel (:func:`scene_tb`) evaluates, for a flat batch of scenes and a sensor's
channels, the physics below; the dielectric and tau-omega pieces come from :mod:`models`.

1. Soil: permittivity of the thawed part (``models.dielectric.mironov`` or ``dobson``, chosen by
   ``ForwardModel.dielectric``) at the liquid water content, of the frozen part
   (``frozen_soil``, ε' ≈ 3–6) at the total water content; Fresnel reflectivities blended by the
   ice fraction; Wang–Choudhury roughness ``h`` (+ ``frozen_h_extra`` × ice fraction), ``Q = 0`` at
   L-band and ``roughness_q_high`` at ≥ 5 GHz, ``N = 2``.
2. Snow on the ground refracts (ε_snow = 1 + 1.6ρ + 1.86ρ³): the soil is seen at the refracted
   angle with permittivity ε_soil/ε_snow, which lowers r_H (dry snow raises L-band TBh a little).
3. Meltwater ponds (liquid area fraction from :mod:`weather`, ≤ 0.2) are exposed smooth 0 °C
   water beside the snow-covered ground: ponding on frozen/saturated ground lowers TBh (the NPR
   spike at snowmelt that makes NPR thresholding report thaw too early).
4. Snow layer: volume scattering optical depth κ₃₇ (f/37)^x · SWE_eff of dry snow (SWE_eff =
   S (1 − exp(−SWE/S)), S = 200 mm: deep packs saturate), albedo falling
   above 37 GHz; liquid water absorbs (α ∝ f^0.9 × wetness × top 30 mm SWE).  TB = TB_below γ +
   T_snow (1 − ω_s)(1 − γ): dry snow lowers 36/89 GHz TB with SWE, wet snow raises TB toward
   T_snow and shrinks V − H.
5. Canopy: tau-omega (``models.tau_omega.tb_tau_omega``) with τ(f) = τ_L (f/1.41)^x, τ_V = τ_H ×
   vod_pol, × ``frozen_tau_factor`` when the canopy is frozen, ω(f) = ω_L + s ln(f/1.41); snow
   buries short vegetation (τ_L × exp(−snow depth / canopy height), applied by the caller).
6. Lakes: open water Fresnel (``water``), ice cover blends towards the emissivity of an ice slab
   (``ice``) with e-folding thickness ∝ 1/f; area-weighted with the land part.
7. Atmosphere: zenith opacity = dry (0.007 + 0.0008 f) + water vapour (continuum 1e-5 f² +
   22.235 GHz line) × precipitable water (1.6 cm × exp((T − 288)/14)); upwelling + reflected
   downwelling at T_air − 12 K; rain at the overpass depresses 85–89 GHz TB (scattering).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from models import dielectric, tau_omega
from pipeline.simulate.settings import ForwardModel

T0 = 273.15
BLOCK = 16384  # fixed batch: every call has this shape (one compile, identical rounding)

#: Per-scene inputs of :func:`scene_tb` (each shape (N,), float32).
INPUTS = (
    "sm_liquid", "sm_total", "ice_fraction", "clay", "sand", "bulk_density", "t_soil",
    "t_surface", "t_air", "t_air_mean", "tau_l", "omega_l", "vod_pol", "h", "swe", "snow_wetness",
    "pond", "water_fraction", "lake_ice_fraction", "lake_ice_m", "t_lake", "canopy_frozen",
    "rain_now",
)


def _kernel(fm: ForwardModel, freq, pol_v, inc_deg, x):
    """The physics for one block and one channel: x is a dict of (B,) arrays → TB (B,).

    ``freq`` [GHz], ``pol_v`` (1 for V, 0 for H) and ``inc_deg`` are traced scalars, so one
    compilation serves every sensor and channel.
    """
    f = jnp.asarray(freq, jnp.float32)
    is_v = jnp.asarray(pol_v, jnp.float32)
    g = {k: jnp.asarray(v, jnp.float32) for k, v in x.items()}
    inc = jnp.deg2rad(jnp.asarray(inc_deg, jnp.float32))
    cos_i = jnp.cos(inc)
    high = f >= 5.0

    def pick(rh, rv):
        return is_v * rv + (1.0 - is_v) * rh

    # --- ground: soil (+ refraction under snow) and ponds -------------------------------------
    rho = fm.snow_density_kg_m3 / 1000.0
    eps_snow = 1.0 + 1.6 * rho + 1.86 * rho**3
    has_snow = (g["swe"] > 1.0).astype(jnp.float32)
    n_rel = has_snow * jnp.sqrt(eps_snow) + (1.0 - has_snow)
    inc_g = jnp.arcsin(jnp.sin(inc) / n_rel)
    if fm.dielectric == "dobson":
        eps_thaw = dielectric.dobson(f, g["sm_liquid"], g["sand"], g["clay"], g["bulk_density"],
                                     jnp.maximum(g["t_soil"], T0))
    else:
        eps_thaw = dielectric.mironov(f, g["sm_liquid"], g["clay"])
    eps_frz = dielectric.frozen_soil(f, g["sm_total"], g["clay"],
                                     t_k=jnp.minimum(g["t_soil"], T0))
    nr = n_rel.astype(jnp.complex64) ** 2
    rh_t, rv_t = tau_omega.fresnel(eps_thaw / nr, inc_g)
    rh_f, rv_f = tau_omega.fresnel(eps_frz / nr, inc_g)
    fi = g["ice_fraction"]
    rh = (1.0 - fi) * rh_t + fi * rh_f
    rv = (1.0 - fi) * rv_t + fi * rv_f
    q = jnp.where(high, fm.roughness_q_high, 0.0)
    rh, rv = tau_omega.rough_reflectivity(rh, rv, g["h"] + fm.frozen_h_extra * fi, q,
                                          fm.roughness_n, inc_g)
    r_ground = pick(rh, rv)
    t_ground = jnp.where(high, g["t_surface"], g["t_soil"])
    tb_ground = (1.0 - r_ground) * t_ground
    # exposed meltwater (on the snow or on bare frozen ground): smooth 0 °C water, not refracted
    rh_p, rv_p = tau_omega.fresnel(dielectric.water(f, T0 + 0.5, 0.0), inc)
    tb_pond = (1.0 - pick(rh_p, rv_p)) * (T0 + 0.5)

    # --- snow layer ----------------------------------------------------------------------------
    def snow_layer(tb_below):
        # scattering saturates in deep packs (e-folding S = 200 mm SWE, documented choice)
        swe = fm.snow_saturation_mm * (1.0 - jnp.exp(-g["swe"] * has_snow / fm.snow_saturation_mm))
        wet = g["snow_wetness"]
        kappa = fm.snow_kappa_37 * (f / 37.0) ** fm.snow_kappa_exponent * swe * (1.0 - wet)
        alpha_w = jnp.where(f < 5.0, fm.wet_snow_alpha_lband,
                            fm.wet_snow_alpha_10 * (f / 10.0) ** fm.wet_snow_alpha_exponent)
        absorb = alpha_w * jnp.minimum(swe, 30.0) * wet + 2e-4 * (f / 37.0) * swe
        ext = (kappa + absorb) / jnp.cos(inc_g)
        gamma = jnp.exp(-ext)
        albedo = jnp.clip(fm.snow_albedo_37 - fm.snow_albedo_slope * jnp.maximum(f - 37.0, 0.0),
                          0.0, 1.0)
        omega_s = albedo * kappa / jnp.maximum(kappa + absorb, 1e-12)
        t_snow = jnp.minimum(g["t_surface"], T0)
        return tb_below * gamma + t_snow * (1.0 - omega_s) * (1.0 - gamma)

    p = g["pond"]
    tb_surf = (1.0 - p) * snow_layer(tb_ground) + p * tb_pond

    # --- canopy ----------------------------------------------------------------------------------
    t_ref = jnp.maximum(t_ground, 150.0)
    e_eff = jnp.clip(tb_surf / t_ref, 0.0, 1.0)
    frz = 1.0 - (1.0 - fm.frozen_tau_factor) * g["canopy_frozen"]
    tau = g["tau_l"] * (f / 1.41) ** fm.tau_freq_exponent * frz
    tau = tau * (1.0 + is_v * (g["vod_pol"] - 1.0))
    omega = jnp.where(g["omega_l"] > 0,
                      g["omega_l"] + fm.omega_freq_slope * jnp.log(f / 1.41), 0.0)
    tb_land = tau_omega.tb_tau_omega(e_eff, tau, omega, t_ref, g["t_air"], inc)

    # --- lakes -----------------------------------------------------------------------------------
    eps_w = dielectric.water(f, jnp.maximum(g["t_lake"], T0), fm.lake_salinity_psu)
    rh_w, rv_w = tau_omega.fresnel(eps_w, inc)
    e_water = 1.0 - pick(rh_w, rv_w)
    t_ice = 0.5 * (T0 + jnp.minimum(g["t_air"], T0))
    rh_i, rv_i = tau_omega.fresnel(dielectric.ice(f, t_ice), inc)
    depth = fm.lake_ice_depth_lband_m * 1.41 / f
    e_slab = 1.0 - pick(rh_i, rv_i)
    e_icecov = e_water + (e_slab - e_water) * (1.0 - jnp.exp(-g["lake_ice_m"] / depth))
    tb_ice = snow_layer(e_icecov * t_ice)
    li = g["lake_ice_fraction"]
    tb_lake = li * tb_ice + (1.0 - li) * e_water * jnp.maximum(g["t_lake"], T0)
    fw = g["water_fraction"]
    tb = (1.0 - fw) * tb_land + fw * tb_lake

    # --- atmosphere ------------------------------------------------------------------------------
    if fm.atmosphere:
        pwv = 1.6 * jnp.exp((g["t_air_mean"] - 288.0) / 14.0)
        wv = 1e-5 * f * f + 0.045 / (1.0 + ((f - 22.235) / 1.6) ** 2)
        tau_z = 0.007 + 0.0008 * f + wv * pwv
        trans = jnp.exp(-tau_z / cos_i)
        t_atm = g["t_air"] - 12.0
        e_scene = jnp.clip(tb / t_ref, 0.0, 1.0)
        tb = tb * trans + t_atm * (1.0 - trans) * (1.0 + (1.0 - e_scene) * trans)
        rain = jnp.where(f >= 80.0, 1.0, jnp.where(f >= 30.0, 0.2, 0.0)) * g["rain_now"]
        tb = tb - fm.rain_scattering_k * rain * (1.0 + 0.3 * (1.0 - is_v))
    return tb.astype(jnp.float32)


def _kernel_vh(fm: ForwardModel, freq, inc_deg, x):
    """TB (B, 2) for V and H at one frequency (XLA shares the polarization-free work)."""
    return jnp.stack([_kernel(fm, freq, 1.0, inc_deg, x), _kernel(fm, freq, 0.0, inc_deg, x)],
                     axis=-1)


@functools.cache
def _jitted(fm: ForwardModel):
    return jax.jit(functools.partial(_kernel_vh, fm))


def scene_tb(
    fm: ForwardModel, incidence_deg: float, freq_ghz: np.ndarray, pol: tuple[str, ...],
    scenes: dict[str, np.ndarray],
) -> np.ndarray:
    """Brightness temperature of N scenes in C channels.

    Args:
      fm: Forward-model settings.
      incidence_deg: Earth incidence angle [deg].
      freq_ghz: Channel frequencies [GHz], (C,).
      pol: Channel polarizations ``"V"``/``"H"``, (C,).
      scenes: The :data:`INPUTS`, each (N,) (cast to float32).

    Returns:
      TB [K], (N, C) float32.  Computed in fixed blocks of :data:`BLOCK` scenes so every
      scene gets bit-identical results whatever the batch it arrives in.
    """
    n = len(next(iter(scenes.values())))
    freq = np.asarray(freq_ghz, np.float32)
    pol_v = np.array([p == "V" for p in pol], np.float32)
    fn = _jitted(fm)
    inc = np.float32(incidence_deg)
    out = np.empty((n, len(freq)), np.float32)
    for s in range(0, n, BLOCK):
        e = min(n, s + BLOCK)
        block = {}
        for k in INPUTS:
            a = np.zeros(BLOCK, np.float32)
            a[: e - s] = scenes[k][s:e]
            if k in ("t_soil", "t_surface", "t_air", "t_air_mean", "t_lake"):
                a[e - s:] = 273.15
            block[k] = a
        for f in np.unique(freq):
            vh = np.asarray(fn(f, inc, block))[: e - s]
            for c in np.flatnonzero(freq == f):
                out[s:e, c] = vh[:, 0] if pol_v[c] else vh[:, 1]
    return out
