"""Undo commands of the review: a decision on proposals, and a new set of proposals.

A decision logs one row per instance the first time it is done (``accept``,
``reject`` or ``modify_accept`` with ``started`` = when the proposal was first
selected); undo and redo are logged too, like every other command.
"""
from __future__ import annotations

from typing import Sequence

from PySide6.QtGui import QUndoCommand

from annotation.document import Instance, InstanceState
from desktop.session import EditingSession


class DecisionCommand(QUndoCommand):
    """Set the state of some proposals: ``decisions`` is [(instance id, action, started, details)]."""

    def __init__(self, session: EditingSession, decisions: Sequence[tuple[int, str, float, dict]],
                 state: InstanceState):
        n = len(decisions)
        verb = "reject" if state is InstanceState.REJECTED else "accept"
        super().__init__(f"{verb} {n} proposal{'s' if n != 1 else ''}")
        self.session = session
        self.decisions = list(decisions)
        self.state = InstanceState(state)
        self.old = {iid: session.instances[iid].state for iid, *_ in self.decisions}
        self._done_once = False

    def redo(self) -> None:
        s = self.session
        for iid, action, started, details in self.decisions:
            cls = s.instances[iid].class_name
            origin = s.instances[iid].origin
            s.set_state(iid, self.state)
            if not self._done_once:
                s.log(action, instance_id=iid, class_name=cls, started=started, origin=origin, **details)
            else:
                s.log("redo", instance_id=iid, class_name=cls, of=action)
        self._done_once = True
        s.images_changed.emit()

    def undo(self) -> None:
        s = self.session
        for iid, action, _started, _details in reversed(self.decisions):
            s.set_state(iid, self.old[iid])
            inst = s.instances.get(iid)
            s.log("undo", instance_id=iid, class_name=None if inst is None else inst.class_name, of=action)
        s.images_changed.emit()


class ProposalsCommand(QUndoCommand):
    """Replace the current image's proposals by a new run's (undo brings the old ones back).

    ``stored``: the proposing worker already wrote ``new`` to the store (their ids are
    set), so the first redo only removes the old ones; a redo after an undo stores them
    again with the same ids.
    """

    def __init__(self, session: EditingSession, new: Sequence[Instance], model: str, version: str, started: float,
                 *, stored: bool = False):
        super().__init__(f"propose ({len(new)} from {model}@{version})")
        self.session = session
        self.new = list(new)
        # an image reopened during the run may already show the worker's stored rows: not "old"
        new_ids = {i.id for i in self.new if i.id is not None}
        self.old = [i for i in session.instances.values()
                    if i.state is InstanceState.PROPOSED and i.id not in new_ids]
        self.details = {"model": model, "version": version, "proposals": len(new), "started": started}
        self._done_once = False
        self._stored = stored

    def redo(self) -> None:
        self.session.replace_proposals([i.id for i in self.old], self.new, stored=self._stored)
        self._stored = False
        if not self._done_once:
            d = dict(self.details)
            started = d.pop("started")
            self.session.log("propose", started=started, **d)
            self._done_once = True
        self.session.images_changed.emit()

    def undo(self) -> None:
        self.session.replace_proposals([i.id for i in self.new], self.old)
        self.session.log("undo", of="propose")
        self.session.images_changed.emit()
