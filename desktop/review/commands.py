"""Undo commands of the review: a decision on proposals, and a new set of proposals.

A decision (one proposal, or a batch: "accept all ≥ score", "reject the rest") is one
transaction: one UPDATE of the states (masks are not rewritten) and one log row per
instance (``accept``, ``reject`` or ``modify_accept`` with ``started`` = when the proposal
was first selected). A run of proposals goes through ``inference.propose.store_proposals``
both ways, and the session re-reads what it stored.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from annotation.document import ImageStatus, Instance, InstanceState
from desktop.commands import StoreCommand
from desktop.session import EditingSession
from inference.propose import store_proposals


class DecisionCommand(StoreCommand):
    """Set the state of some proposals: ``decisions`` is [(instance id, action, started, details)]."""

    def __init__(self, session: EditingSession, decisions: Sequence[tuple[int, str, float, dict]],
                 state: InstanceState):
        n = len(decisions)
        verb = "reject" if state is InstanceState.REJECTED else "accept"
        super().__init__(session, f"{verb} {n} proposal{'s' if n != 1 else ''}")
        self.decisions = list(decisions)
        self.state = InstanceState(state)
        self.old = {iid: session.instances[iid].state for iid, *_ in self.decisions}
        self.meta = {iid: (session.instances[iid].class_name, session.instances[iid].origin)
                     for iid, *_ in self.decisions}
        self.old_status = session.image.status if session.image is not None else None

    def apply(self, first: bool) -> None:
        s = self.session
        s.set_states([d[0] for d in self.decisions], self.state)
        if not s.proposals():  # the last waiting proposal decided: nothing left to review
            s.set_status(ImageStatus.DONE)
        for iid, action, started, details in self.decisions:
            cls, origin = self.meta[iid]
            if first:
                s.log(action, instance_id=iid, class_name=cls, started=started, origin=origin, **details)
            else:
                s.log("redo", instance_id=iid, class_name=cls, of=action)

    def revert(self) -> None:
        s = self.session
        by_state: dict[InstanceState, list[int]] = {}
        for iid, old in self.old.items():
            by_state.setdefault(old, []).append(iid)
        for state, ids in by_state.items():
            s.set_states(ids, state)
        if self.old_status is not None:
            s.set_status(self.old_status)
        for iid, action, _started, _details in reversed(self.decisions):
            s.log("undo", instance_id=iid, class_name=self.meta[iid][0], of=action)


class ProposalsCommand(StoreCommand):
    """Replace the current image's proposals by a new run's (undo brings the old ones back,
    under their own ids; redo the new ones, under theirs)."""

    def __init__(self, session: EditingSession, new: Sequence[Instance], model: str, version: str, started: float,
                 *, sha1: str | None = None, params: dict | None = None):
        super().__init__(session, f"propose ({len(new)} from {model}@{version})")
        self.new = list(new)
        self.old = [i for i in session.instances.values() if i.state is InstanceState.PROPOSED]
        # the undo stores the old proposals again: with their embeddings (the session
        # does not load them), so the clustered review still knows them
        vectors = session.store.embeddings([i.id for i in self.old if i.id is not None])
        for inst in self.old:
            inst.embedding = vectors.get(inst.id) if inst.id is not None else None
        self.model, self.version, self.started = model, version, started
        self.sha1 = sha1
        self.params = dict(params or {})
        # called with the stored ids before the views hear of them (the proposer hands the
        # canvas the overlay images its worker drew)
        self.on_stored: Optional[Callable[[list[int]], None]] = None

    def _store(self, instances: list[Instance], action: str, **details) -> None:
        s = self.session
        assert s.image is not None
        ids = store_proposals(s.store, s.image.id, instances, action=action, **details)
        if self.on_stored is not None:
            self.on_stored(ids)
        s.reload_proposals()

    def apply(self, first: bool) -> None:
        if first:
            self._store(self.new, "propose", started=self.started, sha1=self.sha1, model=self.model,
                        version=self.version, proposals=len(self.new), params=self.params)
        else:
            self._store(self.new, "redo", of="propose")

    def revert(self) -> None:
        self._store(self.old, "undo", of="propose")


class ClusterDecisionCommand(StoreCommand):
    """Decisions of the clustered review on proposals of any images, as one undo step.

    ``decisions``: [(instance id, image id, state, action, started, details)], where
    ``action`` is ``accept`` or ``reject`` and ``details`` says which question it answered
    or which cluster's answer it follows (``propagated``). One transaction, one log row
    per instance, like every other decision; images are not marked done (an expert who
    judged some of an image's proposals has not looked at the whole image).
    """

    def __init__(self, session: EditingSession, decisions: Sequence[tuple[int, int, InstanceState, str, float, dict]],
                 text: str):
        super().__init__(session, text)
        self.decisions = list(decisions)
        states = session.store.states_of([d[0] for d in self.decisions])
        self.old = {iid: InstanceState(states.get(iid, InstanceState.PROPOSED.value)) for iid, *_ in self.decisions}
        self.meta = {iid: session.store.instance_meta(iid) for iid, *_ in self.decisions}

    def _set(self, pairs: Sequence[tuple[int, int, InstanceState]]) -> None:
        groups: dict[InstanceState, dict[int, list[int]]] = {}
        for iid, image_id, state in pairs:
            groups.setdefault(state, {}).setdefault(image_id, []).append(iid)
        for state, by_image in groups.items():
            self.session.set_states_across(by_image, state)

    def apply(self, first: bool) -> None:
        self._set([(iid, image_id, state) for iid, image_id, state, *_ in self.decisions])
        store = self.session.store
        for iid, image_id, _state, action, started, details in self.decisions:
            cls, origin = self.meta[iid]
            if first:
                store.log(action, image_id=image_id, instance_id=iid, class_name=cls, started=started,
                          origin=origin, **details)
            else:
                store.log("redo", image_id=image_id, instance_id=iid, class_name=cls, of=action)

    def revert(self) -> None:
        self._set([(iid, image_id, self.old[iid]) for iid, image_id, *_ in self.decisions])
        for iid, image_id, _state, action, _started, _details in reversed(self.decisions):
            self.session.store.log("undo", image_id=image_id, instance_id=iid, class_name=self.meta[iid][0], of=action)
