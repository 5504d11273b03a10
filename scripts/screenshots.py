"""The screenshots of the README and of a review: ``screenshots.py OUT_FOLDER``.

At 1280 x 720 (a field laptop) and 1920 x 1080: the start page; a photo with its masks
and a selection at fit zoom; the review with the shipped model's proposals; the training
panel with curves; the help. The photos are Specula's own generated sample images
(assets/sample_project, scripts/make_sample_images.py), so the pictures can be shown;
the proposals come from the shipped default model; the training curves are replayed
from a recorded run's events (the training panel reads the same JSON lines).

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshots.py docs/screenshots
    xvfb-run -a .venv/bin/python scripts/screenshots.py docs/screenshots   # a real X server
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SIZES = {"1280x720": (1280, 720), "1920x1080": (1920, 1080)}
# a semantic run as the trainer reports it (epoch, loss, validation IoU and max F-beta)
REPLAYED_RUN = [(1, 0.92, 0.41, 0.55), (2, 0.61, 0.58, 0.69), (3, 0.47, 0.66, 0.75), (4, 0.39, 0.71, 0.79),
                (5, 0.34, 0.74, 0.81), (6, 0.31, 0.76, 0.83), (7, 0.29, 0.77, 0.84), (8, 0.28, 0.78, 0.84)]


def spin(app, seconds: float, cond=None) -> None:
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        if cond is not None and cond():
            break
        time.sleep(0.01)
    for _ in range(5):
        app.processEvents()


def build_project(folder: Path) -> Path:
    """The sample photos, with two hand-drawn instances on the first one."""
    from annotation.document import Instance
    from annotation.mask import rasterize_polygon
    from annotation.store import ProjectStore

    for p in sorted((REPO / "assets" / "sample_project").glob("*.jpg")):
        shutil.copy(p, folder / p.name)
    with ProjectStore.open(folder) as store:
        rec = store.images()[0]
        h, w = rec.size
        pane = rasterize_polygon([(w * 0.18, h * 0.2), (w * 0.42, h * 0.2), (w * 0.42, h * 0.72),
                                  (w * 0.18, h * 0.72)], rec.size)
        mirror = rasterize_polygon([(w * 0.58, h * 0.18), (w * 0.8, h * 0.16), (w * 0.82, h * 0.6),
                                    (w * 0.6, h * 0.62)], rec.size)
        store.add_instances([Instance(rec.id, "glass", pane), Instance(rec.id, "mirror", mirror)])
    return folder


def shoot(app, out: Path, label: str, size: tuple[int, int], project: Path) -> list[Path]:
    from desktop.main_window import MainWindow

    written = []

    def grab(win, name: str) -> None:
        spin(app, 0.3)
        path = out / f"{label}-{name}.png"
        win.grab().save(str(path))
        written.append(path)

    start = MainWindow(None)
    start.resize(*size)
    start.show()
    grab(start, "start")
    start.close()

    win = MainWindow(str(project))
    win.resize(*size)
    win.show()
    spin(app, 30, lambda: win.image_ready and not win.editor.scan.busy)
    win.canvas.fit()
    s = win.session
    s.select([next(iter(s.instances))])
    grab(win, "editor")

    # review: the shipped model's proposals on the next photo
    win.actions_by_name["image.next"].trigger()
    spin(app, 30, lambda: win.image_ready)
    win.actions_by_name["action.propose_image"].trigger()
    spin(app, 60, lambda: not win.assist.proposer.busy and bool(s.proposals()))
    dock = next(d for d in win.editor.docks if d.objectName() == "dock.review")
    dock.raise_()
    win.actions_by_name["review.next"].trigger()
    grab(win, "review")

    tp = win.assist.training_panel
    tp._n_epochs = len(REPLAYED_RUN)
    for epoch, loss, iou, fbeta in REPLAYED_RUN:
        tp._event({"event": "epoch", "epoch": epoch, "loss": loss,
                   "val": {"mean_iou": iou, "mean_max_fbeta": fbeta}})
    next(d for d in win.editor.docks if d.objectName() == "dock.training").raise_()
    grab(win, "training")

    win.actions_by_name["help.show"].trigger()
    grab(win, "help")
    win.help.hide()
    win.close()
    return written


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    out = Path(argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="specula-shots-"))
    os.environ["SPECULA_HOME"] = str(tmp / "home")  # the shipped models only
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(argv[:1])
    written = []
    try:
        for label, size in SIZES.items():
            QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / f"qs-{label}"))
            proj = tmp / f"project-{label}"
            proj.mkdir()
            written += shoot(app, out, label, size, build_project(proj))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for p in written:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
