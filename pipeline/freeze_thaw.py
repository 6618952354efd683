"""Freeze/thaw stages: NPR seasonal-threshold baseline, autoencoder features, product assembly.

Pure ``Dataset``/``DataArray`` functions (docs/architecture.md §4.2): no I/O, no compute; they
give the same answer on numpy- and dask-backed input.  Science: docs/science.md §1.

Baseline (science.md §1.8): ``NPR = (V − H)/(V + H)``, ``Δ = (NPR − NPR_fr)/(NPR_th − NPR_fr)``,
frozen when ``Δ < T`` (T = 0.5 or per cell), am and pm retrieved separately.  The reference
windows of the SMAP product are [NF], so they are a documented choice here
(:class:`ReferenceWindows`): calendar months of the reference years (default Jan–Feb frozen,
Jul–Aug thawed) or days meeting a temperature criterion on a gridded temperature field.

Autoencoder (science.md §1.2–1.5): features ``[H, V, V − H]`` in K (normalised inside the
model bundle), optional time-constant conditioning channels (land-cover group one-hot and water
fraction); days without an observation are filled by linear interpolation in time (nearest
value at the ends) for the network input only, and are reported as missing in the product.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from pipeline import dims, qc

__all__ = [
    "CLIMATOLOGICAL_NPR_FR",
    "CLIMATOLOGICAL_NPR_TH",
    "LANDCOVER_GROUPS",
    "WATER_BINS",
    "ReferenceWindows",
    "THRESHOLD_CANDIDATES",
    "assemble_product",
    "choose_thresholds",
    "compute_npr",
    "conditioning_channels",
    "ft_features",
    "ft_state_from_probability",
    "ft_quality_flags",
    "landcover_group",
    "npr_references",
    "npr_state_from_references",
    "observed_mask",
    "polarization_pair",
    "retrieve_npr",
    "thresholds_by_cell",
    "water_bin",
]

# Climatological NPR references for single-day use where no multi-year reference exists:
# mid-points of the peak-winter (0.013–0.016) and summer (0.02–0.03) NPR read off the
# FTC-Encoder example figure (science.md §1.7).  A documented default, not a product constant.
CLIMATOLOGICAL_NPR_FR = 0.0145
CLIMATOLOGICAL_NPR_TH = 0.025

# IGBP class → surface group (science.md §1.2 stratifies by IGBP class and water fraction).
LANDCOVER_GROUPS: dict[str, tuple[int, ...]] = {
    "forest": (1, 2, 3, 4, 5),
    "shrubland": (6, 7),
    "savanna": (8, 9),
    "grassland_cropland": (10, 12, 14),
    "wetland": (11,),
    "urban_barren": (13, 16),
    "snow_ice": (15,),
    "water_unclassified": (0, 17),
}
# Open-water fraction class edges (science.md §1.2 bins, plus "< 0.05" and "> 0.5").
WATER_BINS = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0001)
OPEN_WATER_DOMINATED = 0.5
FEATURES = ("tbh", "tbv", "tbv_minus_tbh")


@dataclasses.dataclass(frozen=True)
class ReferenceWindows:
    """How per-cell NPR references are chosen (the SMAP windows are [NF]; this is a choice).

    Attributes:
      method: ``"months"`` (calendar windows) or ``"temperature"`` (days whose gridded surface
        and soil temperatures are both below ``frozen_below_k`` / above ``thawed_above_k``).
      frozen_months, thawed_months: Calendar months of the frozen / thawed windows.
      years: Reference years (None = every year of the input).
      frozen_below_k, thawed_above_k: Temperature criterion [K] (as the AE labels).
      min_days: Minimum number of reference days per cell and pass; fewer → no reference.
      min_contrast: Minimum NPR_th − NPR_fr [1]; smaller → no reference (cell never freezes
        or its signal is degenerate).
    """

    method: str = "months"
    frozen_months: tuple[int, ...] = (1, 2)
    thawed_months: tuple[int, ...] = (7, 8)
    years: tuple[int, ...] | None = None
    frozen_below_k: float = 271.0
    thawed_above_k: float = 275.0
    min_days: int = 10
    min_contrast: float = 1e-3


def polarization_pair(tb: xr.Dataset, frequency_ghz: float = 1.41) -> tuple[xr.DataArray, ...]:
    """(TBv, TBh) [K] at the channel frequency nearest ``frequency_ghz``, dims without channel.

    Channels are identified by their labels (frequency in GHz + ``V``/``H``, data-contract), an
    index coordinate, so no lazy coordinate is computed.
    """
    labels = [str(c) for c in tb.indexes[dims.CHANNEL]]
    freq = np.array([float(c[:-1]) for c in labels])
    target = freq[np.argmin(np.abs(freq - frequency_ghz))]
    pick = {}
    for p in ("V", "H"):
        hits = [i for i, c in enumerate(labels) if c.endswith(p) and freq[i] == target]
        if not hits:
            raise ValueError(f"tb: no {target:g} GHz {p} channel in {labels}")
        pick[p] = tb[dims.TB].isel({dims.CHANNEL: hits[0]}, drop=True)
    return pick["V"], pick["H"]


def compute_npr(tb: xr.Dataset, frequency_ghz: float = 1.41) -> xr.DataArray:
    """Normalised polarization ratio NPR = (V − H)/(V + H) [1], (time, pass, y, x)."""
    v, h = polarization_pair(tb, frequency_ghz)
    npr = ((v - h) / (v + h)).astype(np.float32)
    return npr.rename(dims.NPR).assign_attrs(
        units="1", long_name="normalized polarization ratio (TBv - TBh)/(TBv + TBh)"
    )


def observed_mask(tb: xr.Dataset, frequency_ghz: float = 1.41) -> xr.DataArray:
    """True where both polarizations were observed (time, pass, y, x)."""
    v, h = polarization_pair(tb, frequency_ghz)
    return np.isfinite(v) & np.isfinite(h)


def npr_references(
    npr: xr.DataArray, windows: ReferenceWindows, temperature: xr.Dataset | None = None
) -> xr.Dataset:
    """Per-cell, per-pass frozen and thawed NPR references.

    Args:
      npr: NPR [1] (time, pass, y, x).
      windows: Reference window choice.
      temperature: For ``method="temperature"``: a Dataset with ``surface_temperature`` and
        ``soil_temperature`` [K] on the same (time, [pass,] y, x) grid (e.g. ``truth``).

    Returns:
      Dataset with ``npr_fr``, ``npr_th`` [1] and ``reference_valid`` (bool), dims (pass, y, x).
    """
    t = npr[dims.TIME]
    in_years = xr.ones_like(t, dtype=bool) if windows.years is None else t.dt.year.isin(
        list(windows.years))
    if windows.method == "months":
        frozen = t.dt.month.isin(list(windows.frozen_months)) & in_years
        thawed = t.dt.month.isin(list(windows.thawed_months)) & in_years
    elif windows.method == "temperature":
        if temperature is None:
            raise ValueError("npr_references: method 'temperature' needs a temperature dataset")
        ts, tg = temperature["surface_temperature"], temperature["soil_temperature"]
        frozen = (ts < windows.frozen_below_k) & (tg < windows.frozen_below_k) & in_years
        thawed = (ts > windows.thawed_above_k) & (tg > windows.thawed_above_k) & in_years
    else:
        raise ValueError(f"npr_references: unknown method {windows.method!r}")
    fr_vals, th_vals = npr.where(frozen), npr.where(thawed)
    npr_fr = fr_vals.mean(dims.TIME)
    npr_th = th_vals.mean(dims.TIME)
    valid = ((fr_vals.notnull().sum(dims.TIME) >= windows.min_days)
             & (th_vals.notnull().sum(dims.TIME) >= windows.min_days)
             & (npr_th - npr_fr >= windows.min_contrast))
    return xr.Dataset({
        "npr_fr": npr_fr.astype(np.float32).assign_attrs(units="1", long_name="frozen NPR ref"),
        "npr_th": npr_th.astype(np.float32).assign_attrs(units="1", long_name="thawed NPR ref"),
        "reference_valid": valid,
    })


def npr_state_from_references(npr, npr_fr, npr_th, threshold=0.5):
    """Seasonal-threshold state: 0 frozen (Δ < T), 1 thawed (Δ ≥ T), −1 missing.

    Works on NumPy arrays, scalars or DataArrays (broadcasting).  Single-day use: pass
    :data:`CLIMATOLOGICAL_NPR_FR` / :data:`CLIMATOLOGICAL_NPR_TH` (or a cell climatology).

    Args:
      npr: NPR [1].
      npr_fr, npr_th: Frozen and thawed references [1] (broadcastable).
      threshold: Δ threshold T [1], scalar or per cell.

    Returns:
      int8 state, −1 where NPR or a reference is missing or the references are degenerate
      (NPR_th ≤ NPR_fr).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (npr - npr_fr) / (npr_th - npr_fr)
    ok = np.isfinite(delta) & (npr_th > npr_fr)
    if isinstance(delta, xr.DataArray):
        state = xr.where(ok, xr.where(delta < threshold, 0, 1), -1).astype(np.int8)
        return state.rename(dims.FT_STATE_NPR)
    return np.where(ok, np.where(delta < threshold, 0, 1), -1).astype(np.int8)


