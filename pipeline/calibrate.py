"""Cross-calibration of TB between sensors: channel matching, collocation, fits and transforms.

Pure stages (no I/O, no scheduling): they take and return xarray objects and give the same
answer on numpy- and dask-backed input.  The graph in :mod:`pipeline.graphs.calibration`
decides what to load and write.

Model of one per-channel transform from a *source* sensor onto a *reference* sensor
(fitted over their overlap on collocated observations)::

    linear:  tb_ref ≈ offset + slope · tb_src + drift · τ,   τ = (t − t0) / 10 years
    cdf:     tb_ref ≈ F_ref⁻¹(F_src(tb_src))                 (piecewise linear in percentiles)

``t0`` is the source sensor's first day, so ``drift`` is in K per decade of the source's life
(the same convention as the simulator's injected calibration, data-contract.md ``truth``).
Transforms are fitted *globally* (one per channel), *per land-cover class*, or *per cell*; the
granularity is chosen per channel by the residual on held-out days (:func:`select_granularity`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from pipeline import dims, sensors

__all__ = [
    "DECADE_DAYS",
    "apply_transform",
    "cdf_fit",
    "cdf_predict",
    "collocate",
    "decades_since",
    "fit_cdf",
    "fit_linear",
    "linear_fit",
    "match_channels",
]

DECADE_DAYS = 3652.425
GROUP = "group"
SAMPLE = "sample"
PERCENTILE = "percentile"

# Frequencies [GHz] that are matched across sensors (science.md §3.3): the nearest frequency
# with the same polarization, provided both fall in one of these bands.
FREQUENCY_BANDS_GHZ: tuple[tuple[float, float], ...] = (
    (6.0, 7.5),      # C band: 6.93 / 7.3 (AMSR only)
    (10.0, 11.0),    # X band: 10.65
    (18.0, 20.0),    # K band: 18.7 / 19.35
    (21.0, 24.5),    # water vapour: 21.3 / 22.235 / 23.8
    (35.0, 38.0),    # Ka band: 36.5 / 36.64 / 37.0
    (80.0, 92.0),    # W band: 85.5 / 89.0
)


def _band(freq_ghz: float) -> int | None:
    for i, (lo, hi) in enumerate(FREQUENCY_BANDS_GHZ):
        if lo <= freq_ghz <= hi:
            return i
    return None


def match_channels(src: str, ref: str) -> dict[str, str]:
    """Map each source channel to the reference channel of nearest frequency, same polarization.

    Channels with no counterpart in the same band (e.g. 6.93 GHz onto TMI) are left out.

    Args:
      src, ref: Sensor names in the sensor catalog.

    Returns:
      ``{src_label: ref_label}``.
    """
    s, r = sensors.get(src), sensors.get(ref)
    out: dict[str, str] = {}
    for c in s.channels:
        band = _band(c.frequency_ghz)
        cands = [
            k for k in r.channels
            if k.polarization == c.polarization and band is not None
            and _band(k.frequency_ghz) == band
        ]
        if cands:
            best = min(cands, key=lambda k: abs(k.frequency_ghz - c.frequency_ghz))
            out[c.label] = best.label
    return out


def decades_since(time: xr.DataArray, start: np.datetime64 | str) -> xr.DataArray:
    """Elapsed time since ``start`` in decades (float64), same dims as ``time``."""
    days = (time - np.datetime64(start, "ns")) / np.timedelta64(1, "D")
    return days / DECADE_DAYS


def collocate(
    src: xr.Dataset,
    ref: xr.Dataset,
    channels: dict[str, str],
    *,
    max_dt_h: float = 1.0,
) -> xr.Dataset:
    """Pair source and reference TB observed in the same cell, day and pass, close in time.

    Args:
      src, ref: TB stores (data-contract ``tb``: ``tb`` (time, pass, channel, y, x) [K] and
        ``local_time`` (time, pass, y, x) [h]) on the same grid window.
      channels: ``{src_label: ref_label}`` from :func:`match_channels`.
      max_dt_h: Largest allowed difference of local solar time [h] (circular over 24 h), which
        limits diurnal-cycle differences between sensors with different overpass times.

    Returns:
      Dataset with ``src`` and ``ref`` (time, pass, channel, y, x) [K] on the common days, the
      channel dim labelled by the *source* labels (``ref_channel`` coord gives the partner),
      NaN wherever either is missing or the time difference is too large.
    """
    times = np.intersect1d(src[dims.TIME].values, ref[dims.TIME].values)
    s = src.sel({dims.TIME: times})
    r = ref.sel({dims.TIME: times})
    src_labels = list(channels)
    ref_labels = [channels[k] for k in src_labels]
    tb_s = s[dims.TB].sel({dims.CHANNEL: src_labels})
    tb_r = r[dims.TB].sel({dims.CHANNEL: ref_labels}).assign_coords(
        {dims.CHANNEL: src_labels}
    )
    dt = abs(s[dims.LOCAL_TIME] - r[dims.LOCAL_TIME])
    dt = xr.where(dt > 12.0, 24.0 - dt, dt)
    ok = (dt <= max_dt_h) & tb_s.notnull() & tb_r.notnull()
    keep = [dims.FREQUENCY_COORD, dims.POLARIZATION_COORD]
    tb_s = tb_s.drop_vars([c for c in tb_s.coords if c not in tb_s.dims and c not in keep])
    tb_r = tb_r.drop_vars([c for c in tb_r.coords if c not in tb_r.dims])
    out = xr.Dataset({"src": tb_s.where(ok), "ref": tb_r.where(ok)})
    out = out.assign_coords(ref_channel=(dims.CHANNEL, ref_labels))
    out["src"].attrs = {"units": "K", "long_name": "source TB (collocated)"}
    out["ref"].attrs = {"units": "K", "long_name": "reference TB (collocated)"}
    return out


# --- linear -------------------------------------------------------------------------------
def linear_fit(x: np.ndarray, y: np.ndarray, t: np.ndarray | None = None) -> np.ndarray:
    """Ordinary least squares ``y = offset + slope·x (+ drift·t)`` on finite pairs.

    Args:
      x, y: Samples along the last axis [K]; NaN pairs are ignored.
      t: Optional time regressor (decades), same shape; when given a drift is fitted.

    Returns:
      ``[..., 4]``: offset [K], slope [1], drift [K/decade] (0 without ``t``), n pairs.
      NaN parameters where fewer than 3 (4 with drift) pairs exist.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if t is not None:
        t = np.broadcast_to(np.asarray(t, np.float64), x.shape)
        ok &= np.isfinite(t)
    n = ok.sum(-1)
    w = ok.astype(np.float64)
    xs, ys = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (xs * w).sum(-1) / n
        my = (ys * w).sum(-1) / n
        dx = np.where(ok, xs - mx[..., None], 0.0)
        dy = np.where(ok, ys - my[..., None], 0.0)
        sxx, sxy = (dx * dx).sum(-1), (dx * dy).sum(-1)
        if t is None:
            slope = sxy / sxx
            drift = np.zeros_like(slope)
            offset = my - slope * mx
            enough = n >= 3
        else:
            ts = np.where(ok, t, 0.0)
            mt = (ts * w).sum(-1) / n
            dt = np.where(ok, ts - mt[..., None], 0.0)
            stt, sxt, syt = (dt * dt).sum(-1), (dx * dt).sum(-1), (dy * dt).sum(-1)
            det = sxx * stt - sxt * sxt
            slope = (sxy * stt - syt * sxt) / det
            drift = (syt * sxx - sxy * sxt) / det
            offset = my - slope * mx - drift * mt
            enough = (n >= 4) & (np.abs(det) > 1e-12 * np.maximum(sxx * stt, 1e-300))
    out = np.stack([offset, slope, drift, n.astype(np.float64)], axis=-1)
    out[..., :3] = np.where(enough[..., None], out[..., :3], np.nan)
    return out


