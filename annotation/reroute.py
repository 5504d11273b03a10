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

Where the work happens. The rule above is stated on the *full box*: the box covering
the mask and the path plus a margin (outside it everything is background). Working
there costs the size of the instance (seconds for a car in a 21-megapixel photo), so
by default the rule is evaluated in a *window*: the stroke's box plus a margin. A
piece that does not touch the window's open border (a side that is not also a side
of the full box) is a whole piece of the full box, with its exact size; a piece that
touches it has only a lower bound on its size and may join other such pieces outside.
The window's decision is taken only where it provably equals the full box's (see
``_decide``); anywhere else the margin doubles, up to the full box itself. The result
is cropped to the box of the changed pixels, so an undo delta holds only the change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence, Union

import cv2
import numpy as np

from annotation.mask import Box, Mask


# The window's first margin around the stroke's box is half the stroke's longest side,
# at least this many pixels: a notch or bump as deep as the trace is long then usually
# shows a bigger "rest" piece in the window, and the first window decides.
MIN_WINDOW_MARGIN = 16


@dataclass(frozen=True)
class RerouteResult:
    """The edit: ``after`` replaces the mask over ``box`` (x0, y0, x1, y1, exclusive).

    ``box`` is the tight box of the changed pixels (clipped to the image);
    ``(0, 0, 0, 0)`` with ``(0, 0)`` arrays when the trace changed nothing.
    """

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
    """Nearest pixel (x, y) of the bool array ``target`` to (px, py), local coordinates;
    ties go to the first in raster order."""
    ys, xs = np.nonzero(target)
    if xs.size == 0:
        return None
    d = (xs - px) ** 2 + (ys - py) ** 2
    i = int(np.argmin(d))
    return int(xs[i]), int(ys[i])


def _snap_end(mask: Mask, full: Box, x: int, y: int, reach: int) -> Optional[tuple[int, int]]:
    """The nearest pixel (x, y), image coordinates, within ``reach`` of the path end (x, y)
    on the other side of the boundary; the search window is clipped to the full box."""
    fx0, fy0, fx1, fy1 = full
    cx, cy = min(max(x, fx0), fx1 - 1), min(max(y, fy0), fy1 - 1)
    wx0, wy0 = max(fx0, x - reach), max(fy0, y - reach)
    wx1, wy1 = min(fx1, x + reach + 1), min(fy1, y + reach + 1)
    window = mask.read_box((wx0, wy0, wx1, wy1))
    inside = bool(mask.read_box((cx, cy, cx + 1, cy + 1))[0, 0])
    hit = _nearest(~window if inside else window, x - wx0, y - wy0)
    if hit is None:
        return None
    return hit[0] + wx0, hit[1] + wy0


def _full_box(content: Box, pts: np.ndarray, pad: int) -> Box:
    """The box covering ``content`` and the path, plus ``pad`` on every side."""
    x0 = int(min(content[0], np.floor(pts[:, 0].min()))) - pad
    y0 = int(min(content[1], np.floor(pts[:, 1].min()))) - pad
    x1 = int(max(content[2], np.ceil(pts[:, 0].max()) + 1)) + pad
    y1 = int(max(content[3], np.ceil(pts[:, 1].max()) + 1)) + pad
    return x0, y0, x1, y1


