"""Instances panel: the current image's instances (class, state, area); the check box
shows or hides one; selection follows the canvas both ways."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem

from desktop.coalesce import Coalesced
from desktop.panels.palette import swatch


class InstancesPanel(QListWidget):
    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.setObjectName("instances.list")
        self.session = session
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self._syncing = False
        self.itemSelectionChanged.connect(self._selection_to_session)
        self.itemChanged.connect(self._visibility)
        for hook in (session.image_changed, session.instances_reloaded, session.palette_changed):
            hook.connect(self.refresh)
        self._later = Coalesced(self.refresh, self)  # once per event-loop turn
        session.instance_added.connect(self._later)
        session.instance_removed.connect(self._later)
        session.instance_changed.connect(self._changed)
        session.selection_changed.connect(self._selection_from_session)

    def _text(self, inst) -> str:
        state = "" if inst.state.value == "accepted" else f" [{inst.state.value}]"
        return f"#{inst.id} {inst.class_name}{state} — {inst.mask.area} px"

    def refresh(self) -> None:
        self._syncing = True
        self.clear()
        for iid, inst in self.session.instances.items():
            try:
                icon = swatch(self.session.palette.color_of(inst.class_name))
            except KeyError:
                icon = swatch((200, 200, 200))
            it = QListWidgetItem(icon, self._text(inst))
            it.setData(Qt.ItemDataRole.UserRole, iid)
            it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            it.setCheckState(Qt.CheckState.Unchecked if inst.hidden else Qt.CheckState.Checked)
            self.addItem(it)
        self._syncing = False
        self._selection_from_session()

    def _item(self, iid):
        for i in range(self.count()):
            if self.item(i).data(Qt.ItemDataRole.UserRole) == iid:
                return self.item(i)
        return None

    def _changed(self, iid, box) -> None:
        if box is None:  # class / state / visibility: cheap full refresh of the row
            it = self._item(iid)
            inst = self.session.instances.get(iid)
            if it is not None and inst is not None:
                self._syncing = True
                it.setText(self._text(inst))
                self._syncing = False

    def _selection_to_session(self) -> None:
        if not self._syncing:
            self.session.select([it.data(Qt.ItemDataRole.UserRole) for it in self.selectedItems()])

    def _selection_from_session(self) -> None:
        self._syncing = True
        sel = set(self.session.selection)
        for i in range(self.count()):
            it = self.item(i)
            it.setSelected(it.data(Qt.ItemDataRole.UserRole) in sel)
        self._syncing = False

    def _visibility(self, it) -> None:
        if not self._syncing:
            self.session.set_hidden(it.data(Qt.ItemDataRole.UserRole), it.checkState() != Qt.CheckState.Checked)
