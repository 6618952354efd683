"""SMAP soil-moisture retrieval job: TB archive → ``sm-smap-{grid}-v1`` product + report.

Example::

    tbcube sm retrieve --root /data/transect-m25   # → {root}/products/sm-smap-m25-v1/<ver>.zarr

Inputs (docs/data-contract.md): ``tb/smap.zarr``, ``static/{grid}.zarr``; the effective
temperature comes from the ancillary store ``ancillary/{grid}.zarr`` ``soil_temperature``
(L-band emission comes from the top centimetres of soil; ``surface_temperature`` is the
fallback): a reanalysis in real archives, truth degraded by realistic model errors in
simulated ones (:mod:`pipeline.simulate.ancillary`); it is required — frozen ground from the
published ``ft-smap-{grid}-v1`` product when there is one (else from that temperature),
snow from the ancillary ``snow_water_equivalent`` when present.  The product is chunked spatially
(64 days × 32 × 32 cells, both passes per task), published with
:func:`pipeline.io.publish.publish_dataset`, and scored against truth soil moisture in
``{root}/reports/sm-retrieval.json`` (bias and ubRMSD by VOD bin and land cover).
"""

from __future__ import annotations

import dataclasses
import functools
import time as _time
from collections.abc import Callable

import numpy as np
import xarray as xr

from pipeline import apply, dims, errors, metrics, qc, schema, soil_moisture
from pipeline.graphs import retrieval_teff
from pipeline.io import publish, stores

__all__ = ["SENSOR", "VOD_BINS", "bench_retrieval", "build_product", "open_inputs",
           "product_id", "report", "retrieve", "run"]

SENSOR = "smap"
VOD_BINS = (0.0, 0.25, 0.5, 0.8, 1.2, np.inf)
SPATIAL_TILE = 32
TIME_CHUNK = 64
Progress = Callable[[str], None] | None


def _log(progress: Progress, msg: str) -> None:
    if progress:
        progress(msg)


def product_id(grid: str) -> str:
    """``sm-smap-{grid}-v1`` (lower-case grid name)."""
    return f"sm-{SENSOR}-{grid.lower()}-v1"


def _ft_product_id(grid: str) -> str:
    return f"ft-{SENSOR}-{grid.lower()}-v1"


def nearest_l_band(vod: xr.DataArray) -> xr.DataArray:
    """The VOD at the frequency nearest 1.41 GHz (the simulator's truth has a frequency dim)."""
    if dims.FREQUENCY in vod.dims:
        f = np.asarray(vod[dims.FREQUENCY], float)
        return vod.isel({dims.FREQUENCY: int(np.argmin(np.abs(f - 1.41)))}, drop=True)
    return vod


# Retrievals per compute block (time x pass x tile): a small window (the demo's one-column
# transect: 64 days x 2 passes x 32 x 1 = 4 096) gets longer time chunks, so that each task
# does enough work to pay for its scheduling.  A 32 x 32 tile keeps 128 days.
BLOCK_RETRIEVALS = 2**18


