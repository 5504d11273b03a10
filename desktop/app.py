"""Entry point of the desktop application: ``run(project_path, argv) -> int``.

Imports stay lean so the window is usable fast: no torch, no inference engine at
start-up (a test checks ``torch`` is not in ``sys.modules``).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Optional, Sequence


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
    win.show()
    if os.environ.get("SPECULA_STARTUP_PROBE") == "1":
        _install_startup_probe(app)
    return int(app.exec())


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
