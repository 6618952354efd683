"""The freeze/thaw job kind: reprocessing in parts along y equals the graph's eager product."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from pipeline import dims
from pipeline.io import publish, stores
from pipeline.runner import jobs, kinds

PID = "ft-smap-n36-v1"


pytestmark = pytest.mark.usefixtures("fixed_code_version")


@pytest.mark.slow
def test_ft_job_in_parts_equals_the_eager_product(ft_archive, ft_synthetic, ft_model_ref):
    from pipeline.graphs import freeze_thaw as g

    job = kinds.FreezeThawJob(product_id=PID, root=ft_archive, tile=1)
    ctx = jobs.Context(root=ft_archive, settle_s=0.0, heartbeat_s=None)
    assert jobs.max_parts(job) == 3  # 3 rows, 1-row tiles
    plan, url = jobs.reprocess(job, ctx, parts=3)
    assert plan.action == "start"
    tb, _, static = ft_synthetic
    eager = g.build_product(tb, static, ft_model_ref).compute()
    got = publish.open_product(ft_archive, PID).load()
    for name in (dims.THAW_PROBABILITY, dims.NPR, dims.QUALITY_FLAG):
        xr.testing.assert_allclose(got[name], eager[name], rtol=1e-5)
    for name in (dims.FT_STATE, dims.FT_STATE_NPR):  # int8, _FillValue -1 decodes to NaN
        np.testing.assert_array_equal(got[name].fillna(-1).astype(np.int8), eager[name])
    assert np.isfinite(got[dims.THAW_PROBABILITY]).any()
    attrs = stores.open_dataset(url).attrs
    assert ft_model_ref.sha256 in attrs["tbcube_model_sha256"]
    assert jobs.plan(job, ctx, parts=3).action == "up-to-date"


def test_ft_job_kind_is_registered_and_checks_the_grid(ft_archive):
    from pipeline import errors
    from pipeline.config import ReprocessJob

    cfg = ReprocessJob(products=[PID], root=ft_archive,
                       time={"start": "2016-01-01", "end": "2017-12-30"})
    job = jobs.make_job(PID, cfg)
    assert isinstance(job, kinds.FreezeThawJob) and job.time_range == ("2016-01-01", "2017-12-30")
    assert set(job.inputs()) == {"tb", "static"}
    with pytest.raises(errors.ConfigError, match="does not match the archive's grid 'N36'"):
        jobs.make_job("ft-smap-m36-v1", cfg).template()


@pytest.mark.slow
def test_sm_job_in_parts_equals_the_eager_product(sm_archive, tmp_path):
    """Job kind ``sm-smap``: the SMAP retrieval reprocessed in parts along y equals the graph's
    eager product, and a second plan is up to date."""
    import shutil

    from pipeline import soil_moisture
    from pipeline.graphs import retrieval

    root = str(tmp_path / "sm")
    shutil.copytree(sm_archive[0], root, ignore=shutil.ignore_patterns("products", "catalog"))
    pid = "sm-smap-m36-v1"
    job = kinds.SmapRetrievalJob(product_id=pid, root=root, tile=2)
    ctx = jobs.Context(root=root, settle_s=0.0, heartbeat_s=None)
    plan, url = jobs.reprocess(job, ctx, parts=3)
    assert plan.action == "start"
    eager = retrieval.build_product(retrieval.open_inputs(root),
                                    soil_moisture.RetrievalParams()).compute()
    got = publish.open_product(root, pid).load()
    for name in (dims.SOIL_MOISTURE, dims.VOD):
        xr.testing.assert_allclose(got[name], eager[name], atol=1e-5)
    np.testing.assert_array_equal(got[dims.QUALITY_FLAG].values, eager[dims.QUALITY_FLAG].values)
    assert np.isfinite(got[dims.SOIL_MOISTURE]).any()
    assert jobs.plan(job, ctx, parts=3).action == "up-to-date"
    assert jobs.JOB_KINDS["sm-smap"] == "pipeline.runner.kinds:smap_retrieval_job"
    # a station-tuned τV/τH table ('tbcube sm tune') is part of the settings: the product is
    # stale once one is written, and the job then retrieves with it
    from pipeline.graphs import retrieval_tune

    stores.write_json(retrieval_tune.tuned_url(root),
                      {"pol_ratio_by_class": [[10, 1.1]], "default_pol_ratio": 1.05})
    tuned_job = kinds.SmapRetrievalJob(product_id=pid, root=root, tile=2)
    assert tuned_job._params.pol_ratio_by_class == ((10, 1.1),)
    assert tuned_job._params.vod_pol_ratio == 1.05
    # a table from before the T_eff offset (as above) keeps zero offsets
    assert tuned_job._params.teff_offset_by_class == ()
    assert tuned_job._params.teff_offset_k == 0.0
    assert jobs.plan(tuned_job, ctx, parts=3).action != "up-to-date"
    # a current table sets both knobs, and re-tuning the offsets alone makes the product stale
    stores.write_json(retrieval_tune.tuned_url(root),
                      {"pol_ratio_by_class": [[10, 1.1]], "default_pol_ratio": 1.05,
                       "teff_offset_by_class": [[10, -2.5]], "default_teff_offset_k": -1.0})
    both = kinds.SmapRetrievalJob(product_id=pid, root=root, tile=2)
    assert both._params.teff_offset_by_class == ((10, -2.5),)
    assert both._params.teff_offset_k == -1.0
    assert both.settings() != tuned_job.settings()
