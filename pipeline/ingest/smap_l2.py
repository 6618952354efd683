"""SMAP radiometer Level-2 soil-moisture half-orbits (``SPL2SMP``, ``SMAP_L2_SM_P_*.h5``).

Each half-orbit lists the 36 km EASE-Grid 2.0 (M36) cells it saw as 1-D arrays in
``/Soil_Moisture_Retrieval_Data``: ``latitude``/``longitude`` (cell centre), ``EASE_row_index``
/``EASE_column_index``, ``tb_h_corrected``/``tb_v_corrected`` (K, water-body corrected),
``tb_qual_flag_h``/``_v``, ``tb_time_utc`` (mean footprint time, ISO UTC), ``surface_flag``,
``boresight_incidence`` and ``freeze_thaw_fraction``.  The cells are returned as point
observations at the cell centres, so gridding onto M36 puts each back in its own cell and any
other EASE-Grid 2.0 grid (N36, M09, ...) receives it by drop-in-bucket.

Quality (SMAP L2/L3 product specification, bit meanings in the files' ``flag_meanings``):
``tb_qual_flag`` bit 0 (quality not recommended) or bit 1 (out of range) marks a sample bad;
bit 2 (RFI detected) sets ``QC.RFI_SUSPECTED``; ``surface_flag`` bit 0 (static water body) or
bit 2 (coastal proximity) sets ``QC.WATER_CONTAMINATION``.
"""

from __future__ import annotations

import numpy as np

from pipeline import errors
from pipeline.ingest import common
from pipeline.qc import QC

GROUP = "Soil_Moisture_Retrieval_Data"
PRODUCT = "SMAP L2_SM_P half-orbit"
# tb_qual_flag bits that make a sample unusable, and the one that reports RFI.
BAD_QUALITY_BITS = (1 << 0) | (1 << 1)
RFI_BIT = 1 << 2
# surface_flag bits that mean open water in or near the cell.
WATER_BITS = (1 << 0) | (1 << 2)
U16_FILL = 65534
CHANNELS = (("1.41V", "v"), ("1.41H", "h"))
TB_VARS = ("tb_v_corrected", "tb_h_corrected")


def matches(h5) -> bool:
    """True for an SPL2SMP half-orbit (1-D cell lists in the retrieval group)."""
    return GROUP in h5 and "latitude" in h5[GROUP] and h5[GROUP]["latitude"].ndim == 1


def swath_from_group(grp, name: str, product: str, suffix: str = "") -> common.Swath:
    """Build a :class:`Swath` from a SMAP L2/L3 retrieval group (1-D or 2-D arrays).

    Args:
      grp: The HDF5 group (``Soil_Moisture_Retrieval_Data[_AM|_PM]``).
      name: File name, for error messages.
      product: Product description, for error messages.
      suffix: Variable-name suffix of the group (``""`` or ``"_pm"``).
    """
    need = ["latitude", "longitude", "tb_time_utc", *TB_VARS, "tb_qual_flag_v", "tb_qual_flag_h"]
    common.require(grp, [v + suffix for v in need], name, product)
    lat = common.read_float(grp["latitude" + suffix]).ravel()
    lon = common.read_float(grp["longitude" + suffix]).ravel()
    lat[(np.abs(lat) > 90)] = np.nan
    lon[(np.abs(lon) > 180)] = np.nan
    time = common.parse_iso_utc(grp["tb_time_utc" + suffix][()]).ravel()
    tb = np.stack([common.read_float(grp[v + suffix]).ravel() for v in TB_VARS], axis=1)
    bad = np.zeros(tb.shape, bool)
    flags = np.zeros(len(lat), np.uint16)
    for k, (_, pol) in enumerate(CHANNELS):
        q = np.asarray(grp[f"tb_qual_flag_{pol}{suffix}"][()]).ravel().astype(np.uint32)
        known = q != U16_FILL
        bad[:, k] = known & ((q & BAD_QUALITY_BITS) != 0)
        flags |= np.where(known & ((q & RFI_BIT) != 0), np.uint16(QC.RFI_SUSPECTED), 0).astype(
            np.uint16
        )
    if "surface_flag" + suffix in grp:
        s = np.asarray(grp["surface_flag" + suffix][()]).ravel().astype(np.uint32)
        water = (s != U16_FILL) & ((s & WATER_BITS) != 0)
        flags |= np.where(water, np.uint16(QC.WATER_CONTAMINATION), 0).astype(np.uint16)
    inc = None
    if "boresight_incidence" + suffix in grp:
        inc = common.read_float(grp["boresight_incidence" + suffix]).ravel().astype(np.float32)
    anc = {}
    if "freeze_thaw_fraction" + suffix in grp:
        ftf = common.read_float(grp["freeze_thaw_fraction" + suffix]).ravel()
        ftf[(ftf < 0) | (ftf > 1)] = np.nan
        anc["freeze_thaw_fraction"] = ftf.astype(np.float32)
    return common.Swath(
        channels=tuple(c for c, _ in CHANNELS),
        lat=lat,
        lon=lon,
        time=time,
        tb=tb.astype(np.float32),
        bad=bad,
        flags=flags,
        incidence_deg=inc,
        ancillary=anc,
    )


def read(h5, name: str) -> common.Granule:
    """Read an SPL2SMP half-orbit into a :class:`Granule` (sensor ``smap``)."""
    common.require(h5, [GROUP], name, PRODUCT)
    grp = h5[GROUP]
    common.require(grp, ["latitude"], name, PRODUCT)
    if grp["latitude"].ndim != 1:
        raise errors.InputDataError(
            f"{name}: {GROUP}/latitude is not 1-D: not an {PRODUCT} file"
        )
    return common.Granule(
        name=name,
        family="smap_l2",
        sensor="smap",
        swaths=(swath_from_group(grp, name, PRODUCT),),
        product=short_name(h5, "SPL2SMP"),
    )


def short_name(h5, default: str) -> str:
    """``shortName CompositeReleaseID`` from the SMAP ``/Metadata`` tree, else ``default``."""
    try:
        ident = h5["Metadata/DatasetIdentification"].attrs
        crid = common.attr_text(ident.get("CompositeReleaseID", ""))
        return f"{common.attr_text(ident['shortName'])} {crid}".strip()
    except (KeyError, TypeError):
        return default
