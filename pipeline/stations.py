"""In-situ networks (``catalogs/networks.yaml``) and tower collections (``catalogs/towers.yaml``).

Typed, validated views of the two station catalogs, in the manner of :mod:`pipeline.sensors`:

>>> from pipeline import stations
>>> stations.network("scan").variables["soil_moisture"].depths_m[0]
(0.0508, 0.0508)
>>> stations.tower_collection("fluxnet2015").site("US-Prr").pft
1

The IGBP → SMAP L4C PFT table in ``towers.yaml`` is a documented choice (see the file's header
and docs/configuration.md); :func:`igbp_to_pft` applies it, a site's ``pft`` overrides it.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Literal

import pydantic
import yaml

import catalogs

__all__ = [
    "IGBP_CLASSES",
    "Network",
    "NetworkCatalog",
    "Site",
    "Station",
    "TowerCatalog",
    "TowerCollection",
    "igbp_to_pft",
    "load_networks",
    "load_towers",
    "network",
    "networks",
    "tower_collection",
    "towers",
]

IGBP_CLASSES = ("ENF", "EBF", "DNF", "DBF", "MF", "CSH", "OSH", "WSA", "SAV", "GRA", "WET", "CRO",
                "URB", "CVM", "SNO", "BSV", "WAT")
CONTRACT_VARIABLES = ("soil_moisture", "soil_temperature", "air_temperature")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SITE_ID = re.compile(r"^[A-Z]{2}-[A-Za-z0-9]{3}$")


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class Region(_Strict):
    """Where a network's stations are: a name and ``[lat_min, lat_max, lon_min, lon_max]``."""

    name: str
    bbox: tuple[float, float, float, float]

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> Region:
        la0, la1, lo0, lo1 = self.bbox
        if not (-90 <= la0 < la1 <= 90 and -180 <= lo0 < lo1 <= 180):
            raise ValueError(f"bbox {list(self.bbox)} is not [lat_min, lat_max, lon_min, lon_max]")
        return self

    def contains(self, lat: float, lon: float) -> bool:
        """Whether a point [deg] is inside the box."""
        la0, la1, lo0, lo1 = self.bbox
        return la0 <= lat <= la1 and lo0 <= lon <= lo1


class NetworkVariable(_Strict):
    """One measured variable: sensor depth ranges [m] (top, bottom) and the source's name."""

    depths_m: tuple[tuple[float, float], ...] = pydantic.Field(min_length=1)
    source: str

    @pydantic.field_validator("depths_m")
    @classmethod
    def _depths(cls, v):
        for top, bottom in v:
            if bottom < top:
                raise ValueError(f"depth range [{top}, {bottom}] has bottom above top")
        return v


class Station(_Strict):
    """A station: ISMN station name, position [deg], elevation [m], data path (real-data dir)."""

    id: str = pydantic.Field(min_length=1)
    lat: float = pydantic.Field(ge=-90, le=90)
    lon: float = pydantic.Field(ge=-180, le=180)
    elevation_m: float | None = None
    path: str | None = None


class Network(_Strict):
    """An in-situ network, stored as ``insitu/{name}.zarr``."""

    name: str = pydantic.Field(pattern=_NAME.pattern)
    provider: str
    kind: Literal["simulated", "ismn"]
    time_step: Literal["hourly", "daily"]
    citation: str | None
    variables: dict[Literal["soil_moisture", "soil_temperature", "air_temperature"],
                    NetworkVariable] = pydantic.Field(min_length=1)
    region: Region
    stations: tuple[Station, ...] = ()

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> Network:
        ids = [s.id for s in self.stations]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"network {self.name}: duplicate station ids {dup}")
        if self.kind == "simulated" and self.stations:
            raise ValueError(f"network {self.name}: simulated networks list no stations")
        if self.kind != "simulated" and not self.stations:
            raise ValueError(f"network {self.name}: lists no stations")
        for s in self.stations:
            if not self.region.contains(s.lat, s.lon):
                raise ValueError(
                    f"network {self.name}: station {s.id} ({s.lat}, {s.lon}) is outside the "
                    f"region bbox {list(self.region.bbox)}"
                )
        return self

    def station(self, station_id: str) -> Station:
        """A station by id (KeyError naming the network otherwise)."""
        for s in self.stations:
            if s.id == station_id:
                return s
        raise KeyError(f"network {self.name} has no station {station_id!r}")


class NetworkCatalog(_Strict):
    """All networks by name."""

    networks: dict[str, Network]


class Site(_Strict):
    """A tower site: FLUXNET id, position [deg], elevation [m], IGBP class, PFT override."""

    id: str = pydantic.Field(pattern=_SITE_ID.pattern)
    lat: float = pydantic.Field(ge=-90, le=90)
    lon: float = pydantic.Field(ge=-180, le=180)
    elevation_m: float | None = None
    igbp: Literal[IGBP_CLASSES]  # type: ignore[valid-type]
    pft: int | None = pydantic.Field(default=None, ge=0, le=8)
    pft_note: str | None = None
    sources: tuple[str, ...] = ()


