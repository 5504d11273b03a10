"""Prompt (P): left click adds a positive point, right click a negative one, a left drag
draws a box; the engine's mask for the prompts shows as a preview after each change
(predicted off the GUI thread). Enter makes it an instance of the current class (one
undo step, logged as ``prompt`` with the clicks and the time since the first one); Esc
clears."""
from __future__ import annotations

import time
from typing import Optional

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsRectItem

from annotation.document import Instance, InstanceState
from desktop.canvas.overlay import InstanceItem
from desktop.commands import AddInstanceCommand
from desktop.tools.base import Tool

DRAG_PX = 5  # screen pixels a press must move to become a box


class PromptTool(Tool):
    name = "prompt"
    label = "Prompt (click / box, Enter to keep)"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, canvas, predictor, rgb_source):
        """``rgb_source()`` returns ``(rgb, key)`` of the shown image, or ``(None, None)``."""
        super().__init__(canvas)
        self.predictor = predictor
        self.rgb_source = rgb_source
        self.points: list[tuple[float, float]] = []
        self.labels: list[int] = []
        self.box: Optional[tuple[float, float, float, float]] = None
        self.mask = None
        self.source = ""
        self.started: Optional[float] = None
        self._press: Optional[QPointF] = None
        self._dragging = False
        self._rid = 0
        self._commit_when_ready = False
        self._items: list = []
        self._preview: Optional[InstanceItem] = None
        self._rect = QGraphicsRectItem()
        pen = QPen(QColor(255, 255, 0), 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self._rect.setPen(pen)
        self._rect.setZValue(12)
        predictor.mask_ready.connect(self._mask_ready)
        predictor.failed.connect(self._failed)

    @property
    def clicks(self) -> int:
        return len(self.points) + (1 if self.box is not None else 0)

    @property
    def pending(self) -> bool:
        return self._rid != 0

    # ------------------------------------------------------------ gestures
    def press(self, pos: QPointF, button, mods) -> bool:
        if button == Qt.MouseButton.LeftButton:
            self._press = QPointF(pos)
            self._dragging = False
            return True
        if button == Qt.MouseButton.RightButton:
            self._add_point(pos, 0)
            return True
        return False

    def move(self, pos: QPointF, mods) -> None:
        if self._press is None:
            return
        d = pos - self._press
        if not self._dragging and max(abs(d.x()), abs(d.y())) >= self.screen_px(DRAG_PX):
            self._dragging = True
            if self._rect.scene() is None:
                self.canvas.scene().addItem(self._rect)
        if self._dragging:
            self._rect.setRect(QRectF(self._press, pos).normalized())

    def release(self, pos: QPointF, button, mods) -> None:
        if button != Qt.MouseButton.LeftButton or self._press is None:
            return
        start, self._press = self._press, None
        if self._dragging:
            r = QRectF(start, pos).normalized()
            self._start_clock()
            self.box = (r.left(), r.top(), r.right(), r.bottom())
            self._rect.setRect(r)
            self._request()
        else:
            self._add_point(pos, 1)

    def key(self, key: int, mods) -> bool:
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.commit()
            return True
        if key == Qt.Key.Key_Escape:
            self.clear()
            self.canvas.message("Prompt cleared")
            return True
        return False

    # ------------------------------------------------------------ prompts -> mask
    def _start_clock(self) -> None:
        if self.started is None:
            self.started = time.time()

    def _add_point(self, pos: QPointF, label: int) -> None:
        self._start_clock()
        self.points.append((pos.x(), pos.y()))
        self.labels.append(label)
        r = self.screen_px(5)
        dot = QGraphicsEllipseItem(QRectF(pos.x() - r, pos.y() - r, 2 * r, 2 * r))
        dot.setBrush(QColor(0, 220, 0) if label else QColor(230, 0, 0))
        pen = QPen(QColor(255, 255, 255), 1)
        pen.setCosmetic(True)
        dot.setPen(pen)
        dot.setZValue(12)
        self.canvas.scene().addItem(dot)
        self._items.append(dot)
        self._request()

    def _request(self) -> None:
        rgb, key = self.rgb_source()
        if rgb is None:
            self.canvas.message("The image is still loading")
            return
        if not any(self.labels) and self.box is None:
            self.canvas.message("Add a positive click (left) or a box (drag) first")
            return
        self._rid = self.predictor.request(rgb, key, self.points, self.labels, self.box)

    def _mask_ready(self, rid: int, mask, source: str) -> None:
        if rid != self._rid:
            return
        self._rid = 0
        self.mask, self.source = mask, source
        self._show_preview()
        if self._commit_when_ready:
            self._commit_when_ready = False
            self.commit()

    def _failed(self, msg: str) -> None:
        self._rid = 0
        self._commit_when_ready = False
        self.canvas.message(f"Prompt: {msg}")

    def _show_preview(self) -> None:
        if self._preview is not None:
            self.canvas.scene().removeItem(self._preview)
            self._preview = None
        if self.mask is None or self.mask.is_empty():
            return
        s = self.session
        inst = Instance(0, s.current_class, self.mask, InstanceState.PROPOSED)
        try:
            rgb = s.palette.color_of(s.current_class)
        except KeyError:
            rgb = (255, 255, 0)
        self._preview = InstanceItem(inst, rgb, 0.6)
        self._preview.set_style(rgb, 0.6, True)
        self._preview.setZValue(11)
        self.canvas.scene().addItem(self._preview)

    # ------------------------------------------------------------ decision
    def commit(self) -> None:
        if self.pending:
            self._commit_when_ready = True
            return
        if self.mask is None or self.mask.is_empty():
            self.canvas.message("Nothing to keep: click on the object first")
            return
        s = self.session
        cls = s.current_class
        mask = s.clip_new_mask(cls, self.mask.copy())
        if mask.is_empty():
            self.canvas.message("The mask lies where the overlap rule forbids this class")
            self.clear()
            return
        inst = Instance(s.image.id, cls, mask, InstanceState.ACCEPTED)
        details = {"clicks": self.clicks, "positive": sum(self.labels), "negative": len(self.labels) - sum(self.labels),
                   "box": None if self.box is None else [round(v, 1) for v in self.box], "model": self.source}
        started = self.started
        self.clear()
        self.canvas.push(AddInstanceCommand(s, inst, "prompt", started=started, **details))
        self.canvas.message(f"New {cls} instance from the prompt")

    def clear(self) -> None:
        for it in self._items:
            self.canvas.scene().removeItem(it)
        self._items.clear()
        if self._rect.scene() is not None:
            self.canvas.scene().removeItem(self._rect)
        self.points, self.labels, self.box = [], [], None
        self.mask, self.started, self._rid, self._press = None, None, 0, None
        self._commit_when_ready = False
        self._show_preview()

    def cancel(self) -> None:
        self.clear()
