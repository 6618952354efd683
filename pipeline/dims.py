"""Canonical names of dimensions, coordinates, variables and chunk layouts.

This module is the single source of the names fixed by ``docs/data-contract.md``.
Use these constants rather than string literals so that a rename is one edit.
"""

from __future__ import annotations

# Dimensions -------------------------------------------------------------------------------
TIME = "time"
PASS = "pass"
CHANNEL = "channel"
Y = "y"
X = "x"
SENSOR = "sensor"
STATION = "station"
SITE = "site"
FEATURE = "feature"
REGION = "region"
METRIC = "metric"
FREQUENCY = "frequency_ghz"

PASSES = ("am", "pm")

# Coordinates ------------------------------------------------------------------------------
LAT = "lat"
LON = "lon"
FREQUENCY_COORD = "frequency_ghz"
POLARIZATION_COORD = "polarization"
ELEVATION = "elevation"

# Variables --------------------------------------------------------------------------------
TB = "tb"
LOCAL_TIME = "local_time"
QUALITY_FLAG = "quality_flag"
CRS = "crs"
SOIL_MOISTURE = "soil_moisture"
SOIL_MOISTURE_UNCERTAINTY = "soil_moisture_uncertainty"
VOD = "vod"
THAW_PROBABILITY = "thaw_probability"
FT_STATE = "ft_state"
FT_STATE_NPR = "ft_state_npr"
NPR = "npr"
N_SOURCES = "n_sources"
SOURCE_MASK = "source_mask"
LAND_COVERAGE = "land_coverage"

# The five archive sensors, in launch order.
ARCHIVE_SENSORS = ("tmi", "amsre", "amsr2", "gmi", "smap")
# Bit of each sensor in the fused product's ``source_mask``.
SOURCE_BITS = {"tmi": 0, "amsre": 1, "amsr2": 2, "gmi": 3, "smap": 4}

# Chunk layouts ----------------------------------------------------------------------------
# pancake: one time step, whole space (ingest, calibration-apply, fusion).
# pencil: whole time series, small spatial tiles (sequence models, per-pixel fits).
PENCIL_TILE = 32


def pancake(sizes: dict[str, int]) -> dict[str, int]:
    """Chunk sizes for the pancake layout: one time step, every other dim whole."""
    return {d: (1 if d == TIME else n) for d, n in sizes.items()}


def pencil(sizes: dict[str, int], tile: int = PENCIL_TILE) -> dict[str, int]:
    """Chunk sizes for the pencil layout: the whole time axis, ``tile`` × ``tile`` in space."""
    return {d: (min(tile, n) if d in (Y, X) else n) for d, n in sizes.items()}


def chunk_like(a, like):
    """``a`` chunked like ``like`` on the dims they share (its other dims one chunk each).

    ``like`` is a dask-backed xarray object or a ``{dim: chunks}`` mapping.  ``a`` is returned
    unchanged when it is already lazy or ``like`` is in memory.  Use it before broadcasting an
    in-memory layer (a static (y, x) field) against a lazy array: broadcast in NumPy, the
    layer would be materialised at the full shape and embedded in the task graph (MiBs on a
    transect, GiBs on a global grid).
    """
    if getattr(a, "chunks", None) is not None:
        return a
    if isinstance(like, dict):
        chunks = like
    elif getattr(like, "chunks", None) is not None:
        chunks = dict(zip(like.dims, like.chunks, strict=True))
    else:
        return a
    return a.chunk({d: chunks.get(d, -1) for d in a.dims})

