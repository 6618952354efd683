"""Ingest job: real granules → ``{root}/tb/{sensor}.zarr`` (data-contract TB archive).

Two phases:

1. **parallel** (Dask, one task per file): fetch the bytes (:mod:`pipeline.io.stores`), hash
   them (sha256), detect the product family, read (:mod:`pipeline.ingest`) and grid
   (:mod:`pipeline.ingest.gridding`).  A bad file becomes a failed result carrying a one-line
   :class:`~pipeline.errors.InputDataError` message; it never stops the batch.
2. **serial, ordered** (by file name, per sensor): skip granules whose sha256 the store already
   records (idempotent), merge the rest count-weighted into one grid, then merge that into the
   store — a region rewrite when every day already exists, a rewrite with the extended (sorted)
   time axis otherwise.  No concurrent writes; every write goes through ``pipeline.io.stores``.

Example::

    tbcube ingest SMAP_L3_SM_P_20150401_R13080_001.h5 --root s3://bucket/archive --grid M36
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import posixpath
from collections.abc import Sequence

import dask
import numpy as np
import xarray as xr

from pipeline import __version__, dims, errors, grid, ingest, qc, schema, sensors
from pipeline.ingest import ft_check, gridding
from pipeline.io import stores

__all__ = ["FileResult", "build_archive", "ingest_files", "process_file"]

GRANULES_ATTR = "ingested_granules"


@dataclasses.dataclass
class FileResult:
    """Outcome of reading + gridding one file (phase 1) and of merging it (phase 2)."""

    path: str
    name: str
    status: str = "pending"  # ingested | no_valid_observations | already_ingested | failed
    error: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    family: str | None = None
    sensor: str | None = None
    product: str | None = None
    counts: dict = dataclasses.field(default_factory=gridding.empty_counts)
    days: list = dataclasses.field(default_factory=list)
    gridded: xr.Dataset | None = None

    def summary(self) -> dict:
        """JSON-ready record (without the gridded data)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "gridded"}


def process_file(
    path: str,
    target: str,
    window: grid.Window | None,
    *,
    weighting: str = "none",
    tb_range_k: tuple[float, float] = gridding.TB_RANGE_K,
    storage_options: dict | None = None,
) -> FileResult:
    """Phase 1 for one file: fetch, hash, read and grid; errors become a failed result."""
    name = posixpath.basename(str(path).rstrip("/"))
    res = FileResult(path=str(path), name=name)
    try:
        data = stores.read_bytes(str(path), storage_options)
        res.size_bytes = len(data)
        res.sha256 = hashlib.sha256(data).hexdigest()
        granule = ingest.read_bytes(data, name)
        res.family, res.sensor, res.product = granule.family, granule.sensor, granule.product
        ds, counts = gridding.grid_granule(
            granule, target, window, weighting=weighting, tb_range_k=tb_range_k
        )
        res.counts = counts
        if ds is None or counts["used"] == 0:
            res.status = "no_valid_observations"
        else:
            res.gridded = ds
            res.days = [str(np.datetime_as_string(t, "D")) for t in ds[dims.TIME].values]
            res.status = "gridded"
    except errors.TbcubeError as e:
        res.status, res.error = "failed", str(e)
    except Exception as e:  # noqa: BLE001 - one bad file must not stop the batch
        res.status = "failed"
        res.error = f"{name}: unexpected {type(e).__name__}: {' '.join(str(e).split())[:200]}"
    return res


_N_OBS_ATTRS = {"units": "1", "long_name": "number of observations averaged",
                "grid_mapping": dims.CRS}


def _var_attrs() -> dict[str, dict]:
    return {
        dims.TB: {"units": "K", "long_name": "brightness temperature",
                  "standard_name": "brightness_temperature", "grid_mapping": dims.CRS},
        gridding.N_OBS: dict(_N_OBS_ATTRS),
        dims.LOCAL_TIME: {"units": "h", "long_name": "local solar time of the observation",
                          "grid_mapping": dims.CRS},
        dims.QUALITY_FLAG: {**qc.flag_attrs(), "grid_mapping": dims.CRS},
    }


