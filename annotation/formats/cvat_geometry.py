"""CVAT's shapes as pixels: rotation about a shape's centre (CVAT's convention: clockwise on
screen), and exact rasterisation of rotated boxes and ellipses (a pixel is in when its
centre is inside; a centre on an edge counts for left and top edges only), which
pycocotools' polygon fill is not exact enough for at small sizes."""
from __future__ import annotations

import math

import numpy as np

from annotation.mask import Mask

EDGE_TOL = 1e-7  # a pixel centre this close to an edge is on it (float noise of the rotation)
DIR_TOL = 1e-9  # an edge normal this close to an axis is axis-aligned (cos 90 deg is 6e-17)


def rotate_points(points: np.ndarray, degrees: float, cx: float, cy: float) -> np.ndarray:
    """``points`` (N, 2) turned by CVAT's convention (see the module note) about ``(cx, cy)``."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    dx, dy = points[:, 0] - cx, points[:, 1] - cy
    return np.stack([cx + c * dx - s * dy, cy + s * dx + c * dy], axis=1)


def reaches_outside(xs: np.ndarray, ys: np.ndarray, size: tuple[int, int]) -> bool:
    h, w = size
    return bool(xs.min() < -EDGE_TOL or ys.min() < -EDGE_TOL or xs.max() > w + EDGE_TOL or ys.max() > h + EDGE_TOL)


def _centre_grid(
    x_lo: float, x_hi: float, y_lo: float, y_hi: float, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Pixel columns ``[x0, x1)`` and rows ``[y0, y1)`` whose centres can lie in the extent, clipped."""
    h, w = size
    x0 = max(int(math.floor(x_lo - 0.5)), 0)
    y0 = max(int(math.floor(y_lo - 0.5)), 0)
    x1 = min(int(math.ceil(x_hi - 0.5)) + 1, w)
    y1 = min(int(math.ceil(y_hi - 0.5)) + 1, h)
    return x0, y0, x1, y1


def fill_convex_polygon(corners: np.ndarray, image_size: tuple[int, int]) -> Mask:
    """The pixels whose centres lie inside a convex polygon (``corners`` (N, 2) in xy, either winding).

    A centre exactly on an edge counts only for edges that bound the shape on its left
    or top (the graphics "top-left rule"): an axis-aligned box ``[x0, x1) x [y0, y1)``
    gets exactly the pixels of that half-open square, and shapes that share an edge
    never share a pixel. Cost follows the polygon's box, clipped to the image.
    """
    pts = np.asarray(corners, dtype=np.float64).reshape(-1, 2)
    x0, y0, x1, y1 = _centre_grid(pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max(), image_size)
    twice_area = float(np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1]))
    if x1 <= x0 or y1 <= y0 or twice_area == 0.0:
        return Mask.empty(image_size)
    orient = 1.0 if twice_area > 0 else -1.0
    px = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
    py = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    inside = np.ones((y1 - y0, x1 - x0), bool)
    for k in range(len(pts)):
        a, b = pts[k], pts[(k + 1) % len(pts)]
        ex, ey = b - a
        length = math.hypot(ex, ey)
        if length == 0.0:
            continue
        nx, ny = -ey * orient / length, ex * orient / length  # inward unit normal
        d = nx * (px - a[0]) + ny * (py - a[1])  # signed distance, positive inside
        # the edge bounds the shape on its left (inward normal points +x) or top (+y)
        top_left = nx > DIR_TOL or (abs(nx) <= DIR_TOL and ny > 0)
        inside &= (d >= -EDGE_TOL) if top_left else (d > EDGE_TOL)
    return Mask.from_box_array(x0, y0, inside, image_size).cropped()


def fill_ellipse(cx: float, cy: float, rx: float, ry: float, degrees: float, image_size: tuple[int, int]) -> Mask:
    """The pixels whose centres lie inside an ellipse (radii ``rx``, ``ry`` turned by ``degrees``)."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    ex, ey = math.hypot(rx * c, ry * s), math.hypot(rx * s, ry * c)  # half extents of the turned ellipse
    x0, y0, x1, y1 = _centre_grid(cx - ex, cx + ex, cy - ey, cy + ey, image_size)
    if x1 <= x0 or y1 <= y0:
        return Mask.empty(image_size)
    dx = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5 - cx
    dy = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5 - cy
    u, v = c * dx + s * dy, -s * dx + c * dy  # back into the ellipse's own axes
    inside = (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    return Mask.from_box_array(x0, y0, inside, image_size).cropped()
