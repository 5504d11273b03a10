"""Image decoding off the GUI thread: snapshot the request, decode in the pool, deliver
on the GUI thread by signal; stale results (an older request) are dropped."""
from __future__ import annotations

import itertools

from PySide6.QtCore import QObject, QThreadPool, Signal


class ImageLoader(QObject):
    loaded = Signal(int, object, str)  # request id, rgb array or None, error message
    _delivered = Signal(int, object, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._ids = itertools.count(1)
        self.current = 0
        self._delivered.connect(self._on_delivered)

    def request(self, path: str) -> int:
        rid = next(self._ids)
        self.current = rid

        def job() -> None:
            rgb, err = None, ""
            try:
                from annotation.images import load_image

                rgb = load_image(path).rgb
            except Exception as exc:  # reported to the user, never swallowed
                err = str(exc) or exc.__class__.__name__
            finally:
                try:
                    self._delivered.emit(rid, rgb, err)
                except RuntimeError:  # the loader went with its project meanwhile: nobody is listening
                    pass

        QThreadPool.globalInstance().start(job)
        return rid

    def _on_delivered(self, rid: int, rgb, err: str) -> None:
        if rid == self.current:
            self.loaded.emit(rid, rgb, err)
