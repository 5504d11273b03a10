"""Boundary reroute (T): press near the selected instance's boundary, trace a new
path, release near the boundary; the boundary follows the path
(``annotation.reroute``)."""
from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem

from annotation.delta import MaskDelta
from annotation.reroute import near_boundary, reroute
from desktop.commands import MaskEditCommand
from desktop.tools.base import Tool

NEAR_PX = 8  # screen pixels: how close to the boundary a trace must start and end


class RerouteTool(Tool):
    name = "reroute"
    label = "Boundary reroute"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, canvas):
        super().__init__(canvas)
        self.path: list[tuple[float, float]] = []
        self._item = None
        self._trace = QPainterPath()
        self._started = 0.0

    @property
    def busy(self) -> bool:
        return bool(self.path)

    def press(self, pos: QPointF, button, mods) -> bool:
        if button != Qt.MouseButton.LeftButton:
            return False
        inst = self.session.selected
        if inst is None:
            self.canvas.message("Select an instance whose boundary to reroute (double-click it)")
            return True
        if not near_boundary(inst.mask, pos.x(), pos.y(), self.screen_px(NEAR_PX)):
            self.canvas.message("Start the trace on the selected instance's boundary")
            return True
        self.path = [(pos.x(), pos.y())]
        self._started = time.time()
        self._preview()
        return True

    def move(self, pos: QPointF, mods) -> None:
        if self.path:
            self.path.append((pos.x(), pos.y()))
            self._preview()

    def release(self, pos: QPointF, button, mods) -> None:
        if not self.path or button != Qt.MouseButton.LeftButton:
            return
        if (pos.x(), pos.y()) != self.path[-1]:
            self.path.append((pos.x(), pos.y()))
        path = self.path
        self.cancel()
        inst = self.session.selected
        if inst is None:
            return
        res = reroute(inst.mask, np.asarray(path), snap_radius=self.screen_px(NEAR_PX) + 1)
        if res is None:
            self.canvas.message("End the trace on the boundary to reroute it")
            return
        after = res.after
        if res.added:
            after = self.session.clip(inst.class_name, res.box, res.before, after, exclude_id=inst.id)
        delta = MaskDelta.from_box(res.box, res.before, after)
        if delta.is_empty:
            self.canvas.message("The trace did not change the mask")
            return
        self.canvas.push(MaskEditCommand(self.session, inst.id, delta, "reroute", started=self._started,
                                         points=len(path)))

    def _preview(self) -> None:
        """Extend the preview by the newest point (a mouse move must not redraw the whole trace)."""
        if self._item is None:
            self._item = QGraphicsPathItem()
            pen = QPen(QColor(255, 255, 0), 2)
            pen.setCosmetic(True)
            self._item.setPen(pen)
            self._item.setZValue(10)
            self.canvas.scene().addItem(self._item)
            self._trace = QPainterPath()
            self._trace.moveTo(*self.path[0])
        if len(self.path) > 1:
            self._trace.lineTo(*self.path[-1])
        self._item.setPath(self._trace)

    def cancel(self) -> None:
        self.path = []
        if self._item is not None:
            self.canvas.scene().removeItem(self._item)
            self._item = None
