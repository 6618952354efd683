"""Freeze/thaw jobs: train the autoencoder, run the product, validate it (docs/science.md §1).

Example::

    tbcube ft train --root /data/alaska-n36      # → {root}/models/ft_autoencoder-<sha12>.tbm
    tbcube ft run --root /data/alaska-n36        # → {root}/products/ft-smap-n36-v1/<ver>.zarr
    tbcube ft validate --root /data/alaska-n36   # → {root}/reports/ft-validation.json (+ PNGs)

Inputs (docs/data-contract.md): ``tb/smap.zarr``, ``static/{grid}.zarr``, a gridded temperature
field in the ``truth/{grid}.zarr`` layout (training labels; also the gridded truth of
validation) and ``insitu/{network}.zarr`` station soil temperature (validation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import xarray as xr

from pipeline import apply, dims, errors, freeze_thaw, schema, training_data
from pipeline.io import publish, stores

__all__ = ["MODEL_NAME", "RunOptions", "TrainOptions", "build_product", "calibrate_bundle",
           "product_id", "run", "station_truth", "train", "train_model",
           "validate", "validate_product"]

MODEL_NAME = "ft_autoencoder"
SENSOR = "smap"
Progress = Callable[[str], None] | None


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Training settings (science.md §1.4: Adam 1e-3, batch 64, 80/20; the paper's 200 epochs /
    patience 30 are shortened to 40 / 6, measured in docs/freeze-thaw.md).

    Attributes:
      stratify: ``"conditioned"`` (one model, land-cover one-hot + water-fraction input
        channels) or ``"none"`` (one model, the authors' exact 3-channel architecture).
      rules: Segment selection.
      years: Training years (None = all years of the archive).
      epochs, patience, batch_size, learning_rate, seed: Optimisation.
      val_fraction, split_seed: Random segment split.
      max_steps: Optional cap on optimiser steps (smoke tests).
      balance: Oversample rare (land-cover group, label) strata of the training split
        (:func:`pipeline.training_data.oversample_strata`, ``min_share``, ``max_repeat``).
      calibrate: After training, choose P(thaw) thresholds on the training years against the
        gridded top-soil temperature state (< 273.15 K frozen; :func:`calibrate_bundle`):
        ``"cell"`` per cell and pass (groups as fallback), ``"group"`` per land-cover group,
        ``"none"`` keeps the paper's 0.5.  Stored in the checkpoint.
    """

    stratify: str = "conditioned"
    rules: training_data.SegmentRules = training_data.SegmentRules()
    years: tuple[int, ...] | None = None
    epochs: int = 40
    patience: int = 6
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    val_fraction: float = 0.2
    split_seed: int = 1
    max_steps: int | None = None
    balance: bool = True
    min_share: float = 0.05
    max_repeat: int = 10
    calibrate: str = "cell"


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Product settings.

    Attributes:
      windows: NPR reference windows (baseline).
      threshold: NPR Δ threshold T.
      batch: Fixed model batch (series per call).
      ae_threshold: Decision threshold on P(thaw) for every cell, overriding the per-group
        thresholds stored in the checkpoint (None: the checkpoint's, or 0.5 if it has none).
    """

    windows: freeze_thaw.ReferenceWindows = freeze_thaw.ReferenceWindows()
    threshold: float = 0.5
    batch: int = 256
    ae_threshold: float | None = None


def _log(progress: Progress, msg: str) -> None:
    if progress:
        progress(msg)


def product_id(grid: str) -> str:
    """``ft-smap-{grid}-v1`` (lower-case grid name)."""
    return f"ft-{SENSOR}-{grid.lower()}-v1"


def _open_inputs(root: str, storage_options=None, *, truth_required: bool = True):
    tb_url = stores.tb_url(root, SENSOR)
    tb = stores.open_tb(tb_url, storage_options=storage_options)
    grid_name = tb.attrs.get("grid")
    if not grid_name:
        raise errors.SchemaError(f"{tb_url}: attr 'grid' missing")
    tb = tb.chunk(dims.pencil(dict(tb.sizes)))
    static = stores.open_static(stores.static_url(root, grid_name), tb,
                                storage_options=storage_options)
    truth = None
    t_url = stores.truth_url(root, grid_name)
    if truth_required or stores.exists(t_url, storage_options):
        truth = stores.open_on_cells(t_url, tb, storage_options=storage_options)
    return tb, static, truth, grid_name


# --- training ------------------------------------------------------------------------------
def train_model(tb: xr.Dataset, truth: xr.Dataset, static: xr.Dataset | None,
                options: TrainOptions, progress: Progress = None):
    """Select segments, fit normalisation and train; returns (bundle, report dict).

    Raises:
      errors.InputDataError: fewer than 20 segments or only one class.
    """
    if options.stratify not in ("none", "conditioned"):
        raise errors.ConfigError(f"stratify: {options.stratify!r} not in ['conditioned', 'none']")
    if options.calibrate not in ("cell", "group", "none"):
        raise errors.ConfigError(
            f"calibrate: {options.calibrate!r} not in ['cell', 'group', 'none']")
    if options.years is not None:
        tb = tb.sel({dims.TIME: tb[dims.TIME].dt.year.isin(list(options.years))})
    conditioned = options.stratify == "conditioned"
    seg = training_data.build_segments(tb, truth, static if conditioned else None, options.rules,
                                       progress=progress)
    n_frozen, n_thawed = int((seg.label == 1).sum()), int((seg.label == 0).sum())
    _log(progress, f"segments: {len(seg)} ({n_frozen} frozen, {n_thawed} thawed)")
    if len(seg) < 20 or min(n_frozen, n_thawed) == 0:
        raise errors.InputDataError(
            f"training data: {len(seg)} segments ({n_frozen} frozen, {n_thawed} thawed); need "
            "≥ 20 with both classes (check truth temperatures and the TB coverage)")
    tr, va = training_data.split_segments(seg, options.val_fraction, options.split_seed)
    n_cond = seg.x.shape[-1] - 3
    stats = apply.fit_norm_stats(tr.x, tr.mask, passthrough=n_cond)
    n_train = len(tr)
    if options.balance:
        tr = training_data.oversample_strata(tr, min_share=options.min_share,
                                             max_repeat=options.max_repeat, seed=options.seed)
        _log(progress, f"balanced training split: {n_train} → {len(tr)} segments")
    norm = apply.normalizer(stats)
    bs = options.batch_size
    bundle, history, best = apply.train_sequence_model(
        MODEL_NAME, {"condition_channels": n_cond}, stats,
        lambda epoch: training_data.iterate_batches(tr, bs, norm,
                                                    shuffle_seed=options.seed + epoch),
        lambda: training_data.iterate_batches(va, bs, norm),
        seed=options.seed, learning_rate=options.learning_rate, epochs=options.epochs,
        patience=options.patience, max_steps=options.max_steps, log=progress)
    calibration = None
    if options.calibrate != "none":
        bundle, calibration = calibrate_bundle(bundle, tb, truth, static,
                                               level=options.calibrate, progress=progress)
    names = list(freeze_thaw.LANDCOVER_GROUPS)
    by_group = {names[g]: {lab: int(((seg.group == g) & (seg.label == v)).sum())
                           for lab, v in (("frozen", 1), ("thawed", 0))}
                for g in np.unique(seg.group)}
    report = {
        "segments": {"total": len(seg), "frozen": n_frozen, "thawed": n_thawed,
                     "train": n_train, "train_balanced": len(tr), "validation": len(va),
                     "by_landcover": by_group},
        "calibration": calibration,
        "stratify": options.stratify, "parameters": apply.parameter_count(bundle),
        "best_epoch": best, "history": history,
        "best": history[best] if 0 <= best < len(history) else None,
        "options": _plain(options),
    }
    return bundle, report


def calibrate_bundle(bundle, tb: xr.Dataset, truth: xr.Dataset, static: xr.Dataset,
                     *, level: str = "cell", min_pairs: int = 365, batch: int = 256,
                     progress: Progress = None):
    """Choose P(thaw) decision thresholds on ``tb``'s (training) years.

    The trained model is applied to every cell's whole series (the production path,
    :func:`pipeline.apply._run_block`); on observed days its P(thaw) is compared with the
    gridded top-soil temperature state (``truth.soil_temperature`` < 273.15 K frozen, at the
    pass), and :func:`pipeline.freeze_thaw.choose_thresholds` picks one threshold per
    land-cover group and, with ``level="cell"``, one per cell and pass as well (as the SMAP
    product's per-cell, per-pass references); a cell/pass with fewer than ``min_pairs`` pairs
    keeps its group's threshold.

    Returns:
      (bundle with the thresholds in its config, report dict).
    """
    import tempfile

    if level not in ("group", "cell"):
        raise errors.ConfigError(f"calibrate: {level!r} not in ['cell', 'group', 'none']")
    n_cond = int(bundle.config.get("condition_channels", 0))
    feats = freeze_thaw.ft_features(tb, static if n_cond else None)
    order = (dims.PASS, dims.Y, dims.X, dims.TIME)
    x = feats.transpose(*order, dims.FEATURE).values
    with tempfile.TemporaryDirectory(prefix="tbcube-calibrate-") as tmp:
        ref = apply.save_bundle(bundle, f"{tmp}/model.tbm")
        p = apply._run_block(x, ref=ref, batch=batch)
    soil = truth["soil_temperature"].sel({dims.TIME: tb[dims.TIME]})
    if dims.PASS not in soil.dims:
        soil = soil.expand_dims({dims.PASS: tb[dims.PASS].values})
    thawed = freeze_thaw.state_from_temperature(soil).transpose(*order).values.astype(float)
    observed = freeze_thaw.observed_mask(tb).transpose(*order).values
    thawed[~observed] = np.nan
    group = freeze_thaw.landcover_group(static["landcover"]).transpose(dims.Y, dims.X).values
    group = np.broadcast_to(group[None, :, :, None], p.shape)
    names = list(freeze_thaw.LANDCOVER_GROUPS)
    th, counts = freeze_thaw.choose_thresholds(p, thawed, group, len(names),
                                               min_pairs=min_pairs)
    th = [round(float(v), 4) for v in th]
    pick = np.asarray(th, np.float32)[group]
    config = {**bundle.config, "thaw_thresholds": th}
    picks = {"0.5": np.full(p.shape, 0.5, np.float32), "group": pick}
    n_cells = int(np.prod(p.shape[:3]))
    report = {"reference": "truth soil_temperature < 273.15 K (frozen), observed days",
              "level": level,
              "years": sorted({int(y) for y in tb[dims.TIME].dt.year.values}),
              "thresholds": dict(zip(names, th, strict=True)),
              "pairs": {n: int(c) for n, c in zip(names, counts, strict=True)}}
    if level == "cell":
        cell_id = np.broadcast_to(np.arange(n_cells).reshape(p.shape[:3])[..., None], p.shape)
        cth, ccount = freeze_thaw.choose_thresholds(p, thawed, cell_id, n_cells,
                                                    min_pairs=min_pairs)
        cth = np.where(ccount >= min_pairs, cth, pick[..., 0].ravel()).round(4)
        picks["cell"] = cth.astype(np.float32)[cell_id]
        config.update(cell_thresholds=[float(v) for v in cth],
                      cell_threshold_pass=[str(v) for v in tb[dims.PASS].values],
                      cell_threshold_y=[float(v) for v in tb[dims.Y].values],
                      cell_threshold_x=[float(v) for v in tb[dims.X].values])
        report["cells"] = {"calibrated": int((ccount >= min_pairs).sum()), "total": n_cells,
                           "quantiles_5_50_95": np.quantile(cth, [0.05, 0.5, 0.95]).tolist()}
    ok = np.isfinite(p) & np.isfinite(thawed)
    accuracy = {f"threshold_{k}": float(np.mean((p[ok] >= t[ok]) == (thawed[ok] > 0.5)))
                for k, t in picks.items()}
    report["training_years_accuracy"] = accuracy
    _log(progress, f"training-years accuracy vs gridded soil state: {accuracy}")
    _log(progress, "thaw thresholds: " + ", ".join(
        f"{n} {v:.2f} ({c} pairs)" for n, v, c in zip(names, th, counts, strict=True) if c))
    return dataclasses.replace(bundle, config=config), report


def _plain(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return list(obj)
    return obj


def train(root: str, options: TrainOptions = TrainOptions(), *, storage_options=None,
          progress: Progress = None) -> apply.ModelRef:
    """Train on an archive root; writes the checkpoint, a pointer and a training report.

    Returns:
      The :class:`pipeline.apply.ModelRef` of ``{root}/models/ft_autoencoder-<sha12>.tbm``.
    """
    tb, static, truth, grid_name = _open_inputs(root, storage_options)
    bundle, report = train_model(tb, truth, static, options, progress)
    ref = apply.save_bundle(
        bundle, stores.join(root, "models", MODEL_NAME + "-{sha12}.tbm"), storage_options)
    stores.write_json(_pointer(root), {"uri": ref.uri, "sha256": ref.sha256, "grid": grid_name},
                      storage_options)
    stores.write_json(stores.reports_url(root, "ft-training.json"),
                      {**report, "model": {"uri": ref.uri, "sha256": ref.sha256}},
                      storage_options)
    _register_model(root, grid_name, ref, bundle, report, storage_options)
    return ref


def _pointer(root: str) -> str:
    return stores.join(root, "models", f"{MODEL_NAME}-current.json")


def _register_model(root, grid_name, ref, bundle, report, storage_options) -> None:
    try:
        from pipeline.io import catalog
    except ImportError:  # the catalog module is optional until it lands
        return
    if not hasattr(catalog, "register_model"):
        return
    n_in = 3 + int(bundle.config.get("condition_channels", 0))
    config = {
        "name": "FTC-Encoder freeze/thaw autoencoder",
        "architecture": "1-D convolutional autoencoder (Conv1D 64/32 k8 s2, ConvT 32/64/3)",
        "tasks": ["classification"],
        "framework": "JAX/Flax NNX",
        "framework_version": bundle.versions.get("flax") or "",
        "total_parameters": report["parameters"]["trainable"],
        "input": [{"name": "tb_features", "shape": [-1, -1, n_in],
                   "dim_order": ["batch", "time", "feature"], "data_type": "float32"}],
        "output": [{"name": "thaw_probability", "shape": [-1, -1],
                    "dim_order": ["batch", "time"], "data_type": "float32"}],
        "hyperparameters": dict(bundle.config),
        "norm_stats": bundle.norm_stats,
        "segments": report["segments"],
    }
    catalog.register_model(root, f"ft-autoencoder-{grid_name.lower()}-v1", ref.uri, ref.sha256,
                           config=config, storage_options=storage_options)


def current_model(root: str, storage_options=None) -> apply.ModelRef:
    """The model written by the last ``train`` on this root."""
    url = _pointer(root)
    if not stores.exists(url, storage_options):
        raise errors.StoreNotFound(f"{url}: no trained model (run `tbcube ft train` first)")
    doc = stores.read_json(url, storage_options)
    return apply.ModelRef(doc["uri"], doc["sha256"])


# --- product -------------------------------------------------------------------------------
def build_product(tb: xr.Dataset, static: xr.Dataset | None, ref: apply.ModelRef,
                  options: RunOptions = RunOptions(), *, truth: xr.Dataset | None = None,
                  resources: dict | None = None) -> xr.Dataset:
    """The lazy freeze/thaw product (AE + NPR baseline) for a TB archive (pencil chunks).

    Args:
      tb: SMAP TB (time, pass, channel, y, x), whole time axis in one chunk.
      static: Static layers (land cover, water fraction): conditioning and QC.
      ref: The autoencoder checkpoint.
      options: Product settings.
      truth: Gridded temperatures, needed only for ``windows.method == "temperature"``.
      resources: Dask resource annotation for model tasks (``{"GPU": 1}`` on GPU clusters).
    """
    bundle = apply.load_bundle(ref)
    n_cond = int(bundle.config.get("condition_channels", 0))
    npr = freeze_thaw.compute_npr(tb)
    refs = freeze_thaw.npr_references(npr, options.windows, truth)
    baseline = freeze_thaw.retrieve_npr(tb, refs, options.threshold)
    feats = freeze_thaw.ft_features(tb, static if n_cond else None)
    if feats.sizes[dims.FEATURE] != 3 + n_cond:
        raise errors.InputDataError(
            f"{ref.uri}: model expects {3 + n_cond} input channels, features have "
            f"{feats.sizes[dims.FEATURE]}")
    feats = feats.drop_vars([c for c in (dims.LAT, dims.LON) if c in feats.coords])
    p = apply.apply_sequence_model(feats, ref, batch=options.batch, resources=resources)
    observed = freeze_thaw.observed_mask(tb)
    threshold, rule = _decision_threshold(bundle.config, tb, static, options, ref)
    out = freeze_thaw.assemble_product(tb, p, baseline, observed, static, refs, threshold)
    out[dims.FT_STATE].attrs["comment"] = rule
    return out


def _decision_threshold(config: dict, tb: xr.Dataset, static, options: RunOptions, ref):
    """(threshold: scalar or DataArray, rule text) from the checkpoint config and options."""
    groups = config.get("thaw_thresholds") or ()
    if options.ae_threshold is not None or not groups:
        threshold = 0.5 if options.ae_threshold is None else float(options.ae_threshold)
        return threshold, f"thawed where thaw_probability >= {threshold:g}"
    if static is None:
        raise errors.InputDataError(f"{ref.uri}: per-land-cover thresholds need static layers")
    threshold = freeze_thaw.thresholds_by_cell(static["landcover"], groups)
    rule = ("thawed where thaw_probability >= the model's per-land-cover-group threshold ("
            + ", ".join(f"{n} {v:g}" for n, v in zip(freeze_thaw.LANDCOVER_GROUPS, groups,
                                                       strict=True)) + ")")
    cells = config.get("cell_thresholds") or ()
    if cells:
        axes = {dims.PASS: list(config["cell_threshold_pass"]),
                dims.Y: list(config["cell_threshold_y"]), dims.X: list(config["cell_threshold_x"])}
        shape = tuple(len(v) for v in axes.values())
        if int(np.prod(shape)) != len(cells):
            raise errors.InputDataError(
                f"{ref.uri}: cell_thresholds has {len(cells)} values, axes give {shape}")
        table = xr.DataArray(np.asarray(cells, np.float32).reshape(shape), dims=tuple(axes),
                             coords=axes)
        # Cells of the calibration window get their own threshold (matched by coordinate);
        # any other cell keeps its land-cover group's.
        here = table.reindex({d: tb[d].values for d in axes})
        threshold = here.fillna(threshold.drop_vars(
            [c for c in threshold.coords if c not in (dims.Y, dims.X)]))
        rule += ("; cells of the calibration window use their own per-pass threshold "
                 f"(median {float(np.median(cells)):g})")
    return threshold, rule


def run(root: str, options: RunOptions = RunOptions(), *, ref: apply.ModelRef | None = None,
        storage_options=None, resources: dict | None = None, progress: Progress = None) -> str:
    """Build and publish ``ft-smap-{grid}-v1``; returns the new version's URL."""
    tb, static, truth, grid_name = _open_inputs(
        root, storage_options, truth_required=options.windows.method == "temperature")
    ref = ref or current_model(root, storage_options)
    _log(progress, f"model {ref.uri} ({ref.sha256[:12]})")
    ds = build_product(tb, static, ref, options, truth=truth, resources=resources)
    pid = product_id(grid_name)
    record = {"config": _plain(options), "models": {MODEL_NAME: ref.sha256},
              "inputs": {"tb": stores.tb_url(root, SENSOR)}}
    url = publish.publish_dataset(ds, root, pid, spec=schema.FT_PRODUCT,
                                  storage_options=storage_options, provenance=record,
                                  chunks=dims.pencil(dict(ds.sizes)))
    _log(progress, f"published {pid}")
    return url


# --- validation ----------------------------------------------------------------------------
NETWORK = "simnet"
MAX_PROBE_DEPTH_M = 0.05


def _station_cells(product: xr.Dataset, insitu: xr.Dataset):
    """(station index, row, col) of the stations inside the product window."""
    from pipeline import grid

    g, w = grid.window_from_attrs(product.attrs)
    rows, cols = grid.latlon_to_rowcol(g, insitu[dims.LAT].values, insitu[dims.LON].values)
    r, c = np.asarray(rows) - w.row0, np.asarray(cols) - w.col0
    inside = (r >= 0) & (r < product.sizes[dims.Y]) & (c >= 0) & (c < product.sizes[dims.X])
    return np.flatnonzero(inside), r[inside].astype(int), c[inside].astype(int)


def station_truth(insitu: xr.Dataset, dates: xr.DataArray, stations: np.ndarray,
                  local_hours: dict[str, float]) -> xr.DataArray:
    """Soil-temperature state (0 frozen, 1 thawed, −1 missing) at each pass's overpass hour.

    The product's date is the local solar day; the overpass at local solar hour ``h`` and
    station longitude λ is UTC ``date + h − λ/15`` hours, matched to the nearest station time
    within half the station time step.

    Returns:
      int8 (time, pass, station).
    """
    st = insitu["soil_temperature"]
    depth = float(st.attrs.get("depth_m", np.nan))
    if not depth <= MAX_PROBE_DEPTH_M + 1e-6:
        raise errors.InputDataError(
            f"insitu: variable 'soil_temperature' depth_m {depth} > {MAX_PROBE_DEPTH_M} m")
    st = st.isel({dims.STATION: stations}).load()
    times = st[dims.TIME].values.astype("datetime64[s]").astype(np.int64)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 86400.0
    lon = insitu[dims.LON].values[stations].astype(float)
    day0 = dates.values.astype("datetime64[s]").astype(np.int64)
    out = np.full((len(day0), len(local_hours), len(stations)), -1, np.int8)
    vals = st.transpose(dims.TIME, dims.STATION).values
    for k, (_, hour) in enumerate(local_hours.items()):
        when = day0[:, None] + np.round((hour - lon[None, :] / 15.0) * 3600.0)
        idx = np.clip(np.searchsorted(times, when), 1, len(times) - 1)
        nearer = np.where(np.abs(times[idx - 1] - when) <= np.abs(times[idx] - when), idx - 1, idx)
        ok = np.abs(times[nearer] - when) <= step / 2
        t = np.take_along_axis(vals, nearer, axis=0)
        state = np.where(np.isfinite(t), np.where(t < freeze_thaw.FROZEN_K, 0, 1), -1)
        out[:, k, :] = np.where(ok, state, -1)
    return xr.DataArray(out, dims=(dims.TIME, dims.PASS, dims.STATION),
                        coords={dims.TIME: dates.values, dims.PASS: list(local_hours),
                                dims.STATION: insitu[dims.STATION].values[stations]})


def _by_class(pred, ref, classes: xr.DataArray, names: list[str], dim) -> dict:
    out = {}
    for i, name in enumerate(names):
        sel = classes == i
        if bool(sel.any()):
            out[name] = freeze_thaw.score_states(pred.where(sel, -1), ref.where(sel, -1), dim)
            out[name]["n_stations"] = int(sel.sum()) if dims.STATION in classes.dims else None
    return out


def validate_product(product: xr.Dataset, static: xr.Dataset, insitu: xr.Dataset | None,
                     truth: xr.Dataset | None, local_hours: dict[str, float]) -> tuple[dict, dict]:
    """Scores of the AE (``ft_state``) and NPR (``ft_state_npr``) retrievals.

    Returns:
      (report dict, arrays for figures).
    """
    methods = {"autoencoder": dims.FT_STATE, "npr": dims.FT_STATE_NPR}
    lc_names = list(freeze_thaw.LANDCOVER_GROUPS)
    wb_names = [f"{a:g}-{min(b, 1):g}" for a, b in zip(freeze_thaw.WATER_BINS[:-1],
                                                      freeze_thaw.WATER_BINS[1:], strict=True)]
    lc = freeze_thaw.landcover_group(static["landcover"]).load()
    wb = freeze_thaw.water_bin(static["water_fraction"]).load()
    report: dict = {"methods": methods, "landcover_groups": freeze_thaw.LANDCOVER_GROUPS,
                    "water_bins": wb_names}
    figs: dict = {}
    if insitu is not None:
        idx, rows, cols = _station_cells(product, insitu)
        pts = {dims.Y: xr.DataArray(rows, dims=dims.STATION),
               dims.X: xr.DataArray(cols, dims=dims.STATION)}
        sub = product[[dims.FT_STATE, dims.FT_STATE_NPR, dims.THAW_PROBABILITY]].isel(pts).load()
        ref = station_truth(insitu, product[dims.TIME], idx, local_hours)
        sub = sub.assign_coords({dims.STATION: ref[dims.STATION].values})
        st_lc, st_wb = lc.isel(pts), wb.isel(pts)
        st_lc = st_lc.assign_coords({dims.STATION: ref[dims.STATION].values})
        st_wb = st_wb.assign_coords({dims.STATION: ref[dims.STATION].values})
        alld = (dims.TIME, dims.PASS, dims.STATION)
        spring = sub[dims.TIME].dt.month.isin(list(freeze_thaw.SPRING_MONTHS))
        stations = {"n_stations": int(len(idx)), "max_probe_depth_m": MAX_PROBE_DEPTH_M}
        for m, var in methods.items():
            pred = sub[var].fillna(-1).astype(np.int8)
            stations[m] = {
                "overall": freeze_thaw.score_states(pred, ref, alld),
                "by_pass": {p: freeze_thaw.score_states(pred.sel({dims.PASS: p}),
                                                        ref.sel({dims.PASS: p}),
                                                        (dims.TIME, dims.STATION))
                            for p in local_hours},
                "by_landcover": _by_class(pred, ref, st_lc, lc_names, alld),
                "by_water_fraction": _by_class(pred, ref, st_wb, wb_names, alld),
                "spring_mar_jun": freeze_thaw.score_states(pred.where(spring, -1),
                                                           ref.where(spring, -1), alld),
                "transitions": freeze_thaw.transition_errors(pred, ref),
            }
        report["stations"] = stations
        figs["stations"] = (sub, ref)
    if truth is not None:
        tf = truth["frozen"].sel({dims.TIME: product[dims.TIME]})
        if dims.PASS not in tf.dims:
            tf = tf.expand_dims({dims.PASS: product[dims.PASS].values})
        ref_g = xr.where(tf == 1, 0, 1).astype(np.int8).load()
        alld = (dims.TIME, dims.PASS, dims.Y, dims.X)
        gridded = {}
        for m, var in methods.items():
            pred = product[var].fillna(-1).astype(np.int8).load()
            ok = (pred >= 0)
            figs[f"map_{m}"] = ((pred == ref_g) & ok).sum((dims.TIME, dims.PASS)) / ok.sum(
                (dims.TIME, dims.PASS))
            gridded[m] = {"overall": freeze_thaw.score_states(pred, ref_g, alld),
                          "by_landcover": _by_class(pred, ref_g, lc, lc_names, alld)}
        report["gridded_truth"] = gridded
    return report, figs


def validate(root: str, *, network: str | None = None, years: tuple[int, ...] | None = None,
             storage_options=None, progress: Progress = None) -> str:
    """Score the current ``ft-smap-{grid}-v1`` against stations and gridded truth.

    ``years`` restricts the scored days (e.g. the years not used for training).  ``network``:
    default the archive's only one under ``insitu/`` (``simnet`` among several).  Writes
    ``{root}/reports/ft-validation.json`` and PNG figures beside it; returns the JSON URL.
    """
    from pipeline import sensors

    tb = stores.open_tb(stores.tb_url(root, SENSOR), storage_options=storage_options)
    grid_name = tb.attrs["grid"]
    pid = product_id(grid_name)
    product = publish.open_product(root, pid, storage_options=storage_options)
    if years:
        product = product.sel({dims.TIME: product[dims.TIME].dt.year.isin(list(years))})
    static = stores.open_static(stores.static_url(root, grid_name),
                                storage_options=storage_options)
    if network is None:  # the archive's only network (or the simulator's among several)
        try:
            network = stores.default_store_name(root, "insitu", storage_options,
                                                 preferred=NETWORK)
        except errors.StoreNotFound:
            network = NETWORK  # none at all: scored against gridded truth only
    i_url = stores.insitu_url(root, network)
    insitu = (stores.open_stations(i_url, "insitu", storage_options=storage_options)
              if stores.exists(i_url, storage_options) else None)
    t_url = stores.truth_url(root, grid_name)
    truth = (stores.open_dataset(t_url, storage_options=storage_options)
             if stores.exists(t_url, storage_options) else None)
    if insitu is None and truth is None:
        raise errors.StoreNotFound(f"{i_url}: no station store and no {t_url}: nothing to score")
    hours = dict(sensors.get(SENSOR).local_time_h)
    report, figs = validate_product(product, static, insitu, truth, hours)
    report.update(product_id=pid, product_url=publish.current_url(root, pid, storage_options),
                  network=network if insitu is not None else None,
                  years=list(years) if years else "all")
    from pipeline.graphs import ft_figures

    for name, png in ft_figures.render(figs, report).items():
        url = stores.reports_url(root, f"ft-{name}.png")
        stores.write_bytes(url, png, storage_options)
        report.setdefault("figures", {})[name] = url
        _log(progress, f"figure {url}")
    return stores.write_json(stores.reports_url(root, "ft-validation.json"), report,
                             storage_options)
