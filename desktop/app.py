"""Entry point of the desktop application: ``run(project_path, argv) -> int``.

Imports stay lean so the window is usable fast: no torch, no inference engine at
start-up (a test checks ``torch`` is not in ``sys.modules``). Once the window has been
painted, the engine hosts make their engines in worker threads (ONNX Runtime's import and
the GPU probe, ``desktop.engine_host.start_after_show``), so that neither the first
paint nor the first proposal waits for them.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional, Sequence


def create_window(project_path: Optional[str] = None):
    from desktop.main_window import MainWindow

    return MainWindow(project_path)


def run(project_path: str | None, argv: Sequence[str] | None = None) -> int:
    """Open the main window (the start page when ``project_path`` is None); returns the exit code."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(list(argv) if argv is not None else sys.argv[:1])
    app.setOrganizationName("Specula")
    app.setApplicationName("Specula")
    win = create_window(project_path)
    show_window(win)
    if os.environ.get("SPECULA_STARTUP_PROBE") == "1":
        _install_startup_probe(app)
    return int(app.exec())


def show_window(win) -> None:
    """Show the main window, and once it is painted start the proposal engines in workers."""
    win.show()
    after_first_paint(win, _start_engines)


# started anyway this long after the window was shown, if no paint came (a minimised start)
ENGINE_START_FALLBACK_MS = 2000


def _start_engines() -> None:
    from desktop.engine_host import start_after_show

    start_after_show(then=_freeze_startup_heap)


def _freeze_startup_heap() -> None:
    """Take what start-up built out of the cyclic garbage collector's sight.

    Qt, numpy, OpenCV and ONNX Runtime leave a heap of module objects that live as long
    as the process; a full collection walks all of them and holds the GIL for 50-110 ms
    here, and the allocations of the first proposal used to set one off: a stall of the
    editor right after the user asked for something. Frozen objects are still freed by
    reference counting; only cycles among them would stay (start-up makes few).
    """
    import gc

    gc.freeze()


def after_first_paint(win, fn: Callable[[], None]) -> None:
    """Call ``fn`` once on the GUI thread, in the event loop's turn after ``win``'s first
    paint (or ``ENGINE_START_FALLBACK_MS`` after now if none comes): work started then
    does not delay what the user sees first."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    class _FirstPaint(QObject):
        def __init__(self) -> None:
            super().__init__(win)
            self.done = False

        def eventFilter(self, obj, event) -> bool:
            if event.type() == QEvent.Type.Paint and not self.done:
                QTimer.singleShot(0, self.fire)  # after this paint has finished
            return False

        def fire(self) -> None:
            if self.done:
                return
            self.done = True
            win.removeEventFilter(self)
            fn()

    watcher = _FirstPaint()
    win.installEventFilter(watcher)
    QTimer.singleShot(ENGINE_START_FALLBACK_MS, watcher.fire)


def process_start_time() -> float:
    """When this process started (``time.time()`` scale): ``SPECULA_T0`` if the launcher set it,
    else the operating system's record (psutil), else this module's import time."""
    t0 = os.environ.get("SPECULA_T0")
    if t0:
        try:
            return float(t0)
        except ValueError:
            pass
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - psutil absent from a bundle: a later, still useful start
        return _IMPORTED_AT


def _install_startup_probe(app) -> None:
    """Print ``startup_ms=<ms>`` once the window is shown and painted, then quit with 0."""
    from PySide6.QtCore import QTimer

    def report() -> None:
        app.processEvents()
        ms = (time.time() - process_start_time()) * 1000.0
        print(f"startup_ms={ms:.0f}", flush=True)
        app.exit(0)

    QTimer.singleShot(0, report)


_IMPORTED_AT = time.time()


if __name__ == "__main__":  # python -m desktop.app [PROJECT]
    raise SystemExit(run(sys.argv[1] if len(sys.argv) > 1 else None, sys.argv))
