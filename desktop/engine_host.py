"""The proposal engine as the desktop sees it: its registry, the model that fits the
project's palette (the registry's rule, shared with the command line), and its messages
passed to the GUI thread by signal.

The engine is made in a worker thread, never on the GUI thread. Making it imports ONNX
Runtime and probes the GPU (``inference.runtime.choose_providers``: a CUDA session is
tried): 200 ms and more, most of it holding the GIL, so wherever it runs the GUI thread
waits for the interpreter. Done by the first proposal, that showed as a 60-130 ms stall
of the editor in the middle of work; so once the window is shown (``start_after_show``,
called by ``desktop.app``) every engine host starts its engine in a worker of its own,
and the status bar's device label fills in when the probe is done (``device_report``).
A host made before that, or in a test without ``desktop.app``, makes its engine at
first use, in the worker that asks for it.
"""
from __future__ import annotations

import threading
import weakref
from typing import Callable, Optional

from PySide6.QtCore import QObject, QTimer, Signal

from inference.registry import PROPOSING_TASKS  # one list of the tasks that propose (stdlib-only module)

# the hosts alive in this process, and whether the window is shown: a host made after
# that (a project opened later) starts its engine at once
_hosts: "weakref.WeakSet[EngineHost]" = weakref.WeakSet()
_window_shown = False
_after_first_engine: list[Callable[[], None]] = []  # run once, by the worker that made the first engine
_after_lock = threading.Lock()


def start_after_show(then: Optional[Callable[[], None]] = None) -> None:
    """The main window is shown: every engine host, now and later, starts its engine in a
    worker (GUI thread only). ``then`` runs once, in the worker that makes the process's
    first engine, after it is made."""
    global _window_shown
    _window_shown = True
    if then is not None:
        with _after_lock:
            _after_first_engine.append(then)
    for host in list(_hosts):
        host.start()


def _run_after_first_engine() -> None:
    with _after_lock:
        todo = list(_after_first_engine)
        _after_first_engine.clear()
    for fn in todo:
        fn()


class EngineHost(QObject):
    message = Signal(str)
    device_report = Signal(str, str)  # where inference runs in a few words, and the whole story

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self._registry = None
        self._engine = None
        self._making = threading.Lock()  # one engine made at a time; held for as long as that takes
        self._state = threading.Lock()  # the fields below, held only for a moment (the GUI thread takes it)
        self._starter: Optional[threading.Thread] = None
        self._closed = False
        _hosts.add(self)
        if _window_shown:
            # after the caller has finished building (signals connected to the label)
            QTimer.singleShot(0, self.start)

    @property
    def registry(self):
        with self._state:
            if self._registry is None:
                from inference.registry import Registry

                self._registry = Registry.default()
            return self._registry

    def start(self) -> None:
        """Make the engine in a worker thread now, unless it is made or being made."""
        if self._closed or self._engine is not None or self._starter is not None:
            return
        # a plain thread, not the Qt pool, whose few threads decode images meanwhile
        self._starter = threading.Thread(target=self._start_in_worker, name="specula-engine-start", daemon=True)
        self._starter.start()

    def _start_in_worker(self) -> None:
        try:
            self.engine()
            _run_after_first_engine()
        except Exception as exc:  # noqa: BLE001 - said to the user; the first proposal tries again and says why
            if self._closed:
                return  # the project closed meanwhile: nothing to say about its engine
            try:
                self.message.emit(f"The proposal engine could not start: {exc}")
            except RuntimeError:  # the host's Qt object went with its project
                pass

    def engine(self):
        """The engine, made at the first call; call it from a worker thread (it may probe the
        GPU, or wait for the worker that does)."""
        registry = self.registry
        with self._making:
            if self._engine is not None:
                return self._engine
            from inference.engine import Engine

            eng = Engine(registry)
            eng.on_message = self._emit_message  # signals cross threads safely
            with self._state:
                closed = self._closed
                if not closed:
                    self._engine = eng
            if closed:  # the project closed while the engine was being made
                eng.close()
                raise RuntimeError("the project was closed")
            try:
                self.device_report.emit(eng.device_short, eng.device_report)
            except RuntimeError:  # the host's Qt object is gone: nobody is listening
                pass
            return eng

    def _emit_message(self, text: str) -> None:
        try:
            self.message.emit(text)
        except RuntimeError:  # the host went with its project
            pass

    @property
    def started(self) -> bool:
        return self._engine is not None

    def models(self) -> list:
        """The active version of every proposing model (``ModelInfo``), by name."""
        reg = self.registry
        out = {}
        for info in reg.list():
            if info.task in PROPOSING_TASKS and info.name not in out:
                try:
                    out[info.name] = reg.active(info.name)
                except Exception:  # noqa: BLE001 - a broken model is left out of the list, reported by the engine
                    continue
        return [out[n] for n in sorted(out)]

    def has_prompt_model(self) -> bool:
        return any(i.task == "prompt" for i in self.registry.list())

    def model_for_palette(self, palette) -> Optional[str]:
        """The name of the model that proposes for ``palette`` (the registry's one rule), or None."""
        info, _why = self.registry.model_for_palette(palette)
        return None if info is None else info.name

    def close(self) -> None:
        """Let the engine go; one still being made in the worker is closed there when done."""
        with self._state:
            self._closed = True
            eng = self._engine
        _hosts.discard(self)
        if eng is not None:
            eng.close()
