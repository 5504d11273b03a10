"""Weak click (K): one click per defect patch (003_...): left click = a patch of the
current class, right click = clean surface. Each click is an interaction-log row
(``weak_click`` with x, y, positive, class_name) drawn as a small + or − marker, and
one undo step."""
from __future__ import annotations

import time

from PySide6.QtCore import QPointF, Qt

from desktop.commands import StoreCommand
from desktop.tools.base import Tool


class WeakClickCommand(StoreCommand):
    def __init__(self, session, x: float, y: float, positive: bool, class_name: str, started: float):
        super().__init__(session, f"weak click {'+' if positive else '−'} {class_name}")
        self.args = (x, y, positive, class_name, started)
        self.log_id = None

    def apply(self, first: bool) -> None:
        self.log_id = self.session.add_weak_click(*self.args)

    def revert(self) -> None:
        if self.log_id is not None:
            self.session.remove_weak_click(self.log_id)
            self.log_id = None


class WeakClickTool(Tool):
    name = "weak_click"
    label = "Weak click (left: defect patch, right: clean)"
    cursor = Qt.CursorShape.PointingHandCursor

    def __init__(self, canvas):
        super().__init__(canvas)
        self._since = time.time()

    def activate(self) -> None:
        super().activate()
        self._since = time.time()

    def press(self, pos: QPointF, button, mods) -> bool:
        if button not in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            return False
        s = self.session
        positive = button == Qt.MouseButton.LeftButton
        x, y = pos.x(), pos.y()
        h, w = s.image_size
        if not (0 <= x < w and 0 <= y < h):
            return True
        started, self._since = self._since, time.time()
        self.canvas.push(WeakClickCommand(s, x, y, positive, s.current_class, started))
        return True
