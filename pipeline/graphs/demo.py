"""The end-to-end demo: simulate → calibrate → freeze/thaw → SMAP retrieval → LSTM + fusion →
carbon → validation report, on the embedded simulator archive.

Example::

    tbcube demo --root demo-output                 # what `make demo` runs
    tbcube demo --root /tmp/t --preset tiny        # one small archive, ~2 min

Archives.  The ``demo`` preset writes two roots (docs/simulator.md): ``alaska-n36`` carries
freeze/thaw and carbon, ``transect-m25`` the multi-sensor soil-moisture chain (calibration,
SMAP retrieval, LSTM harmonisation, fusion).  ``tiny`` writes one root that carries every
stage.

Stages run in order; each is one call into its graph module's Python API (no subprocesses):

==============  ============  ==========================================================
stage           archive       done when this report exists (resume unless ``force``)
==============  ============  ==========================================================
simulate        all           ``truth/`` and ``ancillary/{grid}.zarr`` of every archive
calibrate       transect      ``reports/calibration-apply.json``
ft              alaska        ``reports/ft-validation.json``
sm-retrieval    transect      ``reports/sm-retrieval.json``
sm-lstm         transect      ``reports/sm-validation.json`` (with fused scores)
carbon          alaska        ``reports/carbon-aggregate.json``
validation      all           always runs: collects every report → ``{root}/report/``
==============  ============  ==========================================================

A stage that raises is recorded (error type, one-line message, traceback tail) and the demo
goes on with the stages that do not depend on it (``sm-lstm`` needs ``calibrate`` and
``sm-retrieval``); dependants of a failed stage are recorded as ``skipped``.  The caller exits
non-zero when any stage failed.

Demo settings.  The demo preset trains both networks with lighter settings than the stage
defaults so that the whole demo fits in ~15 minutes on 2 cores; they are explicit in
:class:`DemoSettings` and written into ``{root}/report/demo.json`` and docs/demo.md.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipeline import errors
from pipeline.io import stores

__all__ = ["STAGES", "DemoSettings", "StageResult", "archives", "roles", "run"]

STAGES = ("simulate", "calibrate", "ft", "sm-retrieval", "sm-lstm", "carbon", "validation")
DEPENDS: dict[str, tuple[str, ...]] = {
    "calibrate": ("simulate",), "ft": ("simulate",), "sm-retrieval": ("simulate",),
    "sm-lstm": ("simulate", "calibrate", "sm-retrieval"), "carbon": ("simulate",),
    "validation": (),
}
# Stage → (role, report file whose presence means "done").
DONE_MARKER: dict[str, tuple[str, str]] = {
    "calibrate": ("calibration", "calibration-apply.json"),
    "ft": ("ft", "ft-validation.json"),
    "sm-retrieval": ("retrieval", "sm-retrieval.json"),
    "sm-lstm": ("lstm", "sm-validation.json"),
    "carbon": ("carbon", "carbon-aggregate.json"),
}
Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """What the demo runs and with which (lighter-than-default) training settings.

    Attributes:
      preset: Simulator preset: ``demo`` (two archives) or ``tiny`` (one).
      seed: Simulator and training seed.
      skip: Stages not to run (their old reports, if any, still enter the report).
      force: Re-run stages whose report already exists.
      ft_epochs, ft_patience, ft_max_segments: Autoencoder training (defaults 200 / 30 /
        20000 in ``tbcube ft train``; one epoch over 20 000 segments takes ~2 min on 2 busy
        cores).
      lstm_epochs, lstm_patience: LSTM training (defaults 30 / 4; ≈ 16 s an epoch in the demo,
        so 12 keeps it under 15 minutes; docs/soil-moisture-record.md compares 8, 15 and 30).
      lstm_test_year: Year held out of LSTM training (``None``: the stage default, 2018;
        the tiny preset ends in 2016 and uses 2016).
      bplut: The L4C BPLUT CSV for the carbon stage (``None``: ``$TBCUBE_BPLUT`` or the
        real-data copy).
      cluster: Run on a local Dask cluster (:func:`pipeline.runner.cluster.connect`).
      n_workers: Local cluster process workers.
    """

    preset: str = "demo"
    seed: int = 0
    skip: tuple[str, ...] = ()
    force: bool = False
    ft_epochs: int = 6
    ft_patience: int = 3
    ft_max_segments: int = 3000
    lstm_epochs: int = 12
    lstm_patience: int = 4
    lstm_test_year: int | None = None
    bplut: str | None = None
    cluster: bool = True
    n_workers: int = 2

    def __post_init__(self):
        bad = sorted(set(self.skip) - set(STAGES))
        if bad:
            raise errors.ConfigError(f"demo --skip: unknown stage(s) {bad}; stages are "
                                     f"{', '.join(STAGES)}")
        if self.preset not in ("demo", "tiny"):
            raise errors.ConfigError(f"demo --preset: {self.preset!r} is not 'demo' or 'tiny'")


@dataclasses.dataclass
class StageResult:
    """Outcome of one stage (JSON-able via :func:`dataclasses.asdict`).

    Attributes:
      name: Stage name.
      archive: Archive name(s) the stage ran on.
      status: ``ok``, ``cached`` (report existed), ``skipped`` (``--skip`` or a failed
        dependency), ``failed``.
      seconds: Wall time [s].
      error: One-line error (``Type: message``) when failed or skipped.
      trace: Traceback tail when failed.
      outputs: Stage outputs (product URLs, report URLs).
    """

    name: str
    archive: str
    status: str = "pending"
    seconds: float = 0.0
    error: str | None = None
    trace: str | None = None
    outputs: dict[str, Any] = dataclasses.field(default_factory=dict)


def archives(root: str, preset: str) -> dict[str, str]:
    """``{archive name: archive root URL}`` of a preset under ``root``."""
    if preset == "tiny":
        return {"tiny": str(root)}
    return {"alaska-n36": stores.join(root, "alaska-n36"),
            "transect-m25": stores.join(root, "transect-m25")}


def roles(preset: str) -> dict[str, str]:
    """``{role: archive name}``: which archive each product's numbers come from."""
    if preset == "tiny":
        return dict.fromkeys(("ft", "carbon", "calibration", "retrieval", "lstm"), "tiny")
    return {"ft": "alaska-n36", "carbon": "alaska-n36", "calibration": "transect-m25",
            "retrieval": "transect-m25", "lstm": "transect-m25"}


