"""Boundary reroute: the boundary of a mask follows a path the user traced.

The user presses near the boundary, traces a path and releases near the boundary
again. The traced polyline is drawn as a thin 8-connected stroke ``S`` (each end
extended across the boundary to the nearest pixel on the other side, so that the
stroke really touches the outline). ``S`` cuts the plane into pieces:

* the mask minus ``S`` (4-connected pieces): of each original part of the mask the
  largest piece stays, the smaller pieces split off by the path are **cut**;
* the background minus ``S``: of each original background region the piece that
  touches the outside of the work box (for a hole: the largest piece) stays, the
  newly enclosed pockets between the path and the boundary are **added**.

So a path traced outside adds the region between the path and the old boundary, a
path inside cuts the region between them, and a path that crosses the boundary does
both; each time the side that changes less of the mask is the one meant (the other
side of the path would change everything else). The stroke's own pixels become part
of the mask when something was added (the new boundary runs along the path).

All work happens in the box covering the mask and the path (plus a margin): cost
proportional to that box, never the image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from annotation.mask import Mask

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class RerouteResult:
    """The edit: ``after`` replaces the mask over ``box`` (x0, y0, x1, y1, exclusive)."""

    box: Box
    before: np.ndarray  # (h, w) bool
    after: np.ndarray  # (h, w) bool
    added: int  # pixels added
    removed: int  # pixels removed

    @property
    def changed(self) -> bool:
        return self.added > 0 or self.removed > 0


def near_boundary(mask: Mask, x: float, y: float, radius: float) -> bool:
    """True when a boundary of ``mask`` passes within ``radius`` image pixels of (x, y).

    Boundary means: the window around the point holds both mask and background pixels
    (holes and the image edge count as boundaries only where the mask meets background).
    """
    r = max(1, int(np.ceil(radius)))
    xi, yi = int(round(x)), int(round(y))
    win = mask.read_box((xi - r, yi - r, xi + r + 1, yi + r + 1))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = xx * xx + yy * yy <= r * r
    vals = win[disk]
    return bool(vals.any() and not vals.all())


def _nearest(target: np.ndarray, px: int, py: int) -> Optional[tuple[int, int]]:
    """Nearest pixel (x, y) of the bool array ``target`` to (px, py), local coordinates."""
    ys, xs = np.nonzero(target)
    if xs.size == 0:
        return None
    d = (xs - px) ** 2 + (ys - py) ** 2
    i = int(np.argmin(d))
    return int(xs[i]), int(ys[i])


def _snap_end(local_mask: np.ndarray, pt: tuple[int, int], reach: int) -> Optional[tuple[int, int]]:
    """The nearest pixel on the other side of the boundary from ``pt`` (within ``reach``)."""
    h, w = local_mask.shape
    x, y = pt
    x0, y0 = max(0, x - reach), max(0, y - reach)
    x1, y1 = min(w, x + reach + 1), min(h, y + reach + 1)
    inside = bool(local_mask[min(max(y, 0), h - 1), min(max(x, 0), w - 1)])
    window = local_mask[y0:y1, x0:x1]
    other = ~window if inside else window
    hit = _nearest(other, x - x0, y - y0)
    if hit is None:
        return None
    return hit[0] + x0, hit[1] + y0


def _pieces_to_change(
    region: np.ndarray, stroke: np.ndarray, keep_border: bool
) -> np.ndarray:
    """Pixels of ``region`` (minus the stroke) that the stroke split off their component.

    For each 4-connected component of ``region`` the kept piece is the one touching the
    box border (when ``keep_border`` and the component touches it) or else the largest.
    """
    n0, lab0 = cv2.connectedComponents(region.astype(np.uint8), connectivity=4)
    cut = region & ~stroke
    n1, lab1 = cv2.connectedComponents(cut.astype(np.uint8), connectivity=4)
    out = np.zeros(region.shape, bool)
    if n1 <= 1:
        return out
    # original component of each new piece (any pixel of the piece will do)
    idx = np.arange(1, n1)
    flat1 = lab1.ravel()
    first = np.zeros(n1, np.int64)
    order = np.argsort(flat1, kind="stable")
    sorted_labels = flat1[order]
    starts = np.searchsorted(sorted_labels, idx)
    first[1:] = order[starts]
    parent = lab0.ravel()[first]
    sizes = np.bincount(flat1, minlength=n1)
    border = np.zeros(n1, bool)
    if keep_border:
        edge = np.concatenate([lab1[0, :], lab1[-1, :], lab1[:, 0], lab1[:, -1]])
        border[np.unique(edge)] = True
    border[0] = False
    change = np.zeros(n1, bool)
    for p in np.unique(parent[1:]):
        pieces = idx[parent[idx] == p]
        if len(pieces) <= 1:
            continue
        on_border = pieces[border[pieces]]
        if keep_border and on_border.size:
            keep = set(on_border.tolist())
        else:
            keep = {int(pieces[np.argmax(sizes[pieces])])}
        for q in pieces:
            if int(q) not in keep:
                change[q] = True
    change[0] = False
    out = change[lab1]
    return out


def reroute(
    mask: Mask, path: Sequence[Sequence[float]], *, snap_radius: float = 4.0, margin: int = 2
) -> Optional[RerouteResult]:
    """Route the boundary of ``mask`` through ``path`` ((N, 2) x, y image pixels).

    Returns ``None`` when the path is too short or its ends find no boundary within
    ``snap_radius`` pixels. The result's ``after`` is the new mask over ``box``.
    """
    pts = np.asarray(path, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 2 or mask.is_empty():
        return None
    H, W = mask.image_size
    reach = int(np.ceil(snap_radius)) + 1
    mb = mask.bbox
    x0 = int(min(mb[0], np.floor(pts[:, 0].min()))) - margin - reach
    y0 = int(min(mb[1], np.floor(pts[:, 1].min()))) - margin - reach
    x1 = int(max(mb[2], np.ceil(pts[:, 0].max()) + 1)) + margin + reach
    y1 = int(max(mb[3], np.ceil(pts[:, 1].max()) + 1)) + margin + reach
    # the work box may extend past the image; pixels outside it are background that
    # can never be added (clipped when written back)
    box = (x0, y0, x1, y1)
    local = mask.read_box(box)
    lp = np.round(pts - [x0, y0]).astype(np.int64)
    start = _snap_end(local, (int(lp[0, 0]), int(lp[0, 1])), reach)
    end = _snap_end(local, (int(lp[-1, 0]), int(lp[-1, 1])), reach)
    if start is None or end is None:
        return None
    line = np.concatenate([[start], lp, [end]]).astype(np.int32)
    stroke = np.zeros(local.shape, np.uint8)
    cv2.polylines(stroke, [line.reshape(-1, 1, 2)], False, 1, thickness=1, lineType=cv2.LINE_8)
    stroke = stroke.astype(bool)

    cut = _pieces_to_change(local, stroke, keep_border=False)
    add = _pieces_to_change(~local, stroke, keep_border=True)
    after = local.copy()
    if add.any():
        after |= add | (stroke & ~local)
    after &= ~cut
    # clip to the image
    ix0, iy0 = max(0, x0), max(0, y0)
    ix1, iy1 = min(W, x1), min(H, y1)
    sub = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
    before_c, after_c = local[sub], after[sub]
    added = int(np.count_nonzero(after_c & ~before_c))
    removed = int(np.count_nonzero(before_c & ~after_c))
    return RerouteResult((ix0, iy0, ix1, iy1), before_c.copy(), after_c.copy(), added, removed)

