"""Swath observations → the TB archive layout on any EASE-Grid 2.0 grid or window.

Drop-in-bucket averaging (:func:`pipeline.grid.bin_to_grid`) of every usable sample, split by
the observation's local solar date and pass:

* local solar time ``LST = UTC + lon_cell / 15`` h, with ``lon_cell`` the longitude of the
  centre of the cell the observation falls in;
* ``pass`` is ``"am"`` when ``LST < 12`` h and ``"pm"`` otherwise (the data-contract rule; for
  SMAP and AMSR this reproduces the 6 AM / 1:30 AM descending and 6 PM / 1:30 PM ascending
  passes, for precessing TMI/GMI it is the only meaningful split);
* ``time`` is the calendar date of ``LST`` at 00:00 (as SMAP L3 daily grids do);
* ``local_time`` is the mean LST [h] of the observations averaged into the cell.

Every sample is accounted for in exactly one of the counts returned with the grid:
``fill`` (TB, lat, lon or time missing), ``bad_quality`` (the source's quality flag says do
not use), ``out_of_range`` (TB outside :data:`TB_RANGE_K`, i.e. not a physical Earth scene
at 1-90 GHz: cold sky/space looks or calibration spikes below, RFI or hot spikes above),
``outside_grid`` (usable but outside the target grid/window) and ``used``.  Masked samples never
reach the average; cells that saw an out-of-range sample get ``QC.OUT_OF_RANGE_TB``.

The per-granule grids and the archive merge by :func:`merge_gridded`: count-weighted means
(``n_obs`` per channel), OR of quality bits — deterministic for a fixed input order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from pipeline import dims, grid, sensors
from pipeline.ingest.common import Granule, Swath
from pipeline.qc import QC

__all__ = [
    "COUNT_KEYS",
    "N_OBS",
    "TB_RANGE_K",
    "WEIGHTINGS",
    "empty_counts",
    "grid_granule",
    "grid_swath",
    "drop_empty_days",
    "merge_gridded",
    "place_on",
]

# Physical TB range [K] for 1-90 GHz Earth scenes (science.md §3.8: the coldest scenes are
# calm ocean at H pol, ~70-100 K; nothing on Earth exceeds ~330 K). Configurable per call.
TB_RANGE_K = (50.0, 350.0)
N_OBS = "n_obs"
ANCILLARY_PREFIX = "anc_"
COUNT_KEYS = ("samples", "fill", "bad_quality", "out_of_range", "outside_grid", "used")
WEIGHTINGS = ("none", "inverse_distance")
U16_MAX = np.iinfo(np.uint16).max


def empty_counts() -> dict[str, int]:
    """All sample counts zero."""
    return {k: 0 for k in COUNT_KEYS}


def _cell_lon(g: grid.Grid, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Longitude of the centre of cells (row, col) [deg], float64."""
    return grid.xy_to_latlon(g, *grid.rowcol_to_xy(g, row, col))[1]


def _weights(g: grid.Grid, lat, lon, row, col) -> np.ndarray:
    """Inverse distance to the cell centre [1/m], floored at a tenth of a cell."""
    x, y = grid.latlon_to_xy(g, lat, lon)
    xc, yc = grid.rowcol_to_xy(g, row, col)
    return 1.0 / np.maximum(np.hypot(x - xc, y - yc), 0.1 * g.cell_m)