def retrieve_npr(
    tb: xr.Dataset, refs: xr.Dataset, threshold: float | xr.DataArray = 0.5
) -> xr.Dataset:
    """The NPR baseline on a TB archive: ``npr`` and ``ft_state_npr`` (time, pass, y, x)."""
    npr = compute_npr(tb)
    fr = refs["npr_fr"].where(refs["reference_valid"])
    th = refs["npr_th"].where(refs["reference_valid"])
    state = npr_state_from_references(npr, fr, th, threshold)
    state = state.transpose(*npr.dims).assign_attrs(
        units="1", long_name="freeze/thaw state, NPR seasonal-threshold baseline",
        flag_values=np.array([-1, 0, 1], np.int8), flag_meanings="missing frozen thawed")
    return xr.Dataset({dims.NPR: npr, dims.FT_STATE_NPR: state})


def landcover_group(landcover: xr.DataArray) -> xr.DataArray:
    """Index into :data:`LANDCOVER_GROUPS` for each IGBP class (int8, same dims)."""
    lut = np.full(256, list(LANDCOVER_GROUPS).index("water_unclassified"), np.int8)
    for i, classes in enumerate(LANDCOVER_GROUPS.values()):
        lut[list(classes)] = i
    return xr.apply_ufunc(lambda a: lut[np.clip(a.astype(np.int64), 0, 255)], landcover,
                          dask="parallelized", output_dtypes=[np.int8])


