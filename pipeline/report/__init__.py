"""The demo's validation report: every stage's JSON report → ``{root}/report/index.html``.

:func:`build` reads the JSON reports under each archive's ``reports/`` (missing ones are
simply missing, never an error), checks every product against its target
(:mod:`pipeline.report.targets`), draws the figures (:mod:`pipeline.report.figures`), copies the
PNGs the stages wrote, and writes::

    {root}/report/index.html      the page
    {root}/report/summary.json    checks (measured, target, verdict) + stage table
    {root}/report/*.png           the report's figures
    {root}/report/stages/*.png    figures the stages wrote under {archive}/reports/

>>> from pipeline import report
>>> out = report.build("out", {"tiny": "out"}, {"ft": "tiny"}, [], {})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline import errors
from pipeline.io import stores
from pipeline.report import figures, html, targets

__all__ = ["build", "collect_reports", "targets"]

# JSON reports the report reads (others found under reports/ are kept too).
_NESTED = {"carbon-evaluation/evaluation.json"}


def _names(url: str, storage_options) -> list[str]:
    from pipeline.io import publish

    try:
        return publish.list_names(url, storage_options)
    except errors.TbcubeError:
        return []


def collect_reports(archive_root: str, storage_options=None) -> dict[str, Any]:
    """``{file name: parsed JSON}`` of every ``*.json`` under ``{archive}/reports/``.

    Unreadable files are recorded as ``{"_error": "…"}`` instead of raising.
    """
    base = stores.join(archive_root, "reports")
    out: dict[str, Any] = {}
    names = [n for n in _names(base, storage_options) if n.endswith(".json")]
    names += [n for n in _NESTED if stores.exists(stores.join(base, n), storage_options)]
    for n in names:
        try:
            out[n] = stores.read_json(stores.join(base, n), storage_options)
        except (errors.TbcubeError, ValueError) as e:
            out[n] = {"_error": str(e)}
    return out


def _stage_pngs(archive_root: str, storage_options) -> list[str]:
    base = stores.join(archive_root, "reports")
    found = [n for n in _names(base, storage_options) if n.endswith(".png")]
    sub = "carbon-evaluation"
    found += [f"{sub}/{n}" for n in _names(stores.join(base, sub), storage_options)
              if n.endswith(".png")]
    return sorted(found)


def _coverage(archive_root: str, storage_options) -> bytes | None:
    """Coverage series of the fused product with sensor periods (None when absent)."""
    from pipeline import dims, sensors
    from pipeline.io import publish

    pid = next((p for p in publish.list_products(archive_root, storage_options)
                if p.startswith("sm-fused-")), None)
    if pid is None:
        return None
    ds = publish.open_product(archive_root, pid, storage_options)
    if dims.LAND_COVERAGE not in ds:
        return None
    cov = ds[dims.LAND_COVERAGE].load()
    periods = {}
    for s in ("tmi", "amsre", "amsr2", "gmi", "smap"):
        p = sensors.get(s).period
        periods[s] = (str(p.start), str(p.end or "2100-01-01"))
    return figures.coverage_series(np.asarray(cov[dims.TIME].values), np.asarray(cov.values),
                                   periods)


def build(root: str, archives: Mapping[str, str], roles: Mapping[str, str],
          stages: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], *,
          storage_options=None, title: str = "tbcube demo report") -> dict[str, Any]:
    """Write the report under ``{root}/report``.

    Args:
      root: Demo root.
      archives: ``{archive name: archive root URL}``.
      roles: ``{role: archive name}`` (see :func:`pipeline.report.targets.check_all`).
      stages: Stage records (name, archive, status, seconds, error, trace).
      summary: Extra run information (root, settings, products, total_seconds).

    Returns:
      ``{"index": URL of index.html, "summary": URL of summary.json, "checks": [dict],
      "counts": {pass, fail, missing}}``.
    """
    so = storage_options
    out_dir = stores.join(root, "report")
    reports = {a: collect_reports(u, so) for a, u in archives.items()}
    checks = targets.check_all(reports, roles)
    counts = targets.status_of(checks)

    def rep(role: str, name: str):
        return reports.get(roles.get(role, ""), {}).get(name)

    made: dict[str, bytes | None] = {
        "stage_times": figures.stage_times(list(stages)),
        "ft_accuracy": figures.ft_accuracy(rep("ft", "ft-validation.json")),
        "calibration_bias": figures.calibration_bias(rep("calibration", "calibration-fit.json")),
        "retrieval_by_vod": figures.retrieval_by_vod(rep("retrieval", "sm-retrieval.json")),
        "lstm_ubrmsd": figures.lstm_ubrmsd(rep("lstm", "sm-validation.json")),
        "carbon_sites": figures.carbon_sites(
            rep("carbon", "carbon-evaluation/evaluation.json")),
    }
    if roles.get("lstm") in archives:
        try:
            made["coverage_series"] = _coverage(archives[roles["lstm"]], so)
        except (errors.TbcubeError, KeyError, ValueError):
            made["coverage_series"] = None
    figs = {}
    for key, png in made.items():
        if png:
            stores.write_bytes(stores.join(out_dir, f"{key}.png"), png, so)
            figs[key] = f"{key}.png"
    stage_pngs: dict[str, list[str]] = {}
    for a, u in archives.items():
        for n in _stage_pngs(u, so):
            rel = f"stages/{a}-{n.replace('/', '-')}"
            stores.write_bytes(stores.join(out_dir, rel),
                               stores.read_bytes(stores.join(u, "reports", n), so), so)
            stage_pngs.setdefault(a, []).append(rel)
    page = html.render(title=title, checks=checks, counts=counts, stages=stages,
                       reports=reports, roles=roles, figures=figs, stage_pngs=stage_pngs,
                       products=summary.get("products", {}), summary=summary)
    index = stores.write_bytes(stores.join(out_dir, "index.html"), page.encode("utf-8"), so)
    doc = {"checks": [c.as_dict() for c in checks], "counts": counts,
           "stages": [{k: s.get(k) for k in ("name", "archive", "status", "seconds", "error")}
                      for s in stages], "targets": targets.TARGETS}
    summ = stores.write_json(stores.join(out_dir, "summary.json"), doc, so)
    return {"index": index, "summary": summ, "checks": doc["checks"], "counts": counts}
