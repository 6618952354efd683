"""Granule readers: real product files → the common in-memory :class:`Granule` form.

Readers parse an already-opened HDF5 / netCDF-4 file (``h5py.File``); fetching bytes from a
URL is :mod:`pipeline.io`'s job.  :data:`READERS` is the explicit registry product family →
``(matches, read)``; :func:`detect_family` picks the family from the file's own structure, not
from its name.  Adding a product = one module with ``matches(h5)`` and ``read(h5, name)`` plus
one line here (see docs/ingest.md).

>>> from pipeline import ingest
>>> granule = ingest.read_bytes(data, "SMAP_L2_SM_P_02801_A_20150811T013002_R18290_001.h5")
>>> granule.sensor, granule.swaths[0].channels
('smap', ('1.41V', '1.41H'))
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable

import h5py

from pipeline import errors
from pipeline.ingest import gpm_1c, smap_l2, smap_l3, ssmi_fcdr
from pipeline.ingest.common import Granule, Swath

__all__ = ["READERS", "Granule", "Reader", "Swath", "detect_family", "read_bytes", "read_h5"]


@dataclasses.dataclass(frozen=True)
class Reader:
    """A product family: how to recognise a file and how to read it."""

    matches: Callable[[h5py.File], bool]
    read: Callable[[h5py.File, str], Granule]
    description: str


READERS: dict[str, Reader] = {
    "smap_l2": Reader(smap_l2.matches, smap_l2.read, smap_l2.PRODUCT),
    "smap_l3": Reader(smap_l3.matches, smap_l3.read, smap_l3.PRODUCT),
    "gpm_1c": Reader(gpm_1c.matches, gpm_1c.read, "GPM 1C / 1C-R (TMI, GMI, AMSR2, AMSR-E)"),
    "ssmi_fcdr": Reader(ssmi_fcdr.matches, ssmi_fcdr.read, ssmi_fcdr.PRODUCT),
}

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def detect_family(h5: h5py.File, name: str) -> str:
    """The :data:`READERS` family whose ``matches`` accepts the file (one-line error if none)."""
    for family, reader in READERS.items():
        try:
            if reader.matches(h5):
                return family
        except (KeyError, OSError, ValueError, TypeError):
            continue
    top = ", ".join(sorted(h5.keys())[:5]) or "nothing"
    raise errors.InputDataError(
        f"{name}: not a recognised product (top-level objects: {top}); readers: "
        + ", ".join(f"{k} ({r.description})" for k, r in READERS.items())
    )


def read_h5(h5: h5py.File, name: str, family: str | None = None) -> Granule:
    """Read an opened file with the given (or detected) family; errors are one line."""
    family = family or detect_family(h5, name)
    if family not in READERS:
        raise errors.InputDataError(f"{name}: unknown product family {family!r}")
    try:
        return READERS[family].read(h5, name)
    except errors.TbcubeError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise errors.InputDataError(
            f"{name}: unreadable {family} data (truncated or corrupt?): {reason[:200]}"
        ) from e


def read_bytes(data: bytes, name: str, family: str | None = None) -> Granule:
    """Read a granule from its bytes (HDF5 or netCDF-4); every failure is one line naming it."""
    if len(data) == 0:
        raise errors.InputDataError(f"{name}: empty file (0 bytes)")
    if data[:4] in (b"CDF\x01", b"CDF\x02"):
        raise errors.InputDataError(f"{name}: netCDF-3 classic files are not supported")
    if data[:8] != _HDF5_MAGIC:
        raise errors.InputDataError(
            f"{name}: not an HDF5/netCDF-4 file (no HDF5 signature in the first bytes)"
        )
    try:
        h5 = h5py.File(io.BytesIO(data), "r")
    except OSError as e:
        reason = " ".join(str(e).split())[:160]
        raise errors.InputDataError(
            f"{name}: cannot open HDF5 ({len(data)} bytes; truncated or corrupt?): {reason}"
        ) from e
    with h5:
        return read_h5(h5, name, family)

