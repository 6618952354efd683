"""The common in-memory form every granule reader returns, and small parsing helpers.

A reader turns one already-opened granule (an ``h5py.File``) into a :class:`Granule`: a tuple of
:class:`Swath` objects, each a flat list of ``n`` observations (footprints or grid cells) that
share geolocation and carry ``k`` channels labelled as in the sensor catalog.  Gridding
(:mod:`pipeline.ingest.gridding`) turns any :class:`Granule` into the TB archive layout.

Conventions:
  * fill values are already replaced by NaN (TB, lat, lon) or NaT (time);
  * ``bad`` marks samples the *source* says not to use (quality flags); they are masked and
    counted by the gridding, not silently dropped by the reader;
  * ``flags`` carries per-observation :class:`pipeline.qc.QC` bits (RFI, water, ...) that are
    OR-ed into the cell's ``quality_flag``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

import numpy as np

from pipeline import errors, sensors

__all__ = [
    "Granule",
    "Swath",
    "attr_text",
    "map_channels",
    "parse_iso_utc",
    "require",
]

# A channel in a file maps to a catalog channel of the same polarization whose frequency is
# within this relative distance (10.65 vs 10.65, 36.64 vs 36.5, 89 vs 89.0; 166 or 183 GHz have
# no catalog counterpart and are skipped).
FREQUENCY_TOLERANCE = 0.02


@dataclasses.dataclass(frozen=True)
class Swath:
    """Observations sharing geolocation (one swath group, one resolution, one grid product).

    Attributes:
      channels: Catalog channel labels, length k.
      lat, lon: Observation centre [deg], shape (n,), float64; NaN where geolocation is fill.
      time: Observation time, UTC, shape (n,), ``datetime64[ns]``; NaT where missing.
      tb: Brightness temperature [K], shape (n, k), float32; NaN where the file has fill.
      bad: Source quality says "do not use", shape (n, k), bool.
      flags: QC bits (:class:`pipeline.qc.QC`) of each observation, shape (n,), uint16.
      incidence_deg: Earth incidence angle [deg], shape (n,), float32, or None.
      ancillary: Extra per-observation fields [their own units], each shape (n,), float32,
        gridded alongside TB for reports (never written to the TB archive).
    """

    channels: tuple[str, ...]
    lat: np.ndarray
    lon: np.ndarray
    time: np.ndarray
    tb: np.ndarray
    bad: np.ndarray
    flags: np.ndarray
    incidence_deg: np.ndarray | None = None
    ancillary: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        n, k = len(self.lat), len(self.channels)
        shapes = {
            "lon": (self.lon.shape, (n,)),
            "time": (self.time.shape, (n,)),
            "tb": (self.tb.shape, (n, k)),
            "bad": (self.bad.shape, (n, k)),
            "flags": (self.flags.shape, (n,)),
        }
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"swath field {name} has shape {got}, expected {want}")

    @property
    def size(self) -> int:
        """Number of TB samples (observations × channels)."""
        return int(self.tb.size)


@dataclasses.dataclass(frozen=True)
class Granule:
    """One input file, read.

    Attributes:
      name: File name (no directory).
      family: Reader family (key of :data:`pipeline.ingest.READERS`).
      sensor: Catalog sensor name (``smap``, ``tmi``, ``ssmi``, ...).
      swaths: The file's observation groups.
      product: Product description for provenance (e.g. ``"SPL3SMP R13080"``).
    """

    name: str
    family: str
    sensor: str
    swaths: tuple[Swath, ...]
    product: str = ""


# --- helpers used by several readers ------------------------------------------------------
def attr_text(value) -> str:
    """An HDF5 attribute (bytes, numpy bytes, 1-element array or str) as ``str``."""
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else ""
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", "replace")
    return str(value)


def require(h5, paths: Sequence[str], name: str, product: str) -> None:
    """Raise a one-line :class:`InputDataError` if any dataset/group in ``paths`` is missing."""
    missing = [p for p in paths if p not in h5]
    if missing:
        raise errors.InputDataError(
            f"{name}: not a valid {product} file: missing {', '.join(missing[:4])}"
            + (f" (+{len(missing) - 4} more)" if len(missing) > 4 else "")
        )


def read_float(ds, fill_tol: float = 0.5) -> np.ndarray:
    """Read an HDF5 dataset as float64 with its ``_FillValue`` (and ≤ -9990 codes) set to NaN."""
    arr = np.asarray(ds[()], np.float64)
    fill = ds.attrs.get("_FillValue")
    bad = ~np.isfinite(arr) | (arr <= -9990.0)
    if fill is not None:
        f = float(np.asarray(fill).ravel()[0])
        bad |= np.abs(arr - f) <= fill_tol * max(1e-6, abs(f) * 1e-6) + 1e-3
    arr[bad] = np.nan
    return arr


def parse_iso_utc(values: np.ndarray) -> np.ndarray:
    """ISO-8601 UTC strings (bytes or str, trailing ``Z`` optional) → ``datetime64[ns]``.

    Unparseable entries (fill strings, empty) become NaT.
    """
    text = np.char.strip(np.asarray(values).astype("U32"))
    text = np.char.rstrip(text, "Z")
    # SMAP writes unknown milliseconds as ".***" (seen in SPL3SMP R13080): keep the seconds.
    text = np.char.replace(text, ".***", "")
    out = np.full(text.shape, np.datetime64("NaT"), "datetime64[ns]")
    ok = np.char.str_len(text) >= 19
    ok &= np.char.startswith(text, "1") | np.char.startswith(text, "2")
    flat_t, flat_ok = text.ravel(), ok.ravel()
    flat_out = out.ravel()
    try:
        flat_out[flat_ok] = flat_t[flat_ok].astype("datetime64[ns]")
    except ValueError:
        for i in np.flatnonzero(flat_ok):
            try:
                flat_out[i] = np.datetime64(flat_t[i], "ns")
            except ValueError:
                flat_out[i] = np.datetime64("NaT")
    return flat_out.reshape(text.shape)


_POL = {"V": "V", "H": "H"}


def map_channels(
    sensor: str, found: Sequence[tuple[float, str]]
) -> list[str | None]:
    """Map (frequency GHz, polarization) pairs of a file onto catalog channel labels.

    The nearest catalog channel of the same polarization is taken when its frequency is within
    :data:`FREQUENCY_TOLERANCE` (relative); otherwise ``None`` (channel not archived).
    """
    cat = sensors.get(sensor)
    out: list[str | None] = []
    for freq, pol in found:
        best, best_d = None, np.inf
        for ch in cat.channels:
            if ch.polarization != _POL.get(pol.upper()):
                continue
            d = abs(ch.frequency_ghz - freq) / ch.frequency_ghz
            if d < best_d:
                best, best_d = ch.label, d
        out.append(best if best_d <= FREQUENCY_TOLERANCE else None)
    return out


_CHANNEL_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:\+/-\s*\d+(?:\.\d+)?\s*)?GHz\s+([VH])-?Pol", re.I)


def parse_channel_list(long_name: str) -> list[tuple[float, str]]:
    """``"1) 10.65 GHz V-Pol 2) 10.65 GHz H-Pol"`` → ``[(10.65, "V"), (10.65, "H")]``."""
    return [(float(f), p.upper()) for f, p in _CHANNEL_RE.findall(long_name)]
