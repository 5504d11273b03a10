"""Review by clusters in the real window: proposals of the whole project grouped by their
embeddings, Y / N on a representative, Shift+Y on a whole cluster, one undo for it."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from annotation.document import InstanceState


def _proposed_project(qtbot, win):
    qtbot.waitUntil(lambda: win.current_rgb is not None, timeout=20000)
    win.actions_by_name["action.propose_project"].trigger()
    qtbot.waitUntil(lambda: not win.assist.proposer.busy, timeout=60000)
    counts = win.store.instance_counts()
    assert len(counts) == 2 and all(c.get("proposed", 0) > 0 for c in counts.values())
    return sum(c["proposed"] for c in counts.values())


def _dialog(qtbot, win, size: int):
    win.actions_by_name["review.by_clusters"].trigger()
    dlg = win.assist.clusters_dialog
    qtbot.waitUntil(dlg.isVisible)
    dlg.target.setValue(size)
    dlg.rebuild()
    # its keys are its own (Y is also the editor's "accept selected"): it must be the active window
    dlg.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is dlg, timeout=5000)
    dlg.grid.setFocus()
    return dlg


def _states(win) -> dict[int, InstanceState]:
    return {i.id: i.state for i in win.store.instances()}


def test_shift_y_accepts_a_whole_cluster_across_images_and_one_undo_brings_it_back(qtbot, awindow):
    win = awindow
    total = _proposed_project(qtbot, win)
    vectors = win.store.embeddings()
    assert len(vectors) == total  # every stored proposal has its embedding
    dlg = _dialog(qtbot, win, size=max(2, total // 2))
    c = dlg.current()
    assert c is not None and len(c.members) >= 2
    assert dlg.grid.count() == len(c.members)
    qtbot.waitUntil(lambda: all(m in dlg.thumbs for m in c.members), timeout=20000)
    assert any(dlg.thumbs[m] is not None for m in c.members)  # the thumbnails were drawn
    assert not dlg.grid.item(0).icon().isNull()

    qtbot.keyClick(dlg.grid, Qt.Key.Key_Y, Qt.KeyboardModifier.ShiftModifier)
    after = _states(win)
    assert all(after[m] is InstanceState.ACCEPTED for m in c.members)
    rows = [r for r in win.store.interactions(actions=["accept"]) if r.instance_id in c.members]
    assert len(rows) == len(c.members) and all(r.details["cluster"] == c.id for r in rows)
    # the open image's view follows (its proposals of the cluster are accepted there too)
    for m in c.members:
        if m in win.session.instances:
            assert win.session.instances[m].state is InstanceState.ACCEPTED
    assert dlg.current() is None or dlg.current().id != c.id

    qtbot.keyClick(dlg.grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # one undo: the whole cluster
    back = _states(win)
    assert all(back[m] is InstanceState.PROPOSED for m in c.members)
    assert dlg.current() is not None and dlg.current().id == c.id
    undos = [r for r in win.store.interactions(actions=["undo"]) if r.instance_id in c.members]
    assert len(undos) == len(c.members)


def test_answers_on_representatives_propagate_or_split(qtbot, awindow):
    win = awindow
    total = _proposed_project(qtbot, win)
    dlg = _dialog(qtbot, win, size=total)  # one cluster per class
    dlg.reps.setValue(3)
    dlg.rebuild()
    c = dlg.current()
    reps = dlg.review.pending(c)
    assert len(reps) == min(3, len(c.members))
    if len(reps) < 3:
        return  # too few proposals in this class to disagree; the first test covers the rest
    # disagree: yes, no, yes -> the cluster splits into its two sub-trees
    answers = [True, False, True]
    for iid, yes in zip(reps, answers):
        for row in range(dlg.grid.count()):
            if dlg.grid.item(row).data(Qt.ItemDataRole.UserRole) == iid:
                dlg.grid.setCurrentRow(row)
        qtbot.keyClick(dlg.grid, Qt.Key.Key_Y if yes else Qt.Key.Key_N)
    states = _states(win)
    assert [states[i] for i in reps] == [InstanceState.ACCEPTED, InstanceState.REJECTED, InstanceState.ACCEPTED]
    parts = [k for k in dlg.review.clusters.values() if k.parent == c.id]
    assert len(parts) == 2 and "split" in dlg.status.text()
    # nothing beyond the three answers was decided by the disagreeing cluster
    assert sum(s is not InstanceState.PROPOSED for s in states.values()) >= 3
    assert all(states[m] is InstanceState.PROPOSED for m in c.members if m not in reps
               and m not in dlg.review.decided)
