"""GPU placement in scheduled reprocessing, tested on CPU.

``tbcube reprocess`` sets :attr:`pipeline.runner.jobs.Context.resources` from the connected
cluster (``{"GPU": 1}`` when a worker advertises a GPU, else ``None``); :func:`jobs.run_part`
hands it to the job, whose model tasks (autoencoder, SMAP retrieval kernel, LSTM) carry the
Dask resource annotation while every other task stays unannotated (CPU workers).  Placement
changes where tasks run, never what they compute: an annotated part written on CPU equals the
unannotated one, and the staleness key does not depend on it.

No GPU cluster is started: the annotations are read from the lazy graphs, and computing uses the
threaded scheduler, which ignores resource annotations (the CPU code path).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import types
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from pipeline import apply, dims, soil_moisture
from pipeline.io import provenance, stores
from pipeline.runner import jobs, kinds, kinds_sm
from tests.fixtures.dask import layer_resources

GPU = {"GPU": 1}
# dask names apply_ufunc's blockwise layers after the function (leading underscore dropped)
MODEL_LAYERS = ("run_block-", "run_array_block-")


pytestmark = pytest.mark.usefixtures("fixed_code_version")


def _assert_models_on(ds: xr.Dataset, var: str, resources: Mapping | None) -> None:
    """``var``'s model layers carry ``resources``; input layers carry nothing."""
    notes = layer_resources(ds[var])
    model = {k: v for k, v in notes.items() if k.startswith(MODEL_LAYERS)}
    assert model, f"{var}: no model layer in {sorted(notes)}"
    if resources is None:
        assert not any(notes.values()), f"{var}: annotated without resources: {notes}"
        return
    assert all(v == dict(resources) for v in model.values()), model
    # reading the stores and the other science stays unannotated (CPU workers)
    unannotated = [k for k, v in notes.items() if not v]
    assert any(k.startswith(("open_dataset-", "original-")) for k in unannotated), unannotated


def _ctx(root: str, resources=None) -> jobs.Context:
    return jobs.Context(root=root, settle_s=0.0, heartbeat_s=None, resources=resources)


class _Recording:
    """Wraps a job; records what :func:`jobs.run_part` asked of ``build_part``."""

    def __init__(self, job):
        self._job, self.calls = job, []

    def __getattr__(self, name):
        return getattr(self._job, name)

    def build_part(self, region, **kwargs):
        ds = self._job.build_part(region, **kwargs)
        self.calls.append((dict(region), kwargs, ds))
        return ds


def _same_key(job, root: str, parts: int) -> None:
    keys = [provenance.staleness_key(jobs.plan(job, _ctx(root, r), parts=parts).provenance)
            for r in (None, GPU)]
    assert keys[0] == keys[1] and keys[0]["config_hash"]


# --- freeze/thaw: the whole runner path, annotated part written on CPU ---------------------------


def test_run_part_places_ft_model_tasks_by_the_context(ft_archive):
    job = kinds.FreezeThawJob(product_id="ft-smap-n36-v1", root=ft_archive, tile=1)
    _same_key(job, ft_archive, parts=3)
    rec = _Recording(job)
    state = jobs.init(rec, _ctx(ft_archive, GPU), parts=3)
    assert jobs.run_part(rec, _ctx(ft_archive, GPU), "1/3") == 1
    assert jobs.run_part(rec, _ctx(ft_archive), "2/3") == 2
    (r1, kw1, gpu_part), (r2, kw2, cpu_part) = rec.calls
    assert kw1 == {"resources": GPU} and kw2 == {}  # no keyword at all on CPU clusters
    _assert_models_on(gpu_part, dims.THAW_PROBABILITY, GPU)
    _assert_models_on(cpu_part, dims.THAW_PROBABILITY, None)
    assert not any(layer_resources(gpu_part[dims.NPR]).values())  # NPR baseline: no model
    # the annotated part, written on CPU, holds what the unannotated graph computes
    written = stores.open_dataset(state["url"]).isel(r1).load()
    plain = job.build_part(r1).compute()
    for name in (dims.THAW_PROBABILITY, dims.NPR):
        np.testing.assert_array_equal(written[name].values, plain[name].values)
    assert np.isfinite(written[dims.THAW_PROBABILITY]).any()
    assert float(written[dims.THAW_PROBABILITY].min()) >= 0.0
    assert float(written[dims.THAW_PROBABILITY].max()) <= 1.0


