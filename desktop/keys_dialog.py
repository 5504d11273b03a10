"""Help › Change keys…: every action's keys in one table, editable, stored in QSettings.

A key given to two actions is refused with the names of both (a shortcut that fires one
of two actions at random is worse than none). Changes apply to the open window at once.
"""
from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QHeaderView, QKeySequenceEdit, QLabel, QPushButton,
                               QTableWidget, QTableWidgetItem, QVBoxLayout)

from desktop import keymap


class KeysDialog(QDialog):
    def __init__(self, actions: dict[str, QAction], parent=None):
        super().__init__(parent)
        self.setObjectName("keys")
        self.setWindowTitle("Keys")
        self.actions = actions
        names = sorted(actions, key=lambda n: (keymap.GROUPS.index(keymap.group_of(n))
                                               if keymap.group_of(n) in keymap.GROUPS else 99, n))
        self.names = [n for n in names if actions[n].isVisible() or not n.startswith("class.")]
        lay = QVBoxLayout(self)
        self.table = QTableWidget(len(self.names), 4, objectName="keys.table")
        self.table.setHorizontalHeaderLabels(["Group", "Action", "Key", ""])
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.edits: dict[str, QKeySequenceEdit] = {}
        for row, name in enumerate(self.names):
            a = actions[name]
            self.table.setItem(row, 0, QTableWidgetItem(keymap.group_of(name)))
            self.table.setItem(row, 1, QTableWidgetItem(a.text().replace("&", "")))
            edit = QKeySequenceEdit(a.shortcut())
            edit.setObjectName(f"keys.edit.{name}")
            self.edits[name] = edit
            self.table.setCellWidget(row, 2, edit)
            reset = QPushButton("Default")
            reset.clicked.connect(lambda _=False, n=name: self._default(n))
            self.table.setCellWidget(row, 3, reset)
        lay.addWidget(self.table)
        self.problem = QLabel(objectName="keys.problem")
        self.problem.setStyleSheet("color: #c04040")
        lay.addWidget(self.problem)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.resize(640, 640)

    def _default(self, name: str) -> None:
        defaults = keymap.KEYS.get(name, ("", ()))[1]
        self.edits[name].setKeySequence(QKeySequence(defaults[0] if defaults else ""))

    def assigned(self) -> dict[str, list[str]]:
        """Each action's keys as edited: the first key from the editor, further default
        keys (an action may have two, e.g. D and PgDown) kept while the first is unchanged."""
        out = {}
        for name, edit in self.edits.items():
            seq = edit.keySequence().toString()
            current = [k.toString() for k in self.actions[name].shortcuts()]
            out[name] = current if current[:1] == [seq] else ([seq] if seq else [])
        return out

    def save(self) -> bool:
        keys = self.assigned()
        clash = keymap.conflicts(keys)
        if clash:
            k, names = next(iter(clash.items()))
            self.problem.setText(f"{k} is given to {' and '.join(names)}: choose another key for one of them")
            return False
        for name, ks in keys.items():
            if ks != [k.toString() for k in self.actions[name].shortcuts()]:
                keymap.set_keys(name, ks)
                self.actions[name].setShortcuts([QKeySequence(k) for k in ks])
        self.accept()
        return True
