"""Geometry of the simulated annotator's gestures: outlines, skeleton strokes, traced paths.

Pure functions on numpy arrays; no Qt. Coordinates are ``(x, y)`` image pixels (pixel
centres at integers), as everywhere in ``annotation``.

The boundary-reroute edit itself is ``annotation.reroute.reroute``, the function the
desktop tool calls; ``reroute_trace`` only plans the path a person would trace for it.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

_NEIGHBOURS = ((0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))  # (dy, dx), 4-conn first


def outline_polygons(region: np.ndarray, tolerance: float) -> list[np.ndarray]:
    """Outer outlines of a bool array, simplified so no point departs more than ``tolerance`` px.

    Each outline is an ``(N, 2)`` int array of ``(x, y)`` in the array's frame: the
    vertices a person would click when tracing the region with a polygon tool
    (``cv2.approxPolyDP`` with ``epsilon = tolerance`` on the exact pixel contour).
    """
    if not region.any():
        return []
    padded = np.pad(region.astype(np.uint8), 1)
    contours, _ = cv2.findContours(padded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = []
    for c in contours:
        approx = cv2.approxPolyDP(c, float(tolerance), True).reshape(-1, 2) - 1
        out.append(approx)
    return out


def thin(region: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the one-pixel-wide skeleton of a bool array (vectorised)."""
    img = np.pad(region.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p2 = np.roll(img, 1, 0)
            p3 = np.roll(np.roll(img, 1, 0), -1, 1)
            p4 = np.roll(img, -1, 1)
            p5 = np.roll(np.roll(img, -1, 0), -1, 1)
            p6 = np.roll(img, -1, 0)
            p7 = np.roll(np.roll(img, -1, 0), 1, 1)
            p8 = np.roll(img, 1, 1)
            p9 = np.roll(np.roll(img, 1, 0), 1, 1)
            seq = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            b = sum(seq[:8])
            a = sum(((seq[i] == 0) & (seq[i + 1] == 1)).astype(np.uint8) for i in range(8))
            if step == 0:
                c1, c2 = p2 * p4 * p6, p4 * p6 * p8
            else:
                c1, c2 = p2 * p4 * p8, p2 * p6 * p8
            remove = (img == 1) & (b >= 2) & (b <= 6) & (a == 1) & (c1 == 0) & (c2 == 0)
            if remove.any():
                img[remove] = 0
                changed = True
        if not changed:
            break
    return img[1:-1, 1:-1].astype(bool)


def skeleton_paths(skeleton: np.ndarray) -> list[np.ndarray]:
    """Split a skeleton into polylines a hand could draw, each ``(N, 2)`` float ``(x, y)``.

    Greedy walk: start at an end point (one neighbour) where there is one, follow
    unvisited neighbours (4-connected first) until none is left; repeat until every
    skeleton pixel is on some path. Branches become separate strokes.
    """
    ys, xs = np.nonzero(skeleton)
    remaining = set(zip(ys.tolist(), xs.tolist()))
    paths: list[np.ndarray] = []

    def degree(p: tuple[int, int]) -> int:
        return sum((p[0] + dy, p[1] + dx) in remaining for dy, dx in _NEIGHBOURS)

    while remaining:
        ends = [p for p in remaining if degree(p) <= 1]
        cur = min(ends) if ends else min(remaining)
        path = [cur]
        remaining.discard(cur)
        while True:
            nxt = next(((cur[0] + dy, cur[1] + dx) for dy, dx in _NEIGHBOURS
                        if (cur[0] + dy, cur[1] + dx) in remaining), None)
            if nxt is None:
                break
            remaining.discard(nxt)
            path.append(nxt)
            cur = nxt
        paths.append(np.array([(x, y) for y, x in path], dtype=np.float64))
    return paths


def simplify_path(path: np.ndarray, tolerance: float = 1.0) -> np.ndarray:
    """The control points of an open polyline (``approxPolyDP``, not closed)."""
    if len(path) <= 2:
        return path
    approx = cv2.approxPolyDP(path.astype(np.float32).reshape(-1, 1, 2), float(tolerance), False)
    return approx.reshape(-1, 2).astype(np.float64)


def path_length(points: np.ndarray) -> float:
    """Length in pixels of a polyline ``(N, 2)``."""
    if len(points) < 2:
        return 0.0
    return float(np.sum(np.hypot(*np.diff(points, axis=0).T)))


def stroke_plan(region: np.ndarray, max_strokes: Optional[int] = None) -> list[tuple[np.ndarray, float]]:
    """Strokes that cover a thin region: ``[(points (N, 2) in the array frame, radius)]``.

    Each stroke follows one branch of the region's skeleton; its radius is chosen so
    the painted width ``2r + 1`` matches the region's width along that branch
    (``r = median distance-to-background on the skeleton - 1``, at least 0). Longest
    strokes first.
    """
    if not region.any():
        return []
    padded = np.pad(region.astype(np.uint8), 1)
    dt = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    skel = thin(region)
    plans = []
    for path in skeleton_paths(skel):
        xi, yi = path[:, 0].astype(int), path[:, 1].astype(int)
        radius = max(0.0, float(np.round(np.median(dt[yi, xi]) - 1.0)))
        plans.append((simplify_path(path), radius))
    plans.sort(key=lambda pr: -path_length(pr[0]))
    return plans[:max_strokes] if max_strokes else plans


def reroute_trace(current: np.ndarray, error: np.ndarray, add: bool, ends: int = 2) -> Optional[np.ndarray]:
    """The path a person traces with the reroute tool to fix one error region, or ``None``.

    ``current`` is the mask and ``error`` one connected error region (``add``: truth the
    mask misses, else mask that is not truth), both bool arrays in the same frame. The
    person traces the true boundary: for a missing piece the piece's own outline, for a
    surplus piece the outline just outside it (through the pixels that stay). The path is
    the longest run of that outline's points farther than 1.5 px from the mask's boundary
    (the stretch the old boundary does not follow), extended by ``ends`` points at each
    end onto the boundary, where the trace starts and ends. Returns an ``(N, 2)`` int
    array of ``(x, y)`` in the frame (points may lie up to 2 px outside it), or ``None``
    when the region does not touch the boundary (a hole or a detached piece: no reroute
    can reach it) or lies entirely along it.
    """
    pad = 2
    cur = np.pad(current.astype(np.uint8), pad)
    region = np.pad(error.astype(np.uint8), pad)
    if not add:  # trace through the pixels that stay, just outside the surplus
        region = cv2.dilate(region, np.ones((3, 3), np.uint8))
    # distance of each pixel to the other side of the mask's boundary
    other_side = cur if add else 1 - cur
    dist = cv2.distanceTransform(1 - other_side, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    contour = max(contours, key=len).reshape(-1, 2)
    off = dist[contour[:, 1], contour[:, 0]] > 1.5
    if off.all() or not off.any():
        return None
    first_on = int(np.argmin(off))
    contour, off = np.roll(contour, -first_on, axis=0), np.roll(off, -first_on)
    padded = np.concatenate([[False], off, [False]]).astype(np.int8)
    starts = np.flatnonzero(np.diff(padded) == 1)
    stops = np.flatnonzero(np.diff(padded) == -1)
    longest = int(np.argmax(stops - starts))
    idx = np.arange(starts[longest] - ends, stops[longest] + ends) % len(contour)
    return contour[idx] - pad