def water_bin(water_fraction: xr.DataArray) -> xr.DataArray:
    """Index of the :data:`WATER_BINS` class of each cell's open-water fraction (int8)."""
    edges = np.asarray(WATER_BINS[1:-1])
    return xr.apply_ufunc(lambda a: np.digitize(np.nan_to_num(a), edges).astype(np.int8),
                          water_fraction, dask="parallelized", output_dtypes=[np.int8])


def conditioning_channels(static: xr.Dataset) -> xr.DataArray:
    """Time-constant conditioning inputs (y, x, feature): land-cover group one-hot + water frac."""
    group = landcover_group(static["landcover"])
    onehot = [(group == i).astype(np.float32) for i in range(len(LANDCOVER_GROUPS))]
    wf = static["water_fraction"].fillna(0.0).astype(np.float32)
    names = [f"group_{g}" for g in LANDCOVER_GROUPS] + ["water_fraction"]
    out = xr.concat(onehot + [wf], dim=dims.FEATURE, coords="minimal", compat="override")
    return out.assign_coords({dims.FEATURE: names}).transpose(dims.Y, dims.X, dims.FEATURE)


def _fill_series(a: np.ndarray) -> np.ndarray:
    """Linear interpolation along the last axis, nearest value at the ends; all-NaN stays NaN."""
    out = np.array(a, dtype=np.float32, order="C", copy=True)
    flat = out.reshape(-1, out.shape[-1])
    idx = np.arange(flat.shape[-1])
    for row in flat:
        ok = np.isfinite(row)
        if ok.any() and not ok.all():
            row[~ok] = np.interp(idx[~ok], idx[ok], row[ok])
    return out


def ft_features(tb: xr.Dataset, static: xr.Dataset | None = None) -> xr.DataArray:
    """Gap-filled autoencoder inputs [K or 1] (pass, y, x, time, feature).

    Features are TBh, TBv, TBv − TBh (K) followed, when ``static`` is given, by the
    :func:`conditioning_channels`.  Needs the whole time axis in one chunk (pencil layout).
    """
    v, h = polarization_pair(tb)
    tbf = xr.concat([h, v, v - h], dim=dims.FEATURE, coords="minimal", compat="override")
    tbf = _single_chunk(tbf.assign_coords({dims.FEATURE: list(FEATURES)}).astype(np.float32),
                        dims.FEATURE)
    filled = xr.apply_ufunc(_fill_series, tbf, input_core_dims=[[dims.TIME]],
                            output_core_dims=[[dims.TIME]], dask="parallelized",
                            output_dtypes=[np.float32])
    filled = filled.transpose(dims.PASS, dims.Y, dims.X, dims.TIME, dims.FEATURE)
    if static is None:
        return filled.rename("features")
    cond = conditioning_channels(static).drop_vars(
        [c for c in (dims.LAT, dims.LON) if c in static.coords], errors="ignore")
    base = filled.isel({dims.FEATURE: 0}, drop=True)
    # chunked before the broadcast along time, or the static channels would enter the graph
    # at the full (pass, y, x, time) shape (50 MiB on the demo's Alaska window)
    cond = dims.chunk_like(cond, base).broadcast_like(base)
    cond = cond.transpose(dims.PASS, dims.Y, dims.X, dims.TIME, dims.FEATURE)
    out = xr.concat([filled, cond], dim=dims.FEATURE).rename("features")
    return _single_chunk(out, dims.FEATURE)


