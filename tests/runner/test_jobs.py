"""Phased jobs: resume after SIGKILL, atomic publish under a polling reader, locks, staleness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from pipeline import dims, errors
from pipeline.io import provenance, publish, stores
from pipeline.runner import jobs
from pipeline.runner.lock import LockHeld
from tests.runner import synthetic

REPO = Path(__file__).resolve().parents[2]
PARTS = 6
DELAY_S = 0.3


CODE_VERSION = "0.0.0+test"


@pytest.fixture(autouse=True)
def _fixed_code_version(monkeypatch):
    """Pin the code version: other commits landing mid-test must not make products stale."""
    monkeypatch.setenv("TBCUBE_CODE_VERSION", CODE_VERSION)
    provenance.code_version.cache_clear()
    yield
    provenance.code_version.cache_clear()


class CountingJob:
    """Wraps a job and records which regions were built; ``model_sha`` fakes a checkpoint."""

    def __init__(self, job, model_sha: str | None = None):
        self._job = job
        self.built: list[dict] = []
        self.model_sha = model_sha

    def models(self):
        return {"toy_model": self.model_sha} if self.model_sha else {}

    def __getattr__(self, name):
        return getattr(self._job, name)

    def build_part(self, region):
        self.built.append(dict(region))
        return self._job.build_part(region)


def _reference(input_url: str) -> xr.Dataset:
    """The stage applied eagerly to the whole in-memory input (independent of the runner)."""
    return synthetic.anomaly_stage(stores.open_dataset(input_url).load())


def test_partition_regions_and_parts():
    regions = jobs.partition_regions(12, 2, 4, dims.TIME)
    assert [r[dims.TIME] for r in regions] == [slice(0, 4), slice(4, 8), slice(8, 10),
                                               slice(10, 12)]
    assert jobs.partition_regions(11, 2, 6, dims.TIME)[-1][dims.TIME] == slice(10, 11)
    with pytest.raises(errors.ConfigError, match="7 parts requested"):
        jobs.partition_regions(12, 2, 7, dims.TIME)
    assert jobs.parse_part("3/6") == (3, 6) and jobs.parse_part("auto", 6) == (None, 6)
    for bad in ("0/6", "x", "7/6"):
        with pytest.raises(errors.ConfigError):
            jobs.parse_part(bad)
    with pytest.raises(errors.ConfigError, match="initialised with 6"):
        jobs.parse_part("1/5", 6)


def test_parts_are_capped_at_the_chunk_count(tmp_path):
    input_url = synthetic.make_input(str(tmp_path / "in.zarr"))
    job, ctx = synthetic.make_job(input_url), synthetic.context(str(tmp_path / "root"))
    assert jobs.max_parts(job) == 6 and jobs.effective_parts(job, 24) == 6
    assert jobs.init(job, ctx, parts=24)["parts"] == 6


def test_phases_by_hand_are_idempotent_and_finalise_checks_markers(tmp_path):
    input_url = synthetic.make_input(str(tmp_path / "in.zarr"))
    job, ctx = synthetic.make_job(input_url), synthetic.context(str(tmp_path / "root"))
    jobs.init(job, ctx, parts=3)
    assert jobs.run_part(job, ctx, "2/3") == 2
    with pytest.raises(errors.StoreError, match=r"parts \[1, 3\] of 3"):
        jobs.finalise(job, ctx)
    assert jobs.run_part(job, ctx, "2/3") == 2  # rerunning a part is harmless
    assert jobs.run_part(job, ctx) == 1 and jobs.run_part(job, ctx) == 3
    assert jobs.run_part(job, ctx) is None
    url = jobs.finalise(job, ctx)
    xr.testing.assert_allclose(stores.open_dataset(url)[["anomaly"]].load(),
                               _reference(input_url), rtol=1e-6)
    assert jobs.status(job, ctx)["run"] is None
    attrs = stores.open_dataset(url).attrs
    assert attrs["tbcube_config_hash"] == provenance.config_hash(dict(job.settings()))
    fp = provenance.fingerprint_store(input_url)
    assert f'"fingerprint": "{fp}"' in attrs["tbcube_provenance"]


@pytest.mark.slow
def test_sigkill_midway_then_resume_gives_the_uninterrupted_product(tmp_path):
    input_url = synthetic.make_input(str(tmp_path / "in.zarr"))
    # 1. Uninterrupted run.
    ref_root = str(tmp_path / "uninterrupted")
    _, ref_url = jobs.reprocess(synthetic.make_job(input_url),
                                synthetic.context(ref_root), parts=PARTS)

    # 2. A run in a separate process, SIGKILLed after two parts.
    root, stale_s = str(tmp_path / "killed"), 6.0
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.runner.synthetic", root, input_url, str(PARTS),
         str(DELAY_S), str(stale_s)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    ctx = synthetic.context(root, stale_after_s=stale_s)
    job = CountingJob(synthetic.make_job(input_url, DELAY_S))
    deadline = time.monotonic() + 120
    done: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        state = jobs._read_state(ctx, job)
        done = jobs.done_parts(ctx, job, state) if state else []
        if len(done) >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:]
    done = jobs.done_parts(ctx, job, jobs._read_state(ctx, job))
    assert 2 <= len(done) < PARTS
    with pytest.raises(errors.StoreNotFound):  # nothing was published
        publish.current_url(root, synthetic.PRODUCT)

    # 3. A second run while the (dead) holder's lock is still fresh is refused, in one line.
    with pytest.raises(LockHeld) as info:
        jobs.reprocess(job, ctx, parts=PARTS)
    assert "locked by 'synthetic-test'" in str(info.value) and "\n" not in str(info.value)
    assert job.built == []

    # 4. After the lock goes stale the rerun takes over and resumes; a reader polls throughout.
    time.sleep(stale_s + 0.5)
    expected = _reference(input_url)
    seen, problems, stop = [], [], threading.Event()

    def reader():
        # a poll every 20 ms: a busy loop fought the rerun for the GIL (17-49 s test times)
        while not stop.wait(0.02):
            try:
                ds = publish.open_product(root, synthetic.PRODUCT).load()
            except errors.StoreNotFound:
                seen.append("none")
                continue
            try:
                xr.testing.assert_allclose(ds[["anomaly"]], expected, rtol=1e-6)
                seen.append("complete")
            except AssertionError as e:
                problems.append(str(e)[:300])

    t = threading.Thread(target=reader)
    t.start()
    try:
        plan, url = jobs.reprocess(job, ctx, parts=PARTS)
        deadline = time.monotonic() + 30
        while "complete" not in seen and not problems and time.monotonic() < deadline:
            time.sleep(0.05)  # let the reader observe the published version at least once
    finally:
        stop.set()
        t.join()
    assert plan.action == "resume"
    built = sorted(r[dims.TIME].start for r in job.built)
    regions = [r[dims.TIME].start for r in jobs.partition_regions(12, 2, PARTS, dims.TIME)]
    assert built == sorted(set(regions) - {regions[i - 1] for i in done})  # only missing parts
    assert not problems, problems[:2]
    assert "complete" in seen

    # 5. The resumed product is identical to the uninterrupted one (data, coords, dtypes).
    got, ref = stores.open_dataset(url).load(), stores.open_dataset(ref_url).load()
    xr.testing.assert_identical(got[["anomaly"]].drop_attrs(), ref[["anomaly"]].drop_attrs())
    np.testing.assert_array_equal(got["anomaly"].values, ref["anomaly"].values)
    assert got["anomaly"].attrs == ref["anomaly"].attrs
    xr.testing.assert_allclose(got[["anomaly"]], expected, rtol=1e-6)
    assert not stores.exists(jobs.lock_url(ctx, job))  # released


def test_staleness_up_to_date_then_inputs_changed(tmp_path):
    input_url = synthetic.make_input(str(tmp_path / "in.zarr"))
    job = CountingJob(synthetic.make_job(input_url))
    ctx = synthetic.context(str(tmp_path / "root"))
    plan1, url1 = jobs.reprocess(job, ctx, parts=2)
    assert plan1.action == "start" and "no published version" in plan1.reason
    n_built = len(job.built)
    plan2, url2 = jobs.reprocess(job, ctx, parts=2)
    assert plan2.action == "up-to-date" and url2 == url1 and len(job.built) == n_built
    synthetic.make_input(input_url, n_time=14)  # two new days arrive
    plan3, url3 = jobs.reprocess(job, ctx, parts=2)
    assert plan3.action == "start" and "inputs changed: input" in plan3.reason
    assert url3 != url1
    assert stores.open_dataset(url3).sizes[dims.TIME] == 14
    assert publish.list_versions(ctx.root, synthetic.PRODUCT) == sorted(
        [url1.rsplit("/", 1)[-1][:-5], url3.rsplit("/", 1)[-1][:-5]])
    os.environ["TBCUBE_CODE_VERSION"] = "0.0.1+test"  # restored by the autouse fixture
    provenance.code_version.cache_clear()
    plan4 = jobs.plan(job, ctx, parts=2)
    assert plan4.action == "start" and f"code version {CODE_VERSION} → 0.0.1+test" in plan4.reason


def test_a_new_model_checkpoint_makes_the_product_stale(tmp_path):
    input_url = synthetic.make_input(str(tmp_path / "in.zarr"))
    ctx = synthetic.context(str(tmp_path / "root"))
    job = CountingJob(synthetic.make_job(input_url), model_sha="a" * 64)
    _, url = jobs.reprocess(job, ctx, parts=1)
    attrs = stores.open_dataset(url).attrs
    assert attrs["tbcube_model_sha256"] == '{"toy_model": "' + "a" * 64 + '"}'
    assert jobs.plan(job, ctx, parts=1).action == "up-to-date"
    job.model_sha = "b" * 64
    plan = jobs.plan(job, ctx, parts=1)
    assert plan.action == "start" and plan.reason.endswith("model checkpoints changed")


@pytest.mark.s3
@pytest.mark.slow
def test_reprocess_on_s3_resumes_and_publishes(s3_root, s3_server):
    so = s3_server.storage_options
    input_url = synthetic.make_input(f"{s3_root}/in.zarr", storage_options=so)
    ctx = synthetic.context(f"{s3_root}/archive", storage_options=so)
    job = CountingJob(synthetic.make_job(input_url, storage_options=so))
    state = jobs.init(job, ctx, parts=3)
    assert jobs.run_part(job, ctx, "2/3") == 2  # then the "pod" dies
    assert jobs.done_parts(ctx, job, state) == [2]
    plan, url = jobs.reprocess(job, ctx, parts=3)
    assert plan.action == "resume" and len(job.built) == 3  # part 2 once, then 1 and 3
    assert url.startswith(f"{s3_root}/archive/products/{synthetic.PRODUCT}/")
    assert publish.current_url(ctx.root, synthetic.PRODUCT, so) == url
    expected = synthetic.anomaly_stage(stores.open_dataset(input_url, storage_options=so).load())
    got = publish.open_product(ctx.root, synthetic.PRODUCT, so)[["anomaly"]].load()
    xr.testing.assert_allclose(got, expected, rtol=1e-6)
    assert jobs.plan(job, ctx, parts=3).action == "up-to-date"
    assert not stores.exists(jobs.lock_url(ctx, job), so)
