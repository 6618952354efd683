"""Soil moisture stage 2: LSTM training, per-sensor harmonisation, fusion and validation.

Example::

    tbcube sm train     --root demo-output/transect-m25
    tbcube sm harmonise --root demo-output/transect-m25
    tbcube sm fuse      --root demo-output/transect-m25
    tbcube sm validate  --root demo-output/transect-m25

Inputs: ``calibrated/{sensor}.zarr`` (``tbcube calibrate apply``), ``static/{grid}.zarr`` and the
SMAP physical product ``sm-smap-{grid}-v1`` (``tbcube sm retrieve``).

**Training** (science.md §3.5): one LSTM for all four sensors (their TB are on one calibrated
scale) on the sensors that overlap SMAP (AMSR2, GMI).  Data are held out by year
(``test_year``) and by cell (every ``holdout_every``-th cell); early stopping uses a random
validation share of the remaining windows.  Windows stream from the Zarr stores one spatial
tile at a time through a shuffle buffer, so the archive is never all in memory.

**Harmonisation**: the model runs over each sensor's whole record in pencil chunks (whole time
axis per pixel; one load and compile per worker), and the product keeps the days the sensor
observed.  **Fusion**: triple-collocation error variances where a triplet overlaps, validation
error otherwise, inverse-variance weights.  **Validation**: R, bias, RMSD, ubRMSD against
stations (per station, network and sensor epoch) and against the simulator truth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dask
import numpy as np
import xarray as xr

from pipeline import (
    apply,
    dims,
    errors,
    fuse,
    grid,
    harmonise,
    metrics,
    qc,
    schema,
    soil_moisture,
    validation,
)
from pipeline.graphs import frozen_screens
from pipeline.io import publish, stores

HARMONISED_SENSORS = ("tmi", "amsre", "amsr2", "gmi")
# Screens for frozen ground and snow.  With the archive's reanalysis store (ancillary/{grid}.zarr)
# the SMAP retrieval's own rules apply to every sensor (soil temperature of the pass below
# RetrievalParams.frozen_below_k; SWE above snow_swe_mm): one definition across the record.
# Where it has no value, heuristics on the sensor's own calibrated TB (tunable): 36.5 GHz V is a
# proxy of the physical temperature (emissivity ≈ 0.95 over land; wet soil's lower emissivity
# makes it flag thawed wet soil as frozen, so it is only the fallback), and dry-snow volume
# scattering makes 18.7 V exceed 36.5 V (a Grody-style scattering index).
FROZEN_TB36V_K = 258.0
PERMANENT_SNOW_ICE = 15  # IGBP class
SNOW_SCATTER_K = 10.0
TRAIN_SENSORS = ("amsr2", "gmi")
# SMAP-class accuracy is specified where VWC ≤ 5 kg m-2 (science.md §3.7): L-band VOD ≤ 0.5, the
# same bound as the SMAP retrieval's target (sm-retrieval.json target_vod_le_0.5).  Validation
# scores each product on both sides of it; the LSTM's target is itself poor in dense canopy.
SMAP_CLASS_VOD_MAX = 0.5
# A harmonised cell gets DENSE_VEGETATION when its SMAP target (the LSTM's) is flagged dense on
# more than this share of its retrieved pass-days.
DENSE_TARGET_SHARE = 0.5


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """LSTM training settings (science.md §3.5 lists typical values; the paper's are [NF])."""

    window_days: int = 60
    stride_days: int = 15
    # Leading days of each window left out of the loss (context only): the LSTM starts a
    # window from a zero state but runs over a sensor's whole record at inference.  20 days
    # changed the demo transect's per-sensor ubRMSD by -0.003..+0.003 (within the spread
    # between trainings; docs/soil-moisture-record.md), so the default stays 0.
    warmup_days: int = 0
    batch: int = 64
    hidden: int = 32
    num_layers: int = 1
    dropout: float = 0.1
    learning_rate: float = 3e-3
    max_epochs: int = 30
    patience: int = 4
    test_year: int = 2018
    holdout_every: int = 5
    val_share: float = 0.15
    min_valid_targets: int = 5
    tile_rows: int = 32
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.warmup_days < self.window_days:
            raise errors.ConfigError(
                f"warmup_days: {self.warmup_days} must be in [0, window_days = "
                f"{self.window_days})")
        if self.stride_days > self.window_days - self.warmup_days:
            raise errors.ConfigError(
                f"stride_days: {self.stride_days} leaves days out of every loss (window "
                f"{self.window_days} - warm-up {self.warmup_days} < stride)")


def _grid_name(ds: xr.Dataset) -> str:
    return str(ds.attrs["grid"]).lower()


def product_id(kind: str, grid_name: str) -> str:
    """``sm-{kind}-{grid}-v1`` (kind: smap, tmi, amsre, amsr2, gmi, fused)."""
    return f"sm-{kind}-{grid_name.lower()}-v1"


def _static(root: str, storage_options) -> xr.Dataset:
    return stores.find_static(root, storage_options)


def _calibrated(root: str, sensor: str, storage_options,
                static: xr.Dataset | None = None) -> xr.Dataset | None:
    """The calibrated TB of ``sensor`` (None when absent), checked to be on ``static``'s cells
    (features pair TB and static layers by position)."""
    u = stores.calibrated_url(root, sensor)
    if not stores.exists(u, storage_options):
        return None
    cal = stores.open_tb(u, storage_options=storage_options)
    if static is not None:
        stores.require_on_cells(cal, static, u, what="the archive's static store")
    return cal


def holdout_cells(ny: int, nx: int, every: int) -> np.ndarray:
    """Boolean (y, x): cells held out of training (a fixed lattice, every ``every``-th cell)."""
    idx = np.arange(ny * nx).reshape(ny, nx)
    return (idx % every) == (every // 2)


# --- streamed training windows ---------------------------------------------------------------
def _tile_windows(x: np.ndarray, y: np.ndarray, observed: np.ndarray, settings: TrainSettings
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut (pixel, time, feature) series into windows with enough valid targets."""
    w, s = settings.window_days, settings.stride_days
    xs, ys, ms = [], [], []
    n_time = x.shape[1]
    for t0 in range(0, max(n_time - w + 1, 1), s):
        xw, yw = x[:, t0:t0 + w], y[:, t0:t0 + w]
        mw = np.isfinite(yw) & observed[:, t0:t0 + w]
        mw[:, :settings.warmup_days] = False        # context only, not scored
        if xw.shape[1] < w:
            continue
        keep = mw.sum(1) >= settings.min_valid_targets
        xs.append(xw[keep])
        ys.append(np.nan_to_num(yw[keep]))
        ms.append(mw[keep])
    if not xs:
        f = x.shape[-1]
        return np.zeros((0, w, f), np.float32), np.zeros((0, w), np.float32), np.zeros((0, w), bool)
    return (np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32),
            np.concatenate(ms))


def windows_url(root: str, part: str, k: int) -> str:
    """Sample-major training shard ``{root}/training/sm-lstm/{part}-{k:04d}.zarr``."""
    return stores.join(root, "training", "sm-lstm", f"{part}-{k:04d}.zarr")


# Training shards are written (and streamed) in pieces of this many windows: the unit that
# ShardStream shuffles across shards.
SHARD_PIECE = 256


def _cut_tile(f: xr.DataArray, t: xr.DataArray, cells: np.ndarray, time_mask: np.ndarray,
              k: int, settings: TrainSettings, root: str, storage_options) -> dict:
    """Cut one tile's windows and write its shards (runs as one task; numpy-backed input).

    Returns ``{"train": [url], "val": [url], "moments": …}``: the moments
    (:func:`models.normalization.moments`) of the tile's training windows, merged over tiles
    into the normalisation statistics, so those see every tile without a second read."""
    from models import normalization

    names = list(harmonise.feature_names())
    obs_i = names.index("observed")
    # the training days are picked here, in NumPy: a boolean index on the dask arrays was a
    # shuffle of thousands of tasks per tile (the scheduler, not the work, set the pace)
    x = np.asarray(f.transpose(dims.PASS, dims.Y, dims.X, dims.TIME, dims.FEATURE).values)
    x = x[:, :, :, np.asarray(time_mask, bool)]
    obs = x[..., obs_i] > 0.5
    tv = np.asarray(t.transpose(dims.Y, dims.X, dims.TIME).values)[..., np.asarray(time_mask,
                                                                                 bool)]
    yv = np.broadcast_to(tv[None], x.shape[:-1])
    sel = np.broadcast_to(cells[None], x.shape[:3]).reshape(-1)

    def flat(a):
        return a.reshape((-1,) + a.shape[3:])

    xw, yw, mw = _tile_windows(flat(x)[sel], flat(yv)[sel], flat(obs)[sel], settings)
    out: dict = {"train": [], "val": [], "moments": None}
    if not len(xw):
        return out
    # One random stream per tile: the split does not depend on the order tiles run in.
    is_val = np.random.default_rng((settings.seed, k)).random(len(xw)) < settings.val_share
    for part, take in (("train", ~is_val), ("val", is_val)):
        if not take.any():
            continue
        ds = xr.Dataset({
            "x": (("sample", dims.TIME, dims.FEATURE), xw[take]),
            "y": (("sample", dims.TIME), yw[take]),
            "mask": (("sample", dims.TIME), mw[take]),
        }, coords={dims.FEATURE: names})
        # Zarr chunks of SHARD_PIECE windows set in the encoding: the arrays stay NumPy (dask
        # chunks here would send them through the scheduler, from inside this task).
        enc = {v: {"chunks": (SHARD_PIECE,) + ds[v].shape[1:]} for v in ("x", "y", "mask")}
        out[part].append(stores.write_dataset(
            ds, windows_url(root, part, k), storage_options=storage_options, encoding=enc))
        if part == "train":
            out["moments"] = normalization.moments(xw[take])
    return out


def write_training_shards(feats: dict[str, xr.DataArray], tgt: xr.DataArray,
                          cell_mask: np.ndarray, time_mask: np.ndarray,
                          settings: TrainSettings, root: str, storage_options=None
                          ) -> dict[str, list[str]]:
    """Cut training windows one spatial tile at a time and write them as sample-major shards.

    Each (sensor, tile) is one task (on the cluster's workers when a client is active), so only
    one tile's features are in a worker's memory at a time.  Each window goes to the ``val``
    part with probability ``val_share`` (seeded per tile), to ``train`` otherwise.

    Returns:
      ``{"train": [urls], "val": [urls], "stats": …, "constant": [names]}``: the shards in
      tile order, the normalisation statistics of all training windows
      (:func:`models.normalization.stats_from_moments`; None without any), and the features
      constant over them (land-cover classes the training never saw, …).
    """
    import dask

    from models import normalization

    rows = tgt.sizes[dims.Y]
    tr = settings.tile_rows
    tasks = []
    for fa in feats.values():
        for r0 in range(0, rows, tr):
            sl = {dims.Y: slice(r0, r0 + tr)}
            tasks.append(dask.delayed(_cut_tile)(
                fa.isel(sl), tgt.isel(sl), cell_mask[r0:r0 + tr], np.asarray(time_mask, bool),
                len(tasks), settings, root, storage_options))
    urls: dict = {"train": [], "val": []}
    got = dask.compute(*tasks)
    for g in got:
        for part in urls:
            urls[part] += g[part]
    m = normalization.combine_moments(g["moments"] for g in got)
    urls["stats"] = None if m is None else normalization.stats_from_moments(m)
    urls["constant"] = [] if m is None else [
        n for n, sd in zip(harmonise.feature_names(), normalization.moments_std(m), strict=True)
        if sd < normalization.CONSTANT_STD]
    return urls


class ShardStream:
    """Re-iterable batches streamed from sample-major shards, mixed across shards.

    Each shard is one tile of one sensor.  An epoch visits the shards' pieces of
    :data:`SHARD_PIECE` windows in random order, ``mix`` pieces at a time: those are read,
    shuffled together and cut into batches, so a batch mixes up to ``mix`` tiles and sensors
    while at most ``mix`` pieces (+ one batch) are in memory.  (Shuffling within one shard at a
    time gave batches from a single tile: the model chased each latitude band in turn.)
    Fixed batch shape (so the training step compiles once); the incomplete tail is dropped.
    ``shuffle=False`` reads the pieces in order (validation).
    """

    def __init__(self, urls: list[str], batch: int, seed: int, storage_options=None,
                 shuffle: bool = True, mix: int = 32):
        self.urls, self.batch, self.seed = urls, batch, seed
        self.storage_options, self.shuffle, self.epoch = storage_options, shuffle, 0
        self.mix = max(int(mix), 1)

    def _open(self) -> list[xr.Dataset]:
        # Pieces are read where the training runs, without dask: never through a Dask cluster
        # that happens to be the default scheduler (a round trip per piece), and no graph per
        # read (an epoch of the demo's shards: 4.0 s with dask arrays, 1.6 s without).
        return [stores.open_dataset(u, storage_options=self.storage_options, use_dask=False)
                for u in self.urls]

    def __call__(self) -> Iterator[dict]:
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        shards = self._open()
        pieces = [(i, a, min(a + SHARD_PIECE, ds.sizes["sample"]))
                  for i, ds in enumerate(shards)
                  for a in range(0, ds.sizes["sample"], SHARD_PIECE)]
        if self.shuffle:
            pieces = [pieces[j] for j in rng.permutation(len(pieces))]
        carry: dict | None = None
        for g in range(0, len(pieces), self.mix):
            parts = [] if carry is None else [carry]
            for i, a, b in pieces[g:g + self.mix]:
                sub = shards[i].isel(sample=slice(a, b))
                parts.append({k: np.asarray(sub[k].values) for k in ("x", "y", "mask")})
            buf = {k: np.concatenate([p[k] for p in parts]) for k in ("x", "y", "mask")}
            n = len(buf["x"])
            idx = rng.permutation(n) if self.shuffle else np.arange(n)
            full = n // self.batch
            for j in range(full):
                sel = idx[j * self.batch:(j + 1) * self.batch]
                yield {k: v[sel] for k, v in buf.items()}
            rest = idx[full * self.batch:]
            carry = {k: v[rest] for k, v in buf.items()} if len(rest) else None


def model_url(root: str) -> str:
    """Where the trained LSTM bundle is written (``{sha12}`` filled in on save)."""
    return stores.join(root, "models", "sm-lstm-{sha12}.ckpt")


def train(root: str, settings: TrainSettings = TrainSettings(), *,
          storage_options: Mapping[str, Any] | None = None,
          progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Train the LSTM on the SMAP overlap; write the bundle and ``reports/sm-train.json``."""
    static = _static(root, storage_options)
    smap = publish.open_product(root, product_id("smap", _grid_name(static)), storage_options)
    tgt = harmonise.target(smap)
    feats = {}
    for s in TRAIN_SENSORS:
        cal = _calibrated(root, s, storage_options, static)
        if cal is None:
            continue
        common = np.intersect1d(cal[dims.TIME].values, tgt[dims.TIME].values)
        feats[s] = harmonise.features(cal.sel({dims.TIME: common}), static, s)
    if not feats:
        raise errors.StoreNotFound(f"{root}: no calibrated AMSR2 or GMI store overlapping SMAP; "
                                   "run `tbcube calibrate apply` first")
    t_all = np.unique(np.concatenate([f[dims.TIME].values for f in feats.values()]))
    feats = {s: f.reindex({dims.TIME: t_all}) for s, f in feats.items()}
    tgt = tgt.reindex({dims.TIME: t_all})
    years = xr.DataArray(t_all, dims=dims.TIME).dt.year
    ny, nx = tgt.sizes[dims.Y], tgt.sizes[dims.X]
    held = holdout_cells(ny, nx, settings.holdout_every)
    train_time = years != settings.test_year
    progress("cutting training windows (one tile at a time) into sample-major shards")
    shards = write_training_shards(feats, tgt, ~held, train_time.values, settings, root,
                                   storage_options)
    stream = ShardStream(shards["train"], settings.batch, settings.seed, storage_options)
    val = ShardStream(shards["val"], settings.batch, settings.seed, storage_options,
                      shuffle=False)
    stats = shards["stats"]
    if stats is None:
        raise errors.InputDataError("no training windows: the calibrated sensors and the SMAP "
                                    "product do not overlap with enough valid days")
    if shards["constant"]:
        progress(f"constant over the training windows (passed through unscaled): "
                 f"{', '.join(shards['constant'])}")
    observed_idx = harmonise.feature_names().index("observed")
    stats["mean"][observed_idx], stats["std"][observed_idx] = 0.0, 1.0
    target_vals = tgt.where(xr.DataArray(~held, dims=(dims.Y, dims.X))).values
    cfg = {"n_features": len(harmonise.feature_names()), "hidden": settings.hidden,
           "num_layers": settings.num_layers, "dropout": settings.dropout,
           "target_mean": float(np.nanmean(target_vals)),
           "target_std": float(max(np.nanstd(target_vals), 1e-3))}
    progress(f"training LSTM on {', '.join(feats)} (held out: year {settings.test_year}, "
             f"{int(held.sum())} of {held.size} cells)")
    bundle, history, best = apply.train_lstm(cfg, stats, stream, val,
                                             seed=settings.seed,
                                             learning_rate=settings.learning_rate,
                                             max_epochs=settings.max_epochs,
                                             patience=settings.patience, log=progress)
    ref = apply.save_bundle(bundle, model_url(root), storage_options)
    report = {"root": root, "model": {"uri": ref.uri, "sha256": ref.sha256, "config": cfg},
              "train_sensors": list(feats), "test_year": settings.test_year,
              "training_shards": {k: len(shards[k]) for k in ("train", "val")},
              "constant_features": shards["constant"],
              "holdout_cells": int(held.sum()), "epochs": len(history), "best_epoch": best,
              "history": history, "settings": dataclasses.asdict(settings)}
    stores.write_json(stores.reports_url(root, "sm-train.json"), report, storage_options)
    _register_model(root, ref, cfg, storage_options)
    return report


def _register_model(root, ref, cfg, storage_options) -> None:
    try:
        from pipeline.io import catalog
    except ImportError:  # pragma: no cover - the catalog module ships with tbcube
        return
    catalog.register_model(root, "sm-lstm", ref.uri, ref.sha256, config=cfg,
                           storage_options=storage_options)


def latest_model(root: str, storage_options=None) -> apply.ModelRef:
    """The model recorded by the last ``sm train`` report."""
    url = stores.reports_url(root, "sm-train.json")
    if not stores.exists(url, storage_options):
        raise errors.StoreNotFound(f"{root}: no trained LSTM (reports/sm-train.json); "
                                   "run `tbcube sm train` first")
    m = stores.read_json(url, storage_options)["model"]
    n_model = m.get("config", {}).get("n_features")
    names = harmonise.feature_names()
    if n_model is not None and int(n_model) != len(names):
        raise errors.ConfigError(
            f"{m['uri']}: the LSTM was trained on {n_model} input features, this tbcube makes "
            f"{len(names)}; retrain it with `tbcube sm train --root {root}`")
    return apply.ModelRef(m["uri"], m["sha256"])


# --- harmonisation -----------------------------------------------------------------------------
def ancillary_screens(anc: xr.Dataset, like: xr.DataArray
                      ) -> tuple[xr.DataArray | None, xr.DataArray | None]:
    """Frozen ground and snow cover on ``like``'s (time, pass, y, x) from a reanalysis store.

    The SMAP retrieval's rules (:class:`pipeline.soil_moisture.RetrievalParams`): frozen where
    the pass's soil (else surface) temperature < ``frozen_below_k``; snow where SWE >
    ``snow_swe_mm``.  Float 1/0, NaN where the store has no value (outside its time range or
    window), so the caller can fall back there.  ``None`` for a screen the store cannot give.
    """
    at = {dims.TIME: like[dims.TIME], dims.Y: like[dims.Y], dims.X: like[dims.X]}

    def on_like(da: xr.DataArray) -> xr.DataArray:
        da = da.reset_coords(drop=True).reindex(at)
        if dims.PASS in da.dims:
            da = da.sel({dims.PASS: like[dims.PASS]})
        da = da.broadcast_like(like).transpose(*like.dims)
        # the product's own blocks (the store's chunks would make them irregular)
        return da.chunk(dict(zip(like.dims, like.chunks, strict=True))) if like.chunks else da

    frozen = snow = None
    t = _reanalysis_temperature(anc)
    if t is not None:
        t = on_like(t)
        frozen = xr.where(t.notnull(), (t < THAWED_MIN_K).astype(np.float32), np.nan)
    if "snow_water_equivalent" in anc:
        swe = on_like(anc["snow_water_equivalent"])
        snow = xr.where(swe.notnull(), (swe > SNOW_MAX_MM).astype(np.float32), np.nan)
    return frozen, snow


def _reanalysis_temperature(anc: xr.Dataset) -> xr.DataArray | None:
    """The temperature the frozen-ground rule reads (the retrieval's, see
    :func:`pipeline.soil_moisture.reanalysis_temperature`)."""
    teff = soil_moisture.reanalysis_temperature(anc)
    return None if teff is None else teff[1]


def dense_target_cells(smap: xr.Dataset) -> xr.DataArray:
    """Bool (y, x), lazy: cells whose SMAP retrieval set DENSE_VEGETATION (retrieved VOD above
    ``vod_dense``, VWC ≳ 5 kg m-2) on more than ``DENSE_TARGET_SHARE`` of its retrieved
    pass-days.  The LSTM learned those cells from a target outside SMAP-class accuracy (on the
    demo transect the target's ubRMSD vs truth is 0.047 where VOD > 0.5, 0.022 elsewhere)."""
    got = smap[dims.SOIL_MOISTURE].notnull()
    dense = ((smap[dims.QUALITY_FLAG].astype(np.int64) & int(qc.QC.DENSE_VEGETATION)) != 0) & got
    over = [d for d in (dims.TIME, dims.PASS) if d in got.dims]
    n, k = got.sum(over), dense.sum(over)
    return ((n > 0) & (k > DENSE_TARGET_SHARE * n)).reset_coords(drop=True).rename("dense")


def open_dense_target(root: str, grid_name: str, storage_options=None
                      ) -> tuple[str | None, xr.DataArray | None]:
    """(URL of the current SMAP product, :func:`dense_target_cells` of it, in memory); (None,
    None) when no SMAP product with quality flags is published."""
    try:          # the pointer read once: the URL reported is the version flagged
        url = publish.current_url(root, product_id("smap", grid_name), storage_options)
        smap = stores.open_dataset(url, storage_options=storage_options)
    except errors.TbcubeError:
        return None, None
    if dims.QUALITY_FLAG not in smap or dims.SOIL_MOISTURE not in smap:
        return None, None
    return url, dense_target_cells(smap).load()


def harmonised(cal: xr.Dataset, static: xr.Dataset, sensor: str, ref: apply.ModelRef, *,
               ancillary: xr.Dataset | None = None, dense: xr.DataArray | None = None,
               frozen_model: Mapping[str, Any] | None = None,
               tile: int = dims.PENCIL_TILE, resources: dict | None = None) -> xr.Dataset:
    """Lazy harmonised product of one sensor (time, pass, y, x), on the days it observed.

    ``ancillary``: the archive's reanalysis store; frozen ground and snow are then screened by
    the SMAP retrieval's own rules (:func:`ancillary_screens`), by TB heuristics where it has no
    value or without it.  ``frozen_model``: without a reanalysis, this sensor's station-fitted
    frozen-ground classifier (an entry of :mod:`pipeline.graphs.frozen_screens`), which replaces
    the 36.5 GHz threshold where it has a value.  ``dense``: (y, x) cells of
    :func:`dense_target_cells`; their values are kept and flagged DENSE_VEGETATION (as the SMAP
    product keeps and flags its own).
    """
    feats = harmonise.features(cal, static, sensor)
    feats = feats.chunk({dims.TIME: -1, dims.PASS: 1, dims.Y: tile, dims.X: tile,
                         dims.FEATURE: -1})
    sm = apply.apply_sequence_model(feats, ref, resources=resources)
    sm = sm.transpose(dims.TIME, dims.PASS, dims.Y, dims.X)
    observed = feats.sel({dims.FEATURE: "observed"}, drop=True) > 0.5
    tb36 = feats.sel({dims.FEATURE: "tb_36.5V"}, drop=True)
    tb18 = feats.sel({dims.FEATURE: "tb_18.7V"}, drop=True)
    frozen = tb36 < FROZEN_TB36V_K
    if frozen_model is not None and frozen_model.get("model"):
        pf = frozen_screens.frozen_probability(feats, frozen_model["model"])
        frozen = xr.where(pf.notnull(), pf >= float(frozen_model["threshold"]), frozen)
    snow = (tb18 - tb36) > SNOW_SCATTER_K
    if ancillary is not None:
        f_anc, s_anc = ancillary_screens(ancillary, tb36)
        if f_anc is not None:
            frozen = xr.where(f_anc.notnull(), f_anc > 0.5, frozen)
        if s_anc is not None:
            snow = xr.where(s_anc.notnull(), s_anc > 0.5, snow)
    sm = sm.where(observed & ~frozen & ~snow).clip(0.0, 1.0)
    flag = (xr.where(frozen, int(qc.QC.FROZEN_GROUND), 0)
            | xr.where(snow, int(qc.QC.SNOW_COVER), 0)
            | xr.where(~observed, int(qc.QC.INSUFFICIENT_OBS), 0)).astype(np.uint16)
    if dense is not None:
        on = dense.reindex({dims.Y: cal[dims.Y], dims.X: cal[dims.X]}, method="nearest",
                           tolerance=1.0).fillna(False).astype(bool)
        flag = flag | xr.where(dims.chunk_like(on, observed) & observed,
                               int(qc.QC.DENSE_VEGETATION), 0).astype(np.uint16)
    coords = grid.grid_coords(cal.attrs["grid"], grid.Window.parse(cal.attrs["grid_window"]))
    out = xr.Dataset({
        dims.SOIL_MOISTURE: sm.astype(np.float32).assign_attrs(
            units="m3 m-3", long_name=f"soil moisture harmonised to SMAP from {sensor} TB",
            standard_name="volume_fraction_of_condensed_water_in_soil", grid_mapping=dims.CRS),
        dims.QUALITY_FLAG: flag.transpose(dims.TIME, dims.PASS, dims.Y, dims.X).assign_attrs(
            {**qc.flag_attrs(), "grid_mapping": dims.CRS}),
    })
    out = out.assign_coords({dims.LAT: coords[dims.LAT], dims.LON: coords[dims.LON]})
    out[dims.CRS] = coords[dims.CRS]
    out.attrs = {"grid": cal.attrs["grid"], "grid_window": cal.attrs["grid_window"],
                 "sensor": sensor, "model_sha256": ref.sha256, "Conventions": "CF-1.10",
                 "title": f"tbcube harmonised soil moisture ({sensor})"}
    return out


def open_ancillary(root: str, grid_name: str, storage_options=None) -> xr.Dataset | None:
    """The archive's reanalysis store ``ancillary/{grid}.zarr`` (None when it has none)."""
    url = stores.ancillary_url(root, grid_name)
    if not stores.exists(url, storage_options):
        return None
    return stores.open_dataset(url, storage_options=storage_options)


def harmonise_all(root: str, *, storage_options: Mapping[str, Any] | None = None,
                  resources: dict | None = None,
                  progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Harmonise every calibrated sensor's whole record; publish ``sm-{sensor}-{grid}-v1``."""
    ref = latest_model(root, storage_options)
    static = _static(root, storage_options)
    g = _grid_name(static)
    anc = open_ancillary(root, static.attrs["grid"], storage_options)
    # without a reanalysis temperature: station-fitted frozen-ground classifiers per sensor
    screens = frozen_screens.ensure(root, static, HARMONISED_SENSORS, ancillary=anc,
                                    storage_options=storage_options, progress=progress)
    _, dense = open_dense_target(root, g, storage_options)
    urls = {}
    for s in HARMONISED_SENSORS:
        cal = _calibrated(root, s, storage_options, static)
        if cal is None:
            continue
        progress(f"harmonising {s} ({cal.sizes[dims.TIME]} days)")
        fm = (screens or {}).get("sensors", {}).get(s)
        ds = harmonised(cal, static, s, ref, ancillary=anc, dense=dense, resources=resources,
                        frozen_model=fm)
        prov = {"model_sha256": ref.sha256}
        if fm and fm.get("model"):
            prov["frozen_screen"] = {"table": frozen_screens.table_url(root),
                                     "model": fm["model"], "threshold": fm["threshold"]}
        urls[s] = publish.publish_dataset(ds, root, product_id(s, g), spec=schema.SM_HARMONISED,
                                          storage_options=storage_options, provenance=prov)
    unseen = unseen_landcover(ref, static)
    if unseen:
        progress(f"{sum(unseen.values())} land cells have a land-cover class the LSTM never saw "
                 f"in training ({', '.join(f'IGBP {k}: {v}' for k, v in unseen.items())}); "
                 "their values are extrapolations")
    report = {"root": root, "model_sha256": ref.sha256, "products": urls,
              "landcover_unseen_in_training": unseen,
              "frozen_screen": ("ancillary temperature" if screens is None else {
                  "table": frozen_screens.table_url(root),
                  **{s: {k: v for k, v in e.items() if k != "model"}
                     for s, e in screens["sensors"].items()}}),
              "dense_target_cells": None if dense is None else int(dense.sum())}
    stores.write_json(stores.reports_url(root, "sm-harmonise.json"), report, storage_options)
    return report


def unseen_landcover(ref: apply.ModelRef, static: xr.Dataset) -> dict[str, int]:
    """Land cells per land-cover class whose one-hot feature never was 1 in the model's
    training windows (mean 0 and a constant-feature std: 1, or the 1e-6 floor of older
    bundles): ``{"IGBP class" or "other": n cells}``, classes with cells only.  Their
    harmonised values are extrapolations (before session 6 the statistics came from one tile,
    and this listed 60 of the demo transect's 204 cells)."""
    stats = apply.load_bundle(ref).norm_stats
    names = harmonise.feature_names()
    lc = static["landcover"]
    land = _land(static)              # permanent snow and ice never has soil moisture
    out = {}
    for i, n in enumerate(names):
        if not n.startswith("lc_"):
            continue
        if stats["mean"][i] != 0.0 or not (stats["std"][i] == 1.0 or stats["std"][i] <= 1e-6):
            continue
        key = n[3:]
        cells = (~lc.isin(list(harmonise.LANDCOVER_CLASSES)) if key == "other"
                 else lc == int(key)) & land
        k = int(cells.sum())
        if k:
            out[key] = k
    return out


# --- fusion ----------------------------------------------------------------------------------
def fusion_stack(sources: Mapping[str, xr.DataArray], *, tile: int = dims.PENCIL_TILE,
                 match: bool = True) -> xr.DataArray:
    """Daily soil moisture of every source (sensor, time, y, x) [m3 m-3], chunked for fusion.

    One chunk holds every source's whole record for ``tile`` rows (triple collocation needs the
    whole time series per pixel), so rows are independent: the phased job ``sm-fused``
    (:mod:`pipeline.runner.kinds_sm`) builds the product in parts along ``y`` from it.
    ``match``: shift each source to the SMAP retrieval's per-cell mean through the overlap
    chain (:func:`pipeline.fuse.match_means`), so the merge has no steps where sources come
    and go.
    """
    stack = fuse.stack_sources(dict(sources)).chunk({dims.SENSOR: -1, dims.TIME: -1,
                                                     dims.Y: tile, dims.X: -1})
    return fuse.match_means(stack) if match else stack


def _land(static: xr.Dataset) -> xr.DataArray:
    """Land where soil moisture exists at all (y, x): permanent snow and ice (IGBP 15) never
    has any; seasonally frozen ground still counts (and lowers ``land_coverage``)."""
    return (static["land_fraction"] > 0.5) & (static["landcover"] != PERMANENT_SNOW_ICE)


def fused_product(stack: xr.DataArray, err_var: xr.DataArray, static: xr.Dataset
                  ) -> xr.Dataset:
    """The fused product (data-contract.md) of a :func:`fusion_stack` (lazy).

    Args:
      stack: (sensor, time, y, x) [m3 m-3] from :func:`fusion_stack`.
      err_var: Error variance per source (sensor, y, x) [m6 m-6]
        (:func:`pipeline.fuse.tc_error_variance`).
      static: The archive's static layers over the same (y, x) as ``stack``.
    """
    land = _land(static)
    fused = fuse.fuse_sensors(stack, err_var, land.load())
    coords = grid.grid_coords(static.attrs["grid"], grid.Window.parse(static.attrs["grid_window"]))
    fused = fused.assign_coords({dims.LAT: coords[dims.LAT], dims.LON: coords[dims.LON]})
    for v in fused.data_vars:
        if dims.Y in fused[v].dims:
            fused[v].attrs["grid_mapping"] = dims.CRS
    fused[dims.CRS] = coords[dims.CRS]
    fused.attrs = {"grid": static.attrs["grid"], "grid_window": static.attrs["grid_window"],
                   "sources": ",".join(map(str, stack[dims.SENSOR].values)),
                   "Conventions": "CF-1.10", "title": "tbcube fused daily soil moisture"}
    return fused


# The SMAP retrieval's own frozen-ground and snow rules (docs/soil-moisture.md)
THAWED_MIN_K = soil_moisture.RetrievalParams().frozen_below_k
SNOW_MAX_MM = soil_moisture.RetrievalParams().snow_swe_mm


def thawed_land(root: str, static: xr.Dataset, time: xr.DataArray,
                storage_options=None) -> xr.DataArray | None:
    """Land where soil moisture is retrievable that day (time, y, x), from the ancillary store.

    Thawed: the reanalysis soil (else surface) temperature ≥ 274.15 K in at least one pass and
    SWE ≤ 1 mm — the retrieval's own rules, from the same inputs.  Lazy on a lazy store; None
    without an ancillary store.
    """
    anc = open_ancillary(root, static.attrs["grid"], storage_options)
    if anc is None:
        return None
    t = _reanalysis_temperature(anc)
    if t is None:
        return None
    t = (t.max(dims.PASS) if dims.PASS in t.dims else t).reindex({dims.TIME: time.values})
    ok = t >= THAWED_MIN_K
    if "snow_water_equivalent" in anc:
        swe = anc["snow_water_equivalent"]
        swe = swe.max(dims.PASS) if dims.PASS in swe.dims else swe
        ok = ok & ~(swe.reindex({dims.TIME: time.values}) > SNOW_MAX_MM)
    land = _land(static)
    return ok & land.values


def observed_by_any(root: str, grid_name: str, sources: list[str], time: xr.DataArray,
                    storage_options=None) -> xr.DataArray:
    """(time, y, x), lazy: some source observed the cell that day, whatever its screens then
    did (a pass whose quality flag lacks ``insufficient_obs``)."""
    seen = None
    for s in sources:
        prod = publish.open_product(root, product_id(s, grid_name), storage_options)
        if dims.QUALITY_FLAG not in prod:
            continue
        o = (prod[dims.QUALITY_FLAG] & int(qc.QC.INSUFFICIENT_OBS)) == 0
        o = (o.any(dims.PASS) if dims.PASS in o.dims else o).reset_coords(drop=True)
        o = o.reindex({dims.TIME: time.values}, fill_value=False)
        seen = o if seen is None else seen | o
    if seen is None:
        return xr.DataArray(np.zeros(time.size, bool), dims=dims.TIME,
                            coords={dims.TIME: time.values})
    return seen


# fuse_all keeps the stacked sources in (worker) memory up to this size; larger stacks are
# read again for each use (the sm-fused job builds large products in parts instead).
PERSIST_STACK_BYTES = 2 * 2**30


def fuse_all(root: str, *, storage_options: Mapping[str, Any] | None = None,
             progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Fuse the harmonised sensors (+ SMAP) into ``sm-fused-{grid}-v1``."""
    static = _static(root, storage_options)
    g = _grid_name(static)
    sources = {}
    for s in HARMONISED_SENSORS + ("smap",):
        try:
            sources[s] = publish.open_product(root, product_id(s, g), storage_options)[
                dims.SOIL_MOISTURE]
        except errors.TbcubeError:
            continue
    if len(sources) < 1:
        raise errors.StoreNotFound(f"{root}: no harmonised products; run `tbcube sm harmonise`")
    progress(f"fusing {', '.join(sources)}")
    raw = fusion_stack(sources, match=False)
    stack = fuse.match_means(raw)
    if raw.nbytes <= PERSIST_STACK_BYTES:
        # read the products and match them once: the error variances, the product and the
        # report each need the stack (52 s -> 32 s on the demo transect's LocalCluster)
        raw, stack = dask.persist(raw, stack)
    offsets, methods = dask.compute(fuse.mean_offsets(raw), fuse.match_methods(raw))
    fallback = fallback_error_variance(root, storage_options)
    ev = fuse.tc_error_variance(stack, fallback=fallback).load()
    fused = fused_product(stack, ev["err_var"], static)
    url = publish.publish_dataset(fused.chunk({dims.TIME: 366}), root, product_id("fused", g),
                                  spec=schema.SM_FUSED, storage_options=storage_options)
    out = publish.open_product(root, product_id("fused", g), storage_options)
    n_active = stack.notnull().any((dims.Y, dims.X)).sum(dims.SENSOR).load()
    cov = out[dims.LAND_COVERAGE].load()
    multi = cov.where(n_active.reindex_like(cov) >= 2)
    report = {
        "root": root, "product": url, "sources": list(sources),
        "error_std_median": {s: _f(np.sqrt(ev["err_var"].sel({dims.SENSOR: s}).median()))
                             for s in sources},
        "error_variance_origin": {s: {"triple_collocation": int((ev["err_var_source"].sel(
            {dims.SENSOR: s}) == 1).sum()), "fallback": int((ev["err_var_source"].sel(
                {dims.SENSOR: s}) == 2).sum())} for s in sources},
        "mean_matching": {
            "chain": [[s, list(r)] for s, r in fuse.MATCH_CHAIN],
            "monthly": True,
            "offset_median": {s: _f(o.where(o != 0).median()) for s, o in offsets.items()},
            "cells_matched": {s: int((o != 0).any("month").sum()) for s, o in offsets.items()},
            "cells_by_method": {s: {k: int((m == v).sum()) for k, v in (
                ("overlap", fuse.BY_OVERLAP), ("climatology", fuse.BY_CLIMATOLOGY),
                ("none", fuse.NOT_MATCHED))} for s, m in methods.items()},
            "climatology_fallback": {s: list(r) for s, r in fuse.CLIMATOLOGY_FALLBACK.items()},
            "cells": int(static["landcover"].size)},
        "land_coverage": {"mean": _f(cov.mean()),
                          "min_when_2plus_sensors": _f(multi.min()),
                          "days_2plus_sensors": int(multi.notnull().sum()),
                          "days_2plus_below_0.8": int((multi < 0.8).sum())},
        # per pixel, then averaged (lazy: each window is read where it is needed)
        "handovers": fuse.handover_diagnostics(out[dims.SOIL_MOISTURE]),
    }
    thawed = thawed_land(root, static, cov[dims.TIME], storage_options)
    if thawed is not None:
        # Diagnostic: coverage of the land where SM is retrievable at all (frozen or snow-covered
        # ground has no liquid soil moisture to retrieve).  The target above counts all land.
        # daily counts only, in one lazy pass (a global decade of (time, y, x) masks is GBs)
        yx = (dims.Y, dims.X)
        has = out[dims.SOIL_MOISTURE].notnull()
        seen = thawed & observed_by_any(root, g, list(sources), cov[dims.TIME], storage_options)
        n_thawed, n_has_t, n_seen, n_has_s = dask.compute(
            thawed.sum(yx), (has & thawed).sum(yx), seen.sum(yx), (has & seen).sum(yx))
        cov_t = (n_has_t / n_thawed).where(n_thawed > 0)
        multi_t = cov_t.where(n_active.reindex_like(cov_t) >= 2)
        report["land_coverage_thawed"] = {
            "mean": _f(cov_t.mean()), "min_when_2plus_sensors": _f(multi_t.min()),
            "q05_when_2plus_sensors": _f(multi_t.quantile(0.05)) if int(
                multi_t.notnull().sum()) else None,
            "days_2plus_below_0.8": int((multi_t < 0.8).sum()),
            "rule": f"soil temperature ≥ {THAWED_MIN_K} K in a pass and SWE ≤ {SNOW_MAX_MM} mm "
                    "(ancillary store)"}
        # Where the rest went: thawed land that no sensor observed that day (swath gaps), and
        # the coverage of the thawed land some sensor did observe (what the chain kept of it).
        cov_o = (n_has_s / n_seen).where(n_seen > 0)
        multi_o = cov_o.where(n_active.reindex_like(cov_o) >= 2)
        report["land_coverage_thawed"]["unobserved_share"] = _f(
            1.0 - float(n_seen.sum()) / max(float(n_thawed.sum()), 1.0))
        report["land_coverage_thawed"]["of_observed"] = {
            "mean": _f(cov_o.mean()), "min_when_2plus_sensors": _f(multi_o.min()),
            "days_2plus_below_0.8": int((multi_o < 0.8).sum()),
            "rule": "thawed land where at least one source observed that day (its quality "
                    "flag lacks insufficient_obs in a pass)"}
    stores.write_json(stores.reports_url(root, "sm-fuse.json"), report, storage_options)
    return report


def fallback_error_variance(root: str, storage_options=None) -> dict[str, float]:
    """ubRMSD² of each harmonised sensor against the SMAP target on held-out data."""
    url = stores.reports_url(root, "sm-validation.json")
    if not stores.exists(url, storage_options):
        return {}
    rep = stores.read_json(url, storage_options)
    out = {}
    for s, d in rep.get("against_smap_heldout", {}).items():
        if d.get("ubrmsd") is not None:
            out[s] = float(d["ubrmsd"]) ** 2
    return out


def _f(x) -> float | None:
    v = float(x)
    return None if not np.isfinite(v) else round(v, 5)


# --- validation ------------------------------------------------------------------------------
def _scores(est: xr.DataArray, ref: xr.DataArray, dim) -> dict[str, xr.DataArray]:
    return {"n": metrics.n_pairs(est, ref, dim), "r": metrics.pearson_r(est, ref, dim),
            "bias": metrics.bias(est, ref, dim), "rmsd": metrics.rmsd(est, ref, dim),
            "ubrmsd": metrics.ubrmsd(est, ref, dim)}


def _score(est: xr.DataArray, ref: xr.DataArray, dim) -> dict[str, float | None]:
    out = {k: (int(v) if k == "n" else _f(v)) for k, v in _scores(est, ref, dim).items()}
    if isinstance(dim, tuple) and dims.TIME in dim and dims.Y in dim:
        # SMAP convention: temporal ubRMSD per pixel (≥ 10 pairs), median over pixels; the pooled
        # "ubrmsd" above removes one mean only, so spatial biases count as error there.
        n = metrics.n_pairs(est, ref, dims.TIME)
        per = metrics.ubrmsd(est, ref, dims.TIME).where(n >= 10)
        out["ubrmsd_per_pixel_median"] = _f(per.median())
    return out


def validate(root: str, settings: TrainSettings = TrainSettings(), *,
             storage_options: Mapping[str, Any] | None = None,
             progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Score every soil-moisture product against truth, SMAP (held out) and stations."""
    static = _static(root, storage_options)
    g = _grid_name(static)
    ny, nx = static.sizes[dims.Y], static.sizes[dims.X]
    held = xr.DataArray(holdout_cells(ny, nx, settings.holdout_every), dims=(dims.Y, dims.X))
    truth = vod_daily = None
    tu = stores.truth_url(root, static.attrs["grid"])
    if stores.exists(tu, storage_options):
        t_ds = stores.open_dataset(tu, storage_options=storage_options)
        truth = t_ds[dims.SOIL_MOISTURE]
        if "frozen" in t_ds:
            # liquid soil moisture is only retrievable on thawed days: score those
            frozen_any = t_ds["frozen"].max(dims.PASS) if dims.PASS in t_ds["frozen"].dims \
                else t_ds["frozen"]
            truth = truth.where(frozen_any == 0)
        if dims.VOD in t_ds:
            from pipeline.graphs.retrieval import nearest_l_band

            vod_daily = fuse.daily_mean_of_passes(nearest_l_band(t_ds[dims.VOD])).load()
    products, smap_t = {}, None
    for s in HARMONISED_SENSORS + ("smap", "fused"):
        try:
            ds = publish.open_product(root, product_id(s, g), storage_options)
        except errors.TbcubeError:
            continue
        products[s] = ds[dims.SOIL_MOISTURE]
        if s == "smap":
            smap_t = harmonise.target(ds)
    stations = _station_daily(root, storage_options)
    truth_daily = fuse.daily_mean_of_passes(truth).load() if truth is not None else None
    report: dict[str, Any] = {"root": root, "test_year": settings.test_year,
                              "heldout_cells": int(held.sum()),
                              "against_truth_unseen": {}, "against_smap_heldout": {},
                              "stations": {}}
    sparse, dense = (f"against_truth_unseen_vod_le_{SMAP_CLASS_VOD_MAX:g}",
                     f"against_truth_unseen_vod_gt_{SMAP_CLASS_VOD_MAX:g}")
    if vod_daily is not None:
        report[sparse], report[dense] = {}, {}
    dailies = {}                 # each product's daily means, read once for every score below
    for s, sm in products.items():
        progress(f"validating {s}")
        daily = dailies[s] = fuse.daily_mean_of_passes(sm).load()
        years = daily[dims.TIME].dt.year
        unseen = held | (years == settings.test_year)
        if truth_daily is not None:
            tr = truth_daily.reindex_like(daily)
            report["against_truth_unseen"][s] = _score(daily.where(unseen), tr.where(unseen),
                                                       (dims.TIME, dims.Y, dims.X))
            if vod_daily is not None:
                # by the truth's L-band VOD on the day (NaN VOD: in neither side)
                vod = vod_daily.reindex_like(daily)
                for key, side in ((sparse, vod <= SMAP_CLASS_VOD_MAX),
                                  (dense, vod > SMAP_CLASS_VOD_MAX)):
                    m = unseen & side
                    report[key][s] = _score(daily.where(m), tr.where(m),
                                            (dims.TIME, dims.Y, dims.X))
        if smap_t is not None and s not in ("smap", "fused"):
            tg = smap_t.reindex_like(daily).load()
            report["against_smap_heldout"][s] = _score(daily.where(unseen), tg.where(unseen),
                                                       (dims.TIME, dims.Y, dims.X))
        report["stations"][s] = _station_scores(daily, static, stations)
    if truth is not None and "fused" in products:
        # Discontinuities at hand-overs: the shift of the error (fused − truth), which removes
        # the natural change across the window that the raw shift in sm-fuse.json contains.
        fz = dailies["fused"]
        tr = truth_daily.reindex_like(fz)
        both = fz.notnull() & tr.notnull()
        report["handovers_vs_truth"] = fuse.handover_diagnostics(fz.where(both),
                                                                 reference=tr.where(both))
    if truth_daily is not None and "fused" in products:
        # Fused vs each sensor on the same pixel-days (unseen): each sensor's own score covers
        # only its swaths and latitudes (TMI: ±38°), so the fused product is compared with it
        # where both exist; per-pixel median ubRMSD, as the report checks it.
        fz = dailies["fused"]
        tr = truth_daily.reindex_like(fz)
        unseen = held | (fz[dims.TIME].dt.year == settings.test_year)
        common = {}
        for s in HARMONISED_SENSORS:
            if s not in products:
                continue
            one = dailies[s].reindex_like(fz)
            both = unseen & fz.notnull() & one.notnull() & tr.notnull()
            if not bool(both.any()):
                continue
            common[s] = {"sensor": _score(one.where(both), tr.where(both),
                                          (dims.TIME, dims.Y, dims.X)),
                         "fused": _score(fz.where(both), tr.where(both),
                                         (dims.TIME, dims.Y, dims.X))}
        report["fused_vs_sensor_common_support"] = common

        def key(d):
            v = d.get("ubrmsd_per_pixel_median")
            return v if v is not None else d.get("ubrmsd")

        report["fused_beats_every_sensor"] = bool(common) and all(
            key(c["fused"]) is not None and key(c["sensor"]) is not None
            and key(c["fused"]) < key(c["sensor"]) for c in common.values())
    from pipeline.graphs import sm_figures

    report["figures"] = sm_figures.write_figures(root, g, report, storage_options)
    stores.write_json(stores.reports_url(root, "sm-validation.json"), report, storage_options)
    return report


def _station_daily(root: str, storage_options) -> dict[str, xr.Dataset]:
    """Daily in-situ soil moisture of every network under ``insitu/`` (read once per
    validation)."""
    out = {}
    for net in stores.store_names(root, "insitu", storage_options):
        st = stores.open_stations(stores.insitu_url(root, net), "insitu",
                                  storage_options=storage_options)
        if dims.SOIL_MOISTURE not in st:
            continue
        # flag G only, frozen soil masked (pipeline.validation.screen_insitu)
        sm = validation.insitu_daily(st)
        out[net] = xr.Dataset({"sm": sm}, coords={dims.LAT: st[dims.LAT].load(),
                                                  dims.LON: st[dims.LON].load()})
    return out


def _station_scores(daily: xr.DataArray, static: xr.Dataset, stations: dict[str, xr.Dataset]
                    ) -> dict[str, Any]:
    """Per-station and per-network scores of a daily product against in-situ soil moisture.

    All stations of a network in one vectorised call per metric (``_score`` per station took
    about 1 s per product on the tiny archive's 24 stations; this takes 0.1 s).
    """
    out: dict[str, Any] = {}
    g, w = grid.window_from_attrs(static.attrs)
    for net, st in stations.items():
        sm = st["sm"]
        rows, cols = grid.latlon_to_rowcol(g, st[dims.LAT].values, st[dims.LON].values)
        r, c = np.asarray(rows) - w.row0, np.asarray(cols) - w.col0
        inside = np.flatnonzero((r >= 0) & (r < w.shape[0]) & (c >= 0) & (c < w.shape[1]))
        if inside.size == 0:
            continue
        ids = st[dims.STATION].values[inside]
        est = daily.isel({dims.Y: xr.DataArray(r[inside], dims=dims.STATION),
                          dims.X: xr.DataArray(c[inside], dims=dims.STATION)}, drop=True)
        est = est.drop_vars([k for k in est.coords if k != dims.TIME]).assign_coords(
            {dims.STATION: ids})
        ref = sm.sel({dims.STATION: ids}).reindex({dims.TIME: est[dims.TIME]})
        ref = ref.drop_vars([k for k in ref.coords if k not in (dims.TIME, dims.STATION)])
        table = _scores(est, ref, dims.TIME)
        # a station outside this sensor's coverage (no pair) is left out
        have = np.flatnonzero(table["n"].values > 0)
        if have.size == 0:
            continue
        per = {str(ids[k]): {m: (int(v[k]) if m == "n" else _f(v[k]))
                             for m, v in ((m, a.values) for m, a in table.items())}
               for k in have}
        sel = {dims.STATION: ids[have]}
        ub = [v["ubrmsd"] for v in per.values() if v["ubrmsd"] is not None]
        out[net] = {"stations": per,
                    "pooled": _score(est.sel(sel), ref.sel(sel), (dims.STATION, dims.TIME)),
                    "median_station_ubrmsd": _f(np.median(ub)) if ub else None}
    return out