def _single_chunk(da: xr.DataArray, dim: str) -> xr.DataArray:
    """One chunk along ``dim`` when dask-backed (a model's core dims); numpy input unchanged."""
    return da.chunk({dim: -1}) if da.chunks is not None else da


def ft_state_from_probability(
    p_thaw: xr.DataArray, observed: xr.DataArray, threshold: float | xr.DataArray = 0.5
) -> xr.DataArray:
    """State from P(thaw): 1 thawed if P(thaw) ≥ threshold, 0 frozen, −1 unobserved (int8).

    Args:
      p_thaw: P(thaw) [1] (time, pass, y, x).
      observed: Observed days (same dims), bool.
      threshold: The paper's 0.5 (e ≥ ln 2), or per-cell thresholds [1] (y, x) from
        :func:`thresholds_by_cell`.
    """
    state = xr.where(observed & p_thaw.notnull(), xr.where(p_thaw >= threshold, 1, 0), -1)
    return state.astype(np.int8).rename(dims.FT_STATE)


# Candidate decision thresholds on P(thaw) for :func:`choose_thresholds`: 0.05 … 0.95, then
# finer up to 0.99 (P = 0.95 is e = 3.0, P = 0.99 is e = 4.6: a well-trained model pushes
# summer errors that far, so the top of the range matters).
THRESHOLD_CANDIDATES = tuple(round(0.05 * k, 2) for k in range(1, 20)) + (0.96, 0.97, 0.98, 0.99)