# --- CDF matching -------------------------------------------------------------------------
def _percentile_values(sorted_x: np.ndarray, pct: np.ndarray) -> np.ndarray:
    """Percentile values with ranks at (i + 0.5)/n (Matlab/IDL convention), ends held."""
    n = sorted_x.size
    rank = 100.0 * (np.arange(n) + 0.5) / n
    vals = np.interp(pct, rank, sorted_x, left=sorted_x[0], right=sorted_x[-1])
    # Ties make the mapping non-invertible: re-interpolate from the first of each tied run.
    _, first = np.unique(vals, return_index=True)
    if 1 < first.size < pct.size:
        p_keep = pct[first].copy()
        p_keep[-1] = pct[-1]
        vals = np.interp(pct, p_keep, vals[first])
    return vals


def _edge_slope(xs: np.ndarray, ys: np.ndarray) -> float:
    """Least-squares slope through the origin after resampling ``xs`` to ``len(ys)`` ranks."""
    if xs.size != ys.size:
        pct = np.arange(ys.size, dtype=np.float64) / max(ys.size - 1, 1) * 100.0
        xs = _percentile_values(np.sort(xs), pct)
    den = float(np.dot(xs, xs))
    return float(np.dot(xs, ys) / den) if den > 0 else 0.0


def cdf_fit(x: np.ndarray, y: np.ndarray, nbins: int = 100, minobs: int = 20) -> np.ndarray:
    """Fit a CDF-matching transform of ``x`` onto ``y`` (pairs with a NaN are dropped together).

    Percentile breakpoints at ``0, 100/nbins, …, 100`` (fewer bins when a bin would hold fewer
    than ``minobs`` pairs), with the two outer breakpoints of ``y`` from a linear regression of
    the tails (linear edge scaling, Moesinger et al. 2020).

    Returns:
      ``[2, nbins + 1]``: source and reference breakpoints [K], right-padded with NaN when bins
      were merged; all NaN when fewer than ``minobs`` pairs.
    """
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    xu, yu = x[ok], y[ok]
    out = np.full((2, nbins + 1), np.nan)
    n = xu.size
    if n < max(minobs, 2):
        return out
    nb = nbins
    if n * (100.0 / nbins) / 100.0 < minobs:
        nb = int(np.clip(n // minobs, 1, nbins))
    if nb == 1:
        xm, ym = xu.mean(), yu.mean()
        dx = xu - xm
        slope = float(np.dot(dx, yu - ym) / np.dot(dx, dx)) if np.dot(dx, dx) > 0 else 1.0
        out[0, :2] = [0.0, 1.0]
        out[1, :2] = [ym - xm * slope, ym - xm * slope + slope]
        return out
    pct = np.arange(nb + 1, dtype=np.float64) / nb * 100.0
    xs, ys = np.sort(xu), np.sort(yu)
    xp = _percentile_values(xs, pct)
    yp = _percentile_values(ys, pct)
    lo_x, lo_y = xs[xs <= xp[1]] - xp[1], ys[ys <= yp[1]] - yp[1]
    yp[0] = yp[1] + _edge_slope(lo_x, lo_y) * (xp[0] - xp[1])
    hi_x, hi_y = xs[xs >= xp[-2]] - xp[-2], ys[ys >= yp[-2]] - yp[-2]
    yp[-1] = yp[-2] + _edge_slope(hi_x, hi_y) * (xp[-1] - xp[-2])
    out[0, : nb + 1] = xp
    out[1, : nb + 1] = yp
    return out


def cdf_predict(x: np.ndarray, breakpoints: np.ndarray) -> np.ndarray:
    """Apply :func:`cdf_fit` breakpoints: piecewise linear, extrapolated beyond the ends."""
    x = np.asarray(x, np.float64)
    xp, yp = breakpoints[0], breakpoints[1]
    keep = np.isfinite(xp) & np.isfinite(yp)
    xp, yp = xp[keep], yp[keep]
    if xp.size < 2:
        return np.full(x.shape, np.nan)
    out = np.interp(x, xp, yp)
    lo_slope = (yp[1] - yp[0]) / (xp[1] - xp[0]) if xp[1] != xp[0] else 1.0
    hi_slope = (yp[-1] - yp[-2]) / (xp[-1] - xp[-2]) if xp[-1] != xp[-2] else 1.0
    out = np.where(x < xp[0], yp[0] + lo_slope * (x - xp[0]), out)
    out = np.where(x > xp[-1], yp[-1] + hi_slope * (x - xp[-1]), out)
    return np.where(np.isfinite(x), out, np.nan)


# --- grouped fits on collocated pairs -----------------------------------------------------
def _groups(pairs: xr.Dataset, granularity: str, landcover: xr.DataArray | None) -> xr.DataArray:
    """Integer group id per cell (y, x): 0 (global), the land-cover class, or the cell index."""
    ny, nx = pairs.sizes[dims.Y], pairs.sizes[dims.X]
    if granularity == "global":
        g = np.zeros((ny, nx), np.int64)
    elif granularity == "landcover":
        if landcover is None:
            raise ValueError("granularity 'landcover' needs the static landcover layer")
        return landcover.astype(np.int64)
    elif granularity == "cell":
        g = np.arange(ny * nx, dtype=np.int64).reshape(ny, nx)
    else:
        raise ValueError(f"unknown granularity {granularity!r}: use global, landcover or cell")
    return xr.DataArray(g, dims=(dims.Y, dims.X),
                        coords={dims.Y: pairs[dims.Y], dims.X: pairs[dims.X]})


def _group_matrix(values: np.ndarray, groups: np.ndarray, gids: np.ndarray) -> list[np.ndarray]:
    """Samples of each group: ``values[..., y, x, s]`` → one ``[..., n]`` array per group id."""
    lead = values.shape[:-3]
    ny, nx, ns = values.shape[-3:]
    flat = values.reshape(lead + (ny * nx, ns))
    g = np.asarray(groups).reshape(-1)
    return [flat[..., g == gid, :].reshape(lead + (-1,)) for gid in gids]


def _fit_kernel(x, y, t, groups, *, gids, method, nbins, minobs):
    """x, y, t: (..., y, x, sample); groups (y, x) → params (..., group, k)."""
    xs = _group_matrix(x, groups, gids)
    ys = _group_matrix(y, groups, gids)
    if method == "linear":
        ts = _group_matrix(t, groups, gids) if t is not None else [None] * len(gids)
        res = [linear_fit(a, b, c) for a, b, c in zip(xs, ys, ts, strict=True)]
    else:
        res = []
        for a, b in zip(xs, ys, strict=True):
            lead = a.shape[:-1]
            fl = [cdf_fit(ai, bi, nbins, minobs) for ai, bi in
                  zip(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]), strict=True)]
            res.append(np.stack(fl).reshape(lead + (-1,)))
    return np.stack(res, axis=-2)