def _grid_of(archive_root: str, storage_options=None) -> str:
    """The archive's grid name (from its static store)."""
    from pipeline import grid

    for g in grid.GRIDS:
        if stores.exists(stores.static_url(archive_root, g), storage_options):
            return g
    raise errors.StoreNotFound(f"{archive_root}: no static/{{grid}}.zarr store")


def _default_bplut() -> str:
    import os
    from pathlib import Path

    if os.environ.get("TBCUBE_BPLUT"):
        return os.environ["TBCUBE_BPLUT"]
    real = os.environ.get("TBCUBE_REAL_DATA",
                          str(Path(__file__).resolve().parents[2].parent / "shared/data/real"))
    return str(Path(real) / "pyl4c_bplut" / "SMAP_BPLUT_2020-07-31.csv")


# --- stages ------------------------------------------------------------------------------------
def _simulated(arch: Mapping[str, str], so) -> bool:
    """Every archive has its truth and ancillary stores (an archive written by an older
    simulator without ``ancillary/`` is simulated again)."""
    try:
        for a in arch.values():
            g = _grid_of(a, so)
            if not (stores.exists(stores.truth_url(a, g), so) and
                    stores.exists(stores.ancillary_url(a, g), so)):
                return False
    except errors.StoreNotFound:
        return False
    return True


def _stage_simulate(root, arch, s: DemoSettings, so, say) -> dict:
    from pipeline.simulate import simulate

    urls = simulate(s.preset, root, seed=s.seed, storage_options=so, progress=True)
    return {"roots": {k: v for k, v in urls.items() if k.endswith("root")}}


def _stage_calibrate(a: str, s: DemoSettings, so, say) -> dict:
    from pipeline.graphs import calibration

    fit = calibration.fit(a, storage_options=so, progress=say)
    app = calibration.apply(a, storage_options=so, progress=say)
    return {"hops": len(fit["hops"]), "calibrated": app["calibrated"]}


def _stage_ft(a: str, s: DemoSettings, so, say, resources=None) -> dict:
    from pipeline.graphs import freeze_thaw as ft
    from pipeline.training_data import SegmentRules

    # The paper's protocol on the demo archive: train (and calibrate the decision thresholds) on
    # 2015-2017, score 2018-2019, so no scoring day is ever seen.  The tiny archive spans two
    # seasons only and uses all of it for both (a smoke run, not a skill estimate).
    train_years, score_years = (None, None) if s.preset == "tiny" else \
        ((2015, 2016, 2017), (2018, 2019))
    opts = ft.TrainOptions(
        epochs=s.ft_epochs, patience=s.ft_patience, seed=s.seed, years=train_years,
        rules=dataclasses.replace(SegmentRules(), max_segments=s.ft_max_segments, seed=s.seed))
    ref = ft.train(a, opts, storage_options=so, progress=say)
    url = ft.run(a, storage_options=so, progress=say, resources=resources)
    rep = ft.validate(a, years=score_years, storage_options=so, progress=say)
    return {"model": ref.uri, "product": url, "report": rep}


