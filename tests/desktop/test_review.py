"""Reviewing proposals in the real window: propose through the worker, then accept (A),
reject (R), next (N), modify-and-accept, accept all above a score, propose the project."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from annotation.document import InstanceState
from assist_fixtures import key, propose_here
from desktop_helpers import drag, fresh_instances


def _row(win, action):
    rows = win.store.interactions(actions=[action])
    assert rows, f"no {action!r} row in the interaction log"
    return rows[-1]


def test_propose_shows_origin_and_score(qtbot, awindow):
    win = awindow
    props = propose_here(qtbot, win)
    assert len(props) >= 3
    assert all(p.origin == "tiny-mirror-glass@1" and p.state is InstanceState.PROPOSED for p in props)
    panel = win.findChild(type(win.assist.review_panel), "review")
    assert panel is not None and panel.list.count() == len(props)
    first = panel.list.item(0).text()
    assert "tiny-mirror-glass@1" in first and f"{props[0].score:.2f}" in first
    assert f"{len(props)} to review" in panel.count.text()
    assert "in the project" in panel.count.text()
    assert win.assist.device_label.text().startswith("Inference:")
    assert panel.model_combo.currentData() == "tiny-mirror-glass"
    assert not panel.cam.isVisible()  # a semantic model: no CAM controls
    row = _row(win, "propose")
    assert row.details["model"] == "tiny-mirror-glass" and row.details["proposals"] == len(props)
    # the proposals are in the store (autosave), as proposals
    stored = [i for i in fresh_instances(win.store.root) if i.state is InstanceState.PROPOSED]
    assert len(stored) == len(props)


def test_accept_reject_next_keys(qtbot, awindow):
    win = awindow
    props = propose_here(qtbot, win)
    key(qtbot, win, Qt.Key.Key_N)
    first = win.session.selection[0]
    assert first == props[0].id
    key(qtbot, win, Qt.Key.Key_A)
    assert win.session.instances[first].state is InstanceState.ACCEPTED
    acc = _row(win, "accept")
    assert acc.instance_id == first and acc.duration >= 0 and acc.details["origin"] == "tiny-mirror-glass@1"
    # the next proposal is selected: reject it
    second = win.session.selection[0]
    assert second == props[1].id
    key(qtbot, win, Qt.Key.Key_R)
    assert second not in win.session.instances  # hidden from the canvas
    assert second not in win.canvas.items_by_id
    rej = _row(win, "reject")
    assert rej.instance_id == second and rej.duration >= 0
    stored = {i.id: i for i in fresh_instances(win.store.root)}
    assert stored[first].state is InstanceState.ACCEPTED
    assert stored[second].state is InstanceState.REJECTED  # kept: a training negative
    assert stored[first].origin == "tiny-mirror-glass@1"  # provenance survives acceptance
    # undo brings the rejected proposal back
    win.undo_stack.undo()
    assert win.session.instances[second].state is InstanceState.PROPOSED
    assert {i.id: i for i in fresh_instances(win.store.root)}[second].state is InstanceState.PROPOSED


def test_modify_then_accept(qtbot, awindow):
    win = awindow
    props = propose_here(qtbot, win)
    target = max(props, key=lambda p: p.mask.area)
    win.session.select([target.id])
    area0 = target.mask.area
    x0, y0, x1, y1 = target.mask.bbox
    c = win.canvas
    c.centre_on_instance(target.id)
    win.actions_by_name["tool.brush"].trigger()
    c.set_brush_radius(12)
    cx, cy = (x0 + x1) // 2, y1 + 4  # paint just below the proposal: it grows
    drag(qtbot, c, [(cx - 20, cy), (cx, cy), (cx + 20, cy)])
    assert win.session.instances[target.id].mask.area > area0
    key(qtbot, win, Qt.Key.Key_A)
    inst = win.session.instances[target.id]
    assert inst.state is InstanceState.ACCEPTED
    row = _row(win, "modify_accept")
    assert row.instance_id == target.id and row.duration >= 0
    assert row.details["edits"] >= 1 and row.details["edit_duration"] >= 0
    assert not win.store.interactions(actions=["accept"])  # not counted as a plain accept
    stored = {i.id: i for i in fresh_instances(win.store.root)}[target.id]
    assert stored.state is InstanceState.ACCEPTED and stored.mask.area == inst.mask.area


def test_accept_all_above_score(qtbot, awindow):
    win = awindow
    props = propose_here(qtbot, win)
    panel = win.assist.review_panel
    t = sorted(p.score for p in props)[len(props) // 2]
    panel.threshold.setValue(t)
    t = panel.threshold.value()
    qtbot.mouseClick(panel.accept_above, Qt.MouseButton.LeftButton)
    high = {p.id for p in props if p.score >= t}
    assert high and len(high) < len(props)
    for p in props:
        want = InstanceState.ACCEPTED if p.id in high else InstanceState.PROPOSED
        assert win.session.instances[p.id].state is want
    rows = win.store.interactions(actions=["accept"])
    assert {r.instance_id for r in rows} == high
    assert all(r.details["bulk"] and r.duration >= 0 for r in rows)
    qtbot.waitUntil(lambda: panel.list.count() == len(props) - len(high), timeout=2000)


def test_reject_the_rest_clears_an_image_in_one_undoable_step(qtbot, awindow):
    win = awindow
    props = propose_here(qtbot, win)
    qtbot.keyClick(win.canvas.viewport(), Qt.Key.Key_A)  # the best one is kept
    kept = [p.id for p in props if win.session.instances[p.id].state is InstanceState.ACCEPTED]
    assert len(kept) == 1
    panel = win.assist.review_panel
    qtbot.mouseClick(panel.reject_rest, Qt.MouseButton.LeftButton)
    rest = [p.id for p in props if p.id not in kept]
    # rejected proposals leave the canvas (they stay in the store as training negatives)
    assert not any(i in win.session.instances for i in rest)
    stored = {i.id: i.state for i in fresh_instances(win.store.root)}
    assert all(stored[i] is InstanceState.REJECTED for i in rest) and stored[kept[0]] is InstanceState.ACCEPTED
    rows = win.store.interactions(actions=["reject"])
    assert {r.instance_id for r in rows} == set(rest) and all(r.details.get("bulk") for r in rows)
    win.actions_by_name["edit.undo"].trigger()  # one step brings them all back
    assert all(win.session.instances[i].state is InstanceState.PROPOSED for i in rest)


def test_propose_project_in_worker(qtbot, awindow):
    win = awindow
    qtbot.waitUntil(lambda: win.current_rgb is not None, timeout=20000)
    win.actions_by_name["action.propose_project"].trigger()
    assert win.assist.job_bar.isVisible() or not win.assist.proposer.busy
    qtbot.waitUntil(lambda: not win.assist.proposer.busy, timeout=60000)
    assert not win.assist.job_bar.isVisible()
    counts = win.store.instance_counts()
    assert len(counts) == 2 and all(c.get("proposed", 0) > 0 for c in counts.values())
    total = sum(c["proposed"] for c in counts.values())
    qtbot.waitUntil(lambda: f"{total} in the project" in win.assist.review_panel.count.text(), timeout=2000)
    assert win.session.proposals()  # the open image shows its new proposals


def test_about_box(qtbot, awindow):
    awindow.actions_by_name["help.about"].trigger()
    box = awindow.about_box
    qtbot.waitUntil(box.isVisible)
    assert "pecula" in box.text()
    box.close()


def test_cam_controls_debounce(qtbot):
    from desktop.review.cam_controls import CamControls

    w = CamControls()
    qtbot.addWidget(w)
    assert w.params() == {"threshold": 0.1, "closing": 2, "min_area": 20, "iterations": 2}
    got = []
    w.params_changed.connect(got.append)
    w.threshold.setValue(0.2)
    w.iterations.setValue(3)
    w.iterations.setValue(4)
    qtbot.waitUntil(lambda: bool(got), timeout=3000)
    qtbot.wait(600)
    assert got == [{"threshold": 0.2, "closing": 2, "min_area": 20, "iterations": 4}]


if __name__ == "__main__":
    pytest.main([__file__, "-q"])


def test_propose_undo_redo_keeps_ids_and_stale_runs_leave_nothing(qtbot, awindow):
    """The GUI thread stores what the worker proposed; the canvas gets their items over a
    few turns; undo/redo swap whole runs with the same ids; a stale run stores nothing."""
    win = awindow

    def stored_ids():
        return sorted(i.id for i in fresh_instances(win.store.root) if i.state is InstanceState.PROPOSED)

    def shown_ids():
        return sorted(i.id for i in win.session.proposals())

    def all_items_drawn():
        qtbot.waitUntil(lambda: win.canvas.pending_items == 0, timeout=5000)
        assert set(win.canvas.items_by_id) == set(win.session.instances)

    ids1 = sorted(i.id for i in propose_here(qtbot, win))
    assert ids1 and stored_ids() == ids1
    all_items_drawn()
    ids2 = sorted(i.id for i in propose_here(qtbot, win))
    assert ids2 and not set(ids1) & set(ids2)
    assert stored_ids() == ids2 == shown_ids()
    all_items_drawn()
    win.undo_stack.undo()
    assert stored_ids() == ids1 == shown_ids()
    all_items_drawn()
    win.undo_stack.redo()
    assert stored_ids() == ids2 == shown_ids()
    all_items_drawn()
    # a result made stale by a newer request is not applied, and its worker stored nothing
    dropped = []
    win.assist.proposer.runner.dropped.connect(lambda rid, value: dropped.append(value))
    n_logged = len(win.store.interactions(actions=["propose"]))
    win.actions_by_name["action.propose_image"].trigger()
    win.assist.proposer.runner.current = 0  # as if a newer request had been made meanwhile
    qtbot.waitUntil(lambda: not win.assist.proposer.busy, timeout=30000)
    assert len(dropped) == 1 and all(i.id is None for i in dropped[0][0].instances)
    assert stored_ids() == ids2 == shown_ids()
    assert len(win.store.interactions(actions=["propose"])) == n_logged


def test_n_with_nothing_left_goes_on_to_the_next_image_with_proposals(qtbot, awindow):
    win = awindow
    qtbot.waitUntil(lambda: win.current_rgb is not None, timeout=20000)
    win.actions_by_name["action.propose_project"].trigger()
    qtbot.waitUntil(lambda: not win.assist.proposer.busy, timeout=60000)
    first = win.session.image.id
    assert win.session.proposals()
    win.assist.review.reject_rest()  # nothing left to review here: the image is done
    assert win.store.image(first).status.value == "done"
    key(qtbot, win, Qt.Key.Key_N)
    qtbot.waitUntil(lambda: win.session.image.id != first, timeout=10000)
    assert win.session.proposals()  # the image it went to has some
    win.undo_stack.clear()
    win.open_image(first)
    assert win.store.image(first).status.value == "done"
    # Ctrl+F brings the search box forward
    win.actions_by_name["image.find"].trigger()
    assert win.editor.images_box.filters.search.hasFocus() or win.editor.images_box.filters.search.isVisible()


def test_propose_project_with_worker_processes_stores_what_one_worker_does(qtbot, awindow):
    """The Review panel's worker count: two worker processes compute, the window stores each
    image's proposals as it does with one; the result is the same, image for image."""
    import numpy as np

    win = awindow
    qtbot.waitUntil(lambda: win.current_rgb is not None, timeout=20000)

    def stored():
        out = {}
        for rec in win.store.images():
            out[rec.path] = sorted((i.class_name, round(float(i.score), 5), np.packbits(i.mask.to_full()).tobytes())
                                   for i in win.store.instances(rec.id) if i.is_proposal)
        return out

    panel = win.assist.review_panel
    panel.workers.setValue(2)
    assert win.assist.proposer.workers == 2
    win.actions_by_name["action.propose_project"].trigger()
    qtbot.waitUntil(lambda: not win.assist.proposer.busy, timeout=120000)
    with_workers = stored()
    assert len(with_workers) == 2 and all(with_workers.values())
    rows = win.store.interactions(actions=["propose"])
    assert len({r.image_id for r in rows}) == 2  # one log row per image, written by this window

    panel.workers.setValue(1)
    win.actions_by_name["action.propose_project"].trigger()
    qtbot.waitUntil(lambda: not win.assist.proposer.busy, timeout=60000)
    assert stored() == with_workers


def test_random_walk_switch_reaches_the_pipeline_and_the_log(qtbot, awindow):
    win = awindow
    panel = win.assist.review_panel
    assert panel.random_walk.isVisible()  # a semantic model is chosen
    assert not panel.cam.isVisible()
    panel.random_walk.setChecked(True)
    assert win.assist.proposer.params == {"random_walk": True}
    propose_here(qtbot, win)
    row = _row(win, "propose")
    assert row.details["params"] == {"random_walk": True}
    panel.random_walk.setChecked(False)
    assert win.assist.proposer.params == {}
