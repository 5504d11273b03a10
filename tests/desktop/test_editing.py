"""End to end: the real main window driven with mouse and key events on a real project."""
import pytest
from PySide6.QtCore import Qt

from annotation.mask import rasterize_polygon
from desktop_helpers import click, densify, drag, fresh_instances, scene_point

SQUARE = [(500, 400), (700, 400), (700, 600), (500, 600)]


def draw_square(qtbot, win, pts=SQUARE):
    win.actions_by_name["tool.polygon"].trigger()
    c = win.canvas
    for x, y in pts:
        click(qtbot, c, x, y)
    click(qtbot, c, *pts[0])  # close on the first vertex
    return rasterize_polygon([scene_point(c, x, y) for x, y in pts], win.session.image_size)


def masks(win):
    return {i: inst.mask.copy() for i, inst in win.session.instances.items()}


def same(a, b):
    return a.keys() == b.keys() and all(a[k] == b[k] for k in a)


def test_polygon_is_stored_as_rasterized(qtbot, window, project):
    expected = draw_square(qtbot, window)
    insts = fresh_instances(project, window.session.image.path)
    assert len(insts) == 1
    assert insts[0].mask == expected
    assert insts[0].class_name == "mirror"
    log = [i.action for i in window.store.interactions()]
    assert "draw_polygon" in log


def test_polygon_keys_enter_backspace_escape(qtbot, window):
    c = window.canvas
    window.actions_by_name["tool.polygon"].trigger()
    for x, y in SQUARE + [(650, 650)]:
        click(qtbot, c, x, y)
    qtbot.keyClick(c, Qt.Key.Key_Backspace)  # drops (650, 650)
    qtbot.keyClick(c, Qt.Key.Key_Return)
    assert len(window.session.instances) == 1
    inst = next(iter(window.session.instances.values()))
    assert inst.mask == rasterize_polygon([scene_point(c, *p) for p in SQUARE], inst.mask.image_size)
    click(qtbot, c, 100, 100)
    click(qtbot, c, 200, 100)
    qtbot.keyClick(c, Qt.Key.Key_Escape)
    qtbot.keyClick(c, Qt.Key.Key_Return)
    assert len(window.session.instances) == 1


def test_brush_and_eraser_then_undo_redo(qtbot, window, project):
    draw_square(qtbot, window)
    inst = next(iter(window.session.instances.values()))
    a0 = inst.mask.area
    states = [masks(window)]
    c = window.canvas
    c.set_brush_radius(6)
    window.actions_by_name["tool.brush"].trigger()
    drag(qtbot, c, densify([(690, 500), (760, 500), (760, 540)], step=15))  # fast drag, large steps
    a1 = inst.mask.area
    assert a1 > a0
    # no gaps: the whole stroke line is painted
    assert inst.mask.read_box((700, 497, 760, 504)).all()
    states.append(masks(window))
    window.actions_by_name["tool.eraser"].trigger()
    drag(qtbot, c, densify([(550, 450), (650, 450)]))
    assert inst.mask.area < a1
    assert not inst.mask.read_box((555, 447, 645, 454)).any()  # holes survive
    states.append(masks(window))
    stored = fresh_instances(project, window.session.image.path)
    assert stored[0].mask == inst.mask
    acts = [i.action for i in window.store.interactions()]
    assert "brush" in acts and "erase" in acts
    for it in window.store.interactions(actions=["brush", "erase"]):
        assert it.ended >= it.started and "area_change" in it.details
    # undo everything back to identical masks, then redo
    stack = window.undo_stack
    for expected in reversed(states[:-1]):
        stack.undo()
        assert same(masks(window), expected)
    stack.undo()  # the polygon
    assert window.session.instances == {}
    assert fresh_instances(project, window.session.image.path) == []
    stack.redo()
    for expected in states[1:]:
        stack.redo()
        assert same(masks(window), expected)
    assert fresh_instances(project, window.session.image.path)[0].mask == states[-1][inst.id]


