"""Polygons that trace pixel edges, for formats rasterised by pycocotools (COCO, CVAT).

Two polygon conventions meet in Specula:

* labelme and our own tools draw through pixel *centres* with Pillow's outline
  rule (``Mask.to_polygons``);
* COCO and CVAT treat pixel ``(i, j)`` as the square ``[i, i+1) x [j, j+1)`` and
  pycocotools fills a pixel when its centre lies inside the polygon (even-odd,
  column by column).

A polygon whose vertices are pixel *corners* and whose edges run along pixel
edges is rasterised by pycocotools exactly, with no half-pixel loss; so COCO and
CVAT exports use these, and holes survive as "keyhole" rings: each hole is joined
to its exterior by a zero-width slit walked there and back. pycocotools counts
the slit's crossings twice, which cancel under even-odd filling, so the hole stays
empty (checked by the export against pycocotools itself).
"""
from __future__ import annotations

import cv2
import numpy as np

from annotation import rle as rle_codec
from annotation.mask import Mask


def _clean_ring(ring: np.ndarray) -> np.ndarray:
    """Drop repeated vertices and vertices in the middle of straight runs."""
    if len(ring) == 0:
        return ring
    keep = np.ones(len(ring), bool)
    keep[1:] = np.any(ring[1:] != ring[:-1], axis=1)
    ring = ring[keep]
    if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
        ring = ring[:-1]
    if len(ring) < 3:
        return ring
    prev = np.roll(ring, 1, axis=0)
    nxt = np.roll(ring, -1, axis=0)
    cross = (ring[:, 0] - prev[:, 0]) * (nxt[:, 1] - ring[:, 1]) - (ring[:, 1] - prev[:, 1]) * (nxt[:, 0] - ring[:, 0])
    # collinear *and* going on in the same direction (a back-and-forth spike is kept)
    dot = (ring[:, 0] - prev[:, 0]) * (nxt[:, 0] - ring[:, 0]) + (ring[:, 1] - prev[:, 1]) * (nxt[:, 1] - ring[:, 1])
    return ring[~((cross == 0) & (dot > 0))]


def corner_rings(array: np.ndarray) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Outlines of a bool array along pixel edges: ``[(exterior, [holes...]), ...]``.

    Vertices are integer ``(x, y)`` corner coordinates in the array's frame. How:
    the array is upsampled 2x, so that every pixel edge lies between two rows or
    columns of the upsampled image; OpenCV traces the upsampled pixels next to the
    edge (at upsampled index ``2i`` left/top of pixel ``i``, ``2i + 1`` right/bottom),
    and ``ceil(k / 2)`` maps both back onto the corner line. Diagonal steps where
    two pixels touch at a corner collapse onto that corner.
    """
    a = np.asarray(array, bool)
    if not a.any():
        return []
    up = np.repeat(np.repeat(a.astype(np.uint8), 2, axis=0), 2, axis=1)
    up = np.pad(up, 1)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    hier = hierarchy[0]

    def to_corners(c: np.ndarray) -> np.ndarray:
        v = c.reshape(-1, 2).astype(np.int64) - 1
        return _clean_ring(-((-v) // 2))

    out = []
    for i, c in enumerate(contours):
        if hier[i][3] >= 0:
            continue
        holes = []
        child = hier[i][2]
        while child >= 0:
            holes.append(to_corners(contours[child]))
            child = hier[child][0]
        out.append((to_corners(c), [h for h in holes if len(h) >= 3]))
    return out


def keyhole(exterior: np.ndarray, holes: list[np.ndarray]) -> np.ndarray:
    """One ring: the exterior with each hole spliced in along a zero-width slit.

    The slit joins a hole's first vertex to the nearest vertex of the ring built so
    far and is walked there and back, so even-odd filling leaves the hole empty.
    """
    ring = np.asarray(exterior)
    for hole in holes:
        h = np.asarray(hole)
        d2 = ((ring - h[0]) ** 2).sum(axis=1)
        j = int(np.argmin(d2))
        ring = np.concatenate([ring[: j + 1], h, h[:1], ring[j:]])
    return ring


def coco_polygons(mask: Mask) -> list[list[float]]:
    """COCO ``segmentation`` polygons for a mask: one keyhole ring per outer part.

    Parts are unioned by pycocotools (``annToRLE`` merges a list of polygons), each
    part filled even-odd, so parts, holes and islands inside holes all come back.
    """
    m = mask.cropped()
    out = []
    for ext, holes in corner_rings(m.array):
        ring = keyhole(ext, holes) + (m.x0, m.y0)
        out.append([float(v) for v in ring.ravel()])
    return out


def rasterize_coco_polygons(polygons: list[list[float]], image_size: tuple[int, int]) -> Mask:
    """pycocotools' rasterisation of COCO polygons (the reference for COCO and CVAT)."""
    h, w = image_size
    polys = [list(map(float, p)) for p in polygons if len(p) >= 4 and len(p) % 2 == 0]
    if not polys:
        return Mask.empty(image_size)
    return Mask.from_rle(rle_codec.polygon_rle(polys, h, w))


def polygons_reproduce(polygons: list[list[float]], mask: Mask) -> bool:
    """Whether pycocotools turns ``polygons`` back into exactly ``mask``."""
    h, w = mask.image_size
    if not polygons:
        return mask.is_empty()
    got = rle_codec.polygon_rle(polygons, h, w)
    want = mask.to_rle()
    if got["counts"] == want["counts"]:
        return True
    return Mask.from_rle(got) == mask  # encodings can differ for equal masks


def clip_ring(xy: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """A polygon ring ``(N, 2)`` clipped to ``box`` ``(x0, y0, x1, y1)`` (Sutherland-Hodgman).

    Even-odd filling of the result equals that of the ring at every point strictly
    inside the box, self-intersections and keyholes included: a ray from such a point
    parallel to a clip line crosses exactly the parts of the original edges inside
    that half-plane, while the new edges lie on the line. So a vertex at 1e30 is
    harmless: the box keeps pycocotools' and Pillow's integer arithmetic in range and
    their outline walk short. Returns fewer than 3 vertices when nothing is left.
    """
    # beyond 1e300 the differences below overflow to inf; no pixel can tell
    p = np.clip(np.asarray(xy, np.float64).reshape(-1, 2), -1e300, 1e300)
    x0, y0, x1, y1 = box
    for axis, bound, keep_above in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        if len(p) == 0:
            break
        q = np.roll(p, -1, axis=0)  # edge i runs p[i] -> q[i]
        a = p[:, axis] >= bound if keep_above else p[:, axis] <= bound
        b = q[:, axis] >= bound if keep_above else q[:, axis] <= bound
        cross = a != b
        inter = np.empty_like(p)
        if cross.any():
            pc, qc = p[cross], q[cross]
            t = (bound - pc[:, axis]) / (qc[:, axis] - pc[:, axis])  # nonzero: the edge crosses
            inter[cross] = pc + t[:, None] * (qc - pc)
            inter[cross, axis] = bound
        # per edge, in order: the crossing point (if it crosses), then its end (if kept)
        out = np.stack([inter, q], axis=1)
        keep = np.stack([cross, b], axis=1)
        p = out[keep]
    return p


def ring_outline(xy: np.ndarray) -> float:
    """Length of a closed ring in pixels along its longer axis per edge: what pycocotools
    walks (at 5 samples per pixel, all held in memory) to rasterise it."""
    p = np.asarray(xy, np.float64).reshape(-1, 2)
    if len(p) < 2:
        return 0.0
    d = np.abs(np.roll(p, -1, axis=0) - p)
    return float(np.maximum(d[:, 0], d[:, 1]).sum())
