"""The GUI's longest event-loop stall while 'propose this image' runs in the worker.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui_stall.py [--side 2048] [--runs 3]

Opens the real main window on a temporary project holding one synthetic side x side
image, with a small conv ONNX model (bench_inference's) as the only model in a
temporary registry, shown as ``desktop.app`` shows it: once the window is painted, the
engine is made in a worker (ONNX Runtime's import and the GPU probe). A 5 ms QTimer
records the gaps between its ticks: from the window's show until the status bar's device
label fills in (start-up, reported for the record: that work holds the GIL, wherever it
runs), then while 'propose this image' runs (the first run loads the model; inference;
proposals applied as one undo command), and after each run while the window is idle for
as long (the baseline). Prints the longest and the 99th-percentile gap of each and their
ratio. Aim: the first proposal's longest stall < 50 ms. On a machine shared with other
work the gaps are the scheduler's as much as ours; the longest pause of the cyclic
garbage collector during each run (any thread: it holds the GIL) is printed beside them,
as it does not depend on the load.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TICK_MS = 5


class GcPauses:
    """The longest pause of the cyclic garbage collector since ``reset``, in ms."""

    def __init__(self):
        import gc

        self.longest = 0.0
        self._t0 = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.longest = max(self.longest, (time.perf_counter() - self._t0) * 1000.0)

    def reset(self) -> None:
        self.longest = 0.0


class GapRecorder:
    def __init__(self):
        from PySide6.QtCore import QTimer

        self.gaps: list[float] = []
        self._last = None
        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append((now - self._last) * 1000.0)
        self._last = now

    def start(self) -> None:
        self.gaps, self._last = [], None
        self.timer.start()

    def stop(self) -> list[float]:
        # close the open gap: the turn that made the awaited condition true (applying the
        # proposals) ends it, and no tick follows once the recorder is stopped
        self._tick()
        self.timer.stop()
        return self.gaps


def spin(app, cond, timeout_s: float) -> None:
    end = time.perf_counter() + timeout_s
    while not cond():
        if time.perf_counter() > end:
            raise TimeoutError("timed out")
        app.processEvents()
        time.sleep(0.001)


def p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.99 * len(s)))] if s else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=2048)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    import cv2

    from bench_inference import build_model, synthetic_image

    tmp = Path(tempfile.mkdtemp(prefix="specula-stall-"))
    os.environ["SPECULA_HOME"] = str(tmp / "home")
    proj = tmp / "proj"
    proj.mkdir()
    cv2.imwrite(str(proj / "big.png"), synthetic_image(args.side, args.side)[:, :, ::-1])
    from inference.registry import Registry

    model = build_model(tmp / "w" / "model.onnx")
    Registry.default().publish(model.parent, {
        "name": "bench-cracks", "version": "1", "task": "semantic", "classes": ["crack", "rust"],
        "output_activation": "sigmoid", "tiling": {"tile": 1024, "overlap": 128}, "defaults": {"min_area": 20},
    })
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "qsettings"))
    app = QApplication.instance() or QApplication([])
    from desktop.main_window import MainWindow

    from desktop.app import show_window

    rec = GapRecorder()
    win = MainWindow(str(proj))
    win.resize(1400, 900)
    rec.start()  # the event loop's stalls from here: first paint, the photo, the engine's start
    show_window(win)
    label = win.assist.device_label
    spin(app, lambda: win.current_rgb is not None and label.text() != "", 60)
    startup = rec.stop()
    print(f"start-up (show to the device label, engine made in a worker): longest gap {max(startup):.1f} ms "
          f"(p99 {p99(startup):.1f})")
    combo = win.assist.review_panel.model_combo
    combo.setCurrentIndex(combo.findData("bench-cracks"))  # not a shipped model matching the palette
    assert win.assist.proposer.model == "bench-cracks"
    results = []
    pauses = GcPauses()
    for run in range(args.runs):
        n_before = len(win.store.interactions(actions=["propose"]))
        # a different model parameter each run, so the engine's result cache is not hit
        win.assist.proposer.params = {"threshold": 0.5 + 0.01 * run}
        rec.start()
        pauses.reset()
        t0 = time.perf_counter()
        win.actions_by_name["action.propose_image"].trigger()
        spin(app, lambda: len(win.store.interactions(actions=["propose"])) > n_before
             and not win.assist.proposer.busy and not getattr(win.canvas, "pending_items", 0), 300)
        busy_s = time.perf_counter() - t0
        busy = rec.stop()
        gc_ms = pauses.longest
        rec.start()
        t1 = time.perf_counter()
        spin(app, lambda: time.perf_counter() - t1 >= busy_s, busy_s + 5)
        idle = rec.stop()
        n = len(win.session.proposals())
        results.append((busy_s, max(busy), p99(busy), max(idle), p99(idle), n))
        print(f"run {run + 1}{' (first proposal: model loaded)' if run == 0 else ''}: propose {busy_s * 1000:.0f} ms, "
              f"{n} proposals; longest gap {max(busy):.1f} ms (p99 {p99(busy):.1f}) vs idle "
              f"{max(idle):.1f} ms (p99 {p99(idle):.1f}); longest garbage-collector pause {gc_ms:.1f} ms")
    worst = max(r[1] for r in results)
    idle_worst = max(r[3] for r in results)
    first = results[0][1]
    print(f"{args.side}x{args.side} image, timer {TICK_MS} ms, {win.assist.device_label.text()}")
    print(f"longest GUI stall while proposing: {worst:.1f} ms, first proposal {first:.1f} ms (idle baseline "
          f"{idle_worst:.1f} ms, ratio {worst / max(idle_worst, 1e-3):.2f}); target < 50 ms: "
          f"{'OK' if worst < 50 else 'MISSED'}")
    win.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
