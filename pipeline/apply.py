"""The only bridge from :mod:`pipeline` to :mod:`models`: apply a checkpointed model over chunks.

Pattern (docs/architecture.md §4.6): the task graph carries a tiny frozen
:class:`ModelRef` (URI + sha256), never parameters or jitted functions.  Each worker process
loads the bundle, verifies its digest and ``jax.jit``s the model **once** (a locked
``functools.cache``).  Blocks are reshaped to [pixels, time, feature], padded to a fixed
``batch`` so XLA compiles once per series length, run, cropped and returned as NumPy.  The time
axis must be a single chunk (pencil layout); ``apply_ufunc`` refuses a split core dim.

The JAX platform (cpu | gpu) is the worker environment's choice (``JAX_PLATFORMS``); GPU
placement of model tasks is requested with ``resources={"GPU": 1}``
(:func:`pipeline.runner.placement.model_resources`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from collections.abc import Callable

import numpy as np
import xarray as xr

from pipeline import dims, errors

__all__ = ["ModelRef", "apply_sequence_model", "clear_cache", "load_bundle", "loads_in_process",
           "save_bundle"]


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """Where a checkpoint lives and the sha256 it must have (≈100 bytes in a task graph)."""

    uri: str
    sha256: str


_LOAD_LOCK = threading.Lock()
# One JAX execution at a time per process.  XLA:CPU executions started concurrently from
# several Python threads (dask's threaded scheduler) were seen to deadlock here: every thread
# waiting on a futex inside the executable.  Parallelism on CPU comes from process workers with
# one thread each (pipeline.runner.cluster), so serialising within a process costs nothing there.
_EXEC_LOCK = threading.Lock()
_LOADS = {"count": 0}


def save_bundle(bundle, url: str, storage_options=None) -> ModelRef:
    """Serialise a :class:`models.checkpoint.Bundle` to ``url``; returns its :class:`ModelRef`.

    ``url`` may contain ``{sha12}``, replaced by the first 12 hex digits of the digest.
    """
    from models import checkpoint
    from pipeline.io import stores

    data, digest = checkpoint.to_bytes(bundle)
    url = url.replace("{sha12}", digest[:12])
    stores.write_bytes(url, data, storage_options)
    return ModelRef(url, digest)


def load_bundle(ref: ModelRef, storage_options=None):
    """Read and verify a bundle; a bad digest or version is a one-line TbcubeError."""
    from models import checkpoint
    from pipeline.io import stores

    data = stores.read_bytes(ref.uri, storage_options)
    try:
        return checkpoint.from_bytes(data, expected_sha256=ref.sha256, source=ref.uri)
    except checkpoint.ChecksumMismatch as e:
        raise errors.ChecksumError(str(e)) from None
    except checkpoint.CheckpointError as e:
        raise errors.InputDataError(str(e)) from None


@functools.cache
def _compiled_unlocked(ref: ModelRef) -> Callable[[np.ndarray], np.ndarray]:
    import jax

    from models import normalization, registry

    bundle = load_bundle(ref)
    config = registry.config_from_dict(bundle.name, bundle.config)
    spec = registry.get(bundle.name)
    params = jax.device_put(bundle.params)
    stats = bundle.norm_stats

    def run(x):
        return spec.apply(params, normalization.normalize(x, stats), config=config)

    _LOADS["count"] += 1
    return jax.jit(run)


def _compiled(ref: ModelRef):
    with _LOAD_LOCK:  # several threads may hit a cold cache at once
        return _compiled_unlocked(ref)


def clear_cache() -> None:
    """Forget loaded models in this process (tests)."""
    with _LOAD_LOCK:
        _compiled_unlocked.cache_clear()


def loads_in_process() -> int:
    """How many bundles this process has loaded and jitted (for one-load-per-worker checks)."""
    return _LOADS["count"]


def _run_block(x: np.ndarray, *, ref: ModelRef, batch: int) -> np.ndarray:
    """Apply a (time, feature) → (time,) model to one block shaped (..., time, feature)."""
    lead, (n_time, n_feat) = x.shape[:-2], x.shape[-2:]
    pixels = np.asarray(x, np.float32).reshape(-1, n_time, n_feat)
    out = np.full(pixels.shape[:2], np.nan, np.float32)
    if pixels.shape[0] == 0:
        return out.reshape(*lead, n_time)
    fn = _compiled(ref)
    for start in range(0, len(pixels), batch):
        piece = pixels[start:start + batch]
        padded = np.zeros((batch, n_time, n_feat), np.float32)
        padded[: len(piece)] = piece  # fixed shape → one XLA compile
        with _EXEC_LOCK:
            out[start:start + len(piece)] = np.asarray(fn(padded))[: len(piece)]
    return out.reshape(*lead, n_time)


def apply_sequence_model(
    features: xr.DataArray,
    ref: ModelRef,
    *,
    batch: int = 256,
    input_core_dims: tuple[str, str] = (dims.TIME, dims.FEATURE),
    output_core_dim: str = dims.TIME,
    resources: dict | None = None,
) -> xr.DataArray:
    """Run a sequence model on every pixel's whole series; chunk-agnostic, lazy on dask input.

    Args:
      features: Model inputs in raw units with ``input_core_dims`` (time, feature) plus any
        other dims (pixels); the time dim must be one chunk.  All-NaN pixels give NaN.
      ref: The checkpoint.
      batch: Fixed number of series per model call (the tail is zero-padded).
      input_core_dims: (time-like dim, feature dim).
      output_core_dim: Output dim (the input's time-like dim).
      resources: Dask resource annotation for the model tasks (e.g. ``{"GPU": 1}``).

    Returns:
      float32 DataArray with the non-core dims followed by ``output_core_dim``.
    """
    annotate = contextlib.nullcontext()
    if resources and features.chunks is not None:
        import dask

        annotate = dask.annotate(resources=dict(resources))
    with annotate:
        out = xr.apply_ufunc(
            _run_block,
            features,
            input_core_dims=[list(input_core_dims)],
            output_core_dims=[[output_core_dim]],
            exclude_dims={input_core_dims[0]} if output_core_dim != input_core_dims[0] else set(),
            dask="parallelized",
            output_dtypes=[np.float32],
            kwargs={"ref": ref, "batch": batch},
        )
    return out


# --- training (the pipeline side builds NumPy batches; models/ trains on them) -------------
def fit_norm_stats(x: np.ndarray, mask: np.ndarray, *, passthrough: int = 0) -> dict:
    """Per-channel normalisation statistics of the valid samples (see models.normalization)."""
    from models import normalization

    return normalization.fit_stats(x, mask, passthrough=passthrough)


def normalizer(stats: dict) -> Callable[[np.ndarray], np.ndarray]:
    """A NumPy ``x[..., channel] -> normalised x`` function for ``stats``."""
    mean = np.asarray(stats["mean"], np.float32)
    std = np.asarray(stats["std"], np.float32)

    def normalize(x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float32) - mean) / std
        return np.where(np.isnan(z), 0.0, z).astype(np.float32)

    return normalize


def train_sequence_model(
    name: str,
    config: dict,
    norm_stats: dict,
    train_batches: Callable[[int], object],
    val_batches: Callable[[], object],
    *,
    seed: int = 0,
    learning_rate: float = 1e-3,
    epochs: int = 200,
    patience: int = 30,
    max_steps: int | None = None,
    log: Callable[[str], None] | None = None,
):
    """Train a registered model on NumPy batches; returns (Bundle, history rows, best epoch).

    Only the freeze/thaw autoencoder (``"ft_autoencoder"``) has a training loop so far.
    """
    import dataclasses as dc

    import optax

    from models import checkpoint, registry, train

    if name != "ft_autoencoder":
        raise errors.ConfigError(f"model {name!r}: no training loop (only 'ft_autoencoder')")
    cfg = registry.config_from_dict(name, config)
    tx = optax.adam(learning_rate)
    state = train.create_state(cfg, seed, tx)
    result = train.fit(state, train_batches, val_batches, config=cfg, tx=tx, epochs=epochs,
                       patience=patience, max_steps=max_steps, log=log)
    bundle = checkpoint.Bundle(name, dc.asdict(cfg), result.params, norm_stats, {})
    return bundle, result.history, result.best_epoch


def parameter_count(bundle) -> dict:
    """Trainable parameters and BatchNorm statistics of an autoencoder bundle."""
    import jax

    count = lambda tree: sum(int(np.size(a)) for a in jax.tree.leaves(tree))  # noqa: E731
    return {"trainable": count(bundle.params["params"]),
            "batch_stats": count(bundle.params.get("batch_stats", {}))}


# --- generic array kernels (appended by the SMAP-retrieval stage; see apply_array_kernel) -----
@functools.cache
def _array_kernel_unlocked(kernel: str, config) -> Callable:
    import importlib

    import jax

    module, _, name = kernel.partition(":")
    fn = getattr(importlib.import_module(module), name)
    return jax.jit(functools.partial(fn, config=config))


def _array_kernel(kernel: str, config) -> Callable:
    with _LOAD_LOCK:
        return _array_kernel_unlocked(kernel, config)


def _run_array_block(*arrays: np.ndarray, kernel: str, config, batch: int, n_out: int,
                     skip_empty: tuple[int, tuple[float, ...]] | None = None):
    """Run ``kernel`` on blocks shaped (..., core): flatten, pad to ``batch``, crop, reshape.

    ``skip_empty = (i, fills)``: rows whose input ``i`` is non-finite over the whole core dim
    are not computed; their outputs are ``fills`` (what the kernel returns for such rows).
    """
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    lead, core = shape[:-1], shape[-1]
    flat = [np.broadcast_to(np.asarray(a, np.float32), shape).reshape(-1, core) for a in arrays]
    n_all = flat[0].shape[0]
    rows = None
    if skip_empty is not None:
        rows = np.flatnonzero(np.isfinite(flat[skip_empty[0]]).any(axis=1))
        flat = [a[rows] for a in flat]
    n = flat[0].shape[0]
    outs = [np.full((n, core), np.nan, np.float32) for _ in range(n_out)]
    if n:
        fn = _array_kernel(kernel, config)
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            padded = []
            for a in flat:
                p = np.repeat(a[start:start + 1], batch, axis=0)  # pad with a real row
                p[: stop - start] = a[start:stop]
                padded.append(p)
            with _EXEC_LOCK:
                res = [np.asarray(r) for r in fn(*padded)]
            for o, r in zip(outs, res, strict=True):
                o[start:stop] = r[: stop - start]
    if rows is not None:
        full = [np.full((n_all, core), fill, np.float32) for fill in skip_empty[1]]
        for f, o in zip(full, outs, strict=True):
            f[rows] = o
        outs = full
    return tuple(o.reshape(*lead, core) for o in outs)


def apply_array_kernel(
    kernel: str,
    inputs: list[xr.DataArray],
    *,
    core_dim: str,
    n_outputs: int,
    config,
    batch: int = 4096,
    skip_empty: tuple[int, tuple[float, ...]] | None = None,
    resources: dict | None = None,
) -> tuple[xr.DataArray, ...]:
    """Apply a batched JAX array kernel elementwise over pixels (lazy on dask input).

    The kernel is named by an importable ``"module:function"`` string (pickled by reference,
    never a closure) and called as ``function(*arrays, config=config)`` on float32 arrays shaped
    [batch, core]; it returns ``n_outputs`` arrays of the same shape.  Each worker process jits
    it once per (kernel, config) (``config`` must be hashable, e.g. a frozen dataclass); blocks
    are padded to ``batch`` rows so XLA compiles once.

    Args:
      kernel: ``"module:function"`` of the kernel (e.g. ``"models.retrieval:retrieve"``).
      inputs: DataArrays broadcast against each other; ``core_dim`` must be one chunk.
      core_dim: The dim handed whole to the kernel as its last axis (e.g. ``pass``).
      n_outputs: Number of arrays the kernel returns.
      config: Static, hashable kernel settings.
      batch: Rows per kernel call.
      skip_empty: ``(i, fills)``: rows (pixel × non-core index) whose input ``i`` has no finite
        value along ``core_dim`` are not computed and get the outputs ``fills`` (one per output:
        what the kernel itself returns for such a row).  Sparse inputs (swath gaps, days
        outside a sensor's period) then cost nothing.
      resources: Dask resource annotation for the kernel tasks (e.g. ``{"GPU": 1}``, see
        :func:`pipeline.runner.placement.model_resources`); ignored for NumPy input.

    Returns:
      ``n_outputs`` float32 DataArrays with the broadcast dims (``core_dim`` last).
    """
    chunks: dict = {}
    for a in inputs:  # the lazy inputs' chunks; in-memory (static) inputs follow them
        if a.chunks is not None:
            chunks.update({d: c for d, c in zip(a.dims, a.chunks, strict=True)
                           if d not in chunks})
    if chunks:
        inputs = [dims.chunk_like(a, chunks) for a in inputs]
    inputs = list(xr.broadcast(*inputs))
    annotate = contextlib.nullcontext()
    if resources and any(a.chunks is not None for a in inputs):
        import dask

        annotate = dask.annotate(resources=dict(resources))
    with annotate:
        out = xr.apply_ufunc(
            _run_array_block,
            *inputs,
            input_core_dims=[[core_dim]] * len(inputs),
            output_core_dims=[[core_dim]] * n_outputs,
            dask="parallelized",
            output_dtypes=[np.float32] * n_outputs,
            kwargs={"kernel": kernel, "config": config, "batch": batch, "n_out": n_outputs,
                    "skip_empty": skip_empty},
        )
    return out if isinstance(out, tuple) else (out,)


# --- soil-moisture LSTM training (appended by the soil-moisture stage-2 graph) ----------------
def train_lstm(
    config: dict,
    norm_stats: dict,
    train_batches: Callable[[], object],
    val_batches: Callable[[], object],
    *,
    seed: int = 0,
    learning_rate: float = 1e-3,
    max_epochs: int = 30,
    patience: int = 4,
    log: Callable[[str], None] | None = None,
):
    """Train the ``sm_lstm`` model on raw-unit NumPy batches; returns (Bundle, history, best).

    Batches are dicts ``x[b, t, f]`` (raw units, NaN for missing), ``y[b, t]``, ``mask[b, t]``;
    inputs are normalised here with ``norm_stats`` exactly as inference will do it.
    """
    import dataclasses as dc

    from models import checkpoint, lstm

    cfg = lstm.LSTMConfig(**config)
    norm = normalizer(norm_stats)

    def wrap(batches):
        def gen():
            src = batches() if callable(batches) else batches
            for b in src:
                yield {"x": norm(b["x"]), "y": np.asarray(b["y"], np.float32),
                       "mask": np.asarray(b["mask"], bool)}
        return gen

    res = lstm.fit(cfg, wrap(train_batches), wrap(val_batches), seed=seed,
                   learning_rate=learning_rate, max_epochs=max_epochs, patience=patience,
                   log=log)
    bundle = checkpoint.Bundle("sm_lstm", dc.asdict(cfg), res.params, norm_stats, {})
    return bundle, res.history, res.best_epoch


def init_bundle(name: str, config: dict, seed: int, norm_stats: dict):
    """An untrained bundle of a registered model (benchmarks, tests)."""
    import dataclasses as dc

    from models import checkpoint, registry

    cfg = registry.config_from_dict(name, config)
    return checkpoint.Bundle(name, dc.asdict(cfg), registry.get(name).init(cfg, seed), norm_stats,
                             {})
