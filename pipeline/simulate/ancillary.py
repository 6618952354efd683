"""Reanalysis-like ancillary fields for simulated archives (``{root}/ancillary/{grid}.zarr``).

Retrievals need ancillary data that real processing takes from models: the SMAP retrieval's
effective temperature (GEOS-FP/ERA5 soil temperature operationally) and a snow mask.  A
retrieval must never read the simulator's ``truth/``, which no real archive has and which would
flatter it.  The simulator therefore also writes what a reanalysis would provide: the truth
degraded by realistic model errors —

- temperatures: a per-cell bias ~ N(0, ``temp_bias_sd_k``) plus AR(1) day-to-day errors with
  standard deviation ``temp_noise_sd_k`` and lag-1 correlation ``temp_ar1`` (reanalysis 2 m /
  top-layer soil temperature errors of 1–3 K are typical [K]);
- snow water equivalent: multiplicative log-normal errors (``swe_rel_sd``) and a detection
  limit ``swe_detect_mm`` below which the model shows no snow.

A real archive supplies the same layout from an actual reanalysis (same variable names, units,
dims).  Unlike the rest of the simulator, the error draws are made for the whole archive window
at once (deterministic per seed and window, but a cell's errors depend on the window).
Variables: ``soil_temperature``, ``surface_temperature`` (time, pass, y, x) [K] and
``snow_water_equivalent`` (time, y, x) [mm].
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from pipeline import dims
from pipeline.io import stores

__all__ = ["AncillaryErrors", "ancillary_from_truth", "ancillary_url", "write_ancillary"]


@dataclasses.dataclass(frozen=True)
class AncillaryErrors:
    """Error model of the simulated reanalysis."""

    temp_bias_sd_k: float = 1.0
    temp_noise_sd_k: float = 1.5
    temp_ar1: float = 0.7
    swe_rel_sd: float = 0.3
    swe_detect_mm: float = 5.0


def ancillary_url(root: str, grid_name: str) -> str:
    """``{root}/ancillary/{grid}.zarr``."""
    return stores.ancillary_url(root, grid_name)


def _rng(seed: int, name: str, grid_name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(f"{grid_name}/{name}".encode())])


def _temperature_error(rng: np.random.Generator, shape: tuple[int, ...],
                       e: AncillaryErrors) -> np.ndarray:
    """Bias per cell + AR(1) errors along the first (time) axis; shape (time, ...)."""
    bias = rng.normal(0.0, e.temp_bias_sd_k, shape[1:])
    innov = rng.normal(0.0, e.temp_noise_sd_k * np.sqrt(1 - e.temp_ar1**2), shape)
    err = np.empty(shape, np.float32)
    err[0] = rng.normal(0.0, e.temp_noise_sd_k, shape[1:])
    for t in range(1, shape[0]):
        err[t] = e.temp_ar1 * err[t - 1] + innov[t]
    return err + bias


def ancillary_from_truth(truth: xr.Dataset, *, seed: int = 0,
                         errors: AncillaryErrors = AncillaryErrors()) -> xr.Dataset:
    """Degrade the truth into a reanalysis-like ancillary dataset (eager; small fields)."""
    grid_name = str(truth.attrs.get("grid", ""))
    out = xr.Dataset(attrs={k: truth.attrs[k] for k in ("grid", "grid_window", "Conventions")
                            if k in truth.attrs})
    for name in ("soil_temperature", "surface_temperature"):
        if name not in truth:
            continue
        da = truth[name].load()
        err = _temperature_error(_rng(seed, name, grid_name), da.shape, errors)
        out[name] = (da + err).astype(np.float32).assign_attrs(
            units="K", long_name=f"{name.replace('_', ' ')} (simulated reanalysis)",
            grid_mapping=dims.CRS)
    if "snow_water_equivalent" in truth:
        swe = truth["snow_water_equivalent"].load()
        rng = _rng(seed, "snow_water_equivalent", grid_name)
        factor = np.exp(rng.normal(0.0, errors.swe_rel_sd, swe.shape))
        est = (swe * factor).where(swe * factor >= errors.swe_detect_mm, 0.0)
        out["snow_water_equivalent"] = est.astype(np.float32).assign_attrs(
            units="mm", long_name="snow water equivalent (simulated reanalysis)",
            grid_mapping=dims.CRS)
    keep = [c for c in (dims.LAT, dims.LON) if c in truth.coords]
    out = out.assign_coords({c: truth[c] for c in keep})
    if dims.CRS in truth:
        out[dims.CRS] = truth[dims.CRS]
    out.attrs.update(
        title="tbcube simulated reanalysis (ancillary fields)",
        source="simulator truth degraded by the error model in attrs 'ancillary_errors'",
        ancillary_errors=json.dumps(dataclasses.asdict(errors)), seed=int(seed))
    return out


def write_ancillary(root: str, grid_name: str, *, seed: int = 0,
                    errors: AncillaryErrors = AncillaryErrors(),
                    storage_options: Mapping[str, Any] | None = None) -> str:
    """Write ``{root}/ancillary/{grid}.zarr`` from ``{root}/truth/{grid}.zarr``; returns its URL."""
    truth = stores.open_dataset(stores.truth_url(root, grid_name), storage_options=storage_options)
    anc = ancillary_from_truth(truth, seed=seed, errors=errors)
    url = ancillary_url(root, grid_name)
    stores.write_dataset(anc, url, storage_options=storage_options)
    return url
