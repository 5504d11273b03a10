"""Projects in the real window: opening one after another without a restart, read-only
projects, closing right after an edit, an action that cannot be saved, scanning a large
folder in the background, and the images panel updating one row per edit."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from annotation.document import ImageStatus, Instance, InstanceState
from annotation.mask import rasterize_polygon
from desktop_helpers import GDD, IMAGES, REPO
from desktop_helpers import click, drag, fresh_instances


def _square(s, x0=100, y0=100, size=80, cls="mirror"):
    m = rasterize_polygon([(x0, y0), (x0 + size, y0), (x0 + size, y0 + size), (x0, y0 + size)], s.image_size)
    return Instance(s.image.id, cls, m)


def _project(tmp_path: Path, name: str, images=IMAGES) -> Path:
    if not (GDD / "image" / images[0]).exists():
        pytest.skip(f"GDD images not found under {GDD} (set SPECULA_DATA)")
    proj = tmp_path / name
    proj.mkdir()
    for n in images:
        shutil.copy(GDD / "image" / n, proj / n)
    return proj


def _open(qtbot, win, folder) -> None:
    assert win.open_project(str(folder))
    qtbot.waitUntil(lambda: win.image_ready and not win.editor.scan.busy, timeout=20000)


def test_open_a_then_b_then_a_without_restart(qtbot, tmp_path):
    from desktop.commands import AddInstanceCommand
    from desktop.main_window import MainWindow

    a, b = _project(tmp_path, "a", IMAGES[:1]), _project(tmp_path, "b", IMAGES[1:])
    win = MainWindow(None)
    qtbot.addWidget(win)
    win.show()
    _open(qtbot, win, a)
    s = win.session
    win.canvas.push(AddInstanceCommand(s, _square(s), "draw_polygon"))
    a_ctx, a_canvas = win.ctx, win.canvas
    _open(qtbot, win, b)  # File › Open folder… with b chosen
    assert a_ctx.closed and win.ctx is not a_ctx and win.canvas is not a_canvas
    assert win.store.root == b.resolve() and win.session.image.path == IMAGES[1]
    assert win.session.instances == {} and win.undo_stack.count() == 0
    assert win.images_panel.texts() and all(IMAGES[1] in t for t in win.images_panel.texts())
    # one set of docks and menus: the first project's were taken out
    titles = [a.text() for a in win.menuBar().actions()]
    assert titles.count("&Edit") == 1 and titles[0] == "&File" and titles[-1] == "&Help"
    assert len([d for d in win.findChildren(type(win.editor.docks[0])) if d.objectName() == "dock.images"]) == 1
    _open(qtbot, win, a)
    assert win.store.root == a.resolve()
    assert [i.class_name for i in win.session.instances.values()] == ["mirror"]  # a's label is back
    # File › Close project goes back to the start page; opening again works
    win.actions_by_name["file.close"].trigger()
    assert win.stack.currentWidget().objectName() == "start" and win.ctx is None
    assert str(a.resolve()) in [win.start_page.recent.item(i).text() for i in range(win.start_page.recent.count())]
    _open(qtbot, win, b)
    win.close()


def test_a_project_that_cannot_open_keeps_the_open_one(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from desktop.main_window import MainWindow

    a = _project(tmp_path, "a", IMAGES[:1])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "specula.db").write_bytes(b"not a database at all" * 100)
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *args: shown.append(args[2]))
    win = MainWindow(None)
    qtbot.addWidget(win)
    _open(qtbot, win, a)
    ctx = win.ctx
    assert not win.open_project(str(bad))
    assert win.ctx is ctx and not ctx.closed
    assert shown and "damaged" in shown[0] and "changed nothing" in shown[0] and "move" not in shown[0]
    win.close()


def test_read_only_project_opens_for_viewing_and_refuses_edits(qtbot, tmp_path, monkeypatch):
    import annotation.store as store_module
    from annotation.store import ProjectStore
    from desktop.main_window import MainWindow

    proj = _project(tmp_path, "ro")
    with ProjectStore.open(proj) as store:
        rec = store.image_by_path(IMAGES[0])
        m = rasterize_polygon([(100, 100), (300, 100), (300, 300)], rec.size)
        store.add_instances([Instance(rec.id, "glass", m), Instance(rec.id, "glass", m.copy(), InstanceState.PROPOSED,
                                                                 "m@1", 0.9)])
    for p in [proj, *proj.iterdir()]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    # tests run as root, which may write anywhere: the store asks the mode bits, as for a user
    monkeypatch.setattr(store_module, "_can_write", lambda p: bool(p.stat().st_mode & stat.S_IWUSR))
    before = {p.name: p.read_bytes() for p in proj.iterdir()}
    try:
        win = MainWindow(str(proj))
        qtbot.addWidget(win)
        win.show()
        qtbot.waitUntil(lambda: win.image_ready, timeout=20000)
        banner = win.findChild(type(win.editor.banner), "banner.read_only")
        assert banner.isVisible() and "read-only" in banner.text().lower() and "copy" in banner.text()
        assert "read-only" in win.windowTitle()
        s = win.session
        assert len(s.instances) == 2  # the labels are shown
        for name in ("tool.brush", "tool.polygon", "mask.delete", "review.accept", "action.propose_image",
                     "image.done", "edit.undo"):
            assert not win.actions_by_name[name].isEnabled(), name
        assert win.actions_by_name["image.next"].isEnabled() and win.actions_by_name["tool.select"].isEnabled()
        # a tool chosen anyway (as a script could) is refused at the first press, with the reason
        win.editor.set_tool("brush")
        msgs = []
        win.canvas.status_message.connect(msgs.append)
        drag(qtbot, win.canvas, [(500, 500), (520, 520)])
        assert msgs and "Read-only" in msgs[-1]
        # a command pushed anyway is refused by the session and never enters the history
        from desktop.commands import AddInstanceCommand

        win.canvas.push(AddInstanceCommand(s, _square(s), "draw_polygon"))
        assert win.undo_stack.count() == 0 and len(s.instances) == 2
        win.actions_by_name["image.next"].trigger()
        qtbot.waitUntil(lambda: win.image_ready and s.image.path == IMAGES[1], timeout=20000)
        win.close()
    finally:
        for p in [proj, *proj.iterdir()]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    after = {p.name: p.read_bytes() for p in proj.iterdir()}
    assert after == before  # not a byte changed


def test_close_right_after_an_edit_prints_no_traceback(tmp_path):
    proj = _project(tmp_path, "p")
    code = textwrap.dedent(f"""
        import sys
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, {str(tmp_path / 'qs')!r})
        app = QApplication([])
        from annotation.document import Instance
        from annotation.mask import rasterize_polygon
        from desktop.commands import AddInstanceCommand
        from desktop.main_window import MainWindow
        win = MainWindow({str(proj)!r})
        win.show()
        while not win.image_ready:
            app.processEvents()
        s = win.session
        m = rasterize_polygon([(10, 10), (90, 10), (90, 90)], s.image_size)
        win.canvas.push(AddInstanceCommand(s, Instance(s.image.id, "mirror", m), "draw_polygon"))
        s.select([])
        win.actions_by_name["image.done"].trigger()
        win.close()  # the same event-loop turn as the edits
        for _ in range(50):
            app.processEvents()
        print("closed")
    """)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and "closed" in out.stdout, out.stderr
    assert "Traceback" not in out.stderr and "Error" not in out.stderr, out.stderr
    got = fresh_instances(proj, IMAGES[0])
    assert [i.class_name for i in got] == ["mirror"]


def test_an_action_that_cannot_be_saved_leaves_nothing_half_done(qtbot, window, monkeypatch):
    """The mask change and its log row are one transaction: when the log row cannot be
    written, the mask change is not in the store either, the screen shows what the store
    holds, the user is told, and the action waits as the next Redo: once the cause is
    gone, Redo saves it."""
    from annotation.store import StoreError
    from desktop.commands import AddInstanceCommand

    s, store = window.session, window.store
    window.canvas.push(AddInstanceCommand(s, _square(s), "draw_polygon"))
    iid = s.selection[0]
    before = s.instances[iid].mask.copy()
    n_log = len(store.interactions())
    real_log = store.log

    def full_disk(*args, **kwargs):
        raise StoreError("could not save (disk full); free disk space and retry")

    monkeypatch.setattr(store, "log", full_disk)
    window.actions_by_name["tool.brush"].trigger()
    window.canvas.set_brush_radius(10)
    drag(qtbot, window.canvas, [(150, 150), (260, 150)])
    assert s.instances[iid].mask == before  # memory re-read from the store
    assert fresh_instances(window.store.root, s.image.path)[0].mask == before
    assert len(store.interactions()) == n_log
    box = window.editor.last_failure
    qtbot.waitUntil(box.isVisible)
    assert "not saved" in box.text() and "disk full" in box.text() and "Redo" in box.text()
    box.close()
    stack = window.undo_stack
    qtbot.waitUntil(lambda: stack.index() == 1)  # the polygon done, the stroke waiting as the next Redo
    assert stack.count() == 2 and stack.canRedo() and "brush" in stack.redoText()
    stack.redo()  # still failing: still waiting, nothing saved
    qtbot.waitUntil(lambda: stack.index() == 1)
    assert s.instances[iid].mask == before and len(store.interactions()) == n_log
    monkeypatch.setattr(store, "log", real_log)  # the disk has room again
    stack.redo()
    assert stack.index() == 2 and s.instances[iid].mask != before
    assert fresh_instances(window.store.root, s.image.path)[0].mask == s.instances[iid].mask
    assert [r.action for r in store.interactions()][-1] == "brush"
    stack.undo()
    assert s.instances[iid].mask == before


def test_large_folder_is_scanned_in_the_background(qtbot, tmp_path):
    from desktop.main_window import MainWindow

    if not (GDD / "image" / IMAGES[0]).exists():
        pytest.skip(f"GDD images not found under {GDD}")
    proj = tmp_path / "many"
    (proj / "span").mkdir(parents=True)
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(proj / "span" / "a0000.png")
    for i in range(1, 1500):  # hard links: 1 500 real files, one picture
        os.link(proj / "span" / "a0000.png", proj / "span" / f"a{i:04d}.png")
    win = MainWindow(str(proj))
    qtbot.addWidget(win)
    win.show()
    # the window is there at once; the images come in batches from the worker
    assert win.editor.scan.busy and win.images_panel.images.rowCount() < 1500
    qtbot.waitUntil(lambda: win.image_ready, timeout=20000)  # the first image opens as soon as it is found
    qtbot.waitUntil(lambda: not win.editor.scan.busy, timeout=60000)
    assert win.images_panel.images.rowCount() == 1500 == len(win.store.images())
    assert "1500 new images found" in win.statusBar().currentMessage()
    win.close()
    # a second opening finds nothing new, and a cancelled scan leaves the rest for next time
    for i in range(1500, 1800):
        os.link(proj / "span" / "a0000.png", proj / "span" / f"a{i:04d}.png")
    win = MainWindow(str(proj))
    qtbot.addWidget(win)
    win.editor.scan.cancel()
    qtbot.waitUntil(lambda: not win.editor.scan.busy, timeout=60000)
    n = win.images_panel.images.rowCount()
    assert 1500 <= n <= 1800
    win.close()
    win = MainWindow(str(proj))
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: not win.editor.scan.busy, timeout=60000)
    assert win.images_panel.images.rowCount() == 1800
    win.close()


def test_an_edit_updates_one_row_of_the_images_panel(qtbot, window):
    from desktop.commands import AddInstanceCommand

    model = window.images_panel.images
    changed, reset = [], []
    model.dataChanged.connect(lambda a, b: changed.append((a.row(), b.row())))
    model.modelReset.connect(lambda: reset.append(1))
    s = window.session
    row = model.row_of(s.image.id)
    window.canvas.push(AddInstanceCommand(s, _square(s), "draw_polygon"))
    assert changed == [(row, row)] and not reset
    assert "in progress, 1 instance" in model.data(model.index(row, 0))
    window.undo_stack.undo()
    assert changed[-1] == (row, row) and "0 instances" in model.data(model.index(row, 0))
    window.actions_by_name["image.done"].trigger()
    assert model.record(row).status is ImageStatus.DONE and "done" in model.data(model.index(row, 0))
    assert len(changed) == 3 and not reset


def test_keys_work_after_reopening(qtbot, window, project):
    """Shortcuts belong to the editor page: after another project opens they act on it."""
    window.actions_by_name["tool.polygon"].trigger()
    for p in [(100, 100), (200, 100), (200, 200), (100, 100)]:
        click(qtbot, window.canvas, *p)
    assert len(window.session.instances) == 1
    _open(qtbot, window, project)
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key.Key_D)
    qtbot.waitUntil(lambda: window.session.image.path == IMAGES[1], timeout=10000)


def test_a_second_window_on_the_same_project_only_looks(qtbot, project):
    """Two editors of one project would overwrite each other's work: the second one opens
    it read-only and says who has it; once the first closes, it opens for editing again."""
    from annotation.store import ProjectInUse, ProjectStore
    from desktop.main_window import MainWindow

    first = MainWindow(str(project))
    qtbot.addWidget(first)
    assert first.ctx.read_only is None
    second = MainWindow(str(project))
    qtbot.addWidget(second)
    reason = second.ctx.read_only
    assert reason and "another Specula window" in reason and f"process {os.getpid()}" in reason
    assert second.editor.banner.isVisibleTo(second) and "read-only" in second.editor.banner.text()
    assert not second.actions_by_name["tool.brush"].isEnabled()
    # a command that writes is told the same, and exits cleanly
    with pytest.raises(ProjectInUse, match="another Specula window"):
        ProjectStore.open(project, writer="specula import")
    second.close()
    first.close()
    third = MainWindow(str(project))
    qtbot.addWidget(third)
    assert third.ctx.read_only is None and third.actions_by_name["tool.brush"].isEnabled()
    third.close()


@pytest.fixture
def small_disk(tmp_path):
    """A real 16 MB file system (tmpfs), so that the disk can really be full."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()}); the disk-full test needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_loses_nothing_and_the_stroke_waits_for_redo(qtbot, small_disk):
    """On a really full disk a brush stroke is not saved: one clear message, the project as
    it was, and the stroke waits as the next Redo; once space is freed, Redo saves it."""
    from desktop.main_window import MainWindow

    if not (GDD / "image" / IMAGES[0]).exists():
        pytest.skip(f"GDD images not found under {GDD}")
    proj = small_disk / "p"
    proj.mkdir()
    shutil.copy(GDD / "image" / IMAGES[0], proj / IMAGES[0])
    win = MainWindow(str(proj))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.image_ready and not win.editor.scan.busy, timeout=20000)
    s = win.session
    from desktop.commands import AddInstanceCommand

    win.canvas.push(AddInstanceCommand(s, _square(s, 300, 300, 200), "draw_polygon"))
    iid = s.selection[0]
    before = s.instances[iid].mask.copy()
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # fill the disk to the last block (unbuffered)
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 512)
                f.flush()
        except OSError:
            pass
    c = win.canvas
    c.resetTransform()
    c.centerOn(400, 400)
    win.actions_by_name["tool.brush"].trigger()
    c.set_brush_radius(40)
    # a long stroke over fresh pixels: its pages cannot be written
    drag(qtbot, c, [(310, 310), (700, 320), (700, 700), (310, 700), (320, 320)])
    box = win.editor.last_failure
    qtbot.waitUntil(box.isVisible)
    assert "not saved" in box.text() and "disk is full" in box.text() and "Redo" in box.text()
    box.close()
    assert s.instances[iid].mask == before
    stack = win.undo_stack
    qtbot.waitUntil(lambda: stack.canRedo())
    filler.unlink()
    stack.redo()
    assert s.instances[iid].mask != before
    assert fresh_instances(proj, IMAGES[0])[0].mask == s.instances[iid].mask
    win.close()


def test_a_missing_image_says_so_on_the_canvas(qtbot, window, project):
    (project / IMAGES[1]).unlink()  # gone after the project was made
    window.actions_by_name["image.next"].trigger()
    problem = window.canvas.problem
    qtbot.waitUntil(problem.isVisible, timeout=10000)
    assert IMAGES[1] in problem.text() and "labels are kept" in problem.text()
    window.actions_by_name["image.previous"].trigger()
    qtbot.waitUntil(lambda: window.image_ready, timeout=10000)
    assert not problem.isVisible()
