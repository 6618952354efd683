"""GPM PPS Level-1C and 1C-R intercalibrated brightness temperatures (HDF5, V07).

One reader for every constellation radiometer in the PPS 1C format: TMI (TRMM), GMI (GPM),
AMSR2 (GCOM-W1), AMSR-E (Aqua), ...  A granule has swath groups ``S1`` … ``Sn`` each holding
``Latitude``/``Longitude`` (nscan, npixel), ``Tc`` (nscan, npixel, nchannel) in K,
``Quality`` (nscan, npixel), ``ScanTime/{Year,Month,DayOfMonth,Hour,Minute,Second,MilliSecond}``
(nscan,) and ``incidenceAngle`` (nscan, npixel, ninc) with ``incidenceAngleIndex``.  The root
attribute ``FileHeader`` names the instrument (→ catalog sensor) and the ``Tc`` attribute
``LongName`` lists the channels (``1) 10.65 GHz V-Pol 2) 10.65 GHz H-Pol …``), which are mapped
to catalog labels by nearest frequency and same polarization (channels without a catalog
counterpart, e.g. GMI 166/183 GHz, are skipped).

Quality (PPS 1C file specification [K]): 0 good; positive values are warnings (2 = possible
RFI → ``QC.RFI_SUSPECTED``; others kept); negative values (missing, unphysical, bad
geolocation, missing channel, …) make every channel of the pixel unusable.
"""

from __future__ import annotations

import numpy as np

from pipeline import errors
from pipeline.ingest import common
from pipeline.qc import QC

PRODUCT = "GPM 1C"
# FileHeader InstrumentName → catalog sensor name.
INSTRUMENTS = {"TMI": "tmi", "GMI": "gmi", "AMSR2": "amsr2", "AMSRE": "amsre", "AMSR-E": "amsre"}
QUALITY_RFI = 2
SCAN_TIME_FIELDS = ("Year", "Month", "DayOfMonth", "Hour", "Minute", "Second", "MilliSecond")


def matches(h5) -> bool:
    """True for a PPS HDF5 granule of a 1C algorithm (``FileHeader`` AlgorithmID ``1C…``)."""
    if "FileHeader" not in h5.attrs:
        return False
    return header(h5).get("AlgorithmID", "").upper().startswith("1C")


def header(h5) -> dict[str, str]:
    """The ``FileHeader`` root attribute as a dict (``KEY=value;`` lines)."""
    text = common.attr_text(h5.attrs.get("FileHeader", b""))
    out = {}
    for line in text.replace("\n", "").split(";"):
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _scan_times(grp) -> np.ndarray:
    """UTC time of each scan, ``datetime64[ns]`` (nscan,), NaT where any field is fill."""
    f = {k: np.asarray(grp[k][()], np.int64) for k in SCAN_TIME_FIELDS}
    ok = (
        (f["Year"] > 1900) & (f["Month"] >= 1) & (f["Month"] <= 12) & (f["DayOfMonth"] >= 1)
        & (f["Hour"] >= 0) & (f["Minute"] >= 0) & (f["Second"] >= 0) & (f["MilliSecond"] >= 0)
    )
    year = np.where(ok, f["Year"], 1970) - 1970
    month = np.where(ok, f["Month"], 1) - 1
    days = (year.astype("datetime64[Y]") + month.astype("timedelta64[M]")).astype("datetime64[D]")
    days = days + (np.where(ok, f["DayOfMonth"], 1) - 1).astype("timedelta64[D]")
    ms = ((f["Hour"] * 60 + f["Minute"]) * 60 + f["Second"]) * 1000 + f["MilliSecond"]
    t = days.astype("datetime64[ns]") + np.where(ok, ms, 0).astype("timedelta64[ms]")
    return np.where(ok, t, np.datetime64("NaT")).astype("datetime64[ns]")


