"""Undo commands: every user action is one ``QUndoCommand`` with an exact undo.

Each ``redo`` and ``undo`` runs as one ``session.action()``: the document change, the
state change and the interaction-log row commit together or not at all. The first redo
logs the action with its start and end time; later redos and undos are logged as
``redo`` / ``undo`` (training data must know what was taken back).

When an action cannot be saved (a full disk), the session has already re-read the image,
so the screen shows what the store holds, and the command waits as the next Redo for a
retry; in a read-only project it never enters the stack; a failed undo asks the window
(``session.failed``) to clear a history that no longer matches.

A mask edit holds a ``MaskDelta``: the changed tiles before and after, bit-packed, so
its memory follows what was touched, not the instance.
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

from PySide6.QtGui import QUndoCommand

from annotation.delta import MaskDelta
from annotation.document import Instance
from annotation.store import StoreError
from annotation.versions import MASK_EDIT_ACTIONS
from desktop.session import EditingSession


class StoreCommand(QUndoCommand):
    """An action with an undo; subclasses implement ``apply(first)`` and ``revert()``.

    ``applied`` says whether the document holds the action now. A redo that could not
    be saved leaves it unapplied; the window then moves the stack back one step (an
    undo of an unapplied command does nothing), so the action waits as the next Redo.
    """

    def __init__(self, session: EditingSession, text: str):
        super().__init__(text)
        self.session = session
        self.done_once = False
        self.applied = False
        self.failed = False

    def apply(self, first: bool) -> None:
        raise NotImplementedError

    def revert(self) -> None:
        raise NotImplementedError

    def redo(self) -> None:
        first = not self.done_once
        if self.session.read_only:  # nothing can be saved here: the command never enters the stack
            self.failed = True
            self.setObsolete(True)
            self.session.report_failure(self.text()[:1].upper() + self.text()[1:], StoreError(self.session.read_only),
                                        "dropped")
            return
        if self._run(lambda: self.apply(first), "redo"):
            self.done_once = True
            self.applied = True

    def undo(self) -> None:
        if self.applied and self._run(self.revert, "undo"):
            self.applied = False

    def _run(self, fn, direction: str) -> bool:
        try:
            with self.session.action():
                fn()
        except Exception as exc:  # noqa: BLE001 - reported to the user; memory re-read from the store
            self.failed = True
            what = self.text() if direction == "redo" else f"undo of {self.text()}"
            self.session.report_failure(what[:1].upper() + what[1:], exc,
                                        "retry" if direction == "redo" else "history")
            return False
        self.failed = False
        return True


class LoggedCommand(StoreCommand):
    """A command that logs ``action`` with ``details`` the first time, ``redo``/``undo`` after."""

    def __init__(self, session: EditingSession, action: str, text: str, started: Optional[float], details: dict):
        super().__init__(session, text)
        self.action = action
        self.started = time.time() if started is None else started
        self.details = details

    def log_apply(self, first: bool, instance_id: Optional[int], class_name: Optional[str]) -> None:
        if first:
            self.session.log(self.action, instance_id=instance_id, class_name=class_name, started=self.started,
                             **self.details)
        else:
            self.session.log("redo", instance_id=instance_id, class_name=class_name, of=self.action)

    def log_revert(self, instance_id: Optional[int], class_name: Optional[str]) -> None:
        self.session.log("undo", instance_id=instance_id, class_name=class_name, of=self.action)


class MaskEditCommand(LoggedCommand):
    """One edit of one instance's mask: brush stroke, reroute, polygon add/cut, morphology."""

    def __init__(self, session: EditingSession, instance_id: int, delta: MaskDelta, action: str, *,
                 started: Optional[float] = None, **details):
        if action not in MASK_EDIT_ACTIONS:  # the per-version outcomes count edits by these names
            raise ValueError(f"{action!r} is not one of annotation.versions.MASK_EDIT_ACTIONS")
        details = {"tool": action, "area_change": delta.area_change, "box": list(delta.box), **details}
        super().__init__(session, action, action.replace("_", " "), started, details)
        self.instance_id = instance_id
        self.delta = delta

    def _write(self, which: str) -> str:
        s = self.session
        inst = s.instances[self.instance_id]
        box = self.delta.apply(inst.mask, which)
        s.store_mask(self.instance_id, box)
        return inst.class_name

    def apply(self, first: bool) -> None:
        self.log_apply(first, self.instance_id, self._write("after"))

    def revert(self) -> None:
        self.log_revert(self.instance_id, self._write("before"))


