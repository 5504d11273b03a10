"""The prompt tool (P) refines the selected proposal or instance with clicks, in the real
window on a real GDD photograph: one positive click in a region the proposal missed, Enter
keeps it as one undo step (a proposal: refined and accepted, like a corrected proposal),
Ctrl+Z gives back the exact previous mask, Esc cancels without a change, and the click is
in the kept action's log row.

The click model is the shipped one (``assets/models/click-refine``) when it is there, as
in a real installation; otherwise a tiny click model is built here (``model.onnx`` over
``image`` + ``aux`` whose answer is the previous mask plus the positive click disks minus
the negative ones), published in the test's registry, and used through the same pipeline.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt

from annotation.document import ImageStatus, Instance, InstanceState
from annotation.mask import Mask
from assist_fixtures import key
from click_models import disk_click_onnx
from desktop_helpers import GDD, IMAGES, REPO, click, fresh_instances, view_pos

SHIPPED = REPO / "assets" / "models" / "click-refine"




def _home(tmp_path, monkeypatch, build: bool) -> str:
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("SPECULA_HOME", str(tmp_path / "specula_home"))
    from inference.pipelines.prompt_choice import choose_prompt_model, describe
    from inference.registry import Registry

    reg = Registry.default()
    if build:
        pytest.importorskip("onnx")
        path = disk_click_onnx(tmp_path / "build" / "model.onnx")
        reg.publish([path], {"name": "test-clicks", "version": "1", "task": "clicks", "classes": ["object"],
                             "input_size": [96, 96], "output_activation": "sigmoid", "training": {},
                             "metrics": {}, "sources": ["desktop test"]})
    chosen = choose_prompt_model(reg)
    assert chosen is not None and chosen.task == "clicks", chosen
    if build:
        assert chosen.name == "test-clicks"  # the user's own click model before the shipped one
    return describe(chosen)


@pytest.fixture
def click_home(tmp_path, monkeypatch):
    """SPECULA_HOME whose registry offers the shipped click model when there is one (as a
    real installation), else the tiny one built here. Returns its ``name@version``."""
    return _home(tmp_path, monkeypatch, build=not SHIPPED.is_dir())


@pytest.fixture
def disk_home(tmp_path, monkeypatch):
    """SPECULA_HOME with the tiny click model of known answers (chosen over a shipped one)."""
    return _home(tmp_path, monkeypatch, build=True)


@pytest.fixture
def pwindow(click_home, window):
    window.activateWindow()
    return window


@pytest.fixture
def dwindow(disk_home, window):
    window.activateWindow()
    return window


def _truth() -> Mask:
    full = cv2.imread(str(GDD / "mask" / IMAGES[0].replace(".jpg", ".png")), cv2.IMREAD_GRAYSCALE) > 127
    return Mask.from_full(full)


def _missed_proposal(win):
    """Store a glass proposal that misses a block of the true pane (as a proposal run
    would: ``store_proposals``) and return (its id, the truth, the click in the missed block)."""
    from inference.pipelines.clicks import next_click
    from inference.propose import store_proposals

    s = win.session
    truth = _truth()
    assert truth.image_size == s.image_size
    full = truth.to_full()
    x0, y0, x1, y1 = truth.bbox
    cut = full.copy()
    cut[:, (x0 + x1) // 2:] = False  # the right half of the pane is missed
    proposal = Mask.from_full(cut)
    c = next_click(proposal, truth)
    assert c is not None and c.positive  # the largest error is the missed half
    inst = Instance(s.image.id, "glass", proposal, InstanceState.PROPOSED, origin="test-proposer@1", score=0.9)
    with s.action():
        store_proposals(s.store, s.image.id, [inst], model="test-proposer", version="1", proposals=1)
        s.reload_proposals()
    pid = s.proposals()[0].id
    return pid, truth, (round(c.x), round(c.y))


def _centre_on(win, x, y):
    win.canvas.resetTransform()
    win.canvas.centerOn(x, y)


def test_prompt_refines_a_proposal_with_one_click_and_undoes(qtbot, pwindow, click_home):
    win = pwindow
    qtbot.waitUntil(lambda: win.current_rgb is not None, timeout=20000)
    s, c = win.session, win.canvas
    pid, truth, (cx, cy) = _missed_proposal(win)
    before = s.instances[pid].mask.copy()
    status_before = s.image.status
    _centre_on(win, cx, cy)
    s.select([pid])
    key(qtbot, win, Qt.Key.Key_P)
    tool = win.tools["prompt"]
    assert c.tool is tool and click_home in tool.hint() and "refining proposal" in tool.hint()
    n_commands = win.undo_stack.count()

    # Esc cancels: nothing changes, nothing is pushed
    click(qtbot, c, cx, cy)
    assert tool.refining and tool.target == pid
    assert not c.items_by_id[pid].isVisible()  # the preview stands in for it
    qtbot.waitUntil(lambda: tool.mask is not None and not tool.pending, timeout=60000)
    key(qtbot, win, Qt.Key.Key_Escape)
    assert not tool.refining and tool.mask is None and tool._preview is None
    assert c.items_by_id[pid].isVisible()
    assert s.instances[pid].mask == before and s.instances[pid].is_proposal
    assert win.undo_stack.count() == n_commands

    # one positive click in the missed half, Enter: refined and accepted in one step
    click(qtbot, c, cx, cy)
    qtbot.waitUntil(lambda: tool.mask is not None and not tool.pending, timeout=60000)
    assert tool.source == click_home
    key(qtbot, win, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: win.undo_stack.count() == n_commands + 1, timeout=20000)
    inst = s.instances[pid]
    assert inst.state is InstanceState.ACCEPTED
    assert s.image.status is ImageStatus.DONE  # its last waiting proposal was decided, as with A
    missed = Mask.from_full(truth.to_full() & ~before.to_full())
    assert not (before.to_full() & missed.to_full()).any()
    assert (inst.mask.to_full() & missed.to_full()).sum() > 0  # it covers some of the missed region now
    # the clicked region changed: around the click, the mask is not what it was
    r = 10
    assert not np.array_equal(inst.mask.read_box((cx - r, cy - r, cx + r, cy + r)),
                              before.read_box((cx - r, cy - r, cx + r, cy + r)))
    # logged like accepting a corrected proposal, with the click itself
    row = win.store.interactions(actions=["modify_accept"])[-1]
    assert row.instance_id == pid and row.details["tool"] == "prompt_refine" and row.details["edits"] == 1
    assert row.details["origin"] == "test-proposer@1" and row.details["model"] == click_home
    (pt,) = row.details["points"]
    assert abs(pt["x"] - cx) <= 1 and abs(pt["y"] - cy) <= 1 and pt["positive"] is True
    assert pt["model"] == click_home and pt["t"] >= row.started - 0.01
    stored = {i.id: i for i in fresh_instances(win.store.root)}
    assert stored[pid].state is InstanceState.ACCEPTED and stored[pid].mask == inst.mask

    # Ctrl+Z: the proposal again, with exactly its previous mask
    key(qtbot, win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert s.instances[pid].is_proposal and s.instances[pid].mask == before
    assert s.image.status is status_before
    stored = {i.id: i for i in fresh_instances(win.store.root)}
    assert stored[pid].state is InstanceState.PROPOSED and stored[pid].mask == before
    assert win.store.interactions(actions=["undo"])[-1].details["of"] == "modify_accept"


def test_prompt_refines_an_instance_with_a_negative_click(qtbot, dwindow, disk_home):
    """The model's answer is known here (the previous mask minus the negative disk), so
    the removal can be checked at the clicked pixel."""
    win = dwindow
    qtbot.waitUntil(lambda: win.current_rgb is not None, timeout=20000)
    s, c = win.session, win.canvas
    truth = _truth()
    # an accepted instance that spills over the pane's right edge by a block
    full = truth.to_full()
    x0, y0, x1, y1 = truth.bbox
    spill = full.copy()
    spill[y0 + (y1 - y0) // 3:y0 + 2 * (y1 - y0) // 3, x1:min(x1 + 120, full.shape[1])] = True
    from desktop.commands import AddInstanceCommand

    win.undo_stack.push(AddInstanceCommand(s, Instance(s.image.id, "glass", Mask.from_full(spill)), "draw_polygon"))
    iid = s.selection[0]
    before = s.instances[iid].mask.copy()
    cx, cy = min(x1 + 60, full.shape[1] - 5), (y0 + y1) // 2
    _centre_on(win, cx, cy)
    key(qtbot, win, Qt.Key.Key_P)
    tool = win.tools["prompt"]
    n_commands = win.undo_stack.count()
    qtbot.mouseClick(c.viewport(), Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, view_pos(c, cx, cy))
    assert tool.refining and tool.labels == [0]
    qtbot.waitUntil(lambda: tool.mask is not None and not tool.pending, timeout=60000)
    key(qtbot, win, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: win.undo_stack.count() == n_commands + 1, timeout=20000)
    after = s.instances[iid].mask
    assert not after.to_full()[cy, cx] and before.to_full()[cy, cx]  # removed where clicked
    row = win.store.interactions(actions=["prompt_refine"])[-1]
    assert row.instance_id == iid and row.details["points"][0]["positive"] is False
    assert json.loads(json.dumps(row.details)) == row.details  # plain JSON: training reads it
    win.undo_stack.undo()
    assert s.instances[iid].mask == before


def test_quick_clicks_show_the_newest_answer_which_refines_the_earlier_ones(qtbot, dwindow, disk_home):
    """Clicks faster than the answers: each request carries every click so far, only the
    newest answer is shown, and it holds what each click did (the model of known answers
    adds a disk per positive click, removes one per negative click)."""
    win = dwindow
    qtbot.waitUntil(lambda: win.current_rgb is not None, timeout=20000)
    s, c = win.session, win.canvas
    full = np.zeros(s.image_size, bool)
    full[400:600, 500:700] = True
    from desktop.commands import AddInstanceCommand

    win.undo_stack.push(AddInstanceCommand(s, Instance(s.image.id, "glass", Mask.from_full(full)), "draw_polygon"))
    iid = s.selection[0]
    _centre_on(win, 640, 500)
    key(qtbot, win, Qt.Key.Key_P)
    tool = win.tools["prompt"]
    click(qtbot, c, 730, 500)  # right of the square: adds
    qtbot.mouseClick(c.viewport(), Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier,
                     view_pos(c, 600, 500))  # the middle: removes
    click(qtbot, c, 600, 630)  # below: adds
    assert tool.labels == [1, 0, 1]
    qtbot.waitUntil(lambda: tool.mask is not None and not tool.pending, timeout=60000)
    m = tool.mask.to_full()
    assert m[500, 730] and not m[500, 600] and m[630, 600] and m[420, 520]
    assert [p.get("model") for p in tool.click_log] == [disk_home] * 3
    shown = tool.mask.copy()
    key(qtbot, win, Qt.Key.Key_Return)
    assert s.instances[iid].mask == shown  # what was previewed is what is kept
    assert len(win.store.interactions(actions=["prompt_refine"])[-1].details["points"]) == 3
