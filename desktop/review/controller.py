"""The review: which proposal is current, how long each decision took, and whether the
proposal was edited before it was accepted.

Durations run from the moment a proposal was first selected (or, for one never
selected, from when it appeared on screen) until the decision. A proposal whose mask
was changed by any tool before acceptance is logged as ``modify_accept`` with the edit
duration (first selection to acceptance) and the number of edits.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Optional

from PySide6.QtCore import QObject, Signal

from annotation.document import InstanceState
from annotation.versions import MASK_EDIT_ACTIONS
from desktop.review.commands import DecisionCommand


class ReviewController(QObject):
    changed = Signal()  # the queue or the current proposal changed

    def __init__(self, session, canvas, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.session = session
        self.canvas = canvas
        self.first_seen: dict[int, float] = {}
        self.first_selected: dict[int, float] = {}
        # called when N finds nothing left here: opens the next image with proposals, True if any
        self.on_exhausted: Optional[Callable[[], bool]] = None
        session.image_changed.connect(self._reset)
        session.instances_reloaded.connect(self._reset)
        session.instance_added.connect(self._added)
        session.instance_removed.connect(self._removed)
        session.instance_changed.connect(self._instance_changed)
        session.selection_changed.connect(self._selected)

    # ------------------------------------------------------------ bookkeeping
    def _reset(self) -> None:
        now = time.time()
        self.first_seen = {iid: now for iid, i in self.session.instances.items() if i.is_proposal}
        self.first_selected.clear()
        self.changed.emit()

    def _added(self, iid: int) -> None:
        self.first_seen.setdefault(iid, time.time())
        self.changed.emit()

    def _removed(self, iid: int) -> None:
        # the store may reuse the id for a new proposal: forget this one's history
        if iid not in self.session.rejected:
            for d in (self.first_seen, self.first_selected):
                d.pop(iid, None)
        self.changed.emit()

    def _instance_changed(self, iid: int, box) -> None:
        inst = self.session.instances.get(iid)
        if box is not None and inst is not None and inst.is_proposal:
            self.first_selected.setdefault(iid, time.time())
        self.changed.emit()

    def _selected(self) -> None:
        now = time.time()
        for iid in self.session.selection:
            self.first_selected.setdefault(iid, now)
        self.changed.emit()

    def started(self, iid: int) -> float:
        return self.first_selected.get(iid, self.first_seen.get(iid, time.time()))

    # ------------------------------------------------------------ queue
    def queue(self) -> list:
        return self.session.proposals()

    @property
    def current(self):
        """The selected proposal, if the selection holds one."""
        for iid in self.session.selection:
            inst = self.session.instances.get(iid)
            if inst is not None and inst.is_proposal:
                return inst
        return None

    def next(self) -> None:
        """Select the proposal after the current one (best score first), wrapping around."""
        q = self.queue()
        if not q:
            if self.on_exhausted is not None and self.on_exhausted():
                return  # the next image with proposals is opening
            self.canvas.message("No proposals left on this image, nor on any other")
            return
        cur = self.current
        ids = [i.id for i in q]
        i = (ids.index(cur.id) + 1) % len(ids) if cur is not None and cur.id in ids else 0
        self.session.select([ids[i]])
        self.canvas.centre_on_instance(ids[i])

    def _targets(self) -> list[int]:
        sel = [i for i in self.session.selection
               if i in self.session.instances and self.session.instances[i].is_proposal]
        if sel:
            return sel
        cur = self.queue()
        return [cur[0].id] if cur else []

    # ------------------------------------------------------------ decisions
    def accept(self, ids: Optional[Iterable[int]] = None, *, advance: bool = True) -> int:
        """Accept ``ids`` (default: the selected proposals, else the best one)."""
        ids = self._targets() if ids is None else list(ids)
        if not ids:
            self.canvas.message("No proposal to accept")
            return 0
        now = time.time()
        decisions = []
        edited = self._edited(ids)
        for iid in ids:
            n = edited.get(iid, 0)
            action = "modify_accept" if n else "accept"
            started = self.started(iid)
            details = {"edits": n, "edit_duration": round(now - started, 3)} if n else {}
            decisions.append((iid, action, started, details))
        self._decide(decisions, InstanceState.ACCEPTED, advance)
        return len(ids)

    def _edited(self, ids: list[int]) -> dict[int, int]:
        """instance id -> mask edits still in effect, for those of ``ids`` that have any.

        Read from the log (edits net of their undos, the count the per-version outcomes
        use): counting the canvas's change signals would take an undone stroke, which
        changes the mask too, for a second edit."""
        net = self.session.store.net_mask_edits(ids, MASK_EDIT_ACTIONS)
        return {i: n for i, n in net.items() if n > 0}

    def reject(self, ids: Optional[Iterable[int]] = None, *, advance: bool = True) -> int:
        ids = self._targets() if ids is None else list(ids)
        if not ids:
            self.canvas.message("No proposal to reject")
            return 0
        self._decide([(i, "reject", self.started(i), {}) for i in ids], InstanceState.REJECTED, advance)
        return len(ids)

    def reject_rest(self) -> int:
        """Reject every proposal still waiting on the current image (one undoable step)."""
        ids = [i.id for i in self.queue()]
        if not ids:
            self.canvas.message("No proposal left to reject")
            return 0
        self._decide([(i, "reject", self.started(i), {"bulk": True}) for i in ids], InstanceState.REJECTED,
                     advance=False)
        self.canvas.message(f"Rejected the {len(ids)} remaining proposals")
        return len(ids)

    def accept_above(self, threshold: float) -> int:
        """Accept every proposal of the current image scoring at least ``threshold``."""
        ids = [i.id for i in self.queue() if (i.score or 0.0) >= threshold]
        if not ids:
            self.canvas.message(f"No proposal scores {threshold:.2f} or more")
            return 0
        now = time.time()
        edited = self._edited(ids)
        decisions = [(i, "modify_accept" if edited.get(i) else "accept", self.started(i),
                      {"bulk": True, "threshold": threshold, "edits": edited[i],
                       "edit_duration": round(now - self.started(i), 3)} if edited.get(i)
                      else {"bulk": True, "threshold": threshold}) for i in ids]
        self._decide(decisions, InstanceState.ACCEPTED, advance=False)
        self.canvas.message(f"Accepted {len(ids)} proposals scoring {threshold:.2f} or more")
        return len(ids)

    def _decide(self, decisions, state: InstanceState, advance: bool) -> None:
        q_before = [i.id for i in self.queue()]
        self.canvas.push(DecisionCommand(self.session, decisions, state))
        if advance:
            rest = [i for i in q_before if i in self.session.instances and self.session.instances[i].is_proposal]
            if rest:
                decided = {d[0] for d in decisions}
                later = [i for i in rest if q_before.index(i) > max(q_before.index(d) for d in decided if d in q_before)] \
                    if any(d in q_before for d in decided) else rest
                nxt = (later or rest)[0]
                self.session.select([nxt])
                self.canvas.centre_on_instance(nxt)
        self.changed.emit()
