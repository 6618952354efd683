"""Cross-calibration stage: channel matching, collocation, fits vs known truth and pytesmo."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline import calibrate, dims

pytesmo_scaling = pytest.importorskip("pytesmo.scaling")


def test_match_channels_nearest_frequency_same_polarization():
    m = calibrate.match_channels("tmi", "gmi")
    assert m["19.35V"] == "18.7V" and m["19.35H"] == "18.7H"
    assert m["21.3V"] == "23.8V"
    assert m["37.0H"] == "36.64H" and m["85.5V"] == "89.0V"
    assert m["10.65H"] == "10.65H"
    # AMSR-E C-band has no TMI counterpart; 23.8H has no H partner on TMI
    m2 = calibrate.match_channels("amsre", "tmi")
    assert "6.93V" not in m2 and "23.8H" not in m2
    assert m2["36.5V"] == "37.0V"


def _pair_dataset(seed=0, n_time=400, ny=3, nx=4, offset=1.7, gain=1.012, drift=0.6):
    """Two sensors seeing the same scene; the source carries a known calibration error."""
    rng = np.random.default_rng(seed)
    time = pd.date_range("2014-03-04", periods=n_time, freq="D").values
    t = np.arange(n_time)[:, None, None, None, None]
    base = 250 + 15 * np.sin(2 * np.pi * t / 365.25) + rng.normal(0, 8, (1, 1, 2, ny, nx))
    truth = base + rng.normal(0, 3, (n_time, 2, 2, ny, nx))
    tau = t / calibrate.DECADE_DAYS
    ref = truth + rng.normal(0, 0.3, truth.shape)
    # src = (truth - offset - drift*tau)/gain, so that truth = offset + gain*src + drift*tau
    src = (truth - offset - drift * tau) / gain + rng.normal(0, 0.3, truth.shape)
    coords = {dims.TIME: time, dims.PASS: ["am", "pm"], dims.CHANNEL: ["10.65V", "10.65H"],
              dims.Y: np.arange(ny) * 1.0, dims.X: np.arange(nx) * 1.0}
    lt = np.zeros((n_time, 2, ny, nx)) + np.array([1.5, 13.5])[None, :, None, None]

    def mk(tb, dlt):
        return xr.Dataset(
            {dims.TB: ((dims.TIME, dims.PASS, dims.CHANNEL, dims.Y, dims.X), tb),
             dims.LOCAL_TIME: ((dims.TIME, dims.PASS, dims.Y, dims.X), lt + dlt)},
            coords=coords,
        )

    return mk(src, 0.2), mk(ref, 0.0), time[0]


def test_linear_fit_recovers_injected_offset_gain_drift():
    src, ref, t0 = _pair_dataset()
    pairs = calibrate.collocate(src, ref, {"10.65V": "10.65V", "10.65H": "10.65H"})
    c = calibrate.fit_linear(pairs, drift_start=t0)
    assert np.allclose(c["offset"], 1.7, atol=0.3)
    assert np.allclose(c["slope"], 1.012, rtol=0.01)
    assert np.allclose(c["drift"], 0.6, atol=0.3)
    cal = calibrate.apply_transform(src[dims.TB], c)
    resid = (cal - ref[dims.TB]).median().item()
    assert abs(resid) < 0.1
    # lazy TB: the same numbers, and the drift term stays lazy: the graph holds the (embedded)
    # source TB and small coefficients, not a numpy drift x time product (1.5x the TB here;
    # 196 MiB on the demo transect)
    lazy = calibrate.apply_transform(src[dims.TB].chunk({dims.TIME: 100}), c)
    assert lazy.chunks is not None
    xr.testing.assert_allclose(lazy.compute(), cal)
    import cloudpickle

    graph = cloudpickle.dumps(dict(lazy.data.__dask_graph__()))
    assert len(graph) < 1.25 * src[dims.TB].nbytes


def test_collocation_drops_pairs_far_apart_in_local_time():
    src, ref, _ = _pair_dataset(n_time=20)
    src[dims.LOCAL_TIME][:] = src[dims.LOCAL_TIME] + 3.0
    pairs = calibrate.collocate(src, ref, {"10.65V": "10.65V"}, max_dt_h=1.0)
    assert int(pairs["src"].notnull().sum()) == 0
    # across midnight: 23.5 h vs 0.5 h is 1 h apart
    src[dims.LOCAL_TIME][:] = 23.5
    ref[dims.LOCAL_TIME][:] = 0.5
    pairs = calibrate.collocate(src, ref, {"10.65V": "10.65V"}, max_dt_h=1.0)
    assert int(pairs["src"].notnull().sum()) == pairs["src"].size


def test_linear_fit_equals_pytesmo_linreg():
    rng = np.random.default_rng(3)
    x = rng.normal(250, 10, 500)
    y = 0.98 * x + 4 + rng.normal(0, 1, 500)
    x[::17] = np.nan
    ok = np.isfinite(x)
    offset, slope, _, n = calibrate.linear_fit(x, y)
    expected = pytesmo_scaling.linreg(x[ok], y[ok])
    np.testing.assert_allclose(offset + slope * x[ok], expected, rtol=1e-10)
    assert n == ok.sum()


@pytest.mark.parametrize("n", [60, 500, 5000])
def test_cdf_match_equals_pytesmo(n):
    rng = np.random.default_rng(n)
    x = rng.gamma(4, 5, n) + 200
    y = 0.9 * rng.gamma(3, 6, n) + 210
    bp = calibrate.cdf_fit(x, y, nbins=100, minobs=20)
    ours = calibrate.cdf_predict(x, bp)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pytesmo_scaling.cdf_match(x, y, nbins=100, minobs=20, linear_edge_scaling=True)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-7)


def test_grouped_fits_and_fallback():
    src, ref, t0 = _pair_dataset(ny=2, nx=2, n_time=200, drift=0.0)
    lc = xr.DataArray([[1, 1], [7, 7]], dims=(dims.Y, dims.X),
                      coords={dims.Y: src[dims.Y], dims.X: src[dims.X]})
    pairs = calibrate.collocate(src, ref, {"10.65V": "10.65V", "10.65H": "10.65H"})
    c = calibrate.fit_linear(pairs, granularity="landcover", landcover=lc)
    assert list(c[calibrate.GROUP].values) == [1, 7]
    assert np.allclose(c["slope"], 1.012, rtol=0.01)
    # a class with no fit falls back to the global transform
    lc2 = lc.copy(data=[[1, 1], [9, 9]])
    c_missing = c.assign(group_of_cell=lc2)
    glob = calibrate.fit_linear(pairs)
    cal = calibrate.apply_transform(src[dims.TB], c_missing, fallback=glob)
    assert bool(cal.notnull().all())


def test_cdf_transform_removes_bias_and_is_chunk_invariant():
    src, ref, _ = _pair_dataset(n_time=300, drift=0.0)
    pairs = calibrate.collocate(src, ref, {"10.65V": "10.65V", "10.65H": "10.65H"})
    c = calibrate.fit_cdf(pairs, nbins=20)
    eager = calibrate.apply_transform(src[dims.TB], c)
    assert abs(float((eager - ref[dims.TB]).median())) < 0.3
    lazy = calibrate.apply_transform(src[dims.TB].chunk({dims.TIME: 50, dims.Y: 1}), c)
    xr.testing.assert_allclose(eager, lazy.compute())


def test_chain_with_unmatched_channels_keeps_them_nan():
    """AMSR-E → TMI → GMI: C-band and 23.8H have no partner and must come out NaN, the rest
    calibrated (regression: several unmatched channels once produced a duplicate index)."""
    from pipeline import sensors
    from pipeline.graphs import calibration

    rng = np.random.default_rng(5)
    n_time, ny, nx = 120, 2, 2
    time = pd.date_range("2010-01-01", periods=n_time, freq="D").values
    coords = {dims.TIME: time, dims.PASS: ["am", "pm"], dims.Y: [0.0, 1.0], dims.X: [0.0, 1.0]}

    def store(sensor, offset):
        labels = list(sensors.get(sensor).channel_labels)
        tb = 250 + rng.normal(0, 10, (n_time, 2, len(labels), ny, nx)) + offset
        return xr.Dataset(
            {dims.TB: ((dims.TIME, dims.PASS, dims.CHANNEL, dims.Y, dims.X), tb),
             dims.LOCAL_TIME: ((dims.TIME, dims.PASS, dims.Y, dims.X),
                               np.full((n_time, 2, ny, nx), 1.5))},
            coords={**coords, dims.CHANNEL: labels})

    amsre, tmi, gmi = store("amsre", 0.0), store("tmi", 1.0), store("gmi", 2.0)
    coeffs = {}
    for a, b, da, db in (("amsre", "tmi", amsre, tmi), ("tmi", "gmi", tmi, gmi)):
        pairs = calibrate.collocate(da, db, calibrate.match_channels(a, b))
        c = calibrate.fit_linear(pairs)
        g = c[["offset", "slope", "drift", "n"]].rename(
            {"offset": "global_offset", "slope": "global_slope", "drift": "global_drift",
             "n": "global_n", calibrate.GROUP: "global_group"})
        coeffs[(a, b)] = xr.merge([c, g], compat="override")
    out = calibration.apply_chain(amsre, (("amsre", "tmi"), ("tmi", "gmi")), coeffs)
    assert set(out.attrs["uncalibrated_channels"].split(",")) == {"6.93V", "6.93H", "23.8H"}
    assert bool(out[dims.TB].sel(channel="6.93V").isnull().all())
    assert bool(out[dims.TB].sel(channel="36.5V").notnull().all())
    assert out.attrs["calibration_chain"] == "amsre -> tmi -> gmi"


def test_lazy_apply_with_uncalibrated_channels_keeps_chunks_few():
    """A channel without a fit comes back NaN, lazily as eagerly, with no more blocks than the
    input and no dask PerformanceWarning.  (The demo-scale trigger, a second hop over AMSR-E's
    12 channels, is the two-hop test below.)"""
    import warnings

    from dask.array.core import PerformanceWarning

    src, ref, t0 = _pair_dataset(n_time=120)
    pairs = calibrate.collocate(src, ref, {"10.65V": "10.65V"})      # 10.65H: no partner
    c = calibrate.fit_linear(pairs, drift_start=t0)
    eager = calibrate.apply_transform(src[dims.TB], c)
    tb = src[dims.TB].chunk({dims.TIME: 7, dims.CHANNEL: 1, dims.Y: 1})
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerformanceWarning)
        lazy = calibrate.apply_transform(tb, c)
    assert lazy.data.npartitions <= tb.data.npartitions
    assert bool(lazy.sel({dims.CHANNEL: "10.65H"}).isnull().all())
    xr.testing.assert_allclose(lazy.compute(), eager)


def _hop_coeffs(channels, n_groups, ny, rng):
    """Per-land-cover-group linear coefficients with their global fallback, as `calibrate fit`
    stores them (what :func:`pipeline.graphs.calibration._split` separates)."""
    shape = (len(channels), n_groups)
    g = np.arange(n_groups)
    return xr.Dataset(
        {"offset": ((dims.CHANNEL, calibrate.GROUP), rng.normal(0, 1, shape)),
         "slope": ((dims.CHANNEL, calibrate.GROUP), 1 + rng.normal(0, 0.01, shape)),
         "drift": ((dims.CHANNEL, calibrate.GROUP), rng.normal(0, 0.1, shape)),
         "n": ((dims.CHANNEL, calibrate.GROUP), np.full(shape, 100)),
         "group_of_cell": ((dims.Y, dims.X), (np.arange(ny) % n_groups)[:, None]),
         "global_offset": ((dims.CHANNEL, "global_group"), rng.normal(0, 1, (len(channels), 1))),
         "global_slope": ((dims.CHANNEL, "global_group"), np.ones((len(channels), 1))),
         "global_drift": ((dims.CHANNEL, "global_group"), np.zeros((len(channels), 1))),
         "global_n": ((dims.CHANNEL, "global_group"), np.full((len(channels), 1), 100))},
        coords={dims.CHANNEL: channels, calibrate.GROUP: g, "global_group": [0]},
        attrs={"method": "linear", "granularity": "landcover", "drift_start": "2002-06-01"})


@pytest.mark.parametrize("n_time", [3500, 40])
def test_two_hop_chain_at_demo_chunking_keeps_chunks_and_values(n_time):
    """AMSR-E → TMI → GMI as the demo runs it: 12 channels, three without a partner, per-group
    fits with a global fallback, 366-day chunks.  Without one channel chunk after a hop, the
    second hop's unify multiplied the chunks by 10 (a dask PerformanceWarning in every demo).
    At a small size the lazy chain equals the eager one."""
    import warnings

    from dask.array.core import PerformanceWarning

    from pipeline.graphs import calibration

    rng = np.random.default_rng(3)
    amsre = ["6.93V", "6.93H", "10.65V", "10.65H", "18.7V", "18.7H", "23.8V", "23.8H", "36.5V",
             "36.5H", "89.0V", "89.0H"]
    tmi = ["10.65V", "10.65H", "19.35V", "19.35H", "21.3V", "37.0V", "37.0H", "85.5V", "85.5H"]
    ny = 204 if n_time > 100 else 9
    hops = (("amsre", "tmi"), ("tmi", "gmi"))
    coeffs = {hops[0]: _hop_coeffs([c for c in amsre if c not in ("6.93V", "6.93H", "23.8H")],
                                   10, ny, rng),
              hops[1]: _hop_coeffs(tmi, 10, ny, rng)}
    time = pd.date_range("2002-06-01", periods=n_time, freq="D")
    shape = (n_time, 2, len(amsre), ny, 1)
    tb = xr.Dataset(
        {dims.TB: ((dims.TIME, dims.PASS, dims.CHANNEL, dims.Y, dims.X),
                   250 + rng.normal(0, 5, shape).astype(np.float32) if n_time < 100 else
                   np.zeros(shape, np.float32))},
        coords={dims.TIME: time, dims.PASS: ["am", "pm"], dims.CHANNEL: amsre,
                dims.Y: np.arange(ny) * 1.0, dims.X: [0.0]})
    lazy_in = tb.chunk({dims.TIME: 366, dims.CHANNEL: -1, dims.Y: 64})
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerformanceWarning)
        lazy = calibration.apply_chain(lazy_in, hops, coeffs)
    got, came = lazy[dims.TB].chunksizes, lazy_in[dims.TB].chunksizes
    assert all(got[d] == came[d] for d in (dims.TIME, dims.PASS, dims.Y, dims.X))
    assert len(got[dims.CHANNEL]) <= 2        # the calibrated channels, then the NaN ones
    assert set(lazy.attrs["uncalibrated_channels"].split(",")) == {"6.93V", "6.93H", "23.8H"}
    if n_time < 100:
        eager = calibration.apply_chain(tb, hops, coeffs)
        xr.testing.assert_allclose(lazy[dims.TB].compute(), eager[dims.TB])
        assert bool(eager[dims.TB].sel({dims.CHANNEL: "23.8H"}).isnull().all())
        assert bool(eager[dims.TB].sel({dims.CHANNEL: "36.5V"}).notnull().all())
