"""Carbon graphs: the TCF model over archives and towers, evaluation reports, global aggregation.

Composes :mod:`pipeline.carbon` stages with the TCF model (:mod:`models.l4c`) and the I/O layer.
The TCF model has no learned weights — its parameters are the small BPLUT table — so it is
applied here directly with ``xr.apply_ufunc(dask="parallelized")`` (time in one chunk, any
chunking in space); the kernel lives in this importable module and receives the table as a tiny
tuple, never arrays or jitted functions.

Example::

    tbcube carbon model --root s3://bucket/alaska-n36 --grid N36 --bplut SMAP_BPLUT_2020-07-31.csv
    tbcube carbon towers --real-data ../shared/data/real --out reports/carbon-real
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from models import l4c
from pipeline import carbon, dims, grid
from pipeline.io import stores

__all__ = [
    "ARCTIC_SITES",
    "aggregate_product",
    "model_archive",
    "model_at_towers",
    "run_tcf",
    "tower_evaluation",
    "write_tower_report",
]

# Arctic/boreal FLUXNET2015 sites evaluated by ``tbcube carbon towers`` when present.
ARCTIC_SITES = ("US-Prr", "US-Atq", "US-Ivo", "RU-Cok", "RU-Che", "FI-Sod", "FI-Hyy", "FI-Lom",
                "CA-Man", "CA-NS3", "GL-ZaH", "SJ-Adv")
DRIVER_ORDER = ("fpar", "par", "tmin", "vpd", "smrz", "ft", "tsoil", "smsf")
OUTPUTS = ("gpp", "ra", "rh", "nee")
PAD_MIN = 64  # smallest padded pixel batch of the TCF kernel (one XLA compile for small blocks)


def _table_tuple(table: Mapping[str, np.ndarray]) -> tuple:
    return tuple((k, tuple(float(x) for x in np.asarray(table[k], np.float64)))
                 for k in l4c.PARAM_NAMES)


def _clim365(a: np.ndarray, ordinal: np.ndarray) -> np.ndarray:
    """365-day climatology [N, 365] (nanmean per day of year; gaps filled by the pixel mean)."""
    onehot = (ordinal[:, None] == np.arange(1, 366)[None, :]).astype(np.float64)
    ok = np.isfinite(a)
    s = np.where(ok, a, 0.0) @ onehot
    n = ok.astype(np.float64) @ onehot
    have = n > 0
    clim = np.where(have, s / np.where(have, n, 1.0), np.nan)
    k = have.sum(axis=-1, keepdims=True)
    fill = np.where(k > 0, np.where(have, clim, 0.0).sum(-1, keepdims=True) / np.maximum(k, 1),
                    np.nan)
    return np.where(have, clim, fill).astype(np.float32)


def _tcf_block(*arrays, ordinal, table, threshold, max_cycles):
    """Kernel: spin up on the drivers' climatology, then run over the record (numpy in/out)."""
    import warnings

    *drv, pft, smrz_min = arrays
    t_len = drv[0].shape[-1]
    lead = drv[0].shape[:-1]
    n = int(np.prod(lead, dtype=np.int64))
    # Pad the pixel axis to a power of two (≥ PAD_MIN) so that XLA compiles once per record length,
    # not once per block shape (architecture.md §5 rule 6); padded rows have PFT 0 (no model).
    size = max(PAD_MIN, 1 << max(n - 1, 0).bit_length())
    flat = [np.full((size, t_len), np.nan, np.float32) for _ in drv]
    for f_, a in zip(flat, drv, strict=True):
        f_[:n] = np.asarray(a, np.float32).reshape(-1, t_len)
    pft_f = np.zeros(size, np.int64)
    pft_f[:n] = np.asarray(pft).reshape(-1)
    smin = np.zeros(size, np.float32)
    smin[:n] = np.asarray(smrz_min, np.float32).reshape(-1)
    params = l4c.params_for_pft(dict((k, np.asarray(v)) for k, v in table), pft_f)
    d = l4c.Drivers(*flat)
    ordinal = np.asarray(ordinal)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        clim = l4c.Drivers(*[_clim365(a, ordinal) for a in flat])
        g = np.asarray(l4c.gpp(params, d, smin))
        npp = params.cue[:, None] * g
        litter = np.asarray(l4c.litterfall(npp, ordinal), np.float32)
        litter = np.where(np.isfinite(litter), litter, 0.0).astype(np.float32)
        soc, _, _ = l4c.spin_up(params, clim, litter, threshold=threshold,
                                max_cycles=max_cycles, smrz_min=smin)
        f = l4c.run(params, d, soc, litter, smin)
    out = [np.asarray(f.gpp), np.asarray(f.ra), np.asarray(f.rh).sum(0), np.asarray(f.nee)]
    return tuple(o[:n].reshape(*lead, t_len).astype(np.float32) for o in out)


