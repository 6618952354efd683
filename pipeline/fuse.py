"""Fusion of per-sensor soil moisture into one daily record (science.md §3.6).

Pure stages: error variances per source from triple collocation (TC) where a triplet of
sources overlaps, otherwise from a given validation error; inverse-variance weighting; the
fused product's ``soil_moisture_uncertainty``, ``n_sources``, ``source_mask`` and
``land_coverage`` (data-contract.md); hand-over diagnostics.

TC error model ``x_i = α_i + β_i Θ + ε_i`` (Gruber et al. 2016): with the covariances of a
triplet (x, y, z) over their common days::

    σ²_εx = σ_x² − σ_xy σ_xz / σ_yz        β_y / β_x = σ_xz / σ_yz

Error variances are reported in the scale of the triplet's first member (the *scaled* error of
``pytesmo.metrics.tcol_metrics``); after the LSTM all sources are in SMAP units, so the scales
agree to within the harmonisation error.
"""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

from pipeline import dims

__all__ = [
    "daily_mean_of_passes",
    "fuse_sensors",
    "handover_diagnostics",
    "match_means",
    "match_methods",
    "mean_offsets",
    "stack_sources",
    "tc_error_variance",
    "triplet_error_variance",
]

SENSOR = dims.SENSOR


def daily_mean_of_passes(sm: xr.DataArray) -> xr.DataArray:
    """Mean over the ``pass`` dim of the available passes (NaN where none)."""
    return sm.mean(dims.PASS, skipna=True) if dims.PASS in sm.dims else sm


def stack_sources(sources: dict[str, xr.DataArray]) -> xr.DataArray:
    """Stack daily soil moisture of each source on a ``sensor`` dim (outer join in time)."""
    names = list(sources)
    arrays = [daily_mean_of_passes(sources[n]).drop_vars(
        [c for c in sources[n].coords if c not in (dims.TIME, dims.Y, dims.X)], errors="ignore")
        for n in names]
    return xr.concat(arrays, dim=SENSOR, join="outer").assign_coords({SENSOR: names})


# Who is matched to whom, in order: (source, references).  The references are already matched
# when their turn comes, so every source ends on the SMAP retrieval's per-cell mean — the ESA
# CCI practice of scaling all products to one reference before merging (science.md §3.6).
# TMI has no SMAP overlap (it ended Apr 2015): it goes through GMI/AMSR2 (2014-03..2015-04);
# AMSR-E goes through TMI (2002–2011, ±38° only); outside ±38° it has no overlapping reference
# and falls back to CLIMATOLOGY_FALLBACK below.
MATCH_CHAIN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("amsr2", ("smap",)), ("gmi", ("smap",)), ("tmi", ("gmi", "amsr2")), ("amsre", ("tmi",)))
MIN_OVERLAP_DAYS = 30
# Where a source has too few common days with its references (AMSR-E outside TMI's ±38°), its
# long-term mean is matched to that of these already-matched sources over their own records
# instead: AMSR-E (2002-06..2011-10) to AMSR2 (2012-07..) across the 2011-12 gap, the way CCI
# bridges sensors without overlap.  One all-year offset per cell (monthly ones would carry the
# two periods' different weather into the seasonal cycle).  It assumes the cell's climatology
# is the same in both periods (no trend, no land-cover change) and that both records sample
# the seasons alike (AMSR-E's last year ends in October); the report counts the cells.
CLIMATOLOGY_FALLBACK: dict[str, tuple[str, ...]] = {"amsre": ("amsr2",)}
# offset method per matched source and cell (match_methods)
NOT_MATCHED, BY_OVERLAP, BY_CLIMATOLOGY = 0, 1, 2


