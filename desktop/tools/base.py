"""The tool interface: the canvas turns mouse and key events into calls on the active
tool, in image coordinates (scene coordinates are image pixels)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, Qt

if TYPE_CHECKING:
    from desktop.canvas.view import CanvasView


class Tool:
    name = "tool"
    label = "Tool"
    cursor = Qt.CursorShape.ArrowCursor
    edits = True  # False for tools that only look (refused nothing in a read-only project)

    def __init__(self, canvas: "CanvasView"):
        self.canvas = canvas

    @property
    def session(self):
        return self.canvas.session

    def activate(self) -> None:
        self.canvas.viewport().setCursor(self.cursor)

    def deactivate(self) -> None:
        self.cancel()

    def cancel(self) -> None:
        pass

    @property
    def busy(self) -> bool:
        """True while a gesture is in progress (image switches wait for it)."""
        return False

    def press(self, pos: QPointF, button: Qt.MouseButton, mods: Qt.KeyboardModifier) -> bool:
        return False

    def move(self, pos: QPointF, mods: Qt.KeyboardModifier) -> None:
        pass

    def release(self, pos: QPointF, button: Qt.MouseButton, mods: Qt.KeyboardModifier) -> None:
        pass

    def double_click(self, pos: QPointF, mods: Qt.KeyboardModifier) -> bool:
        inst = self.canvas.instance_at(pos)
        if inst is None:
            return False
        self.session.select([inst.id])
        self.canvas.centre_on_instance(inst.id)
        return True

    def key(self, key: int, mods: Qt.KeyboardModifier) -> bool:
        return False

    def wheel(self, steps: float, mods: Qt.KeyboardModifier) -> bool:
        """Ctrl+wheel; return True when the tool used it."""
        return False

    def screen_px(self, n: float) -> float:
        """``n`` screen pixels in image pixels at the current zoom."""
        return n / max(1e-6, self.canvas.zoom)
