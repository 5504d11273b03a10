"""Screenshot of the main window with a GDD photo and its masks: ``screenshot.py OUT.png``.

Makes a project in a temporary folder from one GDD image, imports its ground-truth
mask (``glass-gdd/mask/<id>.png``) as glass instances (one per connected component),
opens the window and grabs it. Data: ``$SPECULA_DATA`` or ``../shared/data``.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_project(folder: Path, image_id: str = "1000") -> Path:
    import numpy as np
    from PIL import Image

    from annotation.document import Instance, InstanceState
    from annotation.mask import Mask
    from annotation.store import ProjectStore

    data = Path(os.environ.get("SPECULA_DATA", REPO / ".." / "shared" / "data")).resolve() / "glass-gdd"
    src = data / "image" / f"{image_id}.jpg"
    if not src.exists():
        raise SystemExit(f"GDD image {src} not found: set SPECULA_DATA to the data folder")
    shutil.copy(src, folder / src.name)
    store = ProjectStore.open(folder)
    rec = store.image_by_path(src.name)
    full = np.asarray(Image.open(data / "mask" / f"{image_id}.png").convert("L")) > 127
    parts = Mask.from_full(full).components()
    insts = [Instance(rec.id, "glass", p) for p in parts if p.area >= 50]
    if insts:  # the largest as a proposal, to show how proposals look
        insts[-1].state = InstanceState.PROPOSED if len(insts) > 1 else insts[-1].state
    store.add_instances(insts)
    store.close()
    return folder


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    out = Path(argv[1]).resolve()
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    tmp = Path(tempfile.mkdtemp(prefix="specula-shot-"))
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "settings"))
    proj = tmp / "project"
    proj.mkdir()
    build_project(proj, argv[2] if len(argv) > 2 else "1000")
    app = QApplication.instance() or QApplication(argv[:1])
    from desktop.main_window import MainWindow

    win = MainWindow(str(proj))
    win.resize(1500, 950)
    win.show()
    import time

    deadline = time.time() + 30
    while not win.image_ready and time.time() < deadline:
        app.processEvents()
        time.sleep(0.01)
    win.canvas.fit()
    if win.session.instances:
        win.session.select([next(iter(win.session.instances))])
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    ok = win.grab().save(str(out))
    win.close()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {out}" if ok else f"could not write {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
