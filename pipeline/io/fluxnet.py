"""Readers for eddy-covariance tower data and the SPL4CMDL product, producing contract datasets.

Three sources, one output layout (``towers/{collection}.zarr`` of docs/data-contract.md: dims
(site, time) daily; coords ``site``, ``lat``, ``lon``, ``igbp``, ``pft``; WGS84 ``crs``; fluxes in
g C m-2 d-1 with NEE > 0 a source):

* :func:`read_fluxnet_dd` — FLUXNET2015 / ONEFlux FULLSET daily (``DD``) CSV files.
  ``-9999`` is missing.  ``nee`` = ``NEE_VUT_REF``, ``gpp`` = ``GPP_NT_VUT_REF``, ``reco`` =
  ``RECO_NT_VUT_REF`` (``partition="DT"`` takes the daytime ``_DT_`` partition); the three QC
  fractions all come from ``NEE_VUT_REF_QC`` (the fraction of measured or good-quality gap-filled
  half-hours: GPP and RECO are derived from NEE and have no QC column of their own).  Drivers:
  ``TA_F`` (°C → K), ``SW_IN_F`` (W m-2), ``VPD_F`` (hPa → Pa), ``SWC_F_MDS_1`` (% → m3 m-3),
  ``TS_F_MDS_1`` (°C → K).  The DD file has no daily minimum temperature: ``tmin`` is ``TMIN``
  when a file has it, else the mean *night-time* temperature ``TA_F_NIGHT`` (recorded in the
  ``tmin`` attrs; it is warmer than the true minimum by a few K).
* :func:`read_fluxnet_zarr` — the half-hourly FLUXNET2015 Zarr (EXCITED-CO2 conversion; times in
  UTC, stamped at the end of each half-hour; fluxes in µmol CO2 m-2 s-1, ``ta`` °C, ``vpd`` hPa),
  aggregated to local-standard-time days (as the DD files): a day needs ≥ ``min_coverage`` of its
  48 half-hours; fluxes are daily means × 12.011e-6 × 86400 (µmol CO2 m-2 s-1 → g C m-2 d-1);
  ``reco`` = ``nee`` + ``gpp_nt`` (night-time partitioning); the store's ``nee``/``gpp_nt`` are the
  ``VUT_USTAR50`` variants (its daily means equal the DD file's ``NEE_VUT_USTAR50`` and
  ``GPP_NT_VUT_USTAR50`` to ~2e-4 g C m-2 d-1 at US-Wi7, not ``*_VUT_REF``, which differ by
  ~0.12 on average); QC = fraction of half-hours with
  ``nee_qc`` ≤ 1 (measured or good gap-fill); ``tmin`` = the minimum half-hourly ``ta``.
* :func:`read_spl4cmdl` — SMAP L4C daily HDF5 files (science.md §2.1: ``NEE/nee_mean``,
  ``GPP/gpp_mean``, ``RH/rh_mean`` and per-PFT ``NEE/nee_pft%d_mean`` … on M09), returning a
  gridded (time, y, x) product with ``reco = nee + gpp`` and per-PFT fluxes over a ``pft`` dim.

PFT assignment from IGBP (:data:`IGBP_TO_PFT`) is a documented, overridable choice: L4C has no
wetland class, and tundra wetlands (``WET``) are mapped to grass (GRS, 6) — science.md §2.3 says
tundra is mostly SHR/GRS.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pipeline import dims, errors, grid, schema
from pipeline.io import stores

__all__ = [
    "IGBP_TO_PFT",
    "UMOL_CO2_TO_G_C_PER_DAY",
    "read_fluxnet_dd",
    "read_fluxnet_zarr",
    "read_site_list",
    "read_spl4cmdl",
    "towers_dataset",
]

FILL = -9999.0
UMOL_CO2_TO_G_C_PER_DAY = 12.011e-6 * 86400.0  # µmol CO2 m-2 s-1 → g C m-2 d-1
FLUX_UNITS = "g C m-2 d-1"
# IGBP class → SMAP L4C PFT (1 ENF, 2 EBF, 3 DNF, 4 DBF, 5 SHR, 6 GRS, 7 CCP, 8 BCP; 0 none).
IGBP_TO_PFT = {
    "ENF": 1, "EBF": 2, "DNF": 3, "DBF": 4, "MF": 4, "CSH": 5, "OSH": 5, "WSA": 5, "SAV": 6,
    "GRA": 6, "WET": 6, "CRO": 7, "CVM": 7, "URB": 0, "SNO": 0, "BSV": 0, "WAT": 0,
}

_ATTRS = {
    "nee": ("net ecosystem exchange (positive: source)", FLUX_UNITS),
    "gpp": ("gross primary production", FLUX_UNITS),
    "reco": ("ecosystem respiration", FLUX_UNITS),
    "nee_qc": ("fraction of measured or good-quality gap-filled half-hours", "1"),
    "gpp_qc": ("fraction of measured or good-quality gap-filled half-hours (from NEE)", "1"),
    "reco_qc": ("fraction of measured or good-quality gap-filled half-hours (from NEE)", "1"),
    "ta": ("daily mean air temperature", "K"),
    "tmin": ("daily minimum air temperature", "K"),
    "sw_in": ("daily mean incoming shortwave radiation", "W m-2"),
    "vpd": ("daily mean vapour pressure deficit", "Pa"),
    "swc": ("daily mean soil water content, shallowest sensor", "m3 m-3"),
    "ts": ("daily mean soil temperature, shallowest sensor", "K"),
}
_STANDARD = {"ta": "air_temperature", "tmin": "air_temperature",
             "sw_in": "surface_downwelling_shortwave_flux_in_air",
             "ts": "soil_temperature", "swc": "volume_fraction_of_condensed_water_in_soil"}


# --- site metadata --------------------------------------------------------------------------
def read_site_list(url: str, storage_options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """FLUXNET site list CSV (``id, latitude, longitude, IGBP, …``) → DataFrame indexed by id."""
    df = pd.read_csv(io.BytesIO(stores.read_bytes(url, storage_options)))
    cols = {c.lower(): c for c in df.columns}
    need = [c for c in ("id", "latitude", "longitude", "igbp") if c not in cols]
    if need:
        raise errors.InputDataError(f"{url}: site list lacks columns {need}")
    out = pd.DataFrame({
        "lat": df[cols["latitude"]].astype(float).values,
        "lon": df[cols["longitude"]].astype(float).values,
        "igbp": df[cols["igbp"]].astype(str).values,
    }, index=df[cols["id"]].astype(str).values)
    return out[~out.index.duplicated()]


def _pft_of(site: str, igbp: str, overrides: Mapping[str, int] | None) -> int:
    if overrides and site in overrides:
        return int(overrides[site])
    return int(IGBP_TO_PFT.get(str(igbp).upper(), 0))


def towers_dataset(
    data: Mapping[str, np.ndarray],
    sites: Sequence[str],
    times: np.ndarray,
    meta: pd.DataFrame,
    *,
    pft_overrides: Mapping[str, int] | None = None,
    attrs: Mapping[str, Any] | None = None,
    var_attrs: Mapping[str, Mapping[str, Any]] | None = None,
) -> xr.Dataset:
    """Assemble a contract ``towers`` Dataset from (site, time) float arrays and site metadata.

    Args:
      data: Variable name → array (site, time) in contract units.
      sites: Site ids (must be in ``meta.index``).
      times: Daily dates, datetime64.
      meta: Site metadata with columns ``lat``, ``lon``, ``igbp`` indexed by id.
      pft_overrides: Optional site → L4C PFT replacing the IGBP mapping.
      attrs: Global attrs; var_attrs: extra attrs per variable.
    """
    missing = [s for s in sites if s not in meta.index]
    if missing:
        raise errors.InputDataError(f"site metadata: no lat/lon/IGBP for sites {missing}")
    m = meta.loc[list(sites)]
    ds = xr.Dataset(coords={
        dims.SITE: (dims.SITE, np.asarray(sites, dtype=str)),
        dims.TIME: (dims.TIME, pd.DatetimeIndex(times).normalize().values.astype("datetime64[ns]")),
        dims.LAT: (dims.SITE, m["lat"].to_numpy(np.float64),
                   {"units": "degrees_north", "standard_name": "latitude"}),
        dims.LON: (dims.SITE, m["lon"].to_numpy(np.float64),
                   {"units": "degrees_east", "standard_name": "longitude"}),
        "igbp": (dims.SITE, m["igbp"].astype(str).to_numpy(dtype=str),
                 {"long_name": "IGBP land-cover class"}),
        "pft": (dims.SITE, np.array([_pft_of(s, g, pft_overrides) for s, g in
                                     zip(sites, m["igbp"], strict=True)], np.int8),
                {"long_name": "SMAP L4C plant functional type (1-8, 0 none)", "units": "1"}),
    })
    for name, arr in data.items():
        a = np.asarray(arr, np.float32)
        long_name, units = _ATTRS[name]
        at = {"long_name": long_name, "units": units, "grid_mapping": dims.CRS}
        if name in _STANDARD:
            at["standard_name"] = _STANDARD[name]
        at.update((var_attrs or {}).get(name, {}))
        ds[name] = ((dims.SITE, dims.TIME), a, at)
    ds[dims.CRS] = grid.crs_variable(4326)
    ds.attrs.update({"Conventions": "CF-1.10", "featureType": "timeSeries"})
    ds.attrs.update(attrs or {})
    return ds


# --- FLUXNET2015 FULLSET DD CSV --------------------------------------------------------------
_SITE_RE = re.compile(r"FLX_([A-Z]{2}-[A-Za-z0-9]{3})_")


def _dd_frame(url: str, storage_options) -> tuple[str, pd.DataFrame]:
    name = str(url).rsplit("/", 1)[-1]
    m = _SITE_RE.search(name)
    if not m:
        raise errors.InputDataError(f"{url}: not a FLUXNET file name (FLX_<site>_…)")
    try:
        df = pd.read_csv(io.BytesIO(stores.read_bytes(url, storage_options)),
                         na_values=[FILL, "-9999"])
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise errors.InputDataError(f"{url}: unreadable CSV ({e})") from e
    if "TIMESTAMP" not in df.columns:
        raise errors.InputDataError(f"{url}: no TIMESTAMP column; not a daily (DD) file")
    df.index = pd.to_datetime(df["TIMESTAMP"].astype(str), format="%Y%m%d")
    return m.group(1), df


def _column(df: pd.DataFrame, names: Iterable[str]) -> tuple[np.ndarray | None, str | None]:
    for n in names:
        if n in df.columns:
            return df[n].to_numpy(np.float64), n
    return None, None


def read_fluxnet_dd(
    urls: Sequence[str],
    meta: pd.DataFrame,
    *,
    partition: str = "NT",
    pft_overrides: Mapping[str, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Read FLUXNET FULLSET DD CSV files (one per site) into a ``towers`` Dataset.

    Args:
      urls: DD files; the site id comes from the file name.  Several files of one site are
        concatenated in time.
      meta: Site metadata (:func:`read_site_list`).
      partition: ``"NT"`` (night-time, default) or ``"DT"`` (daytime) GPP/RECO partitioning.
      pft_overrides: Site → L4C PFT overriding :data:`IGBP_TO_PFT`.

    Returns:
      Contract ``towers`` Dataset (site, time) over the union of the files' days.
    """
    if partition not in ("NT", "DT"):
        raise ValueError(f"partition must be 'NT' or 'DT', not {partition!r}")
    frames: dict[str, list[pd.DataFrame]] = {}
    for url in urls:
        site, df = _dd_frame(url, storage_options)
        for need in ("NEE_VUT_REF", f"GPP_{partition}_VUT_REF", f"RECO_{partition}_VUT_REF"):
            if need not in df.columns:
                raise errors.InputDataError(f"{url}: variable '{need}' missing")
        frames.setdefault(site, []).append(df)
    sites = sorted(frames)
    per = {s: pd.concat(frames[s]).sort_index() for s in sites}
    times = pd.DatetimeIndex(sorted(set().union(*[set(d.index) for d in per.values()])))
    out: dict[str, np.ndarray] = {}
    tmin_src = set()
    spec = {
        "nee": (("NEE_VUT_REF",), 1.0, 0.0),
        "gpp": ((f"GPP_{partition}_VUT_REF",), 1.0, 0.0),
        "reco": ((f"RECO_{partition}_VUT_REF",), 1.0, 0.0),
        "nee_qc": (("NEE_VUT_REF_QC",), 1.0, 0.0),
        "ta": (("TA_F",), 1.0, 273.15),
        "tmin": (("TMIN_F", "TMIN", "TA_F_NIGHT"), 1.0, 273.15),
        "sw_in": (("SW_IN_F",), 1.0, 0.0),
        "vpd": (("VPD_F",), 100.0, 0.0),
        "swc": (("SWC_F_MDS_1",), 0.01, 0.0),
        "ts": (("TS_F_MDS_1",), 1.0, 273.15),
    }
    for var, (cols, scale, offset) in spec.items():
        arr = np.full((len(sites), len(times)), np.nan)
        found = False
        for i, s in enumerate(sites):
            df = per[s].reindex(times)
            v, col = _column(df, cols)
            if v is not None:
                found = True
                arr[i] = v * scale + offset
                if var == "tmin":
                    tmin_src.add(col)
        if found or var not in ("swc", "ts"):
            out[var] = arr
    out["gpp_qc"] = out["nee_qc"].copy()
    out["reco_qc"] = out["nee_qc"].copy()
    var_attrs = {"tmin": {"source_column": ",".join(sorted(tmin_src))}}
    if tmin_src & {"TA_F_NIGHT"}:
        var_attrs["tmin"]["comment"] = (
            "DD files have no daily minimum: mean night-time TA_F_NIGHT used as the proxy")
    ds = towers_dataset(
        out, sites, times.values, meta, pft_overrides=pft_overrides,
        attrs={"source": "FLUXNET2015 FULLSET DD", "partitioning": partition,
               "files": ", ".join(str(u).rsplit("/", 1)[-1] for u in urls)},
        var_attrs=var_attrs,
    )
    schema.check(ds, schema.TOWERS, context=f"towers from {len(urls)} DD file(s)")
    return ds


