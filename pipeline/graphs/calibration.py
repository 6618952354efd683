"""Cross-calibration job: fit per-channel transforms along a transfer chain and apply them.

Example::

    tbcube calibrate fit   --root demo-output/transect-m25
    tbcube calibrate apply --root demo-output/transect-m25

**Transfer chain.** Every sensor is brought onto one reference sensor (default GMI, the GPM
inter-calibration transfer standard, science.md §3.4) through sensors it overlaps in time
(science.md §3.3)::

    amsr2 → gmi                   (2014-03 →)
    tmi   → gmi                   (2014-03 … 2015-04)
    amsre → tmi → gmi             (2002-06 … 2011-10 via TMI; bridges the 2011–2012 AMSR gap)

Channels are matched by nearest frequency with the same polarization
(:func:`pipeline.calibrate.match_channels`).  Local-time differences are handled by collocating
only observations within ``max_dt_h`` of each other in local solar time; incidence-angle and
frequency differences (52.8° vs 55°, 18.7 vs 19.35 GHz …) are absorbed by the fitted transforms,
which is why those are allowed per land-cover class or per cell.

**Outside ±38°.** TMI sees only |lat| ≤ 38°, so the AMSR-E → TMI step is fitted on tropical
and mid-latitude cells only.  Instrument calibration errors do not depend on the scene, so the
fitted transform is applied everywhere: per-class transforms where the class occurs inside
±38°, the global (per-channel) transform elsewhere.  The report lists, per step, the fraction of
cells that fell back to the global transform.

**Choice of method and granularity.** For each step, linear (with a drift term) and CDF
matching are fitted globally, per land-cover class and per cell on even days, scored on odd
days (RMS of calibrated − reference), and the best combination is refitted on all days.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from pipeline import calibrate, dims, errors, grid, sensors
from pipeline.io import stores

DEFAULT_REFERENCE = "gmi"
METHODS = ("linear", "cdf")
GRANULARITIES = ("global", "landcover", "cell")
# Each sensor's path to the reference (first hop first).
CHAINS: dict[str, dict[str, tuple[str, ...]]] = {
    "gmi": {"amsr2": ("gmi",), "tmi": ("gmi",), "amsre": ("tmi", "gmi")},
    "amsr2": {"gmi": ("amsr2",), "tmi": ("gmi", "amsr2"), "amsre": ("tmi", "gmi", "amsr2")},
}


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """Settings of the calibration fit (narrow slice of the job config)."""

    reference: str = DEFAULT_REFERENCE
    max_dt_h: float = 1.0
    methods: tuple[str, ...] = METHODS
    granularities: tuple[str, ...] = GRANULARITIES
    min_pairs_per_group: int = 30
    nbins: int = 50


def coefficients_url(root: str, src: str, dst: str) -> str:
    """``{root}/calibration/{src}-to-{dst}.zarr``."""
    return stores.join(root, "calibration", f"{src}-to-{dst}.zarr")


def chain_edges(reference: str, present: set[str]) -> dict[str, tuple[tuple[str, str], ...]]:
    """The hops (src, dst) that bring each present sensor onto ``reference``.

    A sensor whose chain passes through an absent sensor is left out (with no transforms it
    cannot be calibrated, and the report says so).
    """
    if reference not in CHAINS:
        raise errors.ConfigError(f"no transfer chain defined for reference {reference!r}; "
                         f"choose one of {sorted(CHAINS)}")
    out = {}
    for src, path in CHAINS[reference].items():
        if src not in present:
            continue
        hops = tuple(zip((src,) + path[:-1], path, strict=True))
        if all(a in present and b in present for a, b in hops):
            out[src] = hops
    return out


def _overlap(a: xr.Dataset, b: xr.Dataset) -> slice | None:
    t0 = max(a[dims.TIME].values.min(), b[dims.TIME].values.min())
    t1 = min(a[dims.TIME].values.max(), b[dims.TIME].values.max())
    return slice(t0, t1) if t0 <= t1 else None


def _score(pairs_test: xr.Dataset, coeffs: xr.Dataset, fallback: xr.Dataset) -> xr.DataArray:
    """RMS of calibrated − reference on held-out pairs, per channel [K]."""
    src = pairs_test["src"].copy()
    cal = calibrate.apply_transform(src, coeffs, fallback=fallback)
    d = cal - pairs_test["ref"]
    return np.sqrt((d**2).mean([k for k in d.dims if k != dims.CHANNEL]))


def _fit(pairs: xr.Dataset, method: str, granularity: str, landcover: xr.DataArray,
         drift_start, settings: FitSettings) -> xr.Dataset:
    if method == "linear":
        c = calibrate.fit_linear(pairs, granularity=granularity, landcover=landcover,
                                 drift_start=drift_start)
        thin = c["n"] < settings.min_pairs_per_group
        for v in ("offset", "slope", "drift"):
            c[v] = c[v].where(~thin)
        return c
    return calibrate.fit_cdf(pairs, granularity=granularity, landcover=landcover,
                             nbins=settings.nbins, minobs=settings.min_pairs_per_group)


def fit_edge(src_ds: xr.Dataset, dst_ds: xr.Dataset, static: xr.Dataset, src: str, dst: str,
             settings: FitSettings) -> tuple[xr.Dataset, dict[str, Any]]:
    """Fit one hop; returns the coefficients and its diagnostics (JSON-able)."""
    window = _overlap(src_ds, dst_ds)
    channels = calibrate.match_channels(src, dst)
    if window is None:
        raise errors.InputDataError(
            f"{src} and {dst} do not overlap in time; cannot fit {src}→{dst}")
    a = src_ds.sel({dims.TIME: window})
    b = dst_ds.sel({dims.TIME: window})
    pairs = calibrate.collocate(a, b, channels, max_dt_h=settings.max_dt_h).load()
    land = static["landcover"].load()
    day = (pairs[dims.TIME] - pairs[dims.TIME][0]) / np.timedelta64(1, "D")
    train, test = pairs.where(day % 2 == 0), pairs.where(day % 2 == 1)
    start = sensors.get(src).period.start
    drift_start = np.datetime64(start, "ns")
    fallback_train = _fit(train, "linear", "global", land, drift_start, settings)
    scores, fitted = {}, {}
    for method, gran in itertools.product(settings.methods, settings.granularities):
        c = _fit(train, method, gran, land, drift_start, settings)
        fitted[(method, gran)] = c
        scores[(method, gran)] = _score(test, c, fallback_train)
    mean_rms = {k: float(v.mean()) for k, v in scores.items()}
    best = min(mean_rms, key=lambda k: (np.nan_to_num(mean_rms[k], nan=np.inf)))
    heldout = calibrate.apply_transform(test["src"], fitted[best], fallback=fallback_train) \
        - test["ref"]
    coeffs = _fit(pairs, *best, land, drift_start, settings)
    fallback = _fit(pairs, "linear", "global", land, drift_start, settings)
    coeffs = xr.merge([coeffs, fallback[["offset", "slope", "drift", "n"]].rename(
        {"offset": "global_offset", "slope": "global_slope", "drift": "global_drift",
         "n": "global_n", calibrate.GROUP: "global_group"})], compat="override")
    coeffs = coeffs.assign_coords(ref_channel=(dims.CHANNEL, [channels[c] for c in
                                                              coeffs[dims.CHANNEL].values]))
    coeffs.attrs.update(source_sensor=src, reference_sensor=dst, method=best[0],
                        granularity=best[1], drift_start=str(drift_start),
                        overlap_start=str(window.start)[:10], overlap_end=str(window.stop)[:10],
                        max_dt_h=settings.max_dt_h)
    cal = calibrate.apply_transform(pairs["src"], _split(coeffs)[0], fallback=_split(coeffs)[1])
    before = (pairs["src"] - pairs["ref"])
    after = (cal - pairs["ref"])
    red = [d for d in before.dims if d != dims.CHANNEL]
    n_pairs = pairs["src"].notnull().sum(red)
    diag = {
        "source": src, "reference": dst, "method": best[0], "granularity": best[1],
        "overlap": [str(window.start)[:10], str(window.stop)[:10]],
        "heldout_rms_K": {f"{m}/{g}": v for (m, g), v in mean_rms.items()},
        "channels": {
            str(ch): {
                "reference_channel": channels[str(ch)],
                "pairs": int(n_pairs.sel({dims.CHANNEL: ch})),
                "median_bias_before_K": _f(before.sel({dims.CHANNEL: ch}).median()),
                "median_bias_after_K": _f(after.sel({dims.CHANNEL: ch}).median()),
                "heldout_median_bias_K": _f(heldout.sel({dims.CHANNEL: ch}).median()),
                "rms_before_K": _f(np.sqrt((before.sel({dims.CHANNEL: ch}) ** 2).mean())),
                "rms_after_K": _f(np.sqrt((after.sel({dims.CHANNEL: ch}) ** 2).mean())),
            }
            for ch in pairs[dims.CHANNEL].values
        },
    }
    return coeffs, diag


def _f(x) -> float | None:
    v = float(x)
    return None if not np.isfinite(v) else round(v, 4)


def _split(coeffs: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    """Separate the chosen transform from its global linear fallback."""
    glob_vars = ["global_offset", "global_slope", "global_drift", "global_n"]
    main = coeffs.drop_vars(glob_vars + ["global_group"], errors="ignore")
    gc = coeffs[glob_vars].rename({"global_offset": "offset", "global_slope": "slope",
                                   "global_drift": "drift", "global_n": "n",
                                   "global_group": calibrate.GROUP})
    gc["group_of_cell"] = xr.zeros_like(coeffs["group_of_cell"])
    gc.attrs = {"method": "linear", "granularity": "global",
                "drift_start": coeffs.attrs.get("drift_start", "")}
    main.attrs = dict(coeffs.attrs)
    return main, gc


def apply_chain(tb: xr.Dataset, hops: tuple[tuple[str, str], ...],
                coeffs: Mapping[tuple[str, str], xr.Dataset]) -> xr.Dataset:
    """Calibrate one sensor's TB store through its chain of hops (lazy, pure).

    Channels without a partner at some hop come out NaN and are listed in the
    ``uncalibrated_channels`` attr.
    """
    src = hops[0][0]
    labels = list(tb[dims.CHANNEL].values)
    # current label (in the sensor of the current hop) for each original channel
    current = {c: c for c in labels}
    values = tb[dims.TB]
    for a, b in hops:
        main, fb = _split(coeffs[(a, b)])
        # Channels without a partner so far get unique placeholders (no transform matches them,
        # so they come out NaN) — the channel index must stay unique.
        as_a = values.assign_coords({dims.CHANNEL: [current[c] or f"~{c}" for c in labels]})
        cal = calibrate.apply_transform(as_a, main, fallback=fb)
        mapping = calibrate.match_channels(a, b)
        current = {c: (mapping.get(current[c]) if current[c] else None) for c in labels}
        values = cal.assign_coords({dims.CHANNEL: labels})
    missing = [c for c in labels if current[c] is None]
    out = tb.copy()
    out[dims.TB] = values.transpose(*tb[dims.TB].dims).assign_attrs(tb[dims.TB].attrs)
    ref = hops[-1][1]
    out.attrs.update(
        calibrated_to=ref,
        calibration_chain=" -> ".join([src] + [b for _, b in hops]),
        uncalibrated_channels=",".join(missing),
        history=(str(tb.attrs.get("history", "")) +
                 f"; cross-calibrated onto {ref} via {'/'.join(b for _, b in hops)}").lstrip("; "),
    )
    return out


def fit(root: str, settings: FitSettings = FitSettings(), *,
        storage_options: Mapping[str, Any] | None = None,
        progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Fit every hop needed to bring the archive's sensors onto the reference; write coefficients.

    Returns the report (also written to ``{root}/reports/calibration-fit.json``).
    """
    present = {s for s in sensors.archive_sensors()
               if stores.exists(stores.tb_url(root, s), storage_options)}
    if settings.reference not in present:
        raise errors.StoreNotFound(
            f"{root}: reference sensor {settings.reference!r} has no tb store")
    chains = chain_edges(settings.reference, present)
    hops = sorted({h for path in chains.values() for h in path})
    static = _open_static(root, storage_options)
    report: dict[str, Any] = {"root": root, "reference": settings.reference, "hops": [],
                              "chains": {k: [list(h) for h in v] for k, v in chains.items()},
                              "not_calibrated": sorted(present - set(chains) -
                                                       {settings.reference, "smap"})}
    for src, dst in hops:
        progress(f"fitting {src} → {dst}")
        a = stores.open_tb(stores.tb_url(root, src), storage_options=storage_options)
        b = stores.open_tb(stores.tb_url(root, dst), storage_options=storage_options)
        for ds, s in ((a, src), (b, dst)):  # collocation pairs cells by position
            stores.require_on_cells(ds, static, stores.tb_url(root, s),
                                    what="the archive's static store")
        coeffs, diag = fit_edge(a, b, static, src, dst, settings)
        url = coefficients_url(root, src, dst)
        stores.write_dataset(_encodable(coeffs), url, storage_options=storage_options)
        diag["coefficients_url"] = url
        report["hops"].append(diag)
    # Diagnostics against the simulator's truth must never cost the fitted coefficients.
    for key, fn in (("recovery_against_truth", _recovery_against_truth),
                    ("composite_recovery_against_truth", composite_recovery)):
        try:
            res = fn(root, chains, storage_options)
        except Exception as e:  # noqa: BLE001 - reported, the fit itself succeeded
            res = {"error": f"{type(e).__name__}: {e}"}
        if res:
            report[key] = res
    if report["hops"]:
        png = stores.reports_url(root, "calibration-bias.png")
        stores.write_bytes(png, bias_figure(report["hops"]), storage_options)
        report["figure"] = png
    stores.write_json(stores.reports_url(root, "calibration-fit.json"), report, storage_options)
    return report


