"""Searching and filtering the images panel: by file name, status, class present, pending
proposals and proposal score, with a count of what is shown.

The filter is a ``QSortFilterProxyModel`` between the images model (a C++
``QStandardItemModel``) and the list view. What depends on instances (a class present,
a waiting proposal's score) comes from small SQL queries run when a filter changes and
kept as sets of image ids; an action re-asks them for its one image. So the test of a row
is a few comparisons, a set lookup and a substring test: thousands of images filter at
once, and nothing is asked of the store per row or per repaint.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSortFilterProxyModel
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QGridLayout, QHBoxLayout, QLabel, QLineEdit,
                               QVBoxLayout, QWidget)

from annotation.document import ImageRecord, ImageStatus

if TYPE_CHECKING:  # the images model imports this module
    from desktop.panels.images import ImagesModel, ImagesPanel

ALL = "all"
MISSING = "missing"  # a status choice: images the last folder scan did not find
STATUS_CHOICES = (("all statuses", ALL), ("new", ImageStatus.NEW.value),
                  ("in progress", ImageStatus.IN_PROGRESS.value), ("done", ImageStatus.DONE.value),
                  ("missing", MISSING))
SCORE_MIN, SCORE_MAX = 0.0, 1.0  # the full range: no score filter


@dataclass(frozen=True)
class ImageFilter:
    """What the images list shows. ``text`` is matched, case-insensitively, inside the file
    name; ``status`` is ``ALL``, an ``ImageStatus`` value or ``MISSING``; ``class_name``
    None means any class; ``score_range`` (lo, hi), both included, keeps the images with a
    waiting proposal scoring within it (None: no score filter)."""

    text: str = ""
    status: str = ALL
    class_name: Optional[str] = None
    pending_only: bool = False
    score_range: Optional[tuple[float, float]] = None

    @property
    def needle(self) -> str:
        return self.text.strip().casefold()

    @property
    def active(self) -> bool:
        return bool(self.needle or self.status != ALL or self.class_name is not None or self.pending_only
                    or self.score_range is not None)


def row_matches(f: ImageFilter, needle: str, rec: ImageRecord, name_key: str, missing: bool,
                with_class: Optional[set[int]], with_score: Optional[set[int]]) -> bool:
    """Whether one image passes ``f``. ``needle`` is ``f.needle`` (computed once per filter,
    not per row); ``name_key`` the case-folded file name; ``with_class`` / ``with_score`` the
    ids the store found for the class and score filters (None when that filter is off).
    The cheap tests come first: this runs once per row whenever the filter changes."""
    if f.status == MISSING:
        if not missing:
            return False
    elif f.status != ALL and rec.status.value != f.status:
        return False
    if f.pending_only and rec.n_proposed <= 0:
        return False
    if with_class is not None and rec.id not in with_class:
        return False
    if with_score is not None and rec.id not in with_score:
        return False
    return not needle or needle in name_key


class ImagesFilterProxy(QSortFilterProxyModel):
    """The rows of an ``ImagesModel`` that pass the filter, in the model's order.

    The pinned image (the one open in the editor) is always shown, so that an action that
    makes it stop matching does not throw the user off it; it leaves the list once another
    image is opened. Re-filtering after an action is one row: the model re-reads its row,
    the id sets are re-asked for that image (``record_reloaded``, before the row's text
    changes) and the proxy re-tests the changed row (dynamic filtering).
    """

    def __init__(self, images: ImagesModel):
        super().__init__(images)  # lives and dies with its model
        self.images = images
        self.filter = ImageFilter()
        self._active = False  # the filter's, kept: asked once per row
        self._needle = ""
        self._with_class: Optional[set[int]] = None
        self._with_score: Optional[set[int]] = None
        self._pinned: Optional[int] = None
        self.setDynamicSortFilter(True)
        self.setSourceModel(images)
        images.record_reloaded.connect(self._record_reloaded)

    # ------------------------------------------------------------ the filter
    @property
    def active(self) -> bool:
        return self._active

    def set_filter(self, f: ImageFilter) -> None:
        """Show the images passing ``f``: the store is asked once for the class and score
        sets, then every row is tested against them."""
        store = self.images.store
        self.filter = f
        self._active = f.active
        self._needle = f.needle
        self._with_class = None if f.class_name is None else store.image_ids_with_class(f.class_name)
        self._with_score = None if f.score_range is None else store.image_ids_with_proposal_score(*f.score_range)
        # one layout change, the mapping rebuilt in one pass: re-filtering in place
        # (begin/endFilterChange) signals each range of rows that comes or goes, thousands
        # when the matches are scattered, and the view handles each one (3x slower)
        self.invalidate()

    def pin(self, image_id: Optional[int]) -> None:
        """Keep ``image_id`` shown whatever the filter; the image pinned before is tested again."""
        old, self._pinned = self._pinned, image_id
        if old == image_id or not self.active:
            return  # with no filter every row is shown anyway
        for iid in (old, image_id):
            row = None if iid is None else self.images.row_of(iid)
            if row is not None:
                self.images.item(row).emitDataChanged()  # the proxy re-tests this one row

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        if not self._active:
            return True
        m = self.images
        rec = m.record(source_row)
        if rec.id == self._pinned:
            return True
        return row_matches(self.filter, self._needle, rec, m.name_key(source_row), m.is_missing(rec.id),
                           self._with_class, self._with_score)

    def _record_reloaded(self, image_id: int) -> None:
        """An action changed this image's instances: re-ask the sets for it alone."""
        store, f = self.images.store, self.filter
        if self._with_class is not None and f.class_name is not None:
            _update(self._with_class, image_id, store.image_ids_with_class(f.class_name, image_id=image_id))
        if self._with_score is not None and f.score_range is not None:
            lo, hi = f.score_range
            _update(self._with_score, image_id, store.image_ids_with_proposal_score(lo, hi, image_id=image_id))

    # ------------------------------------------------------------ rows
    def shows(self, source_row: int) -> bool:
        return self.mapFromSource(self.images.index(source_row, 0)).isValid()

    def source_row(self, row: int) -> int:
        return self.mapToSource(self.index(row, 0)).row()

    def shown_row(self, source_row: int) -> Optional[int]:
        idx = self.mapFromSource(self.images.index(source_row, 0))
        return idx.row() if idx.isValid() else None


