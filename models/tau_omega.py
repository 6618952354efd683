"""Zeroth-order (tau-omega) microwave emission of a vegetated rough soil (pure JAX).

Equations (docs/science.md §3.2, architecture.md §5 rule 9)::

    r_H = |(cos θ − √(ε − sin²θ)) / (cos θ + √(ε − sin²θ))|²                 (Fresnel)
    r_V = |(ε cos θ − √(ε − sin²θ)) / (ε cos θ + √(ε − sin²θ))|²
    r_p,rough = [(1 − Q) r_p + Q r_q] · exp(−h cos^N θ)                      (Wang & Choudhury)
    γ = exp(−τ / cos θ)
    TB_p = T_s e_p γ + T_c (1 − ω)(1 − γ)(1 + r_p γ),  e_p = 1 − r_p

All functions broadcast, return float32, and are ``jit``/``vmap``/``grad``-able.  The square
root of the complex ``ε − sin²θ`` is the principal branch, which for ``ε'' ≥ 0`` has non-negative
real and imaginary parts: the transmitted wave is attenuated into the soil (the physical branch).
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = [
    "fresnel",
    "rough_reflectivity",
    "tb_tau_omega",
    "tb_hv",
    "emissivity_hv",
    "canopy_emissivity",
]

_F32 = jnp.float32


def _abs2(z):
    # |z|² without the non-differentiable |·| at 0.
    return jnp.real(z) ** 2 + jnp.imag(z) ** 2


def fresnel(eps, incidence_rad):
    """Smooth-surface Fresnel power reflectivities of a half-space.

    Args:
      eps: Complex relative permittivity of the lower medium [1] (ε'' ≥ 0), broadcastable.
      incidence_rad: Incidence angle from nadir [rad], broadcastable, in [0, π/2).

    Returns:
      (r_h, r_v): H- and V-polarised reflectivities [1] in [0, 1], float32, broadcast shape.
    """
    eps = jnp.asarray(eps, jnp.complex64)
    theta = jnp.asarray(incidence_rad, _F32)
    cos_t = jnp.cos(theta)
    sin2 = jnp.sin(theta) ** 2
    root = jnp.sqrt(eps - sin2)
    r_h = _abs2((cos_t - root) / (cos_t + root))
    r_v = _abs2((eps * cos_t - root) / (eps * cos_t + root))
    return r_h.astype(_F32), r_v.astype(_F32)


def rough_reflectivity(r_h, r_v, h, q, n, incidence_rad):
    """Rough-surface reflectivities (Wang & Choudhury 1981, with the N exponent of SMAP).

    Args:
      r_h, r_v: Smooth-surface reflectivities [1], broadcastable.
      h: Roughness parameter [1] (SMAP ≈ 0.1–0.16 per land cover).
      q: Polarisation mixing factor [1] (SMAP uses 0 at L-band).
      n: Angular exponent [1] (SMAP uses 2).
      incidence_rad: Incidence angle [rad].

    Returns:
      (r_h, r_v) of the rough surface [1], float32, broadcast shape.
    """
    r_h, r_v = jnp.asarray(r_h, _F32), jnp.asarray(r_v, _F32)
    q = jnp.asarray(q, _F32)
    damp = jnp.exp(-jnp.asarray(h, _F32) * jnp.cos(jnp.asarray(incidence_rad, _F32)) ** n)
    return ((1.0 - q) * r_h + q * r_v) * damp, ((1.0 - q) * r_v + q * r_h) * damp


def tb_tau_omega(emissivity, tau, omega, t_soil_k, t_canopy_k, incidence_rad):
    """Zeroth-order tau-omega brightness temperature of one polarisation.

    Args:
      emissivity: Rough-soil emissivity [1], any broadcastable shape.
      tau: Vegetation optical depth at nadir [1].
      omega: Single-scattering albedo [1].
      t_soil_k, t_canopy_k: Effective soil and canopy temperatures [K].
      incidence_rad: Incidence angle [rad].

    Returns:
      Brightness temperature [K], float32, broadcast shape of the inputs.
    """
    e = jnp.asarray(emissivity, _F32)
    gamma = jnp.exp(-jnp.asarray(tau, _F32) / jnp.cos(jnp.asarray(incidence_rad, _F32)))
    reflectivity = 1.0 - e
    return t_soil_k * e * gamma + t_canopy_k * (1.0 - omega) * (1.0 - gamma) * (
        1.0 + reflectivity * gamma
    )


def emissivity_hv(eps, h, q, n, incidence_rad):
    """Rough-soil emissivities (e_h, e_v) = 1 − rough Fresnel reflectivities [1], float32."""
    r_h, r_v = fresnel(eps, incidence_rad)
    r_h, r_v = rough_reflectivity(r_h, r_v, h, q, n, incidence_rad)
    return 1.0 - r_h, 1.0 - r_v


def canopy_emissivity(emissivity, tau, omega, incidence_rad):
    """Emissivity of the soil–canopy system, TB / T when T_soil = T_canopy = T [1], float32.

    This is the quantity whose channel ratios do not depend on the effective temperature (the
    basis of the multi-channel collaborative retrieval).
    """
    return tb_tau_omega(emissivity, tau, omega, 1.0, 1.0, incidence_rad)


def tb_hv(eps, tau, omega, h, q, n, t_soil_k, t_canopy_k, incidence_rad):
    """H and V brightness temperatures from soil permittivity and vegetation parameters.

    Args:
      eps: Complex soil permittivity [1], broadcastable.
      tau: Nadir vegetation optical depth [1] (same for both polarisations).
      omega: Single-scattering albedo [1].
      h, q, n: Roughness parameters [1] (see :func:`rough_reflectivity`).
      t_soil_k, t_canopy_k: Effective soil and canopy temperatures [K].
      incidence_rad: Incidence angle [rad].

    Returns:
      (tb_h, tb_v) [K], float32, broadcast shape of the inputs.
    """
    e_h, e_v = emissivity_hv(eps, h, q, n, incidence_rad)
    tb_h = tb_tau_omega(e_h, tau, omega, t_soil_k, t_canopy_k, incidence_rad)
    tb_v = tb_tau_omega(e_v, tau, omega, t_soil_k, t_canopy_k, incidence_rad)
    return tb_h, tb_v
