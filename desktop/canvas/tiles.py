"""The photo as a graphics item drawn from tiles.

Full resolution tiles are ``QImage``s that *reference* slices of the one RGB array
(no copy); a quarter-resolution level (1/16 of the bytes) serves zoomed-out views, so
a 25-megapixel photo costs its RGB array plus about 6 %. The level comes ready-made
from the image loader's worker (``annotation.images.load_levels``): made here, it
would cost the GUI thread a resize of the whole photo (40 ms at 25 megapixels) before
the first paint. Only an item given no level makes its own.

A display adjustment (brightness, contrast, gamma: ``desktop.canvas.display``) is a
256-entry table applied while painting, to whichever is smaller: the source pixels of
the exposed area (each tile's part looked up into a buffer that lives for one
``drawImage``), or the screen pixels (the tiles drawn as usual into a band of the
screen, ``BAND`` rows at a time, looked up, blitted: at 0.4 zoom the visible part of a
25-megapixel photo is 5.5 million source pixels for 0.9 million screen pixels). The
array that models and exports read is never changed, and no adjusted copy of the photo
is kept (a full one would be 1x the image more, against the editor's 1.25x budget).
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QImage, QPainter, QTransform
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem

from annotation.images import preview_level

TILE = 512
LOW_FACTOR = 4  # the zoomed-out level is 1/LOW_FACTOR of the size in each direction
LOW_MIN_SIDE = 2 * TILE  # photos whose longer side is at most this have no zoomed-out level
# source pixels drawn beyond the exposed area, so that smooth scaling at its edge samples
# real neighbours rather than the clamped edge of a cropped buffer
MARGIN = 2
BAND = 256  # screen rows adjusted at a time: a 2560-pixel-wide band is 2.6 MB (10.5 MB at 2x)


def _tile_image(arr: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> QImage:
    """A QImage over ``arr[y0:y1, x0:x1]`` sharing its memory (``arr`` C-contiguous RGB)."""
    h, w = arr.shape[:2]
    flat = memoryview(arr.reshape(-1))
    off = (y0 * w + x0) * 3
    return QImage(flat[off:], x1 - x0, y1 - y0, w * 3, QImage.Format.Format_RGB888)


def check_low_level(low: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``low`` as the zoomed-out level of a photo of ``size`` (H, W): uint8 RGB of
    ``H / LOW_FACTOR`` rows rounded down or up (a resize by whole blocks, or libjpeg's
    scaled decode) and as many columns, C-contiguous. ``ValueError`` otherwise."""
    h, w = size
    ok_h = (h // LOW_FACTOR, -(-h // LOW_FACTOR))
    ok_w = (w // LOW_FACTOR, -(-w // LOW_FACTOR))
    if low.dtype != np.uint8 or low.ndim != 3 or low.shape[2] != 3 or low.shape[0] not in ok_h \
            or low.shape[1] not in ok_w:
        raise ValueError(f"a zoomed-out level of {w} x {h} pixels must be ({ok_h[0]} or {ok_h[1]}, "
                         f"{ok_w[0]} or {ok_w[1]}, 3) uint8, not {low.shape} {low.dtype}")
    return np.ascontiguousarray(low)


class TiledImageItem(QGraphicsItem):
    """Draws an (H, W, 3) uint8 RGB array; only the tiles the view exposes are drawn.

    ``low``: the zoomed-out level prebuilt in the loader's worker (see ``check_low_level``);
    a photo with a longer side over ``LOW_MIN_SIDE`` given none gets one made here.
    """

    def __init__(self, rgb: np.ndarray, low: Optional[np.ndarray] = None):
        super().__init__()
        self.rgb = np.ascontiguousarray(rgb)
        h, w = self.rgb.shape[:2]
        self._w, self._h = w, h
        self.low: Optional[np.ndarray] = None
        if low is not None:
            self.low = check_low_level(low, (h, w))
        elif max(h, w) > LOW_MIN_SIDE:
            self.low = preview_level(self.rgb, LOW_FACTOR)
        self.lut: Optional[np.ndarray] = None
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.setZValue(-1)

    def set_lut(self, lut: Optional[np.ndarray]) -> None:
        """Show every pixel through ``lut`` ((256,) uint8, the same for R, G and B; None:
        as stored). ``rgb`` and ``low`` stay as they are."""
        self.lut = None if lut is None else np.ascontiguousarray(lut, dtype=np.uint8).reshape(256)
        self.update()

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
            arr, f, smooth = self.low, LOW_FACTOR, True
        else:
            arr, f, smooth = self.rgb, 1, lod < 1.0
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        if self.lut is None:
            self._draw_tiles(painter, exposed, arr, f, None)
            return
        screen = painter.worldTransform().mapRect(exposed)
        screen_px = screen.width() * screen.height() * painter.device().devicePixelRatio() ** 2
        if exposed.width() * exposed.height() / (f * f) <= screen_px:  # zoomed in: fewer source pixels
            self._draw_tiles(painter, exposed, arr, f, self.lut)
        else:
            self._draw_through_screen(painter, exposed, arr, f, smooth)

    def _draw_tiles(self, painter: QPainter, exposed: QRectF, arr: np.ndarray, f: int,
                    lut: Optional[np.ndarray]) -> None:
        """Draw the part of level ``arr`` (1/``f`` of the photo's size) under ``exposed``
        (item coordinates) tile by tile: each a QImage over the array (no copy), or over
        its part looked up in ``lut``."""
        h, w = arr.shape[:2]
        ex0 = max(0, int(exposed.left() / f) - MARGIN)
        ey0 = max(0, int(exposed.top() / f) - MARGIN)
        ex1 = min(w, int(np.ceil(exposed.right() / f)) + MARGIN)
        ey1 = min(h, int(np.ceil(exposed.bottom() / f)) + MARGIN)
        for ty in range(ey0 // TILE * TILE, ey1, TILE):
            for tx in range(ex0 // TILE * TILE, ex1, TILE):
                x0, y0 = max(tx, ex0), max(ty, ey0)
                x1, y1 = min(tx + TILE, ex1), min(ty + TILE, ey1)
                if lut is None:
                    img = _tile_image(arr, x0, y0, x1, y1)
                else:
                    # ``part`` must outlive drawImage: the QImage only references it
                    part = cv2.LUT(arr[y0:y1, x0:x1], lut)
                    img = _tile_image(part, 0, 0, x1 - x0, y1 - y0)
                target = QRectF(x0 * f, y0 * f, (x1 - x0) * f, (y1 - y0) * f)
                # the low level's last row/column stretches to the full edge
                if x1 == w:
                    target.setRight(self._w)
                if y1 == h:
                    target.setBottom(self._h)
                painter.drawImage(target, img, QRectF(0, 0, x1 - x0, y1 - y0))

    def _draw_through_screen(self, painter: QPainter, exposed: QRectF, arr: np.ndarray, f: int,
                             smooth: bool) -> None:
        """The plain tiles looked up after scaling: band by band of whole screen pixels,
        drawn into a buffer with the painter's own transform (so a band holds exactly the
        pixels the plain drawing would), looked up in ``lut``, and blitted."""
        t = painter.worldTransform()
        inverse, ok = t.inverted()
        screen = t.mapRect(exposed).toAlignedRect().intersected(t.mapRect(self.boundingRect()).toAlignedRect())
        if not ok or screen.isEmpty():
            return
        dpr = painter.device().devicePixelRatio()
        lut4 = np.empty((1, 256, 4), np.uint8)
        lut4[0, :, :3] = self.lut[:, None]
        lut4[0, :, 3] = np.arange(256)  # the padding byte of RGB32 stays 0xff
        painter.save()
        # a band is whole screen pixels: those beside the photo keep what is under them
        painter.setClipRect(self.boundingRect(), Qt.ClipOperation.IntersectClip)
        painter.setWorldTransform(QTransform())
        for y in range(screen.top(), screen.bottom() + 1, BAND):
            rows = min(BAND, screen.bottom() + 1 - y)
            band = QImage(round(screen.width() * dpr), round(rows * dpr), QImage.Format.Format_RGB32)
            band.setDevicePixelRatio(dpr)
            band.fill(Qt.GlobalColor.black)
            p = QPainter(band)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
            p.setWorldTransform(t * QTransform.fromTranslate(-screen.left(), -y))
            part = inverse.mapRect(QRectF(screen.left(), y, screen.width(), rows)).intersected(exposed)
            self._draw_tiles(p, part, arr, f, None)
            p.end()
            px = np.frombuffer(band.bits(), np.uint8).reshape(band.height(), band.bytesPerLine())
            px = px[:, : band.width() * 4].reshape(band.height(), band.width(), 4)
            cv2.LUT(px, lut4, dst=px)
            painter.drawImage(QPointF(screen.left(), y), band)
        painter.restore()