# --- SMAP retrieval and LSTM harmonisation: lazy parts -------------------------------------------
def test_smap_retrieval_job_annotates_its_kernel_tasks(sm_archive):
    root = sm_archive[0]  # read only: planning and lazy parts write nothing
    job = kinds.SmapRetrievalJob(product_id="sm-smap-m36-v1", root=root, tile=2)
    _same_key(job, root, parts=3)
    region = job.partition(3)[1]
    for resources in (GPU, None):
        ds = job.build_part(region, resources=resources)
        for var in (dims.SOIL_MOISTURE, dims.VOD):
            _assert_models_on(ds, var, resources)


@pytest.fixture(scope="module")
def lstm_root(sim_tiny, tmp_path_factory) -> str:
    """GMI TB of the tiny archive standing in for calibrated/gmi (placement does not depend on
    the calibration) and an untrained, seeded LSTM recorded like ``tbcube sm train``."""
    from pipeline import harmonise
    from pipeline.graphs import harmonise as graph

    root = Path(tmp_path_factory.mktemp("placement")) / "tiny"
    shutil.copytree(Path(sim_tiny) / "tb" / "gmi.zarr", root / "calibrated" / "gmi.zarr")
    shutil.copytree(Path(sim_tiny) / "static", root / "static")
    n = len(harmonise.feature_names())
    cfg = {"n_features": n, "hidden": 8, "num_layers": 1, "dropout": 0.0,
           "target_mean": 0.25, "target_std": 0.08}
    stats = {"mean": [0.0] * n, "std": [1.0] * n}
    ref = apply.save_bundle(apply.init_bundle("sm_lstm", cfg, 0, stats),
                            graph.model_url(str(root)))
    stores.write_json(stores.reports_url(str(root), "sm-train.json"),
                      {"root": str(root), "model": {"uri": ref.uri, "sha256": ref.sha256,
                                                    "config": cfg}})
    return str(root)


def test_harmonised_job_annotates_its_lstm_tasks(lstm_root):
    job = kinds_sm.HarmonisedJob(product_id="sm-gmi-m36-v1", root=lstm_root)
    _same_key(job, lstm_root, parts=2)
    region = job.partition(2)[0]
    for resources in (GPU, None):
        _assert_models_on(job.build_part(region, resources=resources), dims.SOIL_MOISTURE,
                          resources)
    # the template is never computed: it carries no placement
    assert not any(layer_resources(job.template()[dims.SOIL_MOISTURE]).values())


# --- the CLI sets the context's resources from the connected cluster ----------------------------
class _FakeClient:
    def __init__(self, resources):
        self._info = {"workers": {f"tcp://w{i}": {"resources": r}
                                  for i, r in enumerate(resources)}}

    def scheduler_info(self, n_workers=-1):
        return self._info


@pytest.mark.parametrize("workers, use, want", [
    ([{}, {"GPU": 1}], True, GPU),
    ([{}, {}], True, None),
    ([{"GPU": 1}], False, None),  # --no-cluster: threads in this process
])
def test_reprocess_cli_sets_resources_from_the_cluster(monkeypatch, workers, use, want):
    from pipeline.cli import reprocess as cli
    from pipeline.runner import cluster

    @contextlib.contextmanager
    def connect(section=None):
        yield _FakeClient(workers)

    monkeypatch.setattr(cluster, "connect", connect)
    base = _ctx("/nowhere")
    with cli._client(types.SimpleNamespace(cluster=None), base, use) as ctx:
        assert ctx.resources == want
        assert dataclasses.replace(ctx, resources=None) == base  # nothing else changed


