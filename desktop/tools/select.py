"""Select (V): click an instance to select it, Ctrl+click to add/remove it, drag on
empty image to pan, double-click to centre."""
from __future__ import annotations

from PySide6.QtCore import QPointF, Qt

from desktop.tools.base import Tool


class SelectTool(Tool):
    name = "select"
    label = "Select"
    edits = False

    def press(self, pos: QPointF, button, mods) -> bool:
        if button != Qt.MouseButton.LeftButton:
            return False
        inst = self.canvas.instance_at(pos)
        ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
        if inst is None:
            if not ctrl:
                self.session.select([])
            self.canvas.start_pan()
            return True
        if ctrl:
            sel = list(self.session.selection)
            sel.remove(inst.id) if inst.id in sel else sel.append(inst.id)
            self.session.select(sel)
        else:
            self.session.select([inst.id])
        return True
