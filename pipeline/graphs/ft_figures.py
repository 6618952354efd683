"""Freeze/thaw validation figures (PNG bytes): station series, accuracy by class, maps."""

from __future__ import annotations

import io

import numpy as np

from pipeline import dims

__all__ = ["render"]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _station_series(sub, ref) -> bytes:
    """The station with the most days of its rarer state: P(thaw), both states and the truth."""
    import matplotlib.pyplot as plt

    both = np.minimum((ref == 0).sum((dims.TIME, dims.PASS)).values,
                      (ref == 1).sum((dims.TIME, dims.PASS)).values)
    k = int(np.argmax(both))
    s = sub.isel({dims.STATION: k}).sel({dims.PASS: "am"})
    r = ref.isel({dims.STATION: k}).sel({dims.PASS: "am"})
    t = s[dims.TIME].values
    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.plot(t, s[dims.THAW_PROBABILITY], lw=0.8, color="k", label="AE P(thaw)")
    rv = r.where(r >= 0)
    ax.fill_between(t, 0, 1, where=(rv == 1).values, color="tab:orange", alpha=0.25,
                    label="station thawed (≤5 cm soil ≥ 0 °C)", step="mid", lw=0)
    for var, y, color, label in ((dims.FT_STATE, 1.06, "tab:blue", "AE state"),
                                 (dims.FT_STATE_NPR, 1.12, "tab:red", "NPR state")):
        v = s[var].where(s[var] >= 0)
        ax.scatter(t, np.where(v == 1, y, np.nan), s=2, color=color, label=f"{label} thawed")
    ax.set_ylim(-0.02, 1.18)
    ax.set_ylabel("P(thaw) [1]")
    ax.set_title(f"station {s[dims.STATION].item()} (am pass)")
    ax.legend(loc="lower left", fontsize=7, ncol=4)
    return _png(fig)


def _accuracy_by_class(report: dict) -> bytes:
    import matplotlib.pyplot as plt

    st = report["stations"]
    names = sorted(st["autoencoder"]["by_landcover"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for off, m, color in ((-0.2, "autoencoder", "tab:blue"), (0.2, "npr", "tab:red")):
        acc = [st[m]["by_landcover"][n]["accuracy"] or np.nan for n in names]
        ax.bar(x + off, acc, width=0.4, color=color, label=m)
    ax.set_xticks(x, [f"{n}\n({st['autoencoder']['by_landcover'][n]['n_stations']} st.)"
                      for n in names], fontsize=7)
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("accuracy vs stations")
    ax.legend(fontsize=8)
    return _png(fig)


def _maps(figs: dict) -> bytes:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, m in zip(axes, ("autoencoder", "npr"), strict=True):
        im = ax.imshow(figs[f"map_{m}"].values, vmin=0.5, vmax=1.0, cmap="viridis")
        ax.set_title(f"{m}: accuracy vs gridded truth")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8)
    return _png(fig)


def render(figs: dict, report: dict) -> dict[str, bytes]:
    """PNG bytes by name for whatever the validation produced."""
    import matplotlib

    matplotlib.use("Agg")
    out = {}
    if "stations" in figs and report.get("stations", {}).get("n_stations"):
        out["station-series"] = _station_series(*figs["stations"])
        out["accuracy-by-landcover"] = _accuracy_by_class(report)
    if "map_autoencoder" in figs:
        out["accuracy-maps"] = _maps(figs)
    return out
