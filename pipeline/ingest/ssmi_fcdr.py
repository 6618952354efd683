"""CSU SSM/I Fundamental Climate Data Record swaths (netCDF-4, ``CSU_SSMI_FCDR_*.nc``).

NOAA CDR (Sapiano et al. 2013; Berg et al.).  Low-resolution channels ``fcdr_tb19v/19h/22v/
37v/37h`` on (nscan_lores, 64) with ``lat_lores``/``lon_lores``/``eia_lores``/
``quality_lores`` and ``scan_time_lores`` (s since 1987-01-01 UTC); high-resolution
``fcdr_tb85v/85h`` on (nscan_hires, 128) with the ``_hires`` companions.  Channel frequencies
and polarizations come from each variable's ``long_name`` ("… of 19.35 GHz
horizontally-polarized brightness temperature") and are mapped onto the ``ssmi`` catalog labels.

Quality (the file's ``quality_*`` comment): 0 good, 1–99 minor issue (kept), 100–255 major issue
(set to missing; stored as int8 so values ≥ 128 wrap negative and are read back as uint8).
"""

from __future__ import annotations

import re

import numpy as np

from pipeline import errors
from pipeline.ingest import common

PRODUCT = "CSU SSM/I FCDR"
SENSOR = "ssmi"
RESOLUTIONS = ("lores", "hires")
EPOCH = np.datetime64("1987-01-01T00:00:00", "ns")
MAJOR_ISSUE = 100
_LONG_NAME_RE = re.compile(r"(\d+(?:\.\d+)?)\s*GHz\s+(vertically|horizontally)", re.I)


def matches(h5) -> bool:
    """True for a CSU SSM/I FCDR swath file."""
    return "fcdr_tb19v" in h5 and "lat_lores" in h5


def _channel(var, name: str) -> tuple[float, str]:
    m = _LONG_NAME_RE.search(common.attr_text(var.attrs.get("long_name", b"")))
    if not m:
        raise errors.InputDataError(
            f"{name}: variable {var.name.lstrip('/')} long_name names no frequency/polarization"
        )
    return float(m.group(1)), "V" if m.group(2).lower().startswith("v") else "H"


def _read_resolution(h5, res: str, name: str) -> common.Swath | None:
    if f"lat_{res}" not in h5:
        return None
    shape = h5[f"lat_{res}"].shape
    tb_vars = sorted(k for k in h5.keys() if k.startswith("fcdr_tb") and h5[k].shape == shape)
    if not tb_vars:
        return None
    common.require(h5, [f"lon_{res}", f"scan_time_{res}", f"quality_{res}"], name, PRODUCT)
    found = [_channel(h5[v], name) for v in tb_vars]
    labels = common.map_channels(SENSOR, found)
    keep = [i for i, lab in enumerate(labels) if lab is not None]
    if not keep:
        return None
    lat = common.read_float(h5[f"lat_{res}"])
    lon = common.read_float(h5[f"lon_{res}"])
    if lon.shape != lat.shape:
        raise errors.InputDataError(f"{name}: lon_{res} shape {lon.shape} != lat_{res} {lat.shape}")
    lat[np.abs(lat) > 90] = np.nan
    lon[np.abs(lon) > 180] = np.nan
    nscan, npix = lat.shape
    secs = common.read_float(h5[f"scan_time_{res}"]).reshape(-1)
    if secs.shape != (nscan,):
        raise errors.InputDataError(
            f"{name}: scan_time_{res} has {secs.shape[0]} scans, not {nscan}"
        )
    ok = np.isfinite(secs)
    t = EPOCH + np.where(ok, np.round(secs * 1e3), 0).astype("timedelta64[ms]")
    t = np.where(ok, t, np.datetime64("NaT")).astype("datetime64[ns]")
    tb = np.stack([common.read_float(h5[tb_vars[i]]).reshape(-1) for i in keep], axis=1)
    q = np.asarray(h5[f"quality_{res}"][()]).astype(np.int8).view(np.uint8).reshape(-1)
    bad = np.repeat((q >= MAJOR_ISSUE)[:, None], len(keep), axis=1)
    inc = None
    if f"eia_{res}" in h5:
        inc = common.read_float(h5[f"eia_{res}"]).reshape(-1).astype(np.float32)
    return common.Swath(
        channels=tuple(labels[i] for i in keep),
        lat=lat.reshape(-1),
        lon=lon.reshape(-1),
        time=np.repeat(t, npix),
        tb=tb.astype(np.float32),
        bad=bad,
        flags=np.zeros(nscan * npix, np.uint16),
        incidence_deg=inc,
    )


def read(h5, name: str) -> common.Granule:
    """Read both resolutions of an SSM/I FCDR swath file into a :class:`Granule` (``ssmi``)."""
    common.require(h5, ["fcdr_tb19v", "lat_lores", "lon_lores", "scan_time_lores"], name, PRODUCT)
    swaths = [s for r in RESOLUTIONS if (s := _read_resolution(h5, r, name)) is not None]
    if not swaths:
        raise errors.InputDataError(f"{name}: no fcdr_tb* channel maps to an ssmi catalog channel")
    version = common.attr_text(h5.attrs.get("product_version", b""))
    return common.Granule(
        name=name, family="ssmi_fcdr", sensor=SENSOR, swaths=tuple(swaths),
        product=f"{PRODUCT} {version}".strip(),
    )
