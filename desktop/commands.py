"""Undo commands. Each holds only what it changed: a mask edit keeps the changed box
before and after (exact undo, memory proportional to the box). Every redo/undo
commits to the store through the session; the first redo also logs the action with
its start and end time (undo and redo are logged too, as training data must know
what was taken back).
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np
from PySide6.QtGui import QUndoCommand

from annotation.document import Instance
from desktop.session import EditingSession

Box = tuple[int, int, int, int]


class _Logged(QUndoCommand):
    def __init__(self, session: EditingSession, action: str, text: str, started: Optional[float], details: dict):
        super().__init__(text)
        self.session = session
        self.action = action
        self.started = time.time() if started is None else started
        self.details = details
        self._done_once = False

    def _log_first(self, instance_id: Optional[int], class_name: Optional[str]) -> None:
        if not self._done_once:
            self._done_once = True
            self.session.log(self.action, instance_id=instance_id, class_name=class_name,
                             started=self.started, **self.details)
        else:
            self.session.log("redo", instance_id=instance_id, class_name=class_name, of=self.action)

    def _log_undo(self, instance_id: Optional[int], class_name: Optional[str]) -> None:
        self.session.log("undo", instance_id=instance_id, class_name=class_name, of=self.action)


class MaskEditCommand(_Logged):
    """One edit of one instance's mask over ``box``: brush stroke, reroute, morphology..."""

    def __init__(self, session: EditingSession, instance_id: int, box: Box, before: np.ndarray,
                 after: np.ndarray, action: str, *, started: Optional[float] = None, **details):
        d_area = int(np.count_nonzero(after)) - int(np.count_nonzero(before))
        details = {"tool": action, "area_change": d_area, "box": list(box), **details}
        super().__init__(session, action, action.replace("_", " "), started, details)
        self.instance_id = instance_id
        self.box = box
        self.before = before
        self.after = after

    def redo(self) -> None:
        self.session.write_mask(self.instance_id, self.box, self.after)
        inst = self.session.instances[self.instance_id]
        self._log_first(self.instance_id, inst.class_name)

    def undo(self) -> None:
        self.session.write_mask(self.instance_id, self.box, self.before)
        self._log_undo(self.instance_id, self.session.instances[self.instance_id].class_name)


class AddInstanceCommand(_Logged):
    def __init__(self, session: EditingSession, inst: Instance, action: str, *, started: Optional[float] = None,
                 select: bool = True, **details):
        details = {"tool": action, "area_change": inst.mask.area, **details}
        super().__init__(session, action, action.replace("_", " "), started, details)
        self.inst = inst
        self.select = select

    def redo(self) -> None:
        iid = self.session.add_instance(self.inst)  # keeps its id after the first time
        if self.select:
            self.session.select([iid])
        self._log_first(iid, self.inst.class_name)

    def undo(self) -> None:
        self.session.remove_instance(self.inst.id)
        self._log_undo(self.inst.id, self.inst.class_name)


class ReplaceInstancesCommand(_Logged):
    """Remove some instances and add others in one step: delete, split, merge."""

    def __init__(self, session: EditingSession, remove: Sequence[int], add: Sequence[Instance], action: str,
                 *, started: Optional[float] = None, **details):
        self.removed = [session.instances[i] for i in remove]
        self.added = list(add)
        change = sum(i.mask.area for i in self.added) - sum(i.mask.area for i in self.removed)
        details = {"tool": action, "area_change": change, "removed": list(remove), **details}
        super().__init__(session, action, action.replace("_", " "), started, details)

    def redo(self) -> None:
        for inst in self.removed:
            self.session.remove_instance(inst.id)
        for inst in self.added:
            self.session.add_instance(inst)
        self.session.select([i.id for i in self.added])
        self.details["added"] = [i.id for i in self.added]
        first = (self.added or self.removed)[0] if (self.added or self.removed) else None
        self._log_first(None if first is None else first.id, None if first is None else first.class_name)

    def undo(self) -> None:
        for inst in self.added:
            self.session.remove_instance(inst.id)
        for inst in self.removed:
            self.session.add_instance(inst)
        self.session.select([i.id for i in self.removed])
        self._log_undo(None, None)


class ChangeClassCommand(_Logged):
    def __init__(self, session: EditingSession, ids: Sequence[int], class_name: str):
        self.ids = list(ids)
        self.old = {i: session.instances[i].class_name for i in self.ids}
        self.new = class_name
        super().__init__(session, "change_class", f"class → {class_name}", None,
                         {"tool": "change_class", "area_change": 0, "from": self.old, "to": class_name})

    def redo(self) -> None:
        for i in self.ids:
            self.session.set_class(i, self.new)
        self._log_first(self.ids[0], self.new)
        self.session.check_rules()

    def undo(self) -> None:
        for i in self.ids:
            self.session.set_class(i, self.old[i])
        self._log_undo(self.ids[0], self.old[self.ids[0]])
        self.session.check_rules()
