"""SMAP physical soil-moisture retrieval stage: TB + static layers → SM, VOD and QC flags.

A pure ``Dataset -> Dataset`` stage (docs/architecture.md): no I/O, no compute, identical on
numpy- and dask-backed input.  The per-pixel inversion (multi-channel collaborative retrieval,
:mod:`models.retrieval`, formulation in docs/soil-moisture.md) runs through
:func:`pipeline.apply.apply_array_kernel`, which the caller hands in as ``apply_kernel`` (the
graph :func:`pipeline.graphs.retrieval.retrieve` does): science stages import neither
:mod:`models` nor :mod:`pipeline.apply` (layering contract, architecture.md §4.2).

Product (docs/data-contract.md "SMAP physical soil moisture"): ``soil_moisture`` [m3 m-3],
``vod`` [1] and ``quality_flag`` (uint16 :class:`pipeline.qc.QC` bits), all (time, pass, y, x).
``soil_moisture``/``vod`` are NaN where the flags say no retrieval is possible:
INSUFFICIENT_OBS (no TB pair), OUT_OF_RANGE_TB, FROZEN_GROUND, SNOW_COVER,
PERMANENT_SNOW_ICE, OPEN_WATER_DOMINATED, RETRIEVAL_NOT_CONVERGED.  Flag-only bits (value
kept): DENSE_VEGETATION (retrieved VOD above ``vod_dense``), WATER_CONTAMINATION (open water
between ``water_flag_fraction`` and ``water_mask_fraction``, corrected), and the TB store's own
RFI / precipitation / coastal bits, which are propagated.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import numpy as np
import xarray as xr

from pipeline import dims, errors, grid, qc

__all__ = [
    "DEFAULT_LANDCOVER_PARAMS",
    "KERNEL",
    "RetrievalParams",
    "fill_time_gaps",
    "landcover_parameters",
    "reanalysis_temperature",
    "retrieval_quality_flags",
    "retrieve_smap",
    "smap_channels",
]

KERNEL = "models.retrieval:retrieve_with_settings"
# Outputs (sm, vod, converged, rms) of KERNEL for a row whose TB is missing in every pass.
KERNEL_EMPTY_ROW = (float("nan"), float("nan"), 0.0, float("nan"))
SMAP_FREQ_GHZ = 1.41
# Largest effective-temperature calibration offset accepted [K]: beyond it the ancillary
# temperature, not the retrieval, is what needs fixing.
TEFF_OFFSET_MAX_K = 15.0

# IGBP class → (h roughness, ω single-scattering albedo, VOD prior).  Approximate values in the
# spirit of the SMAP L2 land-cover table (science.md §3.2: h ≈ 0.1–0.16, ω ≈ 0–0.12, [K]); the
# SMAP MCCA values are [NF], so this is a documented, configurable default, not a fact.
DEFAULT_LANDCOVER_PARAMS: tuple[tuple[int, float, float, float], ...] = (
    (0, 0.13, 0.05, 0.2),  # unclassified
    (1, 0.16, 0.05, 0.8),  # evergreen needleleaf forest
    (2, 0.16, 0.05, 1.0),  # evergreen broadleaf forest
    (3, 0.16, 0.05, 0.7),  # deciduous needleleaf forest
    (4, 0.16, 0.05, 0.7),  # deciduous broadleaf forest
    (5, 0.16, 0.05, 0.8),  # mixed forest
    (6, 0.11, 0.05, 0.35),  # closed shrubland
    (7, 0.11, 0.05, 0.15),  # open shrubland
    (8, 0.125, 0.05, 0.4),  # woody savanna
    (9, 0.156, 0.08, 0.3),  # savanna
    (10, 0.156, 0.05, 0.15),  # grassland
    (11, 0.10, 0.05, 0.3),  # permanent wetland
    (12, 0.108, 0.05, 0.2),  # cropland
    (13, 0.10, 0.03, 0.2),  # urban
    (14, 0.13, 0.065, 0.25),  # cropland / natural mosaic
    (15, 0.0, 0.0, 0.0),  # snow and ice (masked)
    (16, 0.15, 0.0, 0.02),  # barren
    (17, 0.0, 0.0, 0.0),  # water bodies (masked)
)


@dataclasses.dataclass(frozen=True)
class RetrievalParams:
    """Settings of the SMAP retrieval and its QC (all documented in docs/soil-moisture.md).

    The kernel fields repeat ``models.retrieval.RetrievalConfig``'s (this layer may not import
    ``models``); :meth:`kernel_settings` hands them over, and a test keeps the defaults equal.

    Attributes:
      dielectric: Dielectric model the retrieval assumes (``"mironov"`` or ``"dobson"``).
      core_pol: Core channel polarisation (``"V"`` or ``"H"``).
      q, n: Roughness polarisation mixing and angular exponent.
      sm_min, sm_max, vod_min, vod_max: Retrieval bounds.
      sigma_core_k, sigma_col_k: Expected misfits of the core and collaborative channels [K].
      sigma_vod_prior, sigma_sm_prior: Prior widths (weak by default).
      sigma_vod_pass: AM/PM VOD coupling width (``inf`` = passes independent).
      vod_pol_ratio: Assumed τ_V / τ_H (1: polarisation-independent VOD, as SMAP L2) for
        classes not in ``pol_ratio_by_class``.
      pol_ratio_by_class: ``(igbp, τ_V/τ_H)`` rows, e.g. from ``tbcube sm tune`` (calibrated
        against in-situ stations); empty = ``vod_pol_ratio`` everywhere.
      teff_offset_k: Offset added to the ancillary effective temperature inside the retrieval
        [K] for classes not in ``teff_offset_by_class`` (0: the ancillary value as it is).  The
        frozen-ground rule always uses the ancillary value itself.
      teff_offset_by_class: ``(igbp, offset K)`` rows, e.g. from ``tbcube sm tune`` (the
        effective-temperature calibration that sets the absolute level, as SMAP calibrates its
        T_eff parameterisation at core sites); empty = ``teff_offset_k`` everywhere.
      vod_window_days: Multi-temporal second stage (as MT-DCA: vegetation changes slowly):
        the stage-1 VOD is smoothed by a running median over this many days and the retrieval
        is repeated with that VOD as a tight prior, so day-to-day errors of the effective
        temperature no longer pass into SM through VOD.  ≤ 1 disables the stage.
      sigma_vod_window: Width of the stage-2 VOD prior [1].
      sigma_core_window_k: Core-channel misfit of stage 2 [K] (VOD is known there, so SM comes
        mainly from the temperature-free channel ratio).
      n_iter_window: Levenberg–Marquardt iterations of stage 2.
      n_iter: Levenberg–Marquardt iterations.
      max_residual_k: RMS residual above which a pixel counts as not converged [K].
      water_correction: Remove the open-water emission before retrieving.
      landcover_params: ``(igbp, h, omega, vod_prior)`` rows; missing classes use class 0.
      water_flag_fraction: Open-water fraction that sets WATER_CONTAMINATION.
      water_mask_fraction: Open-water fraction above which no SM is retrieved.
      vod_dense: Retrieved VOD above which DENSE_VEGETATION is set (0.55 ≈ VWC 5 kg m-2 at
        b = 0.11, the SMAP accuracy-requirement limit).
      frozen_below_k: Surface temperature below which the ground is frozen (no FT product).
      snow_swe_mm: Snow water equivalent above which SNOW_COVER is set.
      tb_min_k, tb_max_k: Plausible TB range; outside → OUT_OF_RANGE_TB.
      batch: Pixels per kernel call.
    """

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
    sigma_vod_prior: float = 2.0
    sigma_sm_prior: float = 2.0
    sigma_vod_pass: float = 0.05
    vod_pol_ratio: float = 1.0
    pol_ratio_by_class: tuple[tuple[int, float], ...] = ()
    teff_offset_k: float = 0.0
    teff_offset_by_class: tuple[tuple[int, float], ...] = ()
    vod_window_days: int = 11
    sigma_vod_window: float = 0.02
    sigma_core_window_k: float = 4.0
    n_iter_window: int = 10
    n_iter: int = 25
    max_residual_k: float = 5.0
    water_correction: bool = True
    landcover_params: tuple[tuple[int, float, float, float], ...] = DEFAULT_LANDCOVER_PARAMS
    water_flag_fraction: float = 0.05
    water_mask_fraction: float = 0.5
    vod_dense: float = 0.55
    frozen_below_k: float = 274.15
    snow_swe_mm: float = 1.0
    tb_min_k: float = 50.0
    tb_max_k: float = 340.0
    batch: int = 4096

    def __post_init__(self):
        for row in self.pol_ratio_by_class:
            if len(row) != 2 or not 0.5 <= float(row[1]) <= 2.0:
                raise errors.ConfigError(
                    f"pol_ratio_by_class: row {row!r} must be (igbp, ratio) with ratio in "
                    "[0.5, 2]")
        for row in self.teff_offset_by_class + ((None, self.teff_offset_k),):
            if len(row) != 2 or not abs(float(row[1])) <= TEFF_OFFSET_MAX_K:
                raise errors.ConfigError(
                    f"teff_offset: {row!r} must be (igbp, offset) with |offset| <= "
                    f"{TEFF_OFFSET_MAX_K} K")
        if self.vod_window_days > 1 and self.vod_window_days % 2 == 0:
            raise errors.ConfigError(
                f"vod_window_days: {self.vod_window_days} must be odd (a centred window)")

    def kernel_settings(self, *, incidence_deg: float, stage: int = 1) -> tuple:
        """The hashable settings tuple handed to the retrieval kernel (``stage`` 1 or 2).

        τ_V/τ_H is not in it: it goes to the kernel per pixel (``pol_ratio`` input, from
        ``pol_ratio_by_class`` and ``vod_pol_ratio``), so trial ratios share one compile.
        """
        settings = {
            "freq_ghz": SMAP_FREQ_GHZ,
            "incidence_deg": float(incidence_deg),
            "dielectric": self.dielectric,
            "core_pol": self.core_pol,
            "q": self.q,
            "n": self.n,
            "sm_min": self.sm_min,
            "sm_max": self.sm_max,
            "vod_min": self.vod_min,
            "vod_max": self.vod_max,
            "sigma_core_k": self.sigma_core_k if stage == 1 else self.sigma_core_window_k,
            "sigma_col_k": self.sigma_col_k,
            "sigma_vod_prior": self.sigma_vod_prior if stage == 1 else self.sigma_vod_window,
            "sigma_sm_prior": self.sigma_sm_prior,
            "sigma_vod_pass": self.sigma_vod_pass,
            "n_iter": self.n_iter if stage == 1 else self.n_iter_window,
            "max_residual_k": self.max_residual_k,
            "water_correction": self.water_correction,
            "max_water_fraction": self.water_mask_fraction,
        }
        return tuple(sorted(settings.items()))

    def to_json(self) -> str:
        """The resolved settings as JSON (recorded in the product attrs)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)