def _update(ids: set[int], image_id: int, found: set[int]) -> None:
    if found:
        ids.add(image_id)
    else:
        ids.discard(image_id)


class ImageFilterBar(QWidget):
    """The search box and filters above the images list, bound to one ``ImagesFilterProxy``:
    each control sets the proxy's filter; the count follows the proxy's rows."""

    def __init__(self, proxy: ImagesFilterProxy, class_names: Sequence[str] = (), parent=None):
        super().__init__(parent)
        self.setObjectName("images.filters")
        self.proxy = proxy
        self.search = QLineEdit(objectName="images.search")
        self.search.setPlaceholderText("Search file names")
        self.search.setClearButtonEnabled(True)
        self.status = QComboBox(objectName="images.status")
        for text, value in STATUS_CHOICES:
            self.status.addItem(text, value)
        self.class_choice = QComboBox(objectName="images.class")
        for combo in (self.status, self.class_choice):
            # a long class name must not widen the whole dock column
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
        self.class_choice.setToolTip("Images with a proposed or accepted instance of this class")
        self.pending = QCheckBox("pending proposals only", objectName="images.pending")
        self.score_min = self._score_box("images.score_min", SCORE_MIN)
        self.score_max = self._score_box("images.score_max", SCORE_MAX)
        self.count = QLabel(objectName="images.count")

        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(4)
        # four short rows: the dock column is about 300 pixels wide on a laptop
        grid.addWidget(self.search, 0, 0, 1, 2)
        grid.addWidget(self.status, 1, 0)
        grid.addWidget(self.class_choice, 1, 1)
        grid.addWidget(self.pending, 2, 0, 1, 2)
        scores = QHBoxLayout()
        scores.setSpacing(2)
        scores.addWidget(QLabel("score"))
        scores.addWidget(self.score_min)
        scores.addWidget(QLabel("–"))
        scores.addWidget(self.score_max)
        scores.addStretch(1)
        scores.addWidget(self.count)
        grid.addLayout(scores, 3, 0, 1, 2)

        self.set_classes(class_names)
        self.search.textChanged.connect(self._apply)
        self.status.currentIndexChanged.connect(self._apply)
        self.class_choice.currentIndexChanged.connect(self._apply)
        self.pending.toggled.connect(self._apply)
        self.score_min.valueChanged.connect(self._min_changed)
        self.score_max.valueChanged.connect(self._max_changed)
        # a new filter changes the proxy's layout; an action or a scan inserts or removes rows
        proxy.layoutChanged.connect(self._count)
        for model in (proxy, proxy.images):
            model.rowsInserted.connect(self._count)
            model.rowsRemoved.connect(self._count)
            model.modelReset.connect(self._count)
        self._count()

    @staticmethod
    def _score_box(name: str, value: float) -> QDoubleSpinBox:
        box = QDoubleSpinBox(objectName=name)
        box.setRange(SCORE_MIN, SCORE_MAX)
        box.setSingleStep(0.05)
        box.setDecimals(2)
        box.setValue(value)
        box.setToolTip("Images with a waiting proposal scoring within this range (0 – 1: any image)")
        return box

    def set_classes(self, names: Sequence[str]) -> None:
        """The palette's classes; the chosen one stays chosen while it is still a class."""
        current = self.class_choice.currentData()
        self.class_choice.blockSignals(True)
        self.class_choice.clear()
        self.class_choice.addItem("any class", None)
        for n in names:
            self.class_choice.addItem(n, n)
        i = self.class_choice.findData(current) if current is not None else 0
        self.class_choice.setCurrentIndex(max(i, 0))
        self.class_choice.blockSignals(False)
        if current is not None and i < 0:
            self._apply()  # the class left the palette: the filter falls back to any class

    def current_filter(self) -> ImageFilter:
        lo, hi = self.score_min.value(), self.score_max.value()
        return ImageFilter(
            text=self.search.text(),
            status=self.status.currentData(),
            class_name=self.class_choice.currentData(),
            pending_only=self.pending.isChecked(),
            score_range=None if (lo, hi) == (SCORE_MIN, SCORE_MAX) else (lo, hi),
        )

    def _min_changed(self, value: float) -> None:
        if value > self.score_max.value():
            self.score_max.setValue(value)  # a range never turns inside out; this applies it
            return
        self._apply()

    def _max_changed(self, value: float) -> None:
        if value < self.score_min.value():
            self.score_min.setValue(value)
            return
        self._apply()

    def _apply(self, *_args) -> None:
        f = self.current_filter()
        if f != self.proxy.filter:
            self.proxy.set_filter(f)

    def _count(self, *_args) -> None:
        n, total = self.proxy.rowCount(), self.proxy.images.rowCount()
        self.count.setText(f"{n} of {total} image{'' if total == 1 else 's'}")


class ImagesBox(QWidget):
    """The images dock's content: the filter bar above the list."""

    def __init__(self, panel: ImagesPanel, class_names: Sequence[str] = (), parent=None):
        super().__init__(parent)
        self.setObjectName("images")
        self.panel = panel
        self.filters = ImageFilterBar(panel.images.shown, class_names)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        lay.addWidget(self.filters)
        lay.addWidget(panel, 1)

    def set_classes(self, names: Sequence[str]) -> None:
        self.filters.set_classes(names)