def _sample_view(da: xr.DataArray) -> xr.DataArray:
    """(channel?, y, x, sample) with every other dim stacked into ``sample``."""
    other = [d for d in da.dims if d not in (dims.CHANNEL, dims.Y, dims.X)]
    lead = [d for d in (dims.CHANNEL,) if d in da.dims]
    v = da.transpose(*lead, dims.Y, dims.X, *other)
    v = v.drop_vars([c for c in v.coords if c not in (dims.CHANNEL, dims.Y, dims.X)])
    return v.stack({SAMPLE: other}).drop_vars([SAMPLE] + other, errors="ignore")


def _fit_grouped(pairs, groups, *, method, tau=None, nbins=0, minobs=0) -> xr.DataArray:
    """One fit per (channel, group): returns (channel, group, param)."""
    gids = np.unique(np.asarray(groups))
    args = [_sample_view(pairs["src"]), _sample_view(pairs["ref"])]
    core = [[dims.Y, dims.X, SAMPLE]] * 2
    if tau is not None:
        args.append(_sample_view(tau.broadcast_like(pairs["src"])))
        core.append([dims.Y, dims.X, SAMPLE])
    args.append(groups)
    core.append([dims.Y, dims.X])
    k = 4 if method == "linear" else 2 * (nbins + 1)

    def kern(*a):
        t = a[2] if tau is not None else None
        out = _fit_kernel(a[0], a[1], t, a[-1], gids=gids, method=method, nbins=nbins,
                          minobs=minobs)
        return out.reshape(out.shape[:-1] + (k,))

    res = xr.apply_ufunc(
        kern, *args, input_core_dims=core, output_core_dims=[[GROUP, "param"]],
        dask="parallelized", output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {GROUP: len(gids), "param": k},
                            "allow_rechunk": True},
    )
    return res.assign_coords({GROUP: gids})


