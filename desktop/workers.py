"""Background jobs for the GUI (STYLE.md item 7): the caller snapshots its request on
the GUI thread and hands a plain function to ``JobRunner.submit``; the function runs in
the runner's own thread pool and its result, error and end come back on the GUI thread
by signal. A newer request of the same runner makes older results stale: they are
dropped, never applied (``dropped`` hands them to the owner, to undo what the job wrote).
``sync=True`` runs jobs inline (tests, scripts).
"""
from __future__ import annotations

import itertools
import threading
import traceback
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class _Job(QRunnable):
    def __init__(self, fn: Callable[[], None]):
        super().__init__()
        self.fn = fn
        self.setAutoDelete(True)

    def run(self) -> None:
        self.fn()


class JobRunner(QObject):
    """One kind of job (proposing, prompting...), newest request wins.

    Signals (all on the GUI thread):
        result(rid, value): the job's return value, only for the current request;
        error(rid, message): what went wrong (never swallowed), only for the current request;
        progress(rid, done, total): from the job's ``progress`` callback;
        partial(rid, value): a piece of the result handed over early by the job's ``emit``
            callback (one image of a project run), only for the current request;
        dropped(rid, value): a stale request's return value (not applied), for clean-up;
        finished(rid): always, for every request, after result or error.
    """

    result = Signal(int, object)
    dropped = Signal(int, object)
    error = Signal(int, str)
    progress = Signal(int, int, int)
    partial = Signal(int, object)
    finished = Signal(int)
    _partial = Signal(int, object)
    _result = Signal(int, object)
    _error = Signal(int, str)

    def __init__(self, parent: Optional[QObject] = None, *, threads: int = 1, sync: bool = False):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self.sync = sync
        self._ids = itertools.count(1)
        self.current = 0
        self.running: set[int] = set()
        self.cancel_event = threading.Event()
        self._result.connect(self._on_result)
        self._partial.connect(self._on_partial)
        self._error.connect(self._on_error)

    @property
    def busy(self) -> bool:
        return bool(self.running)

    def submit(self, fn: Callable[..., Any], *, with_progress: bool = False, with_cancel: bool = False,
               with_emit: bool = False) -> int:
        """Run ``fn()`` (or ``fn(progress=..., cancel=..., emit=...)``) in the pool; returns the request id."""
        rid = next(self._ids)
        self.current = rid
        self.cancel_event.set()  # the older request is stale: let it stop early
        self.cancel_event = cancel = threading.Event()
        self.running.add(rid)
        kwargs: dict[str, Any] = {}
        if with_progress:
            kwargs["progress"] = lambda done, total, *_: self.progress.emit(rid, int(done), int(total))
        if with_cancel:
            kwargs["cancel"] = cancel
        if with_emit:
            kwargs["emit"] = lambda value: self._deliver("_partial", rid, value)

        def job() -> None:
            try:
                value = fn(**kwargs)
            except Exception as exc:  # reported by signal, never swallowed
                msg = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
                traceback.print_exc()
                self._deliver("_error", rid, msg)
            else:
                self._deliver("_result", rid, value)

        if self.sync:
            job()
        else:
            self.pool.start(_Job(job))
        return rid

    def _deliver(self, signal: str, rid: int, value: object) -> None:
        try:
            getattr(self, signal).emit(rid, value)
        except RuntimeError:  # the runner was deleted with its project meanwhile: nobody is listening
            pass

    def cancel(self) -> None:
        self.cancel_event.set()

    def _on_result(self, rid: int, value: object) -> None:
        try:
            if rid == self.current:
                self.result.emit(rid, value)
            else:
                self.dropped.emit(rid, value)
        finally:
            self._done(rid)

    def _on_partial(self, rid: int, value: object) -> None:
        if rid == self.current:
            self.partial.emit(rid, value)

    def _on_error(self, rid: int, msg: str) -> None:
        try:
            if rid == self.current:
                self.error.emit(rid, msg)
        finally:
            self._done(rid)

    def _done(self, rid: int) -> None:
        self.running.discard(rid)
        self.finished.emit(rid)

    def wait(self, msecs: int = 30000) -> bool:
        return self.pool.waitForDone(msecs)
