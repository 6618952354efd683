"""Job kinds that adapt science graphs to the phased runner (:mod:`pipeline.runner.jobs`).

Each factory ``(product_id, config, storage_options) -> Job`` is registered by a
``"module:function"`` line in :data:`pipeline.runner.jobs.JOB_KINDS`.

``ft-smap-{grid}-v1`` — the freeze/thaw product of :mod:`pipeline.graphs.freeze_thaw`
(autoencoder + NPR baseline).  Every output pixel depends only on the same pixel's time series,
so the product is cut into parts along ``y`` on pencil chunks (whole time axis, 32-row tiles) and
each part is :func:`pipeline.graphs.freeze_thaw.build_product` applied to those rows.  The model
is the one the last ``tbcube ft train`` registered for the root
(:func:`pipeline.graphs.freeze_thaw.current_model`); its sha256 is part of the staleness key, so
a retrained model triggers a rebuild.

Example config (``deploy/configs/reprocess-ft.yaml``)::

    kind: reprocess
    products: [ft-smap-n36-v1]
    root: s3://tbcube/archive/alaska-n36
    time: {start: 2015-04-01, end: 2022-12-31}
    parts: 24
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import xarray as xr

from pipeline import dims, errors
from pipeline.io import stores

__all__ = ["FreezeThawJob", "SmapRetrievalJob", "freeze_thaw_job", "smap_retrieval_job"]


@dataclasses.dataclass(frozen=True)
class _PixelwiseJob:
    """Shared fields and phases of jobs whose every output pixel depends only on the same
    pixel's inputs: the template is the whole lazy product, parts are whole ``chunks`` tiles
    along ``partition_dim`` and each part is ``_build(region, resources)``.  Subclasses define
    ``_build`` and ``chunks``; ``resources`` (the runner's
    :attr:`pipeline.runner.jobs.Context.resources`) annotates their model tasks."""

    product_id: str
    root: str
    time_range: tuple[str, str] | None = None
    storage_options: Mapping[str, Any] | None = None
    tile: int = dims.PENCIL_TILE
    partition_dim: str = dims.Y


    def template(self) -> xr.Dataset:
        return self._template

    @functools.cached_property
    def _template(self) -> xr.Dataset:
        return self._build(None)

    def partition(self, n: int) -> list[dict[str, slice]]:
        from pipeline.runner.jobs import partition_regions

        length = self._template.sizes[self.partition_dim]
        return partition_regions(length, self.chunks[self.partition_dim], n, self.partition_dim)

    def build_part(self, region: Mapping[str, slice], *,
                   resources: Mapping[str, float] | None = None) -> xr.Dataset:
        return self._build(region, resources)


@dataclasses.dataclass(frozen=True)
class FreezeThawJob(_PixelwiseJob):
    """The ``ft-smap-{grid}-v1`` product of an archive root as a phased job.

    One instance serves one run: inputs, model reference and template are resolved once and
    cached on the instance (build a new job for the next run).

    Attributes:
      product_id: ``ft-smap-{grid}-v1`` (must match the archive's grid).
      root: Archive root holding ``tb/smap.zarr``, ``static/{grid}.zarr`` and the model pointer.
      time_range: ``(start, end)`` ISO dates of the product.
      storage_options: fsspec options for ``root``.
      tile: Pencil tile [cells] along y and x (chunking of the product; parts are whole tiles).
    """

    @property
    def spec(self) -> Any:
        from pipeline import schema

        return schema.FT_PRODUCT

    @functools.cached_property
    def _graph(self):
        from pipeline.graphs import freeze_thaw

        return freeze_thaw

    def _options(self):
        return self._graph.RunOptions()

    @functools.cached_property
    def _model(self):
        return self._graph.current_model(self.root, self.storage_options)

    def _ref(self):
        return self._model

    def _inputs(self) -> tuple[xr.Dataset, xr.Dataset | None, xr.Dataset | None]:
        return self._opened

    @functools.cached_property
    def _opened(self) -> tuple[xr.Dataset, xr.Dataset | None, xr.Dataset | None]:
        # Opened once per job instance (one run): lazy stores, static layers loaded (small).
        so = self.storage_options
        tb = stores.open_tb(stores.tb_url(self.root, "smap"), storage_options=so)
        grid = str(tb.attrs.get("grid", ""))
        if self._graph.product_id(grid) != self.product_id:
            raise errors.ConfigError(
                f"products: {self.product_id!r} does not match the archive's grid {grid!r} "
                f"({stores.tb_url(self.root, 'smap')}); expected {self._graph.product_id(grid)!r}"
            )
        if self.time_range is not None:
            tb = tb.sel({dims.TIME: slice(*self.time_range)})
        tb = tb.chunk(dims.pencil(dict(tb.sizes), self.tile))
        static = None
        if stores.exists(stores.static_url(self.root, grid), so):
            static = stores.open_static(stores.static_url(self.root, grid), tb,
                                        storage_options=so)
        truth = None
        if self._options().windows.method == "temperature":
            truth = stores.open_on_cells(stores.truth_url(self.root, grid), tb,
                                         storage_options=so)
            if self.time_range is not None:
                truth = truth.sel({dims.TIME: slice(*self.time_range)})
        return tb, static, truth

    def _build(self, region: Mapping[str, slice] | None,
               resources: Mapping[str, float] | None = None) -> xr.Dataset:
        tb, static, truth = self._inputs()
        if region:
            tb = tb.isel(dict(region))
            static = static.isel(dict(region)) if static is not None else None
            truth = truth.isel(dict(region)) if truth is not None else None
        return self._graph.build_product(tb, static, self._ref(), self._options(), truth=truth,
                                         resources=dict(resources) if resources else None)

    @property
    def chunks(self) -> dict[str, int]:
        tb, _, _ = self._inputs()
        sizes = {d: n for d, n in tb.sizes.items() if d != dims.CHANNEL}
        return dims.pencil(sizes, self.tile)

    def inputs(self) -> Mapping[str, str]:
        tb = stores.tb_url(self.root, "smap")
        grid = str(self._inputs()[0].attrs["grid"])
        out = {"tb": tb}
        if stores.exists(stores.static_url(self.root, grid), self.storage_options):
            out["static"] = stores.static_url(self.root, grid)
        return out

    def models(self) -> Mapping[str, str]:
        return {self._graph.MODEL_NAME: self._ref().sha256}

    def settings(self) -> Mapping[str, Any]:
        options = dataclasses.asdict(self._options())
        return {"run_options": options, "time_range": list(self.time_range or [])}


def freeze_thaw_job(product_id: str, config: Any,
                    storage_options: Mapping[str, Any] | None) -> FreezeThawJob:
    """Job kind ``ft-smap``: the freeze/thaw product of ``config.root``."""
    return _from_config(FreezeThawJob, product_id, config, storage_options)


@dataclasses.dataclass(frozen=True)
class SmapRetrievalJob(_PixelwiseJob):
    """The ``sm-smap-{grid}-v1`` SMAP soil-moisture product as a phased job.

    Every output value depends only on the same pixel's TB and ancillary fields on that day, so
    the product is cut into parts along ``y`` (pencil chunks, ``tile``-row tiles) and each part
    is :func:`pipeline.graphs.retrieval.build_product` applied to those rows.  Inputs: the
    archive's ``tb/smap.zarr``, ``static/{grid}.zarr``, the ancillary temperature/snow store and
    the freeze/thaw product when published (see :func:`pipeline.graphs.retrieval.open_inputs`).
    """

    @property
    def spec(self) -> Any:
        from pipeline import schema

        return schema.SM_SMAP_PRODUCT

    @functools.cached_property
    def _opened(self) -> dict:
        from pipeline.graphs import retrieval

        # without a reanalysis store, the TB temperature proxy (fitted once, then reused)
        inputs = retrieval.open_inputs(self.root, self.storage_options, fit_proxy=True)
        grid = str(inputs["grid"])
        if retrieval.product_id(grid) != self.product_id:
            raise errors.ConfigError(
                f"products: {self.product_id!r} does not match the archive's grid {grid!r} "
                f"({self.root}); expected {retrieval.product_id(grid)!r}")
        timed = ("tb", "surface_temperature", "snow_water_equivalent", "ft_state")
        if self.time_range is not None:
            for k in timed:
                if inputs[k] is not None:
                    inputs[k] = inputs[k].sel({dims.TIME: slice(*self.time_range)})
        sizes = {d: n for d, n in inputs["tb"].sizes.items() if d != dims.CHANNEL}
        inputs["tb"] = inputs["tb"].chunk(dims.pencil(sizes, self.tile))
        return inputs

    def _build(self, region: Mapping[str, slice] | None,
               resources: Mapping[str, float] | None = None) -> xr.Dataset:
        from pipeline.graphs import retrieval

        inputs = dict(self._opened)
        if region:
            for k in ("tb", "static", "surface_temperature", "snow_water_equivalent", "ft_state"):
                v = inputs.get(k)
                if v is not None and all(d in v.dims for d in region):
                    inputs[k] = v.isel(dict(region))
        out = retrieval.build_product(inputs, self._params,
                                      resources=dict(resources) if resources else None)
        # the inputs' chunks (ancillary, static) leak into the product: impose the job's layout
        return out.chunk({d: c for d, c in self.chunks.items() if d in out.dims})

    @property
    def chunks(self) -> dict[str, int]:
        sizes = {d: n for d, n in self._opened["tb"].sizes.items() if d != dims.CHANNEL}
        return dims.pencil(sizes, self.tile)

    def inputs(self) -> Mapping[str, str]:
        grid = str(self._opened["grid"])
        out = {"tb": stores.tb_url(self.root, "smap"),
               "static": stores.static_url(self.root, grid)}
        proxy = self._opened["teff_proxy"]
        if proxy is None:
            out["ancillary"] = stores.ancillary_url(self.root, grid)
        else:  # the effective temperature from another sensor's TB (retrieval_teff)
            out["teff_proxy_tb"] = stores.tb_url(self.root, str(proxy["sensor"]))
        return out

    def models(self) -> Mapping[str, str]:
        return {}

    @functools.cached_property
    def _params(self):
        """Default settings, with the station-tuned tables when ``sm tune`` wrote them."""
        from pipeline import soil_moisture
        from pipeline.graphs import retrieval, retrieval_tune

        tuned = retrieval_tune.load_tuned(self.root, self.storage_options)
        params = soil_moisture.RetrievalParams()
        return params if tuned is None else retrieval.apply_tuned(params, tuned)

    def settings(self) -> Mapping[str, Any]:
        # the tuned table is part of the settings: re-tuning makes the product stale
        out = {"retrieval": dataclasses.asdict(self._params),
               "time_range": list(self.time_range or [])}
        proxy = self._opened["teff_proxy"]
        if proxy is not None:  # a refitted proxy makes the product stale, as re-tuning does
            out["teff_proxy"] = {k: proxy.get(k) for k in (
                "sensor", "channels", "coefficients", "frozen_classifier", "max_gap_days")}
        return out


def smap_retrieval_job(product_id: str, config: Any,
                       storage_options: Mapping[str, Any] | None) -> SmapRetrievalJob:
    """Job kind ``sm-smap``: the SMAP soil-moisture product of ``config.root``."""
    return _from_config(SmapRetrievalJob, product_id, config, storage_options)


def _from_config(cls, product_id: str, config: Any, storage_options):
    time_range = None
    if getattr(config, "time", None) is not None:
        time_range = (str(config.time.start), str(config.time.end))
    return cls(product_id=product_id, root=config.root, time_range=time_range,
               storage_options=storage_options)
