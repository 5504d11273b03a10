"""Geometry of the simulated annotator's gestures: outlines, skeleton strokes, reroutes.

Pure functions on numpy arrays and ``Mask``; no Qt. Coordinates are ``(x, y)`` image
pixels (pixel centres at integers), as everywhere in ``annotation``.

``reroute`` is the boundary-reroute edit on masks: the desktop tool's geometry module
did not exist when this was written, so the edit is defined here (see its docstring);
if ``desktop`` later ships a pure function for it, the simulator should call that one.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from annotation.mask import Mask, rasterize_polygon

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


def reroute(mask: Mask, path: Sequence[Sequence[float]] | np.ndarray, mode: Optional[str] = None) -> Mask:
    """The boundary-reroute edit: a traced path from the boundary and back replaces that stretch.

    ``path`` is the traced polyline ``(N, 2)`` in image ``(x, y)``; it is closed by the
    straight segment from its end back to its start (which, for a path that leaves
    and rejoins the boundary, runs along the stretch of boundary being replaced). The
    enclosed region is added to the mask when it lies mostly outside it (the boundary
    is pushed out to the path) and removed when it lies mostly inside (the boundary is
    pulled in to the path). ``mode`` (``"add"`` / ``"remove"``) overrides that choice.
    Returns a new ``Mask``; ``mask`` is not changed. Cost is proportional to the
    path's box, never to the image.
    """
    region = rasterize_polygon(np.asarray(path, dtype=np.float64).reshape(-1, 2), mask.image_size)
    if region.is_empty():
        return mask.cropped()
    if mode is None:
        inside = mask.intersection_area(region)
        mode = "remove" if inside > region.area - inside else "add"
    if mode == "add":
        return mask.union(region)
    if mode == "remove":
        return mask.subtract(region)
    raise ValueError(f"reroute mode must be 'add' or 'remove', got {mode!r}")
