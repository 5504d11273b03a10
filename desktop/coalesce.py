"""Run a refresh once per event-loop turn however many times it was asked for: a run
that adds 150 proposals redraws a list once, not 150 times."""
from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, QTimer


class Coalesced(QObject):
    def __init__(self, fn: Callable[[], None], parent: QObject):
        super().__init__(parent)
        self.fn = fn
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(fn)

    def __call__(self, *_args) -> None:
        self._timer.start()

    def flush(self) -> None:
        """Run it now if it is pending."""
        if self._timer.isActive():
            self._timer.stop()
            self.fn()
