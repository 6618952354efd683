"""models.l4c (TCF) against pyl4c's TCF, an independent numpy loop and hand-computed numbers."""

from __future__ import annotations

import datetime as dt

import jax
import numpy as np
import pytest

from models import l4c
from pipeline.io import bplut as bplut_io

PFTS = np.array([1, 3, 5, 6])  # ENF, DNF, SHR, GRS: the Arctic/boreal classes


@pytest.fixture(scope="module")
def table(real_data_dir_or_skip):
    return bplut_io.read_bplut(real_data_dir_or_skip / "pyl4c_bplut" / "SMAP_BPLUT_2020-07-31.csv")


@pytest.fixture(scope="module")
def real_data_dir_or_skip():
    from tests.fixtures.common import real_data_dir

    d = real_data_dir()
    if not (d / "pyl4c_bplut").is_dir():
        pytest.skip(f"real BPLUT not found under {d}")
    return d


def _drivers(n_days=730, seed=0, dtype=np.float64):
    """Boreal-like daily drivers for len(PFTS) sites, [N, T], in the units the model takes."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_days)
    season = -np.cos(2 * np.pi * (t - 15) / 365.0)  # -1 mid-Jan, +1 mid-July
    n = len(PFTS)
    tmin = 263.0 + 17.0 * season + rng.normal(0, 3, (n, n_days))
    sw = np.clip(150 + 120 * season + rng.normal(0, 30, (n, n_days)), 5, None)
    vpd = np.clip(400 + 500 * season + rng.normal(0, 200, (n, n_days)), 0, None)
    smrz = np.clip(40 + 10 * np.sin(2 * np.pi * t / 200.0) + rng.normal(0, 5, (n, n_days)), 5, 95)
    smsf = np.clip(smrz + rng.normal(0, 8, (n, n_days)), 2, 100)
    tsoil = 270.0 + 12.0 * season + rng.normal(0, 1.5, (n, n_days))
    fpar = np.clip(0.35 + 0.3 * season + rng.normal(0, 0.03, (n, n_days)), 0.05, 0.95)
    ft = (tsoil > 273.15).astype(dtype)
    par = l4c.par_from_shortwave(sw)
    return [np.asarray(a, dtype) for a in (fpar, par, tmin, vpd, smrz, ft, tsoil, smsf)]


def _dates(n_days, start=dt.date(2017, 1, 1)):
    return [start + dt.timedelta(days=i) for i in range(n_days)]


def test_bplut_reader_units_and_values(table):
    t = table.table
    # Values straight from the CSV row of ENF (pft 1) and SHR (pft 5).
    assert t["lue"][1] == pytest.approx(1.170236)
    assert t["cue"][1] == pytest.approx(1 - 0.311144)
    assert t["smrz1"][5] == pytest.approx(62.82235)  # percent, not a fraction
    assert t["smsf1"][1] == pytest.approx(25.0)
    assert t["tsoil"][3] == pytest.approx(237.811605)
    assert t["k_rec"][6] == pytest.approx(0.0093)
    assert np.isnan(t["lue"][0])
    assert table.attrs["release"].startswith("L4_C_SUBSYSTEM_OPS_v7")


def test_bplut_reader_refuses_fraction_table_declared_percent(real_data_dir_or_skip):
    from pipeline.errors import InputDataError

    text = (real_data_dir_or_skip / "pyl4c_bplut" / "SMAP_BPLUT_2020-07-31.csv").read_text()
    lines = text.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("# LC_index"))
    cols = [c.strip() for c in lines[head].lstrip("# ").split(",")]
    out = []
    for ln in lines:
        if ln.startswith("#") or not ln.strip():
            out.append(ln)
            continue
        f = ln.split(",")
        for c in ("SMrz_min", "SMrz_max", "SMtop_min", "SMtop_max"):
            f[cols.index(c)] = str(float(f[cols.index(c)]) / 100.0)
        out.append(",".join(f))
    frac = "\n".join(out)
    with pytest.raises(InputDataError, match="look like fractions"):
        bplut_io.parse_bplut(frac, "frac.csv")
    converted = bplut_io.parse_bplut(frac, "frac.csv", wetness_units="fraction")
    ref = bplut_io.parse_bplut(text, "pct.csv")
    np.testing.assert_allclose(converted.table["smrz1"][1:], ref.table["smrz1"][1:], rtol=1e-12)


def test_hand_computed_gpp_and_arrhenius(table):
    p = l4c.params_for_pft(table.table, np.array([1]), dtype=np.float64)
    # One ENF day: fPAR 0.5, SW 200 W m-2, Tmin 275 K, VPD 1000 Pa, thawed, SMRZ above the ramp.
    par = 0.45 * 0.0036 * 24 * 200.0
    f_tmin = (275.0 - 252.986263) / (282.334224 - 252.986263)
    f_vpd = 1 - (1000.0 - 0.0) / (3652.435995 - 0.0)
    want = 1.170236 * 0.5 * par * f_tmin * f_vpd * 1.0 * 1.0
    smrz = np.array([[10.0, 80.0]])  # min 10 -> day 2 rescales to 95 ln(78.78)/ln(101)+5 > 31
    d = l4c.Drivers(
        fpar=np.full((1, 2), 0.5), par=np.full((1, 2), par), tmin=np.full((1, 2), 275.0),
        vpd=np.full((1, 2), 1000.0), smrz=smrz, ft=np.ones((1, 2)), tsoil=np.full((1, 2), 280.0),
        smsf=np.full((1, 2), 50.0),
    )
    with jax.enable_x64(True):
        g = np.asarray(l4c.gpp(p, d))
        f20 = float(l4c.arrhenius(np.float64(293.15), 266.053672))
        f0 = float(l4c.arrhenius(np.float64(273.15), 266.053672))
    assert g[0, 1] == pytest.approx(want, rel=1e-12)
    # The driest day rescales to 95·ln(1)/ln(101) + 5 = 5 %, on the 0–31 % ramp: f_SMRZ = 5/31.
    assert g[0, 0] == pytest.approx(want * 5.0 / 31.0, rel=1e-12)
    # f_Tsoil is exactly 1 at the 20 °C reference temperature, exp(β0(1/66.02 − 1/46.02)) at 0 °C.
    assert f20 == pytest.approx(1.0, abs=1e-12)
    assert f0 == pytest.approx(np.exp(266.053672 * (1 / 66.02 - 1 / 46.02)), rel=1e-12)


def _numpy_tcf(tab, pfts, drivers, soc0, litter):
    """An independent plain-numpy loop over pixels and days written from science.md §2.2."""
    fpar, par, tmin, vpd, smrz, ft, tsoil, smsf = drivers
    n, t_len = fpar.shape
    gpp = np.zeros((n, t_len))
    rh = np.zeros((3, n, t_len))
    nee = np.zeros((n, t_len))
    soc = np.array(soc0, dtype=float).copy()

    def rmp(x, a, b):
        return 0.0 if x < a else (1.0 if x >= b else (x - a) / (b - a))

    for i, p in enumerate(pfts):
        q = {k: v[p] for k, v in tab.items()}
        lo = smrz[i].min()
        k = np.array([q["kopt"], q["kopt"] * q["k_str"], q["kopt"] * q["k_rec"]])
        for d in range(t_len):
            th = 100 * (min(max(smrz[i, d], lo), 100) - lo) / (100 - lo) + 1
            s = 95 * np.log(th) / np.log(101) + 5
            em = (rmp(tmin[i, d], q["tmin0"], q["tmin1"])
                  * (1 - rmp(vpd[i, d], q["vpd0"], q["vpd1"]))
                  * rmp(s, q["smrz0"], q["smrz1"]) * (q["ft0"] if ft[i, d] == 0 else 1.0))
            gpp[i, d] = q["lue"] * fpar[i, d] * par[i, d] * em
            ftsoil = min(1.0, np.exp(q["tsoil"] * (1 / 66.02 - 1 / (tsoil[i, d] - 227.13))))
            km = ftsoil * rmp(smsf[i, d], q["smsf0"], q["smsf1"])
            r = k * km * soc[:, i]
            soc[0, i] += litter[i] * q["f_met"] - r[0]
            soc[1, i] += litter[i] * (1 - q["f_met"]) - r[1]
            soc[2, i] += q["f_str"] * r[1] - r[2]
            r[1] *= 1 - q["f_str"]
            rh[:, i, d] = r
            nee[i, d] = (1 - q["cue"]) * gpp[i, d] + r.sum() - gpp[i, d]
    return gpp, rh, nee, soc


def _run_ours(tab, drivers, soc0, litter):
    p = l4c.params_for_pft(tab, PFTS, dtype=np.float64)
    with jax.enable_x64(True):
        f = l4c.run(p, l4c.Drivers(*drivers), np.asarray(soc0, np.float64),
                    np.asarray(litter, np.float64))
        return jax.tree.map(np.asarray, f)


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())


def test_forward_run_equals_independent_numpy_loop(table):
    drivers = _drivers(n_days=400)
    soc0 = np.array([[80.0, 60, 50, 40], [300, 250, 200, 150], [4000, 3500, 3000, 2500]])
    litter = np.array([0.9, 0.7, 0.4, 0.5])
    ours = _run_ours(table.table, drivers, soc0, litter)
    gpp, rh, nee, soc = _numpy_tcf(table.table, PFTS, drivers, soc0, litter)
    _close(ours.gpp, gpp)
    _close(ours.rh, rh)
    _close(ours.nee, nee)
    _close(ours.soc, soc)
    cue = table.table["cue"][PFTS][:, None]
    _close(ours.ra, (1 - cue) * gpp)
    # NEE = RA + RH_total − GPP (science.md §2.2)
    _close(ours.nee, ours.ra + ours.rh.sum(0) - ours.gpp)
    assert (ours.gpp > 0).any() and (ours.gpp[:, 0] == 0).all()  # frozen January has no GPP


def _pyl4c_params(tab):
    p = {k: np.asarray(tab[k], float) for k in
         ("lue", "tmin0", "tmin1", "vpd0", "vpd1", "smrz0", "smrz1", "ft0", "cue", "tsoil",
          "smsf0", "smsf1")}
    out = {("LUE" if k == "lue" else "CUE" if k == "cue" else k): v for k, v in p.items()}
    out["decay_rates"] = np.stack([tab["kopt"], tab["kopt"] * tab["k_str"],
                                   tab["kopt"] * tab["k_rec"]])
    out["f_metabolic"] = np.asarray(tab["f_met"], float)
    out["f_structural"] = np.asarray(tab["f_str"], float)
    return out


def test_forward_run_equals_pyl4c_tcf(table):
    core = pytest.importorskip("pyl4c.apps.l4c.core")
    science = pytest.importorskip("pyl4c.science")
    n_days = 730
    drivers = _drivers(n_days=n_days, seed=1)
    dates = _dates(n_days)
    soc0 = np.array([[80.0, 60, 50, 40], [300, 250, 200, 150], [4000, 3500, 3000, 2500]])
    tcf = core.TCF(_pyl4c_params(table.table), PFTS)
    with np.errstate(all="ignore"):
        nee_ref, gpp_ref, rh_ref = tcf.forward_run(drivers, soc0.copy(), dates, verbose=False)
    litter_ref = tcf.constants.litterfall / 365.0
    # Litterfall from our climatology equals pyl4c's climatology365 sum.
    ords = l4c.ordinals365([d.timetuple().tm_yday for d in dates], [d.year for d in dates])
    assert ords.tolist() == science.ordinals365(dates)
    cue = table.table["cue"][PFTS][:, None]
    with jax.enable_x64(True):
        npp = jax.numpy.asarray(cue * gpp_ref)
        litter = np.asarray(l4c.litterfall(npp, ords))
    _close(litter, np.ravel(litter_ref))
    ours = _run_ours(table.table, drivers, soc0, litter)
    _close(ours.gpp, gpp_ref)
    _close(ours.ra, (1 - cue) * gpp_ref)
    _close(ours.rh, rh_ref)
    _close(ours.nee, nee_ref)


def test_spin_up_reaches_steady_state(table):
    science = pytest.importorskip("pyl4c.science")
    drivers = _drivers(n_days=365, seed=2)
    p = l4c.params_for_pft(table.table, PFTS, dtype=np.float64)
    litter = np.array([0.9, 0.7, 0.4, 0.5])
    with jax.enable_x64(True):
        clim = l4c.Drivers(*drivers)
        km = np.asarray(l4c.k_mult(p, clim.tsoil, clim.smsf))
        analytic = np.asarray(l4c.soc_steady_state(p, km, litter))
        ref = science.soc_analytical_spinup(
            litter, km.T, p.f_met, p.f_str,
            np.stack([p.kopt, p.kopt * p.k_str, p.kopt * p.k_rec]))
        _close(analytic, np.stack(ref))
        soc, n, delta = l4c.spin_up(p, clim, litter, threshold=1.0)
        assert np.all(np.asarray(delta) < 1.0)
        # One more climatological year changes the annual NEE by less than 1 g C m-2 yr-1,
        # and the pools are at equilibrium: a year's emitted RH equals a year's litterfall.
        a = l4c.run(p, clim, soc, litter)
        b = l4c.run(p, clim, a.soc, litter)
        assert abs(float(np.nansum(b.nee) - np.nansum(a.nee))) < 4 * 1.0
        rh_year = np.asarray(b.rh).sum((0, 2))
        np.testing.assert_allclose(rh_year, 365 * litter, atol=2.0)
        assert int(n) >= 1
