"""Freeze/thaw training segments: peak-winter (frozen) and peak-summer (thawed) runs → batches.

Labelling (docs/science.md §1.2): a day/pass is *frozen* (label 1) when both the gridded surface
(skin / 2 m) temperature and the top-soil temperature are below 271 K, *thawed* (label 0) when
both are above 275 K, and unlabelled otherwise (the ±2 K margin removes shoulder seasons).
Temperatures come from a gridded field in the ``truth/{grid}.zarr`` layout (the simulator's
truth, or a reanalysis written in the same layout), sampled at the pass time when they carry a
``pass`` dim.  A segment is a run of ≥ ``min_days`` consecutive days with the same label and at
least ``min_observed_fraction`` of them observed.  Runs longer than ``max_len`` are split into
``max_len`` pieces (the authors padded whole runs to the longest, 292 days; fixed pieces keep one
compiled shape and bounded memory).  Every piece is padded to ``max_len`` (a multiple of 4) and
carries a mask: only observed, unpadded days enter the loss.

Segments are extracted tile by tile (the archive is never loaded whole); the selected segments
themselves are held in memory (``max_segments`` caps them, sampled with a fixed seed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import xarray as xr

from pipeline import dims, freeze_thaw

__all__ = ["SegmentRules", "Segments", "build_segments", "iterate_batches", "label_days",
           "oversample_strata", "runs_to_segments", "split_segments"]


@dataclasses.dataclass(frozen=True)
class SegmentRules:
    """Segment selection settings (defaults from science.md §1.2 where verified).

    Attributes:
      frozen_below_k, thawed_above_k: Temperature thresholds [K].
      min_days: Minimum run length [days].
      max_len: Piece length [days], a multiple of 4.
      min_observed_fraction: Minimum fraction of observed days in a piece.
      max_segments: Cap on the number of segments kept (random, seeded); None keeps all.
      seed: Seed of the sub-sampling.
    """

    frozen_below_k: float = 271.0
    thawed_above_k: float = 275.0
    min_days: int = 7
    max_len: int = 96
    min_observed_fraction: float = 0.5
    max_segments: int | None = 20000
    seed: int = 0

    def __post_init__(self):
        if self.max_len % 4:
            raise ValueError(f"max_len must be a multiple of 4, got {self.max_len}")


@dataclasses.dataclass
class Segments:
    """Training segments (NumPy, in memory).

    Attributes:
      x: Raw gap-filled inputs [n, max_len, channel] (K for TB features), 0 where padded.
      mask: Observed and unpadded days [n, max_len] (bool).
      label: 1 frozen, 0 thawed [n] (int8).
      group: Land-cover group index of the segment's cell [n] (int8).
      length: Days belonging to the segment (the rest is padding) [n].
    """

    x: np.ndarray
    mask: np.ndarray
    label: np.ndarray
    group: np.ndarray
    length: np.ndarray

    def __len__(self) -> int:
        return len(self.label)

    def take(self, idx: np.ndarray) -> Segments:
        """The segments at ``idx``."""
        return Segments(self.x[idx], self.mask[idx], self.label[idx], self.group[idx],
                        self.length[idx])


def label_days(truth: xr.Dataset, rules: SegmentRules) -> xr.DataArray:
    """Per-day label from gridded temperatures: 1 frozen, 0 thawed, −1 neither (int8)."""
    ts, tg = truth["surface_temperature"], truth["soil_temperature"]
    frozen = (ts < rules.frozen_below_k) & (tg < rules.frozen_below_k)
    thawed = (ts > rules.thawed_above_k) & (tg > rules.thawed_above_k)
    return xr.where(frozen, 1, xr.where(thawed, 0, -1)).astype(np.int8)


def runs_to_segments(
    labels: np.ndarray, observed: np.ndarray, rules: SegmentRules
) -> list[tuple[int, int, int]]:
    """Pieces ``(start, stop, label)`` of one daily series.

    Args:
      labels: Day labels [time] (1, 0, −1).
      observed: Observed days [time] (bool).
      rules: Selection rules.

    Returns:
      Half-open day ranges of at most ``max_len`` days, each a sub-run of equal label.
    """
    out = []
    n = len(labels)
    change = np.flatnonzero(np.diff(labels) != 0) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [n]])
    for a, b in zip(starts, stops, strict=True):
        lab = int(labels[a])
        if lab < 0 or b - a < rules.min_days:
            continue
        for s in range(a, b, rules.max_len):
            e = min(s + rules.max_len, b)
            if e - s < rules.min_days:
                continue
            if observed[s:e].mean() >= rules.min_observed_fraction:
                out.append((s, e, lab))
    return out


def _tile_segments(feat, obs, lab, group, rules: SegmentRules, n_chan: int):
    xs, ms, ls, gs, ns = [], [], [], [], []
    for i in range(feat.shape[0]):
        if not obs[i].any():
            continue
        for s, e, lab_i in runs_to_segments(lab[i], obs[i], rules):
            x = np.zeros((rules.max_len, n_chan), np.float32)
            m = np.zeros(rules.max_len, bool)
            x[: e - s] = feat[i, s:e]
            m[: e - s] = obs[i, s:e]
            xs.append(x)
            ms.append(m)
            ls.append(lab_i)
            gs.append(group[i])
            ns.append(e - s)
    return xs, ms, ls, gs, ns


def build_segments(
    tb: xr.Dataset,
    truth: xr.Dataset,
    static: xr.Dataset | None,
    rules: SegmentRules,
    *,
    tile: int = dims.PENCIL_TILE,
    progress=None,
) -> Segments:
    """Extract labelled segments tile by tile (computes; call from a job, not a stage).

    Args:
      tb: TB archive (time, pass, channel, y, x), L-band V and H.
      truth: Gridded temperatures (``surface_temperature``, ``soil_temperature`` [K]) on the
        same time/y/x (with or without ``pass``).
      static: Static layers; when given, the conditioning channels are appended to the inputs.
      rules: Selection rules.
      tile: Tile size in cells.
      progress: Optional ``str -> None`` callback.

    Returns:
      :class:`Segments` (empty arrays if nothing qualifies).
    """
    truth = truth.sel({dims.TIME: tb[dims.TIME]})
    labels = label_days(truth, rules)
    if dims.PASS not in labels.dims:
        labels = labels.expand_dims({dims.PASS: tb[dims.PASS].values})
    groups = (freeze_thaw.landcover_group(static["landcover"]) if static is not None
              else xr.zeros_like(tb[dims.Y] * tb[dims.X], dtype=np.int8))
    order = (dims.PASS, dims.Y, dims.X, dims.TIME)
    ny, nx = tb.sizes[dims.Y], tb.sizes[dims.X]
    xs, ms, ls, gs, ns = [], [], [], [], []
    for y0 in range(0, ny, tile):
        for x0 in range(0, nx, tile):
            win = {dims.Y: slice(y0, y0 + tile), dims.X: slice(x0, x0 + tile)}
            tbw = tb.isel(win)
            st = static.isel(win) if static is not None else None
            feat = freeze_thaw.ft_features(tbw, st).transpose(*order, dims.FEATURE).values
            obs = freeze_thaw.observed_mask(tbw).transpose(*order).values
            lab = labels.isel(win).transpose(*order).values
            grp = np.broadcast_to(groups.isel(win).transpose(dims.Y, dims.X).values,
                                  obs.shape[:3])
            n_chan = feat.shape[-1]
            parts = _tile_segments(feat.reshape(-1, *feat.shape[-2:]),
                                   obs.reshape(-1, obs.shape[-1]),
                                   lab.reshape(-1, lab.shape[-1]), grp.reshape(-1), rules, n_chan)
            for acc, new in zip((xs, ms, ls, gs, ns), parts, strict=True):
                acc.extend(new)
            if progress:
                progress(f"segments: tile y{y0} x{x0}: {len(ls)} so far")
            if rules.max_segments and len(ls) > 4 * rules.max_segments:
                xs, ms, ls, gs, ns = _subsample((xs, ms, ls, gs, ns), 2 * rules.max_segments,
                                                rules.seed)
    n_chan = 3 + (len(freeze_thaw.LANDCOVER_GROUPS) + 1 if static is not None else 0)
    if not ls:
        return Segments(np.zeros((0, rules.max_len, n_chan), np.float32),
                        np.zeros((0, rules.max_len), bool), np.zeros(0, np.int8),
                        np.zeros(0, np.int8), np.zeros(0, np.int32))
    if rules.max_segments and len(ls) > rules.max_segments:
        xs, ms, ls, gs, ns = _subsample((xs, ms, ls, gs, ns), rules.max_segments, rules.seed)
    return Segments(np.stack(xs), np.stack(ms), np.asarray(ls, np.int8), np.asarray(gs, np.int8),
                    np.asarray(ns, np.int32))


def _subsample(lists, n, seed):
    keep = np.sort(np.random.default_rng(seed).choice(len(lists[0]), size=n, replace=False))
    return tuple([lst[i] for i in keep] for lst in lists)


def oversample_strata(seg: Segments, *, min_share: float = 0.05, max_repeat: int = 10,
                      seed: int = 0) -> Segments:
    """Repeat the segments of rare (land-cover group, label) strata (training split only).

    The archive's group mix is the landscape's, so a group with a few cells (e.g. one barren
    cell among 400) contributes ~0.3 % of the segments and its conditioning channel is barely
    trained.  Each stratum with fewer than ``min_share · len(seg)`` segments is drawn up to that
    many (all originals once, then a seeded sample with replacement), but never beyond
    ``max_repeat`` times its own size, which bounds over-fitting to a handful of series.

    Args:
      seg: Training segments.
      min_share: Target minimum share of each stratum [1].
      max_repeat: Cap on the growth factor of a stratum.
      seed: Seed of the extra draws.

    Returns:
      Segments with the originals (in order) followed by the repeats.
    """
    rng = np.random.default_rng(seed)
    target = int(np.ceil(min_share * len(seg)))
    extra = []
    for g in np.unique(seg.group):
        for lab in (0, 1):
            idx = np.flatnonzero((seg.group == g) & (seg.label == lab))
            want = min(target, max_repeat * len(idx)) - len(idx)
            if len(idx) and want > 0:
                extra.append(rng.choice(idx, size=want, replace=True))
    if not extra:
        return seg
    return seg.take(np.concatenate([np.arange(len(seg))] + extra))


def split_segments(seg: Segments, val_fraction: float = 0.2, seed: int = 1):
    """Random (seeded) train/validation split → (train, val)."""
    perm = np.random.default_rng(seed).permutation(len(seg))
    n_val = int(round(val_fraction * len(seg)))
    return seg.take(np.sort(perm[n_val:])), seg.take(np.sort(perm[:n_val]))


def iterate_batches(
    seg: Segments, batch_size: int, normalize, *, shuffle_seed: int | None = None
) -> Iterator[dict]:
    """Fixed-shape NumPy batches (the last one padded with weight-0 rows).

    Args:
      seg: Segments.
      batch_size: Rows per batch.
      normalize: ``x[..., channel] -> normalised x`` (from the model's statistics).
      shuffle_seed: Seed for the order (None: stored order).

    Yields:
      Dicts with ``x`` [batch, max_len, channel], ``mask`` [batch, max_len], ``label``
      [batch], ``weight`` [batch].
    """
    order = (np.arange(len(seg)) if shuffle_seed is None
             else np.random.default_rng(shuffle_seed).permutation(len(seg)))
    for start in range(0, len(seg), batch_size):
        idx = order[start:start + batch_size]
        n = len(idx)
        x = np.zeros((batch_size, *seg.x.shape[1:]), np.float32)
        mask = np.zeros((batch_size, seg.mask.shape[1]), bool)
        label = np.zeros(batch_size, np.int32)
        weight = np.zeros(batch_size, np.float32)
        xn = np.asarray(normalize(seg.x[idx]))
        # Padding days inside a segment are the training mean (0 after normalisation).
        pad = np.arange(seg.mask.shape[1])[None, :] < seg.length[idx][:, None]
        x[:n] = np.where(pad[..., None], xn, 0.0)
        mask[:n] = seg.mask[idx]
        label[:n] = seg.label[idx]
        weight[:n] = 1.0
        yield {"x": x, "mask": mask, "label": label, "weight": weight}
