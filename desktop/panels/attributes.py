"""The selected instance's attributes (as the palette defines them for its class) and the
image's tags: a form under the instances list.

Each change is one undoable command (``SetAttributesCommand``, ``SetTagsCommand``):
logged, saved at once. Values the palette does not define (an import's ``occluded``,
a labelme flag) are listed read-only, so nothing an import kept is hidden.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from PySide6.QtWidgets import (QCheckBox, QComboBox, QCompleter, QDoubleSpinBox, QFormLayout, QLabel, QLineEdit,
                               QVBoxLayout, QWidget)

from annotation.attributes import AttributeDef, AttributeError_
from desktop.commands import SetAttributesCommand, SetTagsCommand
from desktop.session import EditingSession

UNSET = "—"


class AttributesPanel(QWidget):
    def __init__(self, session: EditingSession, push: Callable, parent=None):
        """``push(command)`` puts a command on the undo stack (the canvas's ``push``)."""
        super().__init__(parent)
        self.setObjectName("attributes")
        self.session = session
        self.push = push
        self._syncing = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        self.tags = QLineEdit(objectName="image.tags")
        self.tags.setPlaceholderText("image tags, comma-separated")
        self.tags.setToolTip("Labels of the whole image (CVAT tags, labelme flags); Enter saves")
        self.tags.editingFinished.connect(self._tags_edited)
        lay.addWidget(QLabel("Image tags"))
        lay.addWidget(self.tags)
        self.title = QLabel(objectName="attributes.title")
        lay.addWidget(self.title)
        self.form = QFormLayout()
        lay.addLayout(self.form)
        self.editors: dict[str, QWidget] = {}
        session.selection_changed.connect(self.refresh)
        session.image_changed.connect(self.refresh)
        session.instances_reloaded.connect(self.refresh)
        session.palette_changed.connect(self.refresh)
        session.tags_changed.connect(self._show_tags)
        session.instance_changed.connect(lambda iid, box: box is None and iid in session.selection and self.refresh())
        self.refresh()

    # ------------------------------------------------------------ showing
    def _show_tags(self) -> None:
        img = self.session.image
        self._syncing = True
        self.tags.setText(", ".join(img.tags) if img is not None else "")
        self.tags.setEnabled(img is not None and not self.session.read_only)
        known = list(self.session.palette.tags)
        self.tags.setCompleter(QCompleter(known, self.tags) if known else None)
        self._syncing = False

    def refresh(self) -> None:
        self._show_tags()
        while self.form.rowCount():
            self.form.removeRow(0)
        self.editors = {}
        inst = self.session.selected
        if inst is None:
            self.title.setText("Select an instance to see its attributes")
            return
        self.title.setText(f"#{inst.id} {inst.class_name}")
        self._syncing = True
        defs = self.session.palette.attributes_of(inst.class_name)
        for a in defs:
            editor = self._editor(a, inst.attributes.get(a.name, a.default))
            editor.setObjectName(f"attributes.{a.name}")
            editor.setEnabled(not self.session.read_only)
            self.editors[a.name] = editor
            self.form.addRow(a.name, editor)
        for name, value in sorted(inst.attributes.items()):
            if name not in {a.name for a in defs}:  # kept from an import, not in the palette
                label = QLabel(str(value))
                label.setObjectName(f"attributes.{name}")
                label.setToolTip("kept from an import; not an attribute of this palette")
                self.form.addRow(name, label)
        self._syncing = False

    def _editor(self, a: AttributeDef, value: Any) -> QWidget:
        if a.type == "bool":
            w = QCheckBox()
            w.setChecked(bool(value))
            w.toggled.connect(lambda on, n=a.name: self._edited(n, on))
        elif a.type == "number":
            w = QDoubleSpinBox()
            w.setDecimals(2)
            w.setRange(a.minimum if a.minimum is not None else -1e9, a.maximum if a.maximum is not None else 1e9)
            w.setSpecialValueText(UNSET)  # the minimum shows as "not set"
            w.setMinimum(w.minimum() - 1 if a.minimum is None else a.minimum - 0.01)
            w.setValue(float(value) if value is not None else w.minimum())
            w.editingFinished.connect(lambda n=a.name, w=w: self._edited(
                n, None if w.value() == w.minimum() else w.value()))
        elif a.type == "choice":
            w = QComboBox()
            w.addItems([UNSET, *a.choices])
            w.setCurrentIndex(a.choices.index(value) + 1 if value in a.choices else 0)
            w.currentIndexChanged.connect(lambda i, n=a.name, w=w: self._edited(n, None if i == 0 else w.currentText()))
        else:
            w = QLineEdit("" if value is None else str(value))
            w.editingFinished.connect(lambda n=a.name, w=w: self._edited(n, w.text() or None))
        return w

    # ------------------------------------------------------------ editing
    def _edited(self, name: str, value: Optional[Any]) -> None:
        if self._syncing:
            return
        inst = self.session.selected
        if inst is None:
            return
        attrs = dict(inst.attributes)
        definition = next((a for a in self.session.palette.attributes if a.name == name), None)
        try:
            value = definition.coerce(value) if definition is not None else value
        except AttributeError_ as exc:
            self.title.setText(f"⚠ {exc}")
            return
        if value is None:
            attrs.pop(name, None)
        else:
            attrs[name] = value
        if attrs != inst.attributes:
            self.push(SetAttributesCommand(self.session, inst.id, attrs))

    def _tags_edited(self) -> None:
        img = self.session.image
        if self._syncing or img is None:
            return
        tags = [t.strip() for t in self.tags.text().split(",") if t.strip()]
        if tags != img.tags:
            self.push(SetTagsCommand(self.session, tags))