def _decide(
    region: np.ndarray, stroke: np.ndarray, open_sides: tuple[bool, bool, bool, bool], keep_border: bool
) -> Optional[np.ndarray]:
    """Pixels of ``region`` (minus the stroke) that the stroke split off their component,
    or ``None`` when the window cannot tell.

    ``region``, ``stroke``: (h, w) bool over the window. ``open_sides`` (top, bottom,
    left, right): sides of the window that are not sides of the full box, so that the
    region may go on beyond them. The rule, on the full box, for each 4-connected
    component of ``region`` split into several pieces by the stroke: with
    ``keep_border`` (the background) the pieces touching the box border stay when the
    component touches it, otherwise (a hole, or any part of the mask) the largest piece
    stays (ties: the first in raster order); every other piece changes.

    Why a window's answer can be final. The stroke lies at least one pixel inside every
    open side, so a piece touching an open side is in ``region`` minus the stroke there,
    and every piece of a split component touches the stroke, hence the window. Pieces
    that touch no open side are whole pieces of the full box. If each local component
    has at most one piece touching the open border, all those pieces of one component
    of the full box are one piece ``G`` of it (whatever joins them outside the window
    avoids the stroke). ``G`` is then the one that stays if, in each local component, it
    is strictly larger than every other piece (its true size is at least the local one),
    or, for the background, if it touches a side of the full box (the outside). Any
    other situation (two open pieces in a component, an open piece not larger than an
    enclosed one) is left to a bigger window. Components touching no open side are whole
    and follow the rule directly; tie order agrees as raster order within the window is
    raster order in the full box.
    """
    h, w = region.shape
    out = np.zeros((h, w), bool)
    cut = region & ~stroke
    n1, lab1, stats, _ = cv2.connectedComponentsWithStats(cut.view(np.uint8), connectivity=4)
    if n1 <= 2:
        # at most one piece in the window: every piece of a split component would show
        return out
    n0, lab0 = cv2.connectedComponents(region.view(np.uint8), connectivity=4)
    # the component each piece came from (all pixels of a piece share it)
    parent = np.zeros(n1, np.int64)
    parent[lab1[cut]] = lab0[cut]
    counts = np.bincount(parent[1:], minlength=n0)
    split = np.flatnonzero(counts > 1)
    if split.size == 0:
        return out
    left, top = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    right = left + stats[:, cv2.CC_STAT_WIDTH]
    bottom = top + stats[:, cv2.CC_STAT_HEIGHT]
    area = stats[:, cv2.CC_STAT_AREA]
    sides = (top == 0, bottom == h, left == 0, right == w)
    on_open = np.zeros(n1, bool)
    on_box = np.zeros(n1, bool)  # touches a side of the full box: the outside
    for touches, is_open in zip(sides, open_sides):
        if is_open:
            on_open |= touches
        else:
            on_box |= touches
    change = np.zeros(n1, bool)
    labels = np.arange(n1)
    for p in split:
        pieces = labels[1:][parent[1:] == p]  # ascending labels: raster order of first pixels
        opened = pieces[on_open[pieces]]
        if opened.size == 0:
            # the whole component is in the window: the rule itself
            boxed = pieces[on_box[pieces]] if keep_border else pieces[:0]
            keep = boxed if boxed.size else pieces[[int(np.argmax(area[pieces]))]]
        else:
            bordered = pieces[on_open[pieces] | on_box[pieces]] if keep_border else opened
            if bordered.size != 1:
                return None
            g = int(bordered[0])
            rest = pieces[pieces != g]
            sure_outside = keep_border and bool(on_box[g])
            if not sure_outside and rest.size and int(area[rest].max()) >= int(area[g]):
                return None
            keep = bordered
        change[pieces] = True
        change[keep] = False
    change[0] = False
    return change[lab1]


def _stroke_pixels(line: np.ndarray) -> tuple[Box, np.ndarray]:
    """The thin 8-connected polyline through ``line`` ((N, 2) int x, y image pixels):
    its box and (h, w) bool pixels. Drawn in its own frame so that every window that
    holds it sees the very same pixels."""
    x0, y0 = int(line[:, 0].min()), int(line[:, 1].min())
    x1, y1 = int(line[:, 0].max()) + 1, int(line[:, 1].max()) + 1
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    local = (line - [x0, y0]).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [local], False, 1, thickness=1, lineType=cv2.LINE_8)
    return (x0, y0, x1, y1), canvas.astype(bool)