def run_tcf(drivers: xr.Dataset, pft: xr.DataArray, table: Mapping[str, np.ndarray], *,
            threshold: float = 1.0, max_cycles: int = 3000) -> xr.Dataset:
    """Run TCF on a drivers Dataset (from :func:`pipeline.carbon.tcf_drivers`), lazily if dask.

    Each site/cell is spun up on its own 365-day driver climatology (analytical steady state,
    then cycles until |Δ annual NEE| < ``threshold`` g C m-2 yr-1) with litterfall = mean annual
    NPP / 365, then run over the record.

    Args:
      drivers: ``fpar par tmin vpd smrz ft tsoil smsf`` (…, time) and ``smrz_min`` (…).
      pft: L4C PFT (…), broadcastable to the drivers without time.
      table: BPLUT parameters (``pipeline.io.bplut.Bplut.table``).

    Returns:
      Dataset ``gpp``, ``ra``, ``rh``, ``nee``, ``reco`` (…, time) [g C m-2 d-1], float32.
    """
    time = drivers[dims.TIME]
    t = pd.DatetimeIndex(time.values)
    ordinal = l4c.ordinals365(t.day_of_year.values, t.year.values)
    if any(v.chunks is not None for v in drivers.data_vars.values()):
        # Time in one chunk (the model runs along it); space chunks unified across variables.
        drivers = stores.chunk_variables(drivers, {dims.TIME: -1}).unify_chunks()
        if pft.chunks is None:
            pft = stores.chunk_variables(
                pft, {d: drivers.chunksizes[d] for d in pft.dims if d in drivers.chunksizes})
    args = [drivers[k] for k in DRIVER_ORDER] + [pft, drivers["smrz_min"]]
    outs = xr.apply_ufunc(
        _tcf_block, *args,
        input_core_dims=[[dims.TIME]] * len(DRIVER_ORDER) + [[], []],
        output_core_dims=[[dims.TIME]] * len(OUTPUTS),
        dask="parallelized",
        output_dtypes=[np.float32] * len(OUTPUTS),
        kwargs={"ordinal": tuple(int(o) for o in ordinal), "table": _table_tuple(table),
                "threshold": float(threshold), "max_cycles": int(max_cycles)},
    )
    ds = xr.Dataset(dict(zip(OUTPUTS, outs, strict=True)))
    ds["reco"] = ds["ra"] + ds["rh"]
    names = {"gpp": "gross primary production", "ra": "autotrophic respiration",
             "rh": "heterotrophic respiration", "nee": "net ecosystem CO2 exchange (+ source)",
             "reco": "ecosystem respiration RA + RH"}
    for k, v in names.items():
        ds[k].attrs = {"units": carbon.FLUX_UNITS, "long_name": v}
    return ds.transpose(*drivers["fpar"].dims)


# --- towers -----------------------------------------------------------------------------------
def model_at_towers(towers: xr.Dataset, table: Mapping[str, np.ndarray], **kw) -> xr.Dataset:
    """TCF driven by each tower's own meteorology (fPAR from the thermal-phenology climatology)."""
    drv = carbon.tcf_drivers(towers, towers["pft"])
    return run_tcf(drv, towers["pft"], table, **kw)