def test_reroute_outward_and_inward(qtbot, window):
    draw_square(qtbot, window)
    inst = next(iter(window.session.instances.values()))
    c = window.canvas
    window.actions_by_name["tool.reroute"].trigger()
    m0 = inst.mask.copy()
    # outward: from the top edge up 40 px, across 100 px, back down
    drag(qtbot, c, densify([(550, 400), (550, 360), (650, 360), (650, 400)]))
    m1 = inst.mask.copy()
    gain = m1.area - m0.area
    assert 0.8 * 100 * 40 < gain < 1.2 * 100 * 40
    assert m1.bbox[1] == 360
    # inward: a 50 px deep notch from the left edge
    drag(qtbot, c, densify([(500, 450), (550, 450), (550, 550), (500, 550)]))
    m2 = inst.mask.copy()
    loss = m1.area - m2.area
    assert 0.8 * 50 * 100 < loss < 1.2 * 50 * 100
    assert not m2.read_box((502, 455, 548, 545)).any()
    acts = [i.action for i in window.store.interactions(actions=["reroute"])]
    assert len(acts) == 2
    window.undo_stack.undo()
    assert inst.mask == m1
    window.undo_stack.undo()
    assert inst.mask == m0
    window.undo_stack.redo()
    window.undo_stack.redo()
    assert inst.mask == m2


def test_shift_adds_ctrl_cuts_and_ops(qtbot, window):
    draw_square(qtbot, window)
    inst = next(iter(window.session.instances.values()))
    c = window.canvas
    window.actions_by_name["tool.polygon"].trigger()
    extra = [(650, 550), (800, 550), (800, 650), (650, 650)]
    for p in extra:
        click(qtbot, c, *p)
    click(qtbot, c, *extra[0], Qt.KeyboardModifier.ShiftModifier)
    assert len(window.session.instances) == 1
    assert inst.mask.bbox[2] == 801
    hole = [(560, 460), (640, 460), (640, 540), (560, 540)]
    for p in hole:
        click(qtbot, c, *p)
    click(qtbot, c, *hole[0], Qt.KeyboardModifier.ControlModifier)
    assert not inst.mask.read_box((570, 470, 630, 530)).any()
    before = inst.mask.copy()
    A = window.actions_by_name
    A["mask.fill_holes"].trigger()
    assert inst.mask.read_box((570, 470, 630, 530)).all()
    A["mask.dilate"].trigger()
    A["mask.erode"].trigger()
    for _ in range(3):
        window.undo_stack.undo()
    assert inst.mask == before


def test_split_merge_delete_class_and_kill_reopen(qtbot, window, project):
    draw_square(qtbot, window)
    draw_square(qtbot, window, [(100, 100), (200, 100), (200, 200), (100, 200)])
    ids = list(window.session.instances)
    window.session.select(ids)
    window.actions_by_name["mask.merge"].trigger()
    assert len(window.session.instances) == 1
    window.actions_by_name["mask.split"].trigger()
    assert len(window.session.instances) == 2
    # number key 2: current class and the selection's class
    window.session.select([next(iter(window.session.instances))])
    window.actions_by_name["class.2"].trigger()
    assert window.session.current_class == "glass"
    classes = sorted(i.class_name for i in window.session.instances.values())
    assert classes == ["glass", "mirror"]
    window.actions_by_name["mask.delete"].trigger()
    assert len(window.session.instances) == 1
    expected = masks(window)
    # "kill": no save, read through a fresh connection while the window is still open
    stored = fresh_instances(project, window.session.image.path)
    assert {i.id: i.mask for i in stored}.keys() == expected.keys()
    assert all(i.mask == expected[i.id] for i in stored)
    window.undo_stack.undo()  # undo delete restores the same id
    assert len(fresh_instances(project, window.session.image.path)) == 2


def test_double_click_selects_and_centres(qtbot, window):
    draw_square(qtbot, window)
    window.actions_by_name["tool.select"].trigger()
    window.session.select([])
    c = window.canvas
    from desktop_helpers import view_pos

    qtbot.mouseDClick(c.viewport(), Qt.MouseButton.LeftButton, pos=view_pos(c, 520, 420))
    assert window.session.selection == list(window.session.instances)
    centre = c.mapToScene(c.viewport().rect().center())
    assert abs(centre.x() - 600) < 2 and abs(centre.y() - 500) < 2