def smap_channels(tb: xr.Dataset) -> tuple[xr.DataArray, xr.DataArray]:
    """(TBv, TBh) [K] of the L-band channel pair, dims (time, pass, y, x).

    Raises:
      errors.InputDataError: no 1.41 GHz V and H channels, or TB not in K.
    """
    if dims.TB not in tb:
        raise errors.InputDataError("tb: variable 'tb' missing")
    units = tb[dims.TB].attrs.get("units", "K")
    if units != "K":
        raise errors.InputDataError(f"tb: variable 'tb' units {units!r} != 'K'")
    # The channel index labels ("1.41V") carry frequency and polarisation (data contract);
    # reading them, unlike the frequency_ghz/polarization coords, never computes dask data.
    labels = [str(c) for c in tb.indexes[dims.CHANNEL]]
    freq = np.array([float(c[:-1]) if c[:-1].replace(".", "", 1).isdigit() else np.nan
                     for c in labels])
    pol = np.array([c[-1:] for c in labels])
    pick = {}
    for p in ("V", "H"):
        sel = np.flatnonzero((np.abs(freq - SMAP_FREQ_GHZ) < 0.05) & (pol == p))
        if sel.size == 0:
            raise errors.InputDataError(f"tb: variable 'tb' has no {SMAP_FREQ_GHZ} GHz {p} channel")
        pick[p] = tb[dims.TB].isel({dims.CHANNEL: int(sel[0])}, drop=True)
    order = (dims.TIME, dims.PASS, dims.Y, dims.X)
    # Non-index coords (lat/lon) are dropped: comparing dask-backed coords during arithmetic
    # would compute them; the product gets them back from the TB store in the assembly step.
    return (pick["V"].transpose(*order).reset_coords(drop=True),
            pick["H"].transpose(*order).reset_coords(drop=True))


