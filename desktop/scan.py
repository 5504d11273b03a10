"""Scanning a project's folder for new images in a worker, with progress and cancel.

The worker walks the folder and reads image headers (no database); each batch of new
images comes back to the GUI thread, which stores it in one transaction and adds the
rows to the images panel, so the window is usable from the first moment and a large
folder fills in as it is read.
"""
from __future__ import annotations

import time
from typing import Optional

from PySide6.QtCore import QObject, Signal

from annotation.scanning import find_image_files, read_image_headers
from annotation.store import StoreError
from desktop.context import ProjectContext
from desktop.workers import JobRunner

BATCH_SECONDS = 0.25  # hand a batch to the GUI at least this often
BATCH_MAX = 500


def _scan_job(root, known: set[str]):
    def run(progress=None, cancel=None, emit=None):
        bad_names: list[str] = []
        files = find_image_files(root, bad_names)
        found = set(files)
        new = [f for f in files if f not in known]
        batch, last = [], time.monotonic()
        for i, scanned in enumerate(read_image_headers(root, new, cancel=cancel)):
            batch.append(scanned)
            if len(batch) >= BATCH_MAX or time.monotonic() - last > BATCH_SECONDS:
                emit(batch)
                batch, last = [], time.monotonic()
                if progress:
                    progress(i + 1, len(new))
        if batch:
            emit(batch)
        cancelled = bool(cancel is not None and cancel.is_set())
        return {"new": len(new), "missing": sorted(known - found), "cancelled": cancelled, "bad_names": bad_names}
    return run


class FolderScan(QObject):
    """``images_added(records)`` per stored batch; ``progress(done, total)``; ``finished(text)``."""

    images_added = Signal(list)
    progress = Signal(int, int)
    busy_changed = Signal(bool)
    finished = Signal(str)

    def __init__(self, ctx: ProjectContext, *, sync: bool = False):
        super().__init__(ctx)
        self.ctx = ctx
        self.runner = JobRunner(self, sync=sync)
        self.runner.partial.connect(self._batch)
        self.runner.result.connect(self._done)
        self.runner.error.connect(lambda _rid, msg: self._end(f"Scanning the folder failed: {msg}"))
        self.runner.progress.connect(lambda _rid, d, t: self.progress.emit(d, t))
        self.added = 0
        self.missing: list[str] = []

    @property
    def busy(self) -> bool:
        return self.runner.busy

    def start(self) -> Optional[int]:
        """Look for new images; a read-only project is shown as it was stored (one with no
        database at all, kept in memory, is scanned: its images are all there is)."""
        if self.ctx.read_only and not self.ctx.store.in_memory:
            return None
        self.added = 0
        self.busy_changed.emit(True)
        return self.runner.submit(_scan_job(self.ctx.store.root, self.ctx.store.known_image_paths()),
                                  with_progress=True, with_cancel=True, with_emit=True)

    def cancel(self) -> None:
        self.runner.cancel()

    def _batch(self, _rid: int, batch: list) -> None:
        if self.ctx.closed:
            return
        try:
            records = self.ctx.store.add_scanned(batch)
        except StoreError as exc:
            self.runner.cancel()
            self.ctx.say(f"New images could not be added: {exc}", 12000)
            return
        self.added += len(records)
        self.images_added.emit(records)

    def _done(self, _rid: int, value: dict) -> None:
        self.missing = list(value["missing"])
        parts = [f"{self.added} new image{'' if self.added == 1 else 's'} found"]
        if self.missing:
            parts.append(f"{len(self.missing)} missing from the folder (first: {self.missing[0]})")
        if value["bad_names"]:
            parts.append(f"{len(value['bad_names'])} left out: their names are not UTF-8 text (first: "
                         f"{value['bad_names'][0]}); rename them")
        if value["cancelled"]:
            parts.append("scan cancelled: the rest is added next time")
        self._end("; ".join(parts))

    def _end(self, text: str) -> None:
        self.busy_changed.emit(False)
        if not self.ctx.closed:
            self.finished.emit(text)