def _stage_retrieval(a: str, s: DemoSettings, so, say, resources=None) -> dict:
    from pipeline.graphs import retrieval, retrieval_tune

    # τV/τH per land cover tuned at the stations on the first SMAP years; the report scores the
    # cells and years the tuning did not see (target_vod_le_0.5_holdout).  The tiny archive
    # (14 SMAP months, 3 stations a class) is a smoke run: no tuning, as for its ft stage.
    if s.preset == "tiny":
        url, _ = retrieval.run(a, storage_options=so, progress=say, resources=resources,
                               use_tuned=False)
        return {"product": url}
    tuned = retrieval_tune.tune(a, years=(2015, 2016, 2017), storage_options=so, progress=say)
    url, _ = retrieval.run(a, storage_options=so, progress=say, resources=resources,
                           use_tuned=True)
    return {"product": url, "tuned": retrieval_tune.tuned_url(a),
            "pol_ratio_by_class": tuned["pol_ratio_by_class"],
            "teff_offset_by_class": tuned["teff_offset_by_class"]}


def _stage_lstm(a: str, s: DemoSettings, so, say, resources=None) -> dict:
    from pipeline.graphs import harmonise

    st = dataclasses.replace(harmonise.TrainSettings(), max_epochs=s.lstm_epochs,
                             patience=s.lstm_patience, seed=s.seed)
    year = s.lstm_test_year or (2016 if s.preset == "tiny" else None)
    if year is not None:
        st = dataclasses.replace(st, test_year=year)
    say(f"LSTM: up to {st.max_epochs} epochs (patience {st.patience}), test year {st.test_year}")
    harmonise.train(a, st, storage_options=so, progress=say)
    h = harmonise.harmonise_all(a, storage_options=so, resources=resources, progress=say)
    # First validation: held-out skill against SMAP (the fusion's fallback error variances).
    harmonise.validate(a, st, storage_options=so, progress=say)
    f = harmonise.fuse_all(a, storage_options=so, progress=say)
    # Second validation: now including the fused product.
    harmonise.validate(a, st, storage_options=so, progress=say)
    return {"products": {**h["products"], "fused": f["product"]}}


def _stage_carbon(a: str, s: DemoSettings, so, say) -> dict:
    from pipeline.graphs import carbon

    g = _grid_of(a, so)
    m = carbon.model_root(a, g, s.bplut or _default_bplut(), storage_options=so, progress=say)
    carbon.evaluate_root(a, g, storage_options=so, progress=say)
    carbon.aggregate_root(a, g, storage_options=so)
    return {"product": m["url"]}


# --- driver ------------------------------------------------------------------------------------
def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}"[:500]


def _resources(client) -> dict | None:
    if client is None:
        return None
    try:
        from pipeline.runner import placement

        return placement.model_resources(client)
    except (ImportError, AttributeError):
        return None