def fit_linear(
    pairs: xr.Dataset,
    *,
    granularity: str = "global",
    landcover: xr.DataArray | None = None,
    drift_start: str | np.datetime64 | None = None,
) -> xr.Dataset:
    """Per-channel OLS transforms ``ref ≈ offset + slope·src (+ drift·τ)`` for each group.

    Args:
      pairs: Output of :func:`collocate`.
      granularity: ``"global"``, ``"landcover"`` or ``"cell"``.
      landcover: Static ``landcover`` (y, x) for per-class fits.
      drift_start: The source sensor's first day; when given a drift term is fitted with
        τ = decades since that day.

    Returns:
      Dataset (channel, group): ``offset`` [K], ``slope`` [1], ``drift`` [K/decade], ``n``; plus
      ``group_of_cell`` (y, x) mapping cells to groups.
    """
    groups = _groups(pairs, granularity, landcover)
    tau = None
    if drift_start is not None:
        tau = decades_since(pairs[dims.TIME], drift_start)
    p = _fit_grouped(pairs, groups, method="linear", tau=tau)
    out = xr.Dataset(
        {
            "offset": p.isel(param=0).assign_attrs(units="K", long_name="additive term"),
            "slope": p.isel(param=1).assign_attrs(units="1", long_name="multiplicative term"),
            "drift": p.isel(param=2).assign_attrs(units="K decade-1", long_name="drift term"),
            "n": p.isel(param=3).assign_attrs(units="1", long_name="collocated pairs"),
            "group_of_cell": groups.assign_attrs(long_name="fit group of each cell"),
        }
    )
    return out.assign_attrs(method="linear", granularity=granularity,
                            drift_start=str(drift_start) if drift_start is not None else "")


