"""Fresnel / roughness / tau-omega against closed-form physics and independent numpy evaluation."""

from __future__ import annotations

import cmath
import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from models import dielectric, tau_omega

THETA_SMAP = math.radians(40.0)


def _fresnel_numpy(eps: complex, theta: float) -> tuple[float, float]:
    """Independent complex-arithmetic Fresnel evaluation (cmath, float64)."""
    c, s2 = math.cos(theta), math.sin(theta) ** 2
    root = cmath.sqrt(eps - s2)
    return abs((c - root) / (c + root)) ** 2, abs((eps * c - root) / (eps * c + root)) ** 2


@pytest.mark.parametrize("eps", [4.0 + 0.0j, 10.0 + 1.5j, 25.0 + 4.0j, 79.6 + 6.1j])
def test_normal_incidence_is_polarisation_free(eps):
    r_h, r_v = tau_omega.fresnel(eps, 0.0)
    ref = abs((1 - cmath.sqrt(eps)) / (1 + cmath.sqrt(eps))) ** 2
    assert float(r_h) == pytest.approx(ref, rel=1e-5)
    assert float(r_v) == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("eps_re", [3.0, 12.0, 30.0])
def test_v_reflectivity_vanishes_at_brewster_angle(eps_re):
    theta_b = math.atan(math.sqrt(eps_re))
    r_h, r_v = tau_omega.fresnel(eps_re + 0j, theta_b)
    assert float(r_v) < 1e-6
    assert float(r_h) > 0.1


@settings(max_examples=30, deadline=None)
@given(
    eps_re=st.floats(1.5, 80.0),
    eps_im=st.floats(0.0, 40.0),
    theta_deg=st.floats(1.0, 75.0),
)
def test_fresnel_matches_numpy_and_bounds(eps_re, eps_im, theta_deg):
    theta = math.radians(theta_deg)
    eps = complex(eps_re, eps_im)
    r_h, r_v = (float(r) for r in tau_omega.fresnel(eps, theta))
    ref_h, ref_v = _fresnel_numpy(eps, theta)
    assert r_h == pytest.approx(ref_h, abs=2e-5)
    assert r_v == pytest.approx(ref_v, abs=2e-5)
    assert 0.0 <= r_v <= r_h + 1e-6 <= 1.0 + 1e-6


def test_q_mixing_and_roughness_damping():
    r_h, r_v = jnp.float32(0.4), jnp.float32(0.2)
    h_, v_ = tau_omega.rough_reflectivity(r_h, r_v, 0.0, 0.5, 2.0, THETA_SMAP)
    assert float(h_) == pytest.approx(0.3) and float(v_) == pytest.approx(0.3)
    h_, v_ = tau_omega.rough_reflectivity(r_h, r_v, 0.16, 0.0, 2.0, THETA_SMAP)
    damp = math.exp(-0.16 * math.cos(THETA_SMAP) ** 2)
    assert float(h_) == pytest.approx(0.4 * damp, rel=1e-6)
    assert float(v_) == pytest.approx(0.2 * damp, rel=1e-6)


def test_tau_omega_limits():
    e = jnp.float32(0.8)
    # Bare soil: TB = T_s e.
    assert float(tau_omega.tb_tau_omega(e, 0.0, 0.05, 290.0, 300.0, THETA_SMAP)) == pytest.approx(
        290.0 * 0.8, rel=1e-6
    )
    # Opaque canopy: TB → T_c (1 − ω).
    assert float(tau_omega.tb_tau_omega(e, 50.0, 0.07, 290.0, 300.0, THETA_SMAP)) == pytest.approx(
        300.0 * 0.93, rel=1e-5
    )
    # ω = 0 and one temperature: TB/T = 1 − r γ² (closed form of the two-stream sum).
    tau = jnp.float32(0.4)
    gamma = math.exp(-0.4 / math.cos(THETA_SMAP))
    tb = float(tau_omega.tb_tau_omega(e, tau, 0.0, 280.0, 280.0, THETA_SMAP))
    assert tb == pytest.approx(280.0 * (1.0 - 0.2 * gamma**2), rel=1e-6)


def test_tb_is_bounded_and_decreases_with_soil_moisture():
    sm = jnp.linspace(0.02, 0.5, 25)[:, None]
    tau = jnp.array([0.0, 0.1, 0.3, 0.6, 1.0])[None, :]
    eps = dielectric.mironov(1.41, sm, 0.2)
    tb_h, tb_v = tau_omega.tb_hv(eps, tau, 0.05, 0.13, 0.0, 2.0, 295.0, 295.0, THETA_SMAP)
    tb_h, tb_v = np.asarray(tb_h), np.asarray(tb_v)
    for tb in (tb_h, tb_v):
        assert np.all((tb > 0.0) & (tb <= 295.0))
        assert np.all(np.diff(tb, axis=0) < 0)
    assert np.all(tb_v >= tb_h)
    # Sensitivity falls as the canopy thickens (VOD masks the soil).
    sens = tb_h[0] - tb_h[-1]
    assert np.all(np.diff(sens) < 0)
    # Bare saturated soil at L-band, H-pol, 40°: ~120-200 K; dry soil ~250-285 K.
    assert 120.0 < tb_h[-1, 0] < 210.0 and 250.0 < tb_h[0, 0] < 285.0


def test_gradients_are_finite_and_signed():
    def tb_h(params):
        sm, tau, omega, h = params
        eps = dielectric.mironov(1.41, sm, 0.2)
        return tau_omega.tb_hv(eps, tau, omega, h, 0.0, 2.0, 290.0, 290.0, THETA_SMAP)[0]

    g = np.asarray(jax.grad(tb_h)(jnp.array([0.25, 0.3, 0.05, 0.12])))
    assert np.all(np.isfinite(g))
    assert g[0] < 0  # wetter → colder
    assert g[1] > 0  # more vegetation → warmer (over wet soil)
    assert g[2] < 0  # more scattering → colder
    assert g[3] > 0  # rougher → warmer


def test_jit_and_vmap_agree_with_eager():
    eps = dielectric.mironov(1.41, jnp.linspace(0.05, 0.45, 6), 0.25)
    args = (0.2, 0.05, 0.1, 0.0, 2.0, 290.0, 288.0, THETA_SMAP)
    eager = tau_omega.tb_hv(eps, *args)
    jitted = jax.jit(tau_omega.tb_hv)(eps, *args)
    mapped = jax.vmap(lambda e: tau_omega.tb_hv(e, *args))(eps)
    for a, b, c in zip(eager, jitted, mapped, strict=True):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-6)