def test_brush_with_nothing_selected_paints_a_new_instance(qtbot, window, project):
    from annotation.mask import Mask

    c = window.canvas
    s = window.session
    assert s.selection == [] and s.instances == {}
    s.set_current_class(s.palette.names[1])
    cls = s.current_class
    # the eraser has nothing to erase from: it says so and changes nothing
    window.actions_by_name["tool.eraser"].trigger()
    drag(qtbot, c, densify([(300, 300), (360, 300)]))
    assert s.instances == {}
    assert "select an instance to erase from" in window.statusBar().currentMessage().lower()
    c.set_brush_radius(7)
    window.actions_by_name["tool.brush"].trigger()
    pts = densify([(300, 300), (380, 300), (380, 360)], step=9)
    drag(qtbot, c, pts)
    expected = Mask.empty(s.image_size)
    expected.paint_stroke([scene_point(c, x, y) for x, y in pts], 7)
    stored = fresh_instances(project, s.image.path)
    assert len(stored) == 1
    assert stored[0].class_name == cls and stored[0].origin == "manual"
    assert stored[0].mask.area == expected.area and stored[0].mask == expected
    (iid,) = s.instances
    assert s.selection == [iid]  # the new instance is selected: the next stroke adds to it
    (log,) = window.store.interactions(actions=["brush"])
    assert log.instance_id == iid and log.class_name == cls and log.details["from_scratch"]
    assert log.details["area_change"] == expected.area and log.ended >= log.started
    assert len(window.store.interactions(actions=["erase"])) == 0
    window.undo_stack.undo()
    assert s.instances == {}
    assert fresh_instances(project, s.image.path) == []
    window.undo_stack.redo()
    (again,) = fresh_instances(project, s.image.path)
    assert again.id == iid and again.class_name == cls and again.mask == expected


def test_canvas_creates_many_new_items_over_several_turns(qtbot, window):
    from annotation.document import Instance, InstanceState
    from annotation.mask import Mask
    from desktop.canvas.view import ADD_CHUNK

    s, c = window.session, window.canvas
    new = []
    for k in range(2 * ADD_CHUNK + 5):
        m = Mask.empty(s.image_size)
        m.paint_stroke([(20 + 25 * (k % 40), 20 + 25 * (k // 40))], 8)
        new.append(Instance(s.image.id, s.current_class, m, InstanceState.PROPOSED, "m@1", 0.5))
    from desktop.review.commands import ProposalsCommand

    window.undo_stack.push(ProposalsCommand(s, new, "m", "1", 0.0))  # one turn adds them all to the session
    assert len(c.items_by_id) == ADD_CHUNK and c.pending_items == len(new) - ADD_CHUNK
    late = max(s.instances)
    with s.action():
        s.remove_instance(late)  # gone before its turn: never drawn
    qtbot.waitUntil(lambda: c.pending_items == 0, timeout=5000)
    assert set(c.items_by_id) == set(s.instances) and late not in c.items_by_id


def test_polygon_vertex_can_be_dragged_before_closing(qtbot, window):
    """000's convention: corners placed along straight lines, then adjusted; a placed
    vertex dragged before the polygon closes moves, and the closed polygon uses it."""
    from desktop_helpers import click, drag

    c = window.canvas
    window.actions_by_name["tool.polygon"].trigger()
    for p in [(500, 400), (700, 400), (700, 600), (500, 600)]:
        click(qtbot, c, *p)
    drag(qtbot, c, [(700, 600), (740, 620), (760, 640)])  # the third corner, pulled out
    assert window.canvas.tool.points[2] == pytest.approx((760, 640), abs=1)
    assert len(window.canvas.tool.points) == 4  # dragging added no vertex
    click(qtbot, c, 500, 400)  # close on the first vertex
    inst = next(iter(window.session.instances.values()))
    assert inst.mask.read_box((740, 610, 745, 615)).all()  # inside the moved corner's triangle
    assert inst.mask.bbox[2] >= 759 and inst.mask.bbox[3] >= 639
