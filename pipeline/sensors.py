"""The sensor catalog (``catalogs/sensors.yaml``) as typed, validated objects.

>>> from pipeline import sensors
>>> sensors.get("gmi").channel_labels[:2]
('10.65V', '10.65H')
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Literal

import numpy as np
import pydantic
import yaml

import catalogs


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class Channel(_Strict):
    """One radiometer channel."""

    label: str
    frequency_ghz: pydantic.PositiveFloat
    polarization: Literal["V", "H"]

    @pydantic.model_validator(mode="after")
    def _label_matches(self) -> Channel:
        expected = f"{self.label[:-1]}{self.polarization}"
        if self.label != expected or float(self.label[:-1]) != self.frequency_ghz:
            raise ValueError(
                f"label {self.label!r} must be the frequency as written followed by V or H "
                f"(frequency {self.frequency_ghz}, polarization {self.polarization})"
            )
        return self


class Period(_Strict):
    """Operational period; ``end`` None means still operating."""

    start: dt.date
    end: dt.date | None = None

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"period end {self.end} is before start {self.start}")
        return self


class Sensor(_Strict):
    """A sensor entry of the catalog."""

    name: str
    platform: str
    archive: bool
    incidence_angle_deg: float = pydantic.Field(gt=0, lt=90)
    orbit: Literal["sun-synchronous", "precessing"]
    local_time_h: dict[Literal["am", "pm"], float] | None
    direction: dict[Literal["am", "pm"], Literal["ascending", "descending"]] | None
    max_abs_lat_deg: float = pydantic.Field(gt=0, le=90)
    period: Period
    nedt_k: pydantic.PositiveFloat
    channels: tuple[Channel, ...]

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> Sensor:
        labels = [c.label for c in self.channels]
        if len(set(labels)) != len(labels):
            raise ValueError(f"sensor {self.name}: duplicate channel labels {labels}")
        if (self.orbit == "sun-synchronous") != (self.local_time_h is not None):
            raise ValueError(
                f"sensor {self.name}: local_time_h is required for sun-synchronous orbits "
                "and must be null for precessing ones"
            )
        return self

    @property
    def channel_labels(self) -> tuple[str, ...]:
        """Channel labels in catalog order."""
        return tuple(c.label for c in self.channels)

    @property
    def frequencies_ghz(self) -> np.ndarray:
        """Frequency of each channel [GHz], catalog order."""
        return np.array([c.frequency_ghz for c in self.channels], dtype=np.float64)

    @property
    def polarizations(self) -> tuple[str, ...]:
        """Polarization (``"V"``/``"H"``) of each channel, catalog order."""
        return tuple(c.polarization for c in self.channels)

    def channel(self, label: str) -> Channel:
        """The channel with this label (KeyError naming the sensor otherwise)."""
        for c in self.channels:
            if c.label == label:
                return c
        raise KeyError(f"sensor {self.name} has no channel {label!r}; it has {self.channel_labels}")

    def operating(self, day: dt.date | np.datetime64 | str) -> bool:
        """Whether the sensor was operating on ``day``."""
        d = np.datetime64(day, "D").astype(object)
        return self.period.start <= d and (self.period.end is None or d <= self.period.end)

    def overlaps(self, start: dt.date | str, end: dt.date | str) -> bool:
        """Whether the operational period overlaps ``[start, end]``."""
        s = np.datetime64(start, "D").astype(object)
        e = np.datetime64(end, "D").astype(object)
        return self.period.start <= e and (self.period.end is None or s <= self.period.end)


class SensorCatalog(_Strict):
    """All sensors, by name."""

    sensors: dict[str, Sensor]


def parse_catalog(raw: dict) -> SensorCatalog:
    """Validate a raw (YAML-loaded) sensor catalog; raises ``pydantic.ValidationError``."""
    if not isinstance(raw, dict) or "sensors" not in raw:
        raise ValueError("sensor catalog must be a mapping with a top-level 'sensors' key")
    entries = {k: {"name": k, **v} for k, v in raw["sensors"].items()}
    return SensorCatalog(sensors=entries)


@functools.cache
def catalog() -> SensorCatalog:
    """The packaged sensor catalog."""
    with open(catalogs.path("sensors.yaml")) as f:
        return parse_catalog(yaml.safe_load(f))


def get(name: str) -> Sensor:
    """A sensor by name, with a one-line error listing the known ones."""
    known = catalog().sensors
    if name not in known:
        raise KeyError(f"unknown sensor {name!r}; the catalog has {sorted(known)}")
    return known[name]


def archive_sensors() -> tuple[str, ...]:
    """Names of the sensors that make up a tbcube TB archive."""
    return tuple(n for n, s in catalog().sensors.items() if s.archive)
