"""Images panel: every image of the project with its status and instance counts."""
from __future__ import annotations

from pathlib import PurePosixPath

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QListWidget, QListWidgetItem

from annotation.document import ImageStatus

STATUS_TEXT = {ImageStatus.NEW: "new", ImageStatus.IN_PROGRESS: "in progress", ImageStatus.DONE: "done"}
STATUS_MARK = {ImageStatus.NEW: "○", ImageStatus.IN_PROGRESS: "◐", ImageStatus.DONE: "●"}


class ImagesPanel(QListWidget):
    image_chosen = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("images")
        self._ids: list[int] = []
        self.itemActivated.connect(lambda it: self.image_chosen.emit(int(it.data(Qt.ItemDataRole.UserRole))))
        self.itemClicked.connect(lambda it: self.image_chosen.emit(int(it.data(Qt.ItemDataRole.UserRole))))

    def refresh(self, images, counts, current_id=None) -> None:
        self.blockSignals(True)
        self.clear()
        self._ids = []
        for rec in images:
            c = counts.get(rec.id, {})
            n = sum(v for k, v in c.items() if k != "rejected")
            props = c.get("proposed", 0)
            text = f"{STATUS_MARK[rec.status]} {PurePosixPath(rec.path).name} — {STATUS_TEXT[rec.status]}, {n} instance{'' if n == 1 else 's'}"
            if props:
                text += f" ({props} proposed)"
            if rec.error:
                text = f"⚠ {PurePosixPath(rec.path).name} — cannot be read"
            it = QListWidgetItem(text)
            it.setData(Qt.ItemDataRole.UserRole, rec.id)
            it.setToolTip(rec.error or rec.path)
            self.addItem(it)
            self._ids.append(rec.id)
            if rec.id == current_id:
                self.setCurrentItem(it)
        self.blockSignals(False)

    def neighbour(self, current_id, step: int):
        if not self._ids:
            return None
        if current_id not in self._ids:
            return self._ids[0]
        i = self._ids.index(current_id) + step
        return self._ids[i] if 0 <= i < len(self._ids) else None
