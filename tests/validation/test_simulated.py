"""match_gridded + tables on the simulated tiny archive: truth against its own probes (slow).

The simulator's probes read ``a + b θ_cell + AR(1) (σ 0.015) + 0.005 white`` (a ~ N(0, 0.03),
b ~ U(0.8, 1.2); pipeline/simulate/insitu.py), so the truth's own soil moisture, matched to the
stations at the am/pm overpass hours, must correlate almost perfectly and differ by little more
than the probe noise; the record spans the TMI → SMAP hand-over, so the sensor epochs split.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from pipeline import schema, sensors
from pipeline import validation as val

pytestmark = pytest.mark.slow


def test_truth_against_simulated_stations(sim_tiny):
    insitu = xr.open_zarr(f"{sim_tiny}/insitu/simnet.zarr").load()
    truth = xr.open_zarr(f"{sim_tiny}/truth/M36.zarr")
    pairs = val.match_gridded(truth, insitu, val.MatchSettings(aggregate="overpass"))
    table = val.station_table(pairs)
    schema.check(table, schema.VALIDATION, context="simulated validation")
    sm = table.soil_moisture
    used = sm.sel(metric="n") > 100
    assert int(used.sum()) >= 10
    assert float(sm.sel(metric="r").where(used).min()) > 0.95
    assert float(sm.sel(metric="ubrmsd").where(used).max()) < 0.05
    # screening removes pairs: flagged (frozen) probe hours and frozen soil temperature
    loose = val.match_gridded(truth, insitu, val.MatchSettings(
        aggregate="overpass", good_flags_only=False, frozen_threshold_k=0.0))
    assert int(np.isfinite(loose.estimate * loose.reference).sum()) > int(
        np.isfinite(pairs.estimate * pairs.reference).sum())
    per = val.period_table(pairs)
    labels = [str(p) for p in per.period.values]
    assert labels == sorted(labels, key=lambda lab: per.period_start.sel(period=lab).values)
    for lab in labels:
        start = per.period_start.sel(period=lab).values
        want = "+".join(s for s in ("tmi", "amsre", "amsr2", "gmi", "smap")
                        if sensors.get(s).operating(start))
        assert lab == want
    assert "tmi+amsr2+gmi" in labels and "amsr2+gmi+smap" in labels
    assert float(per.pooled.sel(metric="r").min()) > 0.9
    assert int(per.pooled.sel(metric="n").sum()) == int(sm.sel(metric="n").sum())
