"""The main window: start page or editor (canvas, tool bar, images / palette /
instances panels), menus, status bar. Wiring only; the work is done by the session,
the tools, the commands and the operations."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, QStackedWidget,
                               QToolBar)

from annotation.document import ImageStatus
from desktop import settings
from desktop.actions import build_actions
from desktop.canvas.view import CanvasView
from desktop.help_overlay import HelpOverlay
from desktop.loader import ImageLoader
from desktop.panels.images import ImagesPanel
from desktop.panels.instances import InstancesPanel
from desktop.panels.palette import LOAD_FILE, PalettePanel
from desktop.session import EditingSession
from desktop.start_page import StartPage
from desktop.tools.brush import BrushTool, EraserTool, SmartBrushTool
from desktop.tools.polygon import PolygonTool
from desktop.tools.prompt import PromptTool
from desktop.tools.reroute import RerouteTool
from desktop.tools.select import SelectTool
from desktop.tools.weak_click import WeakClickTool

UNDO_LIMIT = 500


class MainWindow(QMainWindow):
    def __init__(self, project: Optional[str] = None):
        super().__init__()
        self.setObjectName("main_window")
        self.setWindowTitle("Specula")
        self.resize(1400, 900)
        self.store = None
        self.session: Optional[EditingSession] = None
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(UNDO_LIMIT)
        self.loader = ImageLoader(self)
        self.loader.loaded.connect(self._image_loaded)
        self.stack = QStackedWidget()
        self.start_page = StartPage()
        self.start_page.open_project.connect(self.open_project)
        self.start_page.open_folder.connect(self.choose_folder)
        self.stack.addWidget(self.start_page)
        self.setCentralWidget(self.stack)
        self.status_label = QLabel()
        self.statusBar().addPermanentWidget(self.status_label)
        self.canvas: Optional[CanvasView] = None
        self.current_rgb = None  # the shown image's pixels, (H, W, 3) uint8 RGB
        self.assist = None
        self._closed = False
        self.help = HelpOverlay(self)
        self.actions_by_name = {}
        if project:
            self.open_project(project)
        else:
            self._restore_layout()

    # ------------------------------------------------------------ project
    def open_project(self, folder: str) -> None:
        from annotation.store import ProjectStore, StoreError

        if self.store is not None:
            QMessageBox.information(self, "Specula", "Restart Specula to open another project.")
            return
        try:
            self.store = ProjectStore.open(folder)
        except StoreError as exc:
            QMessageBox.warning(self, "Cannot open project", str(exc))
            return
        settings.add_recent_project(folder)
        self.session = s = EditingSession(self.store)
        self.canvas = CanvasView(s, self.undo_stack)
        self.canvas.status_message.connect(lambda t: self.statusBar().showMessage(t, 6000))
        self.canvas.zoom_changed.connect(lambda z: self.status_label.setText(f"{z * 100:.0f} %"))
        self.stack.addWidget(self.canvas)
        self.stack.setCurrentWidget(self.canvas)
        from desktop.assist import Assist
        from desktop.canvas.markers import WeakClickMarkers

        self.markers = WeakClickMarkers(s)
        self.canvas.scene().addItem(self.markers)
        self.assist = Assist(self)
        self.tools = {t.name: t for t in (SelectTool(self.canvas), PolygonTool(self.canvas), BrushTool(self.canvas),
                                          EraserTool(self.canvas), SmartBrushTool(self.canvas),
                                          RerouteTool(self.canvas),
                                          PromptTool(self.canvas, self.assist.predictor, self.rgb_and_key),
                                          WeakClickTool(self.canvas))}
        self.actions_by_name = build_actions(self)
        self.actions_by_name.update(self.assist.build_actions())
        self._build_panels()
        self._build_menus()
        s.images_changed.connect(self._refresh_images)
        from desktop.coalesce import Coalesced

        self._refresh_images_later = Coalesced(self._refresh_images, self)
        s.instance_added.connect(self._refresh_images_later)
        s.instance_removed.connect(self._refresh_images_later)
        s.warnings_changed.connect(self._show_warnings)
        self.undo_stack.indexChanged.connect(lambda _i: s.check_rules())
        self.set_tool("select")
        self.setWindowTitle(f"Specula — {Path(folder).name}")
        self._restore_layout()
        images = self.store.images()
        last = settings.last_image(folder)
        start = next((r for r in images if r.path == last), images[0] if images else None)
        self._refresh_images()
        if start is not None:
            self.open_image(start.id)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images")
        if folder:
            self.open_project(folder)

    def _build_panels(self) -> None:
        s = self.session
        self.images_panel = ImagesPanel()
        self.images_panel.image_chosen.connect(self.open_image)
        self.palette_panel = PalettePanel(s)
        self.palette_panel.class_chosen.connect(s.set_current_class)
        self.palette_panel.class_visibility.connect(s.set_class_hidden)
        self.palette_panel.palette_chosen.connect(self.choose_palette)
        self.palette_panel.opacity_changed.connect(self.canvas.set_opacity)
        self.palette_panel.overlap_toggled.connect(lambda on: setattr(s, "overlap_enabled", on))
        self.instances_panel = InstancesPanel(s)
        for title, w, area in (("Images", self.images_panel, Qt.DockWidgetArea.LeftDockWidgetArea),
                               ("Palette", self.palette_panel, Qt.DockWidgetArea.RightDockWidgetArea),
                               ("Instances", self.instances_panel, Qt.DockWidgetArea.RightDockWidgetArea),
                               *self.assist.build_panels()):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"dock.{w.objectName()}")
            dock.setWidget(w)
            self.addDockWidget(area, dock)
        tb = QToolBar("Tools", self)
        tb.setObjectName("toolbar.tools")
        for t in self.tools.values():
            tb.addAction(self.actions_by_name[f"tool.{t.name}"])
        tb.addSeparator()
        for n in ("edit.undo", "edit.redo", "view.fit", "help.show"):
            tb.addAction(self.actions_by_name[n])
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)

    def _build_menus(self) -> None:
        A = self.actions_by_name
        groups = {
            "&File": ["file.open", "file.save", None, "image.next", "image.previous", "image.done", None, "file.quit"],
            "&Edit": ["edit.undo", "edit.redo", None, "mask.dilate", "mask.erode", "mask.fill_holes",
                      "mask.remove_small", "mask.split", "mask.merge", "mask.delete", "mask.accept", "mask.hide"],
            "&Tools": [f"tool.{t}" for t in self.tools] + [None, "brush.bigger", "brush.smaller"],
            "&Classes": [f"class.{i}" for i in range(1, 10)],
            "&View": ["view.fit", "view.zoom_in", "view.zoom_out"],
            **self.assist.menus,
            "&Help": ["help.show", "help.about"],
        }
        for title, names in groups.items():
            m = self.menuBar().addMenu(title)
            for n in names:
                m.addSeparator() if n is None else m.addAction(A[n])

    # ------------------------------------------------------------ images
    def open_image(self, image_id: int) -> None:
        s = self.session
        if s is None:
            return
        if self.canvas.tool is not None:
            self.canvas.tool.cancel()
        self.undo_stack.clear()  # commands refer to the instances of one image
        s.open_image(image_id)
        self.current_rgb = None
        self.assist.predictor.forget_image()
        self.canvas.set_image(None)
        settings.set_last_image(self.store.root, s.image.path)
        self._refresh_images()
        if s.image.error:
            self.statusBar().showMessage(f"Cannot show {s.image.path}: {s.image.error}")
            return
        self.statusBar().showMessage(f"Loading {s.image.path}…")
        self._t_load = time.time()
        self.loader.request(str(self.store.image_file(s.image)))

    def _image_loaded(self, _rid, rgb, err) -> None:
        if self._closed:
            return
        if rgb is None:
            self.statusBar().showMessage(f"Cannot show {self.session.image.path}: {err}")
            return
        self.current_rgb = rgb
        self.canvas.set_image(rgb)
        self.statusBar().showMessage(f"{self.session.image.path}: {rgb.shape[1]}×{rgb.shape[0]}", 4000)
        self._precompute_prompts()

    def _precompute_prompts(self) -> None:
        """Embeddings of this image and the next in the background (only with a SAM pair)."""
        s = self.session
        nxt = self.images_panel.neighbour(s.image.id, 1)
        paths = [self.store.image_file(s.image)]
        if nxt is not None:
            paths.append(self.store.image_file(self.store.image(nxt)))
        try:
            if self.assist.host.has_prompt_model():
                self.assist.predictor.precompute([str(p) for p in paths])
        except Exception as exc:  # noqa: BLE001 - a broken registry must not stop the image from showing
            self.statusBar().showMessage(f"Model registry: {exc}", 6000)

    def rgb_and_key(self):
        """The shown image's pixels and a key naming them (for embedding caches)."""
        s = self.session
        if self.current_rgb is None or s is None or s.image is None:
            return None, None
        return self.current_rgb, s.image.sha1 or f"{self.store.image_file(s.image)}"

    def reload_current_image_proposals(self) -> None:
        """After a project-wide run: show the proposals the worker stored for this image."""
        if self.session is not None and self.session.image is not None:
            self.undo_stack.clear()  # older commands may name proposals that were replaced
            self.session.sync_proposals_from_store()
        self._refresh_images()

    def show_about(self) -> None:
        try:
            from specula.about import about_text

            text = about_text()
        except Exception as exc:  # noqa: BLE001 - the About box must always open
            from specula import __version__

            text = f"Specula {__version__}\n(details unavailable: {exc})"
        box = QMessageBox(QMessageBox.Icon.Information, "About Specula", text, QMessageBox.StandardButton.Ok, self)
        box.setObjectName("about")
        box.open()
        self.about_box = box

    @property
    def image_ready(self) -> bool:
        return self.canvas is not None and self.canvas.image_item is not None

    def step_image(self, step: int) -> None:
        if self.session is None or self.session.image is None:
            return
        nxt = self.images_panel.neighbour(self.session.image.id, step)
        if nxt is not None:
            self.open_image(nxt)

    def mark_done(self) -> None:
        if self.session is not None:
            self.session.set_image_status(ImageStatus.DONE)
            self.session.log("image_done")

    def _refresh_images(self) -> None:
        s = self.session
        counts = self.store.instance_counts()
        self.images_panel.refresh(self.store.images(), counts, None if s.image is None else s.image.id)
        if self.assist is not None and hasattr(self.assist, "review_panel"):
            self.assist.review_panel.set_project_counts(counts)
            self.assist.training_panel.refresh_count()

    # ------------------------------------------------------------ tools, classes
    def set_tool(self, name: str) -> None:
        self.canvas.set_tool(self.tools[name])
        self.actions_by_name[f"tool.{name}"].setChecked(True)

    def class_key(self, i: int) -> None:
        from desktop import operations as ops

        names = self.session.palette.names
        if i > len(names):
            return
        name = names[i - 1]
        self.session.set_current_class(name)
        if self.session.selection:
            ops.change_class(self.canvas, name)
        self.statusBar().showMessage(f"Current class: {name}", 3000)

    def choose_palette(self, choice: str) -> None:
        from annotation.palette import PaletteError, resolve_palette

        if choice == LOAD_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Load a palette", "", "Palettes (*.toml *.json)")
            if not path:
                self.palette_panel.refresh()
                return
            choice = path
        try:
            palette = resolve_palette(choice)
        except PaletteError as exc:
            QMessageBox.warning(self, "Cannot use palette", str(exc))
            self.palette_panel.refresh()
            return
        self.session.set_palette(palette)

    def toggle_hidden(self) -> None:
        s = self.session
        for iid in list(s.selection):
            s.set_hidden(iid, not s.instances[iid].hidden)

    def _show_warnings(self, msgs) -> None:
        if msgs:
            self.statusBar().showMessage("⚠ " + msgs[0], 8000)

    def confirm_saved(self) -> None:
        self.statusBar().showMessage("Every edit is already saved (autosave)", 3000)

    def toggle_help(self) -> None:
        if self.help.isVisible():
            self.help.hide()
        else:
            self.help.show_for(self.actions_by_name.values())

    # ------------------------------------------------------------ layout
    def _restore_layout(self) -> None:
        st = settings.settings()
        g = st.value("window/geometry")
        if g is not None:
            self.restoreGeometry(g)
        w = st.value("window/state")
        if w is not None:
            self.restoreState(w)

    def closeEvent(self, event) -> None:
        self._closed = True
        st = settings.settings()
        st.setValue("window/geometry", self.saveGeometry())
        st.setValue("window/state", self.saveState())
        st.sync()
        if self.canvas is not None and self.canvas.tool is not None:
            self.canvas.tool.cancel()
        if self.assist is not None:
            self.assist.close()
        if self.store is not None:
            self.store.close()
        super().closeEvent(event)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.help.isVisible():
            self.help.setGeometry(self.rect())
