"""Prompt predictions off the GUI thread: the engine's prompt session (a SAM pair when
one is registered, GrabCut otherwise) gets the image once and a ``predict`` per click.
Only the newest request's mask comes back (``mask_ready``); errors by ``failed``."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PySide6.QtCore import QObject, Signal

from desktop.workers import JobRunner


class PromptPredictor(QObject):
    mask_ready = Signal(int, object, str)  # request id, Mask, "model@version"
    failed = Signal(str)
    idle = Signal()

    def __init__(self, engine_host, parent: Optional[QObject] = None, *, sync: bool = False):
        super().__init__(parent)
        self.host = engine_host
        self.runner = JobRunner(self, sync=sync)
        self.runner.result.connect(lambda rid, v: self.mask_ready.emit(rid, v[0], v[1]))
        self.runner.error.connect(lambda _rid, msg: self.failed.emit(msg))
        self.runner.finished.connect(lambda _rid: None if self.runner.busy else self.idle.emit())
        self._precompute = JobRunner(self, sync=sync)
        self._precompute.error.connect(lambda _rid, msg: self.failed.emit(f"precomputing embeddings: {msg}"))
        self._image_key: Optional[str] = None
        self._session = None

    @property
    def busy(self) -> bool:
        return self.runner.busy

    def request(self, rgb: np.ndarray, key: str, points: Sequence[tuple[float, float]], labels: Sequence[int],
                box: Optional[tuple[float, float, float, float]]) -> int:
        """Ask for the mask of these prompts: ``points`` (N, 2) xy image pixels, ``labels`` 1/0, ``box`` xyxy."""
        pts = np.asarray(points, np.float32).reshape(-1, 2)
        lab = np.asarray(labels, np.int32).reshape(-1)
        bx = None if box is None else tuple(float(v) for v in box)

        def run():
            if self._session is None:
                self._session = self.host.engine().prompt_session()
            sess = self._session
            if self._image_key != key:
                sess.set_image(rgb, key)
                self._image_key = key
            mask = sess.predict(pts if len(pts) else None, lab if len(lab) else None, bx)
            return mask, f"{sess.model}@{sess.version}"

        return self.runner.submit(run)

    def precompute(self, paths: Sequence[str]) -> None:
        """Embeddings of these images in the background (only when a SAM pair is registered)."""
        paths = [str(p) for p in paths]

        def run():
            if not self.host.has_prompt_model():
                return []
            if self._session is None:
                self._session = self.host.engine().prompt_session()
            return self._session.precompute(paths)

        self._precompute.submit(run)

    def forget_image(self) -> None:
        self._image_key = None
