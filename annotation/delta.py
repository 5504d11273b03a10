"""Undo deltas that hold only the tiles an edit changed.

An edit's undo record must cost what the edit touched: a thin diagonal stroke across
a large photo touches a few hundred small tiles, while its bounding box covers the
whole picture. So changes are recorded per tile of a fixed grid aligned on image
coordinates (tile ``(tx, ty)`` covers x in [tx*TILE, (tx+1)*TILE), y likewise,
clipped to the image), and only tiles whose pixels changed are kept, bit-packed.

* ``MaskDelta``: the immutable record (before and after pixels of each changed tile).
* ``StrokeRecorder``: saves the pre-stroke pixels of each tile the first time a stroke
  is about to paint it, so a stroke never copies the whole mask.

Boxes are ``(x0, y0, x1, y1)`` in image pixels, ends exclusive; arrays are ``(h, w)``
bool, row = y.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from annotation.mask import Box, Mask, box_is_empty, clip_box, union_box


TILE = 64  # tile grid aligned on image coordinates (multiples of TILE)

EMPTY_BOX: Box = (0, 0, 0, 0)


def _pack(pixels: np.ndarray) -> np.ndarray:
    packed = np.packbits(np.ascontiguousarray(pixels, dtype=bool), axis=None)
    packed.setflags(write=False)
    return packed


def _unpack(packed: np.ndarray, box: Box) -> np.ndarray:
    h, w = box[3] - box[1], box[2] - box[0]
    return np.unpackbits(packed, count=h * w).reshape(h, w).astype(bool)


def _tile_range(box: Box, tile: int) -> tuple[range, range]:
    """Tile rows and columns (ty, tx) that meet ``box`` (not empty)."""
    x0, y0, x1, y1 = box
    return range(y0 // tile, (y1 - 1) // tile + 1), range(x0 // tile, (x1 - 1) // tile + 1)


class MaskDelta:
    """An exact, compact record of one change to one mask: for each touched tile whose
    pixels changed, the before and after pixels (bit-packed with ``np.packbits``).
    Immutable.

    Each record covers one tile of the grid (or the part of it inside the box it was
    built from) clipped to the image; records do not overlap.
    """

    __slots__ = ("_boxes", "_before", "_after", "_area_change", "_box")

    def __init__(self, entries: list[tuple[Box, np.ndarray, np.ndarray]]):
        """``entries``: (box, before, after) with ``before``/``after`` (h, w) bool over a
        box; boxes must not overlap. Use ``from_box`` or ``StrokeRecorder.finish``."""
        set_ = object.__setattr__  # the class refuses assignment once built
        boxes, befores, afters = [], [], []
        area_change = 0
        total = EMPTY_BOX
        for box, before, after in entries:
            box = tuple(int(v) for v in box)
            shape = (box[3] - box[1], box[2] - box[0])
            if before.shape != shape or after.shape != shape:
                raise ValueError(f"pixels of shape {before.shape}/{after.shape} do not fit box {box}")
            boxes.append(box)
            befores.append(_pack(before))
            afters.append(_pack(after))
            area_change += int(np.count_nonzero(after)) - int(np.count_nonzero(before))
            total = union_box(total, box)
        packed_boxes = np.array(boxes, np.int32).reshape(-1, 4)
        packed_boxes.setflags(write=False)
        set_(self, "_boxes", packed_boxes)
        set_(self, "_before", tuple(befores))
        set_(self, "_after", tuple(afters))
        set_(self, "_area_change", area_change)
        set_(self, "_box", total)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"MaskDelta is immutable (cannot set {name})")

    @classmethod
    def from_box(cls, box: Box, before: np.ndarray, after: np.ndarray, tile: int = TILE) -> "MaskDelta":
        """The delta of replacing ``before`` by ``after`` over ``box``.

        ``before``/``after``: (h, w) bool over ``box`` (x0, y0, x1, y1, image pixels).
        Only the tiles (intersected with ``box``) whose pixels differ are kept. The cost
        is that of the box: callers with a sparse change over a large box should record
        it with a ``StrokeRecorder`` instead.
        """
        before = np.asarray(before, bool)
        after = np.asarray(after, bool)
        x0, y0, x1, y1 = (int(v) for v in box)
        if before.shape != (y1 - y0, x1 - x0) or after.shape != before.shape:
            raise ValueError(f"before {before.shape} / after {after.shape} do not fit box {box}")
        if x1 <= x0 or y1 <= y0:
            return cls([])
        diff = before != after
        # which tiles changed, in one pass: lay the box on the grid and reduce per cell
        ox, oy = x0 % tile, y0 % tile
        rows, cols = _tile_range((x0, y0, x1, y1), tile)
        grid = np.zeros((len(rows) * tile, len(cols) * tile), bool)
        grid[oy : oy + diff.shape[0], ox : ox + diff.shape[1]] = diff
        changed = grid.reshape(len(rows), tile, len(cols), tile).any(axis=(1, 3))
        entries = []
        for i, j in zip(*np.nonzero(changed)):
            ty, tx = rows[i], cols[j]
            tb = (max(x0, tx * tile), max(y0, ty * tile), min(x1, (tx + 1) * tile), min(y1, (ty + 1) * tile))
            sub = (slice(tb[1] - y0, tb[3] - y0), slice(tb[0] - x0, tb[2] - x0))
            entries.append((tb, before[sub], after[sub]))
        return cls(entries)

    # ------------------------------------------------------------ reading
    @property
    def box(self) -> Box:
        """Union of the changed tiles' boxes; ``(0, 0, 0, 0)`` when empty."""
        return self._box

    @property
    def is_empty(self) -> bool:
        return len(self._before) == 0

    @property
    def area_change(self) -> int:
        """Pixels of the mask after minus before."""
        return self._area_change

    @property
    def nbytes(self) -> int:
        """Bytes of pixel and box data held (Python object overhead not counted)."""
        return int(self._boxes.nbytes + sum(b.nbytes for b in self._before) + sum(a.nbytes for a in self._after))

    def __len__(self) -> int:
        """Number of changed tiles."""
        return len(self._before)

    def tiles(self) -> Iterator[tuple[Box, np.ndarray, np.ndarray]]:
        """(box, before, after) of each changed tile, pixels unpacked to (h, w) bool."""
        for k, b in enumerate(self._boxes):
            box = (int(b[0]), int(b[1]), int(b[2]), int(b[3]))
            yield box, _unpack(self._before[k], box), _unpack(self._after[k], box)

    def __repr__(self) -> str:
        return f"MaskDelta(tiles={len(self)}, box={self.box}, area_change={self.area_change}, nbytes={self.nbytes})"

    # ------------------------------------------------------------ writing
    def apply(self, mask: Mask, which: str) -> Box:
        """Write the ``"before"`` or ``"after"`` pixels of every changed tile into ``mask``
        (``Mask.write_box``, clipped to its image); returns the union box written
        (``(0, 0, 0, 0)`` if none)."""
        if which == "before":
            packs = self._before
        elif which == "after":
            packs = self._after
        else:
            raise ValueError(f"which must be 'before' or 'after', not {which!r}")
        written = EMPTY_BOX
        for k, b in enumerate(self._boxes):
            box = (int(b[0]), int(b[1]), int(b[2]), int(b[3]))
            # a delta built from a box reaching past the image holds pixels there: dropped
            inside = clip_box(box, mask.image_size)
            if box_is_empty(inside):
                continue
            pixels = _unpack(packs[k], box)
            if inside != box:
                pixels = pixels[inside[1] - box[1] : inside[3] - box[1], inside[0] - box[0] : inside[2] - box[0]]
            mask.write_box(inside, pixels)
            written = union_box(written, inside)
        return written


