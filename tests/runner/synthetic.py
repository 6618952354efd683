"""A synthetic per-time-slice job for runner tests (importable: workers and subprocesses use it).

Run as a module to reprocess in a separate process (the SIGKILL test kills it midway)::

    python -m tests.runner.synthetic ROOT INPUT_URL PARTS DELAY_S STALE_AFTER_S
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
import xarray as xr

from pipeline import dims
from pipeline.io import stores
from pipeline.runner import jobs

PRODUCT = "anom-synth-n36-v1"
N_TIME, NY, NX = 12, 3, 4


def make_input(url: str, *, n_time: int = N_TIME, seed: int = 0,
               storage_options: dict | None = None) -> str:
    """Write a tiny (time, y, x) input store with a known field ``v`` [K]."""
    rng = np.random.default_rng(seed)
    v = (250 + 10 * rng.standard_normal((n_time, NY, NX))).astype(np.float32)
    ds = xr.Dataset(
        {"v": ((dims.TIME, dims.Y, dims.X), v, {"units": "K", "long_name": "test field"})},
        coords={dims.TIME: pd.date_range("2021-01-01", periods=n_time),
                dims.Y: -36000.0 * np.arange(NY), dims.X: 36000.0 * np.arange(NX)},
    )
    return stores.write_dataset(ds, url, chunks={dims.TIME: 2}, storage_options=storage_options)


def _slow(a: np.ndarray, delay_s: float) -> np.ndarray:
    time.sleep(delay_s)
    return a


def anomaly_stage(ds: xr.Dataset, delay_s: float = 0.0) -> xr.Dataset:
    """Per-day spatial anomaly of ``v`` [K]: v − mean over (y, x) of the same day.

    ``delay_s`` sleeps once per computed chunk (so a test can kill a run between parts); the
    template stays lazy and never sleeps.
    """
    anom = (ds["v"] - ds["v"].mean((dims.Y, dims.X))).astype(np.float32)
    if delay_s:
        anom = xr.apply_ufunc(_slow, anom, kwargs={"delay_s": delay_s}, dask="parallelized",
                              output_dtypes=[np.float32])
    out = anom.rename("anomaly").assign_attrs(units="K", long_name="daily spatial anomaly")
    return out.to_dataset().assign_attrs(title="synthetic anomaly product")


def make_job(input_url: str, delay_s: float = 0.0,
             storage_options: dict | None = None) -> jobs.MapJob:
    """The synthetic job (chunks of 2 days: 12 days → up to 6 parts)."""
    return jobs.MapJob(product_id=PRODUCT, input_url=input_url,
                       stage="tests.runner.synthetic:anomaly_stage", chunks={dims.TIME: 2},
                       stage_kwargs={"delay_s": delay_s} if delay_s else {},
                       storage_options=storage_options)


def context(root: str, stale_after_s: float = 3600.0,
            storage_options: dict | None = None) -> jobs.Context:
    """A fast test context (short lock settle and heartbeat)."""
    return jobs.Context(root=root, storage_options=storage_options, keep_versions=2,
                        stale_after_s=stale_after_s, owner="synthetic-test", settle_s=0.05,
                        heartbeat_s=0.5)


if __name__ == "__main__":
    root, input_url, parts, delay, stale = sys.argv[1:6]
    job = make_job(input_url, float(delay))
    plan, url = jobs.reprocess(job, context(root, float(stale)), parts=int(parts),
                               progress=lambda m: print(m, flush=True))
    print(url, flush=True)