def reanalysis_temperature(anc: xr.Dataset) -> tuple[str, xr.DataArray] | None:
    """The effective temperature of an ancillary (reanalysis) store: ``soil_temperature``, else
    ``surface_temperature``, as ``(name, DataArray)``; None when it has neither.  The retrieval
    and the harmonised products' frozen-ground screen read the same one."""
    name = next((n for n in ("soil_temperature", "surface_temperature") if n in anc), None)
    return None if name is None else (name, anc[name])


def landcover_parameters(landcover: xr.DataArray, table=DEFAULT_LANDCOVER_PARAMS):
    """Per-pixel (h, omega, vod_prior) [1] from the IGBP class (y, x); unknown → class 0."""
    default = next((row for row in table if row[0] == 0), (0, 0.13, 0.05, 0.2))
    return tuple(class_values(landcover, [(row[0], row[i]) for row in table], default[i], name)
                 for i, name in ((1, "h"), (2, "omega"), (3, "vod_prior")))


def class_values(landcover: xr.DataArray, table, default: float, name: str) -> xr.DataArray:
    """Per-pixel value from ``(igbp, value)`` rows (y, x); classes not listed get ``default``."""
    lut = np.full(256, default, np.float32)
    for igbp, value in table:
        lut[int(igbp)] = value

    def look(lc):
        idx = np.clip(np.nan_to_num(np.asarray(lc, float), nan=0.0), 0, 255).astype(int)
        return lut[idx]

    return xr.apply_ufunc(look, landcover, dask="parallelized",
                          output_dtypes=[np.float32]).rename(name)


