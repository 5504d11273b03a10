"""Polygon (W): click vertices (straight segments); close by clicking the first vertex
or Enter; Backspace removes the last vertex; Esc cancels; drag a placed vertex to move
it before closing (000's straight-line convention: corners placed, then adjusted). The
closed polygon is
rasterised with annotation's ``rasterize_polygon`` into a new instance of the current
class, or with Shift added to / with Ctrl cut from the selected instance."""
from __future__ import annotations

import math
import time

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem

from annotation.delta import MaskDelta
from annotation.document import Instance
from annotation.mask import rasterize_polygon
from desktop.commands import AddInstanceCommand, MaskEditCommand
from desktop.tools.base import Tool

CLOSE_PX = 8  # screen pixels around the first vertex that close the polygon


class PolygonTool(Tool):
    name = "polygon"
    label = "Polygon"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, canvas):
        super().__init__(canvas)
        self.points: list[tuple[float, float]] = []
        self.hover: tuple[float, float] | None = None
        self.started = 0.0
        self._item: QGraphicsPathItem | None = None
        self._dragging: int | None = None  # index of the vertex being moved

    @property
    def busy(self) -> bool:
        return bool(self.points)

    def _vertex_at(self, p: tuple[float, float]) -> int | None:
        """The placed vertex within reach of ``p`` (screen pixels), the nearest; None if none."""
        reach = self.screen_px(CLOSE_PX)
        best = None
        for i, (x, y) in enumerate(self.points):
            d = math.hypot(p[0] - x, p[1] - y)
            if d <= reach and (best is None or d < best[0]):
                best = (d, i)
        return None if best is None else best[1]

    def _preview(self) -> None:
        if self._item is None:
            self._item = QGraphicsPathItem()
            pen = QPen(QColor(255, 255, 0), 1.5)
            pen.setCosmetic(True)
            self._item.setPen(pen)
            self._item.setZValue(10)
            self.canvas.scene().addItem(self._item)
        path = QPainterPath()
        if self.points:
            path.moveTo(*self.points[0])
            for p in self.points[1:]:
                path.lineTo(*p)
            if self.hover is not None and self._dragging is None:
                path.lineTo(*self.hover)
            r = self.screen_px(3)  # a handle on each vertex: they can be dragged
            for x, y in self.points:
                path.addRect(x - r, y - r, 2 * r, 2 * r)
        self._item.setPath(path)

    def cancel(self) -> None:
        self.points = []
        self.hover = None
        self._dragging = None
        if self._item is not None:
            self.canvas.scene().removeItem(self._item)
            self._item = None

    def press(self, pos: QPointF, button, mods) -> bool:
        if button != Qt.MouseButton.LeftButton:
            return False
        p = (pos.x(), pos.y())
        if len(self.points) >= 3:
            fx, fy = self.points[0]
            if math.hypot(p[0] - fx, p[1] - fy) <= self.screen_px(CLOSE_PX):
                self.close(mods)
                return True
        hit = self._vertex_at(p)
        if hit is not None:  # on a placed vertex: move it (a click there adds nothing)
            self._dragging = hit
            return True
        if not self.points:
            self.started = time.time()
        self.points.append(p)
        self._preview()
        return True

    def move(self, pos: QPointF, mods) -> None:
        if self._dragging is not None:
            self.points[self._dragging] = (pos.x(), pos.y())
            self._preview()
        elif self.points:
            self.hover = (pos.x(), pos.y())
            self._preview()

    def release(self, pos: QPointF, button, mods) -> None:
        self._dragging = None

    def double_click(self, pos, mods) -> bool:
        return bool(self.points) or super().double_click(pos, mods)

    def key(self, key: int, mods) -> bool:
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.points:
            self.close(mods)
            return True
        if key == Qt.Key.Key_Backspace and self.points:
            self.points.pop()
            self._preview()
            return True
        if key == Qt.Key.Key_Escape and self.points:
            self.cancel()
            return True
        return False

    def close(self, mods) -> None:
        pts = self.points
        started = self.started
        self.cancel()
        if len(pts) < 3 or self.session.image is None:
            return
        s = self.session
        poly = rasterize_polygon(np.asarray(pts), s.image_size)
        if poly.is_empty():
            return
        sel = s.selected
        shift = bool(mods & Qt.KeyboardModifier.ShiftModifier)
        ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
        if sel is not None and (shift or ctrl):
            box = poly.bbox
            before = sel.mask.read_box(box)
            inside = poly.read_box(box)
            after = before | inside if shift else before & ~inside
            if shift:
                after = s.clip(sel.class_name, box, before, after, exclude_id=sel.id)
            delta = MaskDelta.from_box(box, before, after)
            if not delta.is_empty:
                self.canvas.push(MaskEditCommand(s, sel.id, delta, "draw_polygon", started=started,
                                                 mode="add" if shift else "cut", vertices=len(pts)))
            return
        mask = s.clip_new_mask(s.current_class, poly)
        if mask.is_empty():
            self.canvas.message("The polygon lies entirely on masks of other classes (overlap policy)")
            return
        inst = Instance(image_id=s.image.id, class_name=s.current_class, mask=mask)
        self.canvas.push(AddInstanceCommand(s, inst, "draw_polygon", started=started, vertices=len(pts)))
