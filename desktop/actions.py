"""Actions: tools (checkable, exclusive, objectName ``tool.<name>``), mask operations,
navigation and view of the editor, and the window's own (open, close, quit, help); their
shortcuts show in menus and the help overlay."""
from __future__ import annotations

from typing import Callable

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QWidget

from desktop import operations as ops


def make_action(owner: QWidget, name: str, text: str, keys, fn: Callable, checkable: bool = False) -> QAction:
    """An action parented to and registered with ``owner`` (its shortcut works while
    ``owner`` is shown in the active window)."""
    a = QAction(text, owner)
    a.setObjectName(name)
    if isinstance(keys, str):
        keys = [keys] if keys else []
    a.setShortcuts([QKeySequence(k) for k in keys])
    a.setCheckable(checkable)
    a.triggered.connect(lambda _checked=False: fn())
    owner.addAction(a)
    return a


def build_editor_actions(ed) -> dict[str, QAction]:
    """``ed`` is the ``Editor``; returns its actions by objectName."""
    A: dict[str, QAction] = {}
    page = ed.page

    def add(name, text, keys, fn, checkable=False):
        A[name] = make_action(page, name, text, keys, fn, checkable)
        return A[name]

    nav = ed.navigator
    add("file.save", "&Save (edits are saved as you go)", "Ctrl+S", ed.confirm_saved)
    add("image.next", "&Next image", ["D", "PgDown"], lambda: nav.step(1))
    add("image.previous", "&Previous image", ["PgUp", "Shift+D"], lambda: nav.step(-1))
    add("image.done", "Mark image &done", "Ctrl+Return", nav.mark_done)
    # tools
    group = QActionGroup(page)
    group.setExclusive(True)
    for tool in ed.tools.values():
        a = add(f"tool.{tool.name}", tool.label, tool.shortcut, lambda t=tool: ed.set_tool(t.name), True)
        group.addAction(a)
    # edit
    stack = ed.ctx.undo_stack
    undo = stack.createUndoAction(page, "&Undo")
    undo.setShortcuts(QKeySequence.StandardKey.Undo)
    undo.setObjectName("edit.undo")
    redo = stack.createRedoAction(page, "&Redo")
    redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
    redo.setObjectName("edit.redo")
    for a in (undo, redo):
        page.addAction(a)
        A[a.objectName()] = a
    c = ed.canvas
    add("mask.dilate", "&Dilate selection", ["+", "="], lambda: ops.dilate(c))
    add("mask.erode", "&Erode selection", "-", lambda: ops.erode(c))
    add("mask.fill_holes", "&Fill holes", "F", lambda: ops.fill_holes(c))
    add("mask.remove_small", "Remove s&mall pieces", "Shift+K", lambda: ops.remove_small(c))
    add("mask.split", "S&plit into parts", "S", lambda: ops.split(c))
    add("mask.merge", "&Merge selected", "M", lambda: ops.merge(c))
    add("mask.delete", "De&lete selected", "Delete", lambda: ops.delete(c))
    add("mask.accept", "&Accept selected proposals", "Y", lambda: ed.assist.review.accept(advance=False))
    add("mask.hide", "&Hide / show selected", "Ctrl+H", ed.toggle_hidden)
    for i in range(1, 10):
        add(f"class.{i}", f"Class {i} (sets the current class; changes the selection's)", str(i),
            lambda i=i: ed.class_key(i))
    # view
    add("view.fit", "&Fit to window", ["0", "Ctrl+0"], c.fit)
    add("view.zoom_in", "Zoom &in", "Ctrl++", lambda: c.zoom_at(1.25, c.viewport().rect().center()))
    add("view.zoom_out", "Zoom &out", "Ctrl+-", lambda: c.zoom_at(0.8, c.viewport().rect().center()))
    add("brush.bigger", "Brush bigger", "]", lambda: c.set_brush_radius(c.brush_radius * 1.25))
    add("brush.smaller", "Brush smaller", "[", lambda: c.set_brush_radius(c.brush_radius / 1.25))
    return A