def grid_swath(
    swath: Swath,
    sensor: str,
    target: str | grid.Grid,
    window: grid.Window | None = None,
    *,
    weighting: str = "none",
    tb_range_k: tuple[float, float] = TB_RANGE_K,
) -> tuple[xr.Dataset | None, dict[str, int]]:
    """Grid one swath onto ``target`` (window), split by local solar date and pass.

    Args:
      swath: Observations (see :class:`pipeline.ingest.common.Swath`).
      sensor: Catalog sensor; the output ``channel`` axis is its full channel list.
      target: EASE-Grid 2.0 grid (name or :class:`pipeline.grid.Grid`).
      window: Window of the grid (default the whole grid).
      weighting: ``"none"`` (plain mean) or ``"inverse_distance"`` (to the cell centre).
      tb_range_k: Accepted TB range [K]; samples outside are masked and counted.

    Returns:
      ``(gridded, counts)``. ``gridded`` has ``tb`` (time, pass, channel, y, x) float32 [K],
      ``n_obs`` (same dims) uint16, ``local_time`` (time, pass, y, x) float32 [h],
      ``quality_flag`` (time, pass, y, x) uint16 and ``anc_<name>`` (time, pass, y, x) float32
      over the block of the window's cells the swath touches (``y``/``x`` are the grid's own
      values); None when no geolocated observation fell inside the window.  QC bits cover every
      geolocated observation, so a day can hold flags but no TB; :func:`drop_empty_days`
      removes such days before writing (``counts["used"] == 0`` means nothing to write).
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    g = grid.get(target)
    w = (window or g.full_window()).check(g)
    labels = sensors.get(sensor).channel_labels
    counts = empty_counts()
    n, k = swath.tb.shape
    counts["samples"] = n * k
    tb = swath.tb.astype(np.float64)
    geo = np.isfinite(swath.lat) & np.isfinite(swath.lon) & ~np.isnat(swath.time)
    fill = ~np.isfinite(tb) | ~geo[:, None]
    bad = ~fill & swath.bad
    oor = ~fill & ~bad & ((tb < tb_range_k[0]) | (tb > tb_range_k[1]))
    usable = ~fill & ~bad & ~oor
    row = np.full(n, -1, np.int64)
    col = np.full(n, -1, np.int64)
    if geo.any():
        row[geo], col[geo] = grid.latlon_to_rowcol(g, swath.lat[geo], swath.lon[geo])
    inside = (row >= w.row0) & (row < w.row1) & (col >= w.col0) & (col < w.col1)
    used = usable & inside[:, None]
    counts.update(
        fill=int(fill.sum()), bad_quality=int(bad.sum()), out_of_range=int(oor.sum()),
        outside_grid=int((usable & ~inside[:, None]).sum()), used=int(used.sum()),
    )
    if not inside.any():
        return None, counts
    idx = np.flatnonzero(inside)
    # Grid only the block of cells the swath touches; merges align blocks on y/x values.
    w = grid.Window(int(row[idx].min()), int(row[idx].max()) + 1,
                    int(col[idx].min()), int(col[idx].max()) + 1)
    lon_cell = _cell_lon(g, row[idx], col[idx])
    t_s = swath.time[idx].astype("datetime64[ns]").astype(np.int64) / 1e9
    lst_s = t_s + lon_cell * 240.0
    day = np.floor(lst_s / 86400.0).astype(np.int64)
    hour = (lst_s - day * 86400.0) / 3600.0
    pas = (hour >= 12.0).astype(np.int64)
    key = day * 2 + pas
    keys = np.unique(key)
    days = np.unique(keys // 2)
    ny, nx = w.shape
    kk = len(labels)
    tb_out = np.full((len(days), 2, kk, ny, nx), np.nan, np.float32)
    n_out = np.zeros((len(days), 2, kk, ny, nx), np.uint16)
    lt_out = np.full((len(days), 2, ny, nx), np.nan, np.float32)
    qf_out = np.zeros((len(days), 2, ny, nx), np.uint16)
    anc_out = {a: np.full((len(days), 2, ny, nx), np.nan, np.float32) for a in swath.ancillary}
    chan_pos = [labels.index(c) for c in swath.channels]
    flags = swath.flags[idx] | np.where(oor[idx].any(axis=1), np.uint16(QC.OUT_OF_RANGE_TB), 0)
    for kv in keys:
        ti, pi = int(np.searchsorted(days, kv // 2)), int(kv % 2)
        sel = key == kv
        oi = idx[sel]
        vals = np.where(used[oi], tb[oi], np.nan)
        wts = None
        if weighting == "inverse_distance":
            wts = _weights(g, swath.lat[oi], swath.lon[oi], row[oi], col[oi])
        mean, cnt = grid.bin_to_grid(g, swath.lat[oi], swath.lon[oi], vals, w, weights=wts)
        for j, p in enumerate(chan_pos):
            tb_out[ti, pi, p] = mean[..., j]
            n_out[ti, pi, p] = np.minimum(cnt[..., j], U16_MAX)
        any_used = used[oi].any(axis=1)
        lt, _ = grid.bin_to_grid(
            g, swath.lat[oi], swath.lon[oi], np.where(any_used, hour[sel], np.nan), w
        )
        lt_out[ti, pi] = lt
        for name, values in swath.ancillary.items():
            am, _ = grid.bin_to_grid(
                g, swath.lat[oi], swath.lon[oi], np.where(any_used, values[oi], np.nan), w
            )
            anc_out[name][ti, pi] = am
        flat = (row[oi] - w.row0) * nx + (col[oi] - w.col0)
        qf = np.zeros(ny * nx, np.uint16)
        np.bitwise_or.at(qf, flat, flags[sel].astype(np.uint16))
        qf_out[ti, pi] = qf.reshape(ny, nx)
    ds = _assemble(days, labels, g, w, tb_out, n_out, lt_out, qf_out, anc_out)
    return ds, counts


def _assemble(days, labels, g, w, tb, n_obs, lt, qf, anc) -> xr.Dataset:
    t = (days.astype("datetime64[D]")).astype("datetime64[ns]")
    d5 = (dims.TIME, dims.PASS, dims.CHANNEL, dims.Y, dims.X)
    d4 = (dims.TIME, dims.PASS, dims.Y, dims.X)
    data = {
        dims.TB: (d5, tb),
        N_OBS: (d5, n_obs),
        dims.LOCAL_TIME: (d4, lt),
        dims.QUALITY_FLAG: (d4, qf),
    }
    data.update({ANCILLARY_PREFIX + a: (d4, v) for a, v in anc.items()})
    return xr.Dataset(
        data,
        coords={
            dims.TIME: t,
            dims.PASS: list(dims.PASSES),
            dims.CHANNEL: list(labels),
            dims.Y: g.y[w.row0 : w.row1],
            dims.X: g.x[w.col0 : w.col1],
        },
    )


def drop_empty_days(ds: xr.Dataset) -> xr.Dataset | None:
    """Keep the days with at least one TB observation (None if there are none)."""
    keep = (ds[N_OBS] > 0).any([d for d in ds[N_OBS].dims if d != dims.TIME]).values
    return ds.isel({dims.TIME: np.flatnonzero(keep)}) if keep.any() else None


def grid_granule(
    granule: Granule,
    target: str | grid.Grid,
    window: grid.Window | None = None,
    *,
    weighting: str = "none",
    tb_range_k: tuple[float, float] = TB_RANGE_K,
) -> tuple[xr.Dataset | None, dict[str, int]]:
    """Grid every swath of a granule and merge them (see :func:`grid_swath`).

    Returns:
      ``(gridded, counts)`` with counts summed over swaths; ``gridded`` may hold days with QC
      bits but no TB (see :func:`drop_empty_days`); ``counts["used"] == 0`` means the granule
      has no usable sample inside the window ("no valid observations").
    """
    total = empty_counts()
    out = None
    for swath in granule.swaths:
        ds, counts = grid_swath(
            swath, granule.sensor, target, window, weighting=weighting, tb_range_k=tb_range_k
        )
        for key in COUNT_KEYS:
            total[key] += counts[key]
        if ds is not None:
            out = ds if out is None else merge_gridded(out, ds)
    return out, total


_FILL = {dims.TB: np.nan, N_OBS: 0, dims.LOCAL_TIME: np.nan, dims.QUALITY_FLAG: 0}


def _place(da: xr.DataArray, coords: dict[str, np.ndarray]) -> np.ndarray:
    """``da`` values placed on larger ``time``/``y``/``x`` axes (supersets), fill elsewhere.

    ``da`` must be ordered (time, pass[, channel], y, x).
    """
    vals = np.asarray(da.values)
    if all(np.array_equal(da[d].values, v) for d, v in coords.items()):
        return vals
    fill = _FILL.get(da.name, np.nan)
    shape = tuple(len(coords[d]) if d in coords else n for d, n in da.sizes.items())
    out = np.full(shape, fill, vals.dtype)
    index = []
    for d in da.dims:
        if d in coords:
            pos = pd.Index(coords[d]).get_indexer(da[d].values)
            if (pos < 0).any():
                raise ValueError(f"cannot place {da.name}: {d} values outside the target axis")
            index.append(pos)
        else:
            index.append(np.arange(da.sizes[d]))
    out[np.ix_(*index)] = vals
    return out


def place_on(ds: xr.Dataset, y: np.ndarray, x: np.ndarray) -> xr.Dataset:
    """A gridded dataset placed on a larger block of the same grid (fill outside its cells)."""
    coords = {dims.TIME: ds[dims.TIME].values, dims.Y: np.asarray(y), dims.X: np.asarray(x)}
    ds = ds.transpose(dims.TIME, dims.PASS, dims.CHANNEL, dims.Y, dims.X, ...,
                      missing_dims="ignore")
    data = {v: (ds[v].dims, _place(ds[v], coords)) for v in ds.data_vars}
    other = {d: ds[d].values for d in (dims.PASS, dims.CHANNEL) if d in ds.coords}
    return xr.Dataset(data, coords={**other, **coords}, attrs=dict(ds.attrs))


def _weighted(va: np.ndarray, vb: np.ndarray, wa: np.ndarray, wb: np.ndarray) -> np.ndarray:
    """Weighted mean of two float arrays (weights 0 where a value is missing), float32."""
    wa = np.where(np.isnan(va), 0, wa).astype(np.float32)
    wb = np.where(np.isnan(vb), 0, wb).astype(np.float32)
    tot = wa + wb
    with np.errstate(invalid="ignore", divide="ignore"):
        both = (np.nan_to_num(va) * wa + np.nan_to_num(vb) * wb) / tot
    return np.where(tot > 0, both, np.nan).astype(np.float32)


def merge_gridded(a: xr.Dataset, b: xr.Dataset) -> xr.Dataset:
    """Merge two gridded TB datasets on the same grid window and channel axis.

    Days and cell blocks are united (days sorted, y north first, x west first).  Where both
    have observations: ``tb`` is the ``n_obs``-weighted
    mean per channel, ``local_time`` and ``anc_*`` are weighted by the cell's largest channel
    count, ``n_obs`` adds (saturating at 65535) and ``quality_flag`` is the bitwise OR.

    Args:
      a, b: Datasets with ``tb``/``n_obs`` (time, pass, channel, y, x), ``local_time``/
        ``quality_flag`` (time, pass, y, x) and optional ``anc_*`` (time, pass, y, x).

    Returns:
      The merged, numpy-backed dataset (float32 ``tb``/``local_time``/``anc_*``, uint16
      ``n_obs``/``quality_flag``).
    """
    for d in (dims.PASS, dims.CHANNEL):
        if not np.array_equal(a[d].values, b[d].values):
            raise ValueError(f"cannot merge gridded TB: coordinate {d!r} differs")
    ax = {
        dims.TIME: np.union1d(a[dims.TIME].values, b[dims.TIME].values),
        dims.Y: np.union1d(a[dims.Y].values, b[dims.Y].values)[::-1],  # north first
        dims.X: np.union1d(a[dims.X].values, b[dims.X].values),
    }
    d5 = (dims.TIME, dims.PASS, dims.CHANNEL, dims.Y, dims.X)
    d4 = (dims.TIME, dims.PASS, dims.Y, dims.X)
    a, b = a.transpose(*d5, ...), b.transpose(*d5, ...)
    na, nb = _place(a[N_OBS], ax), _place(b[N_OBS], ax)
    tb_a = np.where(na > 0, _place(a[dims.TB], ax), np.nan)
    tb_b = np.where(nb > 0, _place(b[dims.TB], ax), np.nan)
    n = np.minimum(na.astype(np.uint32) + nb, U16_MAX).astype(np.uint16)
    ma, mb = na.max(axis=2), nb.max(axis=2)
    data = {
        dims.TB: (d5, _weighted(tb_a, tb_b, na, nb)),
        N_OBS: (d5, n),
        dims.QUALITY_FLAG: (d4, (_place(a[dims.QUALITY_FLAG], ax).astype(np.uint16)
                                 | _place(b[dims.QUALITY_FLAG], ax).astype(np.uint16))),
    }
    cell_vars = [v for v in a.data_vars if v not in data] + [
        v for v in b.data_vars if v not in data and v not in a.data_vars]
    for v in cell_vars:
        va = _place(a[v], ax).astype(np.float32) if v in a else None
        vb = _place(b[v], ax).astype(np.float32) if v in b else None
        if va is None or vb is None:
            data[v] = (d4, va if vb is None else vb)
        else:
            data[v] = (d4, _weighted(va, vb, ma, mb))
    coords = {dims.PASS: a[dims.PASS].values, dims.CHANNEL: a[dims.CHANNEL].values, **ax}
    return xr.Dataset(data, coords=coords, attrs=dict(a.attrs))