def run(root: str, settings: DemoSettings = DemoSettings(), *, storage_options=None,
        progress: Progress | None = None, client=None) -> dict[str, Any]:
    """Run every stage on ``root``, then build the report.

    Args:
      root: Demo output root (local path or fsspec URL).
      settings: What to run.
      storage_options: fsspec options for ``root``.
      progress: Callable receiving one progress line per event (default: stderr).
      client: The Dask client the stages' graphs run on (None: the default scheduler).

    Returns:
      ``{"root", "archives", "roles", "stages": [StageResult as dict], "report": url,
      "products": {archive: {product_id: current URL}}, "failed": [stage names],
      "checks": {pass, fail, missing}}``.
    """
    so = storage_options
    t_start = time.perf_counter()

    def say(msg: str) -> None:
        line = f"[demo {time.perf_counter() - t_start:7.1f}s] {msg}"
        (progress or (lambda m: print(m, file=sys.stderr, flush=True)))(line)

    arch = archives(root, settings.preset)
    rl = roles(settings.preset)
    resources = _resources(client)
    results: list[StageResult] = []
    by_name: dict[str, StageResult] = {}

    def role_root(role: str) -> str:
        return arch[rl[role]]

    for name in STAGES:
        if name == "validation":
            continue
        where = ("all" if name == "simulate" else
                 rl[DONE_MARKER[name][0]])
        res = StageResult(name, where)
        results.append(res)
        by_name[name] = res
        if name in settings.skip:
            res.status, res.error = "skipped", "skipped on request (--skip)"
            say(f"{name}: skipped (--skip)")
            continue
        failed_dep = [d for d in DEPENDS.get(name, ()) if by_name.get(d) is not None
                      and by_name[d].status == "failed"]
        if failed_dep:
            res.status = "skipped"
            res.error = f"not run: depends on failed stage(s) {', '.join(failed_dep)}"
            say(f"{name}: {res.error}")
            continue
        if not settings.force:
            done = (_simulated(arch, so) if name == "simulate" else stores.exists(
                stores.reports_url(role_root(DONE_MARKER[name][0]), DONE_MARKER[name][1]), so))
            if done:
                res.status = "cached"
                say(f"{name}: already done on {where} (report exists; --force re-runs it)")
                continue
        say(f"{name}: start on {where}")
        t0 = time.perf_counter()
        stage_say = (lambda n: (lambda m: say(f"{n}: {m}")))(name)
        try:
            if name == "simulate":
                res.outputs = _stage_simulate(root, arch, settings, so, stage_say)
            elif name == "calibrate":
                res.outputs = _stage_calibrate(role_root("calibration"), settings, so, stage_say)
            elif name == "ft":
                res.outputs = _stage_ft(role_root("ft"), settings, so, stage_say, resources)
            elif name == "sm-retrieval":
                res.outputs = _stage_retrieval(role_root("retrieval"), settings, so, stage_say,
                                               resources)
            elif name == "sm-lstm":
                res.outputs = _stage_lstm(role_root("lstm"), settings, so, stage_say, resources)
            elif name == "carbon":
                res.outputs = _stage_carbon(role_root("carbon"), settings, so, stage_say)
            res.status = "ok"
        except Exception as e:  # noqa: BLE001 — one stage's failure must not end the demo
            res.status, res.error = "failed", _one_line(e)
            res.trace = "".join(traceback.format_exception(e)[-6:])
            say(f"{name}: FAILED — {res.error}")
        res.seconds = round(time.perf_counter() - t0, 1)
        say(f"{name}: {res.status} in {res.seconds:.1f} s")

    val = StageResult("validation", "all")
    results.append(val)
    say("validation: collecting reports")
    t0 = time.perf_counter()
    from pipeline import report as report_mod

    products = collect_products(arch, so)
    summary = {"root": str(root), "settings": dataclasses.asdict(settings), "archives": arch,
               "roles": rl, "products": products,
               "total_seconds": round(time.perf_counter() - t_start, 1)}
    try:
        out = report_mod.build(root, arch, rl, [dataclasses.asdict(r) for r in results],
                               summary, storage_options=so)
        val.status, val.outputs = "ok", {"report": out["index"]}
        summary.update(report=out["index"], checks=out["counts"])
    except Exception as e:  # noqa: BLE001 — the report must still say what happened
        val.status, val.error = "failed", _one_line(e)
        val.trace = "".join(traceback.format_exception(e)[-6:])
        say(f"validation: FAILED — {val.error}")
        summary.update(report=None, checks=None)
    val.seconds = round(time.perf_counter() - t0, 1)
    summary["stages"] = [dataclasses.asdict(r) for r in results]
    summary["failed"] = [r.name for r in results if r.status == "failed"]
    summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
    stores.write_json(stores.join(root, "report", "demo.json"), summary, so)
    say(f"done in {summary['total_seconds']:.1f} s; failed stages: "
        f"{', '.join(summary['failed']) or 'none'}")
    return summary


def collect_products(arch: Mapping[str, str], storage_options=None) -> dict[str, dict[str, str]]:
    """``{archive: {product_id: current version URL}}`` of every published product."""
    from pipeline.io import publish

    out: dict[str, dict[str, str]] = {}
    for name, a in arch.items():
        found = {}
        for pid in publish.list_products(a, storage_options):
            try:
                found[pid] = publish.current_url(a, pid, storage_options)
            except errors.TbcubeError:
                continue
        out[name] = found
    return out


def product_urls(summary: Mapping[str, Any]) -> Sequence[str]:
    """Every product URL of a demo summary (archive order, then product id)."""
    return [u for prods in summary.get("products", {}).values() for _, u in sorted(prods.items())]