def reroute(
    mask: Mask,
    path: Sequence[Sequence[float]],
    *,
    snap_radius: float = 4.0,
    margin: int = 2,
    window: Union[int, None, Literal["auto"]] = "auto",
) -> Optional[RerouteResult]:
    """Route the boundary of ``mask`` through ``path`` ((N, 2) x, y image pixels).

    Returns ``None`` when the path is too short or its ends find no boundary within
    ``snap_radius`` pixels. The result's ``after`` is the new mask over ``box``, the
    tight box of the changed pixels (clipped to the image).

    ``window``: where the rule is evaluated. ``"auto"`` (default): around the stroke,
    first with a margin of half its longest side (at least ``MIN_WINDOW_MARGIN``),
    doubled while the window cannot decide; an int: that first margin in pixels (>= 1);
    ``None``: at once in the full box covering the mask and the path plus ``margin``
    (the cost of the whole instance; the reference the windowed answer equals).
    """
    pts = np.asarray(path, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 2:
        return None
    H, W = mask.image_size
    reach = int(np.ceil(snap_radius)) + 1
    if window is None:
        if mask.is_empty():
            return None
        content = mask.bbox
    else:
        if mask.array.size == 0:
            return None
        # the array's box holds the mask, costs nothing to know (the tight box is a scan
        # of the whole instance) and gives the same answer: beyond the mask, the full
        # box is background joined to the outside however far it reaches
        content = mask.box
    # the full box may extend past the image; pixels outside it are background that
    # can never be added (clipped when written back)
    full = _full_box(content, pts, margin + reach)
    # rounded in image coordinates, so the stroke does not depend on the work box
    lp = np.round(pts).astype(np.int64)
    start = _snap_end(mask, full, int(lp[0, 0]), int(lp[0, 1]), reach)
    end = _snap_end(mask, full, int(lp[-1, 0]), int(lp[-1, 1]), reach)
    if start is None or end is None:
        return None
    line = np.concatenate([[start], lp, [end]])
    sbox, spix = _stroke_pixels(line)

    if window is None:
        m = None
    elif window == "auto":
        m = max(MIN_WINDOW_MARGIN, max(sbox[2] - sbox[0], sbox[3] - sbox[1]) // 2)
    else:
        m = max(1, int(window))
    while True:
        if m is None:
            box = full
        else:
            box = (
                max(full[0], sbox[0] - m),
                max(full[1], sbox[1] - m),
                min(full[2], sbox[2] + m),
                min(full[3], sbox[3] + m),
            )
        x0, y0, x1, y1 = box
        open_sides = (y0 > full[1], y1 < full[3], x0 > full[0], x1 < full[2])
        local = mask.read_box(box)
        stroke = np.zeros(local.shape, bool)
        stroke[sbox[1] - y0 : sbox[3] - y0, sbox[0] - x0 : sbox[2] - x0] = spix
        cut = _decide(local, stroke, open_sides, keep_border=False)
        add = None if cut is None else _decide(~local, stroke, open_sides, keep_border=True)
        if add is not None:
            break
        # the window cannot tell: twice the margin (the full box at the latest)
        m = 2 * m

    after = local.copy()
    if add.any():
        after |= add | (stroke & ~local)
    after &= ~cut
    # crop to the changed pixels inside the image
    ix0, iy0 = max(0, x0), max(0, y0)
    ix1, iy1 = min(W, x1), min(H, y1)
    if ix1 <= ix0 or iy1 <= iy0:
        return _unchanged()
    sub = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
    before_c, after_c = local[sub], after[sub]
    diff = before_c != after_c
    rows = np.flatnonzero(diff.any(axis=1))
    if rows.size == 0:
        return _unchanged()
    cols = np.flatnonzero(diff[rows[0] : rows[-1] + 1].any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    before_c, after_c = before_c[r0:r1, c0:c1].copy(), after_c[r0:r1, c0:c1].copy()
    added = int(np.count_nonzero(after_c & ~before_c))
    removed = int(np.count_nonzero(before_c & ~after_c))
    return RerouteResult((ix0 + c0, iy0 + r0, ix0 + c1, iy0 + r1), before_c, after_c, added, removed)


def _unchanged() -> RerouteResult:
    empty = np.zeros((0, 0), bool)
    return RerouteResult((0, 0, 0, 0), empty, empty.copy(), 0, 0)
