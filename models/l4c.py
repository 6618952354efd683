"""The SMAP L4C Terrestrial Carbon Flux (TCF) model on arrays: GPP, RA, RH (3 SOC pools), NEE.

Pure JAX (jit-able, float32 by default, float64 when x64 is enabled and inputs are float64).
Follows science.md §2.2 and the reference implementation ``pyl4c.apps.l4c.core.TCF`` (v7.4.1):

* GPP = LUE · fPAR · PAR · f_Tmin · f_VPD · f_SMRZ · f_FT       [g C m-2 d-1]
* RA = (1 − CUE) · GPP, NPP = CUE · GPP
* RH_i = k_i · K_mult · C_i with K_mult = f_Tsoil · f_SMSF, k = kopt · (1, k_str, k_rec)
* dC_met = f_met·L − RH_met; dC_str = (1 − f_met)·L − RH_str; dC_rec = f_str·RH_str − RH_rec
* NEE = RA + RH_met + (1 − f_str)·RH_str + RH_rec − GPP   (> 0 is a source)

Axis order: every driver is ``[N, T]`` (N pixels or sites, T daily steps); per-pixel parameters
are ``[N]``; SOC state is ``[3, N]`` (metabolic, structural, recalcitrant) in g C m-2.

Units of the drivers: fPAR [0–1]; PAR [MJ m-2 d-1]; Tmin and Tsoil [K]; VPD [Pa]; SMRZ and SMSF
wetness [%] (percent of saturation, *not* fractions — see science.md §2.3); FT 0 frozen, 1 thawed.

One deliberate difference from pyl4c: f_Tsoil is 0 (not 1) where T_soil ≤ β2 = 227.13 K, the
pole of the Lloyd–Taylor form (pyl4c's formula overflows to 1 there); it never matters above
−46 °C.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "PARAM_NAMES",
    "PFT_NAMES",
    "Drivers",
    "Fluxes",
    "Params",
    "arrhenius",
    "e_mult",
    "gpp",
    "k_mult",
    "litterfall",
    "ordinals365",
    "par_from_shortwave",
    "params_for_pft",
    "ramp",
    "ramp_reversed",
    "rescale_smrz",
    "run",
    "soc_steady_state",
    "spin_up",
    "vpd_from_humidity",
]

PFT_NAMES = {1: "ENF", 2: "EBF", 3: "DNF", 4: "DBF", 5: "SHR", 6: "GRS", 7: "CCP", 8: "BCP"}
BETA1_K = 66.02  # 293.15 K − 227.13 K (reference temperature minus T0)
BETA2_K = 227.13  # T0 of the Lloyd–Taylor response
FREEZE_K = 273.15


class Params(NamedTuple):
    """Per-pixel TCF parameters, each ``[N]`` (or scalars).

    Attributes:
      lue: Maximum light-use efficiency [g C MJ-1].
      tmin0, tmin1: Tmin ramp [K] (0 at tmin0, 1 at tmin1).
      vpd0, vpd1: Reversed VPD ramp [Pa] (1 at vpd0, 0 at vpd1).
      smrz0, smrz1: Ramp on rescaled root-zone wetness [%].
      ft0: GPP multiplier on frozen days [1].
      cue: Carbon-use efficiency NPP/GPP [1] (BPLUT ``fraut`` = 1 − CUE).
      tsoil: β0 of the soil-temperature response [K].
      smsf0, smsf1: Ramp on surface wetness [%].
      kopt: Optimal decay rate of the metabolic pool [d-1].
      k_str, k_rec: Decay rates of the structural and recalcitrant pools relative to kopt [1].
      f_met: Fraction of litterfall entering the metabolic pool [1].
      f_str: Fraction of structural-pool decay humified into the recalcitrant pool [1].
    """

    lue: jax.Array
    tmin0: jax.Array
    tmin1: jax.Array
    vpd0: jax.Array
    vpd1: jax.Array
    smrz0: jax.Array
    smrz1: jax.Array
    ft0: jax.Array
    cue: jax.Array
    tsoil: jax.Array
    smsf0: jax.Array
    smsf1: jax.Array
    kopt: jax.Array
    k_str: jax.Array
    k_rec: jax.Array
    f_met: jax.Array
    f_str: jax.Array


PARAM_NAMES = Params._fields


class Drivers(NamedTuple):
    """Daily drivers, each ``[N, T]``; units in the module docstring. ``ft`` may be None."""

    fpar: jax.Array
    par: jax.Array
    tmin: jax.Array
    vpd: jax.Array
    smrz: jax.Array
    ft: jax.Array | None
    tsoil: jax.Array
    smsf: jax.Array


class Fluxes(NamedTuple):
    """Model output: fluxes ``[N, T]`` in g C m-2 d-1, ``rh`` ``[3, N, T]``, ``soc`` ``[3, N]``.

    ``rh`` holds the *emitted* RH per pool (the structural pool already × (1 − f_str));
    ``soc`` is the state after the last step; ``nee = ra + rh.sum(0) − gpp``.
    """

    gpp: jax.Array
    npp: jax.Array
    ra: jax.Array
    rh: jax.Array
    nee: jax.Array
    soc: jax.Array


def params_for_pft(table: dict[str, np.ndarray], pft: np.ndarray, dtype=np.float32) -> Params:
    """Per-pixel parameters from a PFT-indexed table.

    Args:
      table: Parameter name → array indexed by PFT code (index 0 unused; length ≥ 9).
      pft: PFT code per pixel, ``[N]`` int; codes outside 1–8 get NaN parameters.
      dtype: Output float dtype.

    Returns:
      :class:`Params` of ``[N]`` numpy arrays.
    """
    pft = np.asarray(pft).astype(np.int64)
    ok = (pft >= 1) & (pft <= 8)
    idx = np.where(ok, pft, 0)
    out = {}
    for name in PARAM_NAMES:
        col = np.asarray(table[name], np.float64)
        out[name] = np.where(ok, col[idx], np.nan).astype(dtype)
    return Params(**out)


# --- elementwise science ---------------------------------------------------------------------
def ramp(x, x0, x1):
    """Linear ramp: 0 below ``x0``, 1 at or above ``x1``, linear between (NaN stays NaN)."""
    return jnp.where(x >= x1, 1.0, jnp.where(x < x0, 0.0, (x - x0) / (x1 - x0)))


def ramp_reversed(x, x0, x1):
    """Reversed ramp: 1 below ``x0``, 0 at or above ``x1``, linear between."""
    return jnp.where(x >= x1, 0.0, jnp.where(x < x0, 1.0, 1.0 - (x - x0) / (x1 - x0)))


def par_from_shortwave(sw_wm2):
    """Daily PAR [MJ m-2 d-1] from daily-mean incoming shortwave [W m-2]: 0.45·SW·0.0036·24."""
    return 0.45 * (0.0036 * 24.0 * sw_wm2)


def vpd_from_humidity(qv2m, ps_pa, t2m_k):
    """VPD [Pa] from specific humidity [kg kg-1], surface pressure [Pa] and 2 m temperature [K]."""
    tc = t2m_k - FREEZE_K
    esat = 610.7 * jnp.exp(17.38 * tc / (239.0 + tc))
    return esat - qv2m * ps_pa / (0.622 + 0.378 * qv2m)


def rescale_smrz(smrz, smrz_min, smrz_max=100.0):
    """Rescale root-zone wetness [%]: θ̂ = 100(θ − θmin)/(θmax − θmin) + 1; 95·ln θ̂/ln 101 + 5.

    Args:
      smrz: Root-zone wetness [%], ``[N, T]``.
      smrz_min: Long-term minimum per pixel [%], ``[N]``.
      smrz_max: Upper limit [%] (100).
    """
    lo = jnp.asarray(smrz_min)[..., None]
    s = jnp.clip(smrz, lo, smrz_max)
    norm = 100.0 * (s - lo) / (smrz_max - lo) + 1.0
    return 95.0 * jnp.log(norm) / jnp.log(101.0) + 5.0


def arrhenius(tsoil_k, beta0, beta1=BETA1_K, beta2=BETA2_K):
    """Soil-temperature response min(1, exp[β0(1/β1 − 1/(T − β2))]) in [0, 1]; 0 for T ≤ β2."""
    d = tsoil_k - beta2
    safe = jnp.where(d > 0, d, 1.0)
    y = jnp.exp(beta0 * (1.0 / beta1 - 1.0 / safe))
    return jnp.where(d > 0, jnp.clip(y, 0.0, 1.0), jnp.where(jnp.isnan(d), jnp.nan, 0.0))


def _col(p):
    """A per-pixel parameter ``[N]`` as a column ``[N, 1]`` (scalars pass through)."""
    p = jnp.asarray(p)
    return p[..., None] if p.ndim >= 1 else p


def e_mult(params: Params, tmin, vpd, smrz_rescaled, ft):
    """GPP environmental multiplier f_Tmin · f_VPD · f_SMRZ · f_FT, ``[N, T]``.

    ``smrz_rescaled`` is the output of :func:`rescale_smrz`; ``ft`` is 0 frozen / 1 thawed
    (frozen only where exactly 0, as pyl4c).
    """
    f_ft = jnp.where(ft == 0, _col(params.ft0), 1.0)
    f_tmin = ramp(tmin, _col(params.tmin0), _col(params.tmin1))
    f_vpd = ramp_reversed(vpd, _col(params.vpd0), _col(params.vpd1))
    f_smrz = ramp(smrz_rescaled, _col(params.smrz0), _col(params.smrz1))
    return f_ft * f_tmin * f_vpd * f_smrz


def gpp(params: Params, drivers: Drivers, smrz_min=None):
    """Gross primary production [g C m-2 d-1], ``[N, T]``.

    Args:
      params: Per-pixel parameters ``[N]``.
      drivers: Daily drivers ``[N, T]``; ``ft`` None means frozen where Tmin < 273.15 K.
      smrz_min: Long-term minimum root-zone wetness [%], ``[N]``; default the minimum over T
        (as ``pyl4c`` ``TCF``).
    """
    ft = drivers.ft if drivers.ft is not None else jnp.where(drivers.tmin < FREEZE_K, 0, 1)
    if smrz_min is None:
        smrz_min = jnp.nanmin(drivers.smrz, axis=-1)
    smrz = rescale_smrz(drivers.smrz, smrz_min)
    emult = e_mult(params, drivers.tmin, drivers.vpd, smrz, ft)
    return drivers.par * drivers.fpar * emult * _col(params.lue)


def k_mult(params: Params, tsoil_k, smsf):
    """Decomposition multiplier f_Tsoil · f_SMSF in [0, 1], ``[N, T]``."""
    return arrhenius(tsoil_k, _col(params.tsoil)) * ramp(smsf, _col(params.smsf0),
                                                         _col(params.smsf1))


def _decay_rates(params: Params):
    kopt = jnp.asarray(params.kopt)
    return jnp.stack([kopt, kopt * params.k_str, kopt * params.k_rec])  # [3, N]


def ordinals365(doy: np.ndarray, year: np.ndarray) -> np.ndarray:
    """Day-of-year on 1–365 with leap days set to 0 (dropped), as ``pyl4c.science``.

    Args:
      doy: Day of year 1–366, ``[T]`` int. year: Calendar year, ``[T]`` int.
    """
    doy = np.asarray(doy, np.int64)
    leap = (np.asarray(year) % 4) == 0
    out = np.where(leap & (doy == 60), 0, doy)
    return np.where(leap & (doy > 60), doy - 1, out)


def litterfall(npp, ordinal):
    """Daily litterfall [g C m-2 d-1], ``[N]``: the mean annual NPP sum / 365.

    The annual sum is the sum over the 365 day-of-year climatology (mean NPP per day of year,
    ignoring NaN and leap days, ``ordinal`` 0); days of year without data are filled with the
    mean of the others (equals ``pyl4c`` whenever all 365 days are present).

    Args:
      npp: Net primary production [g C m-2 d-1], ``[N, T]``.
      ordinal: Day of year 1–365 (0 = ignore), ``[T]`` int (see :func:`ordinals365`).
    """
    onehot = (jnp.asarray(ordinal)[:, None] == jnp.arange(1, 366)[None, :])  # [T, 365]
    ok = jnp.isfinite(npp)
    s = jnp.where(ok, npp, 0.0) @ onehot.astype(npp.dtype)  # [N, 365]
    n = ok.astype(npp.dtype) @ onehot.astype(npp.dtype)
    clim = jnp.where(n > 0, s / jnp.where(n > 0, n, 1.0), jnp.nan)
    return jnp.nanmean(clim, axis=-1)


def _step_factory(params: Params, litter):
    rates = _decay_rates(params)  # [3, N]
    f_met = jnp.asarray(params.f_met)
    f_str = jnp.asarray(params.f_str)

    def step(soc, kmult_t):
        rh = rates * kmult_t[None, :] * soc  # [3, N]
        dc = jnp.stack([
            litter * f_met - rh[0],
            litter * (1.0 - f_met) - rh[1],
            f_str * rh[1] - rh[2],
        ])
        soc = soc + jnp.where(jnp.isnan(dc), 0.0, dc)
        emitted = rh.at[1].multiply(1.0 - f_str)
        return soc, emitted

    return step


@jax.jit
def run(params: Params, drivers: Drivers, soc0, litter, smrz_min=None) -> Fluxes:
    """Run the TCF model forward over T daily steps.

    Args:
      params: Per-pixel parameters ``[N]``.
      drivers: Daily drivers ``[N, T]``.
      soc0: Initial SOC ``[3, N]`` [g C m-2].
      litter: Daily litterfall ``[N]`` [g C m-2 d-1] (see :func:`litterfall`).
      smrz_min: Long-term minimum root-zone wetness per pixel [%] ``[N]`` (default min over T).

    Returns:
      :class:`Fluxes`.
    """
    g = gpp(params, drivers, smrz_min)
    cue = _col(params.cue)
    npp = cue * g
    km = k_mult(params, drivers.tsoil, drivers.smsf)  # [N, T]
    soc, rh = jax.lax.scan(_step_factory(params, litter), jnp.asarray(soc0, g.dtype), km.T)
    rh = jnp.moveaxis(rh, 0, -1)  # [T, 3, N] -> [3, N, T]
    nee = rh.sum(axis=0) - npp
    return Fluxes(gpp=g, npp=npp, ra=g - npp, rh=rh, nee=nee, soc=soc)


def soc_steady_state(params: Params, kmult_clim, litter):
    """Analytical steady-state SOC ``[3, N]`` for a 365-day K_mult climatology ``[N, 365]``.

    C_met = f_met·ΣL / (k_met ΣK), C_str = (1 − f_met)·ΣL / (k_str ΣK), C_rec = f_str k_str
    C_str / k_rec, with ΣL = 365·litter (``pyl4c.science.soc_analytical_spinup``); 0 where
    undefined.
    """
    rates = _decay_rates(params)
    ksum = jnp.nansum(kmult_clim, axis=-1)
    annual = litter * 365.0
    c0 = params.f_met * annual / (rates[0] * ksum)
    c1 = (1.0 - params.f_met) * annual / (rates[1] * ksum)
    c2 = params.f_str * rates[1] * c1 / rates[2]
    out = jnp.stack([c0, c1, c2])
    return jnp.where(jnp.isfinite(out), out, 0.0)


def spin_up(params: Params, clim: Drivers, litter, soc0=None, *, threshold=1.0,
            max_cycles=2000, smrz_min=None):
    """Cycle a 365-day climatology until every |Δ annual NEE| < ``threshold`` [g C m-2 yr-1].

    Starts from the analytical steady state unless ``soc0`` is given (then converges in a few
    cycles instead of hundreds).

    Args:
      params: Per-pixel parameters ``[N]``.
      clim: Climatological drivers ``[N, 365]``.
      litter: Daily litterfall ``[N]``.
      soc0: Optional initial SOC ``[3, N]``.
      threshold: Convergence threshold on the change of annual NEE sums [g C m-2 yr-1].
      max_cycles: Upper bound on the number of cycles.
      smrz_min: As in :func:`run`.

    Returns:
      ``(soc, n_cycles, delta)``: the spun-up SOC ``[3, N]``, the number of cycles run, and the
      last |Δ annual NEE| ``[N]`` (pixels with NaN NEE count as converged).
    """
    km = k_mult(params, clim.tsoil, clim.smsf)
    if soc0 is None:
        soc0 = soc_steady_state(params, km, litter)
    return _spin(params, clim, jnp.asarray(litter), jnp.asarray(soc0), threshold, max_cycles,
                 smrz_min)


@jax.jit
def _spin(params, clim, litter, soc0, threshold, max_cycles, smrz_min):
    # Each pixel stops at its own first cycle with |Δ annual NEE| < threshold, so a pixel's
    # result does not depend on which other pixels share its batch (chunk invariance).
    def annual(soc):
        f = run(params, clim, soc, litter, smrz_min)
        return f.soc, jnp.nansum(f.nee, axis=-1)

    soc1, nee1 = annual(soc0)
    inf = jnp.full_like(nee1, jnp.inf)
    done0 = jnp.isnan(nee1) | ~jnp.all(jnp.isfinite(soc1), axis=0)

    def cond(state):
        *_, done, i = state
        return (i < max_cycles) & ~jnp.all(done)

    def body(state):
        soc, nee_last, delta, done, i = state
        soc_new, nee = annual(soc)
        d = jnp.abs(nee - nee_last)
        soc = jnp.where(done[None, :], soc, soc_new)
        delta = jnp.where(done, delta, d)
        nee_last = jnp.where(done, nee_last, nee)
        done = done | (d < threshold)
        return soc, nee_last, delta, done, i + 1

    soc, _, delta, _, n = jax.lax.while_loop(
        cond, body, (soc1, nee1, inf, done0, jnp.asarray(1)))
    return soc, n, delta
