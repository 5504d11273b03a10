"""What became of each model version's proposals in a project: the figures that say
whether the review-and-retrain iterations (004) pay.

Per origin (a model version, or ``manual`` for masks drawn by hand): proposals accepted
as they were, accepted after the expert edited their mask, rejected, and still waiting.
A better version shows more accepted as proposed and fewer rejected; the validation
figure beside it (from the registry, added by the caller) says what the trainer
measured. Proposals replaced by a later run before anyone decided them are not in the
project any more, so "waiting" counts only those still there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from annotation.document import MANUAL_ORIGIN, InstanceState

# the log's actions that change a mask's pixels (desktop.commands.MaskEditCommand refuses
# others); ``modify_accept`` is an acceptance after edits, or a click refinement accepted
# in one step: either way the mask was edited
MASK_EDIT_ACTIONS = frozenset({
    "brush", "erase", "reroute", "modify", "modify_accept", "draw_polygon", "prompt_refine", "dilate", "erode",
    "fill_holes", "remove_small",
})


@dataclass
class VersionOutcome:
    """One origin's instances in the project, by what the expert did with them."""

    origin: str
    accepted_as_proposed: int = 0
    accepted_edited: int = 0
    rejected: int = 0
    waiting: int = 0
    first_created: float = 0.0
    # filled in by the caller from the model registry (None: unknown there)
    validation_iou: Optional[float] = None
    in_use: bool = False

    @property
    def accepted(self) -> int:
        return self.accepted_as_proposed + self.accepted_edited

    @property
    def decided(self) -> int:
        return self.accepted + self.rejected

    @property
    def acceptance(self) -> Optional[float]:
        """Accepted share of the decided proposals (None before any decision)."""
        return self.accepted / self.decided if self.decided else None

    @property
    def as_proposed(self) -> Optional[float]:
        """Share of the decided proposals accepted without an edit."""
        return self.accepted_as_proposed / self.decided if self.decided else None

    @property
    def manual(self) -> bool:
        return self.origin == MANUAL_ORIGIN


def version_outcomes(store: Any) -> list[VersionOutcome]:
    """Every origin of the project's instances, model versions in the order they first
    proposed, masks drawn by hand last (not split by edits: drawing is editing)."""
    rows: dict[str, VersionOutcome] = {}
    for origin, state, n, first in store.origin_state_counts():
        row = rows.setdefault(origin, VersionOutcome(origin, first_created=first))
        row.first_created = min(row.first_created, first)
        if state == InstanceState.REJECTED.value:
            row.rejected += n
        elif state == InstanceState.PROPOSED.value:
            row.waiting += n
        elif state == InstanceState.ACCEPTED.value:
            row.accepted_as_proposed += n
    if any(r.accepted_as_proposed and not r.manual for r in rows.values()):
        for origin, n in store.edited_accepted_by_origin(MASK_EDIT_ACTIONS).items():
            row = rows.get(origin)
            if row is not None and not row.manual:
                moved = min(n, row.accepted_as_proposed)
                row.accepted_as_proposed -= moved
                row.accepted_edited += moved
    return sorted(rows.values(), key=lambda r: (r.manual, r.first_created, r.origin))


def format_outcomes(rows: list[VersionOutcome]) -> str:
    """The outcomes as a text table (``specula stats --versions``)."""
    def pct(v: Optional[float]) -> str:
        return "-" if v is None else f"{100 * v:.0f} %"

    head = ("origin", "accepted as proposed", "edited", "rejected", "waiting", "accepted", "validation IoU")
    body = []
    for r in rows:
        name = "drawn by hand" if r.manual else r.origin + (" (in use)" if r.in_use else "")
        body.append((name, str(r.accepted_as_proposed), str(r.accepted_edited), str(r.rejected), str(r.waiting),
                     "-" if r.manual else pct(r.acceptance),
                     "-" if r.validation_iou is None else f"{r.validation_iou:.3f}"))
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in (head, *body)]
    return "\n".join(lines)
