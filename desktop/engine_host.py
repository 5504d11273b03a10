"""The proposal engine as the desktop sees it: created on first use (no onnxruntime at
start-up), its registry, the model that fits the project's palette (the registry's
rule, shared with the command line), and its messages passed to the GUI thread by signal."""
from __future__ import annotations

import threading
from typing import Optional

from PySide6.QtCore import QObject, Signal

PROPOSING_TASKS = ("semantic", "cam", "instance")


class EngineHost(QObject):
    message = Signal(str)
    device_report = Signal(str, str)  # where inference runs in a few words, and the whole story

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self._registry = None
        self._engine = None
        self._lock = threading.Lock()

    @property
    def registry(self):
        if self._registry is None:
            from inference.registry import Registry

            self._registry = Registry.default()
        return self._registry

    def engine(self):
        """The engine, created at the first call (from any thread)."""
        with self._lock:
            if self._engine is None:
                from inference.engine import Engine

                eng = Engine(self.registry)
                eng.on_message = self.message.emit  # signals cross threads safely
                self._engine = eng
                self.device_report.emit(eng.device_short, eng.device_report)
            return self._engine

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
        if self._engine is not None:
            self._engine.close()
