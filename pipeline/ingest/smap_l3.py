"""SMAP radiometer Level-3 daily soil moisture (``SPL3SMP``, ``SMAP_L3_SM_P_*.h5``).

Global 36 km EASE-Grid 2.0 (M36, 406 × 964) daily composites.  Early releases (e.g. R13080)
have one group ``/Soil_Moisture_Retrieval_Data`` holding the 6 AM descending composite; later
releases have ``/Soil_Moisture_Retrieval_Data_AM`` and ``/Soil_Moisture_Retrieval_Data_PM``
(PM variables carry a ``_pm`` suffix).  Every group present is read; cells are returned as
point observations at their centres with their own ``tb_time_utc``, so the same gridding rules
(pass and date by local solar time) apply as for swaths.  Variables and quality bits are the
L2 ones (:mod:`pipeline.ingest.smap_l2`).
"""

from __future__ import annotations

from pipeline import errors
from pipeline.ingest import common, smap_l2

PRODUCT = "SMAP L3_SM_P daily"
GROUPS = (
    ("Soil_Moisture_Retrieval_Data", ""),
    ("Soil_Moisture_Retrieval_Data_AM", ""),
    ("Soil_Moisture_Retrieval_Data_PM", "_pm"),
)


def matches(h5) -> bool:
    """True for an SPL3SMP daily file (2-D retrieval groups)."""
    for grp, suffix in GROUPS:
        if grp in h5 and f"latitude{suffix}" in h5[grp]:
            return h5[grp][f"latitude{suffix}"].ndim == 2
    return False


def read(h5, name: str) -> common.Granule:
    """Read every AM/PM group of an SPL3SMP file into a :class:`Granule` (sensor ``smap``)."""
    swaths = []
    for grp, suffix in GROUPS:
        if grp not in h5:
            continue
        g = h5[grp]
        common.require(g, [f"latitude{suffix}"], name, PRODUCT)
        if g[f"latitude{suffix}"].ndim != 2:
            raise errors.InputDataError(
                f"{name}: {grp}/latitude{suffix} is not 2-D: not an {PRODUCT} file"
            )
        swaths.append(smap_l2.swath_from_group(g, name, PRODUCT, suffix))
    if not swaths:
        raise errors.InputDataError(
            f"{name}: not a valid {PRODUCT} file: no Soil_Moisture_Retrieval_Data[_AM|_PM] group"
        )
    return common.Granule(
        name=name,
        family="smap_l3",
        sensor="smap",
        swaths=tuple(swaths),
        product=smap_l2.short_name(h5, "SPL3SMP"),
    )