def _running_median(a: np.ndarray, window: int, min_count: int = 3) -> np.ndarray:
    """Centred running nan-median along axis 0 (edges see a shorter window); NaN if < min_count."""
    half = window // 2
    pad = np.full((half,) + a.shape[1:], np.nan, np.float32)
    padded = np.concatenate([pad, np.asarray(a, np.float32), pad], axis=0)
    win = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)
    count = np.isfinite(win).sum(axis=-1)
    # all-NaN windows get zeros (their result is discarded) so nanmedian never warns
    med = np.nanmedian(np.where(count[..., None] > 0, win, 0.0), axis=-1)
    return np.where(count >= min_count, med, np.nan).astype(np.float32)


def _fill_gaps(a: np.ndarray, max_gap: int) -> np.ndarray:
    """Linear interpolation along axis 0 across runs of at most ``max_gap`` NaNs (no
    extrapolation past the first or last value)."""
    a = np.asarray(a, np.float32)
    n = a.shape[0]
    ok = np.isfinite(a)
    idx = np.arange(n).reshape((n,) + (1,) * (a.ndim - 1))
    prev = np.maximum.accumulate(np.where(ok, idx, -1), axis=0)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(ok, idx, n), 0), axis=0), 0)
    fill = ~ok & (prev >= 0) & (nxt < n) & (nxt - prev - 1 <= max_gap)
    p, q = np.clip(prev, 0, n - 1), np.clip(nxt, 0, n - 1)
    ap, aq = np.take_along_axis(a, p, 0), np.take_along_axis(a, q, 0)
    w = (idx - p) / np.maximum(q - p, 1)
    return np.where(fill, ap + (aq - ap) * w, a).astype(np.float32)


def fill_time_gaps(da: xr.DataArray, max_gap_days: int) -> xr.DataArray:
    """``da`` with runs of at most ``max_gap_days`` missing days filled linearly along time.

    Longer runs and the ends of the record stay NaN.  Lazy on dask input with the input's
    chunks (``map_overlap`` along time, as :func:`smooth_vod`).
    """
    v = da.transpose(dims.TIME, ...)
    gap = int(max_gap_days)
    if gap <= 0:
        return v
    if v.chunks is None:
        return v.copy(data=_fill_gaps(v.values, gap))
    depth = gap + 1
    data = v.data  # a dask array: its own methods, so this stage never imports dask
    if min(data.chunks[0]) < depth:
        data = data.rechunk({0: max(depth, max(data.chunks[0]))})
    out = data.map_overlap(_fill_gaps, depth={0: min(depth, data.shape[0])}
                           | {i: 0 for i in range(1, data.ndim)},
                           boundary="none", max_gap=gap, dtype=np.float32, trim=True)
    return v.copy(data=out)


