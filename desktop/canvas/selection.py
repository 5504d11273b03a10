"""The selection and the hovered instance, drawn so they are seen at every zoom.

An instance's own overlay marks its boundary with one image pixel, which at overview
zoom of a 21-megapixel photo is a tenth of a screen pixel: the selection vanished. Here
the outline is a cosmetic pen (its width is in screen pixels whatever the zoom): a dark
band under a light one, so it reads on any photo. An instance smaller than a few screen
pixels also gets its box with corner handles. Contours are computed once per selection
or committed edit, from the instance's crop (cost of the instance, never the image).
"""
from __future__ import annotations

from typing import Iterable, Optional

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem

from annotation.mask import Mask

SELECTED_WIDTH = 2.0  # screen pixels of the light line
HALO_WIDTH = 4.0  # screen pixels of the dark band under it
HOVER_WIDTH = 1.5
SMALL_PX = 12.0  # below this on screen an instance also gets its box and handles
HANDLE_PX = 6.0


def outline_path(mask: Mask) -> QPainterPath:
    """The boundary of ``mask`` (outer rings and holes) as a path in image coordinates,
    through the pixel corners (so a 1-pixel instance still has a visible square)."""
    path = QPainterPath()
    m = mask.cropped()
    if m.is_empty():
        return path
    a = np.pad(m.array.astype(np.uint8), 1)
    contours, _ = cv2.findContours(a, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    ox, oy = m.x0 - 1, m.y0 - 1
    for c in contours:
        pts = c.reshape(-1, 2)
        if len(pts) == 1:  # one pixel: its square
            x, y = pts[0] + (ox, oy)
            path.addRect(QRectF(x, y, 1, 1))
            continue
        # contour points are pixel centres; half a pixel out is near enough the edge
        path.moveTo(QPointF(pts[0][0] + ox + 0.5, pts[0][1] + oy + 0.5))
        for x, y in pts[1:]:
            path.lineTo(QPointF(x + ox + 0.5, y + oy + 0.5))
        path.closeSubpath()
    return path


class SelectionItem(QGraphicsItem):
    """Outlines of the selected instances, and of the one under the cursor."""

    def __init__(self):
        super().__init__()
        self.setZValue(15)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._selected: dict[int, tuple[QPainterPath, QRectF]] = {}
        self._hover: Optional[tuple[int, QPainterPath, QColor]] = None
        self._rect = QRectF()

    def set_selected(self, instances: Iterable) -> None:
        """``instances``: the selected ``Instance`` objects (outlines recomputed)."""
        self.prepareGeometryChange()
        self._selected = {}
        for inst in instances:
            path = outline_path(inst.mask)
            self._selected[inst.id] = (path, path.boundingRect())
        self._update_rect()

    def refresh(self, inst) -> None:
        """An instance's mask changed: recompute its outline if it is shown."""
        if inst.id in self._selected:
            self.prepareGeometryChange()
            path = outline_path(inst.mask)
            self._selected[inst.id] = (path, path.boundingRect())
        if self._hover is not None and self._hover[0] == inst.id:
            self.prepareGeometryChange()
            self._hover = (inst.id, outline_path(inst.mask), self._hover[2])
        self._update_rect()

    def set_hover(self, inst, rgb: tuple[int, int, int]) -> None:
        """The instance under the cursor (None: nothing)."""
        hid = None if inst is None else inst.id
        if (self._hover[0] if self._hover else None) == hid:
            return
        self.prepareGeometryChange()
        self._hover = None if inst is None else (inst.id, outline_path(inst.mask), QColor(*rgb).lighter(150))
        self._update_rect()

    @property
    def hovered_id(self) -> Optional[int]:
        return None if self._hover is None else self._hover[0]

    def _update_rect(self) -> None:
        r = QRectF()
        for _path, rect in self._selected.values():
            r = r.united(rect)
        if self._hover is not None:
            r = r.united(self._hover[1].boundingRect())
        # room for the cosmetic pens and the handles at any zoom (scene units shrink with zoom)
        self._rect = r.adjusted(-64, -64, 64, 64) if not r.isNull() else QRectF()
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, option, widget=None) -> None:
        scale = painter.worldTransform().m11() or 1.0
        if self._hover is not None and self._hover[0] not in self._selected:
            pen = QPen(self._hover[2], HOVER_WIDTH)
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawPath(self._hover[1])
        for path, rect in self._selected.values():
            for width, colour in ((HALO_WIDTH, QColor(0, 0, 0, 220)), (SELECTED_WIDTH, QColor(255, 255, 255))):
                pen = QPen(colour, width)
                pen.setCosmetic(True)
                pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
                painter.setPen(pen)
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawPath(path)
            if max(rect.width(), rect.height()) * scale < SMALL_PX:
                self._paint_box(painter, rect, scale)

    @staticmethod
    def _paint_box(painter: QPainter, rect: QRectF, scale: float) -> None:
        """A small instance: its box widened to a few screen pixels, with corner handles."""
        pad = SMALL_PX / scale / 2
        box = rect.adjusted(-pad, -pad, pad, pad)
        pen = QPen(QColor(255, 255, 255), 1.0, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        painter.setPen(pen)
        painter.drawRect(box)
        h = HANDLE_PX / scale
        painter.setBrush(QColor(255, 255, 255))
        for corner in (box.topLeft(), box.topRight(), box.bottomLeft(), box.bottomRight()):
            painter.drawRect(QRectF(corner.x() - h / 2, corner.y() - h / 2, h, h))
