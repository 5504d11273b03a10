"""Per-edit costs that must follow the touched area, in the real window, in one run.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_editing.py [--reps 15] [--images 5000]

1. Boundary reroute on a 25-megapixel photo: a bump traced on the boundary of a
   3-megapixel instance against the same bump on a 200 x 200 one, through the real tool
   (mouse press, moves, release; timed: the release, which computes, stores, logs and
   updates the overlay). Interleaved repetitions, each undone. Aim: within 2x, < 50 ms.
2. Closing a polygon and switching to the next image (D) in a project of N images (five
   instances each) against a 2-image project, both windows open at once and measured
   alternately. Aim: within 1.5x.
3. Opening a folder of N images with no project yet, to a window that is shown and
   painted (the folder is scanned in the background), and how long that scan takes;
   and opening the N-image project again. Aim: under 1 s to the window.

Images are hard links to one real GDD photo (so every file is a real JPEG header to
read); the 25-megapixel photo is that photo scaled up. Prints one table with the aims.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("SPECULA_DATA", ROOT / ".." / "shared" / "data")).resolve()
PHOTO = DATA / "glass-gdd" / "image" / "1000.jpg"


def spin(app, cond, timeout=120.0) -> None:
    end = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > end:
            raise TimeoutError("timed out")
        app.processEvents()
        time.sleep(0.001)
    app.processEvents()


def median_ms(xs) -> float:
    return statistics.median(xs) * 1000.0


def make_folder(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    first = folder / "img00000.jpg"
    shutil.copy(PHOTO, first)
    for i in range(1, n):
        os.link(first, folder / f"img{i:05d}.jpg")


def add_instances(folder: Path, per_image: int = 5) -> None:
    import numpy as np

    from annotation.document import Instance, InstanceState
    from annotation.mask import rasterize_polygon
    from annotation.store import ProjectStore

    rng = np.random.default_rng(0)
    with ProjectStore.open(folder) as store:
        with store.transaction():
            for rec in store.images():
                for k in range(per_image):
                    cx, cy = rng.uniform(100, rec.width - 100), rng.uniform(100, rec.height - 100)
                    pts = [(cx - 60, cy - 40), (cx + 50, cy - 50), (cx + 40, cy + 60), (cx - 50, cy + 40)]
                    state = InstanceState.PROPOSED if k % 2 else InstanceState.ACCEPTED
                    store.add_instance(Instance(rec.id, "glass", rasterize_polygon(pts, rec.size), state, "m@1", 0.8))


def open_window(app, folder: Path):
    from desktop.main_window import MainWindow

    win = MainWindow(str(folder))
    win.resize(1400, 900)
    win.show()
    spin(app, lambda: win.image_ready and not win.editor.scan.busy)
    return win


# ------------------------------------------------------------------ 1. reroute
def bench_reroute(app, tmp: Path, reps: int) -> dict:
    import cv2
    import numpy as np
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtTest import QTest

    from annotation.document import Instance
    from annotation.mask import Mask

    folder = tmp / "big"
    folder.mkdir()
    photo = cv2.imread(str(PHOTO))
    big = cv2.resize(photo, (6250, 4000), interpolation=cv2.INTER_CUBIC)  # 25 megapixels
    cv2.imwrite(str(folder / "street.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    win = open_window(app, folder)
    s, c = win.session, win.canvas
    H, W = s.image_size
    large = np.zeros((H, W), np.uint8)
    cv2.ellipse(large, (2000, 2000), (1000, 960), 0, 0, 360, 1, -1)  # ~3.0 MP
    small = np.zeros((H, W), np.uint8)
    cv2.rectangle(small, (4500, 1000), (4699, 1199), 1, -1)  # 200 x 200
    from desktop.commands import AddInstanceCommand

    ids = {}
    for name, full in (("large", large), ("small", small)):
        win.undo_stack.push(AddInstanceCommand(s, Instance(s.image.id, "glass", Mask.from_full(full > 0)), "bench"))
        ids[name] = s.selection[0]
    areas = {k: s.instances[v].mask.area for k, v in ids.items()}
    # a bump traced on the top boundary of each: out 30 px, along 80 px, back
    tops = {"large": (2000, 2000 - 960), "small": (4600, 1000)}
    win.actions_by_name["tool.reroute"].trigger()
    times: dict[str, list[float]] = {"large": [], "small": []}
    vp = c.viewport()
    for rep in range(reps):
        for name in ("large", "small") if rep % 2 == 0 else ("small", "large"):
            s.select([ids[name]])
            x, y = tops[name]
            c.resetTransform()
            c.centerOn(QPointF(x, y))
            app.processEvents()
            pts = [(x - 40, y), (x - 40, y - 30), (x, y - 32), (x + 40, y - 30), (x + 40, y)]

            def at(px, py):
                return c.mapFromScene(QPointF(px, py))

            QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(*pts[0]))
            for p in pts[1:]:
                QTest.mouseMove(vp, at(*p))
            n = win.undo_stack.index()
            t0 = time.perf_counter()
            QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(*pts[-1]))
            times[name].append(time.perf_counter() - t0)
            assert win.undo_stack.index() == n + 1, "the reroute did not change the mask"
            app.processEvents()
            win.undo_stack.undo()
            app.processEvents()
    win.close()
    return {"areas": areas, "large_ms": median_ms(times["large"]), "small_ms": median_ms(times["small"])}


# ------------------------------------------------------------------ 2. polygon and image switch
def bench_project_size(app, tmp: Path, n_images: int, reps: int) -> dict:
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtTest import QTest

    small, large = tmp / "p2", tmp / f"p{n_images}"
    make_folder(small, 2)
    make_folder(large, n_images)
    for f in (small, large):
        add_instances(f)
    wins = {"2": open_window(app, small), str(n_images): open_window(app, large)}
    polygon: dict[str, list[float]] = {k: [] for k in wins}
    switch: dict[str, list[float]] = {k: [] for k in wins}
    for rep in range(reps):
        for key in (list(wins) if rep % 2 == 0 else list(wins)[::-1]):
            win = wins[key]
            win.activateWindow()
            c = win.canvas
            win.actions_by_name["tool.polygon"].trigger()
            win.session.select([])
            c.resetTransform()
            c.centerOn(QPointF(640, 512))
            app.processEvents()
            pts = [(500, 400), (700, 400), (700, 600), (500, 600)]
            for p in pts:
                QTest.mouseClick(c.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                                 c.mapFromScene(QPointF(*p)))
            t0 = time.perf_counter()
            QTest.mouseClick(c.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                             c.mapFromScene(QPointF(*pts[0])))
            app.processEvents()  # the panels' updates of this turn
            polygon[key].append(time.perf_counter() - t0)
            # next image (D), then back, to stay among the first images
            step = 1 if rep % 4 < 2 else -1
            t0 = time.perf_counter()
            win.editor.navigator.step(step)
            spin(app, lambda: win.image_ready)
            switch[key].append(time.perf_counter() - t0)
    for w in wins.values():
        w.close()
    return {k: {"polygon_ms": median_ms(polygon[k]), "switch_ms": median_ms(switch[k])} for k in wins}


# ------------------------------------------------------------------ 3. opening
def bench_open(app, tmp: Path, n_images: int) -> dict:
    from desktop.main_window import MainWindow

    folder = tmp / "fresh"
    make_folder(folder, n_images)
    t0 = time.perf_counter()
    win = MainWindow(str(folder))
    win.show()
    app.processEvents()  # shown and painted: usable
    to_window = time.perf_counter() - t0
    spin(app, lambda: not win.editor.scan.busy, timeout=600)
    scan = time.perf_counter() - t0
    found = win.images_panel.images.rowCount()
    win.close()
    t0 = time.perf_counter()
    win = MainWindow(str(folder))
    win.show()
    app.processEvents()
    again = time.perf_counter() - t0
    spin(app, lambda: win.image_ready)
    first_image = time.perf_counter() - t0
    win.close()
    return {"to_window_s": to_window, "scan_s": scan, "found": found, "again_s": again, "first_image_s": first_image}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--images", type=int, default=5000)
    args = ap.parse_args()
    if not PHOTO.exists():
        print(f"bench_editing: {PHOTO} not found (set SPECULA_DATA)", file=sys.stderr)
        return 2
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    tmp = Path(tempfile.mkdtemp(prefix="bench-editing-"))
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "qs"))
    app = QApplication.instance() or QApplication([])
    try:
        r = bench_reroute(app, tmp, args.reps)
        p = bench_project_size(app, tmp, args.images, args.reps)
        o = bench_open(app, tmp, args.images)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = str(args.images)
    rows = [
        (f"reroute, {r['areas']['large'] / 1e6:.1f}-MP instance", f"{r['large_ms']:.1f} ms",
         f"{r['large_ms'] / r['small_ms']:.2f}x the {r['areas']['small']}-px one ({r['small_ms']:.1f} ms)",
         "within 2x, < 50 ms"),
        (f"close a polygon, {n} images", f"{p[n]['polygon_ms']:.1f} ms",
         f"{p[n]['polygon_ms'] / p['2']['polygon_ms']:.2f}x 2 images ({p['2']['polygon_ms']:.1f} ms)", "within 1.5x"),
        (f"next image to pixels shown, {n} images", f"{p[n]['switch_ms']:.1f} ms",
         f"{p[n]['switch_ms'] / p['2']['switch_ms']:.2f}x 2 images ({p['2']['switch_ms']:.1f} ms)", "within 1.5x"),
        (f"open a folder of {n} new images, to the window", f"{o['to_window_s']:.2f} s",
         f"scan in the background: {o['scan_s']:.1f} s for {o['found']} images", "< 1 s"),
        (f"open the {n}-image project again, to the window", f"{o['again_s']:.2f} s",
         f"first image shown after {o['first_image_s']:.2f} s", "< 1 s"),
    ]
    w0 = max(len(x[0]) for x in rows)
    for name, value, ratio, aim in rows:
        print(f"{name:<{w0}}  {value:>9}  {ratio:<48} aim: {aim}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