def smooth_vod(vod: xr.DataArray, window_days: int) -> xr.DataArray:
    """Running median of the pass-mean VOD over ``window_days`` (centred; ≥ 3 values), (t, y, x).

    Lazy on dask input with the input's chunks (``map_overlap`` along time; the chunks along
    time must be at least half the window).  NaN where fewer than three retrievals fall in the
    window.
    """
    v = vod.mean(dims.PASS).transpose(dims.TIME, ...)
    win = int(window_days)
    if v.chunks is None:
        return v.copy(data=_running_median(v.values, win))
    half = win // 2
    data = v.data  # a dask array: its own methods, so this stage never imports dask
    if min(data.chunks[0]) < half:
        data = data.rechunk({0: max(half, max(data.chunks[0]))})
    out = data.map_overlap(_running_median, depth={0: half} | {i: 0 for i in
                                                               range(1, data.ndim)},
                           boundary="none", window=win, dtype=np.float32, trim=True)
    return v.copy(data=out)


def _same_cells(obj: xr.DataArray | xr.Dataset, like: xr.DataArray, name: str) -> None:
    """``obj``'s y/x are ``like``'s cells (:func:`pipeline.grid.cells_mismatch`)."""
    for d in (dims.Y, dims.X):
        if d in obj.dims and obj.sizes[d] != like.sizes[d]:
            raise errors.InputDataError(
                f"{name}: dim '{d}' has {obj.sizes[d]} cells, tb has {like.sizes[d]}")
    problem = grid.cells_mismatch(obj, like, other="tb")
    if problem:
        raise errors.InputDataError(f"{name}: {problem}")


def _aligned(da: xr.DataArray, like: xr.DataArray, name: str) -> xr.DataArray:
    """``da`` on ``like``'s time/pass labels (missing → NaN); y/x must be ``like``'s cells."""
    _same_cells(da, like, name)
    index = {d: like[d] for d in (dims.TIME, dims.PASS) if d in da.dims and d in like.coords}
    out = da.reset_coords(drop=True)
    out = out.reindex(index) if index else out
    return out.assign_coords({d: like[d] for d in (dims.Y, dims.X) if d in out.dims})


def _bit(cond: xr.DataArray, flag: qc.QC) -> xr.DataArray:
    return xr.where(cond, int(flag), 0).astype(qc.QC_DTYPE)


def retrieval_quality_flags(
    tb_v: xr.DataArray,
    tb_h: xr.DataArray,
    static: xr.Dataset,
    params: RetrievalParams,
    *,
    tb_flags: xr.DataArray | None = None,
    frozen: xr.DataArray | None = None,
    snow: xr.DataArray | None = None,
) -> tuple[xr.DataArray, xr.DataArray]:
    """Pre-retrieval QC: (flags uint16, mask True where no retrieval is possible), (t, p, y, x)."""
    observed = np.isfinite(tb_v) & np.isfinite(tb_h)
    in_range = ((tb_v >= params.tb_min_k) & (tb_v <= params.tb_max_k)
                & (tb_h >= params.tb_min_k) & (tb_h <= params.tb_max_k))
    bad_range = observed & ~in_range
    flags = _bit(~observed, qc.QC.INSUFFICIENT_OBS) | _bit(bad_range, qc.QC.OUT_OF_RANGE_TB)
    masked = ~observed | bad_range
    if tb_flags is not None:
        # OUT_OF_RANGE_TB: the TB store's own screen (impossible values read as NaN, so the
        # pixel would otherwise only say INSUFFICIENT_OBS; pipeline.io.stores.screen_tb)
        carried = int(qc.QC.RFI_SUSPECTED | qc.QC.PRECIPITATION | qc.QC.WATER_CONTAMINATION
                      | qc.QC.OUT_OF_RANGE_TB)
        flags = flags | (tb_flags.astype(qc.QC_DTYPE) & qc.QC_DTYPE(carried))
    wf = static["water_fraction"].fillna(0.0)
    flags = flags | _bit(wf > params.water_flag_fraction, qc.QC.WATER_CONTAMINATION)
    water = wf > params.water_mask_fraction
    ice = static["landcover"] == 15
    flags = flags | _bit(water, qc.QC.OPEN_WATER_DOMINATED) | _bit(ice, qc.QC.PERMANENT_SNOW_ICE)
    masked = masked | water | ice
    if frozen is not None:
        flags = flags | _bit(frozen, qc.QC.FROZEN_GROUND)
        masked = masked | frozen
    if snow is not None:
        flags = flags | _bit(snow, qc.QC.SNOW_COVER)
        masked = masked | snow
    order = (dims.TIME, dims.PASS, dims.Y, dims.X)
    return flags.transpose(*order), masked.transpose(*order)


