"""The demo report (pass/fail against targets, numbers shown as in the JSON) and `tbcube demo`.

Unit tests build reports from synthetic JSON reports with values on both sides of every target;
the end-to-end test runs `tbcube demo --preset tiny` on a copy of the session's tiny archive and
checks the page against the JSON reports the stages wrote and the product URLs against
``xr.open_zarr``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pipeline.graphs import demo as _demo  # noqa: F401 — imported before CliRunner swaps stderr
from pipeline.report import html as report_html
from pipeline.report import targets


def _ft(npr: float, ae: float) -> dict:
    def score(a):
        return {"n": 1000, "accuracy": a, "false_thaw_rate": 0.05, "false_freeze_rate": 0.1}

    return {"stations": {"npr": {"overall": score(npr), "by_landcover": {"forest": score(npr)}},
                         "autoencoder": {"overall": score(ae),
                                         "by_landcover": {"forest": score(ae)}}}}


def _retrieval(ub: float, bias: float) -> dict:
    t = {"n": 500, "bias": bias, "ubrmsd_pooled": ub + 0.002, "ubrmsd_per_pixel_median": ub,
         "rmsd": 0.05}
    return {"target_vod_le_0.5": t, "all": t, "n_observed": 10, "n_retrieved": 9,
            "by_vod": {"0-0.25": t, "0.25-0.5": t, "0.5-0.8": {**t, "ubrmsd_per_pixel_median":
                                                               0.06}}}


def _cal(after: float, off_err: float, gain_err: float) -> dict:
    ch = {"pairs": 100, "median_bias_before_K": 3.2, "median_bias_after_K": after,
          "rms_before_K": 4.0, "rms_after_K": 1.1}
    return {"hops": [{"source": "amsr2", "reference": "gmi", "method": "linear",
                      "granularity": "global", "channels": {"10.65H": ch, "36.5V": {
                          **ch, "median_bias_after_K": 0.01}}}],
            "recovery_against_truth": {"amsr2->gmi:36.5V": {
                "offset_error_K": off_err, "slope_error_pct": gain_err,
                "fitted_drift_K_per_decade": 0.0, "expected_drift_K_per_decade": 0.0}}}


def _val(sensor_ub: dict, fused: float) -> dict:
    d = {s: {"n": 50, "r": 0.8, "bias": 0.0, "ubrmsd": v} for s, v in sensor_ub.items()}
    d["fused"] = {"n": 50, "r": 0.9, "bias": 0.0, "ubrmsd": fused}
    return {"against_truth_unseen": d, "against_smap_heldout": {}}


def _fuse(cov: float, shift: float) -> dict:
    return {"land_coverage": {"mean": 0.9, "min_when_2plus_sensors": cov,
                              "days_2plus_sensors": 300, "days_2plus_below_0.8": 0},
            "handovers": {"amsre->amsr2": {"date": "2012-07-01", "mean_before": 0.2,
                                           "mean_after": 0.2 + shift, "shift": shift}}}


def _carbon(ub: float) -> dict:
    return {"pooled": {"nee": {"n": 900, "r": 0.7, "bias": 0.1, "rmsd": 1.3, "ubrmsd": ub,
                               "ubrmsd_detrended": ub - 0.1}}}


GOOD = {"ft-validation.json": _ft(0.80, 0.89), "sm-retrieval.json": _retrieval(0.025, -0.004),
        "calibration-fit.json": _cal(-0.2, 0.1, 0.4),
        "sm-validation.json": _val({"amsr2": 0.035, "gmi": 0.031}, 0.028),
        "sm-fuse.json": _fuse(0.85, 0.004), "carbon-evaluate.json": _carbon(1.2)}
BAD = {"ft-validation.json": _ft(0.95, 0.96), "sm-retrieval.json": _retrieval(0.045, 0.02),
       "calibration-fit.json": _cal(0.8, 0.5, 1.5),
       "sm-validation.json": _val({"amsr2": 0.05, "gmi": 0.031}, 0.033),
       "sm-fuse.json": _fuse(0.6, 0.02), "carbon-evaluate.json": _carbon(2.1)}
ROLES = dict.fromkeys(("ft", "carbon", "calibration", "retrieval", "lstm"), "a")


def test_targets_pass_when_every_number_meets_its_target():
    checks = targets.check_all({"a": GOOD}, ROLES)
    assert {c.status for c in checks} == {"pass"}, [c for c in checks if c.status != "pass"]
    by = {c.name: c for c in checks}
    assert by["autoencoder accuracy"].measured == 0.89
    assert by["worst |median residual bias|"].measured == pytest.approx(0.2)
    assert by["fused ubRMSD vs truth (unseen)"].measured == 0.028


def test_targets_fail_on_the_wrong_side_of_every_target():
    checks = targets.check_all({"a": BAD}, ROLES)
    by = {c.name: c.status for c in checks}
    # NPR 95 % is outside 75–90 %; AE 96 % < 95 % + 8 pp.
    assert by["NPR baseline accuracy"] == by["autoencoder accuracy"] == "fail"
    assert by["ubRMSD where VOD ≤ 0.5"] == by["|bias| where VOD ≤ 0.5"] == "fail"
    assert by["worst |median residual bias|"] == "fail"
    assert by["worst |offset error| vs injected"] == by["worst |gain error| vs injected"] == "fail"
    assert by["amsr2 ubRMSD vs truth (unseen)"] == "fail"
    assert by["gmi ubRMSD vs truth (unseen)"] == "pass"          # 0.031 ≤ 0.04
    assert by["fused ubRMSD vs truth (unseen)"] == "fail"        # 0.033 > best sensor 0.031
    assert by["min land coverage on days with ≥ 2 sensors"] == "fail"
    assert by["worst |hand-over shift|"] == "fail"
    assert by["pooled daily NEE ubRMSE vs towers"] == "fail"


def test_coverage_check_says_how_much_of_the_shortfall_is_unobserved_land():
    fuse = _fuse(0.16, 0.0)
    fuse["land_coverage_thawed"] = {"mean": 0.96, "days_2plus_below_0.8": 63,
                                    "unobserved_share": 0.037,
                                    "of_observed": {"mean": 0.997, "min_when_2plus_sensors": 0.88}}
    reports = {**GOOD, "sm-fuse.json": fuse}
    c = {c.name: c for c in targets.check_all({"a": reports}, ROLES)}[
        "min land coverage on days with ≥ 2 sensors"]
    assert c.status == "fail" and c.measured == 0.16          # the target counts all land
    assert "thawed land: mean 0.96, 63 days" in c.detail
    assert "unobserved (swath gaps) 0.037" in c.detail and "min 0.88" in c.detail
    plain = {c.name: c for c in targets.check_all({"a": GOOD}, ROLES)}[
        "min land coverage on days with ≥ 2 sensors"]
    assert "thawed" not in plain.detail


def test_lstm_checks_prefer_per_pixel_ubrmsd_and_truth_referenced_handovers():
    val = _val({"amsr2": 0.08, "gmi": 0.08}, 0.07)
    val["against_truth_unseen"]["amsr2"]["ubrmsd_per_pixel_median"] = 0.035
    val["against_truth_unseen"]["fused"]["ubrmsd_per_pixel_median"] = 0.03
    val["handovers_vs_truth"] = {"amsre->amsr2": {"date": "2012-07-01", "shift": -0.004}}
    by = {c.name: c for c in targets.check_all(
        {"a": {"sm-validation.json": val, "sm-fuse.json": _fuse(0.85, 0.03)}}, ROLES)}
    amsr2 = by["amsr2 ubRMSD vs truth (unseen)"]
    assert (amsr2.measured, amsr2.status) == (0.035, "pass")
    assert "ubrmsd_per_pixel_median" in amsr2.detail
    gmi = by["gmi ubRMSD vs truth (unseen)"]               # no per-pixel number: pooled
    assert (gmi.measured, gmi.status) == (0.08, "fail") and "pooled" in gmi.detail
    assert by["fused ubRMSD vs truth (unseen)"].status == "pass"   # 0.03 < best 0.035
    ho = by["worst |hand-over shift|"]                       # truth-referenced 0.004, not 0.03
    assert (ho.measured, ho.status) == (0.004, "pass") and "vs_truth" in ho.detail


def test_lstm_checks_add_the_smap_class_vod_domain_beside_all_land():
    """All land stays a verdict of its own; the VOD ≤ 0.5 row quotes the dense-canopy side."""
    val = _val({"amsre": 0.0401, "gmi": 0.031}, 0.028)
    val["against_truth_unseen_vod_le_0.5"] = {"amsre": {"n": 900, "ubrmsd": 0.05,
                                                        "ubrmsd_per_pixel_median": 0.0323}}
    val["against_truth_unseen_vod_gt_0.5"] = {"amsre": {"n": 90, "ubrmsd_per_pixel_median": 0.062}}
    by = {c.name: c for c in targets.check_all({"a": {"sm-validation.json": val}}, ROLES)}
    assert by["amsre ubRMSD vs truth (unseen)"].status == "fail"          # 0.0401 > 0.04
    sparse = by["amsre ubRMSD vs truth (unseen, VOD ≤ 0.5)"]
    assert (sparse.measured, sparse.status) == (0.0323, "pass")
    assert "n=900" in sparse.detail and "VOD > 0.5: 0.0620" in sparse.detail
    assert "gmi ubRMSD vs truth (unseen, VOD ≤ 0.5)" not in by           # not reported: no row
    # the report reads the keys validation writes: one bound on both sides
    from pipeline.graphs import harmonise

    assert harmonise.SMAP_CLASS_VOD_MAX == targets.TARGETS["sm_retrieval_vod_max"]


def test_target_edges_and_missing_reports():
    # Exactly at the limits: ≤ targets pass, strict < targets fail.
    edge = {"sm-retrieval.json": _retrieval(0.03, 0.01), "carbon-evaluate.json": _carbon(1.6),
            "calibration-fit.json": _cal(0.5, 0.3, 1.0)}
    by = {c.name: c for c in targets.check_all({"a": edge}, ROLES)}
    assert by["ubRMSD where VOD ≤ 0.5"].status == "pass"
    assert by["pooled daily NEE ubRMSE vs towers"].status == "pass"
    assert by["worst |median residual bias|"].status == "fail"   # < 0.5 K is strict
    assert by["worst |offset error| vs injected"].status == "pass"
    # Missing reports are "missing", never pass.
    assert by["NPR baseline accuracy"].status == "missing"
    assert by["NPR baseline accuracy"].measured is None
    assert targets.status_of(targets.check_all({}, ROLES))["pass"] == 0


def _write_archive(root: Path, reports: dict) -> None:
    d = root / "reports"
    d.mkdir(parents=True)
    for name, doc in reports.items():
        (d / name).write_text(json.dumps(doc))
    (d / "broken.json").write_text("{not json")


def test_report_builder_shows_measured_numbers_and_verdicts(tmp_path):
    from pipeline import report

    _write_archive(tmp_path / "good", GOOD)
    _write_archive(tmp_path / "bad", BAD)
    stages = [{"name": "ft", "archive": "good", "status": "ok", "seconds": 12.5},
              {"name": "carbon", "archive": "bad", "status": "failed", "seconds": 1.0,
               "error": "StoreNotFound: /x/bplut.csv: not found", "trace": "Traceback …"}]
    roles = {"ft": "good", "retrieval": "good", "calibration": "bad", "lstm": "bad",
             "carbon": "good"}
    out = report.build(str(tmp_path), {"good": str(tmp_path / "good"),
                                       "bad": str(tmp_path / "bad")}, roles, stages,
                       {"root": str(tmp_path), "products": {}})
    page = Path(out["index"]).read_text()
    summary = json.loads(Path(out["summary"]).read_text())
    assert out["counts"] == summary["counts"]
    st = {c["name"]: c["status"] for c in summary["checks"]}
    assert st["autoencoder accuracy"] == "pass" and st["worst |median residual bias|"] == "fail"
    assert st["pooled daily NEE ubRMSE vs towers"] == "pass"
    # The page shows each measured number exactly as formatted, with its verdict class.
    for c in summary["checks"]:
        if c["measured"] is not None:
            cell = f"<td>{report_html.fmt(c['measured'])}</td>"
            assert cell in page, (c["name"], cell)
    assert "<td>0.8900</td>" in page and "<td>2.10</td>" not in page   # good carbon used
    assert page.count('class="fail"') >= out["counts"]["fail"]
    assert 'class="failed"' in page and "StoreNotFound: /x/bplut.csv" in page
    # Figures exist as PNGs and are linked.
    for key in ("ft_accuracy", "calibration_bias", "retrieval_by_vod", "lstm_ubrmsd",
                "stage_times"):
        png = tmp_path / "report" / f"{key}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and f'src="{key}.png"' in page


def test_fmt_is_consistent():
    assert report_html.fmt(0.123456) == "0.1235"
    assert report_html.fmt(12.3456) == "12.35"
    assert report_html.fmt(None) == "n/a" and report_html.fmt(float("nan")) == "n/a"
    assert report_html.fmt(7) == "7"


def test_demo_settings_reject_unknown_stage():
    from pipeline import errors
    from pipeline.graphs import demo

    with pytest.raises(errors.ConfigError, match="unknown stage"):
        demo.DemoSettings(skip=("nope",))


def _run_cli(args: list[str]):
    from click.testing import CliRunner

    from pipeline.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_failed_stage_is_reported_and_exit_code_is_nonzero(sim_tiny, tmp_path):
    """A stage that fails is red in the report, later stages still run, exit code 1."""
    root = tmp_path / "demo"
    shutil.copytree(sim_tiny, root)
    skip = ["--skip", "calibrate", "--skip", "ft", "--skip", "sm-retrieval",
            "--skip", "sm-lstm"]
    res = _run_cli(["demo", "--root", str(root), "--preset", "tiny", "--no-cluster",
                    "--bplut", str(tmp_path / "missing-bplut.csv"), *skip])
    assert res.exit_code == 1
    summary = json.loads((root / "report" / "demo.json").read_text())
    st = {s["name"]: s for s in summary["stages"]}
    assert st["simulate"]["status"] == "cached"
    assert st["carbon"]["status"] == "failed" and "missing-bplut.csv" in st["carbon"]["error"]
    assert st["sm-lstm"]["status"] == "skipped" and st["validation"]["status"] == "ok"
    page = (root / "report" / "index.html").read_text()
    assert 'class="failed"' in page and "missing-bplut.csv" in page
    assert res.stdout.strip().splitlines()[-1].endswith("index.html")


@pytest.mark.slow
def test_tbcube_demo_tiny_end_to_end(sim_tiny, tmp_path):
    """`tbcube demo --preset tiny`: report numbers = JSON numbers; product URLs open."""
    import xarray as xr

    root = tmp_path / "demo"
    shutil.copytree(sim_tiny, root)        # the simulate stage is then "cached"
    res = _run_cli(["demo", "--root", str(root), "--preset", "tiny", "--no-cluster",
                    "--ft-epochs", "1", "--lstm-epochs", "1"])
    summary = json.loads((root / "report" / "demo.json").read_text())
    assert res.exit_code == 0, [(s["name"], s["error"]) for s in summary["stages"]]
    lines = res.stdout.strip().splitlines()
    index = next(i for i, ln in enumerate(lines) if ln.endswith("index.html"))
    urls = lines[index + 1:]
    assert Path(lines[index]).is_file()
    assert {u.split("/products/")[1].split("/")[0] for u in urls} >= {
        "ft-smap-m36-v1", "sm-smap-m36-v1", "sm-fused-m36-v1", "carbon-l4c-m36-v1"}
    for u in urls:
        ds = xr.open_zarr(u)
        assert ds.sizes and len(ds.data_vars) > 0
    page = Path(lines[index]).read_text()
    rep = root / "reports"
    ft = json.loads((rep / "ft-validation.json").read_text())
    for m in ("autoencoder", "npr"):
        acc = ft["stations"][m]["overall"]["accuracy"]
        assert f"<td>{report_html.fmt(acc)}</td>" in page
    ret = json.loads((rep / "sm-retrieval.json").read_text())["target_vod_le_0.5"]
    assert f"<td>{report_html.fmt(ret['bias'])}</td>" in page
    val = json.loads((rep / "sm-validation.json").read_text())["against_truth_unseen"]
    for s, d in val.items():
        assert f"<td>{report_html.fmt(d['ubrmsd'])}</td>" in page, s
    nee = json.loads((rep / "carbon-evaluate.json").read_text())["pooled"]["nee"]
    assert f"<td>{report_html.fmt(nee['ubrmsd'])}</td>" in page
    cal = json.loads((rep / "calibration-fit.json").read_text())
    for hop in cal["hops"]:
        for d in hop["channels"].values():
            assert f"<td>{report_html.fmt(d['median_bias_after_K'])}</td>" in page
    # Verdicts in summary.json agree with the numbers.
    checks = json.loads((root / "report" / "summary.json").read_text())["checks"]
    npr = next(c for c in checks if c["name"] == "NPR baseline accuracy")
    assert npr["measured"] == ft["stations"]["npr"]["overall"]["accuracy"]
    assert npr["status"] == ("pass" if 0.75 <= npr["measured"] <= 0.90 else "fail")
    assert re.search(r"stage_times\.png", page)


def test_retrieval_check_uses_the_holdout_and_fusion_the_common_support():
    """With a station-tuned retrieval the verdict is the holdout's (cells/years never tuned on);
    fused vs sensor is judged on the pixel-days both cover (TMI only sees ±38°)."""
    ret = _retrieval(0.025, -0.004)
    ret["target_vod_le_0.5_holdout"] = {"n": 40, "bias": 0.015,
                                        "ubrmsd_per_pixel_median": 0.027, "ubrmsd_pooled": 0.03}
    val = _val({"tmi": 0.031, "gmi": 0.045}, 0.04)        # fused overall worse than TMI's own
    val["fused_vs_sensor_common_support"] = {
        "tmi": {"sensor": {"ubrmsd_per_pixel_median": 0.031},
                "fused": {"ubrmsd_per_pixel_median": 0.029}},
        "gmi": {"sensor": {"ubrmsd_per_pixel_median": 0.045},
                "fused": {"ubrmsd_per_pixel_median": 0.041}}}
    by = {c.name: c for c in targets.check_all(
        {"a": {"sm-retrieval.json": ret, "sm-validation.json": val}}, ROLES)}
    bias = by["|bias| where VOD ≤ 0.5"]
    assert (bias.measured, bias.status) == (0.015, "fail") and "holdout" in bias.detail
    assert by["ubRMSD where VOD ≤ 0.5"].measured == 0.027
    fus = by["fused − sensor ubRMSD on common pixel-days (worst sensor)"]
    assert fus.status == "pass" and fus.measured == pytest.approx(-0.002) and "tmi" in fus.detail
    val["fused_vs_sensor_common_support"]["gmi"]["fused"]["ubrmsd_per_pixel_median"] = 0.046
    by = {c.name: c for c in targets.check_all({"a": {"sm-validation.json": val}}, ROLES)}
    fus = by["fused − sensor ubRMSD on common pixel-days (worst sensor)"]
    assert fus.status == "fail" and "gmi" in fus.detail


def test_handover_check_shows_the_same_date_in_other_years():
    """The verdict is the shift's; the detail gives the diagnostic's spread without a hand-over."""
    val = _val({"gmi": 0.03}, 0.02)
    val["handovers_vs_truth"] = {
        "gmi-start-2014-03": {"date": "2014-03-04", "shift": -0.0104,
                              "same_date_other_years": {"n": 8, "median": -0.0045,
                                                        "min": -0.0112, "max": 0.0027}},
        "amsr2-start-2012-07": {"date": "2012-07-02", "shift": 0.0013}}
    by = {c.name: c for c in targets.check_all({"a": {"sm-validation.json": val}}, ROLES)}
    ho = by["worst |hand-over shift|"]
    assert (ho.measured, ho.status) == (0.0104, "fail")
    assert "worst gmi-start-2014-03; same date in 8 other years: -0.0112..+0.0027" in ho.detail
