"""One graphics item per instance, drawn from its own cropped mask.

The item keeps, over the mask's array box, one bit plane per colour it shows: fill and
outline, and for a proposal its hatching too (``desktop.geometry.render``'s indices 1, 2,
3), eight pixels a byte (``np.packbits``, little bit order). That is 2 or 3 bits a pixel
where a persistent 8-bit indexed image took 8: 300 instances on a 25-megapixel photo held
0.16x the photo's bytes that way, against the editor's 1.25x budget.

Painting unpacks only the exposed part of the planes into a temporary 4-colour 8-bit
indexed image (the colour table carries class colour, opacity and outline) and draws it
once, so the screen shows exactly what the persistent image showed, at about the cost
of drawing it (unpacking is cheap beside blending; drawing each plane as a 1-bit image
instead would blend every covered screen pixel once per plane, twice the cost).

A dab rewrites only the dab's box (widened to whole bytes) of the planes in place and
repaints only that rectangle; the planes are rebuilt only when the mask's array grows
(amortised by the mask's slack).

``overlay_image`` builds the planes with numpy alone and touches no graphics item, so a
worker thread may build those of a proposing run in advance; ``InstanceItem`` takes them
as ``prebuilt``.
"""
from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QImage, QPainter, qRgba
from PySide6.QtWidgets import QGraphicsItem

from annotation.document import Instance
from annotation.mask import Box, Mask
from desktop.geometry.render import EMPHASIS, FILL, OUTLINE, overlay_indices

PLAIN = (FILL, OUTLINE)  # the indices an instance shows, one plane each
HATCHED = (FILL, OUTLINE, EMPHASIS)  # a proposal's
# source pixels unpacked beyond the exposed area: smooth scaling then samples the real
# neighbours at its edge, not the clamped edge of a cropped image
MARGIN = 2


def _indices(proposal: bool) -> tuple[int, ...]:
    return HATCHED if proposal else PLAIN


def _byte_span(box: Box, x0: int, x1: int) -> tuple[int, int]:
    """``x0:x1`` widened to whole bytes of the planes over ``box`` (8 pixels a byte from
    the box's left edge), kept inside the box."""
    left = box[0]
    return left + (x0 - left) // 8 * 8, min(box[2], left + -(-(x1 - left) // 8) * 8)


def _write_planes(planes: np.ndarray, mask: Mask, proposal: bool, box: Box, part: Box) -> None:
    """Rewrite ``part`` (image coordinates, inside ``box``, its left edge on a byte) of the
    ``planes`` over ``box`` from the mask."""
    idx = overlay_indices(mask, part, proposal)
    c0, r0, r1 = (part[0] - box[0]) // 8, part[1] - box[1], part[3] - box[1]
    for n, k in enumerate(_indices(proposal)):
        bits = np.packbits(idx == k, axis=1, bitorder="little")
        planes[n, r0:r1, c0 : c0 + bits.shape[1]] = bits


def color_table(rgb: tuple[int, int, int], opacity: float, proposal: bool, selected: bool) -> list[int]:
    r, g, b = rgb
    a = round(255 * max(0.0, min(1.0, opacity)) * (0.45 if proposal else 1.0))
    if selected:
        outline = qRgba(255, 255, 255, 255)
    else:
        outline = qRgba(r, g, b, 255)
    emph = qRgba(r, g, b, min(255, a * 2 + 40))
    return [qRgba(0, 0, 0, 0), qRgba(r, g, b, a), outline, emph]


