"""The main window: the start page, or the editor of the open project; the File and Help
menus; the window layout. Opening a project makes a ``ProjectContext`` and an ``Editor``
from it; closing it (or opening another) disposes of both, so projects change without a
restart. The window itself does no editing work: it composes."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtWidgets import QFileDialog, QLabel, QMainWindow, QMessageBox, QStackedWidget

from desktop import settings
from desktop.actions import make_action
from desktop.context import ProjectContext
from desktop.editor import Editor
from desktop.help_overlay import HelpOverlay
from desktop.start_page import StartPage


class MainWindow(QMainWindow):
    def __init__(self, project: Optional[str] = None):
        super().__init__()
        self.setObjectName("main_window")
        self.setWindowTitle("Specula")
        self.resize(1400, 900)
        self.ctx: Optional[ProjectContext] = None
        self.editor: Optional[Editor] = None
        self.stack = QStackedWidget()
        self.start_page = StartPage()
        self.start_page.open_project.connect(self.open_project)
        self.start_page.open_folder.connect(self.choose_folder)
        self.stack.addWidget(self.start_page)
        self.setCentralWidget(self.stack)
        self.status_label = QLabel()
        self.statusBar().addPermanentWidget(self.status_label)
        self.help = HelpOverlay(self)
        self.window_actions = self._build_actions()
        self._build_menus()
        self._restore_layout()
        if project:
            self.open_project(project)

    # ------------------------------------------------------------ the window's own actions
    def _build_actions(self) -> dict:
        A = {}
        for name, text, fn in (
            ("file.open", "&Open folder…", self.choose_folder),
            ("file.close", "&Close project", self.close_project),
            ("file.quit", "&Quit", self.close),
            ("help.show", "&Keyboard shortcuts", self.toggle_help),
            ("help.keys", "Change &keys…", self.edit_keys),
            ("help.about", "&About Specula", self.show_about),
        ):
            A[name] = make_action(self, name, text, fn)
        A["file.close"].setEnabled(False)
        return A

    def _build_menus(self) -> None:
        A = self.window_actions
        file_menu = self.menuBar().addMenu("&File")
        for n in ("file.open", "file.close", None, "file.quit"):
            file_menu.addSeparator() if n is None else file_menu.addAction(A[n])
        self.help_menu = self.menuBar().addMenu("&Help")
        for n in ("help.show", "help.keys", "help.about"):
            self.help_menu.addAction(A[n])

    @property
    def actions_by_name(self) -> dict:
        """Every action of the window and of the open project's editor, by objectName."""
        return {**self.window_actions, **(self.editor.actions if self.editor is not None else {})}

    # ------------------------------------------------------------ projects
    def open_project(self, folder: str) -> bool:
        """Open ``folder`` as a project (replacing the open one); False, with the reason
        shown, when it cannot be opened: then the open project stays as it was."""
        from annotation.store import ProjectInUse, ProjectStore, StoreError

        if self.ctx is not None and Path(folder).expanduser().resolve() == Path(self.ctx.store.root):
            if not self.close_project():  # the same project again: let go of it first (its lock too)
                return False
        try:
            try:  # the folder is scanned in the background
                store = ProjectStore.open(folder, scan=False, writer="another Specula window")
            except ProjectInUse as busy:
                # two editors of one project would overwrite each other: this one only looks
                store = ProjectStore.open(folder, scan=False, read_only=True)
                store.read_only = (f"the project is open in {busy.holder}; it is shown here read-only: "
                                   f"close it there to edit here")
        except StoreError as exc:
            QMessageBox.warning(self, "Cannot open project", str(exc))
            return False
        if not self.close_project():
            store.close()
            return False
        settings.add_recent_project(folder)
        self.ctx = ProjectContext(store, self)
        self.ctx.message.connect(self._say)
        self.editor = Editor(self, self.ctx)
        self.editor.build_menus(self.help_menu.menuAction())
        self.editor.canvas.zoom_changed.connect(lambda z: self.status_label.setText(f"{z * 100:.0f} %"))
        self.stack.addWidget(self.editor.page)
        self.stack.setCurrentWidget(self.editor.page)
        self.window_actions["file.close"].setEnabled(True)
        title = f"Specula — {Path(store.root).name}"
        self.setWindowTitle(title + (" (read-only)" if store.read_only else ""))
        self._restore_layout()
        self.editor.start()
        return True

    def ask_about_training(self) -> str:
        """Training is running and the project is closing: "stop", "keep" (it goes on in the
        background and still publishes its model) or "cancel" (the project stays open)."""
        box = QMessageBox(QMessageBox.Icon.Question, "Training is running",
                          "A training run is still going on for this project. Stop it, or keep it running "
                          "in the background? A kept run still publishes its model, and the training panel "
                          "shows it again when you open the project.", parent=self)
        box.setObjectName("message.training_running")
        stop = box.addButton("Stop training", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep it running", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return "stop" if box.clickedButton() is stop else "keep" if box.clickedButton() is keep else "cancel"

    def _may_leave_project(self) -> bool:
        """Ask what becomes of a running training; False when the user cancels."""
        if self.editor is None or not self.editor.assist.training_panel.running:
            return True
        choice = self.ask_about_training()
        if choice == "cancel":
            return False
        if choice == "keep":
            self.editor.assist.training_panel.proc.detach()
        return True

    def close_project(self) -> bool:
        """Back to the start page; the project's editor and context are disposed of.
        False when the user chose to keep the project open (a training run was going on)."""
        if self.editor is None:
            return True
        if not self._may_leave_project():
            return False
        self._save_layout()
        self.help.hide()
        editor, self.editor, self.ctx = self.editor, None, None
        self.stack.removeWidget(editor.page)
        editor.dispose()
        self.stack.setCurrentWidget(self.start_page)
        self.start_page.refresh()
        self.window_actions["file.close"].setEnabled(False)
        self.setWindowTitle("Specula")
        self.status_label.clear()
        return True

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images")
        if folder:
            self.open_project(folder)

    def _say(self, text: str, ms: int) -> None:
        self.statusBar().showMessage(text, ms)

    # ------------------------------------------------------------ views of the open project (tests, automation)
    @property
    def session(self):
        return None if self.ctx is None else self.ctx.session

    @property
    def store(self):
        return None if self.ctx is None else self.ctx.store

    @property
    def undo_stack(self):
        return None if self.ctx is None else self.ctx.undo_stack

    @property
    def current_rgb(self):
        return None if self.ctx is None else self.ctx.current_rgb

    @property
    def canvas(self):
        return None if self.editor is None else self.editor.canvas

    @property
    def assist(self):
        return None if self.editor is None else self.editor.assist

    @property
    def images_panel(self):
        return None if self.editor is None else self.editor.images_panel

    @property
    def palette_panel(self):
        return None if self.editor is None else self.editor.palette_panel

    @property
    def tools(self):
        return {} if self.editor is None else self.editor.tools

    @property
    def markers(self):
        return None if self.editor is None else self.editor.markers

    @property
    def image_ready(self) -> bool:
        return self.editor is not None and self.editor.image_ready

    def open_image(self, image_id: int) -> None:
        if self.editor is not None:
            self.editor.navigator.open_image(image_id)

    def choose_palette(self, choice: str) -> None:
        if self.editor is not None:
            self.editor.choose_palette(choice)

    # ------------------------------------------------------------ help
    def show_about(self) -> None:
        try:
            from appinfo.about import about_text

            text = about_text()
        except Exception as exc:  # noqa: BLE001 - the About box must always open
            from appinfo import __version__

            text = f"Specula {__version__}\n(details unavailable: {exc})"
        box = QMessageBox(QMessageBox.Icon.Information, "About Specula", text, QMessageBox.StandardButton.Ok, self)
        box.setObjectName("about")
        box.open()
        self.about_box = box

    def edit_keys(self) -> None:
        from desktop.keys_dialog import KeysDialog

        self.keys_dialog = KeysDialog(self.actions_by_name, self)
        self.keys_dialog.open()

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

    def _save_layout(self) -> None:
        st = settings.settings()
        st.setValue("window/geometry", self.saveGeometry())
        if self.editor is not None:  # the docks exist only with a project
            st.setValue("window/state", self.saveState())
        st.sync()

    def closeEvent(self, event) -> None:
        if not self.close_project():
            event.ignore()
            return
        self._save_layout()
        super().closeEvent(event)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.help.isVisible():
            self.help.setGeometry(self.rect())
