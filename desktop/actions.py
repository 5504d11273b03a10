"""Actions: tools (checkable, exclusive, objectName ``tool.<name>``), mask operations,
navigation and view of the editor, and the window's own (open, close, quit, help); their
shortcuts show in menus and the help overlay."""
from __future__ import annotations

from typing import Callable

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QWidget

from desktop import keymap
from desktop import operations as ops


def make_action(owner: QWidget, name: str, text: str, fn: Callable, checkable: bool = False) -> QAction:
    """An action parented to and registered with ``owner`` (its shortcut works while
    ``owner`` is shown in the active window); its keys come from ``desktop.keymap``."""
    a = QAction(text, owner)
    a.setObjectName(name)
    a.setShortcuts(keymap.keys_for(name))
    a.setCheckable(checkable)
    a.triggered.connect(lambda _checked=False: fn())
    owner.addAction(a)
    return a


def build_editor_actions(ed) -> dict[str, QAction]:
    """``ed`` is the ``Editor``; returns its actions by objectName."""
    A: dict[str, QAction] = {}
    page = ed.page

    def add(name, text, fn, checkable=False):
        A[name] = make_action(page, name, text, fn, checkable)
        return A[name]

    nav = ed.navigator
    add("file.save", "&Save (edits are saved as you go)", ed.confirm_saved)
    add("image.next", "&Next image", lambda: nav.step(1))
    add("image.previous", "&Previous image", lambda: nav.step(-1))
    add("image.done", "Mark image &done", nav.mark_done)
    add("image.next_pending", "Next image with &proposals", nav.next_pending)
    add("image.find", "&Find images…", lambda: ed.find_images())
    # tools
    group = QActionGroup(page)
    group.setExclusive(True)
    for tool in ed.tools.values():
        a = add(f"tool.{tool.name}", tool.label, lambda t=tool: ed.set_tool(t.name), True)
        group.addAction(a)
    # edit
    stack = ed.ctx.undo_stack
    undo = stack.createUndoAction(page, "&Undo")
    undo.setObjectName("edit.undo")
    undo.setShortcuts(keymap.keys_for("edit.undo"))
    redo = stack.createRedoAction(page, "&Redo")
    redo.setObjectName("edit.redo")
    redo.setShortcuts(keymap.keys_for("edit.redo"))
    for a in (undo, redo):
        page.addAction(a)
        A[a.objectName()] = a
    c = ed.canvas
    add("mask.dilate", "&Dilate selection", lambda: ops.dilate(c))
    add("mask.erode", "&Erode selection", lambda: ops.erode(c))
    add("mask.fill_holes", "&Fill holes", lambda: ops.fill_holes(c))
    add("mask.remove_small", "Remove s&mall pieces", lambda: ops.remove_small(c))
    add("mask.split", "S&plit into parts", lambda: ops.split(c))
    add("mask.merge", "&Merge selected", lambda: ops.merge(c))
    add("mask.delete", "De&lete selected", lambda: ops.delete(c))
    add("mask.accept", "&Accept selected proposals", lambda: ed.assist.review.accept(advance=False))
    add("mask.hide", "&Hide / show selected", ed.toggle_hidden)
    for i in range(1, 10):  # named after the palette's classes by the editor (label_class_actions)
        add(f"class.{i}", f"Class {i}", lambda i=i: ed.class_key(i))
    # view
    add("view.fit", "&Fit to window", c.fit)
    by_instance = add("view.color_by_instance", "&Colour by instance (else by class)",
                      lambda: c.set_color_by_instance(by_instance.isChecked()), True)
    add("view.zoom_in", "Zoom &in", lambda: c.zoom_at(1.25, c.viewport().rect().center()))
    add("view.zoom_out", "Zoom &out", lambda: c.zoom_at(0.8, c.viewport().rect().center()))
    # display only (the pixels that models, tools and exports read stay as they are), per image
    add("view.brighter", "&Brighter (display only)", lambda: c.step_display("brightness", 1))
    add("view.darker", "&Darker (display only)", lambda: c.step_display("brightness", -1))
    add("view.more_contrast", "&More contrast (display only)", lambda: c.step_display("contrast", 1))
    add("view.less_contrast", "&Less contrast (display only)", lambda: c.step_display("contrast", -1))
    add("view.gamma_up", "Lift &shadows (gamma up, display only)", lambda: c.step_display("gamma", 1))
    add("view.gamma_down", "Deepen s&hadows (gamma down, display only)", lambda: c.step_display("gamma", -1))
    add("view.reset_display", "&Reset brightness, contrast and gamma", c.reset_display)
    add("brush.bigger", "Brush bigger", lambda: c.set_brush_radius(c.brush_radius * 1.25))
    add("brush.smaller", "Brush smaller", lambda: c.set_brush_radius(c.brush_radius / 1.25))
    return A
