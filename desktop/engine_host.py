"""The proposal engine as the desktop sees it: created on first use (no onnxruntime at
start-up), its registry, the model that fits the project's palette, and its messages
passed to the GUI thread by signal."""
from __future__ import annotations

import threading
from typing import Optional

from PySide6.QtCore import QObject, Signal

# palette name -> a substring of the names of the models made for it
PALETTE_MODELS = {"mirror-glass": "mirror-glass", "inspection": "cracks"}
PROPOSING_TASKS = ("semantic", "cam", "instance")


def pick_model(palette_name: str, model_names: list[str], active: Optional[str]) -> Optional[str]:
    """The model for a palette: a name containing the palette's keyword, else ``active``."""
    key = PALETTE_MODELS.get(palette_name, palette_name)
    for n in model_names:
        if key and key in n:
            return n
    if active in model_names:
        return active
    return model_names[0] if model_names else None


class EngineHost(QObject):
    message = Signal(str)
    device_report = Signal(str)

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
                self.device_report.emit(eng.device_report)
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

    def default_model(self, palette_name: str) -> Optional[str]:
        """The palette's model; the user's own (trained, imported) before shipped ones."""
        infos = sorted(self.models(), key=lambda i: (i.read_only, i.name))
        names = [i.name for i in infos]
        try:
            active = self.registry.active().name
        except Exception:  # noqa: BLE001 - several models and no default: pick by name
            active = None
        return pick_model(palette_name, names, active)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
