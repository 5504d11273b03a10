"""Proposing off the GUI thread: this image (stored and drawn by the worker; the GUI
thread swaps them in as one undoable ``ProposalsCommand`` and the canvas creates their
items a few per event-loop turn) or a list of images / the whole project (written to
the store by the worker through its own connection; the open image is reloaded at the end).

Requests are snapshotted on the GUI thread (pixels, image id, model, parameters);
results come back by signal and are dropped when a newer request was made.
"""
from __future__ import annotations

import glob
import time
from typing import Optional, Sequence

from PySide6.QtCore import QObject, Signal

from annotation.document import Instance, InstanceState, model_origin
from desktop.review.commands import ProposalsCommand
from desktop.workers import JobRunner


def _image_job(engine_host, rgb, model, params, key, root: str, image_id: int):
    """Propose, store the proposals through the worker's own connection (one transaction)
    and draw their overlay images, so the GUI thread only swaps them in. Returns
    (instances with their stored ids, model name, version, {id: overlay_image(...)})."""
    def run(progress=None, cancel=None):
        from annotation.store import ProjectStore
        from desktop.canvas.overlay import overlay_image
        from inference.tiling import Cancelled

        eng = engine_host.engine()
        props = eng.propose(rgb, model, None, params, cancel=cancel, progress=progress, image_key=key)
        if props:
            name, ver = props[0].model, props[0].version
        else:
            info = eng.pipeline(model).info
            name, ver = info.name, info.version
        new = [Instance(image_id, p.class_name, p.mask, InstanceState.PROPOSED, model_origin(p.model, p.version),
                        float(p.score)) for p in props]
        if cancel is not None and cancel.is_set():  # stale or cancelled: store nothing
            raise Cancelled("cancelled")
        store = ProjectStore.open(root, scan=False)  # one connection per thread
        try:
            store.add_instances(new)
        finally:
            store.close()
        overlays = {i.id: overlay_image(i.mask, True) for i in new}
        return new, name, ver, overlays
    return run


def _project_job(engine_host, root: str, model, params, paths: Optional[Sequence[str]]):
    def run(progress=None, cancel=None):
        from annotation.store import ProjectStore
        from inference.propose import propose_project

        store = ProjectStore.open(root, scan=False)  # one connection per thread
        try:
            eng = engine_host.engine()
            if paths is None:
                return [propose_project(store, eng, model, None, progress, cancel, params=params)]
            out = []
            for i, p in enumerate(paths):
                if cancel is not None and cancel.is_set():
                    break
                out.append(propose_project(store, eng, model, glob.escape(p), None, cancel, params=params))
                if progress:
                    progress(i + 1, len(paths), p)
            return out
        finally:
            store.close()
    return run


class Proposer(QObject):
    """``busy_changed(bool, text)`` drives the status-bar progress; ``done(text)`` reports."""

    busy_changed = Signal(bool, str)
    progress = Signal(int, int)
    done = Signal(str)
    failed = Signal(str)
    proposals_applied = Signal(str, str, int)  # model, version, count (this image)

    def __init__(self, window, engine_host, *, sync: bool = False):
        super().__init__(window)
        self.win = window
        self.host = engine_host
        self.runner = JobRunner(self, sync=sync)
        self.runner.result.connect(self._result)
        self.runner.dropped.connect(self._dropped)
        self.runner.error.connect(self._error)
        self.runner.progress.connect(lambda _rid, d, t: self.progress.emit(d, t))
        self.runner.finished.connect(self._finished)
        self._kind: dict[int, tuple] = {}
        self.model: Optional[str] = None
        self.params: dict = {}
        self.last_origin: Optional[str] = None

    @property
    def busy(self) -> bool:
        return self.runner.busy

    def cancel(self) -> None:
        self.runner.cancel()

    def _project_running(self) -> bool:
        if any(k[0] == "project" for k in self._kind.values()):
            self.failed.emit("Proposing for the project is running; wait for it or cancel it")
            return True
        return False

    def propose_image(self) -> Optional[int]:
        if self._project_running():
            return None
        s, rgb = self.win.session, self.win.current_rgb
        if s is None or s.image is None or rgb is None:
            self.failed.emit("Open an image first (it is still loading?)")
            return None
        snap = (s.image.id, time.time())
        rid = self.runner.submit(_image_job(self.host, rgb, self.model, dict(self.params), s.image.sha1,
                                            str(self.win.store.root), s.image.id),
                                 with_progress=True, with_cancel=True)
        self._kind[rid] = ("image", *snap)
        self.busy_changed.emit(True, f"Proposing {s.image.path}…")
        return rid

    def propose_images(self, paths: Optional[Sequence[str]] = None) -> Optional[int]:
        """All images (``paths`` None) or the named ones, in the worker."""
        s = self.win.session
        if s is None or self._project_running():
            return None
        rid = self.runner.submit(_project_job(self.host, str(self.win.store.root), self.model, dict(self.params),
                                              None if paths is None else list(paths)),
                                 with_progress=True, with_cancel=True)
        self._kind[rid] = ("project", None, time.time())
        n = "every image" if paths is None else f"{len(paths)} images"
        self.busy_changed.emit(True, f"Proposing {n}…")
        return rid

    # ------------------------------------------------------------ results (GUI thread)
    def _result(self, rid: int, value) -> None:
        kind, image_id, started = self._kind.get(rid, (None, None, 0.0))
        s = self.win.session
        if kind == "image":
            new, name, ver, overlays = value  # already in the store
            self.last_origin = model_origin(name, ver)
            if s.image is not None and s.image.id == image_id:
                self.win.canvas.preload_overlays(overlays)
                self.win.undo_stack.push(ProposalsCommand(s, new, name, ver, started, stored=True))
                self.proposals_applied.emit(name, ver, len(new))
            else:  # the user moved on: they replace that image's proposals
                with s.store.transaction():
                    s.store.delete_instances(image_id, [InstanceState.PROPOSED], keep=[i.id for i in new])
                    s.store.log("propose", image_id=image_id, started=started, model=name, version=ver,
                                proposals=len(new))
            self.done.emit(f"{len(new)} proposals from {name}@{ver}")
        elif kind == "project":
            summaries = value
            n = sum(x.proposals for x in summaries)
            imgs = sum(x.images for x in summaries)
            skipped = sum(len(x.skipped) for x in summaries)
            last = summaries[-1] if summaries else None
            if last is not None and last.model:
                self.last_origin = model_origin(last.model, last.version)
            self.win.reload_current_image_proposals()
            text = f"{n} proposals on {imgs} images"
            if last is not None and last.model:
                text += f" with {last.model}@{last.version}"
            if skipped:
                text += f"; {skipped} skipped"
            if any(x.cancelled for x in summaries):
                text += "; cancelled"
            self.done.emit(text)

    def _dropped(self, rid: int, value) -> None:
        """A stale run of this image stored proposals nobody will see: take them out again."""
        kind = self._kind.get(rid, (None,))[0]
        if kind == "image" and self.win.store is not None:
            self.win.store.delete_instance_ids([i.id for i in value[0]])

    def _error(self, rid: int, msg: str) -> None:
        if "Cancelled" in msg:
            self.done.emit("Proposing cancelled")
        else:
            self.failed.emit(f"Proposing failed: {msg}")

    def _finished(self, rid: int) -> None:
        self._kind.pop(rid, None)
        if not self.runner.busy:
            self.busy_changed.emit(False, "")
