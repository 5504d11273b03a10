"""A small line plot drawn with QPainter: training loss and validation curves against
the epoch (no plotting library in the bundle)."""
from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

COLOURS = [QColor(90, 170, 255), QColor(255, 150, 60), QColor(120, 220, 120), QColor(230, 90, 200)]


class CurvesWidget(QWidget):
    """``add(name, x, y)`` appends a point to the series ``name``; each series gets its own
    vertical scale (min..max) so that a loss and an IoU can share the plot."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("training.curves")
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def clear(self) -> None:
        self.series.clear()
        self.update()

    def add(self, name: str, x: float, y: float) -> None:
        if y is None or not math.isfinite(float(y)):
            return
        self.series.setdefault(name, []).append((float(x), float(y)))
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(30, 30, 30))
        area = QRectF(self.rect()).adjusted(8, 20, -8, -8)
        p.setPen(QPen(QColor(90, 90, 90), 1))
        p.drawRect(area)
        if not self.series:
            p.setPen(QColor(160, 160, 160))
            p.drawText(area, Qt.AlignmentFlag.AlignCenter, "loss and validation appear here")
            return
        xs = [x for pts in self.series.values() for x, _ in pts]
        x0, x1 = min(xs), max(xs)
        x1 = x0 + 1 if x1 <= x0 else x1
        legend_x = 8.0
        for k, (name, pts) in enumerate(self.series.items()):
            colour = COLOURS[k % len(COLOURS)]
            ys = [y for _, y in pts]
            y0, y1 = min(ys), max(ys)
            if y1 - y0 < 1e-9:
                y0, y1 = y0 - 0.5, y1 + 0.5

            def at(x: float, y: float) -> QPointF:
                return QPointF(area.left() + (x - x0) / (x1 - x0) * area.width(),
                               area.bottom() - (y - y0) / (y1 - y0) * area.height())

            path = QPainterPath(at(*pts[0]))
            for x, y in pts[1:]:
                path.lineTo(at(x, y))
            p.setPen(QPen(colour, 2))
            p.drawPath(path)
            for x, y in pts:
                p.drawEllipse(at(x, y), 2, 2)
            label = f"{name} {pts[-1][1]:.3g}"
            p.drawText(QPointF(legend_x, 14), label)
            legend_x += p.fontMetrics().horizontalAdvance(label) + 14
