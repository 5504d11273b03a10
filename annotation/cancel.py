"""Cancelling long jobs: one definition of "has the user cancelled?" for every layer."""
from __future__ import annotations

import threading
from typing import Callable, Optional, Union

# a threading.Event, or a callable returning True once the user cancelled
Cancel = Optional[Union[threading.Event, Callable[[], bool]]]


def is_cancelled(cancel: Cancel) -> bool:
    """``cancel`` may be None, a ``threading.Event`` or a callable returning True once cancelled."""
    if cancel is None:
        return False
    is_set = getattr(cancel, "is_set", None)  # threading.Event
    if callable(is_set):
        return bool(is_set())
    return bool(cancel()) if callable(cancel) else False