def choose_thresholds(
    p_thaw: np.ndarray,
    thawed: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    *,
    candidates: tuple[float, ...] = THRESHOLD_CANDIDATES,
    min_pairs: int = 365,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group decision threshold on P(thaw) maximising accuracy against a reference state.

    Meant for the training years only (never the scoring years): the reference is a gridded
    top-soil temperature state (science.md §1.9) on every observed day, shoulder seasons
    included, which the peak-season training segments never show the network.  Pure NumPy
    (small arrays; the job computes them).  Ties go to the candidate nearest 0.5.

    Args:
      p_thaw: P(thaw) [1] of the pairs [n] (any shape, flattened with the others).
      thawed: Reference state [n]: 1 thawed, 0 frozen, < 0 or NaN = no reference (skipped).
      group: Group index of each pair [n], 0 … n_groups − 1.
      n_groups: Number of groups.
      candidates: Thresholds tried.
      min_pairs: Groups with fewer valid pairs get the threshold chosen on all groups pooled.

    Returns:
      (thresholds [n_groups], valid pairs per group [n_groups]).
    """
    p = np.asarray(p_thaw, np.float64).ravel()
    r = np.asarray(thawed, np.float64).ravel()
    g = np.asarray(group).ravel().astype(np.int64)
    ok = np.isfinite(p) & np.isfinite(r) & (r >= 0) & (g >= 0) & (g < n_groups)
    p, r, g = p[ok], r[ok] > 0.5, g[ok]
    cand = np.asarray(candidates, np.float64)
    nearest = np.argsort(np.abs(cand - 0.5), kind="stable")

    def best(sel: np.ndarray) -> float:
        pred = p[sel][:, None] >= cand[None, :]
        correct = (pred == r[sel][:, None]).sum(axis=0)
        top = correct.max()
        return float(next(cand[i] for i in nearest if correct[i] == top))

    counts = np.bincount(g, minlength=n_groups)
    pooled = best(np.ones(len(p), bool)) if len(p) else 0.5
    out = np.array([best(g == k) if counts[k] >= min_pairs else pooled
                    for k in range(n_groups)], np.float32)
    return out, counts


def thresholds_by_cell(landcover: xr.DataArray, thresholds) -> xr.DataArray:
    """Per-cell P(thaw) threshold [1] (y, x) from one threshold per :data:`LANDCOVER_GROUPS`."""
    lut = np.asarray(thresholds, np.float32)
    if lut.shape != (len(LANDCOVER_GROUPS),):
        raise ValueError(f"thaw thresholds: need {len(LANDCOVER_GROUPS)} (one per land-cover "
                         f"group), got {lut.shape}")
    return xr.apply_ufunc(lambda a: lut[a.astype(np.int64)], landcover_group(landcover),
                          dask="parallelized", output_dtypes=[np.float32]).rename("thaw_threshold")


def ft_quality_flags(
    observed: xr.DataArray, static: xr.Dataset | None, refs: xr.Dataset | None
) -> xr.DataArray:
    """uint16 :class:`pipeline.qc.QC` bits (time, pass, y, x).

    INSUFFICIENT_OBS: no observation that day/pass (state −1, input gap-filled);
    OPEN_WATER_DOMINATED: water fraction > 0.5; PERMANENT_SNOW_ICE: IGBP 15;
    NO_REFERENCE: NPR references missing or degenerate for that cell/pass.
    """
    flag = xr.where(observed, 0, int(qc.QC.INSUFFICIENT_OBS)).astype(qc.QC_DTYPE)
    if static is not None:
        water = static["water_fraction"] > OPEN_WATER_DOMINATED
        snow = static["landcover"] == 15
        flag = flag | xr.where(water, int(qc.QC.OPEN_WATER_DOMINATED), 0).astype(qc.QC_DTYPE)
        flag = flag | xr.where(snow, int(qc.QC.PERMANENT_SNOW_ICE), 0).astype(qc.QC_DTYPE)
    if refs is not None:
        flag = flag | xr.where(refs["reference_valid"], 0, int(qc.QC.NO_REFERENCE)).astype(
            qc.QC_DTYPE)
    dims_order = [d for d in (dims.TIME, dims.PASS, dims.Y, dims.X) if d in flag.dims]
    return flag.transpose(*dims_order).rename(dims.QUALITY_FLAG).assign_attrs(qc.flag_attrs())


def assemble_product(
    tb: xr.Dataset,
    p_thaw: xr.DataArray,
    baseline: xr.Dataset,
    observed: xr.DataArray,
    static: xr.Dataset | None,
    refs: xr.Dataset | None,
    threshold: float | xr.DataArray = 0.5,
) -> xr.Dataset:
    """The freeze/thaw product of docs/data-contract.md (time, pass, y, x).

    ``thaw_probability`` is NaN on days without an observation (the network saw gap-filled
    input there); ``ft_state`` is −1 on those days.  ``threshold`` is the decision threshold
    on P(thaw) (scalar or per cell (y, x), see :func:`ft_state_from_probability`).
    """
    order = (dims.TIME, dims.PASS, dims.Y, dims.X)
    p = p_thaw.transpose(*order).where(observed.transpose(*order)).astype(np.float32)
    p = p.rename(dims.THAW_PROBABILITY).assign_attrs(
        units="1", long_name="probability that the landscape is thawed (autoencoder)",
        grid_mapping=dims.CRS)
    state = ft_state_from_probability(p, observed.transpose(*order), threshold).assign_attrs(
        units="1", long_name="freeze/thaw state, autoencoder", grid_mapping=dims.CRS,
        flag_values=np.array([-1, 0, 1], np.int8), flag_meanings="missing frozen thawed")
    npr_state = baseline[dims.FT_STATE_NPR].transpose(*order).assign_attrs(grid_mapping=dims.CRS)
    flags = ft_quality_flags(observed, static, refs).transpose(*order).assign_attrs(
        grid_mapping=dims.CRS)
    out = xr.Dataset({
        dims.THAW_PROBABILITY: p,
        dims.FT_STATE: state,
        dims.FT_STATE_NPR: npr_state,
        dims.NPR: baseline[dims.NPR].transpose(*order).assign_attrs(grid_mapping=dims.CRS),
        dims.QUALITY_FLAG: flags,
    })
    for v in (dims.FT_STATE, dims.FT_STATE_NPR):
        out[v].encoding["_FillValue"] = np.int8(-1)
    keep = [c for c in (dims.LAT, dims.LON) if c in tb.coords]
    out = out.assign_coords({c: tb[c] for c in keep})
    if dims.CRS in tb.variables:
        out[dims.CRS] = tb[dims.CRS]
    attrs = {k: tb.attrs[k] for k in ("grid", "grid_window", "sensor") if k in tb.attrs}
    return out.assign_attrs(attrs, title="tbcube freeze/thaw product",
                            Conventions="CF-1.10")


# --- validation scores (pure; small station / grid arrays) ---------------------------------
FROZEN_K = 273.15
SPRING_MONTHS = (3, 4, 5, 6)


def state_from_temperature(t_k: xr.DataArray) -> xr.DataArray:
    """Reference state from a temperature [K]: 0 frozen (< 273.15 K), 1 thawed, −1 missing."""
    return xr.where(t_k.notnull(), xr.where(t_k < FROZEN_K, 0, 1), -1).astype(np.int8)


def score_states(predicted: xr.DataArray, reference: xr.DataArray, dim) -> dict:
    """Contingency counts and rates of a retrieval vs a reference (0 frozen, 1 thawed, −1 skip).

    Returns:
      ``n``, ``accuracy``, ``confusion`` ``{pred_ref: count}`` (``fr_fr``, ``fr_th``, ``th_fr``,
      ``th_th``), ``false_thaw_rate`` (thawed retrieved on reference-frozen days / frozen days),
      ``false_freeze_rate`` (frozen retrieved on reference-thawed days / thawed days).
    """
    from pipeline import metrics

    c = metrics.confusion_counts(predicted, reference, dim)
    cnt = {f"{a}_{b}": int(c.sel(predicted=i, reference=j))
           for i, a in ((0, "fr"), (1, "th")) for j, b in ((0, "fr"), (1, "th"))}
    n = sum(cnt.values())
    n_fr, n_th = cnt["fr_fr"] + cnt["th_fr"], cnt["fr_th"] + cnt["th_th"]
    return {
        "n": n,
        "accuracy": (cnt["fr_fr"] + cnt["th_th"]) / n if n else None,
        "confusion": cnt,
        "false_thaw_rate": cnt["th_fr"] / n_fr if n_fr else None,
        "false_freeze_rate": cnt["fr_th"] / n_th if n_th else None,
    }


def _onsets(series: np.ndarray, doy: np.ndarray, years: np.ndarray, persist: int) -> np.ndarray:
    """[n_years, 2] spring-thaw and autumn-freeze onset day-of-year (NaN where none)."""
    uniq = np.unique(years)
    out = np.full((len(uniq), 2), np.nan)
    for k, yr in enumerate(uniq):
        sel = np.flatnonzero((years == yr) & (series >= 0))
        s, d = series[sel], doy[sel]
        for col, (want, lo, hi) in enumerate(((1, 32, 212), (0, 213, 366))):
            for i in range(len(s) - persist + 1):
                if lo <= d[i] <= hi and np.all(s[i:i + persist] == want):
                    out[k, col] = d[i]
                    break
    return out


def transition_errors(predicted: xr.DataArray, reference: xr.DataArray, *, persist: int = 5,
                      series_dims=(dims.STATION, dims.PASS)) -> dict:
    """Spring thaw-onset and autumn freeze-onset date errors (retrieved − reference) [days].

    An onset is the first valid day (Feb–Jul for thaw, Aug–Dec for freeze) that starts
    ``persist`` consecutive valid days of the new state, per series and calendar year.
    Works eagerly on small station arrays (time, *series_dims).
    """
    t = predicted[dims.TIME]
    doy, years = t.dt.dayofyear.values, t.dt.year.values
    p = predicted.transpose(dims.TIME, *series_dims).values
    r = reference.transpose(dims.TIME, *series_dims).values
    p2, r2 = p.reshape(len(t), -1), r.reshape(len(t), -1)
    errs = {"spring_thaw": [], "autumn_freeze": []}
    for j in range(p2.shape[1]):
        a = _onsets(p2[:, j], doy, years, persist)
        b = _onsets(r2[:, j], doy, years, persist)
        for col, key in enumerate(errs):
            ok = np.isfinite(a[:, col]) & np.isfinite(b[:, col])
            errs[key].extend((a[ok, col] - b[ok, col]).tolist())
    out = {}
    for key, e in errs.items():
        e = np.asarray(e)
        out[key] = {"n": int(e.size), "mean_error_days": float(e.mean()) if e.size else None,
                    "mean_abs_error_days": float(np.abs(e).mean()) if e.size else None}
    return out