def fit_cdf(
    pairs: xr.Dataset,
    *,
    granularity: str = "global",
    landcover: xr.DataArray | None = None,
    nbins: int = 100,
    minobs: int = 20,
) -> xr.Dataset:
    """Per-channel CDF-matching transforms for each group (see :func:`cdf_fit`).

    Returns:
      Dataset with ``src_breakpoints`` and ``ref_breakpoints`` (channel, group, percentile) [K]
      and ``group_of_cell`` (y, x).
    """
    groups = _groups(pairs, granularity, landcover)
    p = _fit_grouped(pairs, groups, method="cdf", nbins=nbins, minobs=minobs)
    p = xr.concat([p.isel(param=slice(0, nbins + 1)), p.isel(param=slice(nbins + 1, None))],
                  dim="side").rename({"param": PERCENTILE})
    out = xr.Dataset(
        {
            "src_breakpoints": p.isel(side=0).assign_attrs(units="K"),
            "ref_breakpoints": p.isel(side=1).assign_attrs(units="K"),
            "group_of_cell": groups,
        }
    )
    return out.assign_attrs(method="cdf", granularity=granularity, nbins=nbins, minobs=minobs)


def _cell_params(coeffs: xr.Dataset, name: str) -> xr.DataArray:
    """Broadcast a per-group parameter onto (channel, y, x) via ``group_of_cell``."""
    g = coeffs["group_of_cell"]
    present = np.isin(np.asarray(g), np.asarray(coeffs[GROUP]))
    sel = coeffs[name].reindex({GROUP: np.unique(np.asarray(g))}).sel({GROUP: g})
    return sel.where(xr.DataArray(present, dims=g.dims)).drop_vars(GROUP, errors="ignore")