def retrieve_smap(
    tb: xr.Dataset,
    static: xr.Dataset,
    *,
    ft_state: xr.DataArray | None = None,
    surface_temperature: xr.DataArray | None = None,
    snow_water_equivalent: xr.DataArray | None = None,
    params: RetrievalParams | None = None,
    apply_kernel: Callable[..., tuple[xr.DataArray, ...]],
) -> xr.Dataset:
    """Retrieve soil moisture and VOD from SMAP TBv/TBh (lazy on dask input).

    Args:
      tb: SMAP TB store (data-contract ``tb/smap.zarr``): ``tb`` (time, pass, channel, y, x)
        [K], optional ``quality_flag``; attr ``incidence_angle_deg`` (default 40).
      static: Static layers on the same grid window: ``clay_fraction``, ``sand_fraction``,
        ``bulk_density``, ``water_fraction``, ``landcover`` (y, x).
      ft_state: Freeze/thaw state (time, pass, y, x), 0 frozen / 1 thawed / −1 missing; when
        None, frozen ground is ``surface_temperature < frozen_below_k``.
      surface_temperature: Effective temperature (time, pass, y, x) [K] (e.g. model or truth
        surface temperature).  Required: one day's V/H ratio alone cannot separate SM from VOD
        (docs/soil-moisture.md); passes without a temperature get INSUFFICIENT_OBS.
      snow_water_equivalent: Optional SWE (time[, pass], y, x) [mm] → SNOW_COVER.
      params: Retrieval and QC settings (default :class:`RetrievalParams`).
      apply_kernel: :func:`pipeline.apply.apply_array_kernel` (injected by the graph layer).

    Returns:
      Dataset with ``soil_moisture`` [m3 m-3], ``vod`` [1], ``quality_flag`` (time, pass, y, x),
      ``lat``/``lon`` coords, ``crs`` and the TB store's grid attrs.
    """
    params = params or RetrievalParams()
    tb_v, tb_h = smap_channels(tb)
    for var in ("clay_fraction", "sand_fraction", "bulk_density", "water_fraction", "landcover"):
        if var not in static:
            raise errors.InputDataError(f"static: variable '{var}' missing")
    for d in (dims.Y, dims.X):
        if static.sizes.get(d) != tb.sizes[d]:
            raise errors.InputDataError(
                f"static: dim '{d}' has {static.sizes.get(d)} cells, tb has {tb.sizes[d]}")
    _same_cells(static, tb[dims.TB], "static")
    static = static.reset_coords(drop=True).assign_coords({d: tb[d] for d in (dims.Y, dims.X)})
    incidence = float(tb.attrs.get("incidence_angle_deg", 40.0))

    if surface_temperature is None:
        raise errors.InputDataError(
            "surface_temperature: required by the SMAP retrieval (effective temperature of the "
            "core channel); none given")
    t_eff = _aligned(surface_temperature, tb_v, "surface_temperature").astype(np.float32)
    t_eff = t_eff.transpose(*tb_v.dims)
    if ft_state is not None:
        frozen = _aligned(ft_state, tb_v, "ft_state") == 0
    else:
        frozen = t_eff < params.frozen_below_k
    snow = None
    if snow_water_equivalent is not None:
        snow = _aligned(snow_water_equivalent, tb_v, "snow_water_equivalent") > params.snow_swe_mm

    tb_flags = None
    if dims.QUALITY_FLAG in tb:
        tb_flags = tb[dims.QUALITY_FLAG].transpose(*tb_v.dims).reset_coords(drop=True)
    flags, masked = retrieval_quality_flags(tb_v, tb_h, static, params, tb_flags=tb_flags,
                                            frozen=frozen, snow=snow)
    no_t = t_eff.isnull()
    flags = flags | _bit(no_t, qc.QC.INSUFFICIENT_OBS)
    masked = masked | no_t
    h, omega, vod_prior = landcover_parameters(static["landcover"], params.landcover_params)
    pol_ratio = class_values(static["landcover"], params.pol_ratio_by_class,
                             params.vod_pol_ratio, "pol_ratio")
    t_kernel = t_eff
    if params.teff_offset_k or params.teff_offset_by_class:
        # calibrated T_eff for the emission model only; the frozen rule above used t_eff
        t_kernel = t_eff + class_values(static["landcover"], params.teff_offset_by_class,
                                        params.teff_offset_k, "teff_offset")
    order = (dims.TIME, dims.PASS, dims.Y, dims.X)

    def run(tb_v_in, tb_h_in, prior, stage):
        inputs = [tb_v_in, tb_h_in, t_kernel, static["water_fraction"], static["clay_fraction"],
                  static["sand_fraction"], static["bulk_density"], h, omega, prior, pol_ratio]
        inputs = [a.astype(np.float32) for a in inputs]
        out = apply_kernel(
            KERNEL, inputs, core_dim=dims.PASS, n_outputs=4,
            config=params.kernel_settings(incidence_deg=incidence, stage=stage),
            batch=params.batch,
            # Rows with no TB in either pass (masked, swath gaps, outside the mission) are not
            # computed: the kernel returns (NaN, NaN, 0, NaN) for them (tested).
            skip_empty=(0, KERNEL_EMPTY_ROW))
        return tuple(a.transpose(*order) for a in out[:3])

    sm, vod, converged = run(tb_v.where(~masked), tb_h.where(~masked), vod_prior, 1)
    if params.vod_window_days > 1:
        # Stage 2 (multi-temporal): VOD from the running median of the converged stage-1 VOD,
        # imposed as a tight prior; SM then rests on the temperature-free V/H ratio.  Days
        # with < 3 stage-1 VODs in the window keep their stage-1 values.
        vs = smooth_vod(vod.where(converged >= 0.5), params.vod_window_days)
        use2 = ~masked & vs.notnull()
        prior2 = vs.broadcast_like(vod).transpose(*order)
        sm2, vod2, conv2 = run(tb_v.where(use2), tb_h.where(use2), prior2, 2)
        sm, vod, converged = (xr.where(use2, b, a) for a, b in
                              ((sm, sm2), (vod, vod2), (converged, conv2)))

    attempted = ~masked
    not_conv = attempted & (converged < 0.5)
    dense = attempted & (vod > params.vod_dense)
    flags = flags | _bit(not_conv, qc.QC.RETRIEVAL_NOT_CONVERGED) | _bit(dense,
                                                                           qc.QC.DENSE_VEGETATION)
    good = attempted & ~not_conv
    return _assemble(tb, sm.where(good), vod.where(good), flags, params)


