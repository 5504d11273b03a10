"""The real application, driven by a script, for the crash test (``test_app_crash.py``).

    python tests/desktop/app_crash_driver.py PROJECT SIDE_FILE SEED

Opens the real main window offscreen on PROJECT and performs user actions through real
mouse events and the window's actions, as fast as it can, until it is killed: brush
strokes, polygons, merges, splits, deletes, proposals of the image (through the worker),
batch accepts ("accept all ≥ score"), "reject the rest", undo and redo.

It watches the transaction boundary and writes what it saw to SIDE_FILE, fsynced:

    begin K ACTION            before action K is started
    commit K DIGEST           inside each transaction, just before COMMIT: the digest of the
                              whole project as that transaction will leave it
    done K COMMITS            after action K returned (and its results were applied)

so that the parent, after a SIGKILL at any moment, can check that the database holds
exactly the state of the last finished action, or of the one in flight when that one
had reached its single commit; never anything in between.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def project_digest(db) -> str:
    """A digest of everything a user action can change (``db`` is a sqlite3 connection)."""
    h = hashlib.sha1()
    for table, cols in (
        ("images", "id, path, status, n_proposed, n_accepted, n_rejected"),
        ("instances", "id, image_id, class_name, state, origin, score, x0, y0, w, h, rle, hidden"),
        ("interactions", "id, action, image_id, instance_id, class_name"),
    ):
        for row in db.execute(f"SELECT {cols} FROM {table} ORDER BY id"):
            h.update(repr(row).encode())
    return h.hexdigest()


class SideFile:
    def __init__(self, path: str):
        self.f = open(path, "a", buffering=1)

    def write(self, line: str) -> None:
        self.f.write(line + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())


def watch_commits(side: SideFile, state: dict) -> None:
    """Write a ``commit`` line inside every outermost transaction, just before its COMMIT."""
    from annotation.store import ProjectStore

    original = ProjectStore.transaction

    @contextlib.contextmanager
    def transaction(self):
        outer = self._depth == 0
        with original(self):
            yield
            if outer:
                state["commits"] += 1
                side.write(f"commit {state['action']} {project_digest(self._db)}")

    ProjectStore.transaction = transaction


def main(argv: list[str]) -> int:
    project, side_path, seed = argv[1], argv[2], int(argv[3])
    rng = random.Random(seed)
    from PySide6.QtCore import QPoint, QPointF, QSettings, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(Path(side_path).parent / "qs"))
    side = SideFile(side_path)
    state = {"action": 0, "commits": 0}
    watch_commits(side, state)
    app = QApplication.instance() or QApplication(argv[:1])
    from desktop.main_window import MainWindow

    side.write("begin 0 startup")
    win = MainWindow(project)
    win.resize(1200, 800)
    win.show()

    def spin(cond, timeout=30.0) -> bool:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                return False
            app.processEvents()
            time.sleep(0.002)
        app.processEvents()
        return True

    spin(lambda: win.image_ready and not win.editor.scan.busy)
    combo = win.assist.review_panel.model_combo
    combo.setCurrentIndex(max(0, combo.findData("tiny-mirror-glass")))
    side.write(f"done 0 {state['commits']}")
    c, s = win.canvas, win.session
    vp = c.viewport()
    h, w = s.image_size

    def view(x, y) -> QPoint:
        return c.mapFromScene(QPointF(x, y))

    def rand_pt(margin=40):
        return rng.uniform(margin, w - margin), rng.uniform(margin, h - margin)

    def brush():
        win.actions_by_name[rng.choice(["tool.brush", "tool.brush", "tool.eraser"])].trigger()
        ids = list(s.instances)
        s.select([rng.choice(ids)] if ids and rng.random() < 0.7 else [])
        c.set_brush_radius(rng.uniform(4, 30))
        x, y = rand_pt()
        QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, view(x, y))
        for _ in range(rng.randint(2, 12)):
            x, y = min(w - 1, max(0, x + rng.uniform(-40, 40))), min(h - 1, max(0, y + rng.uniform(-40, 40)))
            QTest.mouseMove(vp, view(x, y))
        QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, view(x, y))

    def polygon():
        win.actions_by_name["tool.polygon"].trigger()
        s.select([])
        s.set_current_class(rng.choice(s.palette.names))
        cx, cy = rand_pt(120)
        pts = [(cx - 60, cy - 50), (cx + 70, cy - 40), (cx + 50, cy + 60), (cx - 40, cy + 50)]
        for p in pts + [pts[0]]:
            QTest.mouseClick(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, view(*p))

    def merge():
        ids = list(s.instances)
        if len(ids) >= 2:
            s.select(rng.sample(ids, 2))
            win.actions_by_name["mask.merge"].trigger()

    def split():
        multi = [i for i, inst in s.instances.items() if len(inst.mask.components()) > 1]
        if multi:
            s.select([rng.choice(multi)])
            win.actions_by_name["mask.split"].trigger()

    def delete():
        ids = list(s.instances)
        if ids:
            s.select([rng.choice(ids)])
            win.actions_by_name["mask.delete"].trigger()

    def propose():
        proposer = win.assist.proposer
        before = state["commits"]
        win.actions_by_name["action.propose_image"].trigger()
        spin(lambda: not proposer.busy and state["commits"] > before, timeout=60)

    def accept_above():
        panel = win.assist.review_panel
        panel.threshold.setValue(rng.uniform(0.5, 0.99))
        panel.accept_above.click()

    def reject_rest():
        win.actions_by_name["review.reject_rest"].trigger()

    def undo():
        win.undo_stack.undo()

    def redo():
        win.undo_stack.redo()

    actions = [brush] * 4 + [polygon] * 2 + [merge, split, delete, propose, accept_above, reject_rest, undo, undo,
                                              redo]
    k = 0
    print("ready", flush=True)
    while True:
        k += 1
        fn = rng.choice(actions)
        state["action"], state["commits"] = k, 0
        side.write(f"begin {k} {fn.__name__}")
        fn()
        app.processEvents()
        side.write(f"done {k} {state['commits']}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
