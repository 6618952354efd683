"""EASE-Grid 2.0 grids: cell centres, lat/lon ↔ x/y ↔ row/col, windows and CF grid mapping.

The six grids of ``docs/data-contract.md`` (``M36 M25 M09`` on EPSG:6933, ``N36 N25 N09`` on
EPSG:6931).  Cell centres are symmetric about the projection origin::

    x = (j + 0.5 - ncols/2) * cell,   y = (nrows/2 - i - 0.5) * cell      (row 0 = north edge)

A regional store is a :class:`Window` ``[row0, row1) × [col0, col1)`` of a grid that keeps the
grid's own ``x``/``y`` values and records ``grid`` and ``grid_window`` in its attrs.

>>> from pipeline import grid
>>> g = grid.get("N36")
>>> row, col = grid.latlon_to_rowcol(g, 68.63, -149.60)   # Toolik Field Station
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np
import pyproj
import xarray as xr

from pipeline import dims

__all__ = [
    "GRIDS",
    "Grid",
    "Window",
    "bin_to_grid",
    "crs_variable",
    "get",
    "grid_coords",
    "latlon_to_rowcol",
    "latlon_to_xy",
    "rowcol_to_xy",
    "window_for_bbox",
    "window_from_attrs",
    "xy_to_latlon",
    "xy_to_rowcol",
]


@dataclasses.dataclass(frozen=True)
class Grid:
    """One EASE-Grid 2.0 grid definition."""

    name: str
    epsg: int
    ncols: int
    nrows: int
    cell_m: float

    @property
    def shape(self) -> tuple[int, int]:
        """``(nrows, ncols)``."""
        return (self.nrows, self.ncols)

    @property
    def is_global(self) -> bool:
        """True for the cylindrical (M) grids."""
        return self.epsg == 6933

    @property
    def x(self) -> np.ndarray:
        """Cell-centre x of every column [m], shape (ncols,), float64."""
        return (np.arange(self.ncols) + 0.5 - self.ncols / 2) * self.cell_m

    @property
    def y(self) -> np.ndarray:
        """Cell-centre y of every row [m], shape (nrows,), float64, north first."""
        return (self.nrows / 2 - np.arange(self.nrows) - 0.5) * self.cell_m

    @property
    def cell_area_m2(self) -> float:
        """Area of one cell [m²] (the grids are equal-area)."""
        return self.cell_m**2

    def full_window(self) -> Window:
        """The window covering the whole grid."""
        return Window(0, self.nrows, 0, self.ncols)


GRIDS: dict[str, Grid] = {
    g.name: g
    for g in (
        Grid("M36", 6933, 964, 406, 36032.220840584),
        Grid("M25", 6933, 1388, 584, 25025.260000),
        Grid("M09", 6933, 3856, 1624, 9008.055210146),
        Grid("N36", 6931, 500, 500, 36000.0),
        Grid("N25", 6931, 720, 720, 25000.0),
        Grid("N09", 6931, 2000, 2000, 9000.0),
    )
}


def get(grid: str | Grid) -> Grid:
    """A grid by name (case-insensitive), or the grid itself."""
    if isinstance(grid, Grid):
        return grid
    key = str(grid).upper()
    if key not in GRIDS:
        raise KeyError(f"unknown EASE-Grid 2.0 grid {grid!r}; known grids are {sorted(GRIDS)}")
    return GRIDS[key]


@dataclasses.dataclass(frozen=True)
class Window:
    """A half-open block of rows and columns ``[row0, row1) × [col0, col1)``."""

    row0: int
    row1: int
    col0: int
    col1: int

    def __post_init__(self) -> None:
        if not (0 <= self.row0 < self.row1 and 0 <= self.col0 < self.col1):
            raise ValueError(f"empty or negative grid window {self.as_list()}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(nrows, ncols)`` of the window."""
        return (self.row1 - self.row0, self.col1 - self.col0)

    def as_list(self) -> list[int]:
        """``[row0, row1, col0, col1]`` as stored in the ``grid_window`` attr."""
        return [int(self.row0), int(self.row1), int(self.col0), int(self.col1)]

    def check(self, grid: Grid) -> Window:
        """Return self after checking it lies inside ``grid``."""
        if self.row1 > grid.nrows or self.col1 > grid.ncols:
            raise ValueError(
                f"window {self.as_list()} exceeds grid {grid.name} ({grid.nrows} rows × "
                f"{grid.ncols} cols)"
            )
        return self

    @classmethod
    def parse(cls, spec: str | Sequence[int]) -> Window:
        """From ``"r0,r1,c0,c1"`` or a 4-sequence."""
        vals = [int(v) for v in (spec.split(",") if isinstance(spec, str) else spec)]
        if len(vals) != 4:
            raise ValueError(f"a grid window is four integers row0,row1,col0,col1; got {spec!r}")
        return cls(*vals)