def _assemble(tb, sm, vod, flags, params: RetrievalParams) -> xr.Dataset:
    order = (dims.TIME, dims.PASS, dims.Y, dims.X)
    out = xr.Dataset({
        dims.SOIL_MOISTURE: sm.astype(np.float32).transpose(*order).assign_attrs(
            units="m3 m-3", long_name="volumetric soil moisture, 0-5 cm (SMAP MCCA retrieval)",
            standard_name="volume_fraction_of_condensed_water_in_soil", grid_mapping=dims.CRS),
        dims.VOD: vod.astype(np.float32).transpose(*order).assign_attrs(
            units="1", long_name="L-band vegetation optical depth at nadir",
            grid_mapping=dims.CRS),
        dims.QUALITY_FLAG: flags.astype(qc.QC_DTYPE).transpose(*order).assign_attrs(
            {**qc.flag_attrs(), "grid_mapping": dims.CRS}),
    })
    keep = [c for c in (dims.LAT, dims.LON) if c in tb.coords]
    out = out.assign_coords({c: tb[c] for c in keep})
    out = out.assign_coords({d: tb[d] for d in (dims.TIME, dims.PASS, dims.Y, dims.X)})
    if dims.CRS in tb.variables:
        out[dims.CRS] = tb[dims.CRS]
    attrs = {k: tb.attrs[k] for k in ("grid", "grid_window") if k in tb.attrs}
    return out.assign_attrs(
        attrs, sensor="smap", title="tbcube SMAP soil moisture and VOD (multi-channel retrieval)",
        Conventions="CF-1.10", retrieval_settings=params.to_json())