def build_archive(
    gridded: xr.Dataset,
    sensor: str,
    target: str | grid.Grid,
    window: grid.Window | None,
    *,
    granules: list[dict],
    history: str,
    source: str,
    tb_range_k: tuple[float, float] = gridding.TB_RANGE_K,
) -> xr.Dataset:
    """A complete data-contract TB dataset from gridded variables (no I/O).

    Starts from :func:`pipeline.schema.tb_template` (coords, ``crs``, CF attrs, store attrs)
    and fills ``tb``, ``local_time``, ``quality_flag``; adds ``n_obs`` (the per-channel
    observation count that later merges weight by) and the attrs ``grid``, ``grid_window``,
    ``tb_range_k`` and ``ingested_granules``.  ``anc_*`` report fields are dropped.
    """
    g = grid.get(target)
    w = (window or g.full_window()).check(g)
    gridded = gridding.place_on(gridded, g.y[w.row0 : w.row1], g.x[w.col0 : w.col1])
    times = gridded[dims.TIME].values
    ds = schema.tb_template(
        sensor, g, w, times, source=source, history=history,
        title=f"{sensor.upper()} ({sensors.get(sensor).platform}) brightness temperatures "
              f"on EASE-Grid 2.0 {g.name} (ingested granules)",
    )
    labels = [str(c) for c in ds[dims.CHANNEL].values]
    if [str(c) for c in gridded[dims.CHANNEL].values] != labels:
        raise ValueError(f"gridded channels {list(gridded[dims.CHANNEL].values)} != {labels}")
    order5 = (dims.TIME, dims.PASS, dims.CHANNEL, dims.Y, dims.X)
    order4 = (dims.TIME, dims.PASS, dims.Y, dims.X)
    ds[dims.TB] = ds[dims.TB].copy(
        data=gridded[dims.TB].transpose(*order5).values.astype(np.float32))
    ds[dims.LOCAL_TIME] = ds[dims.LOCAL_TIME].copy(
        data=gridded[dims.LOCAL_TIME].transpose(*order4).values.astype(np.float32))
    ds[dims.QUALITY_FLAG] = ds[dims.QUALITY_FLAG].copy(
        data=gridded[dims.QUALITY_FLAG].transpose(*order4).values.astype(qc.QC_DTYPE))
    ds[gridding.N_OBS] = (order5, gridded[gridding.N_OBS].transpose(*order5).values
                          .astype(np.uint16), _N_OBS_ATTRS)
    ds.attrs.update({
        "grid": g.name,
        "grid_window": w.as_list(),
        "Conventions": "CF-1.10",
        "tb_range_k": list(tb_range_k),
        GRANULES_ATTR: granules,
    })
    return ds


def _chunks(ds: xr.Dataset) -> dict[str, int]:
    return dims.pancake({d: int(n) for d, n in ds.sizes.items()})


def _check_schema(url: str, sensor: str, storage_options) -> str:
    """Run ``pipeline.schema.check`` on the written store (raises SchemaError)."""
    schema.check(stores.open_dataset(url, storage_options=storage_options),
                 schema.tb_spec(sensor), context=url)
    return "passed"


def _ft_summary(acc: xr.Dataset, url: str, storage_options) -> dict:
    """The NPR freeze/thaw baseline on the days of this batch, read back from the store."""
    written = stores.open_dataset(url, storage_options=storage_options)
    ftf = acc.get(gridding.ANCILLARY_PREFIX + "freeze_thaw_fraction")
    if ftf is not None:
        ftf = ftf.reindex({dims.Y: written[dims.Y].values, dims.X: written[dims.X].values})
    return ft_check.ft_baseline_summary(
        written.sel({dims.TIME: acc[dims.TIME].values}).load(), ftf)


