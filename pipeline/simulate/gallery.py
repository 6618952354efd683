"""Figures of a simulated demo archive (docs/figures/simulator/*.png).

``make_gallery(demo_root, out_dir)`` reads ``{demo_root}/alaska-n36`` and
``{demo_root}/transect-m25`` (written by ``simulate("demo", demo_root)``) and writes:

* ``ts_frozen_thawed.png`` — SMAP TB, NPR and the true soil state at a tundra cell (years);
* ``ts_snowmelt.png`` — one spring at a tundra cell: L-band NPR spike from ponding, 36.5 GHz
  drop under dry snow and rise when the snow is wet, SWE and the true thaw;
* ``ts_lake.png`` — a lake-rich cell: TBh lowered by open water, raised by lake ice;
* ``ts_forest.png`` — a forest cell: small NPR, VOD seasonal cycle;
* ``maps_alaska_one_day.png`` — one day per sensor over the Alaska window, with land cover;
* ``transect_coverage.png`` — 30 days × latitude per sensor along the M25 transect (swaths,
  revisit, latitude limits);
* ``record_transect.png`` — the 2009–2019 multi-sensor record at one mid-latitude cell.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from pipeline.io import stores

_DPI = 80


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _open(root: str, *parts: str) -> xr.Dataset:
    return stores.open_dataset(stores.join(root, *parts))


def _pick(static: xr.Dataset, cond) -> tuple[int, int]:
    ok = np.argwhere(np.asarray(cond))
    if len(ok) == 0:
        raise ValueError("no cell matches")
    iy, ix = ok[len(ok) // 2]
    return int(iy), int(ix)


def _npr(v, h):
    return (v - h) / (v + h)


def _series(ax, t, y, **kw):
    m = np.isfinite(y)
    ax.plot(t[m], y[m], ".", ms=2.5, **kw)


def ts_cell(root: str, cell: tuple[int, int], title: str, out: Path, start=None, end=None,
            high: bool = False) -> None:
    """TB / NPR / truth time series of one cell."""
    plt = _plt()
    sl = slice(start, end)
    smap = _open(root, "tb", "smap.zarr").isel(y=cell[0], x=cell[1]).sel(time=sl).load()
    truth = _open(root, "truth", f"{_grid(root)}.zarr").isel(y=cell[0], x=cell[1]).sel(
        time=sl).load()
    t = smap.time.values
    v = smap.tb.sel(channel="1.41V", **{"pass": "am"}).values
    h = smap.tb.sel(channel="1.41H", **{"pass": "am"}).values
    n = 4 if high else 3
    fig, axs = plt.subplots(n, 1, figsize=(9, 2.0 * n), sharex=True)
    _series(axs[0], t, v, label="SMAP 1.41V (am)")
    _series(axs[0], t, h, label="SMAP 1.41H (am)")
    axs[0].set_ylabel("TB [K]")
    axs[0].legend(loc="lower left", fontsize=7, markerscale=3)
    _series(axs[1], t, _npr(v, h), color="k")
    axs[1].axhspan(0.01, 0.02, color="tab:blue", alpha=0.15, label="frozen range")
    axs[1].axhspan(0.02, 0.06, color="tab:red", alpha=0.1, label="thawed range")
    axs[1].set_ylabel("NPR")
    axs[1].legend(loc="upper left", fontsize=7)
    tt = truth.time.values
    fr = truth.frozen.sel({"pass": "am"}).values.astype(np.float32)
    axs[2].fill_between(tt, 0, fr, step="mid", color="tab:blue", alpha=0.3, label="frozen (am)")
    axs[2].plot(tt, truth.soil_moisture.sel({"pass": "am"}).values, color="tab:brown",
                label="soil moisture [m3 m-3]")
    ax2 = axs[2].twinx()
    ax2.plot(tt, truth.snow_water_equivalent.values, color="tab:cyan", label="SWE [mm]")
    if np.isfinite(truth.lake_ice_fraction.values).any():
        ax2.plot(tt, 100 * truth.lake_ice_fraction.values, color="tab:purple",
                 label="lake ice [%]")
    ax2.legend(loc="upper right", fontsize=7)
    axs[2].legend(loc="upper left", fontsize=7)
    axs[2].set_ylim(0, 1.05)
    if high:
        a2 = _open(root, "tb", "amsr2.zarr").isel(y=cell[0], x=cell[1]).sel(time=sl).load()
        for ch in ("36.5V", "36.5H", "89.0V"):
            _series(axs[3], a2.time.values, a2.tb.sel(channel=ch, **{"pass": "pm"}).values,
                    label=f"AMSR2 {ch} (pm)")
        w = truth.snow_wet.sel({"pass": "pm"}).values.astype(np.float32)
        axs[3].fill_between(tt, 150, 150 + 130 * w, step="mid", color="tab:orange", alpha=0.2,
                            label="wet snow (pm)")
        axs[3].set_ylim(150, 285)
        axs[3].set_ylabel("TB [K]")
        axs[3].legend(loc="lower left", fontsize=7, markerscale=3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=_DPI)
    plt.close(fig)


def _grid(root: str) -> str:
    return "N36" if "n36" in root.lower() else "M25"


def maps_one_day(root: str, day: str, out: Path) -> None:
    """One day of every sensor over the window (am pass), plus land cover and lakes."""
    plt = _plt()
    static = _open(root, "static", f"{_grid(root)}.zarr").load()
    panels = [("landcover", static.landcover.values, "tab20", None),
              ("open-water fraction", static.water_fraction.values, "Blues", (0, 0.5))]
    for sensor, ch in (("smap", "1.41H"), ("amsr2", "10.65H"), ("amsr2", "36.5V"),
                       ("gmi", "36.64V"), ("tmi", "37.0V")):
        url = stores.tb_url(root, sensor)
        if not stores.exists(url):
            continue
        ds = stores.open_dataset(url).sel(time=day)
        img = ds.tb.sel(channel=ch, **{"pass": "am"}).values
        if not np.isfinite(img).any():
            continue
        panels.append((f"{sensor} {ch} am {day}", img, "viridis", (150, 290)))
    fig, axs = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8))
    for ax, (name, img, cmap, lim) in zip(axs, panels, strict=True):
        im = ax.imshow(img, cmap=cmap, vmin=None if lim is None else lim[0],
                       vmax=None if lim is None else lim[1])
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out, dpi=_DPI)
    plt.close(fig)


def transect_coverage(root: str, start: str, out: Path, days: int = 30) -> None:
    """Latitude × day of one channel per sensor (am pass, column 0) along the transect."""
    plt = _plt()
    end = str(np.datetime64(start) + np.timedelta64(days - 1, "D"))
    items = [("tmi", "10.65H"), ("amsre", "10.65H"), ("amsr2", "10.65H"), ("gmi", "10.65H"),
             ("smap", "1.41H")]
    items = [it for it in items if stores.exists(stores.tb_url(root, it[0]))]

    def has_data(sensor, ch):
        tb = stores.open_dataset(stores.tb_url(root, sensor)).tb
        return bool(np.isfinite(tb.sel(channel=ch, time=slice(start, end)).values).any())

    items = [it for it in items if has_data(*it)]
    fig, axs = plt.subplots(1, len(items), figsize=(2.4 * len(items), 4.2), sharey=True)
    for ax, (sensor, ch) in zip(np.atleast_1d(axs), items, strict=True):
        ds = stores.open_dataset(stores.tb_url(root, sensor)).sel(time=slice(start, end))
        img = ds.tb.sel(channel=ch, **{"pass": "am"}).isel(x=0).values.T  # (y, time)
        lat = ds.lat.isel(x=0).values
        ax.pcolormesh(np.arange(img.shape[1]), lat, img, vmin=150, vmax=290, shading="nearest")
        ax.set_title(f"{sensor} {ch}", fontsize=8)
        ax.set_xlabel(f"day since {start}", fontsize=7)
    np.atleast_1d(axs)[0].set_ylabel("latitude [°N]")
    fig.suptitle("Coverage along the M25 transect (am pass): swaths, revisit, latitude limits",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=_DPI)
    plt.close(fig)


def record(root: str, lat_target: float, out: Path) -> None:
    """Monthly means of ~10.65 GHz H and the L-band H at one cell, all sensors, whole span."""
    plt = _plt()
    static = _open(root, "static", f"{_grid(root)}.zarr")
    iy = int(np.argmin(np.abs(static.lat.isel(x=0).values - lat_target)))
    fig, ax = plt.subplots(figsize=(9, 3))
    for sensor, ch in (("tmi", "10.65H"), ("amsre", "10.65H"), ("amsr2", "10.65H"),
                       ("gmi", "10.65H"), ("smap", "1.41H")):
        url = stores.tb_url(root, sensor)
        if not stores.exists(url):
            continue
        s = stores.open_dataset(url).tb.sel(channel=ch, **{"pass": "am"}).isel(y=iy, x=0)
        m = s.resample(time="1MS").mean().load()
        ax.plot(m.time.values, m.values, label=f"{sensor} {ch}")
    ax.set_ylabel("monthly mean TB [K]")
    ax.set_title(f"Multi-sensor record at {float(static.lat.values[iy, 0]):.1f}° N "
                 "(injected calibration offsets visible; note the 2011-10 → 2012-07 AMSR gap)",
                 fontsize=9)
    ax.legend(fontsize=7, ncol=5)
    fig.tight_layout()
    fig.savefig(out, dpi=_DPI)
    plt.close(fig)


def make_gallery(demo_root: str, out_dir: str | Path) -> list[Path]:
    """Write the gallery PNGs from a demo archive; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ak = stores.join(demo_root, "alaska-n36")
    tr = stores.join(demo_root, "transect-m25")
    st = _open(ak, "static", "N36.zarr").load()
    lc, wf = st.landcover.values, st.water_fraction.values
    tundra = _pick(st, (lc == 7) & (wf == 0))
    lake = _pick(st, wf >= 0.25)
    forest = _pick(st, np.isin(lc, (1, 3)) & (wf == 0))
    paths = [out / n for n in ("ts_frozen_thawed.png", "ts_snowmelt.png", "ts_lake.png",
                               "ts_forest.png", "maps_alaska_one_day.png",
                               "transect_coverage.png", "record_transect.png")]
    ts_cell(ak, tundra, f"Tundra cell {tundra}: freeze/thaw cycles", paths[0])
    ts_cell(ak, tundra, f"Tundra cell {tundra}: snowmelt 2017", paths[1], "2017-03-15",
            "2017-07-15", high=True)
    ts_cell(ak, lake, f"Lake-rich cell {lake} (open water {wf[lake]:.2f})", paths[2])
    ts_cell(ak, forest, f"Boreal forest cell {forest} (IGBP {lc[forest]})", paths[3])
    maps_one_day(ak, "2016-07-15", paths[4])
    transect_coverage(tr, "2015-03-20", paths[5])
    record(tr, 32.0, paths[6])
    return paths