class StrokeRecorder:
    """Records the pre-stroke pixels of the tiles a stroke touches, as it goes.

    Call ``touch(box)`` before each paint of ``box``; ``finish()`` gives the stroke's
    ``MaskDelta``, ``restore()`` cancels it. Memory and time follow the tiles touched,
    never the mask or the image.
    """

    def __init__(self, mask: Mask, tile: int = TILE):
        if tile < 1:
            raise ValueError(f"tile must be at least 1 pixel, not {tile}")
        self.mask = mask
        self.tile = int(tile)
        self._saved: dict[tuple[int, int], tuple[Box, np.ndarray]] = {}  # (ty, tx) -> (tile box, pixels)

    def _tile_box(self, ty: int, tx: int) -> Box:
        t = self.tile
        return clip_box((tx * t, ty * t, (tx + 1) * t, (ty + 1) * t), self.mask.image_size)

    def touch(self, box: Box) -> None:
        """Save the current pixels of every tile meeting ``box`` not saved yet.

        Call it BEFORE painting ``box`` (image pixels, clipped to the image here)."""
        box = clip_box(tuple(int(v) for v in box), self.mask.image_size)
        if box_is_empty(box):
            return
        rows, cols = _tile_range(box, self.tile)
        saved = self._saved
        for ty in rows:
            for tx in cols:
                if (ty, tx) not in saved:
                    tb = self._tile_box(ty, tx)
                    saved[(ty, tx)] = (tb, self.mask.read_box(tb))

    def before(self, box: Box) -> np.ndarray:
        """The pre-stroke pixels of ``box``: (h, w) bool, zeros outside the image.

        Tiles not touched yet are read from the mask as it is now: a tile the stroke
        has not been about to paint still holds its pre-stroke pixels.
        """
        x0, y0, x1, y1 = (int(v) for v in box)
        out = self.mask.read_box((x0, y0, x1, y1))
        inside = clip_box((x0, y0, x1, y1), self.mask.image_size)
        if box_is_empty(inside):
            return out
        rows, cols = _tile_range(inside, self.tile)
        for ty in rows:
            for tx in cols:
                hit = self._saved.get((ty, tx))
                if hit is None:
                    continue
                tb, pix = hit
                ox0, oy0 = max(tb[0], x0), max(tb[1], y0)
                ox1, oy1 = min(tb[2], x1), min(tb[3], y1)
                out[oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0] = pix[oy0 - tb[1] : oy1 - tb[1], ox0 - tb[0] : ox1 - tb[0]]
        return out

    @property
    def touched_box(self) -> Box:
        """Union of the saved tiles; ``(0, 0, 0, 0)`` before the first touch."""
        total = EMPTY_BOX
        for tb, _ in self._saved.values():
            total = union_box(total, tb)
        return total

    def finish(self) -> MaskDelta:
        """The stroke's delta: the saved tiles against the mask now; unchanged tiles are dropped."""
        entries = []
        for key in sorted(self._saved):
            tb, pix = self._saved[key]
            now = self.mask.read_box(tb)
            if not np.array_equal(pix, now):
                entries.append((tb, pix, now))
        return MaskDelta(entries)

    def restore(self) -> Box:
        """Put the saved pixels back (cancel the stroke); returns the box written."""
        total = EMPTY_BOX
        for tb, pix in self._saved.values():
            self.mask.write_box(tb, pix)
            total = union_box(total, tb)
        return total
