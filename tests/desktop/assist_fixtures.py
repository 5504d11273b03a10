"""Helpers of the model-assisted desktop tests (their fixtures, ``model_home`` and
``awindow``, are in conftest.py): run 'propose this image' through the real worker."""
from __future__ import annotations

from PySide6.QtCore import Qt


def propose_here(qtbot, win, timeout=30000):
    """Run 'propose this image' through the worker and wait for its proposals."""
    qtbot.waitUntil(lambda: win.current_rgb is not None, timeout=timeout)
    before = len(win.store.interactions(actions=["propose"]))
    win.actions_by_name["action.propose_image"].trigger()
    qtbot.waitUntil(lambda: len(win.store.interactions(actions=["propose"])) > before, timeout=timeout)
    qtbot.waitUntil(lambda: not win.assist.proposer.busy, timeout=timeout)
    qtbot.wait(20)  # panels refresh once per event-loop turn
    return win.session.proposals()


def key(qtbot, win, k, mods=Qt.KeyboardModifier.NoModifier):
    qtbot.keyClick(win.canvas, k, mods)
