"""Counter-based randomness: every random number is a pure function of its keys.

A draw is ``hash(seed, stream, key1, key2, …)`` (SplitMix64 finaliser), so a grid cell's weather,
noise and sensor sampling never depend on how the domain is split into chunks: chunked generation
equals whole generation bit for bit, and the same seed gives the same bytes.

Spatially smooth random fields are sums of random plane waves on the unit sphere, evaluated at a
cell's lat/lon: they are deterministic functions of position (no neighbourhood needed), coherent
across grids (an N36 and an M25 cell at the same place see the same surface) and seam-free.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TWO53 = float(2**53)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def stream_id(name: str) -> int:
    """A stable 63-bit integer for a stream name (FNV-1a; independent of PYTHONHASHSEED)."""
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h >> 1


def hash_keys(seed: int, stream: str, *keys) -> np.ndarray:
    """uint64 hash of ``(seed, stream, *keys)``; keys are integer arrays that broadcast."""
    with np.errstate(over="ignore"):
        h = _mix(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _GOLDEN + np.uint64(stream_id(stream)))
        arrays = np.broadcast_arrays(*[np.asarray(k, dtype=np.int64) for k in keys]) if keys else []
        h = np.broadcast_to(h, arrays[0].shape if arrays else ()).copy()
        for k in arrays:
            h = _mix(h ^ (k.astype(np.uint64) * _GOLDEN + np.uint64(0x632BE59BD9B4E019)))
    return h


def uniform(seed: int, stream: str, *keys) -> np.ndarray:
    """Uniform numbers in the open interval (0, 1), float64, shape = broadcast of ``keys``."""
    h = hash_keys(seed, stream, *keys)
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / _TWO53


def normal(seed: int, stream: str, *keys) -> np.ndarray:
    """Standard normal numbers (Box–Muller on two counter-based uniforms), float64."""
    u1 = uniform(seed, stream + "/a", *keys)
    u2 = uniform(seed, stream + "/b", *keys)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def subhash(base: np.ndarray, k: int) -> np.ndarray:
    """Derive an independent uint64 hash from a base hash and a small integer ``k``."""
    with np.errstate(over="ignore"):
        return _mix(base ^ (np.uint64(k + 1) * _GOLDEN + np.uint64(0x2545F4914F6CDD1D)))


def uniform_from(base: np.ndarray, k: int) -> np.ndarray:
    """Uniform (0, 1) numbers from a base hash (see :func:`hash_keys`) and index ``k``."""
    return ((subhash(base, k) >> np.uint64(11)).astype(np.float64) + 0.5) / _TWO53


def normal_from(base: np.ndarray, k: int) -> np.ndarray:
    """Standard normal numbers from a base hash and index ``k`` (Box–Muller)."""
    u1 = uniform_from(base, 2 * k)
    u2 = uniform_from(base, 2 * k + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def unit_vectors(lat_deg, lon_deg) -> np.ndarray:
    """Unit vectors on the sphere, shape (..., 3), float64."""
    la = np.deg2rad(np.asarray(lat_deg, np.float64))
    lo = np.deg2rad(np.asarray(lon_deg, np.float64))
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _waves(seed: int, stream: str, n: int, scale_km: float):
    """Directions (n, 3), spatial frequencies (n,) [cycles per radian] and phases (n,)."""
    k = np.arange(n)
    d = np.stack([normal(seed, stream + "/dir", k, j) for j in range(3)], axis=-1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    # wavelengths spread around the scale (log-uniform over a factor 4 either side)
    lam = scale_km * np.exp(np.log(4.0) * (2 * uniform(seed, stream + "/lam", k) - 1))
    freq = 6371.0 / lam
    phase = 2 * np.pi * uniform(seed, stream + "/phase", k)
    return d, freq, phase


def smooth_field(
    seed: int, stream: str, lat_deg, lon_deg, scale_km: float = 300.0, n_waves: int = 48
) -> np.ndarray:
    """A zero-mean, unit-variance smooth random field at (lat, lon), float64, same shape.

    Sum of ``n_waves`` random plane waves on the unit sphere with wavelengths near ``scale_km``.
    """
    basis = wave_basis(seed, stream, lat_deg, lon_deg, scale_km, n_waves)
    out = np.zeros(basis.shape[:-1])
    for k in range(n_waves):  # fixed summation order: identical for any chunking
        out = out + basis[..., k]
    return out


def wave_basis(
    seed: int, stream: str, lat_deg, lon_deg, scale_km: float, n_waves: int
) -> np.ndarray:
    """The plane-wave basis of :func:`smooth_field` at each point, shape (..., n_waves)."""
    p = unit_vectors(lat_deg, lon_deg)
    d, freq, phase = _waves(seed, stream, n_waves, scale_km)
    # explicit dot product (no BLAS: its blocking could change the rounding with array size)
    proj = p[..., None, 0] * d[:, 0] + p[..., None, 1] * d[:, 1] + p[..., None, 2] * d[:, 2]
    return np.sqrt(2.0 / n_waves) * np.cos(2 * np.pi * proj * freq + phase)


def ar1(innovations: np.ndarray, phi: float, axis: int = 0) -> np.ndarray:
    """Unit-variance AR(1) from standard-normal innovations along ``axis`` (zero initial state)."""
    scale = np.sqrt(1.0 - phi**2)
    return signal.lfilter([scale], [1.0, -phi], innovations, axis=axis)


def space_time_field(
    seed: int,
    stream: str,
    lat_deg,
    lon_deg,
    days: np.ndarray,
    *,
    scale_km: float,
    phi: float,
    n_waves: int = 24,
    warmup: int = 120,
) -> np.ndarray:
    """A smooth space–time random field: plane waves whose amplitudes are AR(1) in time.

    Args:
      days: Day numbers since 1970-01-01, shape (T,), consecutive.
      lat_deg, lon_deg: Positions, shape (N,).

    Returns:
      Field of shape (T, N), zero mean, unit variance, lag-1 autocorrelation ``phi`` in time and
      spatial correlation length about ``scale_km``.
    """
    days = np.asarray(days, np.int64)
    full = np.arange(days[0] - warmup, days[-1] + 1)
    k = np.arange(n_waves)
    innov = normal(seed, stream + "/amp", full[:, None], k[None, :])
    amp = ar1(innov, phi, axis=0)[warmup:]  # (T, n)
    basis = wave_basis(seed, stream, lat_deg, lon_deg, scale_km, n_waves)  # (N, n)
    out = np.zeros((len(days), basis.shape[0]))
    for j in range(n_waves):  # fixed summation order (no BLAS), identical for any chunking
        out = out + amp[:, j, None] * basis[None, :, j]
    return out
