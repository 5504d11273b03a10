"""Weak-click markers: a small + (positive, class colour) or − (clean surface, white)
per click of the current image, redrawn when the session's clicks change."""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem

SIZE = 7.0  # half-length of a marker's bar, in screen pixels


class WeakClickMarkers(QGraphicsItem):
    def __init__(self, session):
        super().__init__()
        self.session = session
        self.setZValue(8)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresParentOpacity, True)
        session.weak_clicks_changed.connect(self.refresh)
        session.palette_changed.connect(self.refresh)
        self._clicks: list[tuple[float, float, bool, tuple]] = []
        self._rect = QRectF()

    def refresh(self) -> None:
        self.prepareGeometryChange()
        out = []
        for d in self.session.weak_clicks.values():
            try:
                rgb = self.session.palette.color_of(d["class_name"])
            except KeyError:
                rgb = (255, 255, 0)
            out.append((float(d["x"]), float(d["y"]), bool(d["positive"]), rgb))
        self._clicks = out
        if out:
            xs, ys = [c[0] for c in out], [c[1] for c in out]
            self._rect = QRectF(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)).adjusted(-200, -200, 200, 200)
        else:
            self._rect = QRectF()
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, option, widget=None) -> None:
        scale = painter.worldTransform().m11() or 1.0
        s = SIZE / scale
        for x, y, pos, rgb in self._clicks:
            for width, colour in ((4, QColor(0, 0, 0)), (2, QColor(*rgb) if pos else QColor(255, 255, 255))):
                pen = QPen(colour, width)
                pen.setCosmetic(True)
                painter.setPen(pen)
                painter.drawLine(QPointF(x - s, y), QPointF(x + s, y))
                if pos:
                    painter.drawLine(QPointF(x, y - s), QPointF(x, y + s))