def overlay_image(mask: Mask, proposal: bool) -> tuple[Box, np.ndarray | None]:
    """The bit planes over ``mask.box`` (x0, y0, x1, y1): (planes, rows, bytes a row) uint8,
    None for an empty box; and that box. Safe in any thread."""
    box = mask.box
    w, h = box[2] - box[0], box[3] - box[1]
    if w <= 0 or h <= 0:
        return box, None
    planes = np.empty((len(_indices(proposal)), h, -(-w // 8)), np.uint8)
    _write_planes(planes, mask, proposal, box, box)
    return box, planes


class InstanceItem(QGraphicsItem):
    def __init__(self, inst: Instance, rgb: tuple[int, int, int], opacity: float,
                 prebuilt: tuple[Box, np.ndarray | None] | None = None):
        """``prebuilt``: ``overlay_image(inst.mask, inst.is_proposal)``, made beforehand
        (in a worker); used when the mask's box and the instance's kind still match, else
        the planes are built here."""
        super().__init__()
        self.inst = inst
        self.rgb = rgb
        self.opacity_ = opacity
        self.selected = False
        self._box: Box = (0, 0, 0, 0)
        self._proposal = inst.is_proposal  # which indices the planes hold
        self._planes: np.ndarray | None = None
        self._table: list[int] = []
        self.setZValue(1)
        # paint gets the exposed rectangle, so that only that part is unpacked
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        if prebuilt is not None and prebuilt[0] == inst.mask.box and prebuilt[1] is not None \
                and prebuilt[1].shape[0] == len(_indices(inst.is_proposal)):
            self._box, self._planes = prebuilt
            self.setPos(self._box[0], self._box[1])
            self._set_table()
        else:
            self.rebuild()

    @property
    def nbytes(self) -> int:
        """Bytes the overlay keeps."""
        return 0 if self._planes is None else int(self._planes.nbytes)

    # ---------------------------------------------------------------- planes
    def _set_table(self) -> None:
        self._table = color_table(self.rgb, self.opacity_, self._proposal, self.selected)

    def rebuild(self) -> None:
        """Make the planes over the mask's whole array box (after growth or a new mask)."""
        self.prepareGeometryChange()
        self._proposal = self.inst.is_proposal
        self._set_table()
        self._box, self._planes = overlay_image(self.inst.mask, self._proposal)
        self.setPos(self._box[0], self._box[1])
        self.update()

    def update_box(self, box: Box | None) -> None:
        """Refresh the pixels of ``box`` (image coordinates); None: everything."""
        if box is None or self.inst.mask.box != self._box or self._planes is None \
                or self.inst.is_proposal != self._proposal:
            if box is None:
                self.set_style(self.rgb, self.opacity_, self.selected)
            self.rebuild()
            return
        x0, y0, x1, y1 = self._box
        # one pixel around: an outline pixel depends on its neighbours
        top, bottom = max(y0, box[1] - 1), min(y1, box[3] + 1)
        left, right = _byte_span(self._box, max(x0, box[0] - 1), min(x1, box[2] + 1))
        if right <= left or bottom <= top:
            return
        _write_planes(self._planes, self.inst.mask, self._proposal, self._box, (left, top, right, bottom))
        self.update(QRectF(left - x0, top - y0, right - left, bottom - top))

    def set_style(self, rgb: tuple[int, int, int], opacity: float, selected: bool) -> None:
        self.rgb, self.opacity_, self.selected = rgb, opacity, selected
        self._set_table()
        self.setZValue(3 if selected else 1)
        self.update()

    # ---------------------------------------------------------------- QGraphicsItem
    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self._box[2] - self._box[0], self._box[3] - self._box[1])

    def paint(self, painter: QPainter, option, widget=None) -> None:
        planes = self._planes
        if planes is None:
            return
        exposed = option.exposedRect.intersected(self.boundingRect())
        if exposed.isEmpty():
            return
        _, h, nbytes = planes.shape
        w = self._box[2] - self._box[0]
        r0 = max(0, int(exposed.top()) - MARGIN)
        r1 = min(h, math.ceil(exposed.bottom()) + MARGIN)
        c0 = max(0, int(exposed.left()) - MARGIN) // 8
        c1 = min(nbytes, -(-(math.ceil(exposed.right()) + MARGIN) // 8))
        if r1 <= r0 or c1 <= c0:
            return
        bits = np.unpackbits(planes[:, r0:r1, c0:c1], axis=2, bitorder="little")
        # the planes do not overlap: or-ing each one's index gives the 4-colour indices
        indices = _indices(self._proposal)
        idx = bits[0] * np.uint8(indices[0])
        for plane, k in zip(bits[1:], indices[1:]):
            idx |= plane * np.uint8(k)
        img = QImage(idx.data, min(w, 8 * c1) - 8 * c0, r1 - r0, idx.strides[0], QImage.Format.Format_Indexed8)
        img.setColorTable(self._table)
        painter.drawImage(QPointF(8 * c0, r0), img)  # ``idx`` outlives the draw: the image only references it
