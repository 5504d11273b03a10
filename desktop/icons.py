"""Tool-bar icons, drawn with QPainter at any size (no image files to ship or theme).

Each icon is a simple glyph of what the tool does: the ink follows the application's
text colour (dark on a light tool bar, light on a dark one) and the accent is amber;
``icon(name)`` caches them.
"""
from __future__ import annotations

from functools import lru_cache

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap, QPolygonF

SIZE = 48
INK = QColor(60, 60, 60)
ACCENT = QColor(230, 140, 0)


def _pen(width: float = 3.0, colour: QColor | None = None) -> QPen:
    pen = QPen(INK if colour is None else colour, width)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    return pen


def _select(p: QPainter) -> None:
    arrow = QPolygonF([QPointF(14, 8), QPointF(14, 38), QPointF(22, 30), QPointF(28, 42), QPointF(33, 40),
                       QPointF(27, 28), QPointF(38, 28)])
    p.setPen(_pen(2.5))
    p.setBrush(QColor(INK.red(), INK.green(), INK.blue(), 60))
    p.drawPolygon(arrow)


def _polygon(p: QPainter) -> None:
    pts = [QPointF(10, 30), QPointF(20, 10), QPointF(38, 14), QPointF(40, 34), QPointF(22, 40)]
    p.setPen(_pen(2.5))
    p.drawPolygon(QPolygonF(pts))
    p.setBrush(ACCENT)
    p.setPen(Qt.PenStyle.NoPen)
    for q in pts:
        p.drawEllipse(q, 3.5, 3.5)


def _brush(p: QPainter) -> None:
    path = QPainterPath(QPointF(8, 34))
    path.cubicTo(QPointF(16, 12), QPointF(28, 44), QPointF(40, 16))
    p.setPen(_pen(8.0, ACCENT))
    p.drawPath(path)


def _eraser(p: QPainter) -> None:
    p.save()
    p.translate(24, 24)
    p.rotate(-35)
    p.setPen(_pen(2.5))
    p.setBrush(QColor(INK.red(), INK.green(), INK.blue(), 60))
    p.drawRoundedRect(QRectF(-14, -8, 28, 16), 3, 3)
    p.drawLine(QPointF(-4, -8), QPointF(-4, 8))
    p.restore()


def _smartbrush(p: QPainter) -> None:
    _brush(p)
    p.setPen(_pen(3.0))
    p.drawLine(QPointF(34, 36), QPointF(44, 36))
    p.drawLine(QPointF(39, 31), QPointF(39, 41))
    p.drawLine(QPointF(4, 10), QPointF(14, 10))


def _reroute(p: QPainter) -> None:
    p.setPen(_pen(2.0, QColor(INK.red(), INK.green(), INK.blue(), 150)))
    p.drawArc(QRectF(8, 14, 32, 32), 0, 180 * 16)
    path = QPainterPath(QPointF(10, 30))
    path.cubicTo(QPointF(14, 4), QPointF(34, 4), QPointF(38, 30))
    p.setPen(_pen(3.0, ACCENT))
    p.drawPath(path)


def _prompt(p: QPainter) -> None:
    p.setPen(_pen(2.5))
    p.drawEllipse(QPointF(24, 24), 13, 13)
    p.drawLine(QPointF(24, 4), QPointF(24, 14))
    p.drawLine(QPointF(24, 34), QPointF(24, 44))
    p.drawLine(QPointF(4, 24), QPointF(14, 24))
    p.drawLine(QPointF(34, 24), QPointF(44, 24))
    p.setBrush(ACCENT)
    p.setPen(Qt.PenStyle.NoPen)
    p.drawEllipse(QPointF(24, 24), 4, 4)


def _weak_click(p: QPainter) -> None:
    p.setPen(_pen(4.0, ACCENT))
    p.drawLine(QPointF(12, 18), QPointF(24, 18))
    p.drawLine(QPointF(18, 12), QPointF(18, 24))
    p.setPen(_pen(4.0))
    p.drawLine(QPointF(26, 34), QPointF(38, 34))


def _undo(p: QPainter, mirror: bool = False) -> None:
    if mirror:
        p.translate(SIZE, 0)
        p.scale(-1, 1)
    path = QPainterPath(QPointF(16, 20))
    path.cubicTo(QPointF(30, 8), QPointF(44, 20), QPointF(38, 34))
    p.setPen(_pen(3.0))
    p.drawPath(path)
    p.setBrush(QColor(INK))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawPolygon(QPolygonF([QPointF(8, 22), QPointF(20, 12), QPointF(20, 30)]))


def _fit(p: QPainter) -> None:
    p.setPen(_pen(3.0))
    for sx, sy in ((1, 1), (-1, 1), (1, -1), (-1, -1)):
        cx, cy = 24 - sx * 14, 24 - sy * 14
        p.drawLine(QPointF(cx, cy), QPointF(cx + sx * 8, cy))
        p.drawLine(QPointF(cx, cy), QPointF(cx, cy + sy * 8))
    p.drawRect(QRectF(18, 18, 12, 12))


def _help(p: QPainter) -> None:
    p.setPen(_pen(2.5))
    p.drawEllipse(QPointF(24, 24), 17, 17)
    font = p.font()
    font.setPixelSize(22)
    font.setBold(True)
    p.setFont(font)
    p.drawText(QRectF(0, 0, SIZE, SIZE), Qt.AlignmentFlag.AlignCenter, "?")


GLYPHS = {
    "select": _select, "polygon": _polygon, "brush": _brush, "eraser": _eraser, "smartbrush": _smartbrush,
    "reroute": _reroute, "prompt": _prompt, "weak_click": _weak_click, "undo": _undo,
    "redo": lambda p: _undo(p, mirror=True), "fit": _fit, "help": _help,
}


@lru_cache(maxsize=None)
def icon(name: str) -> QIcon:
    """The icon of a tool or action (an empty icon for a name without a glyph)."""
    draw = GLYPHS.get(name)
    if draw is None:
        return QIcon()
    global INK
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance()
    if app is not None:
        INK = app.palette().windowText().color()
    pm = QPixmap(SIZE, SIZE)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    draw(p)
    p.end()
    return QIcon(pm)


def tooltip(text: str, keys: str) -> str:
    """A tool tip that teaches the key: ``"Brush (B)"``."""
    return f"{text} ({keys})" if keys else text