@functools.cache
def _transformer(epsg: int, inverse: bool) -> pyproj.Transformer:
    src, dst = ("EPSG:4326", f"EPSG:{epsg}")
    if inverse:
        src, dst = dst, src
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def latlon_to_xy(grid: str | Grid, lat, lon) -> tuple[np.ndarray, np.ndarray]:
    """Project WGS84 lat/lon [deg] to grid x/y [m] (float64, broadcast shape)."""
    g = get(grid)
    lat, lon = np.broadcast_arrays(np.asarray(lat, np.float64), np.asarray(lon, np.float64))
    x, y = _transformer(g.epsg, False).transform(lon, lat)
    return np.asarray(x), np.asarray(y)


# WGS 84, for the exact authalic-latitude refinement of the inverse projections.
_A = 6378137.0
_E2 = (1 / 298.257223563) * (2 - 1 / 298.257223563)
_E = np.sqrt(_E2)


def _q(lat_rad: np.ndarray) -> np.ndarray:
    """Snyder's (1987) q(phi) (eq. 3-12), the exact authalic function on WGS 84."""
    s = np.sin(lat_rad)
    return (1 - _E2) * (s / (1 - _E2 * s**2) - np.log((1 - _E * s) / (1 + _E * s)) / (2 * _E))


def _dq(lat_rad: np.ndarray) -> np.ndarray:
    """dq/dphi = 2 (1 - e^2) cos(phi) / (1 - e^2 sin^2 phi)^2."""
    s = np.sin(lat_rad)
    return 2 * (1 - _E2) * np.cos(lat_rad) / (1 - _E2 * s**2) ** 2