def bias_figure(hops: list[dict]) -> bytes:
    """PNG: per-channel median bias (source − reference) before and after, one panel per hop."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(hops), 1, figsize=(8, 2.6 * len(hops)), squeeze=False)
    for ax, hop in zip(axes[:, 0], hops, strict=True):
        chans = sorted(hop["channels"], key=lambda c: (float(c[:-1]), c[-1] == "H"))
        before = [hop["channels"][c]["median_bias_before_K"] or np.nan for c in chans]
        after = [hop["channels"][c]["median_bias_after_K"] or np.nan for c in chans]
        x = np.arange(len(chans))
        ax.bar(x - 0.2, before, 0.4, label="before", color="#bbbbbb")
        ax.bar(x + 0.2, after, 0.4, label="after", color="#1f77b4")
        ax.axhspan(-0.5, 0.5, color="#2ca02c", alpha=0.12, label="±0.5 K target")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(x, chans, fontsize=8)
        ax.set_ylabel("median bias [K]")
        ax.set_title(f"{hop['source']} → {hop['reference']} ({hop['method']}/"
                     f"{hop['granularity']}, overlap {hop['overlap'][0]}…{hop['overlap'][1]})",
                     fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _encodable(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    for k, v in list(ds.attrs.items()):
        ds.attrs[k] = str(v) if not isinstance(v, int | float | str) else v
    return ds


def _open_static(root: str, storage_options) -> xr.Dataset:
    return stores.find_static(root, storage_options)


def load_coefficients(root: str, storage_options=None) -> dict[tuple[str, str], xr.Dataset]:
    """All coefficient stores under ``{root}/calibration`` keyed by (src, dst)."""
    out = {}
    for s, d in itertools.permutations(sensors.archive_sensors(), 2):
        u = coefficients_url(root, s, d)
        if stores.exists(u, storage_options):
            out[(s, d)] = stores.open_dataset(u, storage_options=storage_options).load()
    return out


def apply(root: str, settings: FitSettings = FitSettings(), *,
          storage_options: Mapping[str, Any] | None = None,
          progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Write ``calibrated/{sensor}.zarr`` for every sensor on the chain (and the reference)."""
    coeffs = load_coefficients(root, storage_options)
    if not coeffs:
        raise errors.StoreNotFound(
            f"{root}: no calibration coefficients; run `tbcube calibrate fit`")
    present = {s for s in sensors.archive_sensors()
               if stores.exists(stores.tb_url(root, s), storage_options)}
    chains = chain_edges(settings.reference, present)
    written = {}
    for sensor, hops in sorted(chains.items()):
        if not all(h in coeffs for h in hops):
            raise errors.StoreNotFound(f"{root}: coefficients missing for {sensor} ({hops}); "
                                    "rerun `tbcube calibrate fit`")
        progress(f"calibrating {sensor} via {'/'.join(b for _, b in hops)}")
        tb = stores.open_tb(stores.tb_url(root, sensor), storage_options=storage_options)
        out = apply_chain(tb, hops, coeffs)
        url = stores.calibrated_url(root, sensor)
        stores.write_dataset(out, url, storage_options=storage_options)
        written[sensor] = url
    ref = settings.reference
    tb = stores.open_tb(stores.tb_url(root, ref), storage_options=storage_options)
    url = stores.calibrated_url(root, ref)
    stores.write_dataset(tb.assign_attrs(calibrated_to=ref, calibration_chain=ref), url,
                         storage_options=storage_options)
    written[ref] = url
    report = {"root": root, "reference": ref, "calibrated": written}
    stores.write_json(stores.reports_url(root, "calibration-apply.json"), report, storage_options)
    return report


