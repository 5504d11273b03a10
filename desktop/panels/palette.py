"""Palette panel: the project's classes with colour and key, the current class, class
visibility, overlay opacity, the overlap policy and rule warnings."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QLabel, QListWidget, QListWidgetItem, QSlider, QVBoxLayout,
                               QWidget)

from annotation.palette import SHIPPED_PALETTES

LOAD_FILE = "Load palette file…"


def swatch(rgb) -> QIcon:
    pm = QPixmap(14, 14)
    pm.fill(QColor(*rgb))
    return QIcon(pm)


class PalettePanel(QWidget):
    class_chosen = Signal(str)
    class_visibility = Signal(str, bool)  # name, hidden
    palette_chosen = Signal(str)  # shipped name, or LOAD_FILE
    opacity_changed = Signal(float)
    overlap_toggled = Signal(bool)

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.setObjectName("palette")
        self.session = session
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.choice = QComboBox(objectName="palette.choice")
        self.choice.addItems(list(SHIPPED_PALETTES) + [LOAD_FILE])
        self.choice.activated.connect(lambda i: self.palette_chosen.emit(self.choice.itemText(i)))
        self.classes = QListWidget(objectName="palette.classes")
        self.classes.itemClicked.connect(self._clicked)
        self.classes.itemChanged.connect(self._changed)
        self.opacity = QSlider(Qt.Orientation.Horizontal, objectName="palette.opacity")
        self.opacity.setRange(5, 100)
        self.opacity.setValue(45)
        self.opacity.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100.0))
        self.overlap = QCheckBox("Masks do not take pixels of other classes", objectName="palette.overlap")
        self.overlap.toggled.connect(self.overlap_toggled.emit)
        self.warning = QLabel(objectName="palette.warning")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #e0a000")
        for w in (self.choice, self.classes, QLabel("Opacity"), self.opacity, self.overlap, self.warning):
            lay.addWidget(w)
        session.palette_changed.connect(self.refresh)
        session.current_class_changed.connect(lambda _n: self._mark_current())
        session.warnings_changed.connect(self.show_warnings)
        self.refresh()

    def refresh(self) -> None:
        p = self.session.palette
        self.classes.blockSignals(True)
        self.classes.clear()
        for c in p.classes:
            it = QListWidgetItem(swatch(c.color), f"{p.key_of(c.name) or ' '}  {c.name}")
            it.setData(Qt.ItemDataRole.UserRole, c.name)
            it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            it.setCheckState(Qt.CheckState.Unchecked if c.name in self.session.hidden_classes else Qt.CheckState.Checked)
            it.setToolTip("checked: shown; click to make it the current class")
            self.classes.addItem(it)
        self.classes.blockSignals(False)
        i = self.choice.findText(p.name)
        if i >= 0:
            self.choice.setCurrentIndex(i)
        self.overlap.blockSignals(True)
        self.overlap.setChecked(self.session.overlap_enabled)
        self.overlap.blockSignals(False)
        self._mark_current()

    def _mark_current(self) -> None:
        for i in range(self.classes.count()):
            it = self.classes.item(i)
            f = it.font()
            f.setBold(it.data(Qt.ItemDataRole.UserRole) == self.session.current_class)
            it.setFont(f)
            if f.bold():
                self.classes.setCurrentItem(it)

    def _clicked(self, it) -> None:
        self.class_chosen.emit(it.data(Qt.ItemDataRole.UserRole))

    def _changed(self, it) -> None:
        self.class_visibility.emit(it.data(Qt.ItemDataRole.UserRole), it.checkState() != Qt.CheckState.Checked)

    def show_warnings(self, msgs) -> None:
        if msgs:
            more = f" (+{len(msgs) - 1} more)" if len(msgs) > 1 else ""
            self.warning.setText("⚠ " + msgs[0] + more)
        else:
            self.warning.setText("")
