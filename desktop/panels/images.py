"""Images panel: every image of the project with its status and instance counts.

A model/view list: the rows are the store's image records (counts cached in the store),
read once when the project opens; an edit re-reads the one row it changed, and a
folder scan inserts its new rows. Nothing here grows with the project per edit.

The view shows the model through its filter (``desktop.panels.image_filters``): stepping to
the next image follows the rows shown.
"""
from __future__ import annotations

import bisect
from pathlib import PurePosixPath
from typing import Iterable, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QListView

from annotation.document import ImageRecord, ImageStatus
from desktop.panels.image_filters import ImagesFilterProxy

STATUS_TEXT = {ImageStatus.NEW: "new", ImageStatus.IN_PROGRESS: "in progress", ImageStatus.DONE: "done"}
STATUS_MARK = {ImageStatus.NEW: "○", ImageStatus.IN_PROGRESS: "◐", ImageStatus.DONE: "●"}


def row_text(rec: ImageRecord, missing: bool = False) -> str:
    name = PurePosixPath(rec.path).name
    if missing:
        return f"⚠ {name} — missing from the folder"
    if rec.error:
        return f"⚠ {name} — cannot be read"
    n = rec.n_accepted + rec.n_proposed
    text = f"{STATUS_MARK[rec.status]} {name} — {STATUS_TEXT[rec.status]}, {n} instance{'' if n == 1 else 's'}"
    if rec.n_proposed:
        text += f" ({rec.n_proposed} proposed)"
    return text


def _name_key(path: str) -> str:
    return path.rsplit("/", 1)[-1].casefold()


class ImagesModel(QStandardItemModel):
    """The project's images in path order; ``Qt.UserRole`` is the image id.

    A ``QStandardItemModel`` (rows live in C++): the list view asks for row counts and
    indexes thousands of times per update, which a Python model would answer one call
    at a time. ``shown`` is its filter, the proxy the list view shows.

    ``record_reloaded(image_id)``: an image's record was re-read, emitted before its row's
    text changes, so that the filter can update what it knows of that image first.
    """

    record_reloaded = Signal(int)

    def __init__(self, store, parent=None):
        super().__init__(parent)
        self.store = store
        self._recs: list[ImageRecord] = []
        self._paths: list[str] = []
        self._keys: list[str] = []  # case-folded file names, for the search box
        self._row: dict[int, int] = {}
        self._missing: set[int] = set()
        self.add(store.images())
        self.shown = ImagesFilterProxy(self)

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
        self.record_reloaded.emit(image_id)
        self.item(i).setText(row_text(rec, image_id in self._missing))

    def mark_missing(self, paths: Iterable[str]) -> None:
        """Show these images (project-relative paths) as missing from the folder, and every
        other image as found: the last folder scan knows best."""
        ids = {self._recs[i].id for i in (self._row_of_path(p) for p in paths) if i is not None}
        changed, self._missing = ids ^ self._missing, ids
        for iid in changed:
            i = self._row[iid]
            self.item(i).setText(row_text(self._recs[i], iid in ids))  # the filter re-tests this row

    def _row_of_path(self, path: str) -> Optional[int]:
        i = bisect.bisect_left(self._paths, path)
        return i if i < len(self._paths) and self._paths[i] == path else None

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
            self._keys.extend(_name_key(r.path) for r in records)
            root = self.invisibleRootItem()
            root.appendRows([self._item(r) for r in records])
            self._row.update({r.id: start + k for k, r in enumerate(records)})
            return
        for rec in records:
            i = bisect.bisect_left(self._paths, rec.path)
            # the lists first: inserting the row makes the filter read its record
            self._recs.insert(i, rec)
            self._paths.insert(i, rec.path)
            self._keys.insert(i, _name_key(rec.path))
            self.insertRow(i, self._item(rec))
        self._row = {r.id: j for j, r in enumerate(self._recs)}

    # ------------------------------------------------------------ queries
    def row_of(self, image_id: int) -> Optional[int]:
        return self._row.get(image_id)

    def record(self, row: int) -> ImageRecord:
        return self._recs[row]

    def ids(self) -> list[int]:
        return [r.id for r in self._recs]

    def name_key(self, row: int) -> str:
        """The case-folded file name of a row (what the search box matches)."""
        return self._keys[row]

    def is_missing(self, image_id: int) -> bool:
        return image_id in self._missing

    def neighbour(self, current_id: Optional[int], step: int) -> Optional[int]:
        """The image ``step`` rows away from ``current_id`` (the first one when it is unknown),
        among the rows shown when a filter is on."""
        if not self._recs:
            return None
        i = self._row.get(current_id) if current_id is not None else None
        shown = self.shown
        if shown.active:
            # the open image is pinned in the shown rows, so it has a place to step from
            k = None if i is None else shown.shown_row(i)
            if k is None:
                return self._recs[shown.source_row(0)].id if shown.rowCount() else None
            j = k + step
            return self._recs[shown.source_row(j)].id if 0 <= j < shown.rowCount() else None
        if i is None:
            return self._recs[0].id
        j = i + step
        return self._recs[j].id if 0 <= j < len(self._recs) else None

    def next_with_proposals(self, current_id: Optional[int]) -> Optional[int]:
        """The next image after ``current_id`` in list order, wrapping, with a waiting
        proposal (``n_proposed > 0``); among the rows shown when a filter is on. Never
        ``current_id`` itself, nor an image that cannot be shown (missing from the folder,
        unreadable): None when there is no other."""
        n = len(self._recs)
        start = self._row.get(current_id, -1) if current_id is not None else -1
        shown = self.shown
        filtered = shown.active
        for k in range(1, n + 1):
            j = (start + k) % n
            rec = self._recs[j]
            # the cached count first: most rows end the test there
            if rec.n_proposed <= 0 or rec.id == current_id or rec.error or rec.id in self._missing:
                continue
            if filtered and not shown.shows(j):
                continue
            return rec.id
        return None


class ImagesPanel(QListView):
    """The list of images, through the model's filter (``images.shown``); ``images`` is the
    whole model. ``image_chosen(image_id)`` when the user picks a row."""

    image_chosen = Signal(int)

    def __init__(self, model: ImagesModel, parent=None):
        super().__init__(parent)
        self.setObjectName("images.list")
        self.setUniformItemSizes(True)  # constant-time layout, whatever the number of images
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self._images = model
        self.setModel(model.shown)
        self.activated.connect(self._chosen)
        self.clicked.connect(self._chosen)

    @property
    def images(self) -> ImagesModel:
        return self._images

    def _chosen(self, index) -> None:
        self.image_chosen.emit(int(index.data(Qt.ItemDataRole.UserRole)))

    def show_current(self, image_id: int) -> None:
        """Select the open image's row: it stays shown whatever the filter (pinned)."""
        shown = self.images.shown
        shown.pin(image_id)
        row = self.images.row_of(image_id)
        if row is not None:
            idx = shown.mapFromSource(self.images.index(row, 0))
            self.blockSignals(True)
            self.setCurrentIndex(idx)
            self.blockSignals(False)
            self.scrollTo(idx)

    def texts(self) -> list[str]:
        """The text of every row shown, in order (tests and accessibility)."""
        m = self.model()
        return [m.data(m.index(i, 0)) for i in range(m.rowCount())]