class TowerCollection(_Strict):
    """A tower collection, stored as ``towers/{name}.zarr``."""

    name: str = pydantic.Field(pattern=_NAME.pattern)
    provider: str
    kind: Literal["simulated", "fluxnet"]
    citation: str | None
    description: str
    sources: dict[str, str]
    sites: tuple[Site, ...] = ()
    igbp_to_pft: dict[str, int] = pydantic.Field(default_factory=dict, exclude=True)

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> TowerCollection:
        ids = [s.id for s in self.sites]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"collection {self.name}: duplicate site ids {dup}")
        if self.kind == "simulated" and self.sites:
            raise ValueError(f"collection {self.name}: simulated collections list no sites")
        for s in self.sites:
            unknown = [src for src in s.sources if src not in self.sources]
            if unknown:
                raise ValueError(f"collection {self.name}: site {s.id} names unknown sources "
                                 f"{unknown}; known {sorted(self.sources)}")
        return self

    def site(self, site_id: str) -> Site:
        """A site by id, with its PFT resolved (override, else the IGBP table)."""
        for s in self.sites:
            if s.id == site_id:
                if s.pft is None:
                    return s.model_copy(update={"pft": igbp_to_pft(s.igbp, self.igbp_to_pft)})
                return s
        raise KeyError(f"tower collection {self.name} has no site {site_id!r}")

    def resolved_sites(self) -> tuple[Site, ...]:
        """Every site with its PFT resolved."""
        return tuple(self.site(s.id) for s in self.sites)


class TowerCatalog(_Strict):
    """The IGBP → PFT table and all tower collections by name."""

    igbp_to_pft: dict[Literal[IGBP_CLASSES], int]  # type: ignore[valid-type]
    collections: dict[str, TowerCollection]

    @pydantic.field_validator("igbp_to_pft")
    @classmethod
    def _complete(cls, v):
        missing = [c for c in IGBP_CLASSES if c not in v]
        if missing:
            raise ValueError(f"IGBP classes {missing} have no PFT")
        bad = {k: p for k, p in v.items() if not 0 <= p <= 8}
        if bad:
            raise ValueError(f"PFTs must be 0-8 (0 = not modelled); got {bad}")
        return v


def igbp_to_pft(igbp: str, table: dict[str, int] | None = None) -> int:
    """SMAP L4C PFT (1-8, 0 none) of an IGBP class via ``table`` (default: towers.yaml's)."""
    t = table or towers().igbp_to_pft
    if igbp not in t:
        raise KeyError(f"unknown IGBP class {igbp!r}; known {sorted(t)}")
    return int(t[igbp])


def load_networks(path: str | Path) -> NetworkCatalog:
    """Read and validate a networks file; raises ``pydantic.ValidationError``/``ValueError``."""
    raw = yaml.safe_load(Path(path).read_text())
    if not isinstance(raw, dict) or not isinstance(raw.get("networks"), dict):
        raise ValueError("network catalog must be a mapping with a top-level 'networks' mapping")
    entries = {k: {"name": k, **(v or {})} for k, v in raw["networks"].items()}
    return NetworkCatalog(networks=entries)


def load_towers(path: str | Path) -> TowerCatalog:
    """Read and validate a towers file; raises ``pydantic.ValidationError``/``ValueError``."""
    raw = yaml.safe_load(Path(path).read_text())
    if not isinstance(raw, dict) or not isinstance(raw.get("collections"), dict):
        raise ValueError("tower catalog must be a mapping with a top-level 'collections' mapping")
    table = raw.get("igbp_to_pft") or {}
    entries = {k: {"name": k, **(v or {}), "igbp_to_pft": table}
               for k, v in raw["collections"].items()}
    return TowerCatalog(igbp_to_pft=table, collections=entries)


@functools.cache
def networks() -> NetworkCatalog:
    """The packaged network catalog."""
    return load_networks(catalogs.path("networks.yaml"))


@functools.cache
def towers() -> TowerCatalog:
    """The packaged tower catalog."""
    return load_towers(catalogs.path("towers.yaml"))


def network(name: str) -> Network:
    """A network by name, with a one-line error listing the known ones."""
    known = networks().networks
    if name not in known:
        raise KeyError(f"unknown network {name!r}; the catalog has {sorted(known)}")
    return known[name]


def tower_collection(name: str) -> TowerCollection:
    """A tower collection by name, with a one-line error listing the known ones."""
    known = towers().collections
    if name not in known:
        raise KeyError(f"unknown tower collection {name!r}; the catalog has {sorted(known)}")
    return known[name]
