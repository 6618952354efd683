"""Read the SMAP L4C Biome Properties Look-Up Table (BPLUT) CSV into TCF parameters.

The operational table (``SMAP_BPLUT_2020-07-31.csv`` from pyl4c, release line
``L4_C_SUBSYSTEM_OPS_v7``; see ``shared/data/real/pyl4c_bplut/README.txt``) has ``#`` comment
lines, the column names in the ``# LC_index,LC_Label,…`` comment and one row per PFT 1–8.

Units and traps (science.md §2.3):

* ``SMrz_min/max`` and ``SMtop_min/max`` are root-zone / surface wetness in **percent** in this
  CSV and in pyl4c's ``TCF``; the agstack JSON stores them as fractions.  The reader takes the
  declared unit (``wetness_units``), converts fractions to percent, and refuses a table whose
  values contradict the declaration (all maxima ≤ 1 declared as percent, or > 1 as fraction).
* ``fraut`` is 1 − CUE.
* ``kstr`` and ``kslw`` are the structural and recalcitrant decay rates *relative to* ``kopt``.
* ``Tsoil_beta1``/``Tsoil_beta2`` must be 66.02 K and 227.13 K (fixed in :mod:`models.l4c`).
* Temperatures are K and VPD Pa; a table in °C or kPa is refused.

The result is a :class:`Bplut`: PFT-indexed arrays of length 9 (index 0 NaN) keyed by
:data:`models.l4c.PARAM_NAMES`, plus provenance (file, release, revision).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline import errors
from pipeline.io import stores

__all__ = ["COLUMNS", "Bplut", "parse_bplut", "read_bplut"]

# TCF parameter name -> BPLUT column (``cue`` and the relative decay rates derived below).
COLUMNS = {
    "lue": "LUEmax",
    "tmin0": "Tmin_min_K",
    "tmin1": "Tmin_max_K",
    "vpd0": "VPD_min_Pa",
    "vpd1": "VPD_max_Pa",
    "smrz0": "SMrz_min",
    "smrz1": "SMrz_max",
    "ft0": "FT_min",
    "cue": "fraut",
    "tsoil": "Tsoil_beta0",
    "smsf0": "SMtop_min",
    "smsf1": "SMtop_max",
    "kopt": "kopt",
    "k_str": "kstr",
    "k_rec": "kslw",
    "f_met": "fmet",
    "f_str": "fstr",
}
_WETNESS = ("smrz0", "smrz1", "smsf0", "smsf1")


@dataclasses.dataclass(frozen=True)
class Bplut:
    """TCF parameters per PFT.

    Attributes:
      table: Parameter name → float64 array of length 9 indexed by PFT code (index 0 NaN).
        Wetness ramps in percent, temperatures in K, VPD in Pa, ``cue`` = 1 − fraut.
      source: File or URL read.
      attrs: Provenance from the header comments (``file``, ``release``, ``revised``).
    """

    table: Mapping[str, np.ndarray]
    source: str
    attrs: Mapping[str, str]

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (PFT label → parameter → value) for reports."""
        labels = {1: "ENF", 2: "EBF", 3: "DNF", 4: "DBF", 5: "SHR", 6: "GRS", 7: "CCP", 8: "BCP"}
        return {
            labels[p]: {k: float(v[p]) for k, v in self.table.items()} for p in range(1, 9)
        }


def _fail(source: str, msg: str) -> errors.InputDataError:
    return errors.InputDataError(f"{source}: {msg}")