# --- apply_array_kernel ------------------------------------------------------------------------
def test_apply_array_kernel_annotation_changes_placement_not_values():
    """Forward TB of random soils through the retrieval kernel bridge: annotated (GPU) and
    unannotated graphs give identical TB, equal to the NumPy (eager) path."""
    settings = soil_moisture.RetrievalParams().kernel_settings(incidence_deg=40.0)
    rng = np.random.default_rng(0)
    tbd, st = (dims.TIME, dims.PASS, dims.Y, dims.X), (dims.Y, dims.X)

    def var(lo, hi, d, shape):
        return xr.DataArray(rng.uniform(lo, hi, shape).astype(np.float32), dims=d)

    inputs = [var(0.05, 0.45, tbd, (3, 2, 6, 4)), var(0.0, 1.0, tbd, (3, 2, 6, 4)),
              var(275.0, 300.0, tbd, (3, 2, 6, 4)), var(0.1, 0.4, st, (6, 4)),
              var(0.2, 0.5, st, (6, 4)), var(1.2, 1.5, st, (6, 4)),
              xr.DataArray(np.full((6, 4), 0.13, np.float32), dims=st),
              xr.DataArray(np.full((6, 4), 0.05, np.float32), dims=st)]

    def run(arrays, resources):
        return apply.apply_array_kernel("models.retrieval:forward_tb_with_settings", arrays,
                                        core_dim=dims.PASS, n_outputs=2, config=settings,
                                        batch=16, resources=resources)

    chunked = [a.chunk({dims.Y: 3}) for a in inputs]
    eager = run(inputs, GPU)  # NumPy input: nothing to annotate, computed now
    for resources in (GPU, None):
        lazy = run(chunked, resources)
        for out, ref in zip(lazy, eager, strict=True):
            notes = layer_resources(out)
            kernel = [v for k, v in notes.items() if k.startswith("run_array_block")]
            assert kernel and all(v == (GPU if resources else {}) for v in kernel), notes
            assert not any(notes[k] for k in notes if k.startswith("xarray-")), notes
            got = out.compute(scheduler="threads")
            np.testing.assert_array_equal(got.transpose(*tbd).values,
                                          ref.transpose(*tbd).values)
    tb_h, tb_v = (np.asarray(e) for e in eager)
    # physics sanity: land TB below the effective temperature, V above H at 40°
    assert np.all((tb_h > 100.0) & (tb_v < 300.0)) and np.all(tb_v > tb_h)


def test_apply_array_kernel_keeps_in_memory_static_layers_out_of_the_graph():
    """Static (y, x) layers in memory next to lazy (time, pass, y, x) inputs are chunked, not
    broadcast in NumPy: the graph stays small (it embedded every layer at the full 4-D shape
    before) and the values equal the all-NumPy path."""
    import pickle

    settings = soil_moisture.RetrievalParams().kernel_settings(incidence_deg=40.0)
    rng = np.random.default_rng(1)
    tbd, st = (dims.TIME, dims.PASS, dims.Y, dims.X), (dims.Y, dims.X)
    nt, ny, nx = 400, 20, 10
    lazy = [xr.DataArray(rng.uniform(lo, hi, (nt, 2, ny, nx)).astype(np.float32), dims=tbd)
            for lo, hi in ((0.05, 0.45), (0.0, 1.0), (275.0, 300.0))]
    static = [xr.DataArray(rng.uniform(lo, hi, (ny, nx)).astype(np.float32), dims=st)
              for lo, hi in ((0.1, 0.4), (0.2, 0.5), (1.2, 1.5), (0.1, 0.16), (0.0, 0.08))]

    def run(arrays):
        return apply.apply_array_kernel("models.retrieval:forward_tb_with_settings", arrays,
                                        core_dim=dims.PASS, n_outputs=2, config=settings,
                                        batch=256)

    chunks = {dims.TIME: 100, dims.Y: 10}
    out = run([a.chunk(chunks) for a in lazy] + static)
    graph = dict(out[0].__dask_graph__())
    embedded = len(pickle.dumps(graph, protocol=5))
    full_4d = nt * 2 * ny * nx * 4  # bytes of ONE static layer broadcast to the TB shape
    lazy_inputs = 3 * full_4d  # the lazy TB arrays (chunked from memory) are in the graph too
    assert embedded < lazy_inputs + full_4d / 2, (embedded, lazy_inputs)
    eager = run(lazy + static)
    for got, ref in zip(out, eager, strict=True):
        np.testing.assert_array_equal(got.compute(scheduler="threads").transpose(*tbd).values,
                                      ref.transpose(*tbd).values)
