"""The prompt tool (P) and the weak-click tool (K) in the real window. No SAM pair is
registered, so the prompt tool runs on the click-refinement model when one is shipped
(else the GrabCut fallback), off the GUI thread. Refining a selected mask:
test_prompt_refine.py."""
from __future__ import annotations

from PySide6.QtCore import Qt

from annotation.document import InstanceState
from assist_fixtures import key
from desktop_helpers import click, drag, fresh_instances, view_pos


def _prompt(win):
    return win.tools["prompt"]


def test_prompt_clicks_and_enter_make_an_instance(qtbot, awindow):
    win = awindow
    qtbot.waitUntil(lambda: win.current_rgb is not None, timeout=20000)
    c = win.canvas
    key(qtbot, win, Qt.Key.Key_P)
    assert win.canvas.tool is _prompt(win)
    assert win.actions_by_name["tool.prompt"].isChecked()
    win.session.set_current_class("mirror")
    tool = _prompt(win)
    click(qtbot, c, 640, 500)  # positive
    qtbot.waitUntil(lambda: tool.mask is not None and not tool.pending, timeout=20000)
    first = tool.mask.area
    assert first > 0
    qtbot.mouseClick(c.viewport(), Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier,
                     view_pos(c, 600, 470))  # negative
    assert tool.labels == [1, 0]
    qtbot.waitUntil(lambda: not tool.pending, timeout=20000)
    assert tool.mask is not None and tool._preview is not None  # the preview overlay
    n_before = len(win.session.instances)
    key(qtbot, win, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(win.session.instances) == n_before + 1, timeout=20000)
    new = [i for i in win.session.instances.values() if i.origin == "manual"][-1]
    assert new.class_name == "mirror" and new.state is InstanceState.ACCEPTED and new.mask.area > 0
    row = win.store.interactions(actions=["prompt"])[-1]
    assert row.instance_id == new.id and row.duration >= 0
    assert row.details["clicks"] == 2 and row.details["positive"] == 1 and row.details["negative"] == 1
    assert row.details["model"] == tool.source == win.assist.predictor.model_name()
    assert [p["positive"] for p in row.details["points"]] == [True, False]
    assert tool.points == [] and tool.mask is None  # ready for the next object
    stored = [i for i in fresh_instances(win.store.root) if i.id == new.id]
    assert stored and stored[0].mask.area == new.mask.area
    # one undo step
    win.undo_stack.undo()
    assert new.id not in win.session.instances


def test_prompt_box_and_escape(qtbot, awindow):
    win = awindow
    qtbot.waitUntil(lambda: win.current_rgb is not None, timeout=20000)
    win.actions_by_name["tool.prompt"].trigger()
    tool = _prompt(win)
    c = win.canvas
    drag(qtbot, c, [(560, 420), (600, 460), (720, 580)])
    assert tool.box is not None and tool.box[0] < tool.box[2]
    qtbot.waitUntil(lambda: tool.mask is not None and not tool.pending, timeout=20000)
    x0, y0, x1, y1 = tool.mask.bbox
    assert x0 >= 520 and x1 <= 760  # inside the box plus a margin (GrabCut's, or the click model's window)
    key(qtbot, win, Qt.Key.Key_Escape)
    assert tool.mask is None and tool.box is None and tool._preview is None
    n = len(win.session.instances)
    key(qtbot, win, Qt.Key.Key_Return)  # nothing to keep
    assert len(win.session.instances) == n


def test_weak_clicks(qtbot, awindow):
    win = awindow
    qtbot.waitUntil(lambda: win.current_rgb is not None, timeout=20000)
    key(qtbot, win, Qt.Key.Key_K)
    assert win.canvas.tool is win.tools["weak_click"]
    win.session.set_current_class("glass")
    c = win.canvas
    click(qtbot, c, 600, 500)
    qtbot.mouseClick(c.viewport(), Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, view_pos(c, 700, 520))
    rows = win.store.interactions(actions=["weak_click"])
    assert len(rows) == 2
    pos, neg = rows[0].details, rows[1].details
    assert pos["positive"] is True and neg["positive"] is False
    assert rows[0].class_name == "glass" and abs(pos["x"] - 600) <= 1 and abs(pos["y"] - 500) <= 1
    assert all(r.duration >= 0 and r.image_id == win.session.image.id for r in rows)
    assert len(win.markers._clicks) == 2
    win.undo_stack.undo()
    assert len(win.markers._clicks) == 1
    assert win.store.interactions(actions=["weak_click_undone"])[-1].details["log_id"] == rows[1].id
    win.undo_stack.redo()
    assert len(win.session.weak_clicks) == 2
    # the markers come back with the image
    win.open_image(win.session.image.id)
    assert len(win.session.weak_clicks) == 2