def tower_evaluation(model: xr.Dataset, towers: xr.Dataset, *, ft: xr.DataArray | None = None,
                     min_qc: float = 0.8, min_valid: float = 0.8) -> dict[str, xr.Dataset]:
    """All evaluation tables: per-site, pooled groups, budgets, residual–moisture correlation."""
    seasons = carbon.season_labels(towers, ft)
    out = {
        "sites": carbon.evaluate(model, towers, min_qc=min_qc, seasons=seasons),
        "groups": carbon.group_metrics(model, towers, min_qc=min_qc, seasons=seasons),
        "budgets": carbon.budgets(model, towers, min_valid=min_valid, seasons=seasons),
        "seasons": seasons,
    }
    out["site_groups"] = carbon.aggregate_site_scores(out["sites"], towers)
    moisture = towers["swc"] if "swc" in towers else None
    if moisture is not None:
        out["moisture"] = carbon.residual_moisture_correlation(model, towers, moisture,
                                                               min_qc=min_qc)
    return out


def _site_table(sites: xr.Dataset) -> pd.DataFrame:
    rows = []
    for s in sites[dims.SITE].values:
        one = sites.sel({dims.SITE: s})
        base = {"site": str(s), "igbp": str(one["igbp"].values) if "igbp" in one.coords else "",
                "pft": carbon.PFT_LABELS.get(int(one["pft"]), "none") if "pft" in one.coords
                else "", "lat": float(one[dims.LAT]) if dims.LAT in one.coords else np.nan}
        for v in [k for k in sites.data_vars]:
            var, _, season = v.partition("_")
            row = dict(base, variable=var, season=season or "all")
            row.update({m: float(one[v].sel({dims.METRIC: m})) for m in one[dims.METRIC].values})
            row["n"] = int(row["n"])
            rows.append(row)
    return pd.DataFrame(rows)


