"""``tbcube carbon model|evaluate|aggregate|towers``: L4C-like carbon fluxes and evaluation."""

from __future__ import annotations

import os
from pathlib import Path

import click

from pipeline.cli._common import echo_progress, print_url, root_option

_GRID = click.option("--grid", "grid_name", default="N36", show_default=True,
                     help="Grid of the archive's truth/static stores (and of the product id).")


def _default_bplut() -> str:
    if os.environ.get("TBCUBE_BPLUT"):
        return os.environ["TBCUBE_BPLUT"]
    real = os.environ.get("TBCUBE_REAL_DATA",
                          str(Path(__file__).resolve().parents[2].parent / "shared/data/real"))
    return str(Path(real) / "pyl4c_bplut" / "SMAP_BPLUT_2020-07-31.csv")


_BPLUT = click.option("--bplut", default=None, metavar="PATH",
                      help="L4C BPLUT CSV (default $TBCUBE_BPLUT or "
                      "$TBCUBE_REAL_DATA/pyl4c_bplut/SMAP_BPLUT_2020-07-31.csv).")


@click.group("carbon")
def carbon() -> None:
    """SMAP L4C-like carbon fluxes (TCF model) and their evaluation against towers.

    \b
    tbcube carbon model     --root URL --grid N36   # publish carbon-l4c-n36-v1
    tbcube carbon evaluate  --root URL --grid N36   # score it against {root}/towers/
    tbcube carbon aggregate --root URL --grid N36   # annual budgets by latitude/PFT/region
    tbcube carbon towers    --real-data DIR --out DIR   # TCF at real FLUXNET towers
    """


@carbon.command("model")
@root_option
@_GRID
@_BPLUT
@click.option("--publish/--no-publish", default=True, show_default=True,
              help="Publish as an immutable product version (else write an unpublished store).")
def model_cmd(root: str, grid_name: str, bplut: str | None, publish: bool) -> None:
    """Run TCF over the archive's truth drivers; writes {root}/reports/carbon-model.json."""
    from pipeline.graphs import carbon as graph

    report = graph.model_root(root, grid_name, bplut or _default_bplut(), publish=publish,
                              progress=echo_progress)
    echo_progress(f"product {report['product_id']}: mean fluxes {report['mean_g_c_m2_d']}")
    print_url(report["url"])


@carbon.command("evaluate")
@root_option
@_GRID
@click.option("--towers", "collection", default=None,
              help="Tower collection {root}/towers/{name}.zarr (default: the archive's only "
                   "one; 'simflux' among several).")
@click.option("--min-qc", default=0.8, show_default=True, type=float,
              help="Keep tower days with at least this fraction of good half-hours.")
def evaluate_cmd(root: str, grid_name: str, collection: str | None, min_qc: float) -> None:
    """Score the current carbon product against towers (CSV, JSON, figures under reports/)."""
    from pipeline.graphs import carbon as graph

    s = graph.evaluate_root(root, grid_name, collection=collection, min_qc=min_qc,
                            progress=echo_progress)
    nee = s["pooled"].get("nee", {})
    echo_progress(f"pooled daily NEE: n={nee.get('n')} R={nee.get('r'):.2f} "
                  f"ubRMSE={nee.get('ubrmsd'):.2f} (target ≤ {s['nee_ubrmse_target_g_c_m2_d']})")
    print_url(f"{root.rstrip('/')}/reports/carbon-evaluate.json")


@carbon.command("aggregate")
@root_option
@_GRID
def aggregate_cmd(root: str, grid_name: str) -> None:
    """Area-weighted annual NEE/GPP/RECO budgets by latitude band, PFT and the ≥50°N region."""
    from pipeline.graphs import carbon as graph

    graph.aggregate_root(root, grid_name)
    print_url(f"{root.rstrip('/')}/reports/carbon-aggregate.json")


@carbon.command("towers")
@click.option("--real-data", required=True, metavar="DIR",
              help="The real-data directory (fluxnet2015_zarr_subset, fluxdatakit, pyl4c_bplut).")
@click.option("--out", required=True, metavar="DIR", help="Output directory or URL.")
@click.option("--sites", default=None, help="Comma-separated FLUXNET ids (default Arctic/boreal).")
@_BPLUT
@click.option("--min-qc", default=0.8, show_default=True, type=float)
def towers_cmd(real_data: str, out: str, sites: str | None, bplut: str | None,
               min_qc: float) -> None:
    """TCF driven by real tower meteorology, evaluated per site (CSV + JSON + PNG)."""
    from pipeline.graphs import carbon as graph

    kw = {"sites": tuple(s.strip() for s in sites.split(","))} if sites else {}
    s = graph.real_towers(real_data, out, bplut_url=bplut, min_qc=min_qc,
                          progress=echo_progress, **kw)
    for v, m in s["pooled"].items():
        echo_progress(f"pooled daily {v}: n={m['n']} R={m['r']:.2f} bias={m['bias']:.2f} "
                      f"RMSE={m['rmsd']:.2f} ubRMSE={m['ubrmsd']:.2f} "
                      f"(detrended {m['ubrmsd_detrended']:.2f}) g C m-2 d-1")
    print_url(f"{out.rstrip('/')}/evaluation.json")
