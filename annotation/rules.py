"""Checks of the palette's rules ("glass-in-mirror lies inside a mirror") whose cost
follows the instances concerned, never the image.

An inner instance (glass-in-mirror) is compared only with the outer instances
(mirrors) whose boxes meet its box, over that box: no full-image arrays. The cost of
one inner instance is its box area times the number of those outers; an image with no
instance of a rule's inner class costs nothing but a loop over its instances.

* ``violations``: the full check of any set of instances (``palette.rule_violations``).
* ``RuleChecker``: one image's violations kept up to date edit by edit: only the
  inner instances an edit can affect are checked again.

Boxes are ``(x0, y0, x1, y1)`` in image pixels, ends exclusive. The box used for an
instance is its mask's array box clipped to the image (``Mask.box``): it always holds
the mask and costs nothing to know (the tight box needs a scan of the mask); a mask
with slack in its array only makes a few more pairs worth looking at.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

import numpy as np

from annotation.document import Instance, InstanceState
from annotation.mask import Box, Mask, box_is_empty, clip_box
from annotation.palette import InsideRule, Palette, RuleViolation



def _counts(inst: Instance, include_proposed: bool) -> bool:
    """Whether an instance takes part in rule checks (rejected never, proposals when asked)."""
    if inst.state is InstanceState.REJECTED:
        return False
    return include_proposed or inst.state is not InstanceState.PROPOSED


def _box_of(mask: Mask) -> Box:
    if mask.array.size == 0:
        return (0, 0, 0, 0)
    return clip_box(mask.box, mask.image_size)


def _overlap(a: Box, b: Box) -> Box:
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def _meets(a: Box, b: Box) -> bool:
    return not box_is_empty(_overlap(a, b))


def outside_fraction(inner: Mask, outers: Iterable[tuple[Box, Mask]]) -> Optional[float]:
    """The fraction of ``inner``'s pixels outside the union of ``outers``.

    ``outers``: (box, mask) pairs, ``box`` holding all of that mask's pixels (e.g. its
    array box). Only those meeting ``inner``'s box are read, over the overlap. ``None``
    for an empty ``inner`` (no fraction to speak of).
    """
    area = inner.area
    if area == 0:
        return None
    ib = _box_of(inner)
    near = [(_overlap(ib, box), m) for box, m in outers if _meets(ib, box)]
    if not near:
        return 1.0
    covered = np.zeros((ib[3] - ib[1], ib[2] - ib[0]), bool)
    for ov, m in near:
        covered[ov[1] - ib[1] : ov[3] - ib[1], ov[0] - ib[0] : ov[2] - ib[0]] |= m.read_box(ov)
    inside = int(np.count_nonzero(covered & inner.read_box(ib)))
    # the same arithmetic as always, so fractions at the tolerance compare the same
    return 1.0 - inside / area


def violations(
    palette: Palette, instances: Iterable[Instance], *, include_proposed: bool = False
) -> list[RuleViolation]:
    """Instances that break the palette's rules (e.g. glass-in-mirror outside a mirror).

    Instances are grouped by image; rejected ones are ignored; proposals only when
    asked. Order: by image (first seen), rule (palette order), instance (given order).
    """
    by_image: dict[int, list[Instance]] = {}
    for inst in instances:
        if _counts(inst, include_proposed):
            by_image.setdefault(inst.image_id, []).append(inst)
    out: list[RuleViolation] = []
    for image_id, insts in by_image.items():
        for rule in palette.rules:
            inners = [i for i in insts if i.class_name == rule.inner]
            if not inners:
                continue
            outers = [(_box_of(i.mask), i.mask) for i in insts if i.class_name == rule.outer]
            for inst in inners:
                frac = outside_fraction(inst.mask, outers)
                if frac is not None and frac > rule.tolerance:
                    out.append(RuleViolation(rule, inst.id, image_id, frac))
    return out


@dataclass(frozen=True)
class _Seen:
    """What the checker knew of an instance at its last check."""

    class_name: str
    counts: bool  # takes part in rule checks (state)
    box: Box  # holds all its pixels then


class RuleChecker:
    """The current violations of one image's instances, kept up to date edit by edit.

    ``reset`` checks everything (opening an image); ``update`` is told what an action
    changed and checks again only the inner instances that change can affect.
    ``last_checked`` lists the instance ids the last call checked (diagnostics, tests).
    """

    def __init__(self, palette: Palette, *, include_proposed: bool = False):
        self.palette = palette
        self.include_proposed = include_proposed
        self._as_inner: dict[str, list[InsideRule]] = {}
        self._as_outer: dict[str, list[InsideRule]] = {}
        for rule in palette.rules:
            self._as_inner.setdefault(rule.inner, []).append(rule)
            self._as_outer.setdefault(rule.outer, []).append(rule)
        self._seen: dict[int, _Seen] = {}
        self._by_class: dict[str, set[int]] = {}  # ids taking part, per class
        self._found: dict[int, list[RuleViolation]] = {}
        self.last_checked: tuple[int, ...] = ()

    # ------------------------------------------------------------ bookkeeping
    def _forget(self, iid: int) -> Optional[_Seen]:
        old = self._seen.pop(iid, None)
        if old is not None and old.counts:
            self._by_class.get(old.class_name, set()).discard(iid)
        self._found.pop(iid, None)
        return old

    def _remember(self, iid: int, inst: Instance) -> _Seen:
        seen = _Seen(inst.class_name, _counts(inst, self.include_proposed), _box_of(inst.mask))
        self._seen[iid] = seen
        if seen.counts:
            self._by_class.setdefault(seen.class_name, set()).add(iid)
        return seen

    def _check(self, iid: int, instances: Mapping[int, Instance]) -> None:
        """Check one inner instance against the outers whose boxes meet its box."""
        self._found.pop(iid, None)
        inst = instances[iid]
        found = []
        for rule in self._as_inner.get(inst.class_name, ()):
            outers = [
                (_box_of(instances[o].mask), instances[o].mask)
                for o in self._by_class.get(rule.outer, ())
            ]
            frac = outside_fraction(inst.mask, outers)
            if frac is not None and frac > rule.tolerance:
                found.append(RuleViolation(rule, iid, inst.image_id, frac))
        if found:
            self._found[iid] = found

    def current(self) -> list[RuleViolation]:
        """All current violations, by instance id (then palette rule order)."""
        return [v for iid in sorted(self._found) for v in self._found[iid]]

    # ------------------------------------------------------------ the two calls
    def reset(self, instances: Mapping[int, Instance]) -> list[RuleViolation]:
        """Check every instance (opening an image); returns the violations by instance id."""
        self._seen, self._by_class, self._found = {}, {}, {}
        for iid, inst in instances.items():
            self._remember(iid, inst)
        todo = sorted(
            iid for iid, s in self._seen.items() if s.counts and s.class_name in self._as_inner
        )
        for iid in todo:
            self._check(iid, instances)
        self.last_checked = tuple(todo)
        return self.current()

    def update(
        self, instances: Mapping[int, Instance], changed: Mapping[int, Optional[Box]]
    ) -> list[RuleViolation]:
        """Take in the changes of one action; returns all current violations by instance id.

        ``changed``: instance id -> the box (x0, y0, x1, y1) its pixels changed in, or
        ``None`` for anything else (added, removed, class or state changed, or a change
        anywhere). Ids no longer in ``instances`` are dropped; ids the checker has not
        seen are taken as added. Checked again: each changed instance that is an inner
        of a rule, and the inner instances whose boxes meet the edit box of a changed
        outer instance (its old and new boxes when it came, went or changed class or
        state).
        """
        changed = dict(changed)
        for iid in self._seen.keys() - instances.keys():
            changed.setdefault(iid, None)
        for iid in instances.keys() - self._seen.keys():
            changed[iid] = None
        todo: set[int] = set()
        regions: list[tuple[str, Box]] = []  # (inner class, box where its instances may be affected)
        for iid, edit in changed.items():
            old = self._forget(iid)
            inst = instances.get(iid)
            new = self._remember(iid, inst) if inst is not None else None
            same = (
                old is not None and new is not None
                and (old.class_name, old.counts) == (new.class_name, new.counts)
            )
            for seen in (old, new):
                if seen is None or not seen.counts:
                    continue
                for rule in self._as_outer.get(seen.class_name, ()):
                    # a pixel edit changes coverage only inside its box; anything else,
                    # wherever the outer was or is
                    regions.append((rule.inner, edit if same and edit is not None else seen.box))
            if new is not None and new.counts and new.class_name in self._as_inner:
                todo.add(iid)
        for inner_class, region in regions:
            if box_is_empty(region):
                continue
            for jid in self._by_class.get(inner_class, ()):
                if _meets(self._seen[jid].box, region):
                    todo.add(jid)
        for jid in todo:
            # another inner whose findings a changed outer may have altered
            self._check(jid, instances)
        self.last_checked = tuple(sorted(todo))
        return self.current()

