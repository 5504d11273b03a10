"""Image decoding off the GUI thread: snapshot the request, decode in the pool, deliver
on the GUI thread by signal; stale results (an older request) are dropped.

The worker hands over both levels the canvas draws, the full RGB array and its
zoomed-out level (``annotation.images.load_levels``), so that the GUI thread only wraps
arrays into images: on a 25-megapixel photo, making the level there took 40 ms of the
GUI's time before the first paint.
"""
from __future__ import annotations

import itertools
from typing import Optional

from PySide6.QtCore import QObject, QThreadPool, Signal

from desktop.canvas.tiles import LOW_FACTOR, LOW_MIN_SIDE


class ImageLoader(QObject):
    """``loaded(request id, rgb, low, error)``: ``rgb`` the (H, W, 3) uint8 RGB array and
    ``low`` its 1/``LOW_FACTOR`` level (None for a photo small enough to draw without
    one), or both None and the error message."""

    loaded = Signal(int, object, object, str)
    _delivered = Signal(int, object, object, str)

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self._ids = itertools.count(1)
        self.current = 0
        self._delivered.connect(self._on_delivered)

    def request(self, path: str) -> int:
        """Decode ``path`` in the pool; returns the request id that ``loaded`` will carry."""
        rid = next(self._ids)
        self.current = rid

        def job() -> None:
            rgb, low, err = None, None, ""
            try:
                from annotation.images import load_levels

                img, low = load_levels(path, LOW_FACTOR, min_side=LOW_MIN_SIDE)
                rgb = img.rgb
                del img  # ``original`` is ``rgb`` for 8-bit RGB; for others, let it go now
            except Exception as exc:  # reported to the user, never swallowed
                err = str(exc) or exc.__class__.__name__
            finally:
                try:
                    self._delivered.emit(rid, rgb, low, err)
                except RuntimeError:  # the loader went with its project meanwhile: nobody is listening
                    pass

        QThreadPool.globalInstance().start(job)
        return rid

    def _on_delivered(self, rid: int, rgb, low, err: str) -> None:
        if rid == self.current:
            self.loaded.emit(rid, rgb, low, err)
