"""The demo report page: static HTML (no scripts, no external assets), figures beside it.

Numbers are printed with :func:`fmt` (4 decimals for values below 10, 2 above), the same way
everywhere on the page, so a reader (and the tests) can find every JSON number in the page.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.report.targets import TARGETS, Check

__all__ = ["fmt", "render"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.6em 0 1.2em}td,th{border:1px solid #ccc;padding:3px 7px;
font-size:13px;text-align:left}th{background:#f3f3f3}.pass{background:#c8e6c9}
.fail{background:#ffcdd2}.missing{background:#eeeeee;color:#666}.failed{background:#ffcdd2}
.ok{background:#c8e6c9}.cached{background:#e3f2fd}.skipped{background:#eeeeee}
img{max-width:100%;border:1px solid #ddd;margin:4px 0}code{font-size:12px}
pre{background:#fff3f3;padding:6px;font-size:11px;white-space:pre-wrap}
.big{font-size:20px;font-weight:600}
"""


def fmt(x: Any) -> str:
    """Format a number the way the page prints it (``n/a`` for missing)."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    try:
        v = float(x)
    except (TypeError, ValueError):
        return html.escape(str(x))
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"


def _e(s: Any) -> str:
    return html.escape(str(s))


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]],
           classes: Sequence[str] | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(
            f"<td>{c if isinstance(c, _Raw) else (fmt(c) if not isinstance(c, str) else _e(c))}"
            "</td>" for c in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


class _Raw(str):
    """Already-escaped HTML inside a table cell."""


def _g(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, Mapping) or p not in d:
            return None
        d = d[p]
    return d


def _checks_table(checks: Sequence[Check]) -> str:
    rows = [(c.product, c.name, c.archive, c.measured, c.target, c.status.upper(), c.detail)
            for c in checks]
    return _table(["product", "check", "archive", "measured", "target", "verdict", "source"],
                  rows, [c.status for c in checks])


def _stages_table(stages: Sequence[Mapping[str, Any]]) -> str:
    rows, cls = [], []
    for s in stages:
        err = s.get("error") or ""
        rows.append((s["name"], s.get("archive", ""), s.get("status", ""),
                     f"{float(s.get('seconds') or 0):.1f}", err))
        cls.append(s.get("status", ""))
    out = _table(["stage", "archive", "status", "seconds", "error"], rows, cls)
    for s in stages:
        if s.get("status") == "failed" and s.get("trace"):
            out += f"<p>Traceback tail of <b>{_e(s['name'])}</b>:</p><pre>{_e(s['trace'])}</pre>"
    return out


def _section_ft(rep: Mapping | None) -> str:
    if not rep:
        return "<p class='missing'>ft-validation.json: missing</p>"
    rows = []
    for src in ("stations", "gridded_truth"):
        for m in ("autoencoder", "npr"):
            o = _g(rep, src, m, "overall")
            if o:
                rows.append((src, m, "overall", o.get("accuracy"), o.get("false_thaw_rate"),
                             o.get("false_freeze_rate"), o.get("n")))
            for grp, d in (_g(rep, src, m, "by_landcover") or {}).items():
                rows.append((src, m, f"land cover: {grp}", d.get("accuracy"),
                             d.get("false_thaw_rate"), d.get("false_freeze_rate"), d.get("n")))
            for grp, d in (_g(rep, src, m, "by_water_fraction") or {}).items():
                rows.append((src, m, f"water fraction {grp}", d.get("accuracy"),
                             d.get("false_thaw_rate"), d.get("false_freeze_rate"), d.get("n")))
    return _table(["truth", "method", "class", "accuracy", "false-thaw rate",
                   "false-freeze rate", "n"], rows)


def _section_retrieval(rep: Mapping | None) -> str:
    if not rep:
        return "<p class='missing'>sm-retrieval.json: missing</p>"
    rows = []
    for key in ("all", "target_vod_le_0.5", "target_vod_le_0.5_holdout"):
        d = rep.get(key)
        if d is None:
            continue
        rows.append((key, d.get("n"), d.get("bias"), d.get("ubrmsd_per_pixel_median"),
                     d.get("ubrmsd_pooled"), d.get("rmsd")))
    for k, d in (rep.get("by_vod") or {}).items():
        rows.append((f"VOD {k}", d.get("n"), d.get("bias"), d.get("ubrmsd_per_pixel_median"),
                     d.get("ubrmsd_pooled"), d.get("rmsd")))
    return _table(["subset", "n", "bias", "ubRMSD per-pixel median", "ubRMSD pooled", "RMSD"],
                  rows) + f"<p>{rep.get('n_retrieved')} retrievals of {rep.get('n_observed')} " \
        "observed pixel-passes; QC flag counts: " + _e(rep.get("flag_counts")) + "</p>"


def _section_calibration(rep: Mapping | None) -> str:
    if not rep:
        return "<p class='missing'>calibration-fit.json: missing</p>"
    rows = []
    for h in rep.get("hops") or []:
        for ch, d in (h.get("channels") or {}).items():
            rows.append((f"{h.get('source')}→{h.get('reference')}", ch,
                         f"{h.get('method')}/{h.get('granularity')}", d.get("pairs"),
                         d.get("median_bias_before_K"), d.get("median_bias_after_K"),
                         d.get("rms_before_K"), d.get("rms_after_K")))
    out = _table(["hop", "channel", "method", "pairs", "median bias before [K]",
                  "median bias after [K]", "RMS before [K]", "RMS after [K]"], rows)
    rec = rep.get("recovery_against_truth") or {}
    if rec:
        out += "<p>Fitted vs injected calibration (same-physics channels):</p>" + _table(
            ["hop:channel", "offset error [K]", "gain error [%]", "fitted drift [K/decade]",
             "expected drift [K/decade]"],
            [(k, v.get("offset_error_K"), v.get("slope_error_pct"),
              v.get("fitted_drift_K_per_decade"), v.get("expected_drift_K_per_decade"))
             for k, v in rec.items()])
    return out


def _section_lstm(train: Mapping | None, val: Mapping | None, fuse: Mapping | None) -> str:
    out = ""
    if train:
        out += (f"<p>LSTM trained on {_e(', '.join(train.get('train_sensors', [])))}: "
                f"{train.get('epochs')} epochs (best {train.get('best_epoch')}), test year "
                f"{train.get('test_year')}, {train.get('holdout_cells')} held-out cells.</p>")
    if not val:
        return out + "<p class='missing'>sm-validation.json: missing</p>"
    rows = []
    vmax = TARGETS["sm_retrieval_vod_max"]
    for s, d in (val.get("against_truth_unseen") or {}).items():
        sm = _g(val, "against_smap_heldout", s) or {}
        st = _g(val, "stations", s) or {}
        net = next(iter(st.values()), {}) if st else {}
        le = _g(val, f"against_truth_unseen_vod_le_{vmax:g}", s) or {}
        gt = _g(val, f"against_truth_unseen_vod_gt_{vmax:g}", s) or {}
        rows.append((s, d.get("n"), d.get("r"), d.get("bias"), d.get("ubrmsd_per_pixel_median"),
                     le.get("ubrmsd_per_pixel_median"), gt.get("ubrmsd_per_pixel_median"),
                     d.get("ubrmsd"), sm.get("ubrmsd"), net.get("median_station_ubrmsd")))
    out += _table(["product", "n (vs truth, unseen)", "R", "bias",
                   "ubRMSD vs truth, per-pixel median", f"… where VOD ≤ {vmax:g}",
                   f"… VOD > {vmax:g}",
                   "ubRMSD vs truth, pooled", "ubRMSD vs SMAP (held out)",
                   "median station ubRMSD"], rows)
    if fuse:
        cov = fuse.get("land_coverage") or {}
        out += _table(["fused land coverage", "value"],
                      [("mean", cov.get("mean")),
                       ("min on days with ≥ 2 sensors", cov.get("min_when_2plus_sensors")),
                       ("days with ≥ 2 sensors", cov.get("days_2plus_sensors")),
                       ("of which below 80 %", cov.get("days_2plus_below_0.8"))])
        hos = fuse.get("handovers") or {}
        vs_truth = val.get("handovers_vs_truth") or {}
        if hos:
            out += _table(["hand-over", "date", "fused mean before", "after", "raw shift",
                           "error vs truth before", "after", "shift vs truth"],
                          [(k, v.get("date"), v.get("mean_before"), v.get("mean_after"),
                            v.get("shift"), _g(vs_truth, k, "mean_before"),
                            _g(vs_truth, k, "mean_after"), _g(vs_truth, k, "shift"))
                           for k, v in hos.items()])
    return out


def _section_carbon(ev: Mapping | None, model: Mapping | None) -> str:
    if not ev:
        return "<p class='missing'>carbon-evaluate.json: missing</p>"
    rows = [(v, d.get("n"), d.get("r"), d.get("bias"), d.get("rmsd"), d.get("ubrmsd"),
             d.get("ubrmsd_detrended")) for v, d in (ev.get("pooled") or {}).items()]
    out = _table(["flux (daily, pooled)", "n", "R", "bias", "RMSE", "ubRMSE",
                  "ubRMSE detrended"], rows)
    if model and model.get("mean_g_c_m2_d"):
        out += _table(["product mean flux", "g C m-2 d-1"], list(model["mean_g_c_m2_d"].items()))
    return out


def render(*, title: str, checks: Sequence[Check], counts: Mapping[str, int],
           stages: Sequence[Mapping[str, Any]], reports: Mapping[str, Mapping[str, Any]],
           roles: Mapping[str, str], figures: Mapping[str, str],
           stage_pngs: Mapping[str, Sequence[str]], products: Mapping[str, Mapping[str, str]],
           summary: Mapping[str, Any]) -> str:
    """The whole page.

    Args:
      figures: ``{figure key: relative PNG path}`` of the report's own figures.
      stage_pngs: ``{archive: [relative PNG paths]}`` copied from the stages' reports.
    """
    def rep(role: str, name: str):
        return reports.get(roles.get(role, ""), {}).get(name)

    def fig(key: str) -> str:
        return f'<p><img src="{_e(figures[key])}" alt="{_e(key)}"></p>' if key in figures else ""

    failed = [s["name"] for s in stages if s.get("status") == "failed"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>"]
    parts.append(f"<p class='big'>targets: <span class='pass'>{counts.get('pass', 0)} pass"
                 f"</span> · <span class='fail'>{counts.get('fail', 0)} fail</span> · "
                 f"<span class='missing'>{counts.get('missing', 0)} missing</span>; stages "
                 f"failed: <span class='{'fail' if failed else 'pass'}'>"
                 f"{_e(', '.join(failed) or 'none')}</span></p>")
    parts.append(f"<p>root <code>{_e(summary.get('root'))}</code>, preset "
                 f"<code>{_e(_g(summary, 'settings', 'preset'))}</code>, total "
                 f"{fmt(summary.get('total_seconds'))} s.</p>")
    parts.append("<h2>Targets</h2>" + _checks_table(checks))
    parts.append("<h2>Stages</h2>" + _stages_table(stages) + fig("stage_times"))
    parts.append("<h2>Freeze/thaw (autoencoder vs NPR)</h2>" + fig("ft_accuracy") +
                 _section_ft(rep("ft", "ft-validation.json")))
    parts.append("<h2>Cross-calibration</h2>" + fig("calibration_bias") +
                 _section_calibration(rep("calibration", "calibration-fit.json")))
    parts.append("<h2>SMAP soil-moisture retrieval</h2>" + fig("retrieval_by_vod") +
                 _section_retrieval(rep("retrieval", "sm-retrieval.json")))
    parts.append("<h2>LSTM harmonisation and fusion</h2>" + fig("lstm_ubrmsd") +
                 fig("coverage_series") +
                 _section_lstm(rep("lstm", "sm-train.json"), rep("lstm", "sm-validation.json"),
                               rep("lstm", "sm-fuse.json")))
    parts.append("<h2>Carbon (TCF vs towers)</h2>" + fig("carbon_sites") +
                 _section_carbon(rep("carbon", "carbon-evaluate.json"),
                                 rep("carbon", "carbon-model.json")))
    rows = [(a, pid, _Raw(f"<code>{_e(u)}</code>")) for a, ps in products.items()
            for pid, u in sorted(ps.items())]
    parts.append("<h2>Products</h2><p>Open any of them with <code>xarray.open_zarr(url)</code>."
                 "</p>" + _table(["archive", "product", "current version URL"], rows))
    pngs = [(a, p) for a, ps in stage_pngs.items() for p in ps]
    if pngs:
        parts.append("<h2>Figures written by the stages</h2>")
        for a, p in pngs:
            parts.append(f"<p><b>{_e(a)}</b>: {_e(p.rsplit('/', 1)[-1])}<br>"
                         f"<img src='{_e(p)}' alt='{_e(p)}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts)