class AddInstanceCommand(LoggedCommand):
    def __init__(self, session: EditingSession, inst: Instance, action: str, *, started: Optional[float] = None,
                 select: bool = True, **details):
        details = {"tool": action, "area_change": inst.mask.area, **details}
        super().__init__(session, action, action.replace("_", " "), started, details)
        self.inst = inst
        self.select = select

    def apply(self, first: bool) -> None:
        iid = self.session.add_instance(self.inst)  # keeps its id after the first time
        if self.select:
            self.session.select([iid])
        self.log_apply(first, iid, self.inst.class_name)

    def revert(self) -> None:
        self.session.remove_instance(self.inst.id)
        self.log_revert(self.inst.id, self.inst.class_name)


class ReplaceInstancesCommand(LoggedCommand):
    """Remove some instances and add others in one step: delete, split, merge."""

    def __init__(self, session: EditingSession, remove: Sequence[int], add: Sequence[Instance], action: str,
                 *, started: Optional[float] = None, **details):
        self.removed = [session.instances[i] for i in remove]
        self.added = list(add)
        change = sum(i.mask.area for i in self.added) - sum(i.mask.area for i in self.removed)
        details = {"tool": action, "area_change": change, "removed": list(remove), **details}
        super().__init__(session, action, action.replace("_", " "), started, details)

    def apply(self, first: bool) -> None:
        for inst in self.removed:
            self.session.remove_instance(inst.id)
        for inst in self.added:
            self.session.add_instance(inst)
        self.session.select([i.id for i in self.added])
        self.details["added"] = [i.id for i in self.added]
        first_inst = (self.added or self.removed or [None])[0]
        self.log_apply(first, None if first_inst is None else first_inst.id,
                       None if first_inst is None else first_inst.class_name)

    def revert(self) -> None:
        for inst in self.added:
            self.session.remove_instance(inst.id)
        for inst in self.removed:
            self.session.add_instance(inst)
        self.session.select([i.id for i in self.removed])
        self.log_revert(None, None)


class ChangeClassCommand(LoggedCommand):
    def __init__(self, session: EditingSession, ids: Sequence[int], class_name: str):
        self.ids = list(ids)
        self.old = {i: session.instances[i].class_name for i in self.ids}
        self.new = class_name
        super().__init__(session, "change_class", f"class → {class_name}", None,
                         {"tool": "change_class", "area_change": 0, "from": self.old, "to": class_name})

    def apply(self, first: bool) -> None:
        for i in self.ids:
            self.session.set_class(i, self.new)
        self.log_apply(first, self.ids[0], self.new)

    def revert(self) -> None:
        for i in self.ids:
            self.session.set_class(i, self.old[i])
        self.log_revert(self.ids[0], self.old[self.ids[0]])


class SetAttributesCommand(LoggedCommand):
    """New attribute values of one instance (the whole dict before and after)."""

    def __init__(self, session: EditingSession, instance_id: int, attributes: dict):
        inst = session.instances[instance_id]
        self.instance_id = instance_id
        self.before = dict(inst.attributes)
        self.after = dict(attributes)
        changed = sorted(k for k in set(self.before) | set(self.after) if self.before.get(k) != self.after.get(k))
        super().__init__(session, "set_attributes", "attributes of #%d" % instance_id, None,
                         {"tool": "attributes", "area_change": 0, "changed": changed,
                          "values": {k: self.after.get(k) for k in changed}})

    def apply(self, first: bool) -> None:
        self.session.set_attributes(self.instance_id, self.after)
        self.log_apply(first, self.instance_id, self.session.instances[self.instance_id].class_name)

    def revert(self) -> None:
        self.session.set_attributes(self.instance_id, self.before)
        self.log_revert(self.instance_id, self.session.instances[self.instance_id].class_name)


class SetTagsCommand(LoggedCommand):
    """New tags of the current image."""

    def __init__(self, session: EditingSession, tags: Sequence[str]):
        assert session.image is not None
        self.before = list(session.image.tags)
        self.after = list(dict.fromkeys(tags))
        super().__init__(session, "set_tags", "image tags", None, {"tool": "tags", "area_change": 0,
                                                                    "tags": self.after})

    def apply(self, first: bool) -> None:
        self.session.set_tags(self.after)
        self.log_apply(first, None, None)

    def revert(self) -> None:
        self.session.set_tags(self.before)
        self.log_revert(None, None)
