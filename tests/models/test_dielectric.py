"""Dielectric models against published values, independent implementations and physics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import dielectric

FREQ_L_GHZ = 1.4


def _debye(freq_ghz, eps_s, eps_inf, tau_ps):
    wt = 2 * np.pi * freq_ghz * 1e9 * tau_ps * 1e-12
    return eps_inf + (eps_s - eps_inf) / (1 + wt * wt), (eps_s - eps_inf) * wt / (1 + wt * wt)


@pytest.mark.parametrize(
    ("t_c", "eps_s", "tau_ps", "tol_re"),
    [
        # Kaatze (1989), J. Chem. Eng. Data 34, 371-374, Table: Debye parameters of pure water
        # fitted to measurements 1.1-57 GHz (ε_inf ≈ 5.7).
        (20.0, 80.21, 9.36, 0.6),
        (0.0, 87.91, 17.67, 1.0),
    ],
)
def test_pure_water_matches_kaatze_1989_debye_fit(t_c, eps_s, tau_ps, tol_re):
    ref_re, ref_im = _debye(FREQ_L_GHZ, eps_s, 5.7, tau_ps)
    eps = complex(dielectric.water(FREQ_L_GHZ, 273.15 + t_c))
    assert eps.real == pytest.approx(ref_re, abs=tol_re)
    assert eps.imag == pytest.approx(ref_im, abs=0.3)


def test_sea_water_conductivity_matches_standard_seawater():
    # Standard sea water (UNESCO 1981 practical salinity scale): S = 35 psu at 15 °C has
    # conductivity C(35, 15, 0) = 4.2914 S/m.
    _, _, sigma = dielectric._water_debye_params(jnp.float32(288.15), jnp.float32(35.0))
    assert float(sigma) == pytest.approx(4.2914, abs=0.02)
    # Salt water at L-band is lossy: ε'' is dominated by the ionic term σ/(2π f ε0) ≈ 55.
    eps = complex(dielectric.water(FREQ_L_GHZ, 288.15, 35.0))
    assert eps.imag > 50.0 and 65.0 < eps.real < 80.0


def test_ice_matches_matzler():
    # Mätzler (2006), Thermal Microwave Radiation §5.3: ε'(−10 °C) = 3.1884 − 0.0091 = 3.179;
    # ε'' at 1.4 GHz and −10 °C is of order 1e-4 to 1e-3.
    eps = complex(dielectric.ice(FREQ_L_GHZ, 263.15))
    assert eps.real == pytest.approx(3.179, abs=2e-3)
    assert 1e-4 < eps.imag < 1e-3


def test_mironov_matches_independent_implementation():
    # Reference from Morteza-Khazaei/mwrtms tests/…/test_mironov (value "obtained by evaluating
    # the MATLAB implementation" of Mironov et al. 2009): mv = 0.25, clay = 0.3, f = 5.405 GHz.
    eps = complex(dielectric.mironov(5.405, 0.25, 0.3))
    assert eps.real == pytest.approx(11.24896653310607, abs=2e-4)
    assert eps.imag == pytest.approx(2.5254712378593664, abs=2e-4)


def test_mironov_dry_soil_is_the_dry_refractive_index():
    # Mironov et al. (2009): at m_v = 0 the soil index is n_d + iκ_d, ε = (n_d + iκ_d)².
    clay = 0.2
    n_d = 1.634 - 0.539 * clay + 0.2748 * clay**2
    k_d = 0.03952 - 0.04038 * clay
    eps = complex(dielectric.mironov(FREQ_L_GHZ, 0.0, clay))
    assert eps == pytest.approx(complex(n_d, k_d) ** 2, abs=1e-5)


def test_mironov_is_continuous_and_increasing_in_moisture():
    clay = jnp.array([0.05, 0.2, 0.45])[:, None]
    sm = jnp.linspace(0.0, 0.55, 221)[None, :]
    eps = np.asarray(dielectric.mironov(FREQ_L_GHZ, sm, clay))
    assert eps.shape == (3, 221) and eps.dtype == np.complex64
    assert np.all(np.diff(eps.real, axis=1) > 0)
    assert np.all(np.diff(eps.imag, axis=1) > 0)
    # No jump at the bound/free transition m_vt = 0.02863 + 0.30673 C.
    m_vt = 0.02863 + 0.30673 * np.array([0.05, 0.2, 0.45])
    below = np.asarray(dielectric.mironov(FREQ_L_GHZ, m_vt - 1e-4, clay[:, 0]))
    above = np.asarray(dielectric.mironov(FREQ_L_GHZ, m_vt + 1e-4, clay[:, 0]))
    assert np.all(np.abs(above - below) < 0.01)
    # L-band, wet loam ≈ 20-30 (Mironov 2009 Fig. / SMAP ATBD range for 0.4 m3/m3).
    assert 18.0 < eps[1, -61].real < 30.0


def test_dobson_is_increasing_and_close_to_mironov():
    sm = jnp.linspace(0.05, 0.45, 9)
    eps_d = np.asarray(dielectric.dobson(FREQ_L_GHZ, sm, 0.4, 0.2, bulk_density=1.4))
    eps_m = np.asarray(dielectric.mironov(FREQ_L_GHZ, sm, 0.2))
    assert np.all(np.diff(eps_d.real) > 0) and np.all(np.diff(eps_d.imag) > 0)
    # Two independent empirical models of the same soil agree to ~30 % at L-band
    # (Mironov et al. 2009 compare against Dobson's data); they must not be identical either.
    rel = np.abs(eps_d.real - eps_m.real) / eps_m.real
    assert np.all(rel < 0.35)
    assert np.max(rel) > 0.02


def test_dobson_dry_limit_is_the_solid_phase_mixture():
    # Dobson et al. (1985): at m_v → 0, ε^α = 1 + (ρb/ρs)(ε_s^α − 1), ε_s = (1.01+0.44ρs)²−0.062.
    rho_b, rho_s, alpha = 1.4, 2.66, 0.65
    eps_s = (1.01 + 0.44 * rho_s) ** 2 - 0.062
    ref = (1 + rho_b / rho_s * (eps_s**alpha - 1)) ** (1 / alpha)
    eps = complex(dielectric.dobson(FREQ_L_GHZ, 0.0, 0.4, 0.2, bulk_density=rho_b))
    assert eps.real == pytest.approx(ref, abs=0.02)
    assert eps.imag < 0.02


def test_frozen_soil_is_low_and_weakly_lossy():
    sm = jnp.linspace(0.1, 0.45, 8)[None, :]
    clay = jnp.array([0.05, 0.2, 0.4])[:, None]
    eps_f = np.asarray(dielectric.frozen_soil(FREQ_L_GHZ, sm, clay))
    eps_t = np.asarray(dielectric.mironov(FREQ_L_GHZ, sm, clay))
    assert np.all((eps_f.real > 3.0) & (eps_f.real < 6.5))
    assert np.all((eps_f.imag > 0.0) & (eps_f.imag < 1.0))
    # Freezing removes most of the contrast; where most water is free (sm ≥ 0.25) ε' halves.
    assert np.all(eps_f.real < 0.9 * eps_t.real)
    assert np.all(eps_f.real[:, 3:] < 0.5 * eps_t.real[:, 3:])


def test_all_models_are_differentiable_and_jittable():
    def total(sm):
        return jnp.real(
            dielectric.mironov(FREQ_L_GHZ, sm, 0.2)
            + dielectric.dobson(FREQ_L_GHZ, sm, 0.4, 0.2)
            + dielectric.frozen_soil(FREQ_L_GHZ, sm, 0.2)
        )

    for sm in (0.0, 0.01, 0.2, 0.5):
        g = float(jax.grad(total)(jnp.float32(sm)))
        assert np.isfinite(g) and g > 0
    sm = jnp.linspace(0.02, 0.5, 7)
    np.testing.assert_allclose(
        np.asarray(jax.jit(dielectric.dobson)(FREQ_L_GHZ, sm, 0.3, 0.2)),
        np.asarray(dielectric.dobson(FREQ_L_GHZ, sm, 0.3, 0.2)),
        rtol=1e-5,
    )
    vm = jax.vmap(lambda s: dielectric.mironov(FREQ_L_GHZ, s, 0.2))(sm)
    np.testing.assert_allclose(np.asarray(vm), np.asarray(dielectric.mironov(1.4, sm, 0.2)))
