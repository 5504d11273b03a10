"""Drive the canvas with real mouse and key events, in image coordinates."""
from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QPoint, QPointF, Qt
from pytestqt.qtbot import QtBot

# where the desktop tests find their data (imported by name: "conftest" is ambiguous
# between tests/ and tests/desktop/ once both are loaded)
REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SPECULA_DATA", REPO / ".." / "shared" / "data")).resolve()
GDD = DATA / "glass-gdd"
IMAGES = ["1000.jpg", "1003.jpg"]


def view_pos(canvas, x: float, y: float) -> QPoint:
    return canvas.mapFromScene(QPointF(x, y))


def scene_point(canvas, x: float, y: float) -> tuple[float, float]:
    """Where the canvas will see a click aimed at (x, y)."""
    p = canvas.mapToScene(view_pos(canvas, x, y))
    return p.x(), p.y()


def click(qtbot: QtBot, canvas, x, y, mods=Qt.KeyboardModifier.NoModifier):
    qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, mods, view_pos(canvas, x, y))


def drag(qtbot: QtBot, canvas, points, mods=Qt.KeyboardModifier.NoModifier):
    vp = canvas.viewport()
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, mods, view_pos(canvas, *points[0]))
    for p in points[1:]:
        qtbot.mouseMove(vp, view_pos(canvas, *p))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, mods, view_pos(canvas, *points[-1]))


def densify(points, step=3.0):
    import numpy as np

    out = []
    for (ax, ay), (bx, by) in zip(points[:-1], points[1:]):
        n = max(1, int(np.hypot(bx - ax, by - ay) / step))
        for i in range(n):
            t = i / n
            out.append((ax + (bx - ax) * t, ay + (by - ay) * t))
    out.append(points[-1])
    return out


def fresh_instances(project, image_path=None):
    """Instances read back through a new store connection (what a restart would see)."""
    from annotation.store import ProjectStore

    store = ProjectStore.open(project, scan=False)
    try:
        if image_path is None:
            return store.instances()
        rec = store.image_by_path(image_path)
        return store.instances(rec.id)
    finally:
        store.close()