def _merge_into_store(
    acc: xr.Dataset, url: str, sensor: str, g: grid.Grid, w: grid.Window,
    new_granules: list[dict], history_line: str, storage_options,
    tb_range_k: tuple[float, float],
) -> None:
    """Serial phase: merge ``acc`` into the store at ``url`` (created if absent)."""
    acc = acc[[v for v in acc.data_vars if not v.startswith(gridding.ANCILLARY_PREFIX)]]
    if not stores.exists(url, storage_options):
        ds = build_archive(acc, sensor, g, w, granules=new_granules, history=history_line,
                           source=", ".join(sorted({x["product"] for x in new_granules})),
                           tb_range_k=tb_range_k)
        stores.write_dataset(ds, url, chunks=_chunks(ds), storage_options=storage_options)
        return
    old = stores.open_dataset(url, storage_options=storage_options)
    granules = list(old.attrs.get(GRANULES_ATTR, [])) + new_granules
    history = (str(old.attrs.get("history", "")) + "\n" + history_line).strip()
    source = ", ".join(sorted({str(x.get("product", "")) for x in granules}))
    keep = [v for v in (dims.TB, gridding.N_OBS, dims.LOCAL_TIME, dims.QUALITY_FLAG)]
    old_times = old[dims.TIME].values
    new_times = acc[dims.TIME].values
    if np.isin(new_times, old_times).all():
        pos = np.flatnonzero(np.isin(old_times, new_times))
        region = slice(int(pos.min()), int(pos.max()) + 1)
        part = old[keep].isel({dims.TIME: region}).load()
        merged = gridding.merge_gridded(part, acc)
        for v, attrs in _var_attrs().items():
            merged[v].attrs = dict(attrs)
        stores.write_region(merged, url, {dims.TIME: region}, storage_options=storage_options)
        stores.finalise(url, {GRANULES_ATTR: granules, "history": history, "source": source,
                              "tb_range_k": list(tb_range_k)},
                        storage_options=storage_options)
        return
    loaded = old[keep].load()
    merged = gridding.merge_gridded(loaded, acc)
    ds = build_archive(merged, sensor, g, w, granules=granules, history=history, source=source,
                       tb_range_k=tb_range_k)
    stores.write_dataset(ds, url, chunks=_chunks(ds), storage_options=storage_options)


def _store_attrs(url: str, storage_options) -> dict | None:
    """Root attrs of an existing store, None when there is none yet."""
    if not stores.exists(url, storage_options):
        return None
    return dict(stores.open_dataset(url, storage_options=storage_options).attrs)


def _ingest_sensor(
    mine: list[FileResult], url: str, sensor: str, g: grid.Grid, w: grid.Window,
    history_line: str, storage_options, tb_range_k: tuple[float, float],
) -> dict | None:
    """Serial phase for one sensor: skip recorded granules, merge the rest, write, check.

    Returns the checks (``schema`` and, for SMAP, ``smap_ft_npr_baseline``), or None when
    nothing new was written.  Sets each result's status.
    """
    attrs = _store_attrs(url, storage_options)
    if attrs is not None:
        on_store = (str(attrs.get("grid")), [int(v) for v in attrs.get("grid_window", [])])
        if on_store != (g.name, w.as_list()):
            for r in mine:
                r.status = "failed"
                r.error = (f"{url}: store is on grid {on_store[0]} window {on_store[1]}, not "
                           f"{g.name} {w.as_list()}; ingest {r.name} with matching "
                           "--grid/--window")
            return None
    recorded = {str(x.get("sha256")) for x in (attrs or {}).get(GRANULES_ATTR, [])}
    acc, entries = None, []
    for r in mine:
        if r.sha256 in recorded:
            r.status = "already_ingested"
            continue
        recorded.add(r.sha256)
        acc = r.gridded if acc is None else gridding.merge_gridded(acc, r.gridded)
        entries.append({"name": r.name, "sha256": r.sha256, "family": r.family,
                        "product": r.product, "samples_used": r.counts["used"]})
        r.status = "ingested"
    if acc is None:
        return None
    # Days where the batch saw only masked samples are written only if the store has them.
    stored = set() if attrs is None else set(
        stores.open_dataset(url, storage_options=storage_options)[dims.TIME].values)
    with_tb = gridding.drop_empty_days(acc)
    keep = [t for t in acc[dims.TIME].values
            if t in stored or (with_tb is not None and t in with_tb[dims.TIME].values)]
    if not keep:
        return None
    acc = acc.sel({dims.TIME: keep})
    _merge_into_store(acc, url, sensor, g, w, entries, history_line, storage_options, tb_range_k)
    out = {"schema": _check_schema(url, sensor, storage_options)}
    if sensor == "smap":
        out["smap_ft_npr_baseline"] = _ft_summary(acc, url, storage_options)
    return out


