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
import time as _time
from collections.abc import Callable

import numpy as np
import xarray as xr

from pipeline import apply, dims, errors, freeze_thaw, schema, training_data
from pipeline.io import publish, stores

__all__ = ["MODEL_NAME", "RunOptions", "TrainOptions", "bench_inference", "build_product",
           "product_id", "run", "train", "train_model"]

MODEL_NAME = "ft_autoencoder"
SENSOR = "smap"
Progress = Callable[[str], None] | None


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Training settings (science.md §1.4 defaults: Adam 1e-3, batch 64, 80/20, patience 30).

    Attributes:
      stratify: ``"conditioned"`` (one model, land-cover one-hot + water-fraction input
        channels) or ``"none"`` (one model, the authors' exact 3-channel architecture).
      rules: Segment selection.
      years: Training years (None = all years of the archive).
      epochs, patience, batch_size, learning_rate, seed: Optimisation.
      val_fraction, split_seed: Random segment split.
      max_steps: Optional cap on optimiser steps (smoke tests).
    """

    stratify: str = "conditioned"
    rules: training_data.SegmentRules = training_data.SegmentRules()
    years: tuple[int, ...] | None = None
    epochs: int = 200
    patience: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    val_fraction: float = 0.2
    split_seed: int = 1
    max_steps: int | None = None


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Product settings.

    Attributes:
      windows: NPR reference windows (baseline).
      threshold: NPR Δ threshold T.
      batch: Fixed model batch (series per call).
    """

    windows: freeze_thaw.ReferenceWindows = freeze_thaw.ReferenceWindows()
    threshold: float = 0.5
    batch: int = 256


def _log(progress: Progress, msg: str) -> None:
    if progress:
        progress(msg)


def product_id(grid: str) -> str:
    """``ft-smap-{grid}-v1`` (lower-case grid name)."""
    return f"ft-{SENSOR}-{grid.lower()}-v1"


def _open_inputs(root: str, storage_options=None, *, truth_required: bool = True):
    tb_url = stores.tb_url(root, SENSOR)
    tb = stores.open_dataset(tb_url, storage_options=storage_options)
    grid_name = tb.attrs.get("grid")
    if not grid_name:
        raise errors.SchemaError(f"{tb_url}: attr 'grid' missing")
    tb = tb.chunk(dims.pencil(dict(tb.sizes)))
    static = stores.open_dataset(stores.static_url(root, grid_name),
                                 storage_options=storage_options).load()
    truth = None
    t_url = stores.truth_url(root, grid_name)
    if truth_required or stores.exists(t_url, storage_options):
        truth = stores.open_dataset(t_url, storage_options=storage_options)
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
    norm = apply.normalizer(stats)
    bs = options.batch_size
    bundle, history, best = apply.train_sequence_model(
        MODEL_NAME, {"condition_channels": n_cond}, stats,
        lambda epoch: training_data.iterate_batches(tr, bs, norm,
                                                    shuffle_seed=options.seed + epoch),
        lambda: training_data.iterate_batches(va, bs, norm),
        seed=options.seed, learning_rate=options.learning_rate, epochs=options.epochs,
        patience=options.patience, max_steps=options.max_steps, log=progress)
    report = {
        "segments": {"total": len(seg), "frozen": n_frozen, "thawed": n_thawed,
                     "train": len(tr), "validation": len(va)},
        "stratify": options.stratify, "parameters": apply.parameter_count(bundle),
        "best_epoch": best, "history": history,
        "best": history[best] if 0 <= best < len(history) else None,
        "options": _plain(options),
    }
    return bundle, report


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
    _register_model(root, ref, bundle.config, storage_options)
    return ref


def _pointer(root: str) -> str:
    return stores.join(root, "models", f"{MODEL_NAME}-current.json")


def _register_model(root, ref, config, storage_options) -> None:
    try:
        from pipeline.io import catalog
    except ImportError:  # the catalog module is optional until it lands
        return
    if hasattr(catalog, "register_model"):
        catalog.register_model(root, MODEL_NAME, ref.uri, ref.sha256, config=dict(config),
                               storage_options=storage_options)


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
    return freeze_thaw.assemble_product(tb, p, baseline, observed, static, refs)


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


# --- benchmark -----------------------------------------------------------------------------
def bench_inference(n_pixels: int = 2048, n_days: int = 368, batch: int = 256, repeats: int = 3,
                    seed: int = 0, torch_compare: bool = True) -> dict:
    """AE inference throughput (pixel-days/s) on CPU, JAX vs an equivalent PyTorch model.

    The PyTorch model has the same layers and the same weights (copied), run in eval mode with
    ``torch.inference_mode`` on the same batches; it is skipped (``torch: null``) when torch is
    not installed.  Outputs are also compared (max abs difference of P(thaw)).
    """
    from pipeline import _ft_bench

    return _ft_bench.run(n_pixels=n_pixels, n_days=n_days, batch=batch, repeats=repeats,
                         seed=seed, torch_compare=torch_compare, timer=_time.perf_counter)
