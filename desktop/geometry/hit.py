"""Hit-testing: which instance lies under a point."""
from __future__ import annotations

from typing import Iterable, Optional

from annotation.document import Instance


def contains(inst: Instance, x: float, y: float) -> bool:
    xi, yi = int(x), int(y)
    m = inst.mask
    bx0, by0, bx1, by1 = m.box
    if not (bx0 <= xi < bx1 and by0 <= yi < by1):
        return False
    # one pixel read: a packed mask is not unpacked for a click
    return bool(m.read_box((xi, yi, xi + 1, yi + 1))[0, 0])


def instance_at(instances: Iterable[Instance], x: float, y: float) -> Optional[Instance]:
    """The visible instance under (x, y) image pixels; the smallest wins (inner masks first)."""
    best: Optional[Instance] = None
    best_area = None
    for inst in instances:
        if inst.hidden or not contains(inst, x, y):
            continue
        a = inst.mask.area
        if best is None or a < best_area:
            best, best_area = inst, a
    return best