def injected_calibration(root: str, storage_options=None) -> dict:
    """The simulator's injected calibration (``truth`` attrs ``calibration``), or {} for real
    archives: ``{sensor: {channel: {"offset_K", "gain", "drift_K_per_decade"}}}``."""
    import json

    for g in grid.GRIDS:
        u = stores.truth_url(root, g)
        if stores.exists(u, storage_options):
            attrs = stores.open_dataset(u, storage_options=storage_options).attrs
            cal = attrs.get("calibration")
            if cal is None:
                return {}
            return json.loads(cal) if isinstance(cal, str) else dict(cal)
    return {}


def _recovery_against_truth(root: str, chains, storage_options) -> dict[str, Any]:
    """Compare fitted transforms with the simulator's injected calibration (simulated archives).

    Where physics cancels (same frequency and incidence at both ends of a composite transform),
    the fitted map src → ref should equal the composition of the injected errors:
    ``slope = g_ref / g_src``, ``offset = a_ref − slope · a_src`` (drift-free part).
    """
    cal = injected_calibration(root, storage_options)
    if not cal:
        return {}
    coeffs = load_coefficients(root, storage_options)
    out: dict[str, Any] = {}
    for (src, dst), c in coeffs.items():
        if c.attrs.get("method") != "linear" or src not in cal or dst not in cal:
            continue
        for ch in c[dims.CHANNEL].values:
            ref_ch = str(c["ref_channel"].sel({dims.CHANNEL: ch}).values)
            fs, fr = sensors.get(src).channel(str(ch)), sensors.get(dst).channel(ref_ch)
            same_physics = (abs(fs.frequency_ghz - fr.frequency_ghz) < 0.05 and
                            sensors.get(src).incidence_angle_deg ==
                            sensors.get(dst).incidence_angle_deg)
            if not same_physics or str(ch) not in cal[src] or ref_ch not in cal[dst]:
                continue
            inj_s, inj_r = cal[src][str(ch)], cal[dst][ref_ch]
            exp_slope = inj_r["gain"] / inj_s["gain"]
            # tau is counted from the source's first day; the reference's drift is counted from
            # its own first day, so at tau = 0 it contributes d_r · (start_src − start_ref).
            lag = ((np.datetime64(sensors.get(src).period.start, "D") -
                    np.datetime64(sensors.get(dst).period.start, "D")) /
                   np.timedelta64(1, "D")) / calibrate.DECADE_DAYS
            d_s = inj_s.get("drift_K_per_decade", 0.0)
            d_r = inj_r.get("drift_K_per_decade", 0.0)
            exp_offset = inj_r["offset_K"] + d_r * lag - exp_slope * inj_s["offset_K"]
            exp_drift = d_r - exp_slope * d_s
            main, _ = _split(c)
            slope = float(main["slope"].sel({dims.CHANNEL: ch}).median())
            offset = float(main["offset"].sel({dims.CHANNEL: ch}).median())
            out[f"{src}->{dst}:{ch}"] = {
                "expected_slope": round(exp_slope, 5), "fitted_slope": round(slope, 5),
                "slope_error_pct": round(100 * (slope / exp_slope - 1), 3),
                "expected_offset_K": round(exp_offset, 3), "fitted_offset_K": round(offset, 3),
                "offset_error_K": round(offset - exp_offset, 3),
                "expected_drift_K_per_decade": round(exp_drift, 3),
                "fitted_drift_K_per_decade": round(
                    float(main["drift"].sel({dims.CHANNEL: ch}).median()), 3),
            }
    return out


