"""Prompt predictions off the GUI thread: the engine's prompt session (a SAM pair the user
registered, else the click-refinement model, else GrabCut: ``inference.pipelines.prompt_choice``)
gets the image once and a ``predict`` per click. Only the newest request's mask comes
back (``mask_ready``); errors by ``failed``."""
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
        self._bound: tuple[object, Optional[str]] = (None, None)  # (session, image key) set_image was given
        self._session = None
        self._choice: Optional[tuple[int, str]] = None  # (registry generation, name@version)

    @property
    def busy(self) -> bool:
        return self.runner.busy

    def model_name(self) -> str:
        """``name@version`` of the model the next click will use (the answer's own name is
        authoritative). The registry's manifests are read again only when it changed: a few
        ``stat`` calls on the GUI thread otherwise."""
        from inference.pipelines.prompt_choice import choose_prompt_model, describe

        try:
            gen = self.host.registry.generation()
            if self._choice is None or self._choice[0] != gen:
                self._choice = (gen, describe(choose_prompt_model(self.host.registry)))
            return self._choice[1]
        except Exception:  # noqa: BLE001 - only a label: the click itself reports real errors
            return "grabcut@opencv"

    def request(self, rgb: np.ndarray, key: str, points: Sequence[tuple[float, float]], labels: Sequence[int],
                box: Optional[tuple[float, float, float, float]], previous=None) -> int:
        """Ask for the mask of these prompts: ``points`` (N, 2) xy image pixels, ``labels`` 1/0,
        ``box`` xyxy, ``previous`` the ``Mask`` to refine (a selected instance or proposal) or None.
        All the clicks so far go with every request; the session refines its last answer when
        a request extends the last one's clicks."""
        pts = np.asarray(points, np.float32).reshape(-1, 2)
        lab = np.asarray(labels, np.int32).reshape(-1)
        bx = None if box is None else tuple(float(v) for v in box)

        def run():
            sess = self.host.engine().prompt_session()  # chosen again: a new model serves the next click
            self._session = sess
            if self._bound != (sess, key):
                sess.set_image(rgb, key)
                self._bound = (sess, key)
            mask = sess.predict(pts if len(pts) else None, lab if len(lab) else None, bx, previous)
            return mask, f"{sess.model}@{sess.version}"

        return self.runner.submit(run)

    def precompute(self, paths: Sequence[str]) -> None:
        """Embeddings of these images in the background (only when a SAM pair is registered)."""
        paths = [str(p) for p in paths]

        def run():
            if not self.host.has_prompt_model():
                return []
            return self.host.engine().prompt_session().precompute(paths)

        self._precompute.submit(run)

    def forget_image(self) -> None:
        self._bound = (None, None)
