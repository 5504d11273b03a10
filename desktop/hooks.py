"""A tiny observer list, so that the plain-Python session can notify the Qt views."""
from __future__ import annotations

from typing import Any, Callable


class Hook:
    """Callbacks called in order with the arguments of ``emit``."""

    def __init__(self) -> None:
        self._fns: list[Callable[..., Any]] = []

    def connect(self, fn: Callable[..., Any]) -> None:
        self._fns.append(fn)

    def disconnect(self, fn: Callable[..., Any]) -> None:
        if fn in self._fns:
            self._fns.remove(fn)

    def emit(self, *args: Any) -> None:
        for fn in list(self._fns):
            fn(*args)
