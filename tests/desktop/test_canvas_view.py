"""Viewing aids of the canvas in the real window: brightness / contrast / gamma change only
what is shown (per image, reset by a key), never the pixels that models and exports read;
the overview navigator frames the visible part of a zoomed-in photo and moves the view."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget

from desktop.canvas.display import NEUTRAL, DisplayAdjust


def _grab(widget) -> np.ndarray:
    """(h, w, 3) uint8 RGB of what ``widget`` shows."""
    img = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    w, h = img.width(), img.height()
    bgra = np.frombuffer(img.constBits(), np.uint8).reshape(h, img.bytesPerLine())[:, : 4 * w].reshape(h, w, 4)
    return bgra[..., 2::-1].copy()


def _sha1(path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _wait_pixels(qtbot, win, image_id):
    qtbot.waitUntil(lambda: win.session.image.id == image_id and win.image_ready
                    and win.current_rgb is not None, timeout=20000)


# ------------------------------------------------------------------ the table itself
def test_display_table_steps_clamps_and_comes_back_to_neutral():
    assert NEUTRAL.is_neutral and NEUTRAL.lut() is None
    x = np.arange(256)
    brighter = NEUTRAL.stepped("brightness", 2)
    assert brighter.brightness == pytest.approx(0.10)
    lut = brighter.lut()
    assert lut.dtype == np.uint8 and lut.shape == (256,)
    assert np.all(np.abs(lut[:200] - (x[:200] + 25.5)) <= 0.51) and lut[255] == 255
    # up then down is neutral again (no table left behind by rounding drift)
    for what in ("brightness", "contrast", "gamma"):
        assert NEUTRAL.stepped(what, 3).stepped(what, -3).is_neutral, what
    # contrast spreads about mid-grey; gamma > 1 lifts shadows and keeps black and white
    more = NEUTRAL.stepped("contrast", 2).lut()
    assert more[64] < 64 and more[192] > 192 and abs(int(more[128]) - 128) <= 1
    lift = NEUTRAL.stepped("gamma", 3).lut()
    assert lift[32] > 45 and lift[0] == 0 and lift[255] == 255
    assert np.all(np.diff(lift.astype(int)) >= 0)
    # far too many presses stop at the limits instead of going flat or negative
    assert NEUTRAL.stepped("contrast", -100).contrast == pytest.approx(0.2)
    assert NEUTRAL.stepped("brightness", 100).brightness == pytest.approx(0.75)
    with pytest.raises(ValueError):
        NEUTRAL.stepped("hue", 1)


# ------------------------------------------------------------------ display adjustment in the window
def test_display_adjustment_changes_what_is_shown_not_the_pixels(qtbot, window, project):
    win, c = window, window.canvas
    vp = c.viewport()
    rgb = win.current_rgb
    stored = rgb.copy()
    path = project / win.session.image.path
    sha = _sha1(path)
    before = _grab(vp)
    for _ in range(3):
        win.actions_by_name["view.brighter"].trigger()
    win.actions_by_name["view.more_contrast"].trigger()
    win.actions_by_name["view.gamma_up"].trigger()
    qtbot.wait(20)
    after = _grab(vp)
    adjust = c.display
    assert adjust == DisplayAdjust(0.15, 1.15, 1.15)
    lut = adjust.lut()
    # at zoom 1 each view pixel is one image pixel: the shown value is the table's
    assert np.abs(after.astype(int) - lut[before].astype(int)).max() <= 1
    assert after.mean() > before.mean() + 20
    # the status bar says what the display is
    text = win.statusBar().currentMessage()
    assert "brightness +15 %" in text and "contrast 115 %" in text and "gamma 1.15" in text
    # what tools, models and exports read is untouched: the same array, the same values, the file
    assert win.current_rgb is rgb and np.array_equal(rgb, stored)
    assert win.ctx.rgb_and_key()[0] is rgb
    from annotation.images import load_image

    assert np.array_equal(load_image(str(path)).rgb, rgb)
    assert _sha1(path) == sha
    # the overview map is shown through the same table
    nav = win.findChild(QWidget, "navigator")
    assert nav.isVisible()
    thumb = nav._thumb
    assert np.array_equal(nav._shown, lut[thumb])


def test_display_adjustment_zoomed_out_looks_up_the_screen_pixels_only(qtbot, window):
    """Zoomed out, the table is applied to the scaled screen pixels (fewer than the
    source's): the result is the plain drawing looked up, and the canvas beside the photo
    is not touched."""
    c = window.canvas
    vp = c.viewport()
    c.zoom_at(0.5, vp.rect().center())
    qtbot.wait(20)
    before = _grab(vp)
    c.set_display(DisplayAdjust(0.3, 1.2, 1.4))
    qtbot.wait(20)
    after = _grab(vp)
    lut = c.display.lut()
    photo = c.mapFromScene(c.image_item.boundingRect()).boundingRect()
    inside = np.zeros(after.shape[:2], bool)
    inside[photo.top() + 1: photo.bottom(), photo.left() + 1: photo.right()] = True
    assert inside.sum() > 0.9 * (1280 * 1024 / 4)
    assert np.abs(after[inside].astype(int) - lut[before[inside]].astype(int)).max() <= 1
    outside = np.ones(after.shape[:2], bool)
    outside[photo.top() - 1: photo.bottom() + 2, photo.left() - 1: photo.right() + 2] = False
    assert outside.sum() > 1000 and lut[0] > 40
    assert np.array_equal(after[outside], before[outside])  # the black canvas stays black


def test_display_setting_is_per_image_and_reset_by_its_key(qtbot, window):
    win, c = window, window.canvas
    vp = c.viewport()
    first = win.session.image.id
    for _ in range(4):
        win.actions_by_name["view.brighter"].trigger()
    bright_first = c.display
    assert not bright_first.is_neutral
    win.actions_by_name["image.next"].trigger()
    second = win.session.image.id
    assert second != first
    _wait_pixels(qtbot, win, second)
    qtbot.wait(20)
    assert c.display.is_neutral  # a new image starts as stored
    plain = _grab(vp)
    assert np.array_equal(plain, _grab(vp))
    win.actions_by_name["view.darker"].trigger()
    qtbot.wait(20)
    darker = _grab(vp)
    assert darker.mean() < plain.mean() - 5
    win.activateWindow()
    qtbot.keyClick(c, Qt.Key.Key_0, Qt.KeyboardModifier.AltModifier)  # view.reset_display
    qtbot.wait(20)
    assert c.display.is_neutral
    assert np.array_equal(_grab(vp), plain)
    # the first image comes back as it was left
    win.actions_by_name["image.previous"].trigger()
    _wait_pixels(qtbot, win, first)
    qtbot.wait(20)
    assert c.display == bright_first
    shown = _grab(vp)
    win.actions_by_name["view.reset_display"].trigger()
    qtbot.wait(20)
    assert shown.mean() > _grab(vp).mean() + 10


def test_proposals_read_the_stored_pixels_not_the_display(qtbot, awindow):
    from assist_fixtures import propose_here

    win = awindow

    def footprint(props):
        return sorted((p.mask.area, p.mask.bbox) for p in props)

    plain = footprint(propose_here(qtbot, win))
    assert plain
    for _ in range(6):
        win.actions_by_name["view.brighter"].trigger()
    # the test model says "glass" where the mean of r, g, b is above 0.7: had the display
    # reached the model, a brighter picture would have given much more glass
    rgb = win.current_rgb
    lut = win.canvas.display.lut()
    assert (lut[rgb].mean(2) > 0.7 * 255).mean() > 1.5 * (rgb.mean(2) > 0.7 * 255).mean()
    assert footprint(propose_here(qtbot, win)) == plain


# ------------------------------------------------------------------ the overview navigator
def _centre(c) -> QPointF:
    return c.mapToScene(c.viewport().rect().center())


def test_navigator_frames_the_view_follows_it_and_moves_it(qtbot, window):
    win, c = window, window.canvas
    vp = c.viewport()
    nav = win.findChild(QWidget, "navigator")
    assert nav is not None and nav.parent() is c
    W, H = nav.image_size
    assert (W, H) == (1280, 1024)
    c.fit()
    qtbot.wait(20)
    assert not nav.isVisible()  # the whole photo is on screen
    c.zoom_at(3.0, vp.rect().center())
    qtbot.wait(20)
    assert nav.isVisible()

    def frames_the_view():
        seen = c.mapToScene(vp.rect()).boundingRect()
        r = nav.visible_rect
        for a, b in ((r.left(), seen.left()), (r.top(), seen.top()), (r.right(), seen.right()),
                     (r.bottom(), seen.bottom())):
            assert a == pytest.approx(b, abs=1.0)

    frames_the_view()
    # the frame drawn on the map is where the visible rectangle is
    from desktop.canvas.minimap import FRAME_COLOR

    shot = _grab(nav).astype(int)
    hit = np.abs(shot - np.array([FRAME_COLOR.red(), FRAME_COLOR.green(), FRAME_COLOR.blue()])).sum(2) < 40
    ys, xs = np.nonzero(hit)
    assert len(xs) > 20
    fr = nav.frame_rect()
    assert abs(xs.min() - fr.left()) <= 2 and abs(xs.max() - fr.right()) <= 2
    assert abs(ys.min() - fr.top()) <= 2 and abs(ys.max() - fr.bottom()) <= 2
    # it sits in the canvas's corner
    assert nav.geometry().right() < vp.geometry().right() and nav.geometry().bottom() < vp.geometry().bottom()
    assert nav.geometry().right() > vp.geometry().right() - 30
    # a click centres the view there (within one map pixel)
    tol = W / nav.width() + 1.5
    target = QPointF(300, 700)
    qtbot.mouseClick(nav, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     nav.map_from_image(target).toPoint())
    got = _centre(c)
    assert abs(got.x() - 300) <= tol and abs(got.y() - 700) <= tol
    frames_the_view()
    # a drag moves it along
    a, b = nav.map_from_image(QPointF(1000, 300)).toPoint(), nav.map_from_image(QPointF(900, 400)).toPoint()
    qtbot.mousePress(nav, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    qtbot.mouseMove(nav, b)
    qtbot.mouseRelease(nav, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
    got = _centre(c)
    assert abs(got.x() - 900) <= tol and abs(got.y() - 400) <= tol
    # panning the canvas (middle drag) moves the frame
    start = vp.rect().center()
    was = _centre(c)
    qtbot.mousePress(vp, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, start)
    qtbot.mouseMove(vp, start + QPoint(-60, -40))
    qtbot.mouseRelease(vp, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, start + QPoint(-60, -40))
    now = _centre(c)
    assert now.x() - was.x() == pytest.approx(60 / c.zoom, abs=1.0)
    assert now.y() - was.y() == pytest.approx(40 / c.zoom, abs=1.0)
    frames_the_view()
    # a smaller window: the map stays in the corner and still frames the view
    win.resize(1000, 700)
    qtbot.waitUntil(lambda: vp.width() < 900, timeout=5000)
    qtbot.wait(20)
    assert nav.isVisible()
    assert vp.geometry().right() - 30 < nav.geometry().right() < vp.geometry().right()
    assert nav.width() <= 0.3 * vp.width() + 1
    frames_the_view()
    win.actions_by_name["view.fit"].trigger()
    qtbot.wait(20)
    assert not nav.isVisible()


def test_display_and_navigator_work_in_a_read_only_project(qtbot, project, monkeypatch):
    import stat

    import annotation.store as store_module
    from desktop.main_window import MainWindow

    for p in [project, *project.iterdir()]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    # tests run as root, which may write anywhere: the store asks the mode bits, as for a user
    monkeypatch.setattr(store_module, "_can_write", lambda p: bool(p.stat().st_mode & stat.S_IWUSR))
    try:
        win = MainWindow(str(project))
        qtbot.addWidget(win)
        win.resize(1400, 900)
        win.show()
        qtbot.waitUntil(lambda: win.image_ready, timeout=20000)
        assert win.ctx.read_only
        names = ("view.brighter", "view.darker", "view.more_contrast", "view.less_contrast", "view.gamma_up",
                 "view.gamma_down", "view.reset_display")
        assert all(win.actions_by_name[n].isEnabled() for n in names)
        win.actions_by_name["view.gamma_up"].trigger()
        assert win.canvas.display.gamma > 1.0
        win.actions_by_name["view.reset_display"].trigger()
        assert win.canvas.display.is_neutral
        c = win.canvas
        c.zoom_at(4.0, c.viewport().rect().center())
        nav = win.findChild(QWidget, "navigator")
        qtbot.waitUntil(nav.isVisible, timeout=2000)
        qtbot.mouseClick(nav, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         nav.map_from_image(QPointF(200, 200)).toPoint())
        got = _centre(c)
        assert abs(got.x() - 200) <= 10 and abs(got.y() - 200) <= 10
        win.close()
    finally:
        for p in [project, *project.iterdir()]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