def ingest_files(
    paths: Sequence[str],
    root: str,
    *,
    target: str = "M36",
    window: grid.Window | str | None = None,
    weighting: str = "none",
    tb_range_k: tuple[float, float] = gridding.TB_RANGE_K,
    storage_options: dict | None = None,
    scheduler: str | None = None,
    write_report: bool = True,
) -> dict:
    """Ingest granules into ``{root}/tb/{sensor}.zarr``; returns the report (also written).

    Args:
      paths: Granule URLs or paths (any fsspec URL).
      root: Archive root URL.
      target: EASE-Grid 2.0 grid name.
      window: Grid window (``Window`` or ``"r0,r1,c0,c1"``); default the whole grid.
      weighting: ``"none"`` or ``"inverse_distance"``.
      tb_range_k: Accepted TB range [K].
      storage_options: fsspec options for the root and the inputs.
      scheduler: Dask scheduler for phase 1 (None: the active client or threads).
      write_report: Write ``{root}/reports/ingest-<UTC stamp>.json``.

    Returns:
      Report dict: per-file status, error and sample counts, stores written, FT baseline.
    """
    g = grid.get(target)
    try:
        w = (grid.Window.parse(window) if isinstance(window, str) else window) or g.full_window()
        w.check(g)
    except ValueError as e:
        raise errors.ConfigError(f"ingest window: {e}") from e
    started = dt.datetime.now(dt.UTC)
    tasks = [
        dask.delayed(process_file, pure=False)(
            p, g.name, w, weighting=weighting, tb_range_k=tuple(tb_range_k),
            storage_options=storage_options,
        )
        for p in paths
    ]
    results: list[FileResult] = list(dask.compute(*tasks, scheduler=scheduler)) if tasks else []
    results.sort(key=lambda r: (r.name, r.path))
    stores_written: dict[str, str] = {}
    checks: dict[str, dict] = {}
    history_line = (
        f"{started.isoformat(timespec='seconds')} tbcube {__version__} ingest onto {g.name} "
        f"window {w.as_list()} (weighting {weighting})"
    )
    for sensor in sorted({r.sensor for r in results if r.status == "gridded"}):
        url = stores.tb_url(root, sensor)
        mine = [r for r in results if r.sensor == sensor and r.status == "gridded"]
        try:
            check = _ingest_sensor(mine, url, sensor, g, w, history_line, storage_options,
                                   tuple(tb_range_k))
        except errors.TbcubeError as e:
            # The store could not be read or refused the batch: these granules failed.
            for r in mine:
                if r.status in ("gridded", "ingested"):
                    r.status, r.error = "failed", f"{r.name}: not written: {e}"
            continue
        if check is None:
            continue
        checks.setdefault("schema", {})[sensor] = check.pop("schema")
        checks.update(check)
        stores_written[sensor] = url
    for r in results:
        r.gridded = None
        if r.status == "gridded":  # only possible if a sensor loop above was skipped
            r.status = "failed"
    report = {
        "command": "ingest",
        "tbcube_version": __version__,
        "started": started.isoformat(),
        "finished": dt.datetime.now(dt.UTC).isoformat(),
        "root": str(root),
        "grid": g.name,
        "grid_window": w.as_list(),
        "weighting": weighting,
        "tb_range_k": list(tb_range_k),
        "stores": stores_written,
        "files": [r.summary() for r in results],
        "n_files": len(results),
        "n_failed": sum(r.status == "failed" for r in results),
        "status_counts": {s: sum(r.status == s for r in results)
                          for s in sorted({r.status for r in results})},
        "sample_counts": {k: sum(r.counts.get(k, 0) for r in results)
                          for k in gridding.COUNT_KEYS},
        "checks": checks,
    }
    if write_report:
        stamp = started.strftime("%Y%m%dT%H%M%S%fZ")
        report["report_url"] = stores.write_json(
            stores.reports_url(root, f"ingest-{stamp}.json"), report, storage_options
        )
    return report