def _chain_response(coeffs, hops, sensor: str, tb_k: np.ndarray, when: np.datetime64,
                    like: xr.Dataset) -> xr.DataArray:
    """Reference-scale TB for source TB values ``tb_k`` (sample) at every cell and channel."""
    labels = list(sensors.get(sensor).channel_labels)
    n = len(tb_k)
    times = when + np.arange(n).astype("timedelta64[us]")
    vals = np.broadcast_to(tb_k[:, None, None, None, None],
                           (n, 1, len(labels), like.sizes[dims.Y], like.sizes[dims.X]))
    tb = xr.Dataset({dims.TB: ((dims.TIME, dims.PASS, dims.CHANNEL, dims.Y, dims.X),
                               np.array(vals, np.float32))},
                    coords={dims.TIME: times, dims.PASS: ["am"], dims.CHANNEL: labels,
                            dims.Y: like[dims.Y].values, dims.X: like[dims.X].values})
    out = apply_chain(tb, hops, coeffs)[dims.TB].isel({dims.PASS: 0}, drop=True)
    return out.rename({dims.TIME: "sample"}).drop_vars("sample")


def composite_recovery(root: str, chains, storage_options=None,
                       src: str = "amsre", dst: str = "amsr2",
                       when: str = "2011-01-01") -> dict[str, Any]:
    """Recover the injected src→dst calibration difference through the fitted chains.

    AMSR-E and AMSR2 share frequencies and incidence, so the only difference between their
    observations of one scene is the injected calibration.  The fitted chains map both onto
    the reference scale; composing AMSR-E's chain with the inverse of AMSR2's gives the
    AMSR-E → AMSR2 map, which must equal ``z = (g₂/gₑ)(x − aₑ − dₑτₑ) + a₂ + d₂τ₂`` at time
    ``when`` (default: inside AMSR-E's record, where its data exist).  Slope and offset (at
    250 K) are fitted to the composite per cell over
    200–290 K; the medians over cells are compared with the injected values.
    """
    cal = injected_calibration(root, storage_options)
    if src not in chains or dst not in chains or not cal:
        return {}
    coeffs = load_coefficients(root, storage_options)
    like = _open_static(root, storage_options)
    t = np.datetime64(when, "ns")
    x = np.linspace(200.0, 290.0, 46)
    zgrid = np.linspace(150.0, 330.0, 361)
    rx = _chain_response(coeffs, chains[src], src, x, t, like)
    rz = _chain_response(coeffs, chains[dst], dst, zgrid, t, like)
    out: dict[str, Any] = {"evaluated_at": when}
    tau = {s: ((t - np.datetime64(sensors.get(s).period.start, "ns")) / np.timedelta64(1, "D"))
           / calibrate.DECADE_DAYS for s in (src, dst)}
    for ch in sensors.get(src).channel_labels:
        if ch not in sensors.get(dst).channel_labels or ch not in cal.get(src, {}) \
                or ch not in cal.get(dst, {}):
            continue
        a = rx.sel({dims.CHANNEL: ch}).transpose("sample", dims.Y, dims.X).values
        b = rz.sel({dims.CHANNEL: ch}).transpose("sample", dims.Y, dims.X).values
        slopes, offsets = [], []
        for iy in range(a.shape[1]):
            for ix in range(a.shape[2]):
                ya, yb = a[:, iy, ix], b[:, iy, ix]
                if not (np.isfinite(ya).all() and np.isfinite(yb).all()):
                    continue
                order = np.argsort(yb)
                z = np.interp(ya, yb[order], zgrid[order])
                p = np.polyfit(x, z, 1)
                slopes.append(p[0])
                offsets.append(np.polyval(p, 250.0) - 250.0 * p[0])
        if not slopes:
            continue
        e, d = cal[src][ch], cal[dst][ch]
        exp_slope = d["gain"] / e["gain"]
        exp_off = (d["offset_K"] + d.get("drift_K_per_decade", 0.0) * tau[dst]
                   - exp_slope * (e["offset_K"] + e.get("drift_K_per_decade", 0.0) * tau[src]))
        slope, off = float(np.median(slopes)), float(np.median(offsets))
        # The intercept (at 0 K) amplifies slope errors 250-fold; the map's error at a typical
        # 250 K scene is the well-conditioned measure of the recovered offset.
        err250 = (off + slope * 250.0) - (exp_off + exp_slope * 250.0)
        out[ch] = {"expected_slope": round(exp_slope, 5), "fitted_slope": round(slope, 5),
                   "slope_error_pct": round(100 * (slope / exp_slope - 1), 3),
                   "expected_offset_K": round(exp_off, 3), "fitted_offset_K": round(off, 3),
                   "offset_error_K": round(off - exp_off, 3),
                   "error_at_250K": round(float(err250), 3), "cells": len(slopes)}
    return out
