"""What the prompt tool keeps when it refined a selected mask: the undo commands and the
pure helpers that build them (no widgets here).

Refining an instance is one ``MaskEditCommand`` (action ``prompt_refine``): the tile
delta of the change, so undo restores the exact previous mask. Refining a proposal is
what accepting a corrected proposal is (``desktop.review``): the proposal's mask changes
and it is accepted, logged as ``modify_accept`` (one edit, its duration), in one
transaction and one undo step. Either log row holds every click (``points``: x, y,
positive, the model that answered, the time) so that training can learn from them.
"""
from __future__ import annotations

from typing import Optional

from annotation.delta import MaskDelta
from annotation.document import ImageStatus, InstanceState
from annotation.mask import Mask, union_box
from desktop.commands import MaskEditCommand

ACTION = "prompt_refine"


def refine_delta(session, instance_id: int, new: Mask) -> Optional[MaskDelta]:
    """The tile delta from the instance's mask to ``new`` (pixels the overlap policy forbids
    are not added); None when nothing would change."""
    inst = session.instances[instance_id]
    box = union_box(inst.mask.bbox, new.bbox)
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    before = inst.mask.read_box(box)
    after = session.clip(inst.class_name, box, before, new.read_box(box), exclude_id=instance_id)
    delta = MaskDelta.from_box(box, before, after)
    return None if delta.is_empty else delta


def click_details(points: list[dict], labels: list[int], box, model: str) -> dict:
    """The log details of a prompt action: counts, the clicks themselves, the box, the model."""
    positive = sum(1 for v in labels if v)
    return {"clicks": len(labels) + (1 if box is not None else 0), "positive": positive,
            "negative": len(labels) - positive, "points": [dict(p) for p in points],
            "box": None if box is None else [round(v, 1) for v in box], "model": model}


class RefineAcceptCommand(MaskEditCommand):
    """A proposal refined by clicks and accepted, in one step: the mask delta, the state
    (proposed -> accepted), the image status (done when no proposal is left, as a review
    decision does) and one ``modify_accept`` row, like accepting a corrected proposal."""

    def __init__(self, session, instance_id: int, delta: MaskDelta, *, started: Optional[float] = None, **details):
        inst = session.instances[instance_id]
        details = {"tool": ACTION, "origin": inst.origin, "edits": 1, **details}
        super().__init__(session, instance_id, delta, "modify_accept", started=started, **details)
        self.setText("refine and accept proposal")
        self.old_state = inst.state
        self.old_status = session.image.status if session.image is not None else None

    def apply(self, first: bool) -> None:
        s = self.session
        cls = self._write("after")
        s.set_states([self.instance_id], InstanceState.ACCEPTED)
        if not s.proposals():  # the last waiting proposal decided: nothing left to review
            s.set_status(ImageStatus.DONE)
        self.log_apply(first, self.instance_id, cls)

    def revert(self) -> None:
        s = self.session
        s.set_states([self.instance_id], self.old_state)
        cls = self._write("before")
        if self.old_status is not None:
            s.set_status(self.old_status)
        self.log_revert(self.instance_id, cls)


def refine_command(session, instance_id: int, delta: MaskDelta, started: Optional[float], details: dict):
    """The one undo command that keeps a refined mask: a mask edit for an instance, a
    refine-and-accept for a proposal."""
    inst = session.instances[instance_id]
    if inst.is_proposal:
        return RefineAcceptCommand(session, instance_id, delta, started=started, **details)
    return MaskEditCommand(session, instance_id, delta, ACTION, started=started, **details)
