"""Start-up, settings, screenshot and panels."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def test_window_starts_without_torch(project, tmp_path):
    code = (
        "import sys, os\n"
        "from PySide6.QtCore import QSettings, QTimer\n"
        f"QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, {str(tmp_path)!r})\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "import desktop.app\n"
        f"win = desktop.app.create_window({str(project)!r})\n"
        "win.show(); app.processEvents()\n"
        "assert win.findChild(object, 'canvas') is not None\n"
        "print('TORCH' if 'torch' in sys.modules else 'NOTORCH')\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "NOTORCH" in out.stdout


def test_object_names(window):
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QWidget

    for name in ("canvas", "palette", "instances", "images"):
        assert window.findChild(QWidget, name) is not None, name
    for name in ("tool.polygon", "tool.brush", "tool.eraser", "tool.reroute", "tool.select"):
        assert window.findChild(QAction, name) is not None, name


def test_start_page_without_project(qtbot):
    from desktop.main_window import MainWindow

    win = MainWindow(None)
    qtbot.addWidget(win)
    assert win.stack.currentWidget().objectName() == "start"


def test_remembers_last_image(qtbot, window, project):
    from desktop.main_window import MainWindow

    window.actions_by_name["image.next"].trigger()
    qtbot.waitUntil(lambda: window.image_ready, timeout=20000)
    path = window.session.image.path
    window.close()
    win2 = MainWindow(str(project))
    qtbot.addWidget(win2)
    assert win2.session.image.path == path
    win2.close()


def test_images_panel_shows_status_and_counts(qtbot, window):
    from annotation.document import Instance
    from annotation.mask import rasterize_polygon
    from desktop.commands import AddInstanceCommand

    s = window.session
    m = rasterize_polygon([(10, 10), (50, 10), (50, 50)], s.image_size)
    window.canvas.push(AddInstanceCommand(s, Instance(s.image.id, "mirror", m), "draw_polygon"))
    assert any("in progress, 1 instance" in t for t in window.images_panel.texts())
    window.actions_by_name["image.done"].trigger()
    assert any("done" in t for t in window.images_panel.texts())


def test_palette_switch_and_rule_warning(qtbot, window):
    from annotation.document import Instance
    from annotation.mask import rasterize_polygon
    from desktop.commands import AddInstanceCommand

    s = window.session
    s.overlap_enabled = False  # or the policy would clip the violation away
    m = rasterize_polygon([(10, 10), (50, 10), (50, 50)], s.image_size)
    window.canvas.push(AddInstanceCommand(s, Instance(s.image.id, "glass-in-mirror", m), "draw_polygon"))
    assert "glass-in-mirror" in window.palette_panel.warning.text()
    window.choose_palette("inspection")
    assert s.palette.name == "inspection" and s.current_class == "crack"


def test_overlap_policy_clips_new_polygon(qtbot, window):
    from desktop_helpers import click


    c = window.canvas
    window.actions_by_name["tool.polygon"].trigger()
    for p in [(500, 400), (700, 400), (700, 600), (500, 600), (500, 400)]:
        click(qtbot, c, *p)
    mirror = next(iter(window.session.instances.values()))
    window.actions_by_name["class.2"].trigger()  # glass; changes the selection's class too
    window.undo_stack.undo()  # keep the mirror a mirror
    window.session.select([])
    window.session.set_current_class("glass")
    for p in [(600, 500), (800, 500), (800, 700), (600, 700), (600, 500)]:
        click(qtbot, c, *p)
    glass = [i for i in window.session.instances.values() if i.class_name == "glass"][0]
    assert glass.mask.intersection_area(mirror.mask) == 0
    # glass-in-mirror is clipped to the mirror
    window.session.set_current_class("glass-in-mirror")
    for p in [(450, 450), (550, 450), (550, 550), (450, 550), (450, 450)]:
        click(qtbot, c, *p)
    gim = [i for i in window.session.instances.values() if i.class_name == "glass-in-mirror"][0]
    assert gim.mask.subtract(mirror.mask).area == 0 and gim.mask.area > 0


def test_help_overlay_lists_shortcuts(qtbot, window):
    window.actions_by_name["help.show"].trigger()
    assert window.help.isVisible()
    assert "Polygon" in window.help.text() and "Ctrl+Z" in window.help.text()


def test_screenshot_script(tmp_path, project):
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "screenshot.py"), str(out)],
                       capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr
    from PIL import Image

    a = np.asarray(Image.open(out).convert("RGB"))
    assert a.shape[0] > 400 and a.shape[1] > 600
    assert a.std() > 20  # not a blank window
    # the glass overlay (red) is visible somewhere
    assert ((a[..., 0] > 150) & (a[..., 1] < 100) & (a[..., 2] < 100)).sum() > 500


def test_screenshots_script_makes_the_laptop_and_desktop_sets(tmp_path):
    """scripts/screenshots.py: start page, editor with a selection, review, training curves
    and help, at 1280 x 720 and 1920 x 1080 (the README shows two of them)."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "screenshots.py"), str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    from PIL import Image

    for size in ("1280x720", "1920x1080"):
        w, h = map(int, size.split("x"))
        for shot in ("start", "editor", "review", "training", "help"):
            im = Image.open(tmp_path / f"{size}-{shot}.png")
            assert im.size == (w, h), (shot, im.size)  # the window fits the screen it is made for
        a = np.asarray(Image.open(tmp_path / f"{size}-editor.png").convert("RGB"))
        assert a.std() > 20