def parse_bplut(text: str, source: str = "<bplut>", *, wetness_units: str = "percent") -> Bplut:
    """Parse BPLUT CSV text (see the module docstring for units and checks).

    Args:
      text: The CSV content.
      source: Name used in error messages and provenance.
      wetness_units: ``"percent"`` (the CSV and pyl4c) or ``"fraction"`` (agstack JSON style).

    Raises:
      InputDataError: missing columns or PFT rows, or values contradicting the units.
    """
    if wetness_units not in ("percent", "fraction"):
        raise ValueError(f"wetness_units must be 'percent' or 'fraction', not {wetness_units!r}")
    header: list[str] | None = None
    attrs: dict[str, str] = {}
    rows: list[list[str]] = []
    for line in io.StringIO(text):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            body = s.lstrip("#").strip()
            if body.startswith("LC_index"):
                header = [c.strip() for c in body.split(",")]
            elif ":" in body:
                key, _, val = body.partition(":")
                if key.strip().lower() in ("file", "release", "revised", "uuid"):
                    attrs[key.strip().lower()] = val.strip()
            continue
        rows.append([c.strip() for c in s.split(",")])
    if header is None:
        if rows and rows[0] and rows[0][0] == "LC_index":
            header, rows = rows[0], rows[1:]
        else:
            raise _fail(source, "no 'LC_index,…' header line; not a BPLUT CSV")
    missing = sorted({c for c in COLUMNS.values()} - set(header)
                     | ({"Tsoil_beta1", "Tsoil_beta2"} - set(header)))
    if missing:
        raise _fail(source, f"BPLUT columns missing: {', '.join(missing)}")
    col = {name: i for i, name in enumerate(header)}
    raw: dict[str, np.ndarray] = {c: np.full(9, np.nan) for c in header if c != "LC_Label"}
    seen = set()
    for r in rows:
        if len(r) != len(header):
            raise _fail(source, f"row {r[:2]} has {len(r)} fields, header has {len(header)}")
        try:
            pft = int(r[col["LC_index"]])
        except ValueError as e:
            raise _fail(source, f"variable 'LC_index': not an integer in row {r[:2]}") from e
        if not 1 <= pft <= 8:
            continue
        seen.add(pft)
        for c, arr in raw.items():
            try:
                arr[pft] = float(r[col[c]])
            except ValueError:
                arr[pft] = np.nan  # non-numeric columns (model_code) are not parameters
    if seen != set(range(1, 9)):
        raise _fail(source, f"PFT rows missing: {sorted(set(range(1, 9)) - seen)}")

    table = {name: raw[c].copy() for name, c in COLUMNS.items()}
    table["cue"] = 1.0 - raw["fraut"]
    for name, arr in table.items():
        if not np.all(np.isfinite(arr[1:])):
            raise _fail(source, f"variable '{COLUMNS[name]}': non-numeric or missing values")
    _check_units(table, raw, source, wetness_units)
    if wetness_units == "fraction":
        for k in _WETNESS:
            table[k] = table[k] * 100.0
    attrs["wetness_units_in_file"] = wetness_units
    return Bplut(table=table, source=source, attrs=attrs)


def _check_units(table, raw, source: str, wetness_units: str) -> None:
    wet_max = max(np.nanmax(table["smrz1"][1:]), np.nanmax(table["smsf1"][1:]))
    if wetness_units == "percent" and wet_max <= 1.0:
        raise _fail(source, f"variables 'SMrz_max'/'SMtop_max' ≤ 1 (max {wet_max:g}) look like "
                            "fractions but wetness_units='percent'")
    if wetness_units == "fraction" and wet_max > 1.0:
        raise _fail(source, f"variables 'SMrz_max'/'SMtop_max' > 1 (max {wet_max:g}) look like "
                            "percent but wetness_units='fraction'")
    if np.nanmin(table["tmin0"][1:]) < 150.0:
        raise _fail(source, "variable 'Tmin_min_K' < 150: temperatures must be in K")
    if np.nanmax(table["vpd1"][1:]) < 100.0:
        raise _fail(source, "variable 'VPD_max_Pa' < 100: VPD must be in Pa (not kPa)")
    for c in ("fraut", "fmet", "fstr", "FT_min"):
        v = raw[c][1:]
        if np.any((v < 0) | (v > 1)):
            raise _fail(source, f"variable '{c}' outside [0, 1]")
    for c, want in (("Tsoil_beta1", 66.02), ("Tsoil_beta2", 227.13)):
        if not np.allclose(raw[c][1:], want):
            raise _fail(source, f"variable '{c}' != {want} (the TCF model fixes it)")


def read_bplut(url: str, *, wetness_units: str = "percent",
               storage_options: Mapping[str, Any] | None = None) -> Bplut:
    """Read a BPLUT CSV from a path or fsspec URL (see :func:`parse_bplut`)."""
    data = stores.read_bytes(str(url), storage_options)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail(str(url), "not a UTF-8 text file") from e
    return parse_bplut(text, str(url), wetness_units=wetness_units)
