"""One graphics item per instance, drawn from its own cropped mask.

The item owns an 8-bit indexed ``QImage`` over the mask's array box (1 byte per
pixel; the colour table carries class colour, opacity and outline). A dab rewrites
only the dab's box of that image in place and repaints only that rectangle; the
image is rebuilt only when the mask's array grows (amortised by the mask's slack).

``overlay_image`` builds that image without a colour table and touches no graphics
item, so a worker thread may build the images of a proposing run in advance (QImage is
usable off the GUI thread, QGraphicsItem is not); ``InstanceItem`` takes one as
``prebuilt`` and only sets its colour table.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QImage, QPainter, qRgba
from PySide6.QtWidgets import QGraphicsItem

from annotation.document import Instance
from annotation.mask import Box, Mask
from desktop.geometry.render import overlay_indices

_ORIGIN = QPointF(0, 0)


def color_table(rgb: tuple[int, int, int], opacity: float, proposal: bool, selected: bool) -> list[int]:
    r, g, b = rgb
    a = int(round(255 * max(0.0, min(1.0, opacity)) * (0.45 if proposal else 1.0)))
    if selected:
        outline = qRgba(255, 255, 255, 255)
    else:
        outline = qRgba(r, g, b, 255)
    emph = qRgba(r, g, b, min(255, a * 2 + 40))
    return [qRgba(0, 0, 0, 0), qRgba(r, g, b, a), outline, emph]


def overlay_image(mask: Mask, proposal: bool) -> tuple[Box, QImage]:
    """The 8-bit indexed image (no colour table yet) over ``mask.box`` (x0, y0, x1, y1),
    and that box. Safe in any thread."""
    box = mask.box
    x0, y0, x1, y1 = box
    w, h = max(0, x1 - x0), max(0, y1 - y0)
    if w == 0 or h == 0:
        return box, QImage()
    img = QImage(w, h, QImage.Format.Format_Indexed8)
    buf = np.frombuffer(img.bits(), np.uint8).reshape(h, img.bytesPerLine())
    buf[:, :w] = overlay_indices(mask, box, proposal)
    return box, img


class InstanceItem(QGraphicsItem):
    def __init__(self, inst: Instance, rgb: tuple[int, int, int], opacity: float,
                 prebuilt: Optional[tuple[Box, QImage]] = None):
        """``prebuilt``: ``overlay_image(inst.mask, inst.is_proposal)``, made beforehand
        (in a worker); used when the mask's box still matches, else the image is built here."""
        super().__init__()
        self.inst = inst
        self.rgb = rgb
        self.opacity_ = opacity
        self.selected = False
        self._box: Box = (0, 0, 0, 0)
        self._img = QImage()
        self.setZValue(1)
        if prebuilt is not None and prebuilt[0] == inst.mask.box and not prebuilt[1].isNull():
            self._box, self._img = prebuilt
            self.setPos(self._box[0], self._box[1])
            self._img.setColorTable(self._table())
        else:
            self.rebuild()

    # ---------------------------------------------------------------- image
    def _table(self) -> list[int]:
        return color_table(self.rgb, self.opacity_, self.inst.is_proposal, self.selected)

    def rebuild(self) -> None:
        """Make the image over the mask's whole array box (after growth or a new mask)."""
        self.prepareGeometryChange()
        m = self.inst.mask
        self._box = m.box
        x0, y0, x1, y1 = self._box
        w, h = max(0, x1 - x0), max(0, y1 - y0)
        self.setPos(x0, y0)
        if w == 0 or h == 0:
            self._img = QImage()
            return
        self._img = QImage(w, h, QImage.Format.Format_Indexed8)
        self._img.setColorTable(self._table())
        self._write(self._box)
        self.update()

    def _write(self, box: Box) -> None:
        x0, y0, x1, y1 = box
        bx0, by0 = self._box[0], self._box[1]
        bpl = self._img.bytesPerLine()
        buf = np.frombuffer(self._img.bits(), np.uint8).reshape(self._img.height(), bpl)
        buf[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0] = overlay_indices(self.inst.mask, box, self.inst.is_proposal)

    def update_box(self, box: Box | None) -> None:
        """Refresh the pixels of ``box`` (image coordinates); None: everything."""
        if box is None or self.inst.mask.box != self._box or self._img.isNull():
            if box is None:
                self.set_style(self.rgb, self.opacity_, self.selected)
            self.rebuild()
            return
        x0, y0, x1, y1 = self._box
        b = (max(x0, box[0] - 1), max(y0, box[1] - 1), min(x1, box[2] + 1), min(y1, box[3] + 1))
        if b[2] <= b[0] or b[3] <= b[1]:
            return
        self._write(b)
        self.update(QRectF(b[0] - x0, b[1] - y0, b[2] - b[0], b[3] - b[1]))

    def set_style(self, rgb: tuple[int, int, int], opacity: float, selected: bool) -> None:
        self.rgb, self.opacity_, self.selected = rgb, opacity, selected
        if not self._img.isNull():
            self._img.setColorTable(self._table())
        self.setZValue(3 if selected else 1)
        self.update()

    # ---------------------------------------------------------------- QGraphicsItem
    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self._box[2] - self._box[0], self._box[3] - self._box[1])

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if not self._img.isNull():
            painter.drawImage(_ORIGIN, self._img)