# --- half-hourly FLUXNET Zarr -----------------------------------------------------------------
def _utc_offset_hours(t_utc: np.ndarray, valid: np.ndarray, lon: float) -> int:
    """Local-standard-time offset of a site from its record's last half-hour.

    FULLSET records end at local midnight; the Zarr stamps the end of each half-hour in UTC, so
    the last valid stamp's UTC hour gives the offset.  Falls back to round(lon/15) when the
    inferred offset is more than 3 h from the solar one (a record ending mid-day).
    """
    solar = int(np.round(lon / 15.0))
    if not valid.any():
        return solar
    last = pd.Timestamp(t_utc[np.flatnonzero(valid)[-1]])
    h = -(last.hour + last.minute / 60.0)
    off = int(np.round(((h + 12) % 24) - 12))
    return off if abs(off - lon / 15.0) <= 3 else solar


def read_fluxnet_zarr(
    url: str,
    sites: Sequence[str],
    meta: pd.DataFrame | None = None,
    *,
    min_coverage: float = 0.9,
    pft_overrides: Mapping[str, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Daily ``towers`` Dataset from the half-hourly FLUXNET2015 Zarr (see module docstring).

    Args:
      url: The ``fluxnet.zarr`` store (Zarr v2, consolidated).
      sites: Site ids to read; sites whose chunks are absent (all NaN) are dropped.
      meta: Site metadata (``lat``, ``lon``, ``igbp``); lat/lon default to the store's own.
      min_coverage: Fraction of the 48 half-hours a day needs for a daily value.
      pft_overrides: Site → L4C PFT overriding :data:`IGBP_TO_PFT`.

    Returns:
      Contract ``towers`` Dataset over the union of the kept sites' records.
    """
    src = stores.open_dataset(url, storage_options=storage_options)
    need = ("nee", "nee_qc", "gpp_nt", "ta", "sw_in", "vpd")
    missing = [v for v in need if v not in src]
    if missing:
        raise errors.InputDataError(f"{url}: variables {missing} missing")
    unknown = [s for s in sites if s not in src.indexes[dims.SITE]]
    if unknown:
        raise errors.InputDataError(f"{url}: sites {unknown} not in the store")
    units = {v: src[v].attrs.get("units") for v in ("nee", "gpp_nt", "ta", "vpd")}
    if units["nee"] != "umolCO2 m-2 s-1" or units["ta"] != "degC" or units["vpd"] not in (
            "hPa", "kPa"):
        raise errors.InputDataError(f"{url}: unexpected units {units}")
    vpd_to_pa = 100.0 if units["vpd"] == "hPa" else 1000.0
    t_utc = src[dims.TIME].values
    per_site: dict[str, pd.DataFrame] = {}
    latlon: dict[str, tuple[float, float]] = {}
    for s in sites:
        one = src[list(need)].sel({dims.SITE: s}).load()
        valid = np.isfinite(one["nee"].values)
        if not valid.any():
            continue
        lat = float(src["latitude"].sel({dims.SITE: s}))
        lon = float(src["longitude"].sel({dims.SITE: s}))
        latlon[s] = (lat, lon)
        off = _utc_offset_hours(t_utc, valid, lon)
        # End-stamped half-hours: shift to local standard time, then back 15 min into the
        # interval so the half-hour ending at 00:00 belongs to the previous day.
        local = pd.DatetimeIndex(t_utc) + pd.Timedelta(hours=off) - pd.Timedelta(minutes=15)
        frame = pd.DataFrame({v: one[v].values for v in need}, index=local)
        frame = frame[valid]
        day = frame.index.normalize()
        g = frame.groupby(day)
        count = g["nee"].count()
        ok = count >= min_coverage * 48
        mean = g.mean()
        d = pd.DataFrame(index=mean.index)
        d["nee"] = mean["nee"] * UMOL_CO2_TO_G_C_PER_DAY
        d["gpp"] = mean["gpp_nt"] * UMOL_CO2_TO_G_C_PER_DAY
        d["reco"] = d["nee"] + d["gpp"]
        d["nee_qc"] = g["nee_qc"].apply(lambda q: float(np.mean(q <= 1)))
        d["ta"] = mean["ta"] + 273.15
        d["tmin"] = g["ta"].min() + 273.15
        d["sw_in"] = mean["sw_in"]
        d["vpd"] = mean["vpd"] * vpd_to_pa
        d.loc[~ok] = np.nan
        d.attrs["utc_offset_hours"] = off
        per_site[s] = d
    if not per_site:
        raise errors.InputDataError(f"{url}: none of the sites {list(sites)} has data")
    kept = list(per_site)
    times = pd.DatetimeIndex(sorted(set().union(*[set(d.index) for d in per_site.values()])))
    out = {}
    for var in ("nee", "gpp", "reco", "nee_qc", "ta", "tmin", "sw_in", "vpd"):
        out[var] = np.stack([per_site[s][var].reindex(times).to_numpy(np.float64) for s in kept])
    out["gpp_qc"] = out["nee_qc"].copy()
    out["reco_qc"] = out["nee_qc"].copy()
    if meta is None:
        meta = pd.DataFrame({"lat": [latlon[s][0] for s in kept],
                             "lon": [latlon[s][1] for s in kept],
                             "igbp": ["" for _ in kept]}, index=kept)
    ds = towers_dataset(
        out, kept, times.values, meta, pft_overrides=pft_overrides,
        attrs={"source": f"FLUXNET2015 half-hourly Zarr {url}, aggregated to daily",
               "partitioning": "NT", "flux_variant": "VUT_USTAR50",
               "min_coverage": min_coverage},
        var_attrs={"reco": {"comment": "nee + gpp_nt (night-time partitioning)"},
                   "tmin": {"comment": "minimum of the half-hourly ta"}},
    )
    ds["utc_offset_hours"] = (dims.SITE, np.array([per_site[s].attrs["utc_offset_hours"]
                                                   for s in kept], np.int8),
                              {"long_name": "local standard time minus UTC", "units": "h"})
    ds = ds.set_coords("utc_offset_hours")
    schema.check(ds, schema.TOWERS, context=f"towers from {url}")
    return ds



# --- SPL4CMDL HDF5 -----------------------------------------------------------------------------
SPL4CMDL_GROUPS = {"nee": "NEE", "gpp": "GPP", "rh": "RH"}
_DATE_RE = re.compile(r"_(\d{8})T\d{6}")
_PRODUCT_ATTRS = {
    "nee": ("net ecosystem CO2 exchange (positive: source)", None),
    "gpp": ("gross primary production",
            "gross_primary_productivity_of_biomass_expressed_as_carbon"),
    "rh": ("heterotrophic respiration", "heterotrophic_respiration_carbon_flux"),
    "reco": ("ecosystem respiration, nee + gpp", None),
}


def _open_h5(url: str, storage_options):
    import h5py

    path = str(url)
    if path.startswith("file://"):
        path = path[len("file://"):]
    try:
        if "://" not in path:
            return h5py.File(path, "r")
        return h5py.File(io.BytesIO(stores.read_bytes(url, storage_options)), "r")
    except FileNotFoundError as e:
        raise errors.StoreNotFound(f"{url}: no such file") from e
    except OSError as e:
        raise errors.InputDataError(f"{url}: not a readable HDF5 file ({e})") from e


def _h5_block(f, path: str, url: str, w: grid.Window, shape) -> np.ndarray:
    if path not in f:
        raise errors.InputDataError(f"{url}: variable '{path}' missing")
    d = f[path]
    if tuple(d.shape) != tuple(shape):
        raise errors.InputDataError(f"{url}: variable '{path}' shape {d.shape} is not M09 {shape}")
    a = np.asarray(d[w.row0:w.row1, w.col0:w.col1], np.float32)
    fill = d.attrs.get("_FillValue", FILL)
    a[(a == np.float32(np.ravel(fill)[0])) | (a <= -9000)] = np.nan
    return a


def read_spl4cmdl(
    urls: Sequence[str],
    *,
    window: grid.Window | None = None,
    pfts: Sequence[int] = tuple(range(1, 9)),
    storage_options: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Read SMAP L4C (SPL4CMDL) daily HDF5 files into a gridded carbon-flux Dataset on M09.

    Args:
      urls: One file per day; the date comes from the ``_YYYYMMDDThhmmss`` part of the name.
      window: M09 window to read (default the whole 3856 × 1624 grid).
      pfts: PFT codes whose sub-grid means (``*_pft%d_mean``) to read when present.

    Returns:
      Dataset with ``nee``, ``gpp``, ``rh``, ``reco`` (time, y, x) [g C m-2 d-1] and, where the
      files have them, ``nee_pft``, ``gpp_pft``, ``rh_pft`` (time, pft, y, x); attrs ``grid``
      ``"M09"`` and ``grid_window``.
    """
    g = grid.get("M09")
    w = (window or g.full_window()).check(g)
    days, fields = [], {k: [] for k in SPL4CMDL_GROUPS}
    pft_fields: dict[str, list] = {k: [] for k in SPL4CMDL_GROUPS}
    has_pft = None
    for url in sorted(urls, key=lambda u: str(u).rsplit("/", 1)[-1]):
        m = _DATE_RE.search(str(url).rsplit("/", 1)[-1])
        if not m:
            raise errors.InputDataError(f"{url}: no _YYYYMMDDThhmmss date in the file name")
        days.append(pd.Timestamp(m.group(1)))
        with _open_h5(url, storage_options) as f:
            for var, grp in SPL4CMDL_GROUPS.items():
                fields[var].append(_h5_block(f, f"{grp}/{var}_mean", url, w, g.shape))
                names = [f"{grp}/{var}_pft{p}_mean" for p in pfts]
                present = all(n in f for n in names)
                if has_pft is None:
                    has_pft = present
                if has_pft:
                    if not present:
                        raise errors.InputDataError(f"{url}: per-PFT variables of '{grp}' missing")
                    pft_fields[var].append(
                        np.stack([_h5_block(f, n, url, w, g.shape) for n in names]))
    if not days:
        raise errors.InputDataError("read_spl4cmdl: no files given")
    ds = grid.grid_coords(g, w)
    ds = ds.assign_coords({dims.TIME: (dims.TIME, pd.DatetimeIndex(days).values
                                       .astype("datetime64[ns]"))})
    tyx = (dims.TIME, dims.Y, dims.X)
    for var in SPL4CMDL_GROUPS:
        ds[var] = (tyx, np.stack(fields[var]))
    ds["reco"] = ds["nee"] + ds["gpp"]
    if has_pft:
        ds = ds.assign_coords(pft=("pft", np.asarray(pfts, np.int8)))
        for var in SPL4CMDL_GROUPS:
            ds[f"{var}_pft"] = ((dims.TIME, "pft", dims.Y, dims.X), np.stack(pft_fields[var]))
    for name in list(ds.data_vars):
        if name == dims.CRS:
            continue
        base = name.removesuffix("_pft")
        long_name, std = _PRODUCT_ATTRS[base]
        ds[name] = ds[name].astype(np.float32)
        ds[name].attrs = {"units": FLUX_UNITS, "grid_mapping": dims.CRS,
                          "long_name": long_name + (" per PFT (1-km sub-grid mean)"
                                                    if name.endswith("_pft") else "")}
        if std:
            ds[name].attrs["standard_name"] = std
    ds.attrs.update({"source": "SMAP L4C SPL4CMDL", "files": len(days)})
    return ds