def _read_swath(grp, sensor: str, name: str, label: str) -> common.Swath | None:
    need = ["Latitude", "Longitude", "Tc", "Quality", *(f"ScanTime/{k}" for k in SCAN_TIME_FIELDS)]
    common.require(grp, need, name, f"{PRODUCT} swath {label}")
    tc = grp["Tc"]
    if tc.ndim != 3:
        raise errors.InputDataError(f"{name}: {label}/Tc has {tc.ndim} dims, expected 3")
    found = common.parse_channel_list(common.attr_text(tc.attrs.get("LongName", b"")))
    if len(found) != tc.shape[2]:
        raise errors.InputDataError(
            f"{name}: {label}/Tc LongName lists {len(found)} channels but Tc has {tc.shape[2]}"
        )
    labels = common.map_channels(sensor, found)
    keep = [i for i, lab in enumerate(labels) if lab is not None]
    if not keep:
        return None
    nscan, npix = tc.shape[:2]
    lat = common.read_float(grp["Latitude"])
    lon = common.read_float(grp["Longitude"])
    if lat.shape != (nscan, npix) or lon.shape != (nscan, npix):
        raise errors.InputDataError(
            f"{name}: {label}/Latitude shape {lat.shape} does not match Tc {tc.shape[:2]}"
        )
    lat[np.abs(lat) > 90] = np.nan
    lon[np.abs(lon) > 180] = np.nan
    tb = common.read_float(tc)[:, :, keep].reshape(nscan * npix, len(keep))
    quality = np.asarray(grp["Quality"][()], np.int16).reshape(-1)
    bad = np.repeat((quality < 0)[:, None], len(keep), axis=1)
    flags = np.where(quality == QUALITY_RFI, np.uint16(QC.RFI_SUSPECTED), 0).astype(np.uint16)
    time = np.repeat(_scan_times(grp["ScanTime"]), npix)
    inc = None
    if "incidenceAngle" in grp:
        ia = common.read_float(grp["incidenceAngle"])
        if ia.ndim == 3 and ia.shape[:2] == (nscan, npix):
            inc = ia[:, :, 0].reshape(-1).astype(np.float32)
    return common.Swath(
        channels=tuple(labels[i] for i in keep),
        lat=lat.reshape(-1),
        lon=lon.reshape(-1),
        time=time,
        tb=tb.astype(np.float32),
        bad=bad,
        flags=flags,
        incidence_deg=inc,
    )


def read(h5, name: str) -> common.Granule:
    """Read a PPS 1C/1C-R granule into a :class:`Granule`; the sensor comes from FileHeader."""
    if "FileHeader" not in h5.attrs:
        raise errors.InputDataError(f"{name}: not a {PRODUCT} file: no FileHeader attribute")
    hdr = header(h5)
    algo = hdr.get("AlgorithmID", "")
    if not algo.upper().startswith("1C"):
        raise errors.InputDataError(f"{name}: FileHeader AlgorithmID {algo!r} is not a 1C product")
    instrument = hdr.get("InstrumentName", "")
    if instrument.upper() not in INSTRUMENTS:
        raise errors.InputDataError(
            f"{name}: FileHeader InstrumentName {instrument!r} is not in the sensor catalog "
            f"(known: {', '.join(sorted(INSTRUMENTS))})"
        )
    sensor = INSTRUMENTS[instrument.upper()]
    groups = sorted(
        (k for k in h5.keys() if k.startswith("S") and k[1:].isdigit()), key=lambda k: int(k[1:])
    )
    if not groups:
        raise errors.InputDataError(f"{name}: {PRODUCT} file has no swath groups S1..Sn")
    swaths = [s for g in groups if (s := _read_swath(h5[g], sensor, name, g)) is not None]
    if not swaths:
        raise errors.InputDataError(
            f"{name}: no Tc channel of any swath maps to a {sensor} catalog channel"
        )
    product = f"{hdr.get('FileName', '').split('.')[0]} {algo} {hdr.get('AlgorithmVersion', '')}"
    return common.Granule(
        name=name, family="gpm_1c", sensor=sensor, swaths=tuple(swaths),
        product=f"{product} {hdr.get('ProductVersion', '')}".strip(),
    )