def _group_table(groups: xr.Dataset) -> pd.DataFrame:
    rows = []
    for v in groups.data_vars:
        for g in groups["group"].values:
            for s in groups["season"].values:
                one = groups[v].sel(group=g, season=s)
                row = {"group": str(g), "season": str(s), "variable": v}
                row.update({m: float(one.sel({dims.METRIC: m})) for m in one[dims.METRIC].values})
                row["n"] = int(row["n"])
                rows.append(row)
    return pd.DataFrame(rows)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _figures(model, towers, tables, min_qc) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obs = carbon.qc_filter(towers, min_qc).transpose(dims.SITE, dims.TIME)
    model, obs = xr.align(model.transpose(dims.SITE, dims.TIME), obs, join="inner")
    figs = {}
    pfts = sorted({int(p) for p in towers["pft"].values})
    fig, axes = plt.subplots(1, len(pfts), figsize=(4 * len(pfts), 4), squeeze=False)
    for ax, p in zip(axes[0], pfts, strict=True):
        sel = towers["pft"].values == p
        x = obs["nee"].values[sel].ravel()
        y = model["nee"].values[sel].ravel()
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=2, alpha=0.3)
        lim = [np.nanmin([x[ok].min(initial=0), y[ok].min(initial=0)]) - 1,
               np.nanmax([x[ok].max(initial=1), y[ok].max(initial=1)]) + 1]
        ax.plot(lim, lim, "k-", lw=0.8)
        for sgn in (-1, 1):
            ax.plot(lim, [v + sgn * carbon.NEE_UBRMSE_TARGET for v in lim], "r--", lw=0.8)
        ax.set_title(f"NEE, PFT {carbon.PFT_LABELS.get(p, p)} (n={ok.sum()})")
        ax.set_xlabel("tower NEE [g C m-2 d-1]")
        ax.set_ylabel("TCF NEE [g C m-2 d-1]")
    figs["scatter_nee_by_pft.png"] = _png(fig)

    sites = list(towers[dims.SITE].values)
    fig, axes = plt.subplots(len(sites), 3, figsize=(13, 2.4 * len(sites)), squeeze=False)
    for i, s in enumerate(sites):
        for j, v in enumerate(("nee", "gpp", "reco")):
            ax = axes[i, j]
            for lab, da in (("tower", obs[v].sel({dims.SITE: s})),
                            ("TCF", model[v].sel({dims.SITE: s}))):
                cyc = carbon.mean_seasonal_cycle(da.where(obs[v].sel({dims.SITE: s}).notnull()))
                ax.plot(cyc["dayofyear"], cyc.values, label=lab)
            ax.set_title(f"{s} {v}", fontsize=8)
            if j == 0:
                ax.axhspan(-carbon.NEE_UBRMSE_TARGET, carbon.NEE_UBRMSE_TARGET, color="0.9")
    axes[0, 0].legend(fontsize=7)
    figs["seasonal_cycles.png"] = _png(fig)

    b = tables["budgets"]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * b.sizes[dims.SITE] * b.sizes["year"]), 4))
    labels, tw, md = [], [], []
    for s in b[dims.SITE].values:
        for y in b["year"].values:
            t = float(b["nee_tower"].sel({dims.SITE: s, "year": y}))
            if np.isfinite(t):
                labels.append(f"{s} {y}")
                tw.append(t)
                md.append(float(b["nee_model"].sel({dims.SITE: s, "year": y})))
    xs = np.arange(len(labels))
    ax.bar(xs - 0.2, tw, 0.4, label="tower")
    ax.bar(xs + 0.2, md, 0.4, label="TCF")
    ax.set_xticks(xs, labels, rotation=90, fontsize=7)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("annual NEE [g C m-2 yr-1]")
    ax.legend()
    figs["budgets_nee.png"] = _png(fig)

    sc = tables["sites"]["nee"].sel({dims.METRIC: "ubrmsd"})
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * sc.sizes[dims.SITE]), 3.5))
    ax.bar([str(s) for s in sc[dims.SITE].values], sc.values)
    ax.axhline(carbon.NEE_UBRMSE_TARGET, color="r", ls="--",
               label=f"target {carbon.NEE_UBRMSE_TARGET} g C m-2 d-1")
    ax.set_ylabel("daily NEE ubRMSE [g C m-2 d-1]")
    ax.tick_params(axis="x", rotation=60)
    ax.legend()
    figs["ubrmse_nee_by_site.png"] = _png(fig)
    return figs


