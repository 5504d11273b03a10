"""The overview navigator: a small map of the whole photo in the canvas's corner.

On a 25-megapixel street photo zoomed to work on a kerb, the user no longer sees where
in the photo they are; the map shows the whole photo with the visible part framed, and
a click or drag on it moves the view there. It is shown only while the view does not
show the whole photo (at fit zoom it would only hide a corner of it).

The map's picture is a small copy (at most ``MAX_SIDE`` pixels a side, made once per
image from the quarter-resolution level), shown through the same display table as the
canvas so that it looks like the photo. The widget is a child of the view, not of its
viewport: ``QAbstractScrollArea`` scrolls the viewport's children along with the photo.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QWidget

if TYPE_CHECKING:
    from desktop.canvas.view import CanvasView

MAX_SIDE = 200  # pixels of the map's longer side, at most
VIEW_SHARE = 0.3  # nor more than this share of the canvas in either direction
CORNER_GAP = 10  # pixels between the map and the canvas's edges
FRAME_COLOR = QColor(255, 214, 0)  # the visible rectangle: a light line over a dark band
BAND_COLOR = QColor(0, 0, 0)


class Minimap(QWidget):
    """Map of ``canvas``'s photo; ``visible_rect`` is the view's rectangle in image pixels."""

    def __init__(self, canvas: "CanvasView"):
        super().__init__(canvas)
        self.setObjectName("navigator")
        self.canvas = canvas
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys stay with the canvas
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Overview: click or drag to move the view")
        self.image_size = (0, 0)  # (W, H) of the photo
        self.visible_rect = QRectF()
        self._thumb: Optional[np.ndarray] = None  # (h, w, 3) uint8, as stored
        self._shown: Optional[np.ndarray] = None  # the same through the display table
        self._image: Optional[QImage] = None
        self.hide()

    # ------------------------------------------------------------ content
    def set_source(self, rgb: Optional[np.ndarray], full_size: tuple[int, int] = (0, 0)) -> None:
        """The picture to map: ``rgb`` (h, w, 3) uint8, any level of a photo of
        ``full_size`` (W, H) pixels; None when no photo is shown."""
        if rgb is None:
            self._thumb = self._shown = self._image = None
            self.image_size = (0, 0)
            self.hide()
            return
        h, w = rgb.shape[:2]
        s = min(1.0, MAX_SIDE / max(h, w))
        size = (max(1, round(w * s)), max(1, round(h * s)))
        self._thumb = np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
        self.image_size = full_size
        self.set_lut(None)

    def set_lut(self, lut: Optional[np.ndarray]) -> None:
        """Show the map through the canvas's display table ((256,) uint8 or None)."""
        if self._thumb is None:
            return
        self._shown = self._thumb if lut is None else cv2.LUT(self._thumb, lut)
        h, w = self._shown.shape[:2]
        # the QImage references ``_shown``, which the map keeps as long as the image
        self._image = QImage(self._shown.data, w, h, w * 3, QImage.Format.Format_RGB888)
        self.update()

    # ------------------------------------------------------------ following the view
    def follow(self) -> None:
        """Take the view's rectangle, size and corner afresh (after a zoom, pan or resize)."""
        W, H = self.image_size
        vp = self.canvas.viewport()
        if self._image is None or W <= 0 or H <= 0 or vp.width() <= 0:
            self.hide()
            return
        self.visible_rect = self.canvas.mapToScene(vp.rect()).boundingRect()
        whole = self.visible_rect.adjusted(-0.5, -0.5, 0.5, 0.5).contains(QRectF(0, 0, W, H))
        s = min(MAX_SIDE / max(W, H), VIEW_SHARE * vp.width() / W, VIEW_SHARE * vp.height() / H)
        w, h = max(1, round(W * s)), max(1, round(H * s))
        geo = vp.geometry()
        self.setGeometry(geo.right() + 1 - CORNER_GAP - w, geo.bottom() + 1 - CORNER_GAP - h, w, h)
        if whole or w < 24 or h < 24:  # the whole photo is on screen, or no room for a useful map
            self.hide()
        else:
            self.show()
            self.raise_()
            self.update()

    # ------------------------------------------------------------ coordinates
    def map_from_image(self, p: QPointF) -> QPointF:
        """Widget coordinates of image point ``p`` (x, y in image pixels)."""
        W, H = self.image_size
        return QPointF(p.x() * self.width() / W, p.y() * self.height() / H)

    def map_to_image(self, p: QPointF) -> QPointF:
        """Image pixels (x, y) under widget point ``p``."""
        W, H = self.image_size
        return QPointF(p.x() * W / max(1, self.width()), p.y() * H / max(1, self.height()))

    def frame_rect(self) -> QRectF:
        """The visible rectangle as drawn: widget coordinates, within the map."""
        W, H = self.image_size
        r = self.visible_rect.intersected(QRectF(0, 0, W, H))
        return QRectF(self.map_from_image(r.topLeft()), self.map_from_image(r.bottomRight()))

    # ------------------------------------------------------------ drawing and gestures
    def paintEvent(self, event) -> None:
        if self._image is None:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        full = QRectF(self.rect())
        p.drawImage(full, self._image)
        frame = self.frame_rect()
        # dim what is off screen so that the frame reads on any photo
        outside = QPainterPath()
        outside.addRect(full)
        inside = QPainterPath()
        if not frame.isEmpty():  # empty: the view is off the photo, nothing to frame
            inside.addRect(frame)
        p.fillPath(outside.subtracted(inside), QColor(0, 0, 0, 110))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor(255, 255, 255, 160), 1))
        p.drawRect(full.adjusted(0, 0, -1, -1))
        if not frame.isEmpty():
            # kept a pixel inside the map, so that a frame along its edge is still seen
            frame = frame.intersected(full.adjusted(1, 1, -1, -1))
            p.setPen(QPen(BAND_COLOR, 3))
            p.drawRect(frame)
            p.setPen(QPen(FRAME_COLOR, 1))
            p.drawRect(frame)
        p.end()

    def _move_view(self, pos: QPointF) -> None:
        self.canvas.centerOn(self.map_to_image(pos))
        self.follow()

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._move_view(event.position())
        event.accept()  # never reaches the tools under the map

    def mouseMoveEvent(self, event) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._move_view(event.position())
        event.accept()

    def mouseReleaseEvent(self, event) -> None:
        event.accept()

    def mouseDoubleClickEvent(self, event) -> None:
        event.accept()

    def wheelEvent(self, event) -> None:
        # zoom about the view's centre: the photo under the map is not what is meant
        self.canvas.zoom_at(1.25 ** (event.angleDelta().y() / 120.0), self.canvas.viewport().rect().center())
        event.accept()
