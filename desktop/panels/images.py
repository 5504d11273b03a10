"""Images panel: every image of the project with its status and instance counts.

A model/view list: the rows are the store's image records (counts cached in the store),
read once when the project opens; an edit re-reads the one row it changed, and a
folder scan inserts its new rows. Nothing here grows with the project per edit.
"""
from __future__ import annotations

import bisect
from pathlib import PurePosixPath
from typing import Iterable, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QListView

from annotation.document import ImageRecord, ImageStatus

STATUS_TEXT = {ImageStatus.NEW: "new", ImageStatus.IN_PROGRESS: "in progress", ImageStatus.DONE: "done"}
STATUS_MARK = {ImageStatus.NEW: "○", ImageStatus.IN_PROGRESS: "◐", ImageStatus.DONE: "●"}


def row_text(rec: ImageRecord) -> str:
    name = PurePosixPath(rec.path).name
    if rec.error:
        return f"⚠ {name} — cannot be read"
    n = rec.n_accepted + rec.n_proposed
    text = f"{STATUS_MARK[rec.status]} {name} — {STATUS_TEXT[rec.status]}, {n} instance{'' if n == 1 else 's'}"
    if rec.n_proposed:
        text += f" ({rec.n_proposed} proposed)"
    return text


class ImagesModel(QStandardItemModel):
    """The project's images in path order; ``Qt.UserRole`` is the image id.

    A ``QStandardItemModel`` (rows live in C++): the list view asks for row counts and
    indexes thousands of times per update, which a Python model would answer one call
    at a time.
    """

    def __init__(self, store, parent=None):
        super().__init__(parent)
        self.store = store
        self._recs: list[ImageRecord] = []
        self._paths: list[str] = []
        self._row: dict[int, int] = {}
        self.add(store.images())

    @staticmethod
    def _item(rec: ImageRecord) -> QStandardItem:
        it = QStandardItem(row_text(rec))
        it.setData(rec.id, Qt.ItemDataRole.UserRole)
        it.setToolTip(rec.error or rec.path)
        it.setEditable(False)
        return it

    # ------------------------------------------------------------ updates
    def reload(self, image_id: int) -> None:
        """Re-read one image's row (its status or counts changed)."""
        i = self._row.get(image_id)
        if i is None:
            return
        rec = self._recs[i] = self.store.image(image_id)
        self.item(i).setText(row_text(rec))

    def add(self, records: Iterable[ImageRecord]) -> None:
        """Insert images (newly scanned ones) at their place in path order."""
        records = [r for r in records if r.id not in self._row]
        if not records:
            return
        if not self._paths or records[0].path > self._paths[-1] and all(
                a.path < b.path for a, b in zip(records, records[1:])):
            # the common case, a scan in path order: one append of all rows
            start = len(self._recs)
            self._recs.extend(records)
            self._paths.extend(r.path for r in records)
            root = self.invisibleRootItem()
            root.appendRows([self._item(r) for r in records])
            self._row.update({r.id: start + k for k, r in enumerate(records)})
            return
        for rec in records:
            i = bisect.bisect_left(self._paths, rec.path)
            self.insertRow(i, self._item(rec))
            self._recs.insert(i, rec)
            self._paths.insert(i, rec.path)
        self._row = {r.id: j for j, r in enumerate(self._recs)}

    # ------------------------------------------------------------ queries
    def row_of(self, image_id: int) -> Optional[int]:
        return self._row.get(image_id)

    def record(self, row: int) -> ImageRecord:
        return self._recs[row]

    def ids(self) -> list[int]:
        return [r.id for r in self._recs]

    def neighbour(self, current_id: Optional[int], step: int) -> Optional[int]:
        """The image ``step`` rows away from ``current_id`` (the first one when it is unknown)."""
        if not self._recs:
            return None
        i = self._row.get(current_id) if current_id is not None else None
        if i is None:
            return self._recs[0].id
        j = i + step
        return self._recs[j].id if 0 <= j < len(self._recs) else None


class ImagesPanel(QListView):
    image_chosen = Signal(int)

    def __init__(self, model: ImagesModel, parent=None):
        super().__init__(parent)
        self.setObjectName("images")
        self.setUniformItemSizes(True)  # constant-time layout, whatever the number of images
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setModel(model)
        self.activated.connect(self._chosen)
        self.clicked.connect(self._chosen)

    @property
    def images(self) -> ImagesModel:
        return self.model()  # type: ignore[return-value]

    def _chosen(self, index) -> None:
        self.image_chosen.emit(int(index.data(Qt.ItemDataRole.UserRole)))

    def show_current(self, image_id: int) -> None:
        row = self.images.row_of(image_id)
        if row is not None:
            idx = self.images.index(row, 0)
            self.blockSignals(True)
            self.setCurrentIndex(idx)
            self.blockSignals(False)
            self.scrollTo(idx)

    def texts(self) -> list[str]:
        """Every row's text, in order (tests and accessibility)."""
        m = self.images
        return [m.data(m.index(i, 0)) for i in range(m.rowCount())]
