"""The photo as a graphics item drawn from tiles.

Full resolution tiles are ``QImage``s that *reference* slices of the one RGB array
(no copy); a quarter-resolution level (1/16 of the bytes) serves zoomed-out views, so
a 25-megapixel photo costs its RGB array plus about 6 %.
"""
from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem

TILE = 512
LOW_FACTOR = 4  # the zoomed-out level is 1/LOW_FACTOR of the size in each direction


def _tile_image(arr: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> QImage:
    """A QImage over ``arr[y0:y1, x0:x1]`` sharing its memory (``arr`` C-contiguous RGB)."""
    h, w = arr.shape[:2]
    flat = memoryview(arr.reshape(-1))
    off = (y0 * w + x0) * 3
    return QImage(flat[off:], x1 - x0, y1 - y0, w * 3, QImage.Format.Format_RGB888)


class TiledImageItem(QGraphicsItem):
    """Draws an (H, W, 3) uint8 RGB array; only the tiles the view exposes are drawn."""

    def __init__(self, rgb: np.ndarray):
        super().__init__()
        self.rgb = np.ascontiguousarray(rgb)
        h, w = self.rgb.shape[:2]
        self._w, self._h = w, h
        self.low = None
        if max(h, w) > 2 * TILE:
            self.low = np.ascontiguousarray(
                cv2.resize(self.rgb, (max(1, w // LOW_FACTOR), max(1, h // LOW_FACTOR)), interpolation=cv2.INTER_AREA)
            )
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.setZValue(-1)

    @property
    def nbytes(self) -> int:
        return self.rgb.nbytes + (0 if self.low is None else self.low.nbytes)

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self._w, self._h)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        lod = QStyleOptionGraphicsItem.levelOfDetailFromTransform(painter.worldTransform())
        exposed = option.exposedRect.intersected(self.boundingRect())
        if exposed.isEmpty():
            return
        if self.low is not None and lod < 1.0 / LOW_FACTOR * 1.5:
            arr, f = self.low, LOW_FACTOR
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        else:
            arr, f = self.rgb, 1
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, lod < 1.0)
        h, w = arr.shape[:2]
        ex0 = max(0, int(exposed.left() / f) // TILE * TILE)
        ey0 = max(0, int(exposed.top() / f) // TILE * TILE)
        ex1 = min(w, int(np.ceil(exposed.right() / f)))
        ey1 = min(h, int(np.ceil(exposed.bottom() / f)))
        for ty in range(ey0, ey1, TILE):
            for tx in range(ex0, ex1, TILE):
                x1, y1 = min(w, tx + TILE), min(h, ty + TILE)
                img = _tile_image(arr, tx, ty, x1, y1)
                target = QRectF(tx * f, ty * f, (x1 - tx) * f, (y1 - ty) * f)
                if f == 1 and x1 == w:
                    target.setRight(self._w)
                if f == 1 and y1 == h:
                    target.setBottom(self._h)
                if f != 1:
                    # the low level's last row/column stretches to the full edge
                    if x1 == w:
                        target.setRight(self._w)
                    if y1 == h:
                        target.setBottom(self._h)
                painter.drawImage(target, img, QRectF(0, 0, x1 - tx, y1 - ty))
