"""Readers for ISMN in-situ soil-moisture files (``.stm``) → ``insitu/{network}.zarr`` datasets.

The International Soil Moisture Network (ISMN, Dorigo et al. 2011/2021) distributes one file per
station, variable and sensor, named
``{CSE}_{network}_{station}_{variable}_{depth_from}_{depth_to}_{sensor}_{start}_{end}.stm``
(variable codes ``sm`` soil moisture [m3 m-3], ``ts`` soil temperature [°C], ``ta`` air
temperature [°C], ``p`` precipitation [mm], …; depths in metres below the surface).  Two
layouts occur and both are read here (:func:`read_stm` detects which):

* **header + values** (ISMN "Data_seperate_files_header" downloads and older
  "header_values" zips): the first line holds
  ``CSE network station lat lon elevation depth_from depth_to sensor…`` and every other line
  ``YYYY/MM/DD HH:MM value ismn_flag [provider_flag]``;
* **CEOP separate files** (ISMN "Data_seperate_files"): every line holds
  ``YYYY/MM/DD HH:MM YYYY/MM/DD HH:MM CSE network station lat lon elevation depth_from depth_to
  value ismn_flag [provider_flag]`` (nominal then actual UTC time; the nominal one is used).

Line ends may be ``\\n``, ``\\r``, ``\\r\\n`` or ``\\n\\r`` (all occur in real downloads).
Times are UTC.  The ISMN quality flag of each value (``G`` good, ``C01``–``C03`` out of range,
``D01``–``D10`` dubious, ``M`` missing, ``U`` unchecked in older releases; several may be
joined by commas) is encoded into the contract's ``<var>_flag`` (uint8, 0 = ``G``) with the
bits of :data:`FLAG_BITS`.  Soil and air temperature are converted from °C to K.

:func:`read_station` reads a station folder, :func:`to_insitu_dataset` assembles stations into a
contract dataset (dims ``station``, ``time``), :func:`read_network` does both for a network of
``catalogs/networks.yaml``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from pipeline import dims, errors, grid, stations

__all__ = [
    "FLAG_BITS",
    "ISMN_VARIABLES",
    "StmFile",
    "encode_flags",
    "parse_filename",
    "read_network",
    "read_station",
    "read_stm",
    "to_insitu_dataset",
]

# ISMN variable code → (contract variable, offset added to convert to contract units).
ISMN_VARIABLES: dict[str, tuple[str, float]] = {
    "sm": (dims.SOIL_MOISTURE, 0.0),        # m3 m-3 already
    "ts": ("soil_temperature", 273.15),     # °C → K
    "ta": ("air_temperature", 273.15),      # °C → K
}
CONTRACT_UNITS = {dims.SOIL_MOISTURE: "m3 m-3", "soil_temperature": "K", "air_temperature": "K"}
LONG_NAMES = {
    dims.SOIL_MOISTURE: "volumetric soil moisture (in situ)",
    "soil_temperature": "soil temperature (in situ)",
    "air_temperature": "air temperature (in situ)",
}
STANDARD_NAMES = {
    dims.SOIL_MOISTURE: "volume_fraction_of_condensed_water_in_soil",
    "soil_temperature": "soil_temperature",
    "air_temperature": "air_temperature",
}

# ISMN flag code prefix → bit of the uint8 ``<var>_flag`` (0 means the ISMN flag is exactly G).
FLAG_BITS: dict[str, int] = {
    "C": 1 << 0,     # C01-C03: value outside the plausible range / above saturation
    "D_T": 1 << 1,   # D01-D03: in-situ soil, in-situ air or GLDAS soil temperature < 0 °C
    "D_P": 1 << 2,   # D04-D05: soil-moisture peak without precipitation (in situ / GLDAS)
    "D_S": 1 << 3,   # D06-D10: spectrum based (spike, negative/positive jump, plateaus)
    "M": 1 << 4,     # parameter value missing
    "U": 1 << 5,     # undefined / not checked (older ISMN releases)
    "OTHER": 1 << 6,  # any code not listed above
}
FLAG_MEANINGS = ("ismn_C_out_of_range ismn_D01_D03_below_freezing ismn_D04_D05_peak_without_rain "
                 "ismn_D06_D10_spectrum ismn_M_missing ismn_U_unchecked ismn_other")

_DATE = re.compile(r"^\d{4}/\d{2}/\d{2}$")
_NAME = re.compile(
    r"^(?P<cse>[^_]+)_(?P<network>[^_]+)_(?P<station>.+)_(?P<variable>[a-z]+)_"
    r"(?P<depth_from>-?\d+\.\d+)_(?P<depth_to>-?\d+\.\d+)_(?P<sensor>.+)_"
    r"(?P<start>\d{8})_(?P<end>\d{8})\.stm$"
)


@dataclasses.dataclass(frozen=True)
class StmFile:
    """One parsed ``.stm`` file.

    Attributes:
      path: The file.
      network, station: As in the file (header or data lines), e.g. ``"SCAN"``, ``"Pua_Akala"``.
      variable: ISMN variable code from the file name (``"sm"``, ``"ts"``…).
      lat, lon: Station position [degrees north/east]; elevation [m].
      depth_from, depth_to: Sensor depth range [m below the surface].
      sensor: Sensor name (from the header, else the file name).
      time: UTC times, datetime64[ns] (the nominal time in the CEOP layout).
      value: Values in the file's units (float64; NaN where unparseable).
      ismn_flag: ISMN quality flag strings (``"G"``, ``"D01,D03"``…).
      provider_flag: Data provider's flag strings ("" where absent).
      layout: ``"header_values"`` or ``"ceop"``.
    """

    path: Path
    network: str
    station: str
    variable: str
    lat: float
    lon: float
    elevation: float
    depth_from: float
    depth_to: float
    sensor: str
    time: np.ndarray
    value: np.ndarray
    ismn_flag: np.ndarray
    provider_flag: np.ndarray
    layout: str


def parse_filename(path: str | Path) -> dict:
    """Fields of an ISMN file name (cse, network, station, variable, depths [m], sensor, dates).

    Raises:
      errors.InputDataError: The name does not follow the ISMN pattern.
    """
    name = Path(path).name
    m = _NAME.match(name)
    if not m:
        raise errors.InputDataError(f"{path}: not an ISMN file name "
                                    "(CSE_network_station_variable_from_to_sensor_start_end.stm)")
    d = m.groupdict()
    d["depth_from"] = float(d["depth_from"])
    d["depth_to"] = float(d["depth_to"])
    return d


def _lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise errors.InputDataError(f"{path}: cannot read ({e.strerror or e})") from None
    text = raw.decode("latin-1")
    # Normalise every line-end convention seen in ISMN downloads (\n, \r, \r\n, \n\r).
    text = text.replace("\r\n", "\n").replace("\n\r", "\n").replace("\r", "\n")
    return [ln for ln in text.split("\n") if ln.strip()]


def _frame(lines: Sequence[str], names: list[str], path: Path) -> pd.DataFrame:
    """Whitespace-split data lines into ``names``; the last column keeps its inner spaces
    (provider flags such as ``"DLT >= 1.5,OK"``) and may be absent (then "")."""
    n = len(names)
    rows = []
    for k, ln in enumerate(lines):
        parts = ln.split(None, n - 1)
        if len(parts) == n - 1:
            parts.append("")
        if len(parts) != n:
            raise errors.InputDataError(f"{path}: data line {k + 1} has {len(parts)} fields, "
                                        f"expected {n - 1} or {n}: {ln.strip()[:60]!r}")
        rows.append(parts)
    if not rows:
        raise errors.InputDataError(f"{path}: no data lines")
    return pd.DataFrame(rows, columns=names)


def _times(date: pd.Series, hhmm: pd.Series, path: Path) -> np.ndarray:
    t = pd.to_datetime(date + " " + hhmm, format="%Y/%m/%d %H:%M", errors="coerce")
    if t.isna().any():
        bad = int(np.flatnonzero(t.isna().to_numpy())[0])
        raise errors.InputDataError(f"{path}: data line {bad + 1}: bad time "
                                    f"{date.iloc[bad]} {hhmm.iloc[bad]!r}")
    return t.to_numpy(dtype="datetime64[ns]")


def read_stm(path: str | Path) -> StmFile:
    """Parse one ISMN ``.stm`` file (header+values or CEOP layout, detected from line 1).

    Raises:
      errors.InputDataError: Unreadable file, malformed header or data line (one line naming the
        file and the problem).
    """
    path = Path(path)
    meta = parse_filename(path)
    lines = _lines(path)
    if not lines:
        raise errors.InputDataError(f"{path}: empty file")
    first = lines[0].split()
    try:
        if first and _DATE.match(first[0]):
            layout = "ceop"
            cols = ["date", "hhmm", "date_actual", "hhmm_actual", "cse", "network", "station",
                    "lat", "lon", "elevation", "depth_from", "depth_to", "value", "flag",
                    "provider_flag"]
            df = _frame(lines, cols, path)
            network, station = df["network"].iloc[0], df["station"].iloc[0]
            lat, lon, elev = (float(df[c].iloc[0]) for c in ("lat", "lon", "elevation"))
            dfrom, dto = float(df["depth_from"].iloc[0]), float(df["depth_to"].iloc[0])
            sensor = meta["sensor"]
        else:
            layout = "header_values"
            if len(first) < 9:
                raise errors.InputDataError(
                    f"{path}: header line has {len(first)} fields, expected CSE network station "
                    "lat lon elevation depth_from depth_to sensor")
            network, station = first[1], first[2]
            lat, lon, elev, dfrom, dto = (float(v) for v in first[3:8])
            sensor = " ".join(first[8:])
            df = _frame(lines[1:], ["date", "hhmm", "value", "flag", "provider_flag"], path)
    except ValueError as e:
        raise errors.InputDataError(f"{path}: malformed line ({e})") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise errors.InputDataError(f"{path}: station position ({lat}, {lon}) out of range")
    # The file name's depths carry more digits than the header's (0.050800 vs 0.05).
    if abs(meta["depth_from"] - dfrom) <= 0.006 and abs(meta["depth_to"] - dto) <= 0.006:
        dfrom, dto = meta["depth_from"], meta["depth_to"]
    time = _times(df["date"], df["hhmm"], path)
    value = pd.to_numeric(df["value"], errors="coerce").to_numpy(np.float64)
    return StmFile(path=path, network=network, station=station, variable=meta["variable"],
                   lat=lat, lon=lon, elevation=elev, depth_from=dfrom, depth_to=dto,
                   sensor=sensor, time=time, value=value,
                   ismn_flag=df["flag"].to_numpy(str),
                   provider_flag=df["provider_flag"].to_numpy(str),
                   layout=layout)


def _code_bit(code: str) -> int:
    code = code.strip()
    if code == "G":
        return 0
    if code in ("M", "U"):
        return FLAG_BITS[code]
    if code.startswith("C"):
        return FLAG_BITS["C"]
    if code.startswith("D") and code[1:].isdigit():
        n = int(code[1:])
        return FLAG_BITS["D_T"] if n <= 3 else FLAG_BITS["D_P"] if n <= 5 else FLAG_BITS["D_S"]
    return FLAG_BITS["OTHER"]


def encode_flags(flags: Iterable[str]) -> np.ndarray:
    """ISMN flag strings → uint8 bits of :data:`FLAG_BITS` (0 exactly for ``"G"``).

    A combined flag such as ``"D01,D03"`` sets the OR of its codes' bits; an empty flag counts
    as ``OTHER``.
    """
    flags = np.asarray(list(flags) if not isinstance(flags, np.ndarray) else flags, dtype=str)
    uniq, inv = np.unique(flags, return_inverse=True)
    bits = np.array([_or_codes(u) for u in uniq], dtype=np.uint8)
    return bits[inv].reshape(flags.shape) if flags.size else np.zeros(flags.shape, np.uint8)


def _or_codes(flag: str) -> int:
    codes = [c for c in flag.split(",") if c.strip()]
    if not codes:
        return FLAG_BITS["OTHER"]
    out = 0
    for c in codes:
        out |= _code_bit(c)
    return out


def read_station(station_dir: str | Path, variables: Sequence[str] = tuple(ISMN_VARIABLES)
                 ) -> list[StmFile]:
    """Every ``.stm`` file of a station folder for the given ISMN variable codes, parsed.

    Raises:
      errors.InputDataError: The folder holds no such file, or a file is malformed.
    """
    d = Path(station_dir)
    if not d.is_dir():
        raise errors.InputDataError(f"{d}: station folder not found")
    files = []
    for p in sorted(d.glob("*.stm")):
        if parse_filename(p)["variable"] in variables:
            files.append(read_stm(p))
    if not files:
        raise errors.InputDataError(f"{d}: no .stm file for variables {list(variables)}")
    return files


def _choose(files: list[StmFile], max_depth_m: float | None) -> StmFile | None:
    """The shallowest sensor (smallest depth_to, then most 'G' values, then sensor name)."""
    ok = [f for f in files if max_depth_m is None or f.depth_to <= max_depth_m]
    if not ok:
        return None
    return min(ok, key=lambda f: (f.depth_to, -int((f.ismn_flag == "G").sum()), f.sensor))


def to_insitu_dataset(
    station_files: Sequence[Sequence[StmFile]],
    *,
    network: str,
    max_depth_m: float | None = None,
    time_step: str = "1h",
) -> xr.Dataset:
    """Assemble parsed stations into an ``insitu/{network}.zarr`` dataset (data-contract).

    Per station and contract variable the shallowest sensor is used (see ``_choose``), only
    sensors with ``depth_to <= max_depth_m`` when given.  Times are put on a regular UTC axis of
    step ``time_step`` spanning all files (each value at its own time; duplicates keep the last).

    Args:
      station_files: One list of :class:`StmFile` per station.
      network: Network (store) name, lower case (``"scan"``).
      max_depth_m: Deepest allowed sensor bottom [m] (None: any depth).
      time_step: Regular time step of the axis (``"1h"`` for ISMN hourly data).

    Returns:
      Dataset over (station, time): ``soil_moisture`` [m3 m-3], ``soil_temperature`` [K],
      ``air_temperature`` [K] where present (float32, NaN where no value), each with attrs
      ``depth_m`` (largest sensor bottom among the stations) and per-station coords
      ``<var>_depth_from``, ``<var>_depth_to`` [m] and ``<var>_sensor``; ``<var>_flag`` (uint8,
      0 = ISMN 'G', bits :data:`FLAG_BITS`, 255 where no value at that time); coords
      ``station`` (ISMN station name), ``lat``, ``lon``, ``elevation``, ``network``; ``crs``
      (EPSG 4326).
    """
    if not station_files:
        raise errors.InputDataError(f"network {network}: no stations to assemble")
    chosen: list[dict[str, StmFile]] = []
    for files in station_files:
        per: dict[str, StmFile] = {}
        for code, (var, _) in ISMN_VARIABLES.items():
            f = _choose([f for f in files if f.variable == code], max_depth_m)
            if f is not None:
                per[var] = f
        chosen.append(per)
    all_files = [f for per in chosen for f in per.values()]
    if not all_files:
        raise errors.InputDataError(f"network {network}: no sensor within depth {max_depth_m} m")
    t0 = min(f.time.min() for f in all_files)
    t1 = max(f.time.max() for f in all_files)
    step = pd.Timedelta(time_step).to_timedelta64()
    time = np.arange(t0, t1 + step, step).astype("datetime64[ns]")
    ref = [next(iter(per.values()), None) for per in chosen]
    meta_from = [r if r is not None else files[0]
                 for r, files in zip(ref, station_files, strict=True)]
    ids = [m.station for m in meta_from]
    ds = xr.Dataset(coords={
        dims.STATION: (dims.STATION, np.array(ids, dtype=str)),
        dims.TIME: (dims.TIME, time, {"long_name": "time (UTC)"}),
        dims.LAT: (dims.STATION, np.array([m.lat for m in meta_from]),
                   {"units": "degrees_north", "standard_name": "latitude"}),
        dims.LON: (dims.STATION, np.array([m.lon for m in meta_from]),
                   {"units": "degrees_east", "standard_name": "longitude"}),
        dims.ELEVATION: (dims.STATION, np.array([m.elevation for m in meta_from]),
                         {"units": "m", "long_name": "station elevation above sea level"}),
        "network": (dims.STATION, np.array([m.network for m in meta_from], dtype=str)),
    })
    for code, (var, offset) in ISMN_VARIABLES.items():
        if not any(var in per for per in chosen):
            continue
        vals = np.full((len(ids), time.size), np.nan, np.float32)
        flags = np.full((len(ids), time.size), 255, np.uint8)
        dfrom = np.full(len(ids), np.nan)
        dto = np.full(len(ids), np.nan)
        sensor = np.full(len(ids), "", dtype=object)
        for i, per in enumerate(chosen):
            f = per.get(var)
            if f is None:
                continue
            idx = ((f.time - t0) // step).astype(np.int64)
            on_axis = (f.time - t0) % step == np.timedelta64(0, "ns")
            idx, v, fl = idx[on_axis], f.value[on_axis], f.ismn_flag[on_axis]
            vals[i, idx] = (v + offset).astype(np.float32)
            flags[i, idx] = encode_flags(fl)
            dfrom[i], dto[i], sensor[i] = f.depth_from, f.depth_to, f.sensor
        ds[var] = ((dims.STATION, dims.TIME), vals, {
            "units": CONTRACT_UNITS[var], "long_name": LONG_NAMES[var],
            "standard_name": STANDARD_NAMES[var], "depth_m": float(np.nanmax(dto)),
            "source": f"ISMN variable '{code}'", "grid_mapping": dims.CRS})
        ds[f"{var}_flag"] = ((dims.STATION, dims.TIME), flags, {
            "units": "1", "long_name": f"ISMN quality flag of {var} (0 = G, good)",
            "flag_masks": np.array(list(FLAG_BITS.values()), np.uint8),
            "flag_meanings": FLAG_MEANINGS,
            "comment": "255: no value at this time", "grid_mapping": dims.CRS})
        ds = ds.assign_coords({
            f"{var}_depth_from": (dims.STATION, dfrom, {"units": "m"}),
            f"{var}_depth_to": (dims.STATION, dto, {"units": "m"}),
            f"{var}_sensor": (dims.STATION, sensor.astype(str)),
        })
    ds[dims.CRS] = grid.crs_variable(4326)
    ds.attrs.update({"title": f"in-situ network {network}", "network": network,
                     "source": "International Soil Moisture Network (ISMN) .stm files",
                     "time_zone": "UTC"})
    return ds


def read_network(name: str, real_data_dir: str | Path, *, max_depth_m: float | None = None,
                 station_ids: Sequence[str] | None = None) -> xr.Dataset:
    """A network of ``catalogs/networks.yaml`` read from the real-data directory.

    Args:
      name: Catalog network name (``"scan"``, ``"cosmos"``…; kind ``ismn``).
      real_data_dir: The real-data directory the catalog ``path`` entries are relative to.
      max_depth_m: Deepest allowed sensor bottom [m] (None: the shallowest sensor at any depth).
      station_ids: Only these stations (catalog ids), in this order.

    Returns:
      The contract dataset of :func:`to_insitu_dataset`.
    """
    try:
        net = stations.network(name)
    except KeyError as e:
        raise errors.InputDataError(str(e.args[0])) from None
    if net.kind != "ismn":
        raise errors.InputDataError(f"network {name} is {net.kind}, not an ISMN network")
    chosen = net.stations if station_ids is None else [net.station(s) for s in station_ids]
    files = [read_station(Path(real_data_dir) / s.path) for s in chosen]
    for s, fl in zip(chosen, files, strict=True):
        got = {f.station for f in fl}
        if got != {s.id}:
            raise errors.InputDataError(f"{s.path}: files name station(s) {sorted(got)}, "
                                        f"the catalog says {s.id!r}")
    return to_insitu_dataset(files, network=name, max_depth_m=max_depth_m)
