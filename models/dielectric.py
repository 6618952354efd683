"""Complex relative permittivity of soil, water and ice at microwave frequencies (pure JAX).

Every function returns ``ε = ε' + iε''`` with ``ε'' ≥ 0`` (the ``exp(-iωt)`` convention used by
the Fresnel code in :mod:`models.tau_omega`) as ``complex64``, broadcasts its inputs, and is
``jit``/``vmap``/``grad``-able with respect to its real inputs.

Models (equations restated from the cited papers, see docs/science.md §3.2):

* :func:`mironov` — Mironov, Kosolapova & Fomin (2009), *Physically and mineralogically based
  spectroscopic dielectric model for moist soils*, IEEE TGRS 47(7): the generalized refractive
  mixing dielectric model (GRMDM) with clay-dependent Debye spectra of bound and unbound
  (free) soil water.  The model used by SMAP L2.
* :func:`dobson` — Dobson, Ulaby, Hallikainen & El-Rayes (1985), *Microwave dielectric behavior
  of wet soil, part II*, IEEE TGRS 23(1): the semi-empirical α-power mixing model with a Debye
  free-water term that carries the effective-conductivity loss (Dobson 1985 regression above
  1.4 GHz, Peplinski et al. 1995 regression below).
* :func:`water` — single-Debye pure / saline water with temperature-dependent static
  permittivity and relaxation time, and the salinity corrections of Klein & Swift (1977).
* :func:`ice` — Mätzler (2006) pure-ice permittivity (ε' ≈ 3.19, tiny ε'').
* :func:`frozen_soil` — a Mironov-style refractive mixture of dry soil, the unfrozen bound
  water film and ice; gives ε' ≈ 3–6 and ε'' ≲ 0.5 at L-band.

Units: frequency in GHz, soil moisture volumetric [m3 m-3], clay and sand as mass fractions
[0–1], bulk density in g cm-3, temperature in K, salinity in psu.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["EPS_VACUUM_F_PER_M", "mironov", "dobson", "water", "ice", "frozen_soil"]

EPS_VACUUM_F_PER_M = 8.854187817e-12
_TWO_PI = 2.0 * jnp.pi
_F32 = jnp.float32

# Mironov et al. (2009) GRMDM, clay C as a fraction (the paper writes C in percent; the
# coefficients below are the paper's multiplied by 100 and 1e4 for the C and C² terms).
MIRONOV_EPS_INF = 4.9
MIRONOV_EPS0_UNBOUND = 100.0
MIRONOV_TAU_UNBOUND_S = 8.5e-12

# Dobson et al. (1985): shape factor and soil-solid particle density.
DOBSON_ALPHA = 0.65
PARTICLE_DENSITY_G_CM3 = 2.66
WATER_EPS_INF = 4.9
# Volume expansion of water on freezing (ice density 0.917 g cm-3).
ICE_EXPANSION = 1.0 / 0.917


def _f32(x):
    return jnp.asarray(x, dtype=_F32)


def _complex(real, imag):
    real, imag = jnp.broadcast_arrays(jnp.asarray(real, _F32), jnp.asarray(imag, _F32))
    return jax.lax.complex(real, imag)


def _debye(freq_hz, eps_static, eps_inf, tau_s, sigma_s_per_m):
    """Single Debye relaxation plus ionic conductivity loss.

    Args:
      freq_hz: Frequency [Hz].
      eps_static, eps_inf: Static and high-frequency permittivity [1].
      tau_s: Relaxation time [s].
      sigma_s_per_m: Ionic conductivity [S m-1].

    Returns:
      (ε', ε'') [1], float32, broadcast shape.
    """
    wt = _TWO_PI * freq_hz * tau_s
    denom = 1.0 + wt * wt
    eps_re = eps_inf + (eps_static - eps_inf) / denom
    eps_im = (eps_static - eps_inf) * wt / denom + sigma_s_per_m / (
        _TWO_PI * freq_hz * EPS_VACUUM_F_PER_M
    )
    return eps_re, eps_im


def _refractive(eps_re, eps_im):
    """Refractive index n and normalised attenuation κ of ε' + iε'' (both ≥ 0)."""
    mod = jnp.sqrt(eps_re * eps_re + eps_im * eps_im)
    n = jnp.sqrt(jnp.maximum(0.5 * (mod + eps_re), 0.0))
    # (mod - ε') = ε''² / (mod + ε') avoids cancellation when ε'' ≪ ε'.
    kappa = jnp.sqrt(0.5 * eps_im * eps_im / jnp.maximum(mod + eps_re, 1e-12))
    return n, kappa


def _mironov_spectra(freq_ghz, clay):
    """Clay-dependent GRMDM parameters: dry soil (n, κ), m_vt, bound and free water (n, κ)."""
    c = clay
    freq_hz = freq_ghz * 1e9
    n_dry = 1.634 - 0.539 * c + 0.2748 * c * c
    k_dry = 0.03952 - 0.04038 * c
    m_vt = 0.02863 + 0.30673 * c
    eps0_b = 79.8 - 85.4 * c + 32.7 * c * c
    tau_b = 1.062e-11 + 3.450e-12 * c
    sigma_b = 0.3112 + 0.467 * c
    sigma_u = 0.3631 + 1.217 * c
    n_b, k_b = _refractive(*_debye(freq_hz, eps0_b, MIRONOV_EPS_INF, tau_b, sigma_b))
    n_u, k_u = _refractive(
        *_debye(freq_hz, MIRONOV_EPS0_UNBOUND, MIRONOV_EPS_INF, MIRONOV_TAU_UNBOUND_S, sigma_u)
    )
    return n_dry, k_dry, m_vt, n_b, k_b, n_u, k_u


def mironov(freq_ghz, sm, clay):
    """Mironov et al. (2009) GRMDM permittivity of moist mineral soil (thawed).

    The soil refractive index and attenuation grow linearly with the bound-water volume up to the
    maximum bound-water fraction m_vt(C), then with the free-water volume beyond it; each water
    type has its own clay-dependent Debye spectrum.  Valid 0.3–26.5 GHz, clay 0–0.76.

    Args:
      freq_ghz: Frequency [GHz], broadcastable.
      sm: Volumetric soil moisture [m3 m-3], broadcastable (clipped at 0).
      clay: Clay mass fraction [0–1], broadcastable.

    Returns:
      Complex relative permittivity [1], complex64, broadcast shape of the inputs.
    """
    freq_ghz, sm, clay = _f32(freq_ghz), jnp.maximum(_f32(sm), 0.0), _f32(clay)
    n_dry, k_dry, m_vt, n_b, k_b, n_u, k_u = _mironov_spectra(freq_ghz, clay)
    m_bound = jnp.minimum(sm, m_vt)
    m_free = jnp.maximum(sm - m_vt, 0.0)
    n_soil = n_dry + (n_b - 1.0) * m_bound + (n_u - 1.0) * m_free
    k_soil = k_dry + k_b * m_bound + k_u * m_free
    return _complex(n_soil * n_soil - k_soil * k_soil, 2.0 * n_soil * k_soil)


def _water_debye_params(t_k, salinity_psu):
    """Static permittivity [1], relaxation time [s] and conductivity [S m-1] of (sea) water.

    Klein & Swift (1977): pure-water ε_s(T) and τ(T) polynomials in °C, multiplied by the
    salinity factors a(T, S) and b(T, S), and the conductivity σ(T, S) (0 for pure water).
    """
    t = t_k - 273.15
    s = salinity_psu
    eps_s = 87.134 - 1.949e-1 * t - 1.276e-2 * t * t + 2.491e-4 * t * t * t
    a = 1.0 + 1.613e-5 * t * s - 3.656e-3 * s + 3.210e-5 * s * s - 4.232e-7 * s * s * s
    tau = 1.768e-11 - 6.086e-13 * t + 1.104e-14 * t * t - 8.111e-17 * t * t * t
    b = 1.0 + 2.282e-5 * t * s - 7.638e-4 * s - 7.760e-6 * s * s + 1.105e-8 * s * s * s
    sigma25 = s * (0.182521 - 1.46192e-3 * s + 2.09324e-5 * s * s - 1.28205e-7 * s * s * s)
    d = 25.0 - t
    alpha = 2.033e-2 + 1.266e-4 * d + 2.464e-6 * d * d - s * (
        1.849e-5 - 2.551e-7 * d + 2.551e-8 * d * d
    )
    sigma = sigma25 * jnp.exp(-d * alpha)
    return eps_s * a, tau * b, sigma


def water(freq_ghz, t_k, salinity_psu=0.0):
    """Permittivity of liquid (pure or saline) water, single Debye relaxation.

    Args:
      freq_ghz: Frequency [GHz], broadcastable (the single Debye form is good below ~30 GHz).
      t_k: Water temperature [K], broadcastable (≈ 271–313 K).
      salinity_psu: Salinity [psu], broadcastable; 0 for fresh water.

    Returns:
      Complex relative permittivity [1], complex64, broadcast shape.
    """
    freq_ghz, t_k, salinity_psu = _f32(freq_ghz), _f32(t_k), _f32(salinity_psu)
    eps_s, tau, sigma = _water_debye_params(t_k, salinity_psu)
    re, im = _debye(freq_ghz * 1e9, eps_s, WATER_EPS_INF, tau, sigma)
    return _complex(re, im)


def ice(freq_ghz, t_k):
    """Permittivity of pure ice (Mätzler 2006, *Thermal Microwave Radiation*, §5.3).

    ε' = 3.1884 + 9.1e-4 (T − 273.15 K); ε'' = A/f + B f (f in GHz) with the Hufford/Mätzler
    temperature dependence of A and B.

    Args:
      freq_ghz: Frequency [GHz], broadcastable.
      t_k: Ice temperature [K], broadcastable (clipped to ≤ 273.15 K).

    Returns:
      Complex relative permittivity [1], complex64, broadcast shape.
    """
    freq_ghz = _f32(freq_ghz)
    t_k = jnp.minimum(_f32(t_k), 273.15)
    eps_re = 3.1884 + 9.1e-4 * (t_k - 273.15)
    theta = 300.0 / t_k - 1.0
    a = (0.00504 + 0.0062 * theta) * jnp.exp(-22.1 * theta)
    ex = jnp.exp(335.0 / t_k)
    b = (
        (0.0207 / t_k) * ex / ((ex - 1.0) ** 2)
        + 1.16e-11 * freq_ghz * freq_ghz
        + jnp.exp(-9.963 + 0.0372 * (t_k - 273.16))
    )
    return _complex(eps_re, a / freq_ghz + b * freq_ghz)


def _dobson_effective_conductivity(freq_ghz, bulk_density, sand, clay):
    """Effective conductivity [S m-1] of soil water (Dobson 1985 ≥ 1.4 GHz, Peplinski < 1.4 GHz).

    Clamped at 0: the linear regressions go negative for very sandy, loose soils.
    """
    dobson = -1.645 + 1.939 * bulk_density - 2.25622 * sand + 1.594 * clay
    peplinski = 0.0467 + 0.2204 * bulk_density - 0.4111 * sand + 0.6614 * clay
    return jnp.maximum(jnp.where(freq_ghz >= 1.4, dobson, peplinski), 0.0)


def dobson(freq_ghz, sm, sand, clay, bulk_density=1.4, t_k=293.15):
    """Dobson et al. (1985) semi-empirical permittivity of moist soil.

    ε'^α = 1 + (ρb/ρs)(ε_s^α − 1) + m_v^β' ε'_fw^α − m_v and
    ε''  = (m_v^β'' ε''_fw^α)^(1/α), with α = 0.65, ρs = 2.66 g cm-3,
    ε_s = (1.01 + 0.44 ρs)² − 0.062, β' = 1.2748 − 0.519 S − 0.152 C,
    β'' = 1.33797 − 0.603 S − 0.166 C, and the free-water Debye loss including the effective
    conductivity term σ_eff (ρs − ρb) / (2π ε0 f ρs m_v).

    Args:
      freq_ghz: Frequency [GHz] (1.4–18 GHz per the paper), broadcastable.
      sm: Volumetric soil moisture [m3 m-3], broadcastable.
      sand, clay: Sand and clay mass fractions [0–1], broadcastable.
      bulk_density: Dry bulk density [g cm-3], broadcastable.
      t_k: Soil temperature [K] (sets the free-water Debye parameters), broadcastable.

    Returns:
      Complex relative permittivity [1], complex64, broadcast shape.
    """
    freq_ghz, sand, clay = _f32(freq_ghz), _f32(sand), _f32(clay)
    rho_b, t_k = _f32(bulk_density), _f32(t_k)
    # A tiny floor keeps m_v^β and the σ_eff / m_v term finite (and differentiable) at m_v = 0.
    sm = jnp.maximum(_f32(sm), 1e-4)
    freq_hz = freq_ghz * 1e9
    eps_s_w, tau_w, _ = _water_debye_params(t_k, 0.0)
    sigma_eff = _dobson_effective_conductivity(freq_ghz, rho_b, sand, clay)
    wt = _TWO_PI * freq_hz * tau_w
    fw_re = WATER_EPS_INF + (eps_s_w - WATER_EPS_INF) / (1.0 + wt * wt)
    fw_im = (eps_s_w - WATER_EPS_INF) * wt / (1.0 + wt * wt) + sigma_eff / (
        _TWO_PI * EPS_VACUUM_F_PER_M * freq_hz
    ) * (PARTICLE_DENSITY_G_CM3 - rho_b) / (PARTICLE_DENSITY_G_CM3 * sm)
    eps_solid = (1.01 + 0.44 * PARTICLE_DENSITY_G_CM3) ** 2 - 0.062
    beta_re = 1.2748 - 0.519 * sand - 0.152 * clay
    beta_im = 1.33797 - 0.603 * sand - 0.166 * clay
    a = DOBSON_ALPHA
    re_a = (
        1.0
        + rho_b / PARTICLE_DENSITY_G_CM3 * (eps_solid**a - 1.0)
        + sm**beta_re * fw_re**a
        - sm
    )
    eps_re = jnp.maximum(re_a, 1.0) ** (1.0 / a)
    eps_im = (sm**beta_im * fw_im**a) ** (1.0 / a)
    return _complex(eps_re, eps_im)


def frozen_soil(freq_ghz, sm, clay, *, t_k=263.15, unfrozen_fraction=0.5):
    """Permittivity of frozen mineral soil: dry soil + unfrozen bound water + ice.

    Follows the GRMDM picture: part of the bound water (``unfrozen_fraction`` of the maximum
    bound-water fraction m_vt(C), a documented modelling choice standing in for the
    temperature-dependent unfrozen-water curve) stays liquid as a film on the particles with
    Mironov's bound-water Debye spectrum; the rest freezes and occupies 1/0.917 of its liquid
    volume as ice.  The refractive indices add linearly with volume (refractive mixing), as in
    :func:`mironov`.  The result is ε' ≈ 3–6.5, ε'' ≈ 0.1–0.7 at L-band, i.e. the large drop from
    thawed soil that freeze/thaw detection relies on.

    Args:
      freq_ghz: Frequency [GHz], broadcastable.
      sm: Total (liquid + frozen, as liquid-equivalent) volumetric water [m3 m-3].
      clay: Clay mass fraction [0–1].
      t_k: Soil temperature [K] for the ice permittivity (keyword only).
      unfrozen_fraction: Liquid water kept, as a fraction of m_vt(C) [0–1] (keyword only).

    Returns:
      Complex relative permittivity [1], complex64, broadcast shape.
    """
    freq_ghz, sm, clay = _f32(freq_ghz), jnp.maximum(_f32(sm), 0.0), _f32(clay)
    n_dry, k_dry, m_vt, n_b, k_b, _, _ = _mironov_spectra(freq_ghz, clay)
    eps_ice = ice(freq_ghz, t_k)
    n_i, k_i = _refractive(jnp.real(eps_ice), jnp.imag(eps_ice))
    m_bound = jnp.minimum(sm, unfrozen_fraction * m_vt)
    v_ice = ICE_EXPANSION * (sm - m_bound)
    n_soil = n_dry + (n_b - 1.0) * m_bound + (n_i - 1.0) * v_ice
    k_soil = k_dry + k_b * m_bound + k_i * v_ice
    return _complex(n_soil * n_soil - k_soil * k_soil, 2.0 * n_soil * k_soil)
