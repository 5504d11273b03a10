"""Overlay pixels of one instance: indices into a 4-colour table (no Qt here).

0 transparent, 1 fill, 2 outline, 3 emphasis (proposal hatching). An outline pixel
is a mask pixel with a 4-neighbour outside the mask, so computing a box needs the
mask one pixel around it.
"""
from __future__ import annotations

import numpy as np

from annotation.mask import Box, Mask

TRANSPARENT, FILL, OUTLINE, EMPHASIS = 0, 1, 2, 3


def overlay_indices(mask: Mask, box: Box, proposal: bool = False) -> np.ndarray:
    """(h, w) uint8 indices for ``box`` (x0, y0, x1, y1) of ``mask``."""
    x0, y0, x1, y1 = box
    a = mask.read_box((x0 - 1, y0 - 1, x1 + 1, y1 + 1))
    c = a[1:-1, 1:-1]
    interior = c & a[:-2, 1:-1] & a[2:, 1:-1] & a[1:-1, :-2] & a[1:-1, 2:]
    edge = c & ~interior
    out = np.zeros(c.shape, np.uint8)
    if proposal:
        yy, xx = np.ogrid[y0:y1, x0:x1]
        stripes = ((xx - yy) % 8) < 2
        dash = ((xx + yy) // 6) % 2 == 0
        out[c] = FILL
        out[c & stripes] = EMPHASIS
        out[edge & dash] = OUTLINE
    else:
        out[c] = FILL
        out[edge] = OUTLINE
    return out