def _ref_series(out: np.ndarray, refs: list[int]) -> np.ndarray:
    if len(refs) == 1:
        return out[..., refs[0], :]
    # the mean of the references present; NaN on days with none (a sum and a count: nanmean
    # warns there, and silencing warnings is not thread-safe under the threaded scheduler)
    v = out[..., refs, :]
    n = np.isfinite(v).sum(axis=-2)
    return np.where(n > 0, np.nansum(v, axis=-2) / np.maximum(n, 1), np.nan).astype(out.dtype)


def _monthly_offsets(x: np.ndarray, ref: np.ndarray, m0: np.ndarray, min_overlap: int,
                     monthly: bool, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    """(offsets (…, 12), enough (…)): mean(ref) − mean(x), per calendar month and all-year.

    ``paired``: over the days both have (overlap matching); else each over its own days
    (climatology matching, the periods need not overlap).
    """
    if paired:
        ok = np.isfinite(x) & np.isfinite(ref)
        xs, rs = np.where(ok, x, np.nan), np.where(ok, ref, np.nan)
    else:
        xs, rs = x, ref

    def mean_diff(sel):
        nx, nr = np.isfinite(xs[..., sel]).sum(-1), np.isfinite(rs[..., sel]).sum(-1)
        d = (np.nansum(rs[..., sel], -1) / np.maximum(nr, 1)
             - np.nansum(xs[..., sel], -1) / np.maximum(nx, 1))
        return d, np.minimum(nx, nr)

    total, n = mean_diff(slice(None))
    enough = n >= min_overlap
    total = np.where(enough, total, 0.0)
    if not monthly:
        return np.repeat(total[..., None], 12, axis=-1).astype(np.float32), enough
    per = np.empty(x.shape[:-1] + (12,), np.float32)
    for m in range(12):
        d, n_m = mean_diff(m0 == m)
        per[..., m] = np.where(n_m >= max(min_overlap // 3, 1), d, total)
    return np.where(enough[..., None], per, 0.0).astype(np.float32), enough


def _offsets_numpy(a: np.ndarray, names: list[str], months: np.ndarray, chain,
                   min_overlap: int, monthly: bool, climatology=()
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Core of :func:`mean_offsets` on a block ``a`` (…, sensor, time) with the whole record.

    Returns (matched block, offsets (…, len(chain), 12), method (…, len(chain)) int8);
    offsets are 0 for unmatched sources.
    """
    a = np.asarray(a, np.float32)
    out = a.copy()
    offs = np.zeros(a.shape[:-2] + (len(chain), 12), np.float32)
    how = np.zeros(a.shape[:-2] + (len(chain),), np.int8)
    idx = {n: i for i, n in enumerate(names)}
    clim = dict(climatology)
    m0 = months.astype(int) - 1
    for k, (src, refs) in enumerate(chain):
        refs = [idx[r] for r in refs if r in idx]
        if src not in idx or not refs:
            continue
        x = out[..., idx[src], :]
        per, enough = _monthly_offsets(x, _ref_series(out, refs), m0, min_overlap, monthly,
                                       paired=True)
        how[..., k] = np.where(enough, BY_OVERLAP, NOT_MATCHED)
        crefs = [idx[r] for r in clim.get(src, ()) if r in idx]
        if crefs and not enough.all():
            # one offset per cell: month by month, the two periods' different weather
            # (≈ 0.05 / sqrt(8 years) per month) would reshape the seasonal cycle
            cper, cenough = _monthly_offsets(x, _ref_series(out, crefs), m0, min_overlap,
                                             False, paired=False)
            use = ~enough & cenough
            per = np.where(use[..., None], cper, per)
            how[..., k] = np.where(use, BY_CLIMATOLOGY, how[..., k])
        offs[..., k, :] = per
        out[..., idx[src], :] = x + np.take(per, m0, axis=-1)
    return out, offs, how


def _core(stack: xr.DataArray, chain, min_overlap: int, monthly: bool, which: int,
          climatology):
    names = [str(n) for n in stack[SENSOR].values]
    months = np.asarray(stack[dims.TIME].dt.month.values)
    climatology = tuple((s, tuple(r)) for s, r in dict(climatology).items())

    def fn(a):
        return _offsets_numpy(a, names, months, chain, min_overlap, monthly,
                              climatology)[which]

    core = [[SENSOR, dims.TIME]]
    if which == 0:
        return xr.apply_ufunc(fn, stack, input_core_dims=core,
                              output_core_dims=[[SENSOR, dims.TIME]], dask="parallelized",
                              output_dtypes=[np.float32])
    if which == 2:
        return xr.apply_ufunc(fn, stack, input_core_dims=core, output_core_dims=[["matched"]],
                              dask="parallelized", output_dtypes=[np.int8],
                              dask_gufunc_kwargs={"output_sizes": {"matched": len(chain)}})
    return xr.apply_ufunc(fn, stack, input_core_dims=core,
                          output_core_dims=[["matched", "month"]], dask="parallelized",
                          output_dtypes=[np.float32],
                          dask_gufunc_kwargs={"output_sizes": {"matched": len(chain),
                                                               "month": 12}})


def _matched(stack, chain):
    present = [str(n) for n in stack[SENSOR].values]
    return [(k, s) for k, (s, refs) in enumerate(chain)
            if s in present and any(r in present for r in refs)]


def mean_offsets(stack: xr.DataArray, chain=MATCH_CHAIN, min_overlap: int = MIN_OVERLAP_DAYS,
                 monthly: bool = True, climatology=CLIMATOLOGY_FALLBACK
                 ) -> dict[str, xr.DataArray]:
    """Per-cell additive offsets (month, y, x) [m3 m-3] that give each source its reference's mean.

    For a source and the mean of its (already matched) references, the offset is
    ``mean(reference) − mean(source)`` over the days both have, where there are at least
    ``min_overlap`` such days; 0 elsewhere.  ``monthly``: one offset per calendar month, so a
    seasonal error of one source relative to the reference makes no step where the source set
    changes; months with fewer than ``min_overlap // 3`` common days take the all-year offset
    (``monthly=False``: the all-year offset in every month).  Lazy on dask input; each block
    needs the whole record (time in one chunk); pixels are independent.

    ``climatology``: for the sources named, cells without ``min_overlap`` common days take the
    difference of the long-term means instead, each over its own record (see
    :data:`CLIMATOLOGY_FALLBACK`; :func:`match_methods` says which cells).
    """
    chain = tuple((s, tuple(r)) for s, r in chain)
    offs = _core(stack, chain, min_overlap, monthly, 1, climatology)
    return {s: offs.isel(matched=k).assign_coords(month=np.arange(1, 13)).transpose(
        "month", ...) for k, s in _matched(stack, chain)}


def match_methods(stack: xr.DataArray, chain=MATCH_CHAIN, min_overlap: int = MIN_OVERLAP_DAYS,
                  monthly: bool = True, climatology=CLIMATOLOGY_FALLBACK
                  ) -> dict[str, xr.DataArray]:
    """How each matched source was matched per cell: :data:`NOT_MATCHED`, :data:`BY_OVERLAP`
    or :data:`BY_CLIMATOLOGY` (int8, lazy on dask input)."""
    chain = tuple((s, tuple(r)) for s, r in chain)
    how = _core(stack, chain, min_overlap, monthly, 2, climatology)
    return {s: how.isel(matched=k) for k, s in _matched(stack, chain)}


def match_means(stack: xr.DataArray, chain=MATCH_CHAIN, min_overlap: int = MIN_OVERLAP_DAYS,
                monthly: bool = True, climatology=CLIMATOLOGY_FALLBACK) -> xr.DataArray:
    """``stack`` with :func:`mean_offsets` added to each matched source (lazy)."""
    chain = tuple((s, tuple(r)) for s, r in chain)
    return _core(stack, chain, min_overlap, monthly, 0, climatology).transpose(
        *stack.dims).astype(stack.dtype)


def triplet_error_variance(x: xr.DataArray, y: xr.DataArray, z: xr.DataArray, *,
                           dim: str = dims.TIME, min_samples: int = 100) -> xr.Dataset:
    """TC error variances of a triplet along ``dim`` (common samples only).

    Returns:
      Dataset with ``err_var`` (member, …) in the scale of ``x`` [units²] (NaN where negative or
      fewer than ``min_samples`` common samples), ``beta`` (member, …) = scaling onto ``x``, and
      ``n`` (…) the number of common samples.
    """
    ok = x.notnull() & y.notnull() & z.notnull()
    n = ok.sum(dim)
    xs, ys, zs = x.where(ok), y.where(ok), z.where(ok)
    ddof = 1

    def cov(a, b):
        am, bm = a.mean(dim), b.mean(dim)
        return ((a - am) * (b - bm)).sum(dim) / (n - ddof).where(n > ddof)

    def nz(c):                           # a zero covariance makes the triplet invalid (NaN)
        return c.where(c != 0)

    cxx, cyy, czz = cov(xs, xs), cov(ys, ys), cov(zs, zs)
    cxy, cxz, cyz = cov(xs, ys), cov(xs, zs), cov(ys, zs)
    ex = cxx - cxy * cxz / nz(cyz)
    ey = cyy - cxy * cyz / nz(cxz)
    ez = czz - cxz * cyz / nz(cxy)
    beta_y = cxz / nz(cyz)
    beta_z = cxy / nz(cyz)
    err = xr.concat([ex, ey * beta_y**2, ez * beta_z**2], dim="member")
    enough = (n >= min_samples)
    err = err.where(enough & (err > 0))
    beta = xr.concat([xr.ones_like(beta_y), beta_y, beta_z], dim="member").where(enough)
    return xr.Dataset({"err_var": err, "beta": beta, "n": n})


def tc_error_variance(stack: xr.DataArray, *, min_samples: int = 100,
                      fallback: dict[str, float] | None = None) -> xr.Dataset:
    """Error variance of every source per cell, from the best-sampled valid triplet.

    Args:
      stack: Daily soil moisture (sensor, time, y, x) [m3 m-3] from :func:`stack_sources`.
      min_samples: Least common days for a triplet to count.
      fallback: Error variance per sensor [(m3 m-3)²] (e.g. ubRMSD² of the harmonised product
        against the SMAP target on held-out data) where no triplet is valid.

    Returns:
      Dataset with ``err_var`` (sensor, y, x) [m6 m-6] and ``err_var_source`` (sensor, y, x)
      int8: 1 from TC, 2 from the fallback, 0 unknown.
    """
    names = list(stack[SENSOR].values)
    best_n = xr.zeros_like(stack.isel({dims.TIME: 0, SENSOR: 0}, drop=True), dtype=np.float64)
    best = xr.full_like(best_n, np.nan)
    err = {n: (best.copy(), best_n.copy()) for n in names}
    for trip in itertools.combinations(names, 3):
        res = triplet_error_variance(*(stack.sel({SENSOR: s}, drop=True) for s in trip),
                                     min_samples=min_samples)
        for k, s in enumerate(trip):
            cur, cur_n = err[s]
            e = res["err_var"].isel(member=k, drop=True)
            better = e.notnull() & (res["n"] > cur_n)
            err[s] = (xr.where(better, e, cur), xr.where(better, res["n"], cur_n))
    ev = xr.concat([err[n][0] for n in names], dim=SENSOR).assign_coords({SENSOR: names})
    source = xr.where(ev.notnull(), 1, 0).astype(np.int8)
    if fallback:
        fb = xr.DataArray([fallback.get(n, np.nan) for n in names], dims=SENSOR,
                          coords={SENSOR: names})
        use_fb = ev.isnull() & fb.notnull()
        ev = xr.where(use_fb, fb, ev)
        source = xr.where(use_fb, 2, source).astype(np.int8)
    ev = ev.transpose(SENSOR, ...)
    return xr.Dataset({
        "err_var": ev.assign_attrs(units="m6 m-6", long_name="error variance per source"),
        "err_var_source": source.assign_attrs(
            long_name="origin of the error variance", flag_values=[0, 1, 2],
            flag_meanings="unknown triple_collocation validation_fallback"),
    })


def fuse_sensors(stack: xr.DataArray, err_var: xr.DataArray, land: xr.DataArray) -> xr.Dataset:
    """Inverse-variance weighted merge of the available sources each day.

    Args:
      stack: Daily soil moisture (sensor, time, y, x) [m3 m-3].
      err_var: Error variance (sensor, y, x) [m6 m-6]; a source with NaN error variance gets
        the largest error variance of the cell (it still counts, with the least weight).
      land: Boolean (y, x): land cells over which ``land_coverage`` is computed.

    Returns:
      The fused soil-moisture product (data-contract.md): ``soil_moisture``,
      ``soil_moisture_uncertainty`` (time, y, x), ``n_sources`` and ``source_mask`` (uint8,
      bits from :data:`pipeline.dims.SOURCE_BITS`), ``land_coverage`` (time).
    """
    ev = err_var.fillna(err_var.max(SENSOR))
    ev = ev.where(ev > 0)
    present = stack.notnull() & ev.notnull()
    w = xr.where(present, 1.0 / ev, 0.0)
    wsum = w.sum(SENSOR)
    wpos = wsum.where(wsum > 0)          # NaN, not 0, where no source: no 0/0 in the tasks
    sm = (w * stack.fillna(0.0)).sum(SENSOR) / wpos
    unc = np.sqrt(1.0 / wpos)
    n = present.sum(SENSOR).astype(np.uint8)
    bits = xr.DataArray([1 << dims.SOURCE_BITS[str(s)] for s in stack[SENSOR].values],
                        dims=SENSOR, coords={SENSOR: stack[SENSOR]})
    mask = (present * bits).sum(SENSOR).astype(np.uint8)
    land = land.astype(bool)
    coverage = (sm.notnull() & land).sum((dims.Y, dims.X)) / land.sum()
    out = xr.Dataset({
        dims.SOIL_MOISTURE: sm.astype(np.float32).assign_attrs(
            units="m3 m-3", long_name="fused volumetric soil moisture (liquid, 0-5 cm)",
            standard_name="volume_fraction_of_condensed_water_in_soil"),
        dims.SOIL_MOISTURE_UNCERTAINTY: unc.astype(np.float32).assign_attrs(
            units="m3 m-3", long_name="1-sigma uncertainty of the fused soil moisture"),
        dims.N_SOURCES: n.assign_attrs(units="1", long_name="number of sources merged"),
        dims.SOURCE_MASK: mask.assign_attrs(
            units="1", long_name="bit mask of the sources merged",
            flag_masks=[1 << b for b in dims.SOURCE_BITS.values()],
            flag_meanings=" ".join(dims.SOURCE_BITS)),
        dims.LAND_COVERAGE: coverage.astype(np.float32).assign_attrs(
            units="1", long_name="fraction of land cells with a fused value"),
    })
    return out.transpose(dims.TIME, dims.Y, dims.X)


HANDOVERS = {
    "tmi-start-1997-12": "1997-12-07",
    "amsre-start-2002-06": "2002-06-01",
    "amsre-end-2011-10": "2011-10-04",
    "amsr2-start-2012-07": "2012-07-02",
    "gmi-start-2014-03": "2014-03-04",
    "tmi-end-2015-04": "2015-04-08",
    "smap-start-2015-03": "2015-03-31",
}


def handover_diagnostics(sm: xr.DataArray, dates: dict[str, str] = HANDOVERS, *,
                         window_days: int = 60, reference: xr.DataArray | None = None,
                         min_days: int = 10) -> dict[str, dict]:
    """Mean shift across each sensor hand-over (eager: returns small numbers).

    The shift is the change in the mean from ``window_days`` before to ``window_days`` after
    the date.  With ``reference`` (e.g. the truth), it is the shift of ``sm − reference``,
    which removes the natural seasonal change across the window.

    ``sm`` (time,) is one series.  With spatial dims (time, y, x) the shift is taken per pixel
    (pixels with ≥ ``min_days`` values in both windows) and averaged over pixels
    (``n_pixels``): a spatial mean over whichever pixels have data mixes in pixels that enter
    or leave the mean across the window (ground thawing in spring), which a hand-over does not
    cause.

    The same shift is also measured on the same calendar date of every other year whose
    windows fit in the record (``same_date_other_years``: n, median, min, max): without a
    hand-over it is the diagnostic's own noise and seasonal pattern, the yardstick for the shift
    at the hand-over.

    Returns:
      ``{name: {"date", "mean_before", "mean_after", "shift", "same_date_other_years"}}``
      (m3 m-3; + ``n_pixels`` per pixel); dates outside the record are skipped.
    """
    out = {}
    t = sm[dims.TIME]
    series = sm if reference is None else sm - reference
    space = [d for d in series.dims if d != dims.TIME]
    first, last = t.values.min(), t.values.max()
    window = np.timedelta64(window_days, "D")

    def sums(day):
        """Lazy (sum, count) before and after ``day`` (per pixel with spatial dims)."""
        before = series.sel({dims.TIME: slice(day - window, day - np.timedelta64(1, "D"))})
        after = series.sel({dims.TIME: slice(day, day + window)})
        dim = dims.TIME if space else None
        return (before.sum(dim), before.count(dim), after.sum(dim), after.count(dim))

    def shift(s):
        sb, nb, sa, na = (np.asarray(v, np.float64) for v in s)
        if not space:
            return (sb / nb if nb else np.nan), (sa / na if na else np.nan), None
        ok = (nb >= min_days) & (na >= min_days)
        n = int(ok.sum())
        if not n:
            return np.nan, np.nan, 0
        return float(np.mean(sb[ok] / nb[ok])), float(np.mean(sa[ok] / na[ok])), n

    # every window of every date (and of the same date in the other years) in one compute:
    # one pass over the data instead of a small compute per window
    plan = {}
    for name, d in dates.items():
        day = np.datetime64(d, "ns")
        if day <= first or day >= last:
            continue
        others = []
        for year in range(int(str(first)[:4]), int(str(last)[:4]) + 1):
            try:
                other = np.datetime64(f"{year}{d[4:10]}", "ns")
            except ValueError:          # 29 February in a common year
                continue
            if other != day and first <= other - window and other + window <= last:
                others.append(other)
        plan[name] = (d, day, others)
    days = list(dict.fromkeys(day for _, d0, others in plan.values() for day in [d0, *others]))
    got = {}
    if days:
        parts = [sums(day) for day in days]
        ds = xr.Dataset({k: xr.concat([p[i] for p in parts], dim="window")
                         for i, k in enumerate(("sb", "nb", "sa", "na"))}).compute()
        got = {day: tuple(ds[k].isel(window=i).values for k in ("sb", "nb", "sa", "na"))
               for i, day in enumerate(days)}

    def num(v):                           # JSON has no NaN: None where no pixel qualified
        return float(v) if np.isfinite(v) else None

    for name, (d, day, others) in plan.items():
        mb, ma, n_pix = shift(got[day])
        diffs = [a - b for b, a, _ in (shift(got[o]) for o in others) if np.isfinite(a - b)]
        null = ({"n": len(diffs), "median": float(np.median(diffs)),
                 "min": float(np.min(diffs)), "max": float(np.max(diffs))}
                if diffs else {"n": 0})
        out[name] = {"date": d, "mean_before": num(mb), "mean_after": num(ma),
                     "shift": num(ma - mb), "same_date_other_years": null}
        if n_pix is not None:
            out[name]["n_pixels"] = n_pix
    return out
