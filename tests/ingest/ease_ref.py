"""Independent EASE-Grid 2.0 row/col (pyproj + the data-contract formula), for expectations."""

from __future__ import annotations

import numpy as np
import pyproj

# name: (epsg, ncols, nrows, cell_m) from docs/data-contract.md
GRIDS = {
    "M36": (6933, 964, 406, 36032.220840584),
    "N36": (6931, 500, 500, 36000.0),
}


def rowcol(grid: str, lat, lon) -> tuple[np.ndarray, np.ndarray]:
    """Row/col of the cell containing each point (cell centres at x=(j+0.5-ncols/2)*c ...)."""
    epsg, ncols, nrows, cell = GRIDS[grid]
    tr = pyproj.Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    x, y = tr.transform(np.asarray(lon, float), np.asarray(lat, float))
    col = np.floor(np.asarray(x) / cell + ncols / 2).astype(int)
    row = np.floor(nrows / 2 - np.asarray(y) / cell).astype(int)
    return row, col


def cell_lon(grid: str, row, col) -> np.ndarray:
    """Longitude of the centre of cell (row, col) [deg]."""
    epsg, ncols, nrows, cell = GRIDS[grid]
    x = (np.asarray(col) + 0.5 - ncols / 2) * cell
    y = (nrows / 2 - np.asarray(row) - 0.5) * cell
    tr = pyproj.Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
    return np.asarray(tr.transform(x, y)[0])


def local_date_pass(utc: np.ndarray, lon_deg) -> tuple[np.ndarray, np.ndarray]:
    """Local solar date (datetime64[D]) and pass ('am'/'pm') for UTC times and longitudes."""
    lst = utc.astype("datetime64[ms]") + (np.asarray(lon_deg) * 240_000).astype("timedelta64[ms]")
    day = lst.astype("datetime64[D]")
    hours = (lst - day).astype("timedelta64[ms]").astype(float) / 3.6e6
    return day, np.where(hours < 12, "am", "pm")
