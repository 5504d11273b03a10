"""A layout that fits a laptop: at 1280 x 720 the photo gets at least 65 % of the width by
default; the tools are a vertical bar of icons whose tool tips name the keys; every
panel can be closed and brought back from View › Panels; the panels are tabbed."""
from __future__ import annotations

from PySide6.QtCore import Qt


def test_laptop_screen_leaves_most_of_the_width_to_the_photo(qtbot, project):
    from PySide6.QtWidgets import QDockWidget, QToolBar

    from desktop.main_window import MainWindow

    win = MainWindow(str(project))
    qtbot.addWidget(win)
    win.resize(1280, 720)
    win.show()
    qtbot.waitUntil(lambda: win.image_ready, timeout=20000)
    qtbot.wait(50)
    assert win.canvas.width() >= 0.65 * win.width(), (win.canvas.width(), win.width())
    assert win.minimumSizeHint().height() <= 720 and win.height() == 720  # it fits the screen
    tb = win.findChild(QToolBar, "toolbar.tools")
    assert tb.orientation() == Qt.Orientation.Vertical and win.toolBarArea(tb) == Qt.ToolBarArea.LeftToolBarArea
    for name, key in (("tool.brush", "B"), ("tool.polygon", "W"), ("tool.reroute", "T"), ("view.fit", "0")):
        a = win.actions_by_name[name]
        assert not a.icon().isNull() and f"({key}" in a.toolTip(), (name, a.toolTip())
    docks = {d.objectName(): d for d in win.findChildren(QDockWidget)}
    assert {"dock.images", "dock.review", "dock.training", "dock.palette", "dock.instances"} <= set(docks)
    assert docks["dock.review"] in win.tabifiedDockWidgets(docks["dock.images"])
    # a closed panel comes back from the View menu
    docks["dock.palette"].close()
    assert not docks["dock.palette"].isVisible()
    view = next(a.menu() for a in win.menuBar().actions() if a.text() == "&View")
    panels = next(a.menu() for a in view.actions() if a.menu() is not None and a.text() == "&Panels")
    next(a for a in panels.actions() if a.text() == "Palette").trigger()
    assert docks["dock.palette"].isVisible()
    win.close()


def test_help_is_grouped_opaque_and_lists_only_the_palettes_classes(qtbot, window):
    window.actions_by_name["help.show"].trigger()
    text = window.help.text()
    assert window.help.isVisible()
    qtbot.wait(20)
    img = window.grab().toImage()
    corner = img.pixelColor(img.width() - 5, img.height() - 5)  # over the panels: the sheet, not them
    assert (corner.red(), corner.green(), corner.blue()) == (24, 24, 24)
    for heading in ("<h4>Tools</h4>", "<h4>Edit</h4>", "<h4>Review</h4>", "<h4>Classes</h4>", "<h4>Gestures</h4>"):
        assert heading in text
    assert "Class: mirror" in text and "Class: glass-in-mirror" in text
    assert "Class 4" not in text and "Class 9" not in text  # a three-class palette
    assert window.help.geometry() == window.rect()


def test_keys_can_be_changed_and_are_remembered(qtbot, window, project):
    from PySide6.QtGui import QKeySequence

    from desktop import keymap
    from desktop.main_window import MainWindow

    window.actions_by_name["help.keys"].trigger()
    dlg = window.keys_dialog
    dlg.edits["tool.brush"].setKeySequence(QKeySequence("G"))
    dlg.edits["tool.eraser"].setKeySequence(QKeySequence("V"))  # V is the select tool's
    assert not dlg.save() and "V is given to" in dlg.problem.text()
    dlg.edits["tool.eraser"].setKeySequence(QKeySequence("E"))
    assert dlg.save()
    assert [k.toString() for k in window.actions_by_name["tool.brush"].shortcuts()] == ["G"]
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, "g")
    assert window.canvas.tool.name == "brush"
    window.close()
    again = MainWindow(str(project))  # stored in QSettings: a new window has it
    qtbot.addWidget(again)
    assert [k.toString() for k in again.actions_by_name["tool.brush"].shortcuts()] == ["G"]
    keymap.reset("tool.brush")
    again.close()


def test_attributes_and_tags_are_edited_in_the_instances_panel_and_undone(qtbot, window):
    from annotation.document import Instance
    from annotation.mask import rasterize_polygon
    from desktop.commands import AddInstanceCommand
    from desktop_helpers import fresh_instances

    window.choose_palette("inspection")
    s = window.session
    m = rasterize_polygon([(100, 100), (300, 100), (300, 140)], s.image_size)
    window.undo_stack.push(AddInstanceCommand(s, Instance(s.image.id, "crack", m), "test"))
    panel = window.editor.attributes_panel
    names = set(panel.editors)
    assert {"severity", "crack width (mm)", "structural element", "uncertain", "note"} == names
    panel.editors["severity"].setCurrentText("severe")
    panel.editors["uncertain"].setChecked(True)
    iid = s.selection[0]
    assert s.instances[iid].attributes == {"severity": "severe", "uncertain": True}
    stored = fresh_instances(window.store.root, s.image.path)[0]
    assert stored.attributes == {"severity": "severe", "uncertain": True}
    rows = window.store.interactions(actions=["set_attributes"])
    assert rows and rows[-1].instance_id == iid and rows[-1].details["values"] == {"uncertain": True}
    window.undo_stack.undo()
    assert s.instances[iid].attributes == {"severity": "severe"}
    assert not panel.editors["uncertain"].isChecked()  # the form follows
    # image tags, with the palette's tags offered
    panel.tags.setText("overview, wet surface")
    panel.tags.editingFinished.emit()
    assert s.image.tags == ["overview", "wet surface"]
    assert window.store.image(s.image.id).tags == ["overview", "wet surface"]
    window.undo_stack.undo()
    assert s.image.tags == [] and panel.tags.text() == ""


def test_training_curves_have_axes_and_values_and_degrade_without_the_plot_library(qtbot, monkeypatch):
    import sys

    from desktop.panels.curves import CurvesWidget

    w = CurvesWidget()
    qtbot.addWidget(w)
    for e, (loss, iou) in enumerate([(0.9, 0.4), (0.5, 0.6), (0.3, 0.7)], 1):
        w.add("loss", e, loss)
        w.add("IoU", e, iou)
    loss_plot, val_plot = w._plots
    assert loss_plot.getAxis("bottom") is not None and val_plot.getAxis("bottom").labelText == "epoch"
    labels = [label.text for plot in w._plots for _s, label in plot.legend.items]
    assert any("loss 0.3" in t for t in labels) and any("IoU 0.7" in t for t in labels)
    # the field bundle has no pyqtgraph: the values are still shown, as text
    monkeypatch.setitem(sys.modules, "pyqtgraph", None)
    bare = CurvesWidget()
    qtbot.addWidget(bare)
    bare.add("loss", 1, 0.42)
    assert "loss 0.42" in bare._placeholder.text()
