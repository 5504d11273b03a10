"""Proposing off the GUI thread: this image, a list of images, or the whole project.

The worker only computes (``inference.propose.image_proposals``), and for this image
also draws the overlay images; it never writes to the project. Each image's result comes
back to the GUI thread, which stores it through ``inference.propose.store_proposals``
(one transaction with its log row) on the project's one connection: the open image's
as an undoable ``ProposalsCommand``, any other image's directly. A cancelled or stale
run has written nothing it did not hand over, so there is nothing to clean up.

Requests are snapshotted on the GUI thread (pixels, image record, model, parameters).
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

from PySide6.QtCore import QObject, Signal

from annotation.store import StoreError
from desktop.canvas.view import CanvasView
from desktop.context import ProjectContext
from desktop.review.commands import ProposalsCommand
from desktop.workers import JobRunner


def _image_job(engine_host, rgb, record, model, params):
    """Proposals for the shown image's pixels, with their overlays' bit planes (built here,
    so the GUI thread only shows them). Returns (ImageProposals, [overlay_image(...)])."""
    def run(progress=None, cancel=None):
        from desktop.canvas.overlay import overlay_image
        from inference.propose import ImageProposals, instances_from_proposals
        from inference.tiling import Cancelled

        t0 = time.time()
        eng = engine_host.engine()
        props = eng.propose(rgb, model, None, params, cancel=cancel, progress=progress, image_key=record.sha1)
        info = eng.pipeline(model).info
        name, ver = (props[0].model, props[0].version) if props else (info.name, info.version)
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        new = instances_from_proposals(record.id, props)
        overlays = [overlay_image(i.mask, True) for i in new]
        return ImageProposals(record.id, record.path, new, name, ver, t0), overlays
    return run


def _images_job(engine_host, root, records, model, params):
    """Proposals for many images, each handed over by ``emit`` as soon as it is ready."""
    def run(progress=None, cancel=None, emit=None):
        from inference.propose import ProposeSummary, image_proposals

        summary = ProposeSummary()
        for result in image_proposals(root, records, engine_host.engine(), model, None, params, summary=summary,
                                      progress=progress, cancel=cancel):
            emit(result)
        return summary
    return run


def _workers_job(engine_host, root, records, model, params, workers):
    """The same with ``workers`` worker processes (``inference.batch``): they compute, this
    job hands each image's proposals to the GUI thread, which stores them as always."""
    def run(progress=None, cancel=None, emit=None):
        from annotation.cancel import is_cancelled
        from inference.batch import jobs_for, worker_results
        from inference.propose import ProposeSummary

        engine = engine_host.engine()
        info = engine.pipeline(model, None).info  # every worker loads this version
        summary = ProposeSummary(model=info.name, version=info.version)
        jobs = jobs_for(records)
        paths = {j.image_id: j.path for j in jobs}
        failures: dict[int, str] = {}
        results = worker_results(root, engine.registry, info.name, info.version, jobs, workers=workers,
                                 params=params, failures=failures)
        try:
            for done, (image_id, result, error) in enumerate(results, 1):
                if result is None:
                    summary.skipped[paths.get(image_id, str(image_id))] = error
                else:
                    summary.images += 1
                    summary.proposals += len(result.instances)
                    emit(result)
                if progress:
                    progress(done, len(jobs), paths.get(image_id, ""))
                if is_cancelled(cancel):
                    summary.cancelled = True
                    break
        finally:
            results.close()  # the workers stop; images not started are dropped
        for image_id, why in failures.items():
            summary.skipped[paths.get(image_id, str(image_id))] = f"failed: {why}"
        return summary
    return run


