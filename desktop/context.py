"""The application context of one open project.

Created when a project opens and closed when it closes (or another opens): the store,
the editing session, the undo stack, the engine host and the shown image's pixels.
Controllers and panels receive the context (or the part of it they need), never the
window, so a project can be replaced without a restart and each controller can be
built and tested on its own.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from annotation.store import ProjectStore
from desktop.engine_host import EngineHost
from desktop.session import EditingSession

UNDO_LIMIT = 500


class ProjectContext(QObject):
    """``message(text, ms)``: anything a controller wants the user to read in the status bar."""

    message = Signal(str, int)

    def __init__(self, store: ProjectStore, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.store = store
        self.session = EditingSession(store)
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(UNDO_LIMIT)
        self.host = EngineHost(self)
        self.current_rgb: Optional[np.ndarray] = None  # the shown image's pixels, (H, W, 3) uint8 RGB
        self.closed = False

    @property
    def read_only(self) -> Optional[str]:
        """Why editing is off (a read-only folder, another Specula has the project), or None."""
        return self.store.read_only

    def say(self, text: str, ms: int = 6000) -> None:
        self.message.emit(text, ms)

    def rgb_and_key(self) -> tuple[Optional[np.ndarray], Optional[str]]:
        """The shown image's pixels and a key naming them (for embedding caches)."""
        s = self.session
        if self.current_rgb is None or s.image is None:
            return None, None
        return self.current_rgb, s.image.sha1 or str(self.store.image_file(s.image))

    def close(self) -> None:
        """Let go of the project: late results of workers check ``closed`` and drop themselves."""
        if self.closed:
            return
        self.closed = True
        self.undo_stack.clear()
        self.host.close()
        self.session.close_image()
        self.store.close()
