"""Carbon-flux stages: TCF drivers from towers/truth, tower matching, evaluation, seasons, budgets.

Pure ``Dataset -> Dataset`` functions (numpy or dask backed, nothing computed here).  The TCF
model itself runs through :mod:`pipeline.graphs.carbon`; this module prepares its drivers and
scores its output (or the SPL4CMDL product) against eddy-covariance towers (science.md §2.6).

Conventions: fluxes in g C m-2 d-1, NEE > 0 a source, RECO = NEE + GPP.  The bias is
model − tower (``pipeline.metrics`` order).  Both unbiased RMSDs are reported, labelled:
``ubrmsd`` (means removed, pytesmo) and ``ubrmsd_detrended`` (pyl4c ``report_fit_stats``).
The target is pooled daily NEE ubRMSE ≤ :data:`NEE_UBRMSE_TARGET` g C m-2 d-1.

Assumptions that are choices, not facts (documented in docs/carbon.md and overridable):

* fPAR (:func:`fpar_climatology`): neither the simulator nor the towers provide fPAR; we use a
  PFT-specific seasonal climatology driven by thermal phenology: fPAR = min + (max − min) ·
  ramp(15-day trailing mean air temperature, 0 → 10 °C), with per-PFT min/max in
  :data:`FPAR_RANGE`.
* Soil temperature at towers without ``ts``: the 5-day trailing mean air temperature.
* Freeze/thaw when no FT product is given: frozen when Tmin < 273.15 K (pyl4c's default).
* Root-zone / surface wetness without soil moisture: 100 % (no moisture limitation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from pipeline import dims, grid, metrics

__all__ = [
    "FPAR_RANGE",
    "NEE_UBRMSE_TARGET",
    "SEASONS",
    "budgets",
    "evaluate",
    "fpar_climatology",
    "group_metrics",
    "match_towers",
    "mean_seasonal_cycle",
    "qc_filter",
    "residual_moisture_correlation",
    "season_labels",
    "tcf_drivers",
]

NEE_UBRMSE_TARGET = 1.6  # g C m-2 d-1, SMAP L4C daily NEE accuracy target (science.md §2.5)
FLUX_VARS = ("nee", "gpp", "reco")
FLUX_UNITS = "g C m-2 d-1"
SEASONS = {0: "cold", 1: "shoulder", 2: "growing"}
PFT_LABELS = {1: "ENF", 2: "EBF", 3: "DNF", 4: "DBF", 5: "SHR", 6: "GRS", 7: "CCP", 8: "BCP"}
# (min, max) fPAR per PFT for the thermal-phenology climatology: an assumption (docs/carbon.md).
FPAR_RANGE = {1: (0.35, 0.75), 2: (0.80, 0.90), 3: (0.05, 0.65), 4: (0.05, 0.80),
              5: (0.05, 0.45), 6: (0.05, 0.50), 7: (0.05, 0.70), 8: (0.05, 0.70)}
FREEZE_K = 273.15


def _ramp(x, x0, x1):
    return ((x - x0) / (x1 - x0)).clip(0.0, 1.0)


def _trailing_mean(da: xr.DataArray, days: int) -> xr.DataArray:
    """Mean of the valid values in the trailing ``days`` window (NaN where none), by cumulative
    sums: on dask, xarray's ``rolling`` splits the space chunks to bound its window copies (one
    row per chunk at a 15-day window), which multiplied the TCF kernel's tasks by the chunk
    height.  Equal to ``rolling(time=days, min_periods=1).mean()`` (tested)."""
    ok = da.notnull()
    c = da.where(ok, 0.0).astype(np.float64).cumsum(dims.TIME)
    k = ok.astype(np.int64).cumsum(dims.TIME)
    s = c - c.shift({dims.TIME: days}, fill_value=0.0)
    n = k - k.shift({dims.TIME: days}, fill_value=0)
    return (s / n.where(n > 0)).astype(da.dtype).transpose(*da.dims)


def _per_pft(pft: xr.DataArray, table: Mapping[int, float]) -> xr.DataArray:
    out = xr.zeros_like(pft, dtype=np.float32) * np.nan
    for code, value in table.items():
        out = xr.where(pft == code, np.float32(value), out)
    return out


def fpar_climatology(ta_k: xr.DataArray, pft: xr.DataArray,
                     fpar_range: Mapping[int, tuple[float, float]] = FPAR_RANGE,
                     window_days: int = 15, t0_k: float = FREEZE_K,
                     t1_k: float = FREEZE_K + 10.0) -> xr.DataArray:
    """fPAR [0–1] from thermal phenology (an assumption; see the module docstring).

    Args:
      ta_k: Daily mean air temperature [K], dims (..., time).
      pft: L4C PFT code, broadcastable to ``ta_k`` without time.
      fpar_range: PFT → (min, max) fPAR.
      window_days: Trailing window of the temperature mean [d].
      t0_k, t1_k: Temperatures where greenness is 0 and 1 [K].
    """
    green = _ramp(_trailing_mean(ta_k, window_days), t0_k, t1_k)
    lo = _per_pft(pft, {k: v[0] for k, v in fpar_range.items()})
    hi = _per_pft(pft, {k: v[1] for k, v in fpar_range.items()})
    out = (lo + (hi - lo) * green).astype(np.float32)
    return out.assign_attrs(units="1", long_name="fPAR from thermal-phenology climatology")


def tcf_drivers(
    met: xr.Dataset,
    pft: xr.DataArray,
    *,
    fpar: xr.DataArray | None = None,
    ft: xr.DataArray | None = None,
    porosity: float = 0.5,
) -> xr.Dataset:
    """TCF drivers from daily meteorology (a towers store or simulator truth).

    Args:
      met: Dataset with ``ta`` [K], ``sw_in`` [W m-2], ``vpd`` [Pa] and optionally ``tmin`` [K]
        (default ``ta``), ``ts`` (soil temperature [K]), ``swc`` (soil water [m3 m-3]); any dims
        with ``time``.
      pft: L4C PFT code per site/cell (no time dim).
      fpar: fPAR [0–1]; default :func:`fpar_climatology`.
      ft: Freeze/thaw 0 frozen / 1 thawed; default frozen where Tmin < 273.15 K.
      porosity: Soil porosity [m3 m-3] turning ``swc`` into wetness = 100·swc/porosity [%].

    Returns:
      Dataset ``fpar``, ``par`` [MJ m-2 d-1], ``tmin`` [K], ``vpd`` [Pa], ``smrz``, ``smsf`` [%],
      ``ft``, ``tsoil`` [K] (float32, dims of ``met``) and ``smrz_min`` [%] (no time dim) —
      the order and units :mod:`models.l4c` takes.
    """
    ta = met["ta"]
    tmin = met["tmin"] if "tmin" in met else ta
    if "ts" in met:
        tsoil = met["ts"].fillna(_trailing_mean(ta, 5))
    else:
        tsoil = _trailing_mean(ta, 5)
    if "swc" in met:
        wet = (100.0 * met["swc"] / porosity).clip(0.0, 100.0).fillna(100.0)
        smrz_min = wet.min(dims.TIME)
    else:
        wet = xr.full_like(ta, 100.0)
        smrz_min = xr.zeros_like(ta.isel({dims.TIME: 0}, drop=True))
    if fpar is None:
        fpar = fpar_climatology(ta, pft)
    if ft is None:
        ft = xr.where(tmin < FREEZE_K, 0.0, 1.0).where(tmin.notnull())
    out = xr.Dataset({
        "fpar": fpar,
        "par": 0.45 * 0.0036 * 24.0 * met["sw_in"].clip(min=0.0),
        "tmin": tmin,
        "vpd": met["vpd"].clip(min=0.0),
        "smrz": wet,
        "ft": ft.astype(np.float32),
        "tsoil": tsoil,
        "smsf": wet,
    })
    out = out.astype(np.float32)
    out["smrz_min"] = smrz_min.astype(np.float32)
    units = {"fpar": "1", "par": "MJ m-2 d-1", "tmin": "K", "vpd": "Pa", "smrz": "%",
             "ft": "1", "tsoil": "K", "smsf": "%", "smrz_min": "%"}
    for k, u in units.items():
        out[k].attrs["units"] = u
    return out


# --- matching ---------------------------------------------------------------------------------
def match_towers(product: xr.Dataset, towers: xr.Dataset, *, use_pft: bool = True) -> xr.Dataset:
    """Model fluxes at the towers: the product cell containing each tower (site, time).

    Where the product has per-PFT sub-grid fluxes (``nee_pft`` … over a ``pft`` dim) and the
    tower's PFT is among them, the PFT flux is used (L4C cal/val practice), else the cell mean.

    Args:
      product: Gridded fluxes ``nee``, ``gpp`` (+ ``rh``, ``reco``) (time, y, x) with attrs
        ``grid`` and ``grid_window``.
      towers: Towers store (site coords ``lat``, ``lon``, ``pft``).

    Returns:
      Dataset (site, time) with ``nee``, ``gpp``, ``reco`` (+ ``rh``) and coords ``row``, ``col``
      (−1 outside the product window) and ``matched`` ("pft", "cell" or "outside").
    """
    g, w = grid.window_from_attrs(product.attrs)
    row, col = grid.latlon_to_rowcol(g, towers[dims.LAT].values, towers[dims.LON].values)
    inside = (row >= w.row0) & (row < w.row1) & (col >= w.col0) & (col < w.col1)
    r = xr.DataArray(np.where(inside, row - w.row0, 0), dims=dims.SITE)
    c = xr.DataArray(np.where(inside, col - w.col0, 0), dims=dims.SITE)
    ok = xr.DataArray(inside, dims=dims.SITE)
    site_pft = towers["pft"].values.astype(int)
    has_pft = use_pft and "pft" in product.coords and "nee_pft" in product
    pft_ok = np.isin(site_pft, product["pft"].values) if has_pft else np.zeros(len(r), bool)
    if "reco" not in product:
        product = product.assign(reco=product["nee"] + product["gpp"])
    out = xr.Dataset()
    for v in ("nee", "gpp", "reco", "rh"):
        if v not in product:
            continue
        cell = product[v].isel({dims.Y: r, dims.X: c})
        if has_pft and f"{v}_pft" in product:
            sel_pft = xr.DataArray(np.where(pft_ok, site_pft, product["pft"].values[0]),
                                   dims=dims.SITE)
            sub = product[f"{v}_pft"].isel({dims.Y: r, dims.X: c}).sel(pft=sel_pft)
            cell = xr.where(xr.DataArray(pft_ok, dims=dims.SITE), sub, cell)
        out[v] = cell.where(ok).drop_vars([k for k in cell.coords if k not in (dims.TIME,)],
                                          errors="ignore")
        out[v].attrs = {"units": FLUX_UNITS, "long_name": product[v].attrs.get("long_name", v)}
    if has_pft and "reco_pft" not in product and "nee_pft" in product and "gpp_pft" in product:
        sub = (product["nee_pft"] + product["gpp_pft"]).isel({dims.Y: r, dims.X: c})
        sub = sub.sel(pft=xr.DataArray(np.where(pft_ok, site_pft, product["pft"].values[0]),
                                       dims=dims.SITE))
        out["reco"] = xr.where(xr.DataArray(pft_ok, dims=dims.SITE), sub, out["reco"]).where(ok)
        out["reco"] = out["reco"].drop_vars(
            [k for k in out["reco"].coords if k != dims.TIME], errors="ignore")
        out["reco"].attrs = {"units": FLUX_UNITS, "long_name": "ecosystem respiration"}
    matched = np.where(~inside, "outside", np.where(pft_ok, "pft", "cell"))
    out = out.assign_coords({
        dims.SITE: towers[dims.SITE].values,
        "row": (dims.SITE, np.where(inside, row, -1)),
        "col": (dims.SITE, np.where(inside, col, -1)),
        "matched": (dims.SITE, matched.astype(str)),
    })
    return out.transpose(dims.SITE, dims.TIME, ...)


# --- QC, seasons ------------------------------------------------------------------------------
def qc_filter(towers: xr.Dataset, min_qc: float = 0.8,
              variables: Sequence[str] = FLUX_VARS) -> xr.Dataset:
    """Tower fluxes with days below ``min_qc`` (fraction of good half-hours) set to NaN."""
    out = towers[list(variables)].copy()
    for v in variables:
        q = f"{v}_qc"
        if q in towers:
            out[v] = towers[v].where(towers[q] >= min_qc)
    return out


def season_labels(towers: xr.Dataset, ft: xr.DataArray | None = None, *,
                  window_days: int = 15, cold_k: float = FREEZE_K,
                  warm_k: float = FREEZE_K + 5.0) -> xr.DataArray:
    """Season per (site, time): 0 cold, 1 shoulder, 2 growing (int8, −1 unknown).

    With a freeze/thaw series ``ft`` (0 frozen, 1 thawed): frozen days are cold; thawed days
    with a frozen day within ±``window_days``//2 are shoulder; other thawed days are growing.
    Without: the centred ``window_days`` mean air temperature below ``cold_k`` is cold, above
    ``warm_k`` growing, between shoulder.
    """
    half = window_days // 2
    if ft is not None:
        frozen = (ft == 0).astype(np.float32).where(ft.notnull())
        near = frozen.rolling({dims.TIME: 2 * half + 1}, center=True, min_periods=1).max()
        lab = xr.where(frozen == 1, 0, xr.where(near > 0, 1, 2))
        lab = lab.where(ft.notnull(), -1)
    else:
        tm = towers["ta"].rolling({dims.TIME: window_days}, center=True, min_periods=1).mean()
        lab = xr.where(tm < cold_k, 0, xr.where(tm > warm_k, 2, 1)).where(tm.notnull(), -1)
    return lab.astype(np.int8).rename("season").assign_attrs(
        flag_values=[-1, 0, 1, 2], flag_meanings="unknown cold shoulder growing")


# --- scores -----------------------------------------------------------------------------------
def _to_metric_dim(ds: xr.Dataset) -> xr.DataArray:
    da = ds[list(metrics.METRIC_NAMES)].to_dataarray(dims.METRIC).astype(np.float64)
    return da.transpose(..., dims.METRIC)


def evaluate(model: xr.Dataset, towers: xr.Dataset, *, min_qc: float = 0.8,
             seasons: xr.DataArray | None = None,
             variables: Sequence[str] = FLUX_VARS) -> xr.Dataset:
    """Per-site daily scores (site, metric) for each flux, overall and per season.

    Args:
      model: Model fluxes at the towers (site, time), e.g. from :func:`match_towers`.
      towers: Towers store; days with ``{var}_qc`` < ``min_qc`` are excluded.
      seasons: Optional :func:`season_labels`; adds ``{var}_{season}`` variables.

    Returns:
      Validation Dataset: variables ``nee``, ``gpp``, ``reco`` (and per season) over
      (site, metric) with metrics ``n r bias rmsd ubrmsd ubrmsd_detrended``; coords ``pft``,
      ``igbp``, ``lat``, ``lon``; attrs record ``min_qc`` and the NEE target.
    """
    obs = qc_filter(towers, min_qc, variables)
    model, obs = xr.align(model, obs, join="inner")
    out = xr.Dataset()
    for v in variables:
        out[v] = _to_metric_dim(metrics.score(model[v], obs[v], dims.TIME))
        out[v].attrs = {"units": FLUX_UNITS, "long_name": f"daily {v} scores, model vs tower"}
        if seasons is not None:
            lab = seasons.reindex_like(obs[v])
            for code, name in SEASONS.items():
                m = lab == code
                out[f"{v}_{name}"] = _to_metric_dim(
                    metrics.score(model[v].where(m), obs[v].where(m), dims.TIME))
                out[f"{v}_{name}"].attrs = {"units": FLUX_UNITS,
                                            "long_name": f"daily {v} scores, {name} season"}
    for c in (dims.LAT, dims.LON, "pft", "igbp"):
        if c in towers.coords:
            out = out.assign_coords({c: towers[c].sel({dims.SITE: out[dims.SITE]})})
    out.attrs.update({"min_qc": min_qc, "nee_ubrmse_target": NEE_UBRMSE_TARGET,
                      "bias": "model - tower",
                      "ubrmsd": "means removed (pytesmo)",
                      "ubrmsd_detrended": "linearly detrended (pyl4c report_fit_stats)"})
    return out


def _pooled(x: xr.DataArray, y: xr.DataArray) -> dict[str, xr.DataArray]:
    both = (dims.SITE, dims.TIME)
    d = metrics.detrended_differences(x, y, dims.TIME)
    return {
        "n": metrics.n_pairs(x, y, both),
        "r": metrics.pearson_r(x, y, both),
        "bias": metrics.bias(x, y, both),
        "rmsd": metrics.rmsd(x, y, both),
        "ubrmsd": metrics.ubrmsd(x, y, both),
        "ubrmsd_detrended": np.sqrt((d**2).mean(both)),
    }


def tower_groups(towers: xr.Dataset, bands: Sequence[float] = (40, 50, 60, 70, 90)
                 ) -> dict[str, np.ndarray]:
    """Named boolean site masks: all, per PFT, per latitude band and the ≥ 50° N region."""
    lat = towers[dims.LAT].values
    pft = towers["pft"].values
    groups = {"all": np.ones(lat.shape, bool)}
    for code, label in PFT_LABELS.items():
        if (pft == code).any():
            groups[f"pft:{label}"] = pft == code
    for lo, hi in zip(bands[:-1], bands[1:], strict=True):
        m = (lat >= lo) & (lat < hi)
        if m.any():
            groups[f"lat:{lo}-{hi}"] = m
    groups["region:arctic-subarctic(>=50N)"] = lat >= 50
    return groups


# Mask values per batch in group_metrics (x a few float64 temporaries: ~100 MB at 4 M).
GROUP_BATCH_VALUES = 4_000_000


def group_metrics(model: xr.Dataset, towers: xr.Dataset, *, min_qc: float = 0.8,
                  seasons: xr.DataArray | None = None,
                  variables: Sequence[str] = FLUX_VARS) -> xr.Dataset:
    """Pooled daily scores per site group (all, PFT, latitude band, region) and season.

    Returns:
      Dataset with ``nee``, ``gpp``, ``reco`` over (group, season, metric); ``season`` is
      ``all`` plus the labels of :data:`SEASONS` when ``seasons`` is given.
    """
    obs = qc_filter(towers, min_qc, variables)
    model, obs = xr.align(model, obs, join="inner")
    groups = tower_groups(towers.sel({dims.SITE: obs[dims.SITE]}))
    season_names = ["all"] + ([SEASONS[k] for k in SEASONS] if seasons is not None else [])
    # One (group, season, site, time) selection mask; every metric is then one vectorised call
    # over (site, time) instead of one call per group and season.
    site_mask = xr.DataArray(np.stack(list(groups.values())), dims=("group", dims.SITE),
                             coords={"group": list(groups), dims.SITE: obs[dims.SITE]})
    masks = [xr.ones_like(obs[variables[0]], dtype=bool)]
    if seasons is not None:
        lab = seasons.reindex_like(obs[variables[0]])
        masks += [lab == code for code in SEASONS]
    season_mask = xr.concat(masks, dim="season").assign_coords(season=season_names)
    # Bounded memory: groups in batches of about GROUP_BATCH_VALUES mask values.
    per_group = season_mask.size
    step = max(1, GROUP_BATCH_VALUES // max(per_group, 1))
    out = xr.Dataset()
    for v in variables:
        parts = []
        for i in range(0, site_mask.sizes["group"], step):
            m = site_mask.isel(group=slice(i, i + step)) & season_mask
            res = _pooled(model[v].where(m), obs[v].where(m))
            parts.append(xr.concat([res[k].astype(np.float64) for k in metrics.METRIC_NAMES],
                                   dim=dims.METRIC))
        da = xr.concat(parts, dim="group").transpose("group", "season", dims.METRIC)
        out[v] = da.assign_coords(metric=list(metrics.METRIC_NAMES))
        out[v].attrs = {"units": FLUX_UNITS, "long_name": f"pooled daily {v} scores"}
    out.attrs.update({"min_qc": min_qc, "nee_ubrmse_target": NEE_UBRMSE_TARGET})
    return out


def budgets(model: xr.Dataset, towers: xr.Dataset, *, min_valid: float = 0.8,
            min_qc: float = 0.0, seasons: xr.DataArray | None = None,
            variables: Sequence[str] = FLUX_VARS) -> xr.Dataset:
    """Annual (and growing-season) budgets per site-year, model and tower [g C m-2 period-1].

    A day is valid when the tower value (QC ≥ ``min_qc``; 0 accepts the gap-filled record) and
    the model value are both finite.  A site-year counts only with ≥ ``min_valid`` of its days
    valid; its budget is the mean over valid days × the days in the period (so short gaps do not
    bias the sum).  The growing-season budget uses the days labelled growing by ``seasons``.

    Returns:
      Dataset over (site, year) with ``{var}_model``, ``{var}_tower``, ``valid_fraction`` and,
      with ``seasons``, ``{var}_model_growing``, ``{var}_tower_growing``.
    """
    obs = qc_filter(towers, min_qc, variables)
    model, obs = xr.align(model, obs, join="inner")
    year = obs[dims.TIME].dt.year
    out = xr.Dataset()
    valid_all = None
    for v in variables:
        valid = model[v].notnull() & obs[v].notnull()
        n_days = valid.groupby(year).count()
        frac = valid.groupby(year).mean()
        enough = frac >= min_valid
        for who, da in (("model", model[v]), ("tower", obs[v])):
            mean = da.where(valid).groupby(year).mean()
            out[f"{v}_{who}"] = (mean * n_days).where(enough)
            out[f"{v}_{who}"].attrs = {"units": "g C m-2 yr-1",
                                       "long_name": f"annual {v} sum ({who})"}
            if seasons is not None:
                grow = (seasons.reindex_like(obs[v]) == 2)
                gv = valid & grow
                gdays = grow.groupby(year).sum()
                gfrac = gv.groupby(year).sum() / gdays.where(gdays > 0)
                gmean = da.where(gv).groupby(year).mean()
                out[f"{v}_{who}_growing"] = (gmean * gdays).where(gfrac >= min_valid)
                out[f"{v}_{who}_growing"].attrs = {
                    "units": "g C m-2 season-1", "long_name": f"growing-season {v} sum ({who})"}
        valid_all = frac if valid_all is None else np.minimum(valid_all, frac)
    out["valid_fraction"] = valid_all
    out.attrs.update({"min_valid": min_valid, "min_qc": min_qc,
                      "method": "mean over valid days x days in the period"})
    return out


def residual_moisture_correlation(model: xr.Dataset, towers: xr.Dataset,
                                  moisture: xr.DataArray, *, min_qc: float = 0.8,
                                  variables: Sequence[str] = ("gpp", "reco")) -> xr.Dataset:
    """Pearson R per site between model − tower residuals and a soil-moisture series."""
    obs = qc_filter(towers, min_qc, variables)
    model, obs = xr.align(model, obs, join="inner")
    sm = moisture.reindex_like(obs[variables[0]])
    out = xr.Dataset()
    for v in variables:
        res = model[v] - obs[v]
        out[f"{v}_residual_r"] = metrics.pearson_r(res, sm, dims.TIME)
        out[f"{v}_residual_n"] = metrics.n_pairs(res, sm, dims.TIME)
    return out


def mean_seasonal_cycle(da: xr.DataArray, window_days: int = 7) -> xr.DataArray:
    """Mean seasonal cycle over years by day of year (1–366), smoothed by ``window_days``."""
    doy = da[dims.TIME].dt.dayofyear.values
    days = np.unique(doy)
    onehot = (doy[:, None] == days[None, :]).astype(np.float64)      # (time, day of year)
    v = da.transpose(..., dims.TIME).values.astype(np.float64)
    ok = np.isfinite(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (np.where(ok, v, 0.0) @ onehot) / (ok.astype(np.float64) @ onehot)
    other = [d for d in da.dims if d != dims.TIME]
    clim = xr.DataArray(mean, dims=(*other, "dayofyear"),
                        coords={**{k: c for k, c in da.coords.items() if dims.TIME not in c.dims},
                                "dayofyear": days})
    return clim.rolling(dayofyear=window_days, center=True, min_periods=1).mean()


# --- gridded drivers from simulator truth -----------------------------------------------------
def toa_shortwave(lat_deg: xr.DataArray, time: xr.DataArray) -> xr.DataArray:
    """Daily-mean top-of-atmosphere shortwave [W m-2] from latitude and date (standard formula).

    S = S0/π · dr · (ωs sin φ sin δ + cos φ cos δ sin ωs), S0 = 1361 W m-2, with the declination
    δ = 0.409 sin(2π doy/365 − 1.39) and dr = 1 + 0.033 cos(2π doy/365).
    """
    doy = time.dt.dayofyear.astype(np.float64)
    phi = np.deg2rad(lat_deg.astype(np.float64))
    decl = 0.409 * np.sin(2 * np.pi * doy / 365.0 - 1.39)
    dr = 1.0 + 0.033 * np.cos(2 * np.pi * doy / 365.0)
    ws = np.arccos((-np.tan(phi) * np.tan(decl)).clip(-1.0, 1.0))
    s = 1361.0 / np.pi * dr * (ws * np.sin(phi) * np.sin(decl)
                               + np.cos(phi) * np.cos(decl) * np.sin(ws))
    return s.clip(min=0.0).astype(np.float32).assign_attrs(units="W m-2")


def met_from_truth(truth: xr.Dataset, static: xr.Dataset, *, transmissivity: float = 0.55,
                   relative_humidity: float = 0.7) -> xr.Dataset:
    """Daily TCF meteorology from a simulator ``truth`` store (which has no radiation or VPD).

    ``ta`` = mean of the am/pm surface temperature, ``tmin`` = the am (06:00) value, ``ts`` =
    mean soil temperature, ``swc`` = mean liquid soil moisture; ``sw_in`` = ``transmissivity`` ×
    top-of-atmosphere shortwave; ``vpd`` = esat(ta)·(1 − ``relative_humidity``).  The last two are
    assumptions (docs/carbon.md); ``ft`` = 1 − am ``frozen``.

    Returns:
      Dataset (time, y, x) with ``ta``, ``tmin``, ``ts``, ``swc``, ``sw_in``, ``vpd``, ``ft``.
    """
    st = truth["surface_temperature"]
    has_pass = dims.PASS in st.dims
    ta = st.mean(dims.PASS) if has_pass else st
    tmin = st.sel({dims.PASS: "am"}, drop=True) if has_pass else st
    ts = truth["soil_temperature"]
    ts = ts.mean(dims.PASS) if dims.PASS in ts.dims else ts
    sm = truth["soil_moisture"]
    sm = sm.mean(dims.PASS) if dims.PASS in sm.dims else sm
    fr = truth["frozen"]
    fr = fr.sel({dims.PASS: "am"}, drop=True) if dims.PASS in fr.dims else fr
    tc = ta - FREEZE_K
    esat = 610.7 * np.exp(17.38 * tc / (239.0 + tc))
    out = xr.Dataset({
        "ta": ta, "tmin": tmin, "ts": ts, "swc": sm,
        "sw_in": transmissivity * toa_shortwave(truth[dims.LAT], truth[dims.TIME]),
        "vpd": esat * (1.0 - relative_humidity),
        "ft": (1 - fr).astype(np.float32).where(fr >= 0),
    })
    porosity = 1.0 - static["bulk_density"] / 2.65 if "bulk_density" in static else 0.5
    out.attrs["porosity"] = "1 - bulk_density/2.65" if "bulk_density" in static else "0.5"
    out["porosity"] = xr.DataArray(porosity).astype(np.float32) if np.isscalar(porosity) \
        else porosity.astype(np.float32)
    return out.astype(np.float32)


# --- global / regional aggregation ------------------------------------------------------------
def aggregation_groups(lat: xr.DataArray, pft: xr.DataArray,
                       bands: Sequence[float] = (-90, -60, -30, 0, 30, 50, 60, 70, 90)
                       ) -> dict[str, xr.DataArray]:
    """Named boolean masks (y, x): all land, latitude bands, PFTs, the ≥ 50° N region."""
    groups = {"all": pft > 0}
    for lo, hi in zip(bands[:-1], bands[1:], strict=True):
        groups[f"lat:{lo}-{hi}"] = (lat >= lo) & (lat < hi) & (pft > 0)
    eager = isinstance(pft.data, np.ndarray)
    for code, label in PFT_LABELS.items():
        if not eager or bool((pft == code).any()):  # skip absent PFTs when that costs nothing
            groups[f"pft:{label}"] = pft == code
    groups["region:arctic-subarctic(>=50N)"] = (lat >= 50) & (pft > 0)
    return groups


def aggregate_budgets(product: xr.Dataset, area_m2: xr.DataArray,
                      groups: Mapping[str, xr.DataArray],
                      variables: Sequence[str] = ("nee", "gpp", "reco")) -> xr.Dataset:
    """Area-weighted annual budgets per group and year.

    Args:
      product: Fluxes (time, y, x) [g C m-2 d-1].
      area_m2: Land area per cell (y, x) [m2] (cell area × land fraction on EASE-Grid 2.0).
      groups: Name → boolean mask (y, x), from :func:`aggregation_groups`.

    Returns:
      Dataset over (group, year): ``{var}_total`` [Tg C yr-1] (sum over the year's days present),
      ``{var}_mean`` [g C m-2 yr-1] (area-weighted mean), ``area`` [km2], ``n_days``.
    """
    year = product[dims.TIME].dt.year
    # Non-index coords (lat/lon, possibly dask-backed) would be compared, i.e. computed, when
    # arrays are combined: drop them.
    area_m2 = area_m2.reset_coords(drop=True) if isinstance(area_m2, xr.DataArray) else area_m2
    groups = {k: m.reset_coords(drop=True) for k, m in groups.items()}
    out = {}
    for v in variables:
        flux = product[v].reset_coords(drop=True).fillna(0.0)
        tot, mean = [], []
        for m in groups.values():
            w = area_m2.where(m, 0.0).fillna(0.0)
            daily = (flux * w).sum((dims.Y, dims.X))  # g C d-1
            annual = daily.groupby(year).sum()
            tot.append(annual * 1e-12)
            area = w.sum()
            mean.append(annual / area.where(area > 0))
        out[f"{v}_total"] = xr.concat(tot, dim="group").assign_attrs(
            units="Tg C yr-1", long_name=f"area-integrated annual {v}")
        out[f"{v}_mean"] = xr.concat(mean, dim="group").assign_attrs(
            units="g C m-2 yr-1", long_name=f"area-weighted mean annual {v}")
    ds = xr.Dataset(out).assign_coords(group=list(groups))
    ds["area"] = xr.concat([area_m2.where(m, 0.0).fillna(0.0).sum() * 1e-6
                            for m in groups.values()], dim="group").assign_attrs(units="km2")
    ds["n_days"] = product[dims.TIME].groupby(year).count()
    return ds


def aggregate_site_scores(site_scores: xr.Dataset, towers: xr.Dataset,
                          variables: Sequence[str] = FLUX_VARS) -> xr.Dataset:
    """Median per-site scores over the same groups as :func:`tower_groups` (group, metric)."""
    groups = tower_groups(towers.sel({dims.SITE: site_scores[dims.SITE]}))
    out = xr.Dataset()
    for v in variables:
        rows = [site_scores[v].where(xr.DataArray(m, dims=dims.SITE)).median(dims.SITE)
                for m in groups.values()]
        out[v] = xr.concat(rows, dim="group").assign_coords(group=list(groups))
    return out
