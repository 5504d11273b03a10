"""The command line that runs another Specula job as a separate process of this same program.

In a PyInstaller bundle ``sys.executable`` is the bundle's own ``specula`` executable,
which takes the subcommand directly (``specula train ...``); from source it is the
Python interpreter, which needs ``-m specula``. The GUI starts training this way
(STYLE.md item 9: the frozen application relaunches its own executable).
"""
from __future__ import annotations

import sys


def is_frozen() -> bool:
    """True inside a PyInstaller bundle."""
    return bool(getattr(sys, "frozen", False))


def own_command(*args: str) -> list[str]:
    """``[executable, *args]`` frozen, ``[python, "-m", "specula", *args]`` from source."""
    if is_frozen():
        return [sys.executable, *args]
    return [sys.executable, "-m", "specula", *args]