def write_tower_report(out: str, model: xr.Dataset, towers: xr.Dataset,
                       tables: Mapping[str, Any], *, min_qc: float, extra: Mapping | None = None,
                       figures: bool = True,
                       storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write CSV + JSON tables (and PNG figures) under ``out``; returns the JSON summary."""
    sites = _site_table(tables["sites"].compute())
    groups = _group_table(tables["groups"].compute())
    b = tables["budgets"].compute()
    budget_df = b.to_dataframe().reset_index().dropna(subset=["nee_tower"])
    files = {"sites.csv": sites, "groups.csv": groups, "budgets.csv": budget_df}
    if "site_groups" in tables:
        sg = tables["site_groups"].compute()
        files["groups_site_median.csv"] = pd.concat(
            [sg[v].to_pandas().add_prefix(f"{v}_") for v in sg.data_vars], axis=1).reset_index()
    for name, df in files.items():
        stores.write_bytes(stores.join(out, name), df.to_csv(index=False).encode(),
                           storage_options)
    pooled = groups[(groups.group == "all") & (groups.season == "all")]
    summary = {
        "nee_ubrmse_target_g_c_m2_d": carbon.NEE_UBRMSE_TARGET,
        "min_qc": min_qc,
        "pooled": {r.variable: {k: r[k] for k in ("n", "r", "bias", "rmsd", "ubrmsd",
                                                    "ubrmsd_detrended")}
                   for _, r in pooled.iterrows()},
        "nee_target_met": bool(pooled.loc[pooled.variable == "nee", "ubrmsd"].iloc[0]
                               <= carbon.NEE_UBRMSE_TARGET) if len(pooled) else None,
        "sites": sites.to_dict(orient="records"),
        "groups": groups.to_dict(orient="records"),
        "budgets": budget_df.to_dict(orient="records"),
        "definitions": {"bias": "model - tower", "ubrmsd": "means removed (pytesmo ubrmsd)",
                        "ubrmsd_detrended": "linearly detrended RMSD (pyl4c report_fit_stats)"},
    }
    if "moisture" in tables:
        summary["residual_moisture_r"] = tables["moisture"].compute().to_dataframe() \
            .reset_index().to_dict(orient="records")
    summary.update(extra or {})
    stores.write_bytes(stores.join(out, "evaluation.json"),
                       json.dumps(summary, indent=2, default=_json_default).encode(),
                       storage_options)
    if figures:
        for name, data in _figures(model.compute(), towers, tables, min_qc).items():
            stores.write_bytes(stores.join(out, name), data, storage_options)
    return summary


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (np.ndarray,)):
        return o.tolist()
    if isinstance(o, (pd.Timestamp, np.datetime64)):
        return str(o)
    return str(o)


# --- archives ---------------------------------------------------------------------------------
def model_archive(truth: xr.Dataset, static: xr.Dataset, table: Mapping[str, np.ndarray], *,
                  attrs: Mapping[str, Any] | None = None, **kw) -> xr.Dataset:
    """SPL4CMDL-like product (time, y, x) from a simulator archive's truth and static stores."""
    met = carbon.met_from_truth(truth, static)
    pft = static["pft"].astype(np.int16)
    drv = carbon.tcf_drivers(met.drop_vars("porosity"), pft, ft=met["ft"],
                             porosity=0.5)
    if "porosity" in met and met["porosity"].ndim:
        wet = (100.0 * met["swc"] / met["porosity"]).clip(0.0, 100.0).fillna(100.0)
        drv["smrz"] = wet.astype(np.float32)
        drv["smsf"] = wet.astype(np.float32)
        drv["smrz_min"] = wet.min(dims.TIME).astype(np.float32)
    drv = drv.transpose(dims.Y, dims.X, dims.TIME, ...)
    fl = run_tcf(drv, pft, table, **kw).transpose(dims.TIME, dims.Y, dims.X)
    g = grid.grid_coords(truth.attrs["grid"], grid.Window.parse(truth.attrs["grid_window"]))
    product = g.assign_coords({dims.TIME: truth[dims.TIME]})
    for v in ("nee", "gpp", "rh", "reco"):
        product[v] = fl[v].astype(np.float32).assign_attrs(grid_mapping=dims.CRS,
                                                           **fl[v].attrs)
    product["gpp"].attrs["standard_name"] = \
        "gross_primary_productivity_of_biomass_expressed_as_carbon"
    product["rh"].attrs["standard_name"] = "heterotrophic_respiration_carbon_flux"
    product.attrs.update({
        "title": "TCF (SMAP L4C-like) carbon fluxes from simulator truth drivers",
        "fpar_assumption": "thermal-phenology climatology per PFT (pipeline.carbon.FPAR_RANGE)",
        "driver_assumptions": "sw_in = 0.55 x TOA; vpd = esat(ta) x 0.3; ta from surface "
                              "temperature; FT from the truth am frozen state",
    })
    product.attrs.update(attrs or {})
    return product


def aggregate_product(product: xr.Dataset, static: xr.Dataset,
                      bands: Sequence[float] = (-90, -60, -30, 0, 30, 50, 60, 70, 90)
                      ) -> xr.Dataset:
    """Lazy area-weighted annual budgets by latitude band, PFT and the ≥ 50° N region."""
    g = grid.get(product.attrs.get("grid", static.attrs.get("grid")))
    land = static["land_fraction"].fillna(0.0) if "land_fraction" in static else 1.0
    area = (g.cell_area_m2 * land).astype(np.float64)
    groups = carbon.aggregation_groups(product[dims.LAT], static["pft"], bands)
    if "reco" not in product:
        product = product.assign(reco=product["nee"] + product["gpp"])
    return carbon.aggregate_budgets(product, area, groups)


# --- jobs over an archive root (what the CLI calls) --------------------------------------------
def product_id(grid_name: str) -> str:
    """The carbon product id for a grid (data-contract naming)."""
    return f"carbon-l4c-{grid_name.lower()}-v1"


def model_root(root: str, grid_name: str, bplut_url: str, *, publish: bool = True,
               storage_options: Mapping[str, Any] | None = None, progress=None) -> dict:
    """Run TCF over ``{root}/truth/{grid}.zarr`` and publish ``carbon-l4c-{grid}-v1``."""
    from pipeline import schema
    from pipeline.io import bplut as bplut_io
    from pipeline.io import publish as publish_io

    say = progress or (lambda m: None)
    table = bplut_io.read_bplut(bplut_url)
    truth = stores.open_dataset(stores.truth_url(root, grid_name), storage_options=storage_options)
    static = stores.open_static(stores.static_url(root, grid_name), truth,
                                storage_options=storage_options,
                                what="the driver (truth) store")
    truth = stores.chunk_variables(truth, {dims.TIME: -1, dims.Y: 16, dims.X: 16})
    say(f"TCF over {dict(truth.sizes)} with BPLUT {table.attrs.get('release', '?')}")
    product = model_archive(truth, static, table.table,
                            attrs={"bplut": str(bplut_url),
                                   "bplut_release": table.attrs.get("release", "")})
    pid = product_id(grid_name)
    # TCF groups pixels by PFT, so its dask chunks are irregular; Zarr needs regular ones.
    out_chunks = {dims.TIME: product.sizes[dims.TIME], dims.Y: 16, dims.X: 16}
    if publish:
        url = publish_io.publish_dataset(product, root, pid, spec=schema.CARBON_PRODUCT,
                                         storage_options=storage_options,
                                         provenance={"bplut": str(bplut_url)},
                                         chunks=out_chunks)
    else:
        url = stores.join(root, "products", pid, "unpublished.zarr")
        stores.write_dataset(product, url, storage_options=storage_options, chunks=out_chunks)
    done = stores.open_dataset(url, storage_options=storage_options)
    report = {"product_id": pid, "url": url, "bplut": str(bplut_url),
              "bplut_release": table.attrs.get("release", ""),
              "sizes": {k: int(v) for k, v in done.sizes.items()},
              "mean_g_c_m2_d": {v: float(done[v].mean()) for v in ("nee", "gpp", "rh", "reco")}}
    if "gpp" in truth:
        from pipeline import metrics

        t, p = xr.align(truth[["gpp", "nee", "reco"]], done[["gpp", "nee", "reco"]],
                        join="inner")
        report["vs_truth_median_over_cells"] = {
            v: {k: float(x) for k, x in
                metrics.score(p[v], t[v], dims.TIME).compute().median((dims.Y, dims.X)).items()}
            for v in ("nee", "gpp", "reco")}
    stores.write_json(stores.reports_url(root, "carbon-model.json"), report, storage_options)
    return report


def evaluate_root(root: str, grid_name: str, *, collection: str | None = None,
                  min_qc: float = 0.8, storage_options: Mapping[str, Any] | None = None,
                  progress=None) -> dict:
    """Score the current carbon product against ``{root}/towers/{collection}.zarr``
    (``collection``: default the archive's only one; ``simflux`` among several)."""
    from pipeline.io import publish as publish_io

    say = progress or (lambda m: None)
    collection = collection or stores.default_store_name(
        root, "towers", storage_options, preferred="simflux", option="--towers")
    product = publish_io.open_product(root, product_id(grid_name), storage_options)
    towers = stores.open_stations(stores.towers_url(root, collection), "towers",
                                  storage_options=storage_options).load()
    model = carbon.match_towers(product, towers).compute()
    kinds, counts = np.unique(model["matched"].values, return_counts=True)
    matched = dict(zip(kinds.tolist(), counts.tolist(), strict=True))
    say(f"matched {model.sizes[dims.SITE]} towers: {matched}")
    tables = tower_evaluation(model, towers, min_qc=min_qc)
    out = stores.reports_url(root, "carbon-evaluation")
    summary = write_tower_report(out, model, towers, tables, min_qc=min_qc,
                                 extra={"product_id": product_id(grid_name),
                                        "towers": collection},
                                 storage_options=storage_options)
    stores.write_dataset(tables["sites"], stores.join(out, "sites.zarr"),
                         storage_options=storage_options)
    stores.write_json(stores.reports_url(root, "carbon-evaluate.json"),
                      {k: summary[k] for k in ("pooled", "nee_target_met",
                                               "nee_ubrmse_target_g_c_m2_d", "definitions")}
                      | {"report_dir": out}, storage_options)
    return summary


def aggregate_root(root: str, grid_name: str, *,
                   storage_options: Mapping[str, Any] | None = None) -> dict:
    """Area-weighted annual budgets of the current product by latitude band, PFT and region."""
    from pipeline.io import publish as publish_io

    product = publish_io.open_product(root, product_id(grid_name), storage_options)
    static = stores.open_static(stores.static_url(root, grid_name), product,
                                storage_options=storage_options, what="the carbon product")
    agg = aggregate_product(product, static).compute()
    df = agg.to_dataframe().reset_index()
    stores.write_bytes(stores.reports_url(root, "carbon-aggregate.csv"),
                       df.to_csv(index=False).encode(), storage_options)
    report = {"product_id": product_id(grid_name), "units": {"*_total": "Tg C yr-1",
                                                             "*_mean": "g C m-2 yr-1",
                                                             "area": "km2"},
              "rows": df.to_dict(orient="records")}
    stores.write_json(stores.reports_url(root, "carbon-aggregate.json"), report, storage_options)
    return report


def real_towers(real_dir: str, out: str, *, sites: Sequence[str] = ARCTIC_SITES,
                bplut_url: str | None = None, min_qc: float = 0.8, progress=None) -> dict:
    """TCF driven by real FLUXNET2015 tower meteorology, scored against the towers' fluxes."""
    from pipeline.io import bplut as bplut_io
    from pipeline.io import fluxnet

    say = progress or (lambda m: None)
    real = str(real_dir).rstrip("/")
    meta = fluxnet.read_site_list(f"{real}/fluxdatakit/fluxnet2015_site_list.csv")
    towers = fluxnet.read_fluxnet_zarr(f"{real}/fluxnet2015_zarr_subset/fluxnet.zarr",
                                       list(sites), meta)
    say(f"read {towers.sizes[dims.SITE]} sites with data: {towers[dims.SITE].values.tolist()}")
    url = bplut_url or f"{real}/pyl4c_bplut/SMAP_BPLUT_2020-07-31.csv"
    table = bplut_io.read_bplut(url)
    stores.write_dataset(towers, stores.join(out, "towers.zarr"))
    model = model_at_towers(towers, table.table)
    say("TCF run; scoring")
    tables = tower_evaluation(model, towers, min_qc=min_qc)
    extra = {"bplut": url, "bplut_release": table.attrs.get("release", ""),
             "towers_source": towers.attrs["source"],
             "assumptions": {
                 "fpar": "thermal-phenology climatology per PFT (pipeline.carbon.FPAR_RANGE)",
                 "tsoil": "5-day trailing mean air temperature (no TS in the Zarr)",
                 "soil_moisture": "none available: wetness 100 % (no moisture limitation)",
                 "ft": "frozen where daily minimum air temperature < 273.15 K",
                 "pft": "IGBP mapping pipeline.io.fluxnet.IGBP_TO_PFT (WET -> GRS)"}}
    return write_tower_report(out, model, towers, tables, min_qc=min_qc, extra=extra)