def _cdf_kernel(x: np.ndarray, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    """Elementwise CDF mapping; ``bx``/``by`` broadcast against ``x`` plus a breakpoint axis."""
    shape = np.broadcast_shapes(x.shape, bx.shape[:-1], by.shape[:-1])
    x = np.broadcast_to(x, shape)
    bx = np.broadcast_to(bx, (1,) * (len(shape) - bx.ndim + 1) + bx.shape)
    by = np.broadcast_to(by, (1,) * (len(shape) - by.ndim + 1) + by.shape)
    # Loop only over the distinct transforms (axes where the breakpoints vary).
    vary = tuple(i for i in range(len(shape)) if bx.shape[i] > 1 or by.shape[i] > 1)
    out = np.empty(shape, np.float64)
    for idx in np.ndindex(*[shape[i] for i in vary]):
        sel = dict(zip(vary, idx, strict=True))
        x_sl = tuple(sel.get(i, slice(None)) for i in range(len(shape)))
        b_sl = tuple(sel.get(i, 0) for i in range(len(shape)))
        out[x_sl] = cdf_predict(x[x_sl], np.stack([bx[b_sl], by[b_sl]]))
    return out


def apply_transform(tb: xr.DataArray, coeffs: xr.Dataset, *, fallback: xr.Dataset | None = None
                    ) -> xr.DataArray:
    """Map TB onto the reference scale with fitted transforms.

    Args:
      tb: ``tb`` (time, pass, channel, y, x) [K] of the source sensor; channels not in
        ``coeffs`` are returned as NaN.
      coeffs: Output of :func:`fit_linear` or :func:`fit_cdf`.
      fallback: Optional coefficients (typically global) used where ``coeffs`` has no fit for a
        cell (e.g. a land-cover class absent from the overlap region).

    Returns:
      Calibrated TB [K], same dims as ``tb``.
    """
    bare = tb.drop_vars([c for c in tb.coords if c not in tb.dims])
    chans = [c for c in bare[dims.CHANNEL].values if c in set(coeffs[dims.CHANNEL].values)]
    src = bare.sel({dims.CHANNEL: chans})
    if coeffs.attrs.get("method") == "linear":
        off = _cell_params(coeffs, "offset").sel({dims.CHANNEL: chans})
        slope = _cell_params(coeffs, "slope").sel({dims.CHANNEL: chans})
        drift = _cell_params(coeffs, "drift").sel({dims.CHANNEL: chans})
        start = coeffs.attrs.get("drift_start") or None
        tau = decades_since(tb[dims.TIME], start) if start else 0.0
        off, slope, drift = (v.drop_vars([c for c in v.coords if c not in v.dims])
                             for v in (off, slope, drift))
        if start and src.chunks is not None:
            # lazy like the TB: drift (cell) x tau (time) in numpy is a (time, channel, y, x)
            # array that dask would embed in the graph (196 MiB on the demo transect)
            tau = tau.chunk({dims.TIME: src.chunks[src.dims.index(dims.TIME)]})
        out = off + slope * src + drift.fillna(0.0) * tau
    else:
        xp, yp = (_cell_params(coeffs, k).sel({dims.CHANNEL: chans}) for k in
                  ("src_breakpoints", "ref_breakpoints"))
        xp, yp = (v.drop_vars([c for c in v.coords if c not in v.dims]) for v in (xp, yp))

        res = xr.apply_ufunc(
            _cdf_kernel, src, xp, yp,
            input_core_dims=[[], [PERCENTILE], [PERCENTILE]],
            dask="parallelized", output_dtypes=[np.float64],
        )
        out = res
    if fallback is not None:
        gaps = out.isnull() & src.notnull()
        # Eager input: only pay for the fallback when some cell lacks a fit.
        if out.chunks is not None or bool(gaps.any()):
            fb = apply_transform(bare.sel({dims.CHANNEL: chans}), fallback)
            out = out.fillna(fb.drop_vars([c for c in fb.coords if c not in fb.dims]))
    out = out.drop_vars([c for c in out.coords if c not in out.dims])
    if out.chunks is not None:
        # one channel chunk before adding the uncalibrated channels: reindexing chunks split
        # along channel multiplied the chunks by 10 (dask PerformanceWarning in every demo)
        out = out.chunk({dims.CHANNEL: -1})
    out = out.reindex({dims.CHANNEL: bare[dims.CHANNEL].values}).transpose(*tb.dims)
    return tb.copy(data=out.astype(np.float32).data)
