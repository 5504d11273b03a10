"""The training panel's "proposals by model version" table, driven through the real
window: proposals accepted as they were, accepted after a brush stroke, rejected and
waiting are counted per version, and an undone edit does not count as one."""
from __future__ import annotations

from PySide6.QtCore import Qt

from assist_fixtures import key, propose_here
from desktop_helpers import drag


def _table_row(table, origin_prefix):
    for r in range(table.rowCount()):
        if table.item(r, 0).text().startswith(origin_prefix):
            return [table.item(r, c).text() for c in range(table.columnCount())]
    raise AssertionError(f"no row for {origin_prefix} in {[table.item(r, 0).text() for r in range(table.rowCount())]}")


def test_versions_table_counts_what_the_expert_did_with_each_versions_proposals(qtbot, awindow):
    win = awindow
    props = propose_here(qtbot, win)
    assert len(props) >= 3
    table = win.assist.training_panel.versions
    assert table.rowCount() == 0 and not table.isVisible()  # a hidden tab reads nothing
    win.assist.training_panel.views.setCurrentWidget(table)
    assert table.isVisible()
    qtbot.waitUntil(lambda: table.rowCount() == 1, timeout=10000)
    name, as_proposed, edited, rejected, waiting, accepted, _iou = _table_row(table, "v1")
    assert "(in use)" in name and table.item(0, 0).toolTip() == "tiny-mirror-glass@1"
    assert (as_proposed, edited, rejected, waiting, accepted) == ("0", "0", "0", str(len(props)), "-")

    # a brush stroke on the largest proposal, then accept it (A): accepted after an edit
    target = max(props, key=lambda p: p.mask.area)
    win.session.select([target.id])
    x0, y0, x1, y1 = target.mask.bbox
    c = win.canvas
    c.centre_on_instance(target.id)
    win.actions_by_name["tool.brush"].trigger()
    c.set_brush_radius(12)
    cx, cy = (x0 + x1) // 2, y1 + 4
    drag(qtbot, c, [(cx - 20, cy), (cx, cy), (cx + 20, cy)])
    key(qtbot, win, Qt.Key.Key_A)
    # the next one: a stroke undone, then accepted as it was proposed
    other = win.session.selection[0]
    ox0, oy0, ox1, oy1 = win.session.instances[other].mask.bbox
    c.centre_on_instance(other)
    drag(qtbot, c, [((ox0 + ox1) // 2 - 10, oy1 + 4), ((ox0 + ox1) // 2 + 10, oy1 + 4)])
    win.undo_stack.undo()
    key(qtbot, win, Qt.Key.Key_A)
    # and one rejected
    key(qtbot, win, Qt.Key.Key_R)
    table.refresh()
    _, as_proposed, edited, rejected, waiting, accepted, _ = _table_row(table, "v1")
    assert (as_proposed, edited, rejected, waiting) == ("1", "1", "1", str(len(props) - 3))
    assert accepted == "67 %"
    # the edits were logged under the names the table counts
    assert {r.instance_id for r in win.store.interactions(actions=["brush"])} == {target.id, other}
    assert [r.details["of"] for r in win.store.interactions(actions=["undo"]) if r.instance_id == other] == ["brush"]
    # a stroke undone is no edit: the decision is logged as a plain accept
    assert [r.instance_id for r in win.store.interactions(actions=["accept"])] == [other]
    assert [r.instance_id for r in win.store.interactions(actions=["modify_accept"])] == [target.id]
    # undo the reject: the table follows once the expert pauses
    win.undo_stack.undo()
    qtbot.waitUntil(lambda: _table_row(table, "v1")[3] == "0", timeout=10000)
