"""The selection is seen at every zoom: on a 25-megapixel photo fitted to the window, a
selected 290 000-pixel instance changes at least 2 screen pixels all around its outline
(the old 1-image-pixel outline changed about 100 scattered screen pixels in all), and
hovering highlights the instance under the cursor."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPointF

from desktop_helpers import GDD


def _grab(win) -> np.ndarray:
    from PySide6.QtGui import QImage

    img = win.canvas.viewport().grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    w, h = img.width(), img.height()
    return np.frombuffer(img.constBits(), np.uint8).reshape(h, img.bytesPerLine())[:, : 4 * w].reshape(h, w, 4)[..., :3].copy()


@pytest.fixture
def big_project(tmp_path):
    src = GDD / "image" / "1000.jpg"
    if not src.exists():
        pytest.skip(f"GDD images not found under {GDD}")
    proj = tmp_path / "street"
    proj.mkdir()
    photo = cv2.imread(str(src))
    cv2.imwrite(str(proj / "street.jpg"), cv2.resize(photo, (6250, 4000), interpolation=cv2.INTER_CUBIC))
    return proj


def test_selected_instance_is_outlined_at_fit_zoom_on_25_megapixels(qtbot, big_project):
    from annotation.document import Instance
    from annotation.mask import Mask
    from desktop.commands import AddInstanceCommand
    from desktop.main_window import MainWindow

    win = MainWindow(str(big_project))
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitUntil(lambda: win.image_ready, timeout=60000)
    s, c = win.session, win.canvas
    full = np.zeros(s.image_size, np.uint8)
    cv2.ellipse(full, (3000, 2200), (360, 255), 15, 0, 360, 1, -1)  # a car-sized 290 000-pixel blob
    win.undo_stack.push(AddInstanceCommand(s, Instance(s.image.id, "glass", Mask.from_full(full > 0)), "test",
                                           select=False))
    s.select([])
    c.fit()
    qtbot.wait(50)
    assert c.zoom < 0.25  # overview zoom: one screen pixel is more than four image pixels
    before = _grab(win)
    iid = next(iter(s.instances))
    s.select([iid])
    qtbot.wait(50)
    after = _grab(win)
    changed = np.abs(after.astype(int) - before.astype(int)).sum(2) > 30
    contours, _ = cv2.findContours(full, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    pts = contours[0].reshape(-1, 2)[::40]
    assert len(pts) > 40
    thin = []
    for x, y in pts:
        v = c.mapFromScene(QPointF(float(x), float(y)))
        win_ = changed[max(0, v.y() - 3): v.y() + 4, max(0, v.x() - 3): v.x() + 4]
        if np.count_nonzero(win_) < 6:  # a 2-pixel line across a 7 x 7 window changes >= 10
            thin.append((x, y))
    assert not thin, f"{len(thin)} of {len(pts)} outline points have no visible selection around them"
    # hovering another instance highlights it; the selected one keeps its outline
    second = np.zeros(s.image_size, np.uint8)
    cv2.rectangle(second, (1000, 1000), (1800, 1600), 1, -1)
    win.undo_stack.push(AddInstanceCommand(s, Instance(s.image.id, "mirror", Mask.from_full(second > 0)), "test",
                                           select=False))
    from desktop_helpers import view_pos

    qtbot.mouseMove(c.viewport(), view_pos(c, 1400, 1300))
    qtbot.wait(30)
    hovered = next(i for i, inst in s.instances.items() if inst.class_name == "mirror")
    assert c.selection_item.hovered_id == hovered
    win.close()


def test_colour_by_instance_tells_touching_instances_of_one_class_apart(qtbot, window):
    from annotation.document import Instance
    from annotation.mask import rasterize_polygon
    from desktop.commands import AddInstanceCommand

    s, c = window.session, window.canvas
    s.overlap_enabled = False
    for x0 in (300, 400):  # two glass panes sharing an edge
        m = rasterize_polygon([(x0, 300), (x0 + 100, 300), (x0 + 100, 500), (x0, 500)], s.image_size)
        window.undo_stack.push(AddInstanceCommand(s, Instance(s.image.id, "glass", m), "test", select=False))
    a, b = sorted(s.instances)
    assert c.items_by_id[a].rgb == c.items_by_id[b].rgb  # by class: one colour
    window.actions_by_name["view.color_by_instance"].trigger()
    assert c.items_by_id[a].rgb != c.items_by_id[b].rgb
    qtbot.wait(30)
    img = _grab(window)
    pa, pb = c.mapFromScene(QPointF(350, 400)), c.mapFromScene(QPointF(450, 400))
    assert tuple(img[pa.y(), pa.x()]) != tuple(img[pb.y(), pb.x()])  # and on screen
    window.actions_by_name["view.color_by_instance"].trigger()
    assert c.items_by_id[a].rgb == c.items_by_id[b].rgb
