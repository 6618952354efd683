"""The embedded default archive: an observing-system simulation (OSSE) with known truth.

:func:`simulate` writes data-contract archive roots: ``static/{grid}.zarr``, ``tb/{sensor}.zarr``
for every archive sensor whose period overlaps the span, ``insitu/{network}.zarr``,
``towers/{collection}.zarr`` and ``truth/{grid}.zarr`` (with the simulator's settings and the
injected calibration in its attrs).  See docs/simulator.md for the physics.

Presets (sizes in docs/simulator.md):

* ``tiny`` — one M36 column from 34° N to 70° N (79 cells), 2014-06-01..2016-05-31 (SMAP,
  AMSR2, GMI and TMI overlap): unit tests, seconds.
* ``demo`` — two roots: ``{root}/alaska-n36`` (20 × 20 N36 cells over interior Alaska,
  2015-01-01..2019-12-31) and ``{root}/transect-m25`` (a 1-column M25 transect 15° N–72° N,
  2010-06-01..2019-12-31: every sensor hand-over from AMSR-E's last 16 months on; ``start``
  can move it back to 1997-12).
* ``global`` — the full N36 and M25 grids, generated in 32 × 32 blocks (bounded memory).

>>> from pipeline.simulate import simulate
>>> urls = simulate("tiny", "/tmp/tiny-archive", seed=0)      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Mapping
from typing import Any

from pipeline import errors, grid, schema
from pipeline.io import stores
from pipeline.simulate.archive import (
    INSITU_NETWORK,
    TOWER_COLLECTION,
    ArchiveSpec,
    plan,
    simulate_block,
)
from pipeline.simulate.settings import Settings

__all__ = ["INSITU_NETWORK", "PRESETS", "TOWER_COLLECTION", "ArchiveSpec", "Settings", "generate",
           "preset_specs", "simulate"]

PRESETS = ("tiny", "demo", "global")


def preset_specs(
    preset: str, *, start: str | None = None, end: str | None = None,
    settings: Settings | None = None,
) -> dict[str, ArchiveSpec]:
    """The archives of a preset, keyed by sub-root ('' for a single root).

    Raises:
      errors.ConfigError: Unknown preset or a bad date range.
    """
    if preset == "tiny":
        specs = {"": ArchiveSpec("tiny", "M36", grid.Window(11, 90, 200, 201),
                                 "2014-06-01", "2016-05-31", stations_per_class=3, n_towers=4)}
    elif preset == "demo":
        specs = {
            "alaska-n36": ArchiveSpec("alaska-n36", "N36", grid.Window(174, 194, 202, 222),
                                      "2015-01-01", "2019-12-31", stations_per_class=6,
                                      n_towers=10),
            "transect-m25": ArchiveSpec("transect-m25", "M25", grid.Window(13, 217, 307, 308),
                                        "2010-06-01", "2019-12-31", tile=64,
                                        stations_per_class=5, n_towers=6),
        }
    elif preset == "global":
        specs = {
            "global-n36": ArchiveSpec("global-n36", "N36", grid.get("N36").full_window(),
                                      "2016-01-01", "2016-12-31", tile=32,
                                      stations_per_class=5, n_towers=10, time_chunk=92),
            "global-m25": ArchiveSpec("global-m25", "M25", grid.get("M25").full_window(),
                                      "2016-01-01", "2016-12-31", tile=32,
                                      stations_per_class=5, n_towers=10, time_chunk=92),
        }
    else:
        raise errors.ConfigError(f"simulate: unknown preset {preset!r}; choose one of {PRESETS}")
    out = {}
    for k, s in specs.items():
        s2 = dataclasses.replace(s, start=str(start or s.start), end=str(end or s.end),
                                 settings=settings or s.settings)
        try:
            if s2.days.size == 0:
                raise ValueError("empty")
        except ValueError as e:
            raise errors.ConfigError(
                f"simulate: invalid time span {s2.start}..{s2.end} for preset {preset!r}") from e
        out[k] = s2
    return out


def simulate(
    preset: str,
    root: str,
    *,
    seed: int = 0,
    start: str | None = None,
    end: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    settings: Settings | None = None,
) -> dict[str, str]:
    """Write the simulated archive(s) of a preset under ``root``.

    Args:
      preset: ``tiny``, ``demo`` or ``global``.
      root: Archive root URL (local path, ``file://``, ``s3://…``).  ``demo`` and ``global``
        write sub-roots ``{root}/{name}``.
      seed: Random seed; the same seed gives the same bytes.
      start, end: Override the preset's span (``YYYY-MM-DD``, inclusive).
      storage_options: fsspec options for the root.
      progress: Report progress on stderr.
      settings: Simulator settings (forward model, sensors' errors); default
        :class:`Settings` ``()``.  Recorded in the truth store's attrs.

    Returns:
      Written URLs: ``"{sub}/static/{grid}"``, ``"{sub}/tb/{sensor}"``, …, one ``"{sub}/root"``
      per archive root (``sub`` omitted for a single root) and ``"root"``; ordered with the
      archive roots last.
    """
    specs = preset_specs(preset, start=start, end=end, settings=settings)
    urls: dict[str, str] = {}
    roots: dict[str, str] = {}
    for sub, spec in specs.items():
        r = stores.join(root, sub) if sub else str(root)
        written = generate(spec, r, seed=seed, storage_options=storage_options, progress=progress)
        prefix = f"{sub}/" if sub else ""
        urls.update({prefix + k: v for k, v in written.items()})
        roots[prefix + "root"] = r
    urls.update(roots)
    if len(specs) > 1:
        urls["root"] = str(root)
    return urls


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"[simulate] {msg}", file=sys.stderr, flush=True)


def generate(
    spec: ArchiveSpec,
    root: str,
    *,
    seed: int = 0,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = False,
    check: bool = True,
) -> dict[str, str]:
    """Write one archive root for ``spec``; returns ``{"static/M36": url, "tb/smap": url, …}``."""
    from pipeline.simulate import writer

    t0 = time.perf_counter()
    so = dict(storage_options or {}) or None
    pl = plan(spec, seed)
    base = writer.archive_attrs(spec, seed)
    sensors_ = spec.sensors()
    _log(progress, f"{spec.name}: {spec.grid} window {spec.window.as_list()}, "
         f"{spec.start}..{spec.end}, sensors {', '.join(sensors_)}, "
         f"{len(pl.stations)} stations, {len(pl.towers)} towers")
    urls = {
        f"static/{spec.grid}": stores.static_url(root, spec.grid),
        **{f"tb/{s}": stores.tb_url(root, s) for s in sensors_},
        f"truth/{spec.grid}": stores.truth_url(root, spec.grid),
    }
    templates = {
        f"static/{spec.grid}": writer.static_template(spec, base),
        f"truth/{spec.grid}": writer.truth_template(spec, {**base, **writer.truth_attrs(
            spec, seed, pl)}),
        **{f"tb/{s}": writer.tb_template(spec, s, base) for s in sensors_},
    }
    for key, ds in templates.items():
        nc = ds.sizes.get("channel", 0)
        stores.write_template(ds, urls[key], chunks=writer._chunks(spec, nc), storage_options=so)
    blocks = spec.blocks()
    station_series: dict = {}
    tower_series: dict = {}
    for i, blk in enumerate(blocks):
        b = simulate_block(spec, seed, blk, pl)
        region = writer.region_of(spec, b)
        for key, ds in writer.block_datasets(spec, b).items():
            url = urls[f"static/{spec.grid}"] if key == "static" else (
                urls[f"truth/{spec.grid}"] if key == "truth" else urls[key])
            reg = {d: s for d, s in region.items() if d in ds.dims}
            stores.write_region(ds, url, reg, storage_options=so)
        station_series.update(b.stations)
        tower_series.update(b.towers)
        _log(progress, f"{spec.name}: block {i + 1}/{len(blocks)} {blk.as_list()} done "
             f"({time.perf_counter() - t0:.1f} s)")
    for url in urls.values():
        stores.finalise(url, storage_options=so)
    if pl.stations and spec.max_blocks is None:
        u = stores.insitu_url(root, spec.network)
        stores.write_dataset(writer.insitu_dataset(spec, pl, station_series, base), u,
                             storage_options=so)
        urls[f"insitu/{spec.network}"] = u
    if pl.towers and spec.max_blocks is None:
        u = stores.towers_url(root, spec.collection)
        stores.write_dataset(writer.towers_dataset(spec, pl, tower_series, base), u,
                             storage_options=so)
        urls[f"towers/{spec.collection}"] = u
    if spec.max_blocks is None and spec.window.shape[0] * spec.window.shape[1] <= 50_000:
        # Reanalysis-like ancillary fields (truth + model errors) for the retrievals, which
        # must never read truth/.  Regional archives only: the global preset is for scale tests.
        from pipeline.simulate import ancillary

        urls[f"ancillary/{spec.grid}"] = ancillary.write_ancillary(root, spec.grid, seed=seed,
                                                                   storage_options=so)
    if check:
        for key, url in urls.items():
            kind = key.split("/")[0]
            if kind == "ancillary":
                continue  # a tbcube extension of the contract (docs/stores.md)
            sp = {"static": schema.STATIC, "truth": schema.TRUTH, "insitu": schema.INSITU,
                  "towers": schema.TOWERS}.get(kind) or schema.tb_spec(key.split("/")[1])
            writer.check_store(url, sp, so)
    _log(progress, f"{spec.name}: wrote {len(urls)} stores in {time.perf_counter() - t0:.1f} s")
    return urls