def compute_time_chunk(sizes: dict) -> int:
    """Days per compute block of the retrieval: at least :data:`TIME_CHUNK`, and enough for
    about :data:`BLOCK_RETRIEVALS` retrievals per block (the whole record at most)."""
    per_day = (sizes.get(dims.PASS, 1) * min(SPATIAL_TILE, sizes[dims.Y])
               * min(SPATIAL_TILE, sizes[dims.X]))
    return int(min(sizes[dims.TIME], max(TIME_CHUNK, BLOCK_RETRIEVALS // per_day)))


def open_inputs(root: str, storage_options=None, *, fit_proxy: bool = False,
                progress: Progress = None) -> dict:
    """Open the retrieval's inputs lazily; returns a dict of Datasets/DataArrays (or None).

    Keys: ``tb``, ``static``, ``grid``, ``surface_temperature`` (the effective temperature
    from the ancillary reanalysis store ``ancillary/{grid}.zarr``: ``soil_temperature``, else
    ``surface_temperature``; without one, the multi-frequency TB proxy of
    :mod:`pipeline.graphs.retrieval_teff` when its table exists, or is fitted here with
    ``fit_proxy``), ``temperature_source``, ``teff_proxy`` (that table, or None),
    ``snow_water_equivalent`` (ancillary), ``ft_state`` (the published freeze/thaw product;
    without one, the proxy's frozen-ground classifier when the proxy is used),
    ``frozen_source``, ``truth`` (simulated archives only:
    used for the skill report, never as an input).
    """
    tb_url = stores.tb_url(root, SENSOR)
    tb = stores.open_tb(tb_url, storage_options=storage_options)
    grid_name = tb.attrs.get("grid")
    if not grid_name:
        raise errors.SchemaError(f"{tb_url}: attr 'grid' missing")
    sizes = dict(tb.sizes)
    tb = stores.chunk_variables(tb, {dims.TIME: compute_time_chunk(sizes), dims.PASS: -1,
                                     dims.CHANNEL: -1, dims.Y: min(SPATIAL_TILE, sizes[dims.Y]),
                                     dims.X: min(SPATIAL_TILE, sizes[dims.X])})
    static = stores.open_static(stores.static_url(root, grid_name), tb,
                                storage_options=storage_options)
    out = {"tb": tb, "static": static, "grid": grid_name, "surface_temperature": None,
           "temperature_source": None, "snow_water_equivalent": None, "ft_state": None,
           "truth": None,
           # the stores behind "tb" and "static", named in the stage's input errors
           "urls": {"tb": tb_url, "static": stores.static_url(root, grid_name)}}
    t_url = stores.truth_url(root, grid_name)
    if stores.exists(t_url, storage_options):
        out["truth"] = stores.open_on_cells(t_url, tb, storage_options=storage_options)
    # The effective temperature and snow come from a reanalysis-like ancillary store (the
    # simulator writes truth degraded by realistic model errors), never from truth/.
    a_url = stores.ancillary_url(root, grid_name)
    if stores.exists(a_url, storage_options):
        anc = stores.open_on_cells(a_url, tb, storage_options=storage_options)
        # ``pass`` is a core dim of the kernel: one chunk (the store may split it).
        anc = stores.chunk_variables(anc, {d: -1 for d in (dims.PASS,) if d in anc.dims})
        teff = soil_moisture.reanalysis_temperature(anc)
        if teff is not None:
            out["temperature_source"] = f"ancillary {teff[0]}"
            out["surface_temperature"] = teff[1]
        if "snow_water_equivalent" in anc:
            out["snow_water_equivalent"] = anc["snow_water_equivalent"]
    out["teff_proxy"] = None
    if out["surface_temperature"] is None:
        table = (retrieval_teff.ensure(root, tb, static, storage_options=storage_options,
                                       progress=progress) if fit_proxy
                 else retrieval_teff.load(root, storage_options))
        if table is not None:
            t = retrieval_teff.proxy_temperature(root, table, tb, storage_options)
            out["surface_temperature"] = stores.chunk_variables(t, {dims.PASS: -1})
            out["temperature_source"] = (
                f"TB proxy: {table['sensor']} {len(table['channels'])} channels, fitted at "
                f"{table.get('n_stations')} stations ({retrieval_teff.table_url(root)})")
            out["teff_proxy"] = table
    out["frozen_source"] = "the effective temperature"
    try:
        ft = publish.open_product(root, _ft_product_id(grid_name), storage_options)
        out["ft_state"] = ft[dims.FT_STATE]
        out["frozen_source"] = f"the {_ft_product_id(grid_name)} product"
    except errors.StoreNotFound:
        if out["teff_proxy"] is not None:
            state = retrieval_teff.proxy_frozen_state(root, out["teff_proxy"], tb,
                                                      storage_options)
            if state is not None:
                out["ft_state"] = stores.chunk_variables(state, {dims.PASS: -1})
                out["frozen_source"] = "the TB proxy's frozen-ground classifier"
    return out


def retrieve(tb: xr.Dataset, static: xr.Dataset, *, resources: dict | None = None,
             **kwargs) -> xr.Dataset:
    """:func:`pipeline.soil_moisture.retrieve_smap` with the JAX kernel bridge plugged in.

    Keyword arguments are those of ``retrieve_smap`` (``ft_state``, ``surface_temperature``,
    ``snow_water_equivalent``, ``params``); lazy on dask input.  ``resources`` is the Dask
    resource annotation of the kernel tasks (``{"GPU": 1}`` on GPU clusters, see
    :func:`pipeline.runner.placement.model_resources`); it changes placement, never values.
    """
    kernel = apply.apply_array_kernel
    if resources:
        kernel = functools.partial(apply.apply_array_kernel, resources=dict(resources))
    return soil_moisture.retrieve_smap(tb, static, apply_kernel=kernel, **kwargs)


def build_product(inputs: dict, params: soil_moisture.RetrievalParams, *,
                  resources: dict | None = None) -> xr.Dataset:
    """The lazy SMAP soil-moisture product from :func:`open_inputs`' dict.

    ``resources``: Dask resource annotation of the retrieval kernel tasks (see :func:`retrieve`).
    """
    try:
        return retrieve(
            inputs["tb"], inputs["static"], ft_state=inputs["ft_state"],
            surface_temperature=inputs["surface_temperature"],
            snow_water_equivalent=inputs["snow_water_equivalent"], params=params,
            resources=resources)
    except errors.InputDataError as e:
        # The stage sees datasets and names them "tb: …" / "static: …"; name the store instead.
        head, sep, rest = str(e).partition(": ")
        url = inputs.get("urls", {}).get(head)
        if not (sep and url):
            raise
        raise errors.InputDataError(f"{url}: {rest}") from None


def _score(est: xr.DataArray, ref: xr.DataArray, sel: xr.DataArray) -> dict:
    """Pooled bias / ubRMSD / RMSD and median per-pixel ubRMSD of ``est`` vs ``ref`` in ``sel``."""
    e, r = est.where(sel), ref.where(sel)
    tp = [d for d in (dims.TIME, dims.PASS) if d in e.dims]
    n = int(metrics.n_pairs(e, r, dim=list(e.dims)))
    if n == 0:
        return {"n": 0}
    per_pixel = metrics.ubrmsd(e, r, dim=tp)
    n_pix = metrics.n_pairs(e, r, dim=tp)
    per_pixel = per_pixel.where(n_pix >= 10)
    return {
        "n": n,
        "bias": round(float(metrics.bias(e, r, dim=list(e.dims))), 5),
        "ubrmsd_pooled": round(float(metrics.ubrmsd(e, r, dim=list(e.dims))), 5),
        "rmsd": round(float(metrics.rmsd(e, r, dim=list(e.dims))), 5),
        "ubrmsd_per_pixel_median": (round(float(per_pixel.median()), 5)
                                    if int(per_pixel.notnull().sum()) else None),
        "n_pixels": int(per_pixel.notnull().sum()),
    }


def _meets(t: dict) -> None:
    if t.get("n"):
        ub = t["ubrmsd_per_pixel_median"] if t["ubrmsd_per_pixel_median"] is not None \
            else t["ubrmsd_pooled"]
        t["meets_target"] = bool(ub <= 0.03 and abs(t["bias"]) <= 0.01)


def _holdout_mask(sm: xr.DataArray, holdout: dict) -> xr.DataArray:
    """True on cells and years that parameter tuning did not see."""
    years = np.asarray(sorted(holdout.get("years", [])), int)
    keep_t = ~sm[dims.TIME].dt.year.isin(years)
    cells = np.zeros((sm.sizes[dims.Y], sm.sizes[dims.X]), bool)
    for r, c in holdout.get("station_cells", []):
        if 0 <= r < cells.shape[0] and 0 <= c < cells.shape[1]:
            cells[r, c] = True
    keep_c = xr.DataArray(~cells, dims=(dims.Y, dims.X),
                          coords={dims.Y: sm[dims.Y], dims.X: sm[dims.X]})
    return keep_t & keep_c


def report(product: xr.Dataset, truth: xr.Dataset | None, static: xr.Dataset,
           holdout: dict | None = None) -> dict:
    """Retrieval skill vs truth by VOD bin and land cover, plus QC statistics (numpy, eager).

    ``ubrmsd_per_pixel_median`` is the SMAP-style metric (ubRMSD of each pixel's time series,
    median over pixels with ≥ 10 pairs); ``ubrmsd_pooled`` removes only the overall mean.
    The acceptance target (issue 5): ubRMSD ≤ 0.03 m3 m-3 and |bias| ≤ 0.01 where VOD ≤ 0.5.
    ``holdout`` (the tuned table of :mod:`pipeline.graphs.retrieval_tune`: ``years`` and
    ``station_cells``) adds ``target_vod_le_0.5_holdout``, the same scores on the cells and
    years the station tuning did not see; the acceptance verdict is then the holdout's.
    """
    product = product.load()
    flags = product[dims.QUALITY_FLAG]
    attempted = (flags & int(qc.QC.INSUFFICIENT_OBS)) == 0
    out: dict = {
        "n_observed": int(attempted.sum()),
        "n_retrieved": int(product[dims.SOIL_MOISTURE].notnull().sum()),
        "flag_counts": {m.name: int(((flags & int(m)) != 0).sum()) for m in qc.QC
                        if int(((flags & int(m)) != 0).sum())},
    }
    if truth is None or dims.SOIL_MOISTURE not in truth:
        out["truth"] = None
        return out
    sm = product[dims.SOIL_MOISTURE]
    like = {d: sm[d] for d in (dims.TIME, dims.PASS) if d in truth.dims}
    ref = truth[dims.SOIL_MOISTURE].reindex(like).assign_coords(
        {d: sm[d] for d in (dims.Y, dims.X)}).load()
    vod_true = nearest_l_band(truth[dims.VOD]).reindex(like).assign_coords(
        {d: sm[d] for d in (dims.Y, dims.X)}).load() if dims.VOD in truth else None
    ref, sm_b = xr.broadcast(ref, sm)
    valid = sm_b.notnull() & ref.notnull()
    out["all"] = _score(sm_b, ref, valid)
    if vod_true is not None:
        vod_b = xr.broadcast(vod_true, sm_b)[0]
        out["target_vod_le_0.5"] = _score(sm_b, ref, valid & (vod_b <= 0.5))
        _meets(out["target_vod_le_0.5"])
        if holdout:
            out["target_vod_le_0.5_holdout"] = _score(
                sm_b, ref, valid & (vod_b <= 0.5) & _holdout_mask(sm_b, holdout))
            _meets(out["target_vod_le_0.5_holdout"])
        out["by_vod"] = {}
        for lo, hi in zip(VOD_BINS[:-1], VOD_BINS[1:], strict=True):
            key = f"{lo:g}-{hi:g}"
            out["by_vod"][key] = _score(sm_b, ref, valid & (vod_b >= lo) & (vod_b < hi))
        out["vod_retrieved_minus_true"] = _score(
            product[dims.VOD], xr.broadcast(vod_true, product[dims.VOD])[0],
            product[dims.VOD].notnull())
    lc = static["landcover"].assign_coords({d: sm[d] for d in (dims.Y, dims.X)})
    out["by_landcover"] = {}
    for c in np.unique(np.asarray(lc)):
        out["by_landcover"][str(int(c))] = _score(sm_b, ref, valid & (lc == c))
    return out


def apply_tuned(params: soil_moisture.RetrievalParams, tuned: dict
                ) -> soil_moisture.RetrievalParams:
    """``params`` with the station-tuned τV/τH and T_eff-offset tables (``tbcube sm tune``).

    Tables written before the T_eff offset existed (no ``teff_offset_by_class``) keep the
    offsets of ``params``.
    """
    table = tuple((int(c), float(r)) for c, r in tuned.get("pol_ratio_by_class", []))
    default = tuned.get("default_pol_ratio")
    out = dataclasses.replace(
        params, pol_ratio_by_class=table,
        vod_pol_ratio=float(default) if default is not None else params.vod_pol_ratio)
    if "teff_offset_by_class" in tuned:
        dt = tuned.get("default_teff_offset_k")
        out = dataclasses.replace(
            out, teff_offset_by_class=tuple((int(c), float(v))
                                            for c, v in tuned["teff_offset_by_class"]),
            teff_offset_k=float(dt) if dt is not None else params.teff_offset_k)
    return out


def run(root: str, params: soil_moisture.RetrievalParams | None = None, *,
        storage_options=None, resources: dict | None = None, use_tuned: bool | None = None,
        progress: Progress = None) -> tuple[str, dict]:
    """Build and publish ``sm-smap-{grid}-v1`` and write the report; returns (URL, report).

    ``resources``: Dask resource annotation of the kernel tasks (``{"GPU": 1}`` on GPU clusters).
    ``use_tuned``: apply ``{root}/models/sm-retrieval-tuned.json`` (``tbcube sm tune``): None =
    when it exists, True = required, False = never.
    """
    from pipeline.graphs import retrieval_tune

    params = params or soil_moisture.RetrievalParams()
    tuned = None
    if use_tuned is not False:
        tuned = retrieval_tune.load_tuned(root, storage_options)
        if tuned is None and use_tuned:
            raise errors.StoreNotFound(
                f"{retrieval_tune.tuned_url(root)}: no tuned table; run 'tbcube sm tune' first")
    if tuned is not None:
        params = apply_tuned(params, tuned)
        _log(progress, f"by class from {retrieval_tune.tuned_url(root)}: τV/τH "
             f"{list(params.pol_ratio_by_class)} (others {params.vod_pol_ratio}), ΔT_eff "
             f"{list(params.teff_offset_by_class)} K (others {params.teff_offset_k} K)")
    inputs = open_inputs(root, storage_options, fit_proxy=True, progress=progress)
    grid_name = inputs["grid"]
    _log(progress, f"tb/smap {dict(inputs['tb'].sizes)}; T_eff from "
         f"{inputs['temperature_source']}; frozen ground from {inputs['frozen_source']}")
    ds = build_product(inputs, params, resources=resources)
    pid = product_id(grid_name)
    record = {"config": dataclasses.asdict(params),
              "inputs": {"tb": stores.tb_url(root, SENSOR),
                         "static": stores.static_url(root, grid_name)}}
    proxy = inputs.get("teff_proxy")
    if proxy is not None:
        record["inputs"].update(teff_proxy=retrieval_teff.table_url(root),
                                teff_proxy_tb=stores.tb_url(root, str(proxy["sensor"])))
        record["teff_proxy"] = {k: proxy.get(k) for k in (
            "sensor", "channels", "coefficients", "n_stations", "max_gap_days")}
    chunks = {dims.TIME: min(TIME_CHUNK, ds.sizes[dims.TIME]), dims.PASS: ds.sizes[dims.PASS],
              dims.Y: min(SPATIAL_TILE, ds.sizes[dims.Y]),
              dims.X: min(SPATIAL_TILE, ds.sizes[dims.X])}
    url = publish.publish_dataset(ds, root, pid, spec=schema.SM_SMAP_PRODUCT,
                                  storage_options=storage_options, provenance=record,
                                  chunks=chunks)
    _log(progress, f"published {pid}")
    written = stores.open_dataset(url, storage_options=storage_options)
    rep = {"product_id": pid, "product_url": url,
           "effective_temperature": inputs["temperature_source"],
           "frozen_ground": inputs["frozen_source"],
           "effective_temperature_proxy": None if proxy is None else {
               k: proxy.get(k) for k in ("sensor", "channels", "n_stations", "n_pairs",
                                         "residual_std_thawed_k", "max_gap_days")} | {
               "frozen_classifier_at_stations": {
                   p: {k: m.get(k) for k in ("threshold", "station_agreement",
                                             "frozen_passed_as_thawed", "thawed_left_out")}
                   for p, m in (proxy.get("frozen_classifier") or {}).items()}},
           "tuning": None if tuned is None else {
               "table": retrieval_tune.tuned_url(root), "years": tuned.get("years"),
               "n_station_cells": len(tuned.get("station_cells", [])),
               "pol_ratio_by_class": [list(r) for r in params.pol_ratio_by_class],
               "other_classes": params.vod_pol_ratio,
               "teff_offset_by_class": [list(r) for r in params.teff_offset_by_class],
               "other_classes_teff_offset_k": params.teff_offset_k},
           **report(written, inputs["truth"], inputs["static"], holdout=tuned)}
    stores.write_json(stores.reports_url(root, "sm-retrieval.json"), rep, storage_options)
    _log(progress, f"report {stores.reports_url(root, 'sm-retrieval.json')}")
    return url, rep


def bench_retrieval(n_pixels: int = 16384, repeats: int = 3, seed: int = 0) -> dict:
    """Retrieval throughput on this machine's JAX backend (retrievals = pixel-passes per second).

    Synthetic TB from the forward model (Mironov, random SM/VOD/T/clay) is inverted through the
    same kernel path the product uses (:func:`pipeline.apply.apply_array_kernel`, numpy input).
    Returns compile+first-call time, the best steady-state time and the recovery error.
    """
    import jax

    rng = np.random.default_rng(seed)
    shape = (1, 2, n_pixels, 1)  # (time, pass, y, x)
    sm = rng.uniform(0.03, 0.5, shape).astype(np.float32)
    vod = np.repeat(rng.uniform(0.0, 1.0, (1, 1, n_pixels, 1)), 2, axis=1).astype(np.float32)
    t = rng.uniform(275.0, 305.0, shape).astype(np.float32)
    clay = rng.uniform(0.05, 0.45, (n_pixels, 1)).astype(np.float32)
    params = soil_moisture.RetrievalParams()
    settings = params.kernel_settings(incidence_deg=40.0)
    tb_dims = (dims.TIME, dims.PASS, dims.Y, dims.X)
    st = (dims.Y, dims.X)

    def da(a, d):
        return xr.DataArray(a, dims=d)

    fwd = apply.apply_array_kernel(
        "models.retrieval:forward_tb_with_settings",
        [da(sm, tb_dims), da(vod, tb_dims), da(t, tb_dims), da(clay, st),
         da(np.full_like(clay, 0.3), st), da(np.full_like(clay, 1.4), st),
         da(np.full_like(clay, 0.13), st), da(np.full_like(clay, 0.05), st)],
        core_dim=dims.PASS, n_outputs=2, config=settings, batch=params.batch)
    tb_h, tb_v = (np.asarray(f.transpose(*tb_dims)) for f in fwd)
    inputs = [da(tb_v, tb_dims), da(tb_h, tb_dims), da(t, tb_dims),
              da(np.zeros_like(clay), st), da(clay, st), da(np.full_like(clay, 0.3), st),
              da(np.full_like(clay, 1.4), st), da(np.full_like(clay, 0.13), st),
              da(np.full_like(clay, 0.05), st), da(np.full_like(clay, 0.3), st)]

    def once():
        res = apply.apply_array_kernel(soil_moisture.KERNEL, inputs, core_dim=dims.PASS,
                                       n_outputs=4, config=settings, batch=params.batch)
        return np.asarray(res[0].transpose(*tb_dims))

    t0 = _time.perf_counter()
    out = once()
    first = _time.perf_counter() - t0
    best = np.inf
    for _ in range(repeats):
        t0 = _time.perf_counter()
        out = once()
        best = min(best, _time.perf_counter() - t0)
    n_ret = int(np.prod(shape))
    return {
        "benchmark": "sm-retrieval",
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "n_pixels": n_pixels,
        "n_retrievals": n_ret,
        "batch": params.batch,
        "n_iter": params.n_iter,
        "first_call_s": round(first, 3),
        "best_s": round(best, 4),
        "retrievals_per_s": round(n_ret / best, 1),
        "max_abs_sm_error": float(np.nanmax(np.abs(out - sm))),
    }
