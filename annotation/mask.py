"""The cropped binary mask: the one representation of a segmentation in Specula.

A ``Mask`` is an origin ``(x0, y0)`` in image pixels, a boolean array that covers
a box of the image starting there, and the size ``(height, width)`` of the image it
belongs to. The array may carry empty margins (edits grow it with slack so that a
run of brush dabs does not re-allocate every time); ``bbox`` gives the tight box.

Cost rule: an edit reads and writes the box it touches, never the whole image.
Full-image arrays are only built by ``to_full`` (for callers that really need one).

Coordinates: points are ``(x, y)`` in image pixels with pixel centres at integer
coordinates (the convention of labelme, OpenCV contours and COCO polygons alike);
boxes are ``(x0, y0, x1, y1)`` with exclusive ends.

Memory: a mask not used lately keeps its pixels bit-packed (``annotation.maskbits``);
``array`` unpacks it again. Reading methods (``read_box``, ``bbox``, ``area``, ``pixels``
...) decode what they need without unpacking the mask; edits unpack it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw

from annotation import maskbits
from annotation import rle as rle_codec
from annotation.maskbits import Packed

Box = tuple[int, int, int, int]

# the masks kept unpacked, process-wide: which ones matters only for speed, never for content
_HOT = maskbits.HotSet()


def clip_box(box: Box, image_size: tuple[int, int]) -> Box:
    h, w = image_size
    x0, y0, x1, y1 = box
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def box_is_empty(box: Box) -> bool:
    return box[2] <= box[0] or box[3] <= box[1]


def union_box(a: Box, b: Box) -> Box:
    if box_is_empty(a):
        return b
    if box_is_empty(b):
        return a
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _disk(radius: float) -> np.ndarray:
    """Boolean disk whose centre is the middle pixel; diameter 2*ceil(r)+1."""
    r = max(0.0, float(radius))
    k = int(np.ceil(r))
    yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
    return (xx * xx + yy * yy) <= r * r + 1e-9


@dataclass(frozen=True)
class PolygonWithHoles:
    """One connected outline: the exterior ring and the rings of its holes.

    Rings pass through the centres of the mask's boundary pixels (OpenCV contour
    convention). Rasterising the exterior with its outline, then clearing each
    hole's interior while keeping the hole ring's own pixels, gives back the mask
    exactly (``Mask.from_polygons``).
    """

    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()


def rasterize_polygon(
    points: Sequence[Sequence[float]] | np.ndarray, image_size: tuple[int, int]
) -> "Mask":
    """Rasterise a closed polygon of straight segments into a ``Mask``.

    The rule is Pillow's polygon with its outline (labelme's ``shape_to_mask`` rule),
    drawn in a frame around the polygon's own box so that the cost follows the
    polygon, not the image. Vertices outside the image are clipped geometrically.
    Drawing on the full image, as labelme does, differs by a pixel on rare edges
    (Pillow's edge arithmetic is not exactly shift-invariant) and where vertices lie
    at negative coordinates; ``annotation.formats.labelme.shape_mask`` reproduces
    labelme exactly for imports. The polygon tool and every Specula edit use this
    function, so a polygon drawn and a polygon stored always agree.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return Mask.empty(image_size)
    h, w = image_size
    x0 = int(np.floor(pts[:, 0].min())) - 1
    y0 = int(np.floor(pts[:, 1].min())) - 1
    x1 = int(np.ceil(pts[:, 0].max())) + 2
    y1 = int(np.ceil(pts[:, 1].max())) + 2
    cx0, cy0, cx1, cy1 = clip_box((x0, y0, x1, y1), image_size)
    if cx1 <= cx0 or cy1 <= cy0:
        return Mask.empty(image_size)
    # Draw in the unclipped local frame (integer shift keeps Pillow's rounding
    # identical to drawing on the full image), then clip to the image.
    canvas = Image.new("1", (x1 - x0, y1 - y0), 0)
    local = [(float(x) - x0, float(y) - y0) for x, y in pts]
    draw = ImageDraw.Draw(canvas)
    if len(local) == 1:
        draw.point(local, fill=1)
    elif len(local) == 2:
        draw.line(local, fill=1)
    else:
        draw.polygon(local, fill=1, outline=1)
    arr = np.asarray(canvas, dtype=bool)
    # a copy: Pillow's buffer is read-only, and masks are edited in place
    arr = arr[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0].copy()
    return Mask(cx0, cy0, arr, image_size)


class Mask:
    """A binary mask stored as the crop of the image that holds it.

    Attributes:
        x0, y0: image coordinates of ``array[0, 0]``.
        array: ``(h, w)`` bool array, possibly with empty margins (unpacked on access;
            write to it through the mask's methods, or at once: a reference kept while
            other masks are used may stop being the mask's pixels once it is packed).
        image_size: ``(height, width)`` of the image.
    """

    __slots__ = ("x0", "y0", "_data", "image_size", "last_touched", "__weakref__")

    def __init__(self, x0: int, y0: int, array: np.ndarray, image_size: tuple[int, int]):
        self.x0 = int(x0)
        self.y0 = int(y0)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        # box the last in-place edit read and wrote; used by the undo commands and
        # by tests that check an edit's cost stays inside the touched box
        self.last_touched: Box = (0, 0, 0, 0)
        # the pixels: a bool array while in use, else ``Packed`` (one slot, so that a
        # reader in another thread sees one or the other, never neither)
        self._data: np.ndarray | Packed = np.asarray(array, dtype=bool)
        _HOT.touch(self, self._data.nbytes, Mask._freeze)

    @classmethod
    def _from_packed(cls, x0: int, y0: int, packed: Packed, image_size: tuple[int, int]) -> Mask:
        m = cls.__new__(cls)
        m.x0, m.y0, m.image_size, m.last_touched = int(x0), int(y0), tuple(image_size), (0, 0, 0, 0)
        m._data = packed
        return m

    # ---------------------------------------------------------------- storage
    @property
    def array(self) -> np.ndarray:
        """The ``(h, w)`` bool array, unpacked if it was packed; the mask becomes the most
        recently used one."""
        with _HOT.lock:
            data = self._data
            if isinstance(data, Packed):
                data = self._data = maskbits.unpack(data)
            _HOT.touch(self, data.nbytes, Mask._freeze)
            return data

    @array.setter
    def array(self, value: np.ndarray) -> None:
        # a bool array is kept as given (an ndarray subclass too: tests instrument edits so)
        if not (isinstance(value, np.ndarray) and value.dtype == bool):
            value = np.asarray(value, dtype=bool)
        with _HOT.lock:
            self._data = value
            _HOT.touch(self, value.nbytes, Mask._freeze)

    @property
    def pixels(self) -> np.ndarray:
        """The pixels for reading: ``array`` while unpacked, else a decoded copy, the mask
        staying packed (a one-off reader does not push the masks in use out)."""
        data = self._data
        return maskbits.unpack(data) if isinstance(data, Packed) else data

    @property
    def is_packed(self) -> bool:
        return isinstance(self._data, Packed)

    @property
    def nbytes(self) -> int:
        """Bytes the pixels take now (packed or not)."""
        return int(self._data.nbytes)

    def _freeze(self) -> None:
        """Pack the pixels (``HotSet`` calls this, holding its lock)."""
        data = self._data
        if not isinstance(data, Packed):
            self._data = maskbits.pack(data)

    def _region(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Rows ``r0:r1``, columns ``c0:c1`` of the array (inside it): a view while unpacked,
        else just those bits decoded."""
        data = self._data
        if isinstance(data, Packed):
            return maskbits.unpack_box(data, r0, r1, c0, c1)
        return data[r0:r1, c0:c1]

    # ---------------------------------------------------------------- builders
    @classmethod
    def empty(cls, image_size: tuple[int, int]) -> "Mask":
        return cls(0, 0, np.zeros((0, 0), bool), image_size)

    @classmethod
    def from_full(cls, full: np.ndarray) -> "Mask":
        """Crop a full-image boolean array to its content."""
        full = np.asarray(full).astype(bool, copy=False)
        m = cls(0, 0, full, full.shape[:2])
        return m.cropped()

    @classmethod
    def from_box_array(
        cls, x0: int, y0: int, array: np.ndarray, image_size: tuple[int, int]
    ) -> "Mask":
        """A mask from a crop; parts outside the image are dropped."""
        m = cls(x0, y0, array, image_size)
        return m._clipped_to_image()

    @classmethod
    def from_rle(cls, rle: dict) -> "Mask":
        """From a COCO RLE dict (compressed or uncompressed counts)."""
        return rle_codec.rle_to_mask(rle, cls)

    @classmethod
    def from_polygon(
        cls, points: Sequence[Sequence[float]] | np.ndarray, image_size: tuple[int, int]
    ) -> "Mask":
        return rasterize_polygon(points, image_size)

    @classmethod
    def from_polygons(
        cls, polygons: Iterable[PolygonWithHoles], image_size: tuple[int, int]
    ) -> "Mask":
        """Inverse of ``to_polygons``: exteriors filled, holes cleared in order."""
        polygons = list(polygons)
        if not polygons:
            return cls.empty(image_size)
        allpts = np.concatenate([np.asarray(p.exterior).reshape(-1, 2) for p in polygons])
        x0 = int(np.floor(allpts[:, 0].min())) - 1
        y0 = int(np.floor(allpts[:, 1].min())) - 1
        x1 = int(np.ceil(allpts[:, 0].max())) + 2
        y1 = int(np.ceil(allpts[:, 1].max())) + 2
        canvas = Image.new("1", (x1 - x0, y1 - y0), 0)
        draw = ImageDraw.Draw(canvas)

        def local(ring: np.ndarray) -> list[tuple[float, float]]:
            return [(float(x) - x0, float(y) - y0) for x, y in np.asarray(ring).reshape(-1, 2)]

        def draw_ring(ring: np.ndarray, fill: int) -> None:
            pts = local(ring)
            if len(pts) == 1:
                draw.point(pts, fill=1)
            elif len(pts) == 2:
                draw.line(pts, fill=1)
            else:
                draw.polygon(pts, fill=fill, outline=1)

        for poly in polygons:
            draw_ring(poly.exterior, 1)
            for hole in poly.holes:
                draw_ring(hole, 0)
        arr = np.asarray(canvas, dtype=bool)
        return cls.from_box_array(x0, y0, arr, image_size).cropped()

    # ---------------------------------------------------------------- views
    @property
    def height(self) -> int:
        return self.image_size[0]

    @property
    def width(self) -> int:
        return self.image_size[1]

    @property
    def box(self) -> Box:
        """The box the array covers (may include empty margins)."""
        h, w = self._data.shape
        return self.x0, self.y0, self.x0 + w, self.y0 + h

    @property
    def bbox(self) -> Box:
        """Tight box of the set pixels, ``(0, 0, 0, 0)`` when empty."""
        a = self.pixels
        if a.size == 0:
            return (0, 0, 0, 0)
        rows = np.flatnonzero(a.any(axis=1))
        if rows.size == 0:
            return (0, 0, 0, 0)
        cols = np.flatnonzero(a[rows[0] : rows[-1] + 1].any(axis=0))
        return (
            self.x0 + int(cols[0]),
            self.y0 + int(rows[0]),
            self.x0 + int(cols[-1]) + 1,
            self.y0 + int(rows[-1]) + 1,
        )

    @property
    def area(self) -> int:
        data = self._data
        if isinstance(data, Packed):  # counted on the bytes, without unpacking
            return maskbits.count(data)
        return int(np.count_nonzero(data))

    def is_empty(self) -> bool:
        data = self._data
        return not (data.bits if isinstance(data, Packed) else data).any()

    def to_full(self) -> np.ndarray:
        """The full-image bool array (allocates the whole image: avoid in hot paths)."""
        full = np.zeros(self.image_size, bool)
        bx0, by0, bx1, by1 = clip_box(self.box, self.image_size)
        if bx1 > bx0 and by1 > by0:
            full[by0:by1, bx0:bx1] = self._region(by0 - self.y0, by1 - self.y0, bx0 - self.x0, bx1 - self.x0)
        return full

    def read_box(self, box: Box) -> np.ndarray:
        """A copy of the mask over ``box`` (image coordinates), zeros outside the array."""
        x0, y0, x1, y1 = box
        out = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), bool)
        ix0, iy0, ix1, iy1 = self.box
        ox0, oy0, ox1, oy1 = max(x0, ix0), max(y0, iy0), min(x1, ix1), min(y1, iy1)
        if ox1 > ox0 and oy1 > oy0:
            out[oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0] = self._region(oy0 - iy0, oy1 - iy0, ox0 - ix0, ox1 - ix0)
        return out

    def write_box(self, box: Box, values: np.ndarray) -> None:
        """Overwrite the pixels of ``box`` with ``values`` (grows the array if needed)."""
        box = clip_box(box, self.image_size)  # type: ignore[assignment]
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            return
        values = np.asarray(values, bool)
        if values.shape != (y1 - y0, x1 - x0):
            raise ValueError(f"values of shape {values.shape} do not fit box {box}")
        with _HOT.lock:  # not packed by another thread between taking the array and writing
            if values.any():
                self._ensure_covers(box)
            ix0, iy0, ix1, iy1 = self.box
            ox0, oy0, ox1, oy1 = max(x0, ix0), max(y0, iy0), min(x1, ix1), min(y1, iy1)
            if ox1 > ox0 and oy1 > oy0:
                self.array[oy0 - iy0 : oy1 - iy0, ox0 - ix0 : ox1 - ix0] = values[
                    oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0
                ]
        self.last_touched = box

    # ---------------------------------------------------------------- conversions
    def to_rle(self) -> dict:
        """Full-image COCO RLE, compressed counts as ``str`` (JSON-ready).

        Computed from the crop in time proportional to the crop, not the image.
        """
        return rle_codec.mask_to_rle(self)

    def to_polygons(self) -> list[PolygonWithHoles]:
        """Outlines with holes, enclosing outlines before what lies inside their holes.

        ``Mask.from_polygons(m.to_polygons(), m.image_size)`` gives ``m`` back exactly.
        """
        a = self.pixels
        if not a.any():
            return []
        padded = np.pad(a.astype(np.uint8), 1)
        contours, hierarchy = cv2.findContours(padded, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
        if hierarchy is None:
            return []
        hier = hierarchy[0]
        depth = np.zeros(len(contours), int)
        for i in range(len(contours)):
            d, p = 0, hier[i][3]
            while p >= 0:
                d += 1
                p = hier[p][3]
            depth[i] = d
        shift = np.array([self.x0 - 1, self.y0 - 1])
        out: list[tuple[int, PolygonWithHoles]] = []
        for i, c in enumerate(contours):
            if depth[i] % 2:
                continue
            ext = c.reshape(-1, 2) + shift
            holes = []
            child = hier[i][2]
            while child >= 0:
                holes.append(contours[child].reshape(-1, 2) + shift)
                child = hier[child][0]
            out.append((int(depth[i]), PolygonWithHoles(ext, tuple(holes))))
        out.sort(key=lambda t: t[0])
        return [p for _, p in out]

    # ---------------------------------------------------------------- helpers
    def copy(self) -> "Mask":
        data = self._data
        if isinstance(data, Packed):  # packed bits are never written: the copy shares them
            return Mask._from_packed(self.x0, self.y0, data, self.image_size)
        return Mask(self.x0, self.y0, data.copy(), self.image_size)

    def cropped(self) -> "Mask":
        """A copy whose array is exactly the tight bbox."""
        bx0, by0, bx1, by1 = self.bbox
        if bx1 <= bx0:
            return Mask.empty(self.image_size)
        arr = self._region(by0 - self.y0, by1 - self.y0, bx0 - self.x0, bx1 - self.x0).copy()
        return Mask(bx0, by0, arr, self.image_size)

    def _clipped_to_image(self) -> "Mask":
        cb = clip_box(self.box, self.image_size)
        if box_is_empty(cb):
            return Mask.empty(self.image_size)
        if cb == self.box:
            return self
        return Mask(cb[0], cb[1], self.read_box(cb), self.image_size)

    def _ensure_covers(self, box: Box) -> None:
        """Grow the array so it covers ``box``, with slack so repeated growth is amortised.
        The caller holds ``_HOT.lock``."""
        x0, y0, x1, y1 = box
        ix0, iy0, ix1, iy1 = self.box
        size = (iy1 - iy0) * (ix1 - ix0)
        if size and x0 >= ix0 and y0 >= iy0 and x1 <= ix1 and y1 <= iy1:
            return
        if size == 0:
            nb = box
        else:
            nb = union_box(self.box, box)
            # slack: a quarter of the new size on the sides that grow
            sx = (nb[2] - nb[0]) // 4
            sy = (nb[3] - nb[1]) // 4
            nb = (
                nb[0] - (sx if x0 < ix0 else 0),
                nb[1] - (sy if y0 < iy0 else 0),
                nb[2] + (sx if x1 > ix1 else 0),
                nb[3] + (sy if y1 > iy1 else 0),
            )
        nb = clip_box(nb, self.image_size)
        grown = np.zeros((nb[3] - nb[1], nb[2] - nb[0]), bool)
        if size:
            grown[iy0 - nb[1] : iy1 - nb[1], ix0 - nb[0] : ix1 - nb[0]] = self.pixels
        self.x0, self.y0, self.array = nb[0], nb[1], grown

    # ---------------------------------------------------------------- in-place paint
    def paint_disk(self, cx: float, cy: float, radius: float, value: bool = True) -> Box:
        """Set (or clear) a disk; touches only the disk's box. Returns that box."""
        return self.paint_stroke([(cx, cy)], radius, value)

    def paint_stroke(
        self, points: Sequence[Sequence[float]], radius: float, value: bool = True
    ) -> Box:
        """Paint disks along a polyline, filling between points so fast drags leave no gap.

        Returns the touched box (image coordinates, clipped to the image).
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        box = stroke_box(pts, radius, self.image_size)
        if box_is_empty(box):
            return (0, 0, 0, 0)
        stamp = stroke_footprint(pts - [box[0], box[1]], radius, (box[3] - box[1], box[2] - box[0]))
        self._set_where(box, stamp, value)
        self.last_touched = box
        return box

    def erase_stroke(self, points: Sequence[Sequence[float]], radius: float) -> Box:
        return self.paint_stroke(points, radius, value=False)

    def paint_mask(self, other: "Mask", value: bool = True) -> Box:
        """Set (or clear) the pixels of ``other`` in place; touches ``other``'s box."""
        box = clip_box(other.box, self.image_size)
        if box_is_empty(box) or other.is_empty():
            return (0, 0, 0, 0)
        self._set_where(box, other.read_box(box), value)
        self.last_touched = box
        return box

    def _set_where(self, box: Box, where: np.ndarray, value: bool) -> None:
        """Set the pixels that ``where`` (a bool array over ``box``) marks to ``value``; the
        array grows to cover them when painting. Under the packing lock (see write_box)."""
        with _HOT.lock:
            if value:
                self._ensure_covers(box)
            ix0, iy0, ix1, iy1 = self.box
            ox0, oy0, ox1, oy1 = max(box[0], ix0), max(box[1], iy0), min(box[2], ix1), min(box[3], iy1)
            if ox1 > ox0 and oy1 > oy0:
                region = self.array[oy0 - iy0 : oy1 - iy0, ox0 - ix0 : ox1 - ix0]
                region[where[oy0 - box[1] : oy1 - box[1], ox0 - box[0] : ox1 - box[0]]] = value

    # ---------------------------------------------------------------- set algebra (pure)
    def _binary(self, other: "Mask", op) -> "Mask":
        box = union_box(self.box, other.box)
        if box_is_empty(box):
            return Mask.empty(self.image_size)
        a = self.read_box(box)
        b = other.read_box(box)
        return Mask(box[0], box[1], op(a, b), self.image_size).cropped()

    def union(self, other: "Mask") -> "Mask":
        return self._binary(other, np.logical_or)

    def subtract(self, other: "Mask") -> "Mask":
        return self._binary(other, lambda a, b: a & ~b)

    def intersect(self, other: "Mask") -> "Mask":
        return self._binary(other, np.logical_and)

    def __or__(self, other: "Mask") -> "Mask":
        return self.union(other)

    def __and__(self, other: "Mask") -> "Mask":
        return self.intersect(other)

    def __sub__(self, other: "Mask") -> "Mask":
        return self.subtract(other)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mask):
            return NotImplemented
        if self.image_size != other.image_size:
            return False
        box = union_box(self.box, other.box)
        return bool(np.array_equal(self.read_box(box), other.read_box(box)))

    def __hash__(self) -> int:  # masks are mutable; identity hash like any object
        return id(self)

    def __repr__(self) -> str:
        return f"Mask(bbox={self.bbox}, area={self.area}, image_size={self.image_size})"

    def intersection_area(self, other: "Mask") -> int:
        box = (
            max(self.box[0], other.box[0]),
            max(self.box[1], other.box[1]),
            min(self.box[2], other.box[2]),
            min(self.box[3], other.box[3]),
        )
        if box_is_empty(box):
            return 0
        return int(np.count_nonzero(self.read_box(box) & other.read_box(box)))

    def iou(self, other: "Mask") -> float:
        """Intersection over union; 1.0 for two empty masks."""
        inter = self.intersection_area(other)
        union = self.area + other.area - inter
        return 1.0 if union == 0 else inter / union

    # ---------------------------------------------------------------- morphology (pure)
    def _padded(self, pad: int) -> tuple[Box, np.ndarray]:
        bx0, by0, bx1, by1 = self.bbox
        box = clip_box((bx0 - pad, by0 - pad, bx1 + pad, by1 + pad), self.image_size)
        return box, self.read_box(box)

    def dilate(self, radius: int) -> "Mask":
        if self.is_empty() or radius <= 0:
            return self.cropped()
        box, a = self._padded(int(radius))
        out = cv2.dilate(a.astype(np.uint8), _disk(radius).astype(np.uint8))
        return Mask(box[0], box[1], out.astype(bool), self.image_size).cropped()

    def erode(self, radius: int) -> "Mask":
        if self.is_empty() or radius <= 0:
            return self.cropped()
        # pixels outside the image count as outside the mask (border value 0)
        box, a = self._padded(1)
        out = cv2.erode(
            a.astype(np.uint8), _disk(radius).astype(np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0
        )
        return Mask(box[0], box[1], out.astype(bool), self.image_size).cropped()

    def close(self, radius: int) -> "Mask":
        """Dilate then erode; gaps narrower than about 2*radius are bridged."""
        if self.is_empty() or radius <= 0:
            return self.cropped()
        r = int(radius)
        bx0, by0, bx1, by1 = self.bbox
        # pad beyond the image in a scratch array so erosion does not eat at image edges
        pad = r + 1
        a = np.pad(self.read_box((bx0, by0, bx1, by1)), pad)
        k = _disk(r).astype(np.uint8)
        out = cv2.erode(cv2.dilate(a.astype(np.uint8), k), k, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        m = Mask(bx0 - pad, by0 - pad, out.astype(bool), self.image_size)
        return m._clipped_to_image().cropped()

    def fill_holes(self) -> "Mask":
        """Fill every background region not connected to the outside of the bbox."""
        if self.is_empty():
            return self.cropped()
        box, a = self._padded(1)
        bx0, by0, bx1, by1 = self.bbox
        a = np.pad(self.read_box((bx0, by0, bx1, by1)), 1)
        n, labels = cv2.connectedComponents((~a).astype(np.uint8), connectivity=4)
        outside = labels[0, 0]
        filled = a | ((labels != outside) & ~a)
        return Mask(bx0 - 1, by0 - 1, filled, self.image_size)._clipped_to_image().cropped()

    def components(self, connectivity: int = 8) -> list["Mask"]:
        """Split into connected components (8-connected by default), largest first."""
        if self.is_empty():
            return []
        c = self.cropped()
        n, labels, stats, _ = cv2.connectedComponentsWithStats(
            c.pixels.astype(np.uint8), connectivity=connectivity
        )
        order = sorted(range(1, n), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
        out = []
        for i in order:
            x, y, w, h = (int(v) for v in stats[i, :4])
            arr = labels[y : y + h, x : x + w] == i
            out.append(Mask(c.x0 + x, c.y0 + y, arr, self.image_size))
        return out

    def remove_small(self, min_area: int, connectivity: int = 8) -> "Mask":
        """Drop connected components with fewer than ``min_area`` pixels."""
        if self.is_empty() or min_area <= 1:
            return self.cropped()
        c = self.cropped()
        n, labels, stats, _ = cv2.connectedComponentsWithStats(
            c.pixels.astype(np.uint8), connectivity=connectivity
        )
        keep = np.zeros(n, bool)
        keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
        return Mask(c.x0, c.y0, keep[labels], self.image_size).cropped()

    @staticmethod
    def merge(masks: Sequence["Mask"]) -> "Mask":
        """Union of several masks of the same image."""
        if not masks:
            raise ValueError("merge needs at least one mask")
        box: Box = (0, 0, 0, 0)
        for m in masks:
            box = union_box(box, m.box)
        size = masks[0].image_size
        if box_is_empty(box):
            return Mask.empty(size)
        acc = np.zeros((box[3] - box[1], box[2] - box[0]), bool)
        for m in masks:
            acc |= m.read_box(box)
        return Mask(box[0], box[1], acc, size).cropped()


def stroke_box(points: Sequence[Sequence[float]], radius: float, image_size: tuple[int, int]) -> Box:
    """The box (clipped to the image) that ``Mask.paint_stroke(points, radius)`` may touch;
    (0, 0, 0, 0) for no points. Lets a caller save what a stroke will overwrite, first."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return (0, 0, 0, 0)
    k = int(np.ceil(max(radius, 0.0)))
    bx0 = int(np.floor(pts[:, 0].min())) - k
    by0 = int(np.floor(pts[:, 1].min())) - k
    bx1 = int(np.ceil(pts[:, 0].max())) + k + 1
    by1 = int(np.ceil(pts[:, 1].max())) + k + 1
    box = clip_box((bx0, by0, bx1, by1), image_size)
    return (0, 0, 0, 0) if box_is_empty(box) else box


def stroke_footprint(points: np.ndarray, radius: float, shape: tuple[int, int]) -> np.ndarray:
    """Boolean array of ``shape`` covered by disks of ``radius`` swept along ``points``.

    ``points`` are (x, y) in the array's frame. Segments between points are drawn as
    thick lines (OpenCV, round caps) so that a drag of any speed leaves no gaps; the
    dabs at the points use the exact disk so a single click matches ``paint_disk``.
    """
    out = np.zeros(shape, np.uint8)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    disk = _disk(radius)
    k = disk.shape[0] // 2
    for x, y in pts:
        xi, yi = int(round(x)), int(round(y))
        x0, y0 = xi - k, yi - k
        sx0, sy0 = max(0, x0), max(0, y0)
        sx1, sy1 = min(shape[1], x0 + disk.shape[1]), min(shape[0], y0 + disk.shape[0])
        if sx1 > sx0 and sy1 > sy0:
            out[sy0:sy1, sx0:sx1] |= disk[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0].astype(np.uint8)
    if len(pts) > 1:
        # the segments as filled quads of width 2r: same coverage as sweeping the disk
        r = float(radius)
        for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:]):
            d = np.hypot(bx - ax, by - ay)
            if d < 1e-9:
                continue
            nx, ny = -(by - ay) / d * r, (bx - ax) / d * r
            quad = np.array(
                [[ax + nx, ay + ny], [bx + nx, by + ny], [bx - nx, by - ny], [ax - nx, ay - ny]]
            )
            cv2.fillConvexPoly(out, np.round(quad * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4)
            # endpoints' disks at the rounded centres of this segment as well
    return out.astype(bool)
