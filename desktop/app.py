"""Entry point of the desktop application: ``run(project_path, argv) -> int``.

Imports stay lean so the window is usable fast: no torch, no inference engine at
start-up (a test checks ``torch`` is not in ``sys.modules``).
"""
from __future__ import annotations

import sys
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
    return int(app.exec())


if __name__ == "__main__":  # python -m desktop.app [PROJECT]
    raise SystemExit(run(sys.argv[1] if len(sys.argv) > 1 else None, sys.argv))
