"""Multi-channel collaborative soil-moisture / VOD retrieval from L-band TBv, TBh (pure JAX).

Formulation (docs/soil-moisture.md has the full rationale).  Under the tau-omega model with one
effective temperature T (T_soil = T_canopy), every channel is ``TB_p = T · E_p(SM, τ)``, where
``E_p`` is the emissivity of the soil–canopy system (:func:`models.tau_omega.canopy_emissivity`).
Following the MCCA idea (docs/science.md §3.1: predict the collaborative channel from the core
channel through the channel relation), the per-pass residuals are

* **collaborative** (T-free): ``r_col = TB_col,obs − TB_core,obs · E_col / E_core``  [K]
  — the ratio ``E_col / E_core`` does not depend on T, so errors in T do not enter it;
* **core** (absolute anchor): ``r_core = TB_core,obs − T · E_core``  [K] with T from ancillary
  data (needed because one ratio cannot separate SM from VOD);

plus weak Gaussian priors on VOD (per land cover) and SM, and an optional coupling of the AM and
PM VOD of the same day (vegetation water does not change in 12 h; it makes the 4-observation,
4-unknown problem over-determined and stable).  A fully T-free retrieval is not possible per day:
with the same SM and VOD in both passes the AM and PM ratios carry the same information, so the
ratio alone cannot separate SM from VOD (a multi-day window with constant VOD would be needed).

The cost is minimised per pixel by a projected Levenberg–Marquardt iteration with a fixed number
of steps (``lax.fori_loop``, jit-friendly, batched with ``vmap``), started from the best point of
a coarse (SM, VOD) grid.  Bounds: SM ∈ [0.02, 0.6] m3 m-3, VOD ∈ [0, 2] by default.  A pixel is
*converged* when the final projected Gauss–Newton step is below ``step_tol`` and the RMS of the
observation residuals is below ``max_residual_k``.

Arrays: every per-pixel input is ``[batch, pass]`` float32 (``pass`` = 2: AM, PM; a missing pass
is NaN).  Outputs are ``[batch, pass]`` float32.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from models import dielectric, tau_omega

__all__ = ["DIELECTRIC_MODELS", "RetrievalConfig", "correct_open_water", "forward_tb",
           "forward_tb_with_settings", "retrieve",
           "retrieve_batch", "retrieve_with_settings"]


def _mironov(freq_ghz, sm, clay, sand, bulk_density, t_k):
    return dielectric.mironov(freq_ghz, sm, clay)


def _dobson(freq_ghz, sm, clay, sand, bulk_density, t_k):
    return dielectric.dobson(freq_ghz, sm, sand, clay, bulk_density=bulk_density, t_k=t_k)


# name → permittivity(freq_ghz, sm, clay, sand, bulk_density, t_k)
DIELECTRIC_MODELS = {"mironov": _mironov, "dobson": _dobson}


@dataclasses.dataclass(frozen=True)
class RetrievalConfig:
    """Static settings of the retrieval (hashable: a jit static argument).

    Attributes:
      freq_ghz: Channel frequency [GHz].
      incidence_deg: Earth incidence angle [deg].
      dielectric: Assumed dielectric model, a key of :data:`DIELECTRIC_MODELS`.
      core_pol: Core channel polarisation, ``"V"`` (default: less sensitive to roughness and
        closer to T, so T errors matter least) or ``"H"``; the other one is collaborative.
      q, n: Roughness polarisation mixing and angular exponent (SMAP: 0 and 2).
      sm_min, sm_max: Soil-moisture bounds [m3 m-3].
      vod_min, vod_max: VOD bounds [1].
      sigma_core_k: Expected core-channel misfit (T error + noise) [K].
      sigma_col_k: Expected collaborative-channel misfit (noise) [K].
      sm_prior, sigma_sm_prior: Weak SM prior [m3 m-3].
      sigma_vod_prior: Width of the VOD prior around the per-pixel prior value [1].
      sigma_vod_pass: Width of the AM−PM VOD coupling [1]; ``math.inf`` = independent passes.
      vod_pol_ratio: Assumed τ_V / τ_H (1 = polarisation-independent canopy, as SMAP L2).
      n_iter: Levenberg–Marquardt iterations.
      n_grid_sm, n_grid_vod: Size of the initialisation grid.
      step_tol: Convergence tolerance on the final Gauss–Newton step (SM and VOD units).
      max_residual_k: Largest RMS observation residual of a converged pixel [K].
      water_correction: Remove the open-water fraction's emission before retrieving (needs T).
      max_water_fraction: Water fractions above this are not corrected (the pixel is masked
        by the product's QC anyway).
    """

    freq_ghz: float = 1.41
    incidence_deg: float = 40.0
    dielectric: str = "mironov"
    core_pol: str = "V"
    q: float = 0.0
    n: float = 2.0
    sm_min: float = 0.02
    sm_max: float = 0.6
    vod_min: float = 0.0
    vod_max: float = 2.0
    sigma_core_k: float = 2.0
    sigma_col_k: float = 1.0
    sm_prior: float = 0.2
    sigma_sm_prior: float = 2.0
    sigma_vod_prior: float = 2.0
    sigma_vod_pass: float = 0.05
    vod_pol_ratio: float = 1.0
    n_iter: int = 25
    n_grid_sm: int = 15
    n_grid_vod: int = 11
    step_tol: float = 2e-3
    max_residual_k: float = 5.0
    water_correction: bool = True
    max_water_fraction: float = 0.5

    def __post_init__(self):
        if self.dielectric not in DIELECTRIC_MODELS:
            raise ValueError(
                f"dielectric {self.dielectric!r} not in {sorted(DIELECTRIC_MODELS)}"
            )
        if self.core_pol not in ("V", "H"):
            raise ValueError(f"core_pol {self.core_pol!r} must be 'V' or 'H'")
        if not (0.0 < self.sm_min < self.sm_max and 0.0 <= self.vod_min < self.vod_max):
            raise ValueError("bounds must satisfy 0 < sm_min < sm_max and 0 <= vod_min < vod_max")


def forward_tb(sm, vod, t_k, clay, sand, bulk_density, h, omega, config: RetrievalConfig,
               pol_ratio=None, *, soil_t_k=None):
    """Forward model used by the retrieval: (TB_h, TB_v) [K], T_soil = T_canopy = ``t_k``.

    Args:
      sm: Soil moisture [m3 m-3]; vod: nadir VOD (τ_H) [1]; t_k: effective temperature [K];
      clay, sand: mass fractions [0–1]; bulk_density [g cm-3]; h, omega: roughness and albedo [1].
      All broadcastable.
      config: Retrieval settings (dielectric model, frequency, incidence, Q, N).
      pol_ratio: Per-pixel τ_V / τ_H (broadcastable), or None for ``config.vod_pol_ratio``.
      soil_t_k: The soil temperature the permittivity is evaluated at [K] (Dobson's free-water
        term depends on it), or None for ``t_k``.  Emissivities are ``forward_tb`` with
        ``t_k = 1`` and the physical temperature here.

    Returns:
      (tb_h, tb_v) [K], float32, broadcast shape.
    """
    eps = DIELECTRIC_MODELS[config.dielectric](config.freq_ghz, sm, clay, sand, bulk_density,
                                               t_k if soil_t_k is None else soil_t_k)
    theta = math.radians(config.incidence_deg)
    e_h, e_v = tau_omega.emissivity_hv(eps, h, config.q, config.n, theta)
    tb_h = tau_omega.tb_tau_omega(e_h, vod, omega, t_k, t_k, theta)
    ratio = config.vod_pol_ratio if pol_ratio is None else pol_ratio
    tb_v = tau_omega.tb_tau_omega(e_v, vod * ratio, omega, t_k, t_k, theta)
    return tb_h, tb_v


def correct_open_water(tb_v, tb_h, t_k, water_fraction, config: RetrievalConfig):
    """Land-only TB of a pixel partly covered by open water: (TB − f_w TB_water) / (1 − f_w).

    The water emission is a smooth fresh-water surface (Klein & Swift permittivity, Fresnel) at
    the effective temperature, as in the SMAP L2 water-body correction.

    Args:
      tb_v, tb_h: Observed TB [K]; t_k: water temperature [K] (≥ 273.15 used);
      water_fraction: open-water fraction [0–1] (NaN or > ``max_water_fraction``: no change).
      config: Frequency and incidence.

    Returns:
      (tb_v, tb_h) of the land part [K], float32.
    """
    fw = jnp.where(jnp.isfinite(water_fraction), water_fraction, 0.0)
    fw = jnp.where(fw > config.max_water_fraction, 0.0, jnp.clip(fw, 0.0, 1.0))
    eps_w = dielectric.water(config.freq_ghz, jnp.maximum(t_k, 273.15))
    r_h, r_v = tau_omega.fresnel(eps_w, math.radians(config.incidence_deg))
    tbw_v, tbw_h = t_k * (1.0 - r_v), t_k * (1.0 - r_h)
    return (tb_v - fw * tbw_v) / (1.0 - fw), (tb_h - fw * tbw_h) / (1.0 - fw)


def _emissivities(sm, vod, pixel, config):
    """(E_core, E_col) of the soil–canopy system for [pass]-shaped sm, vod."""
    # TB at unit temperature; the permittivity at the pass's own temperature (Dobson needs it:
    # at "1 K" its free-water term is NaN and no pixel converged)
    e_h, e_v = forward_tb(sm, vod, 1.0, pixel["clay"], pixel["sand"], pixel["bulk_density"],
                          pixel["h"], pixel["omega"], config, pixel["pol_ratio"],
                          soil_t_k=pixel["t_k"])
    return (e_v, e_h) if config.core_pol == "V" else (e_h, e_v)


def _residuals(x, pixel, config):
    """Normalised residual vector of one pixel for x = [sm_am, sm_pm, vod_am, vod_pm]."""
    sm, vod = x[:2], x[2:]
    e_core, e_col = _emissivities(sm, vod, pixel, config)
    obs = pixel["obs_valid"]
    core_w = obs * pixel["t_valid"]
    r_core = core_w * (pixel["tb_core"] - pixel["t_k"] * e_core) / config.sigma_core_k
    r_col = obs * (pixel["tb_col"] - pixel["tb_core"] * e_col / e_core) / config.sigma_col_k
    both = obs[0] * obs[1]
    r = [
        r_core,
        r_col,
        (vod - pixel["vod_prior"]) / config.sigma_vod_prior,
        (sm - config.sm_prior) / config.sigma_sm_prior,
    ]
    if not math.isinf(config.sigma_vod_pass):
        r.append(jnp.reshape(both * (vod[0] - vod[1]) / config.sigma_vod_pass, (1,)))
    return jnp.concatenate(r)


def _obs_rms_k(x, pixel, config):
    """RMS of the unnormalised observation residuals over valid passes [K]."""
    sm, vod = x[:2], x[2:]
    e_core, e_col = _emissivities(sm, vod, pixel, config)
    obs = pixel["obs_valid"]
    core_w = obs * pixel["t_valid"]
    r_core = core_w * (pixel["tb_core"] - pixel["t_k"] * e_core)
    r_col = obs * (pixel["tb_col"] - pixel["tb_core"] * e_col / e_core)
    n = jnp.maximum(jnp.sum(core_w) + jnp.sum(obs), 1.0)
    return jnp.sqrt((jnp.sum(r_core**2) + jnp.sum(r_col**2)) / n)


def _initial_guess(pixel, config):
    """Best [sm, vod] per pass on a coarse grid (observation terms + VOD prior)."""
    sm_g = jnp.linspace(config.sm_min, config.sm_max, config.n_grid_sm)[:, None, None]
    vod_g = jnp.linspace(config.vod_min, min(config.vod_max, 1.5), config.n_grid_vod)
    vod_g = vod_g[None, :, None]
    e_core, e_col = _emissivities(sm_g, vod_g, pixel, config)  # [grid_sm, grid_vod, pass]
    core_w = pixel["t_valid"]
    cost = (core_w * (pixel["tb_core"] - pixel["t_k"] * e_core) / config.sigma_core_k) ** 2
    cost = cost + ((pixel["tb_col"] - pixel["tb_core"] * e_col / e_core) / config.sigma_col_k) ** 2
    cost = cost + ((vod_g - pixel["vod_prior"]) / config.sigma_vod_prior) ** 2
    flat = jnp.reshape(cost, (-1, cost.shape[-1]))
    best = jnp.argmin(flat, axis=0)
    sm0 = jnp.ravel(jnp.broadcast_to(sm_g, cost.shape[:2] + (1,)))[best]
    vod0 = jnp.ravel(jnp.broadcast_to(vod_g, cost.shape[:2] + (1,)))[best]
    return jnp.concatenate([sm0, vod0])


def _solve_pixel(pixel, config):
    lo = jnp.array([config.sm_min] * 2 + [config.vod_min] * 2, jnp.float32)
    hi = jnp.array([config.sm_max] * 2 + [config.vod_max] * 2, jnp.float32)

    def cost(x):
        r = _residuals(x, pixel, config)
        return jnp.sum(r * r)

    def body(_, state):
        x, c, mu, _ = state
        r, jvp_fn = jax.linearize(lambda z: _residuals(z, pixel, config), x)
        jac = jax.vmap(jvp_fn, out_axes=1)(jnp.eye(4, dtype=x.dtype))
        jtj = jac.T @ jac
        a = jtj + mu * jnp.diag(jnp.diag(jtj)) + 1e-9 * jnp.eye(4)
        x_new = jnp.clip(x - jnp.linalg.solve(a, jac.T @ r), lo, hi)
        c_new = cost(x_new)
        better = c_new < c
        return (
            jnp.where(better, x_new, x),
            jnp.where(better, c_new, c),
            jnp.where(better, mu * 0.3, mu * 4.0),
            jnp.max(jnp.abs(x_new - x)),
        )

    x0 = jnp.clip(_initial_guess(pixel, config), lo, hi)
    init = (x0, cost(x0), jnp.float32(1e-2), jnp.float32(jnp.inf))
    x, _, _, step = jax.lax.fori_loop(0, config.n_iter, body, init)
    # The last candidate step is tiny only at a (projected) stationary point: away from one,
    # LM with any damping proposes a finite step.
    rms_k = _obs_rms_k(x, pixel, config)
    converged = (step < config.step_tol) & (rms_k < config.max_residual_k)
    return x, converged, rms_k


def retrieve(tb_v, tb_h, t_k, clay, sand, bulk_density, h, omega, vod_prior,
             water_fraction=None, pol_ratio=None, *, config: RetrievalConfig):
    """Retrieve SM and VOD for a batch of pixels with AM and PM passes.

    Args:
      tb_v, tb_h: Observed brightness temperatures [K], [batch, 2] (AM, PM); NaN = missing.
      t_k: Effective (surface) temperature [K], [batch, 2]; NaN: no retrieval for that pass.
      clay, sand: Soil mass fractions [0–1], [batch, 2] (constant along pass).
      bulk_density: Dry bulk density [g cm-3], [batch, 2].
      h, omega: Roughness and single-scattering albedo assumed by the retrieval [1], [batch, 2].
      vod_prior: Prior VOD [1], [batch, 2].
      water_fraction: Open-water fraction [0–1], [batch, 2], or None (no water correction).
      pol_ratio: τ_V / τ_H per pixel [1], [batch, 2], or None (``config.vod_pol_ratio``);
        NaN entries also fall back to ``config.vod_pol_ratio``.
      config: Static retrieval settings.

    Returns:
      (sm [m3 m-3], vod [1], converged (1.0/0.0), rms_residual [K]), each [batch, 2] float32;
      sm, vod and rms are NaN and converged 0 for passes without valid TB or T.
    """
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    tb_v, tb_h, t_k = f32(tb_v), f32(tb_h), f32(t_k)
    obs_valid = jnp.isfinite(tb_v) & jnp.isfinite(tb_h) & (tb_v > 0) & (tb_h > 0)
    t_valid = jnp.isfinite(t_k) & (t_k > 0)
    obs_valid = obs_valid & t_valid  # without T the pass cannot be retrieved (see module doc)
    if water_fraction is not None and config.water_correction:
        cv, ch = correct_open_water(tb_v, tb_h, jnp.where(t_valid, t_k, 290.0),
                                    f32(water_fraction), config)
        tb_v, tb_h = jnp.where(t_valid, cv, tb_v), jnp.where(t_valid, ch, tb_h)
    safe_v = jnp.where(obs_valid, tb_v, 250.0)
    safe_h = jnp.where(obs_valid, tb_h, 240.0)
    tb_core, tb_col = (safe_v, safe_h) if config.core_pol == "V" else (safe_h, safe_v)

    def clean(a, fill):
        a = f32(a)
        return jnp.where(jnp.isfinite(a), a, fill)

    pixel = {
        "tb_core": tb_core,
        "tb_col": tb_col,
        "t_k": jnp.where(t_valid, t_k, 290.0),
        "obs_valid": obs_valid.astype(jnp.float32),
        "t_valid": t_valid.astype(jnp.float32),
        "clay": clean(clay, 0.2),
        "sand": clean(sand, 0.4),
        "bulk_density": clean(bulk_density, 1.4),
        "h": clean(h, 0.12),
        "omega": clean(omega, 0.05),
        "vod_prior": clean(vod_prior, 0.2),
        "pol_ratio": (jnp.full(obs_valid.shape, config.vod_pol_ratio, jnp.float32)
                      if pol_ratio is None else clean(pol_ratio, config.vod_pol_ratio)),
    }
    x, converged, rms = jax.vmap(lambda p: _solve_pixel(p, config))(pixel)
    rms = jnp.broadcast_to(rms[:, None], obs_valid.shape)
    conv = jnp.broadcast_to(converged[:, None], obs_valid.shape) & obs_valid
    nan = jnp.float32(jnp.nan)
    return (
        jnp.where(obs_valid, x[:, :2], nan),
        jnp.where(obs_valid, x[:, 2:], nan),
        conv.astype(jnp.float32),
        jnp.where(obs_valid, rms, nan),
    )


retrieve_batch = jax.jit(retrieve, static_argnames=("config",))


def retrieve_with_settings(tb_v, tb_h, t_k, water_fraction, clay, sand, bulk_density, h, omega,
                           vod_prior, pol_ratio=None, *, config: tuple):
    """:func:`retrieve` with settings given as a hashable tuple of ``(field, value)`` pairs.

    The kernel entry point used by ``pipeline.apply.apply_array_kernel``
    (``"models.retrieval:retrieve_with_settings"``), so that callers outside ``models`` need not
    import :class:`RetrievalConfig`.  Unknown fields raise ``TypeError``.
    """
    cfg = RetrievalConfig(**dict(config))
    return retrieve(tb_v, tb_h, t_k, clay, sand, bulk_density, h, omega, vod_prior,
                    water_fraction, pol_ratio, config=cfg)


def forward_tb_with_settings(sm, vod, t_k, clay, sand, bulk_density, h, omega, pol_ratio=None, *,
                             config: tuple):
    """:func:`forward_tb` with settings as a ``(field, value)`` tuple (kernel entry point).

    Returns:
      (tb_h, tb_v) [K], float32, broadcast shape of the inputs.
    """
    cfg = RetrievalConfig(**dict(config))
    return forward_tb(sm, vod, t_k, clay, sand, bulk_density, h, omega, cfg, pol_ratio)
