"""Job kinds of soil-moisture stage 2: per-sensor harmonised products and the fused product.

Factories ``(product_id, config, storage_options) -> Job`` registered in
:data:`pipeline.runner.jobs.JOB_KINDS`; the jobs share the fields, phases and config factory of
:class:`pipeline.runner.kinds._PixelwiseJob` (pencil chunks, parts along ``y``).

``sm-{sensor}-{grid}-v1`` (sensor: tmi, amsre, amsr2, gmi) — the LSTM-harmonised soil moisture
of one sensor (:func:`pipeline.graphs.harmonise.harmonised`) from ``calibrated/{sensor}.zarr``
and ``static/{grid}.zarr`` with the LSTM the last ``tbcube sm train`` recorded
(:func:`pipeline.graphs.harmonise.latest_model`).  The LSTM reads each pixel's whole record, so
parts are whole pencil tiles along ``y``; the checkpoint's sha256 is in the staleness key, so a
retrained LSTM makes every harmonised product stale.

``sm-fused-{grid}-v1`` — the fusion of every published ``sm-{tmi,amsre,amsr2,gmi,smap}-{grid}-v1``
(the sources :func:`pipeline.graphs.harmonise.fuse_all` fuses) with triple-collocation error
variances per pixel, or the validation fallback (``reports/sm-validation.json``) where no
triplet is valid.  Triple collocation needs each pixel's whole time series and nothing else, so
parts are again tiles along ``y``.  The inputs are the sources' *current versions* (their
fingerprints change with every newly published version) and the fallback error variances are a
setting, so the product goes stale when any source is republished or the validation changes.
One variable is not local in ``y``: ``land_coverage`` (time) is a reduction over the whole
domain; it is computed and written with the template at ``init`` (which therefore reads every
source once), and parts write the per-pixel variables.

Example config (``deploy/configs/reprocess-sm.yaml``, products in dependency order)::

    kind: reprocess
    products: [sm-smap-m25-v1, sm-tmi-m25-v1, sm-amsre-m25-v1, sm-amsr2-m25-v1, sm-gmi-m25-v1,
               sm-fused-m25-v1]
    root: s3://tbcube/archive/transect-m25
    time: {start: 1997-12-01, end: 2023-12-31}
    parts: 52

Parts run in separate processes (``reprocess run --part``) resolve the LSTM pointer and the
sources' current versions again: publish no new model or source version between ``init`` and
``finalise`` of a run (``tbcube reprocess`` runs the products of a config one after the other,
so it never does).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from pipeline import dims, errors
from pipeline.io import publish, stores
from pipeline.runner.kinds import _from_config, _PixelwiseJob

__all__ = ["FusedJob", "HarmonisedJob", "fused_job", "harmonised_job"]

MODEL_NAME = "sm-lstm"  # the LSTM's id in the STAC catalog (harmonise.train registers it)


def _grid_of(product_id: str) -> str:
    """``sm-{source}-{grid}-v1`` → ``{GRID}`` (upper case, as the archive stores name it)."""
    parts = product_id.split("-")
    return parts[2].upper() if len(parts) == 4 else ""


def _select_time(ds, time_range: tuple[str, str] | None, what: str):
    if time_range is None:
        return ds
    out = ds.sel({dims.TIME: slice(*time_range)})
    if out.sizes.get(dims.TIME, 0) == 0:
        raise errors.InputDataError(f"{what}: no days in the job's time range {list(time_range)}")
    return out


def _open_static(root: str, grid_name: str, storage_options) -> xr.Dataset:
    url = stores.static_url(root, grid_name)
    if not stores.exists(url, storage_options):
        raise errors.StoreNotFound(f"{url}: no static layers for grid {grid_name!r}")
    return stores.open_static(url, storage_options=storage_options)


@dataclasses.dataclass(frozen=True)
class HarmonisedJob(_PixelwiseJob):
    """The ``sm-{sensor}-{grid}-v1`` harmonised soil-moisture product as a phased job.

    One instance serves one run: the calibrated store, static layers, LSTM reference and the
    lazy product are resolved once and cached on the instance.

    Attributes:
      product_id: ``sm-{sensor}-{grid}-v1``, sensor one of tmi, amsre, amsr2, gmi (the grid must
        be the calibrated store's).
      root: Archive root with ``calibrated/{sensor}.zarr``, ``static/{grid}.zarr`` and
        ``reports/sm-train.json`` (the LSTM of ``tbcube sm train``); the published SMAP
        product, when there is one, gives the DENSE_VEGETATION bits (an input: a new version
        makes the product stale).
      time_range: ``(start, end)`` ISO dates of the product (the LSTM sees only these days).
      storage_options: fsspec options for ``root``.
      tile: Pencil tile [cells] along y and x (product chunks and LSTM blocks; parts are whole
        tiles along y).
    """

    @property
    def sensor(self) -> str:
        return self.product_id.split("-")[1]

    @property
    def spec(self) -> Any:
        from pipeline import schema

        return schema.SM_HARMONISED

    @functools.cached_property
    def _opened(self) -> tuple[xr.Dataset, xr.Dataset]:
        from pipeline.graphs import harmonise

        so = self.storage_options
        if self.sensor not in harmonise.HARMONISED_SENSORS:
            raise errors.ConfigError(
                f"products: {self.product_id!r}: no harmonised product for sensor "
                f"{self.sensor!r} (one of {', '.join(harmonise.HARMONISED_SENSORS)})")
        url = stores.calibrated_url(self.root, self.sensor)
        if not stores.exists(url, so):
            raise errors.StoreNotFound(f"{url}: no calibrated {self.sensor} TB; run "
                                       "`tbcube calibrate apply` first")
        cal = stores.open_tb(url, storage_options=so)
        grid_name = str(cal.attrs.get("grid", ""))
        expected = harmonise.product_id(self.sensor, grid_name)
        if expected != self.product_id:
            raise errors.ConfigError(
                f"products: {self.product_id!r} does not match the archive's grid "
                f"{grid_name!r} ({url}); expected {expected!r}")
        cal = _select_time(cal, self.time_range, url)
        static = _open_static(self.root, grid_name, so)
        stores.require_on_cells(cal, static, url, what="the archive's static store")
        return cal, static

    @functools.cached_property
    def _ref(self):
        from pipeline.graphs import harmonise

        return harmonise.latest_model(self.root, self.storage_options)

    def _harmonised(self, cal: xr.Dataset, static: xr.Dataset,
                    resources: Mapping[str, float] | None = None) -> xr.Dataset:
        from pipeline.graphs import harmonise

        # the screens are reindexed onto the block's own (time, y, x)
        return harmonise.harmonised(cal, static, self.sensor, self._ref,
                                    ancillary=self._ancillary, dense=self._dense[1],
                                    frozen_model=self._frozen_model, tile=self.tile,
                                    resources=dict(resources) if resources else None)

    @functools.cached_property
    def _ancillary(self) -> xr.Dataset | None:
        from pipeline.graphs import harmonise

        cal, _ = self._opened
        return harmonise.open_ancillary(self.root, str(cal.attrs["grid"]), self.storage_options)

    @functools.cached_property
    def _frozen_model(self) -> dict | None:
        """Without a reanalysis temperature, this sensor's station-fitted frozen-ground
        classifier (:mod:`pipeline.graphs.frozen_screens`; fitted for every sensor on first
        use, then reused)."""
        from pipeline.graphs import frozen_screens, harmonise

        _, static = self._opened
        screens = frozen_screens.ensure(self.root, static, harmonise.HARMONISED_SENSORS,
                                        ancillary=self._ancillary,
                                        storage_options=self.storage_options)
        entry = (screens or {}).get("sensors", {}).get(self.sensor)
        return entry if entry and entry.get("model") else None

    @functools.cached_property
    def _dense(self) -> tuple[str | None, xr.DataArray | None]:
        """The SMAP target's dense-canopy cells (the DENSE_VEGETATION bit), with its URL."""
        from pipeline.graphs import harmonise

        cal, _ = self._opened
        return harmonise.open_dense_target(self.root, str(cal.attrs["grid"]).lower(),
                                           self.storage_options)

    @functools.cached_property
    def _whole(self) -> xr.Dataset:
        return self._harmonised(*self._opened)

    def _build(self, region: Mapping[str, slice] | None,
               resources: Mapping[str, float] | None = None) -> xr.Dataset:
        if region:
            cal, static = (ds.isel(dict(region)) for ds in self._opened)
            out = self._harmonised(cal, static, resources)
        elif resources:
            out = self._harmonised(*self._opened, resources)
        else:
            out = self._whole
        # the LSTM runs one pass per block; the product keeps both passes in one chunk
        return out.chunk({d: c for d, c in self.chunks.items() if d in out.dims})

    @property
    def chunks(self) -> dict[str, int]:
        return dims.pencil(dict(self._whole.sizes), self.tile)

    def inputs(self) -> Mapping[str, str]:
        cal, static = self._opened
        out = {"calibrated": stores.calibrated_url(self.root, self.sensor),
               "static": stores.static_url(self.root, str(cal.attrs["grid"]))}
        if self._ancillary is not None:       # frozen-ground and snow screens
            out["ancillary"] = stores.ancillary_url(self.root, str(cal.attrs["grid"]))
        if self._dense[0] is not None:        # the target's dense-canopy cells
            out["sm-smap"] = self._dense[0]
        return out

    def models(self) -> Mapping[str, str]:
        return {MODEL_NAME: self._ref.sha256}

    def settings(self) -> Mapping[str, Any]:
        from pipeline.graphs import harmonise

        screens = {"frozen_tb36v_k": harmonise.FROZEN_TB36V_K,
                   "snow_scatter_k": harmonise.SNOW_SCATTER_K,
                   "ancillary": self._ancillary is not None,
                   "frozen_below_k": harmonise.THAWED_MIN_K,
                   "snow_swe_mm": harmonise.SNOW_MAX_MM}
        if self._frozen_model is not None:  # a refitted classifier makes the product stale
            screens["frozen_classifier"] = {k: self._frozen_model[k]
                                            for k in ("model", "threshold")}
        return {"sensor": self.sensor, "screens": screens,
                "dense_target_share": harmonise.DENSE_TARGET_SHARE,
                "time_range": list(self.time_range or [])}


def harmonised_job(product_id: str, config: Any,
                   storage_options: Mapping[str, Any] | None) -> HarmonisedJob:
    """Job kind ``sm-{tmi,amsre,amsr2,gmi}``: a harmonised product of ``config.root``."""
    return _from_config(HarmonisedJob, product_id, config, storage_options)


@dataclasses.dataclass(frozen=True)
class FusedJob(_PixelwiseJob):
    """The ``sm-fused-{grid}-v1`` fused soil-moisture product as a phased job.

    Attributes:
      product_id: ``sm-fused-{grid}-v1``.
      root: Archive root with ``static/{grid}.zarr`` and the published source products
        ``sm-{tmi,amsre,amsr2,gmi,smap}-{grid}-v1`` (those not published are left out, as
        :func:`pipeline.graphs.harmonise.fuse_all` does).
      time_range: ``(start, end)`` ISO dates of the product (triple collocation uses only these
        days).
      storage_options: fsspec options for ``root``.
      tile: Rows per fusion block and pencil tile of the product (parts are whole tiles in y).
    """

    @property
    def spec(self) -> Any:
        from pipeline import schema

        return schema.SM_FUSED

    @functools.cached_property
    def _opened(self) -> tuple[xr.Dataset, dict[str, tuple[str, xr.DataArray]], dict]:
        from pipeline.graphs import harmonise

        so = self.storage_options
        grid_name = _grid_of(self.product_id)
        if self.product_id != harmonise.product_id("fused", grid_name or "?"):
            raise errors.ConfigError(f"products: {self.product_id!r} is not "
                                     "sm-fused-{grid}-v1")
        static = _open_static(self.root, grid_name, so)
        sources = {}
        for s in harmonise.HARMONISED_SENSORS + ("smap",):
            pid = harmonise.product_id(s, grid_name)
            try:
                url = publish.current_url(self.root, pid, so)
            except errors.StoreNotFound:
                continue
            sm = stores.open_dataset(url, storage_options=so)[dims.SOIL_MOISTURE]
            sources[s] = (url, _select_time(sm, self.time_range, url))
        if not sources:
            raise errors.StoreNotFound(
                f"{self.root}: no soil-moisture products sm-{{tmi,amsre,amsr2,gmi,smap}}-"
                f"{grid_name.lower()}-v1 to fuse; reprocess them first")
        return static, sources, harmonise.fallback_error_variance(self.root, so)

    def _fused(self, region: Mapping[str, slice] | None) -> xr.Dataset:
        from pipeline import fuse
        from pipeline.graphs import harmonise

        static, sources, fallback = self._opened
        arrays = {s: sm for s, (_, sm) in sources.items()}
        if region:
            arrays = {s: sm.isel(dict(region)) for s, sm in arrays.items()}
            static = static.isel(dict(region))
        stack = harmonise.fusion_stack(arrays, tile=self.tile)
        ev = fuse.tc_error_variance(stack, fallback=fallback)  # per pixel: lazy, per block
        return harmonise.fused_product(stack, ev["err_var"], static)

    @functools.cached_property
    def _whole(self) -> xr.Dataset:
        return self._fused(None)

    def _build(self, region: Mapping[str, slice] | None,
               resources: Mapping[str, float] | None = None) -> xr.Dataset:
        # no model tasks (triple collocation is plain array code): ``resources`` is not used
        if region:
            # land_coverage (time) sums over the whole domain: the template wrote it at init
            out = self._fused(region).drop_vars(dims.LAND_COVERAGE)
        else:
            out = self._whole
        return out.chunk({d: c for d, c in self.chunks.items() if d in out.dims})

    @property
    def chunks(self) -> dict[str, int]:
        sizes = {d: n for d, n in self._whole.sizes.items() if d != dims.SENSOR}
        return dims.pencil(sizes, self.tile)

    def inputs(self) -> Mapping[str, str]:
        static, sources, _ = self._opened
        out = {f"sm-{s}": url for s, (url, _) in sources.items()}
        out["static"] = stores.static_url(self.root, str(static.attrs["grid"]))
        return out

    def models(self) -> Mapping[str, str]:
        return {}  # the LSTM enters through the harmonised products' versions

    def settings(self) -> Mapping[str, Any]:
        _, sources, fallback = self._opened
        from pipeline import fuse

        return {"sources": sorted(sources),
                "fallback_error_variance": {s: float(np.float64(v))
                                            for s, v in sorted(fallback.items())},
                "mean_matching": {"chain": [[s, list(r)] for s, r in fuse.MATCH_CHAIN],
                                  "climatology": {s: list(r) for s, r in
                                                  sorted(fuse.CLIMATOLOGY_FALLBACK.items())},
                                  "min_overlap_days": fuse.MIN_OVERLAP_DAYS},
                "time_range": list(self.time_range or [])}


def fused_job(product_id: str, config: Any,
              storage_options: Mapping[str, Any] | None) -> FusedJob:
    """Job kind ``sm-fused``: the fused soil-moisture product of ``config.root``."""
    return _from_config(FusedJob, product_id, config, storage_options)
