"""Job kinds of soil-moisture stage 2 (``sm-{sensor}`` harmonised, ``sm-fused``) on the tiny
simulated archive: reprocessed in parts along y (interrupted, then resumed) they equal the graph
functions' products bit for bit, and their staleness follows the LSTM checkpoint and the
sources' published versions.

The archive is a copy of ``sim_tiny``, calibrated with the real calibration graph.  Two inputs
are deliberately cheap stand-ins, because neither their skill nor their origin is under test
here (tests/sm/test_chain.py tests those): the LSTM is an untrained, seeded bundle registered
the way ``tbcube sm train`` registers one (no training), and the ``sm-smap`` source of the
fusion is the simulator truth where SMAP observed plus seeded noise (the SMAP retrieval is
tested in tests/runner/test_kinds.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from pipeline import dims, errors
from pipeline.io import publish, stores
from pipeline.runner import jobs, kinds_sm

REPO = Path(__file__).resolve().parents[2]
PARTS = 3  # the tiny archive has 79 rows: three 32-row pencil tiles


pytestmark = pytest.mark.usefixtures("fixed_code_version")


def _register_lstm(root: str, seed: int) -> str:
    """Save an untrained LSTM bundle and record it like ``tbcube sm train``; returns sha256."""
    from pipeline import apply, harmonise
    from pipeline.graphs import harmonise as graph

    cal = stores.open_dataset(stores.calibrated_url(root, "gmi"))
    static = stores.open_dataset(stores.static_url(root, "M36"))
    x = harmonise.features(cal, static, "gmi").load()
    red = (dims.TIME, dims.PASS, dims.Y, dims.X)
    mean = x.mean(red, skipna=True).fillna(0.0).values
    std = np.maximum(x.std(red, skipna=True).fillna(1.0).values, 1e-6)
    names = list(harmonise.feature_names())
    mean[names.index("observed")], std[names.index("observed")] = 0.0, 1.0
    stats = {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    cfg = {"n_features": len(names), "hidden": 8, "num_layers": 1, "dropout": 0.0,
           "target_mean": 0.25, "target_std": 0.08}
    ref = apply.save_bundle(apply.init_bundle("sm_lstm", cfg, seed, stats), graph.model_url(root))
    stores.write_json(stores.reports_url(root, "sm-train.json"),
                      {"root": root, "model": {"uri": ref.uri, "sha256": ref.sha256,
                                               "config": cfg}})
    return ref.sha256


def _publish_smap_standin(root: str, seed: int) -> str:
    """``sm-smap-m36-v1``: truth soil moisture where SMAP observed, + N(0, 0.03) noise."""
    truth = stores.open_dataset(stores.truth_url(root, "M36")).load()
    tb = stores.open_dataset(stores.tb_url(root, "smap"))[dims.TB].load()
    observed = tb.notnull().all(dims.CHANNEL)
    rng = np.random.default_rng(seed)
    sm = truth[dims.SOIL_MOISTURE].sel({dims.TIME: tb[dims.TIME]})
    sm = (sm + rng.normal(0.0, 0.03, sm.shape)).clip(0.0, 1.0).where(observed)
    ds = xr.Dataset({dims.SOIL_MOISTURE: sm.astype(np.float32).assign_attrs(
        units="m3 m-3", long_name="stand-in SMAP soil moisture", grid_mapping=dims.CRS)})
    ds[dims.CRS] = truth[dims.CRS]
    ds.attrs = {k: truth.attrs[k] for k in ("grid", "grid_window")}
    return publish.publish_dataset(ds, root, "sm-smap-m36-v1")


@pytest.fixture(scope="module")
def stage2_root(sim_tiny, tmp_path_factory) -> str:
    """A calibrated copy of the tiny archive with a registered LSTM and a SMAP source."""
    from pipeline.graphs import calibration

    root = str(tmp_path_factory.mktemp("sm_kinds") / "tiny")
    shutil.copytree(sim_tiny, root)
    calibration.fit(root)
    calibration.apply(root)
    _register_lstm(root, seed=0)
    _publish_smap_standin(root, seed=0)
    return root


@pytest.fixture(scope="module")
def graph_products(stage2_root) -> dict[str, xr.Dataset]:
    """The products of the graph functions (``harmonise_all``, ``fuse_all``), in memory."""
    from pipeline.graphs import harmonise

    harmonise.harmonise_all(stage2_root)
    harmonise.fuse_all(stage2_root)
    return {pid: publish.open_product(stage2_root, pid).load()
            for pid in ("sm-gmi-m36-v1", "sm-fused-m36-v1")}


def _config(root: str):
    from pipeline.config import ReprocessJob

    # a time range covering the whole record (2014-06-01..2016-05-31)
    return ReprocessJob(products=["sm-gmi-m36-v1"], root=root,
                        time={"start": "2014-01-01", "end": "2016-12-31"})


def _ctx(root: str) -> jobs.Context:
    return jobs.Context(root=root, settle_s=0.0, heartbeat_s=None)


class _Counting:
    """Wraps a job and records the parts it builds."""

    def __init__(self, job):
        self._job, self.built = job, []

    def __getattr__(self, name):
        return getattr(self._job, name)

    def build_part(self, region):
        self.built.append(region[dims.Y].start)
        return self._job.build_part(region)


def _interrupted_then_resumed(pid: str, root: str) -> tuple[jobs.Plan, _Counting]:
    """Start a run, write only part 2 of 3 (the run dies), then resume with ``reprocess``."""
    ctx = _ctx(root)
    first = jobs.make_job(pid, _config(root))
    assert jobs.plan(first, ctx, parts=PARTS).action == "start"
    jobs.init(first, ctx, parts=PARTS)
    assert jobs.run_part(first, ctx, f"2/{PARTS}") == 2
    resumed = _Counting(jobs.make_job(pid, _config(root)))  # a new process: a new job
    plan, _ = jobs.reprocess(resumed, ctx, parts=PARTS)
    return plan, resumed


def _assert_identical(got: xr.Dataset, want: xr.Dataset, names) -> None:
    for name in names:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)


def test_sm_kinds_are_registered_and_the_deploy_config_lists_the_chain(stage2_root):
    from pipeline.config import ReprocessJob, load_config

    cfg = load_config(REPO / "deploy" / "configs" / "reprocess-sm.yaml", ReprocessJob)
    from pipeline.runner.kinds import SmapRetrievalJob

    kinds = [type(jobs.make_job(p, cfg, storage_options={"anon": True}))
             for p in cfg.products]  # factories do no I/O
    assert kinds == [SmapRetrievalJob] + [kinds_sm.HarmonisedJob] * 4 + [kinds_sm.FusedJob]
    assert [p.split("-")[1] for p in cfg.products] == ["smap", "tmi", "amsre", "amsr2", "gmi",
                                                       "fused"]  # dependency order
    cfg = _config(stage2_root)
    with pytest.raises(errors.ConfigError, match="does not match the archive's grid 'M36'"):
        jobs.make_job("sm-gmi-m25-v1", cfg).template()
    with pytest.raises(errors.StoreNotFound, match=r"calibrated/amsre\.zarr: no calibrated"):
        jobs.make_job("sm-amsre-m36-v1", cfg).inputs()  # the tiny archive has no AMSR-E
    with pytest.raises(errors.ConfigError, match="no job kind builds 'sm-ssmi-m36-v1'"):
        jobs.make_job("sm-ssmi-m36-v1", cfg)


def test_harmonised_job_resumes_and_equals_the_graph_product(stage2_root, graph_products):
    plan, resumed = _interrupted_then_resumed("sm-gmi-m36-v1", stage2_root)
    assert plan.action == "resume" and "1/3 parts done" in plan.reason
    assert sorted(resumed.built) == [0, 64]  # only the missing parts were rebuilt
    got = publish.open_product(stage2_root, "sm-gmi-m36-v1").load()
    want = graph_products["sm-gmi-m36-v1"]  # harmonise.harmonised via harmonise_all
    _assert_identical(got, want, (dims.SOIL_MOISTURE, dims.QUALITY_FLAG))
    sm = got[dims.SOIL_MOISTURE]
    assert 0.2 < float(sm.notnull().mean()) and float(sm.min()) >= 0 and float(sm.max()) <= 1
    job = jobs.make_job("sm-gmi-m36-v1", _config(stage2_root))
    assert jobs.plan(job, _ctx(stage2_root), parts=PARTS).action == "up-to-date"
    assert job.partition_dim == dims.Y and job.chunks[dims.Y] == dims.PENCIL_TILE


def test_a_new_lstm_checkpoint_makes_harmonised_products_stale(stage2_root):
    ctx, cfg = _ctx(stage2_root), _config(stage2_root)
    jobs.reprocess(jobs.make_job("sm-gmi-m36-v1", cfg), ctx, parts=PARTS)  # up to date now
    report = stores.reports_url(stage2_root, "sm-train.json")
    before = stores.read_json(report)
    try:
        sha = _register_lstm(stage2_root, seed=1)  # `tbcube sm train` again: another model
        assert sha != before["model"]["sha256"]
        job = jobs.make_job("sm-gmi-m36-v1", cfg)
        assert job.models() == {"sm-lstm": sha}
        plan = jobs.plan(job, ctx, parts=PARTS)
        assert plan.action == "start"
        assert plan.reason.endswith("model checkpoints changed")  # and nothing else
        assert "inputs changed" not in plan.reason and "settings" not in plan.reason
    finally:
        stores.write_json(report, before)
    assert jobs.plan(jobs.make_job("sm-gmi-m36-v1", cfg), ctx, parts=PARTS).action == \
        "up-to-date"


def test_fused_job_resumes_equals_fuse_all_and_follows_source_versions(stage2_root,
                                                                       graph_products):
    want = graph_products["sm-fused-m36-v1"]  # fuse_all's product
    plan, resumed = _interrupted_then_resumed("sm-fused-m36-v1", stage2_root)
    assert plan.action == "resume" and sorted(resumed.built) == [0, 64]
    got = publish.open_product(stage2_root, "sm-fused-m36-v1").load()
    _assert_identical(got, want, (dims.SOIL_MOISTURE, dims.SOIL_MOISTURE_UNCERTAINTY,
                                  dims.N_SOURCES, dims.SOURCE_MASK, dims.LAND_COVERAGE))
    assert got.attrs["sources"] == want.attrs["sources"] == "tmi,amsr2,gmi,smap"
    # the equality is not vacuous: most land cells have a fused value merged from ≥ 2 sources
    assert float(got[dims.LAND_COVERAGE].mean()) > 0.5
    assert int(got[dims.N_SOURCES].max()) >= 3
    ctx, cfg = _ctx(stage2_root), _config(stage2_root)
    assert jobs.plan(jobs.make_job("sm-fused-m36-v1", cfg), ctx, parts=PARTS).action == \
        "up-to-date"
    # a new version of one source (SMAP reprocessed) makes the fused product stale
    _publish_smap_standin(stage2_root, seed=1)
    plan = jobs.plan(jobs.make_job("sm-fused-m36-v1", cfg), ctx, parts=PARTS)
    assert plan.action == "start" and plan.reason.endswith("inputs changed: sm-smap")
    # so does a new validation report (the fallback error variances are a setting)
    stores.write_json(stores.reports_url(stage2_root, "sm-validation.json"),
                      {"against_smap_heldout": {"gmi": {"ubrmsd": 0.04}}})
    try:
        job = jobs.make_job("sm-fused-m36-v1", cfg)
        assert job.settings()["fallback_error_variance"] == {"gmi": pytest.approx(0.0016)}
        assert "settings changed" in jobs.plan(job, ctx, parts=PARTS).reason
    finally:
        Path(stores.reports_url(stage2_root, "sm-validation.json")).unlink()


def test_harmonised_job_flags_the_dense_target_cells_and_follows_the_smap_version(
        stage2_root, tmp_path):
    """With a SMAP product carrying quality flags, the job marks its dense-canopy cells
    DENSE_VEGETATION in every part (the rule ``harmonise_all`` follows), and the product is an
    input: a new SMAP version makes it stale."""
    from pipeline import qc
    from pipeline.graphs import harmonise

    root = str(tmp_path / "tiny")
    shutil.copytree(stage2_root, root, ignore=shutil.ignore_patterns("products", "catalog"))
    smap = stores.open_dataset(publish.current_url(stage2_root, "sm-smap-m36-v1")).load()
    rows = xr.DataArray(np.arange(smap.sizes[dims.Y]) < 10, dims=dims.Y,
                        coords={dims.Y: smap[dims.Y]})
    flag = xr.where(rows & smap[dims.SOIL_MOISTURE].notnull(), int(qc.QC.DENSE_VEGETATION), 0)
    smap[dims.QUALITY_FLAG] = flag.astype(np.uint16).transpose(*smap[dims.SOIL_MOISTURE].dims)
    smap_url = publish.publish_dataset(smap, root, "sm-smap-m36-v1")
    ctx, cfg = _ctx(root), _config(root)
    job = jobs.make_job("sm-gmi-m36-v1", cfg)
    assert job.inputs()["sm-smap"] == smap_url
    assert job.settings()["dense_target_share"] == harmonise.DENSE_TARGET_SHARE
    jobs.reprocess(job, ctx, parts=PARTS)
    got = publish.open_product(root, "sm-gmi-m36-v1").load()
    f = got[dims.QUALITY_FLAG].astype(int)
    dense = (f & int(qc.QC.DENSE_VEGETATION)) != 0
    observed = (f & int(qc.QC.INSUFFICIENT_OBS)) == 0
    want = (observed & rows.values[:, None]).values
    assert want.any()
    np.testing.assert_array_equal(dense.values, want)
    # (the graph path follows the same rule: test_chain's dense-target test)
    assert jobs.plan(jobs.make_job("sm-gmi-m36-v1", cfg), ctx, parts=PARTS).action == \
        "up-to-date"
    _publish_smap_standin(root, seed=2)           # SMAP reprocessed (no flags this time)
    plan = jobs.plan(jobs.make_job("sm-gmi-m36-v1", cfg), ctx, parts=PARTS)
    assert plan.action == "start" and "inputs changed: sm-smap" in plan.reason
