"""The editor of one open project, composed from its ``ProjectContext``: the canvas with
its tools, the images / palette / instances / review / training panels, the tool bar,
menus and actions, and the controllers behind them (navigator, folder scan, assist).

The main window creates one ``Editor`` per open project and disposes of it when the
project closes; nothing of a project outlives its editor, so opening another project
needs no restart. Controllers get the context, the canvas or the navigator: never the
window.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QLabel, QMainWindow, QMenu, QMessageBox, QProgressBar,
                               QPushButton, QToolBar, QVBoxLayout, QWidget)

from desktop.actions import build_editor_actions
from desktop.assist import Assist
from desktop.canvas.markers import WeakClickMarkers
from desktop.canvas.view import CanvasView
from desktop.context import ProjectContext
from desktop.navigator import ImageNavigator
from desktop.panels.attributes import AttributesPanel
from desktop.panels.image_filters import ImagesBox
from desktop.panels.images import ImagesModel, ImagesPanel
from desktop.panels.instances import InstancesPanel
from desktop.panels.palette import LOAD_FILE, PalettePanel
from desktop.scan import FolderScan
from desktop.tools.brush import BrushTool, EraserTool, SmartBrushTool
from desktop.tools.polygon import PolygonTool
from desktop.tools.prompt import PromptTool
from desktop.tools.reroute import RerouteTool
from desktop.tools.select import SelectTool
from desktop.tools.weak_click import WeakClickTool

# what stays usable in a read-only project: looking, choosing, exporting
DOCK_WIDTH = 300  # pixels of the panel column by default (the layout is remembered after that)
READ_ONLY_ACTIONS = ("file.save", "image.next", "image.previous", "tool.select", "view.fit", "view.zoom_in",
                     "view.zoom_out", "view.color_by_instance", "view.brighter", "view.darker",
                     "view.more_contrast", "view.less_contrast", "view.gamma_up", "view.gamma_down",
                     "view.reset_display", "review.next")


class Editor:
    def __init__(self, win: QMainWindow, ctx: ProjectContext):
        self.win = win
        self.ctx = ctx
        s = ctx.session
        self.page = QWidget(objectName="editor")
        lay = QVBoxLayout(self.page)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        self.banner = QLabel(objectName="banner.read_only")
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("background: #7a5a00; color: white; padding: 6px;")
        self.banner.setVisible(bool(ctx.read_only))
        if ctx.read_only:
            self.banner.setText(f"Read-only: {ctx.read_only}")
        lay.addWidget(self.banner)
        self.canvas = CanvasView(s, ctx.undo_stack)
        lay.addWidget(self.canvas, 1)
        self.markers = WeakClickMarkers(s)
        self.canvas.scene().addItem(self.markers)
        self.images = ImagesModel(ctx.store, self.page)
        self.images_panel = ImagesPanel(self.images)
        self.navigator = ImageNavigator(ctx, self.canvas, self.images)
        self.scan = FolderScan(ctx)
        self.assist = Assist(ctx, self.canvas, self.navigator)
        self.tools = {t.name: t for t in (SelectTool(self.canvas), PolygonTool(self.canvas), BrushTool(self.canvas),
                                          EraserTool(self.canvas), SmartBrushTool(self.canvas),
                                          RerouteTool(self.canvas),
                                          PromptTool(self.canvas, self.assist.predictor, ctx.rgb_and_key),
                                          WeakClickTool(self.canvas))}
        self.actions = build_editor_actions(self)
        self.actions.update(self.assist.build_actions(self.page))
        self.docks: list[QDockWidget] = []
        self.toolbars: list[QToolBar] = []
        self.menus: list = []
        self.status_widgets: list[QWidget] = []
        self._build_panels()
        self._build_toolbar()
        self._build_status()
        self._connect()
        self.label_class_actions()
        s.palette_changed.connect(self.label_class_actions)
        if ctx.read_only:
            for name, action in self.actions.items():
                action.setEnabled(name in READ_ONLY_ACTIONS or name.startswith("class."))
        self.set_tool("select")

    # ------------------------------------------------------------ building
    def _build_panels(self) -> None:
        s = self.ctx.session
        self.palette_panel = PalettePanel(s)
        self.palette_panel.class_chosen.connect(s.set_current_class)
        self.palette_panel.class_visibility.connect(s.set_class_hidden)
        self.palette_panel.palette_chosen.connect(self.choose_palette)
        self.palette_panel.opacity_changed.connect(self.canvas.set_opacity)
        self.palette_panel.overlap_toggled.connect(lambda on: setattr(s, "overlap_enabled", on))
        self.instances_panel = InstancesPanel(s)
        self.attributes_panel = AttributesPanel(s, self.canvas.push)
        instances_box = QWidget(objectName="instances")  # the list, and the selection's attributes under it
        box_lay = QVBoxLayout(instances_box)
        box_lay.setContentsMargins(4, 4, 4, 4)
        box_lay.addWidget(self.instances_panel, 3)
        box_lay.addWidget(self.attributes_panel, 2)
        self.images_panel.image_chosen.connect(self.navigator.open_image)
        self.images_box = ImagesBox(self.images_panel, s.palette.names)  # the filter bar above the list
        s.palette_changed.connect(lambda: self.images_box.set_classes(s.palette.names))
        self.scan.finished.connect(lambda _text: self.images.mark_missing(self.scan.missing))
        by_name = {}
        for title, w, _area in (("Images", self.images_box, None), ("Palette", self.palette_panel, None),
                                ("Instances", instances_box, None),
                                *self.assist.build_panels(self.actions)):
            dock = QDockWidget(title, self.win)
            dock.setObjectName(f"dock.{w.objectName()}")
            dock.setWidget(w)
            self.win.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
            self.docks.append(dock)
            by_name[w.objectName()] = dock
        # one column on the right, two groups of tabs, so that the photo keeps most of a
        # laptop's width: what is looked at while working above, what is set below
        win = self.win
        images, review, training = by_name["images"], by_name["review"], by_name["training"]
        palette, instances = by_name["palette"], by_name["instances"]
        win.splitDockWidget(images, palette, Qt.Orientation.Vertical)
        win.tabifyDockWidget(images, review)
        win.tabifyDockWidget(review, training)
        win.tabifyDockWidget(palette, instances)
        images.raise_()
        palette.raise_()
        win.resizeDocks([images], [DOCK_WIDTH], Qt.Orientation.Horizontal)
        win.resizeDocks([images, palette], [3, 2], Qt.Orientation.Vertical)

    def _build_toolbar(self) -> None:
        """A vertical bar of icons at the left edge (a laptop screen is wider than tall);
        each tool tip names the key."""
        from PySide6.QtCore import QSize

        from desktop.icons import icon

        tb = QToolBar("Tools", self.win)
        tb.setObjectName("toolbar.tools")
        tb.setOrientation(Qt.Orientation.Vertical)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        tb.setIconSize(QSize(26, 26))
        glyphs = {**{f"tool.{t}": t for t in self.tools}, "edit.undo": "undo", "edit.redo": "redo",
                  "view.fit": "fit"}
        for name, glyph in glyphs.items():
            a = self.actions[name]
            a.setIcon(icon(glyph))
            keys = a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            a.setToolTip(f"{a.text().replace('&', '')} ({keys})" if keys else a.text().replace("&", ""))
        for t in self.tools.values():
            tb.addAction(self.actions[f"tool.{t.name}"])
        tb.addSeparator()
        for n in ("edit.undo", "edit.redo", "view.fit"):
            tb.addAction(self.actions[n])
        self.win.addToolBar(Qt.ToolBarArea.LeftToolBarArea, tb)
        self.toolbars.append(tb)

    def build_menus(self, before) -> None:
        """Insert the editor's menus in the window's menu bar, before the action ``before``."""
        A = self.actions
        groups = {
            "&Edit": ["file.save", None, "edit.undo", "edit.redo", None, "mask.dilate", "mask.erode",
                      "mask.fill_holes", "mask.remove_small", "mask.split", "mask.merge", "mask.delete",
                      "mask.accept", "mask.hide"],
            "&Image": ["image.next", "image.previous", "image.next_pending", "image.find", "image.done"],
            "&Tools": [f"tool.{t}" for t in self.tools] + [None, "brush.bigger", "brush.smaller"],
            "&Classes": [f"class.{i}" for i in range(1, 10)],
            "&View": ["view.fit", "view.zoom_in", "view.zoom_out", None, "view.color_by_instance", None,
                      "view.brighter", "view.darker", "view.more_contrast", "view.less_contrast", "view.gamma_up",
                      "view.gamma_down", "view.reset_display"],
            **self.assist.menus,
        }
        bar = self.win.menuBar()
        for title, names in groups.items():
            m = QMenu(title, bar)
            bar.insertMenu(before, m)
            for n in names:
                m.addSeparator() if n is None else m.addAction(A[n])
            if title == "&View":
                panels = m.addMenu("&Panels")  # each panel can be closed and brought back
                for dock in self.docks:
                    panels.addAction(dock.toggleViewAction())
                panels.addAction(self.toolbars[0].toggleViewAction())
            self.menus.append(m)

    def _build_status(self) -> None:
        sb = self.win.statusBar()
        self.scan_bar = QProgressBar(objectName="scan.progress")
        self.scan_bar.setMaximumWidth(160)
        self.scan_bar.setFormat("scanning %v / %m")
        self.scan_bar.setVisible(False)
        self.scan_cancel = QPushButton("Stop scan", objectName="scan.cancel")
        self.scan_cancel.setVisible(False)
        self.scan_cancel.clicked.connect(self.scan.cancel)
        self.status_widgets = [self.scan_bar, self.scan_cancel, *self.assist.status_widgets()]
        for w in self.status_widgets:
            sb.addPermanentWidget(w)

    def _connect(self) -> None:
        ctx, s = self.ctx, self.ctx.session
        self.canvas.status_message.connect(lambda t: ctx.say(t, 6000))
        s.image_updated.connect(self.images.reload)
        s.failed.connect(self._action_failed)
        s.warnings_changed.connect(lambda msgs: msgs and ctx.say("⚠ " + msgs[0], 8000))
        self.assist.proposer.image_stored.connect(self.images.reload)
        self.navigator.image_opened.connect(self.images_panel.show_current)
        self.scan.images_added.connect(self._images_added)
        self.scan.busy_changed.connect(self._scan_busy)
        self.scan.progress.connect(self._scan_progress)
        self.scan.finished.connect(lambda t: ctx.say(t, 8000))

    # ------------------------------------------------------------ start / stop
    def start(self) -> None:
        """Open the last (or first) image, then look for new images in the background."""
        self.navigator.open_first()
        self.scan.start()

    def dispose(self) -> None:
        """Take the editor out of the window and let go of the project."""
        if self.canvas.tool is not None:
            self.canvas.tool.cancel()
        self.assist.close()
        self.scan.cancel()
        self.scan.runner.wait(5000)
        win = self.win
        for dock in self.docks:
            win.removeDockWidget(dock)
            dock.deleteLater()
        for tb in self.toolbars:
            win.removeToolBar(tb)
            tb.deleteLater()
        for m in self.menus:
            win.menuBar().removeAction(m.menuAction())
            m.deleteLater()
        for w in self.status_widgets:
            win.statusBar().removeWidget(w)
            w.deleteLater()
        self.ctx.close()
        self.ctx.deleteLater()  # its workers were waited for; a late signal finds no receiver
        self.page.deleteLater()

    # ------------------------------------------------------------ reactions
    def _images_added(self, records) -> None:
        self.images.add(records)
        self.navigator.open_first()

    def _scan_busy(self, busy: bool) -> None:
        self.scan_bar.setVisible(busy)
        self.scan_cancel.setVisible(busy)
        self.scan_bar.setRange(0, 0)

    def _scan_progress(self, done: int, total: int) -> None:
        self.scan_bar.setRange(0, max(1, total))
        self.scan_bar.setValue(done)

    def _action_failed(self, message: str, outcome: str) -> None:
        stack = self.ctx.undo_stack
        if outcome == "history":
            # an undo could not be saved: the history no longer matches the document
            QTimer.singleShot(0, stack.clear)
            message += " (the undo history was cleared)"
        elif outcome == "retry":
            QTimer.singleShot(0, self._step_back_unsaved)
        box = QMessageBox(QMessageBox.Icon.Warning, "Not saved", message, QMessageBox.StandardButton.Ok, self.win)
        box.setObjectName("message.not_saved")
        box.open()
        self.last_failure = box
        self.ctx.say(message, 12000)

    def _step_back_unsaved(self) -> None:
        """Move the stack back over a command whose redo could not be saved: it becomes the
        next Redo (its undo does nothing, since nothing of it was applied)."""
        stack = self.ctx.undo_stack
        top = stack.command(stack.index() - 1) if stack.index() > 0 else None
        if top is not None and getattr(top, "applied", True) is False:
            stack.undo()

    # ------------------------------------------------------------ commands of the window
    def set_tool(self, name: str) -> None:
        self.canvas.set_tool(self.tools[name])
        self.actions[f"tool.{name}"].setChecked(True)

    def class_key(self, i: int) -> None:
        from desktop import operations as ops

        s = self.ctx.session
        name = s.palette.class_for_key(str(i))
        if name is None:
            return
        s.set_current_class(name)
        if s.selection and not self.ctx.read_only:
            ops.change_class(self.canvas, name)
        self.ctx.say(f"Current class: {name}", 3000)

    def label_class_actions(self) -> None:
        """The digit actions carry their class's name; digits without a class are hidden
        (the help and the menu list only the classes there are)."""
        palette = self.ctx.session.palette
        for i in range(1, 10):
            a = self.actions[f"class.{i}"]
            name = palette.class_for_key(str(i))
            a.setVisible(name is not None)
            a.setText(f"Class: {name}" if name else f"Class {i}")

    def choose_palette(self, choice: str) -> None:
        from annotation.palette import PaletteError, resolve_palette
        from annotation.store import StoreError

        if choice == LOAD_FILE:
            path, _ = QFileDialog.getOpenFileName(self.win, "Load a palette", "", "Palettes (*.toml *.json)")
            if not path:
                self.palette_panel.refresh()
                return
            choice = path
        try:
            self.ctx.session.set_palette(resolve_palette(choice))
        except (PaletteError, StoreError) as exc:
            QMessageBox.warning(self.win, "Cannot use palette", str(exc))
            self.palette_panel.refresh()

    def find_images(self) -> None:
        """Ctrl+F: the images panel comes forward with its search box focused."""
        dock = next(d for d in self.docks if d.objectName() == "dock.images")
        dock.show()
        dock.raise_()
        self.images_box.filters.search.setFocus()
        self.images_box.filters.search.selectAll()

    def toggle_hidden(self) -> None:
        from annotation.store import StoreError

        s = self.ctx.session
        try:
            for iid in list(s.selection):
                s.set_hidden(iid, not s.instances[iid].hidden)
        except StoreError as exc:
            self.ctx.say(f"Cannot hide: {exc}", 8000)

    def confirm_saved(self) -> None:
        if self.ctx.read_only:
            self.ctx.say(f"Nothing can be saved: {self.ctx.read_only}", 6000)
        else:
            self.ctx.say("Every edit is already saved (autosave)", 3000)

    @property
    def image_ready(self) -> bool:
        return self.canvas.image_item is not None
