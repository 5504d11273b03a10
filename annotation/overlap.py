"""The overlap policy: which pixels a new or edited mask may take.

With the policy on (the default when the palette is ``exclusive``, e.g. mirror/glass):

* pixels *added* to a mask of class C are not taken from accepted masks of other
  classes, except C's parent and children under the palette's "inside" rules
  (glass-in-mirror lies inside a mirror, so the two overlap by design);
* a class with a parent (glass-in-mirror) is clipped to the union of the accepted
  masks of its parent class (mirrors).

Only added pixels are clipped, so a mask is never changed where the user did not
paint, and the cost is that of the edited box.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

from annotation.document import Instance, InstanceState
from annotation.mask import Box
from annotation.palette import Palette


@dataclass(frozen=True)
class OverlapPolicy:
    palette: Palette
    enabled: bool = True

    def related(self, a: str, b: str) -> bool:
        return self.palette.parent_class(a) == b or self.palette.parent_class(b) == a

    def clip(
        self,
        class_name: str,
        box: Box,
        before: np.ndarray,
        after: np.ndarray,
        others: Iterable[Instance],
        exclude_id: Optional[int] = None,
    ) -> np.ndarray:
        """``after`` with the added pixels that the policy forbids removed (a new array).

        ``before``/``after``: (h, w) bool over ``box`` (x0, y0, x1, y1).
        """
        if not self.enabled:
            return after
        added = after & ~before
        if not added.any():
            return after
        parent = self.palette.parent_class(class_name)
        blocked = np.zeros(after.shape, bool)
        allowed = np.zeros(after.shape, bool) if parent else None
        for inst in others:
            if inst.id is not None and inst.id == exclude_id:
                continue
            if inst.state is not InstanceState.ACCEPTED:
                continue
            ib = inst.mask.box
            if ib[2] <= box[0] or ib[0] >= box[2] or ib[3] <= box[1] or ib[1] >= box[3]:
                continue
            if parent is not None and inst.class_name == parent:
                allowed |= inst.mask.read_box(box)
            elif inst.class_name != class_name and not self.related(class_name, inst.class_name):
                blocked |= inst.mask.read_box(box)
        forbid = blocked
        if allowed is not None:
            forbid = forbid | ~allowed
        out = after.copy()
        out[added & forbid] = False
        return out