class Proposer(QObject):
    """``busy_changed(bool, text)`` drives the status-bar progress; ``done(text)`` reports;
    ``image_stored(image_id)`` after proposals of an image other than the open one landed."""

    busy_changed = Signal(bool, str)
    progress = Signal(int, int)
    done = Signal(str)
    failed = Signal(str)
    proposals_applied = Signal(str, str, int)  # model, version, count (this image)
    image_stored = Signal(int)

    def __init__(self, ctx: ProjectContext, canvas: CanvasView, *, sync: bool = False):
        super().__init__(ctx)
        self.ctx = ctx
        self.canvas = canvas
        self.runner = JobRunner(self, sync=sync)
        self.runner.result.connect(self._result)
        self.runner.partial.connect(self._partial)
        self.runner.error.connect(self._error)
        self.runner.progress.connect(lambda _rid, d, t: self.progress.emit(d, t))
        self.runner.finished.connect(self._finished)
        self._kind: dict[int, str] = {}
        self._params: dict[int, dict] = {}
        self.model: Optional[str] = None
        self.params: dict = {}
        self.workers = 1  # worker processes for "Propose the whole project" (1: this process's worker thread)

    @property
    def busy(self) -> bool:
        return self.runner.busy

    def cancel(self) -> None:
        self.runner.cancel()

    def _refused(self) -> bool:
        if self.ctx.read_only:
            self.failed.emit(f"Proposals cannot be stored: {self.ctx.read_only}")
            return True
        if any(k == "project" for k in self._kind.values()):
            self.failed.emit("Proposing for the project is running; wait for it or cancel it")
            return True
        return False

    def propose_image(self) -> Optional[int]:
        if self._refused():
            return None
        s, rgb = self.ctx.session, self.ctx.current_rgb
        if s.image is None or rgb is None:
            self.failed.emit("Open an image first (it is still loading?)")
            return None
        rid = self.runner.submit(_image_job(self.ctx.host, rgb, s.image, self.model, dict(self.params)),
                                 with_progress=True, with_cancel=True)
        self._kind[rid], self._params[rid] = "image", dict(self.params)
        self.busy_changed.emit(True, f"Proposing {s.image.path}…")
        return rid

    def propose_images(self, paths: Optional[Sequence[str]] = None) -> Optional[int]:
        """All images (``paths`` None) or the named ones, in the worker."""
        if self._refused():
            return None
        store = self.ctx.store
        records = store.images()
        if paths is not None:
            wanted = set(paths)
            records = [r for r in records if r.path in wanted]
        records = [r for r in records if not r.error]
        if self.workers > 1 and len(records) > 1:
            job = _workers_job(self.ctx.host, store.root, records, self.model, dict(self.params), self.workers)
        else:
            job = _images_job(self.ctx.host, store.root, records, self.model, dict(self.params))
        rid = self.runner.submit(job, with_progress=True, with_cancel=True, with_emit=True)
        self._kind[rid], self._params[rid] = "project", dict(self.params)
        n = "every image" if paths is None else f"{len(records)} images"
        by = f" with {self.workers} worker processes" if self.workers > 1 and len(records) > 1 else ""
        self.busy_changed.emit(True, f"Proposing {n}{by}…")
        return rid

    # ------------------------------------------------------------ results (GUI thread)
    def _apply(self, rid: int, result, overlays=None) -> bool:
        """Store one image's proposals; False (and the run cancelled) when they cannot be."""
        if self.ctx.closed:
            return False
        s = self.ctx.session
        params = self._params.get(rid, {})
        try:
            if s.image is not None and s.image.id == result.image_id:
                keep = result.drop_known(s.store)  # not what is accepted or was rejected already
                if overlays is not None:
                    overlays = [overlays[k] for k in keep]
                cmd = ProposalsCommand(s, result.instances, result.model, result.version, result.started,
                                       sha1=result.sha1, params=params)
                if overlays is not None:
                    cmd.on_stored = lambda ids: self.canvas.preload_overlays(dict(zip(ids, overlays)))
                self.ctx.undo_stack.push(cmd)
                if cmd.failed:
                    self.runner.cancel()
                    return False
                self.proposals_applied.emit(result.model, result.version, len(result.instances))
            else:  # not the open image (the user moved on, or a project run)
                result.store(self.ctx.store, params)
                self.image_stored.emit(result.image_id)
        except StoreError as exc:
            self.runner.cancel()
            self.failed.emit(f"Proposals could not be stored: {exc}")
            return False
        return True

    def _partial(self, rid: int, result) -> None:
        self._apply(rid, result)

    def _result(self, rid: int, value) -> None:
        if self.ctx.closed:
            return
        if self._kind.get(rid) == "image":
            result, overlays = value
            if self._apply(rid, result, overlays):
                self.done.emit(f"{len(result.instances)} proposals from {result.model}@{result.version}")
            return
        summary = value
        text = f"{summary.proposals} proposals on {summary.images} images"
        if summary.model:
            text += f" with {summary.model}@{summary.version}"
        if summary.skipped:
            text += f"; {len(summary.skipped)} skipped"
        if summary.cancelled:
            text += "; cancelled"
        self.done.emit(text)

    def _error(self, rid: int, msg: str) -> None:
        if "Cancelled" in msg:
            self.done.emit("Proposing cancelled")
        else:
            self.failed.emit(f"Proposing failed: {msg}")

    def _finished(self, rid: int) -> None:
        self._kind.pop(rid, None)
        self._params.pop(rid, None)
        if not self.runner.busy:
            self.busy_changed.emit(False, "")
