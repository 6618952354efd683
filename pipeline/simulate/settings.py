"""The simulator's settings: forward model, land-cover parameters, sensors' error model.

Everything the simulator assumes is here, in frozen dataclasses, and is written to the truth
store's attrs as JSON (``simulator_settings``), so a retrieval can be scored honestly: the
simulator's dielectric model, roughness and vegetation parameters are independent of whatever
a retrieval assumes.  Values are documented choices (science.md §3.2, §3.8 ranges), not facts.
"""

from __future__ import annotations

import dataclasses
import json

# Land-cover classes: IGBP code → parameters.  tau_* are L-band nadir vegetation optical depths
# (seasonal minimum and maximum), omega the L-band single-scattering albedo, h the roughness
# parameter (Wang & Choudhury), vod_pol the ratio tau_V / tau_H, height_m the canopy height
# (snow of depth d leaves exp(-d / height) of the optical depth above it).  pft is the L4C PFT.


@dataclasses.dataclass(frozen=True)
class LandClass:
    """Parameters of one simulated land-cover class."""

    igbp: int
    name: str
    pft: int
    tau_min: float
    tau_max: float
    omega: float
    h: float
    vod_pol: float
    deciduous: bool
    height_m: float  # canopy height: snow deeper than this buries the vegetation


CLASSES: tuple[LandClass, ...] = (
    LandClass(1, "evergreen needleleaf forest", 1, 0.50, 0.68, 0.07, 0.16, 1.05, False, 15.0),
    LandClass(2, "evergreen broadleaf forest", 2, 0.95, 1.15, 0.08, 0.16, 1.05, False, 25.0),
    LandClass(3, "deciduous needleleaf forest", 3, 0.28, 0.60, 0.07, 0.16, 1.06, True, 12.0),
    LandClass(4, "deciduous broadleaf forest", 4, 0.25, 0.70, 0.07, 0.16, 1.06, True, 15.0),
    LandClass(7, "open shrubland / tundra", 5, 0.14, 0.30, 0.05, 0.16, 1.08, True, 0.3),
    LandClass(9, "savanna", 6, 0.15, 0.40, 0.06, 0.13, 1.08, True, 3.0),
    LandClass(10, "grassland", 6, 0.06, 0.25, 0.05, 0.15, 1.10, True, 0.5),
    LandClass(12, "cropland", 7, 0.03, 0.45, 0.05, 0.13, 1.12, True, 1.0),
    LandClass(15, "permanent snow and ice", 0, 0.0, 0.0, 0.0, 0.10, 1.0, False, 0.1),
    LandClass(16, "barren", 0, 0.0, 0.02, 0.0, 0.09, 1.0, False, 0.1),
)
CLASS_BY_IGBP: dict[int, LandClass] = {c.igbp: c for c in CLASSES}


@dataclasses.dataclass(frozen=True)
class ForwardModel:
    """Radiative-transfer choices of the simulator (what the 'real world' does)."""

    dielectric: str = "mironov"  # "mironov" or "dobson" (models.dielectric)
    roughness_n: float = 2.0  # exponent N of exp(-h cos^N θ)
    roughness_q_high: float = 0.12  # polarization mixing Q at ≥ 5 GHz (Q = 0 at L-band)
    frozen_h_extra: float = 0.20  # extra roughness of frozen ground (ice lenses, snow-soil)
    tau_freq_exponent: float = 0.33  # tau(f) = tau_L (f / 1.41)^x
    omega_freq_slope: float = 0.012  # omega(f) = omega_L + slope * ln(f / 1.41)
    frozen_tau_factor: float = 0.65  # canopy optical depth multiplier when the canopy is frozen
    residual_liquid: float = 0.03  # unfrozen liquid water in frozen soil [m3 m-3]
    # Snow: volume scattering per mm SWE at 37 GHz, its frequency exponent, albedo at 37 GHz
    snow_kappa_37: float = 0.0015
    snow_kappa_exponent: float = 1.5
    snow_albedo_37: float = 0.85
    snow_albedo_slope: float = 0.010  # albedo falls by this per GHz above 37 GHz
    snow_saturation_mm: float = 200.0  # SWE scale at which volume scattering saturates
    # Wet snow: absorption per mm SWE per unit wetness at 10 GHz, frequency exponent
    wet_snow_alpha_10: float = 0.05
    wet_snow_alpha_exponent: float = 0.9
    wet_snow_alpha_lband: float = 0.002
    snow_density_kg_m3: float = 260.0
    # Lake ice: emission e-folding thickness [m] at 1.41 GHz, scaling as f^-1
    lake_ice_depth_lband_m: float = 1.2
    lake_salinity_psu: float = 0.0
    # Atmosphere: dry + water-vapour zenith opacity at ≥ 5 GHz, rain scattering at ≥ 80 GHz
    atmosphere: bool = True
    rain_scattering_k: float = 35.0  # max TB depression [K] at 85-89 GHz in heavy rain


@dataclasses.dataclass(frozen=True)
class Observation:
    """The sensors' error model."""

    noise_scale: float = 0.8  # gridded NEDT = catalog NEDT × this (footprint averaging)
    rfi_rate_lband: float = 0.004  # per observation, scaled by the cell's RFI susceptibility
    rfi_rate_cband: float = 0.006
    rfi_rate_xband: float = 0.002
    rfi_flagged_fraction: float = 0.6  # share of RFI outliers that carry quality_flag bit 0
    rfi_max_k: float = 60.0
    offset_range_k: tuple[float, float] = (0.5, 3.0)
    gain_range: tuple[float, float] = (0.004, 0.02)
    drift_range_k_per_decade: tuple[float, float] = (0.0, 1.0)
    reference_sensor: str = "smap"  # identity calibration


@dataclasses.dataclass(frozen=True)
class Settings:
    """All simulator settings."""

    forward: ForwardModel = ForwardModel()
    observation: Observation = Observation()
    classes: tuple[LandClass, ...] = CLASSES
    spinup_days: int = 365

    def to_json(self) -> str:
        """The settings as a JSON string (sorted keys)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def class_param(self, name: str):
        """Per-IGBP lookup table (length 18, index = IGBP code) of one class parameter."""
        import numpy as np

        table = np.zeros(18, np.float64)
        for c in self.classes:
            table[c.igbp] = float(getattr(c, name))
        return table
