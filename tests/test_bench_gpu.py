"""``tbcube bench gpu`` on a machine without a GPU: the CPU half runs through the production Dask
paths (freeze/thaw product on one worker, LSTM map) and the JSON says why the GPU half is absent.
On a GPU machine the same command adds the GPU worker runs (docs/operations.md §3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.io import stores

pytestmark = pytest.mark.slow


def test_bench_gpu_cpu_half_matches_eager_and_product_size(sim_tiny, tmp_path):
    import shutil

    from pipeline.cli import cli

    root = str(tmp_path / "archive")
    shutil.copytree(sim_tiny, root)  # the command trains and publishes into the root
    out = tmp_path / "bench"
    res = CliRunner().invoke(cli, ["bench", "gpu", "--root", root, "--out", str(out),
                                    "--ft-epochs", "1", "--ft-max-steps", "20",
                                    "--lstm-pixels", "300", "--kernel-pixels", "256"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "bench-gpu.json").read_text())
    assert doc["gpu"] is None and "GPU" in doc["gpu_note"]
    assert doc["platforms"] == ["cpu"]
    ft = doc["ft_end_to_end"]["cpu"]
    tb = stores.open_dataset(stores.tb_url(root, "smap"))
    assert ft["pixel_days"] == tb.sizes["time"] * tb.sizes["pass"] * tb.sizes["y"] * \
        tb.sizes["x"]
    assert ft["resources"] is None            # no GPU workers → model tasks stay unannotated
    lstm = doc["lstm_dask"]
    # The Dask map on a spawned worker equals the eager bridge call in this process.
    assert lstm["cpu"]["max_abs_diff_vs_eager"] < 1e-6
    assert np.isfinite(lstm["cpu"]["pixel_days_per_s"]) and lstm["cpu"]["pixel_days_per_s"] > 0
    assert set(doc["kernels"]) == {"ft_batch_256", "lstm_batch_256"}