def _refine_lat(epsg: int, x: np.ndarray, y: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Newton-polish PROJ's inverse latitude against the exact forward formulas.

    PROJ inverts the equal-area projections with a truncated series for the authalic latitude,
    whose round trip is off by up to ~2 mm; two Newton steps on the projected coordinate bring
    lat/lon -> x/y -> lat/lon back to well under 1 mm.  Longitude is exact already.
    """
    phi = np.radians(lat)
    if epsg == 6933:  # cylindrical: y = a q / (2 k0), k0 = cos(30) / sqrt(1 - e^2 sin^2(30))
        k0 = np.cos(np.radians(30.0)) / np.sqrt(1 - _E2 * 0.25)
        ok = np.isfinite(phi) & (np.abs(lat) < 89.9)
        for _ in range(2):
            f = _A * _q(phi) / (2 * k0) - y
            d = _A * _dq(phi) / (2 * k0)
            phi = np.where(ok, phi - f / np.where(ok, d, 1.0), phi)
    else:  # north polar azimuthal: rho = a sqrt(qp - q)
        rho_t = np.hypot(x, y)
        qp = _q(np.float64(np.pi / 2))
        for _ in range(2):
            root = np.sqrt(np.maximum(qp - _q(phi), 0.0))
            ok = np.isfinite(phi) & (rho_t > 1.0) & (root > 0)
            f = _A * root - rho_t
            d = -_A * _dq(phi) / (2 * np.where(ok, root, 1.0))
            phi = np.where(ok, phi - f / np.where(ok, d, 1.0), phi)
    return np.degrees(phi)


def xy_to_latlon(grid: str | Grid, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Unproject grid x/y [m] to WGS84 lat/lon [deg] (float64, broadcast shape)."""
    g = get(grid)
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    lon, lat = _transformer(g.epsg, True).transform(x, y)
    with np.errstate(invalid="ignore", divide="ignore"):
        lat = _refine_lat(g.epsg, x, y, np.asarray(lat))
    return np.asarray(lat), np.asarray(lon)


def xy_to_rowcol(grid: str | Grid, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Fractional row/col of x/y, with cell centres at integers (float64)."""
    g = get(grid)
    col = np.asarray(x, np.float64) / g.cell_m + g.ncols / 2 - 0.5
    row = g.nrows / 2 - 0.5 - np.asarray(y, np.float64) / g.cell_m
    return row, col


def rowcol_to_xy(grid: str | Grid, row, col) -> tuple[np.ndarray, np.ndarray]:
    """x/y [m] of (possibly fractional) row/col."""
    g = get(grid)
    x = (np.asarray(col, np.float64) + 0.5 - g.ncols / 2) * g.cell_m
    y = (g.nrows / 2 - np.asarray(row, np.float64) - 0.5) * g.cell_m
    return x, y


def latlon_to_rowcol(grid: str | Grid, lat, lon) -> tuple[np.ndarray, np.ndarray]:
    """Integer row/col of the cell containing each lat/lon; -1 where outside the grid."""
    g = get(grid)
    x, y = latlon_to_xy(g, lat, lon)
    row, col = xy_to_rowcol(g, x, y)
    r = np.floor(row + 0.5)
    c = np.floor(col + 0.5)
    ok = np.isfinite(r) & np.isfinite(c) & (r >= 0) & (r < g.nrows) & (c >= 0) & (c < g.ncols)
    return np.where(ok, r, -1).astype(np.int64), np.where(ok, c, -1).astype(np.int64)


def window_for_bbox(
    grid: str | Grid, lat_min: float, lat_max: float, lon_min: float, lon_max: float, n: int = 181
) -> Window:
    """Smallest window containing the boundary of a lat/lon box (sampled with ``n`` points/edge)."""
    g = get(grid)
    if not (-90 <= lat_min < lat_max <= 90 and -180 <= lon_min < lon_max <= 180):
        raise ValueError(f"invalid lat/lon box {(lat_min, lat_max, lon_min, lon_max)}")
    la = np.linspace(lat_min, lat_max, n)
    lo = np.linspace(lon_min, lon_max, n)
    lat = np.concatenate([la, la, np.full(n, lat_min), np.full(n, lat_max)])
    lon = np.concatenate([np.full(n, lon_min), np.full(n, lon_max), lo, lo])
    x, y = latlon_to_xy(g, lat, lon)
    row, col = xy_to_rowcol(g, x, y)
    ok = np.isfinite(row) & np.isfinite(col)
    r0 = int(np.clip(np.floor(row[ok].min() + 0.5), 0, g.nrows - 1))
    r1 = int(np.clip(np.floor(row[ok].max() + 0.5), 0, g.nrows - 1)) + 1
    c0 = int(np.clip(np.floor(col[ok].min() + 0.5), 0, g.ncols - 1))
    c1 = int(np.clip(np.floor(col[ok].max() + 0.5), 0, g.ncols - 1)) + 1
    return Window(r0, r1, c0, c1)


def window_from_attrs(attrs: dict) -> tuple[Grid, Window]:
    """The grid and window recorded in a store's attrs (``grid``, ``grid_window``)."""
    if "grid" not in attrs:
        raise KeyError("attrs have no 'grid' entry")
    g = get(attrs["grid"])
    w = attrs.get("grid_window")
    return g, (Window.parse(w) if w is not None else g.full_window()).check(g)


@functools.cache
def _cf_crs(epsg: int) -> dict:
    crs = pyproj.CRS.from_epsg(epsg)
    cf = crs.to_cf()
    cf["spatial_ref"] = crs.to_wkt()
    cf["crs_wkt"] = cf["spatial_ref"]
    cf["epsg_code"] = int(epsg)
    return cf


def crs_variable(grid: str | Grid | int) -> xr.DataArray:
    """The CF scalar ``crs`` variable (``grid_mapping_name``, ``spatial_ref`` WKT, ``epsg_code``).

    ``grid`` may also be an EPSG code (e.g. 4326 for station stores).
    """
    epsg = grid if isinstance(grid, int) else get(grid).epsg
    attrs = dict(_cf_crs(epsg))
    attrs["long_name"] = "coordinate reference system"
    return xr.DataArray(np.int32(0), attrs=attrs, name=dims.CRS)


def grid_coords(grid: str | Grid, window: Window | None = None) -> xr.Dataset:
    """An empty Dataset with the ``x``, ``y``, ``lat``, ``lon`` coords, ``crs`` and grid attrs.

    ``lat``/``lon`` are float32 (y, x); cells off the Earth (none on these grids) would be NaN.
    """
    g = get(grid)
    w = (window or g.full_window()).check(g)
    x = g.x[w.col0 : w.col1]
    y = g.y[w.row0 : w.row1]
    xx, yy = np.meshgrid(x, y)
    lat, lon = xy_to_latlon(g, xx, yy)
    ds = xr.Dataset(
        coords={
            dims.Y: (dims.Y, y, {"units": "m", "standard_name": "projection_y_coordinate",
                                 "long_name": "y coordinate of cell centre", "axis": "Y"}),
            dims.X: (dims.X, x, {"units": "m", "standard_name": "projection_x_coordinate",
                                 "long_name": "x coordinate of cell centre", "axis": "X"}),
            dims.LAT: ((dims.Y, dims.X), lat.astype(np.float32),
                       {"units": "degrees_north", "standard_name": "latitude",
                        "long_name": "latitude of cell centre"}),
            dims.LON: ((dims.Y, dims.X), lon.astype(np.float32),
                       {"units": "degrees_east", "standard_name": "longitude",
                        "long_name": "longitude of cell centre"}),
        },
        attrs={"grid": g.name, "grid_window": w.as_list(), "Conventions": "CF-1.10"},
    )
    ds[dims.CRS] = crs_variable(g)
    return ds


def bin_to_grid(
    grid: str | Grid,
    lat: np.ndarray,
    lon: np.ndarray,
    values: np.ndarray,
    window: Window | None = None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Drop-in-bucket average of point observations onto a grid (window).

    Args:
      grid: Target grid.
      lat, lon: Observation positions [deg], shape (n,).
      values: Observations, shape (n,) or (n, k) for k channels; NaN entries are ignored
        channel by channel.
      window: Target window (default the whole grid).
      weights: Optional per-observation weights (e.g. inverse distance to the cell centre), (n,).

    Returns:
      ``(mean, count)``: mean of shape (rows, cols[, k]) float64 (NaN where no observation) and
      the number of observations used, int32 of the same shape.
    """
    g = get(grid)
    w = (window or g.full_window()).check(g)
    vals = np.asarray(values, np.float64)
    squeeze = vals.ndim == 1
    if squeeze:
        vals = vals[:, None]
    row, col = latlon_to_rowcol(g, lat, lon)
    inside = (row >= w.row0) & (row < w.row1) & (col >= w.col0) & (col < w.col1)
    nr, nc = w.shape
    flat = np.where(inside, (row - w.row0) * nc + (col - w.col0), -1)
    wt = np.ones(len(flat)) if weights is None else np.asarray(weights, np.float64)
    out_sum = np.zeros((nr * nc, vals.shape[1]))
    out_w = np.zeros((nr * nc, vals.shape[1]))
    out_n = np.zeros((nr * nc, vals.shape[1]), np.int32)
    for k in range(vals.shape[1]):
        ok = inside & np.isfinite(vals[:, k]) & np.isfinite(wt) & (wt > 0)
        idx = flat[ok]
        np.add.at(out_sum[:, k], idx, vals[ok, k] * wt[ok])
        np.add.at(out_w[:, k], idx, wt[ok])
        np.add.at(out_n[:, k], idx, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(out_w > 0, out_sum / np.where(out_w > 0, out_w, 1), np.nan)
    mean = mean.reshape(nr, nc, -1)
    count = out_n.reshape(nr, nc, -1)
    if squeeze:
        return mean[..., 0], count[..., 0]
    return mean, count


# Grid coordinates [m] of two stores on the same cells agree to far better than this (float32
# coordinates near the EASE-Grid 2.0 edge, |x| ~ 1.7e7 m, round by up to 1 m), and cells of
# neighbouring windows differ by a whole cell (1 km or more).
SAME_CELL_TOLERANCE_M = 10.0


def cells_mismatch(a: xr.Dataset | xr.DataArray, b: xr.Dataset | xr.DataArray, *,
                   other: str = "the other store") -> str | None:
    """Why ``a`` is not on ``b``'s cells (``"dim 'x' has 3 cells, the other store 4"``, ``"dim
    'x' coordinates differ (x[0] = … m, … m in the other store): …"``), or None when it is.
    Compares the y/x sizes and, where both have them, the projected coordinates (within
    :data:`SAME_CELL_TOLERANCE_M`):
    a window of the same size elsewhere on the grid would otherwise align by position."""
    for d in (dims.Y, dims.X):
        if d not in a.dims or d not in b.dims:
            continue
        if a.sizes[d] != b.sizes[d]:
            return f"dim '{d}' has {a.sizes[d]} cells, {other} {b.sizes[d]}"
        if d in a.coords and d in b.coords:
            va = np.asarray(a[d].values, np.float64)
            vb = np.asarray(b[d].values, np.float64)
            off = np.flatnonzero(~(np.abs(va - vb) <= SAME_CELL_TOLERANCE_M))
            if off.size:
                i = int(off[0])
                return (f"dim '{d}' coordinates differ ({d}[{i}] = {va[i]:.1f} m, "
                        f"{vb[i]:.1f} m in {other}): another grid or window")
    return None

