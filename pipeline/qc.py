"""Quality-control bit flags shared by the TB archive and every product.

Bits 0-2 of the TB ``quality_flag`` are fixed by docs/data-contract.md; higher bits are used by
products.  Per-pixel science failures are QC bits, never exceptions.
"""

from __future__ import annotations

import enum

import numpy as np


class QC(enum.IntFlag):
    """Bit flags stored as uint16 ``quality_flag`` (no ``_FillValue``; 0 = nothing flagged)."""

    RFI_SUSPECTED = 1 << 0
    PRECIPITATION = 1 << 1
    WATER_CONTAMINATION = 1 << 2
    INSUFFICIENT_OBS = 1 << 3
    OPEN_WATER_DOMINATED = 1 << 4
    PERMANENT_SNOW_ICE = 1 << 5
    FROZEN_GROUND = 1 << 6
    SNOW_COVER = 1 << 7
    RETRIEVAL_NOT_CONVERGED = 1 << 8
    DENSE_VEGETATION = 1 << 9
    OUT_OF_RANGE_TB = 1 << 10
    NO_REFERENCE = 1 << 11
    OUTSIDE_SENSOR_COVERAGE = 1 << 12


QC_DTYPE = np.uint16


def flag_attrs() -> dict:
    """CF ``flag_masks`` / ``flag_meanings`` attrs describing :class:`QC`."""
    members = list(QC)
    return {
        "flag_masks": np.array([int(m) for m in members], dtype=QC_DTYPE),
        "flag_meanings": " ".join(m.name.lower() for m in members),
        "units": "1",
        "long_name": "quality bit flags",
    }
