"""Model assistance in the window: the engine host, proposing (this image, the
project), the review panel and its keys, the prompt predictor, the training panel, the
registry watch and the status-bar job progress. The main window creates one ``Assist``
per project and asks it for actions, panels and menus."""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QLabel, QProgressBar, QPushButton

from annotation.document import ImageStatus
from desktop.actions import make_action
from desktop.engine_host import EngineHost
from desktop.prompt_predictor import PromptPredictor
from desktop.review.controller import ReviewController
from desktop.review.panel import ReviewPanel
from desktop.review.proposer import Proposer
from desktop.training_panel import TrainingPanel

REGISTRY_POLL_MS = 2000


class Assist(QObject):
    def __init__(self, win):
        super().__init__(win)
        self.win = win
        self.host = EngineHost(self)
        self.host.message.connect(lambda t: win.statusBar().showMessage(t, 8000))
        self.host.device_report.connect(self._device)
        self.predictor = PromptPredictor(self.host, self)
        self.proposer = Proposer(win, self.host)
        self.review = ReviewController(win.session, win.canvas, self)
        self.proposer.busy_changed.connect(self._busy)
        self.proposer.progress.connect(self._progress)
        self.proposer.done.connect(lambda t: win.statusBar().showMessage(t, 8000))
        self.proposer.failed.connect(self._failed)
        self._generation: Optional[int] = None
        self._versions: dict[str, str] = {}
        self._prefer: Optional[str] = None
        self.last_error = ""
        self._build_status_bar()

    # ------------------------------------------------------------ status bar
    def _build_status_bar(self) -> None:
        sb = self.win.statusBar()
        self.device_label = QLabel(objectName="status.device")
        self.job_bar = QProgressBar(objectName="job.progress")
        self.job_bar.setMaximumWidth(180)
        self.job_bar.setVisible(False)
        self.job_cancel = QPushButton("Cancel", objectName="job.cancel")
        self.job_cancel.setVisible(False)
        self.job_cancel.clicked.connect(self.proposer.cancel)
        for w in (self.device_label, self.job_bar, self.job_cancel):
            sb.addPermanentWidget(w)

    def _device(self, text: str) -> None:
        self.device_label.setText(f"Inference: {text}")

    def _busy(self, busy: bool, text: str) -> None:
        self.job_bar.setVisible(busy)
        self.job_cancel.setVisible(busy)
        self.job_bar.setRange(0, 0)  # busy until the first progress report
        if text:
            self.win.statusBar().showMessage(text)
        for n in ("action.propose_image", "action.propose_project"):
            self.win.actions_by_name[n].setEnabled(not busy or n == "action.propose_image")

    def _progress(self, done: int, total: int) -> None:
        self.job_bar.setRange(0, max(1, total))
        self.job_bar.setValue(done)

    def _failed(self, text: str) -> None:
        self.last_error = text
        self.win.statusBar().showMessage(text, 12000)

    # ------------------------------------------------------------ actions, panels, menus
    def build_actions(self) -> dict:
        w, r = self.win, self.review
        A = {}

        def add(name, text, keys, fn):
            A[name] = make_action(w, name, text, keys, fn)

        add("review.accept", "&Accept proposal", "A", lambda: r.accept())
        add("review.reject", "&Reject proposal", "R", lambda: r.reject())
        add("review.reject_rest", "Reject the &rest of this image", "Shift+R", r.reject_rest)
        add("review.next", "&Next proposal", ["N", "Tab"], r.next)
        add("action.propose_image", "Propose this &image", "Ctrl+P", self.proposer.propose_image)
        add("action.propose_project", "Propose the whole &project", "Ctrl+Shift+P", self.proposer.propose_images)
        add("action.cancel_job", "Cancel the running job", "", self.proposer.cancel)
        add("action.train", "&Train now", "", self.start_training)
        add("help.about", "&About Specula", "", w.show_about)
        return A

    def build_panels(self) -> list[tuple[str, QDockWidget]]:
        w = self.win
        self.review_panel = ReviewPanel(self.review, w.actions_by_name)
        self.review_panel.model_chosen.connect(self._model_chosen)
        self.review_panel.cam.params_changed.connect(self._cam_params)
        try:
            root = self.host.registry.root
        except Exception:  # noqa: BLE001 - no registry: training still runs with its default
            root = None
        self.training_panel = TrainingPanel(w.store, w.actions_by_name["action.train"], root)
        self.training_panel.model_for_task = self._model_for_task
        self.training_panel.published.connect(self._published)
        self.training_panel.repropose.connect(lambda paths: self.proposer.propose_images(paths))
        self.training_panel.message.connect(lambda t: w.statusBar().showMessage(t, 8000))
        # counted after the command that accepted finishes (a retrain may start from here)
        w.session.instance_changed.connect(
            lambda _i, box: box is None and QTimer.singleShot(0, self.training_panel.refresh_count))
        self.refresh_models()
        self.timer = QTimer(self)
        self.timer.setInterval(REGISTRY_POLL_MS)
        self.timer.timeout.connect(self.poll_registry)
        self.timer.start()
        return [("Review", self.review_panel, Qt.DockWidgetArea.RightDockWidgetArea),
                ("Training", self.training_panel, Qt.DockWidgetArea.LeftDockWidgetArea)]

    menus = {
        "&Review": ["review.accept", "review.reject", "review.reject_rest", "review.next", None, "action.propose_image",
                    "action.propose_project", "action.cancel_job"],
        "T&raining": ["action.train"],
    }

    # ------------------------------------------------------------ models
    def refresh_models(self) -> None:
        try:
            infos = self.host.models()
        except Exception as exc:  # noqa: BLE001 - a registry that cannot be read is reported, not fatal
            self._failed(f"Cannot read the model registry: {exc}")
            infos = []
        names = [i.name for i in infos]
        chosen = self.proposer.model
        if self._prefer in names:
            chosen, self._prefer = self._prefer, None
        if chosen not in names:
            chosen = self.host.default_model(self.win.session.palette.name) if infos else None
        self.review_panel.set_models(infos, chosen)
        self._model_chosen(chosen)
        self._versions = {i.name: i.version for i in infos}

    def _model_chosen(self, name: Optional[str]) -> None:
        self.proposer.model = name
        info = self.review_panel.chosen_info()
        self.proposer.params = self.review_panel.cam.params() if info is not None and info.task == "cam" else {}
        if info is not None and info.task in ("semantic", "cam", "instance"):
            self.training_panel.task.setCurrentText(info.task)

    def _cam_params(self, params: dict) -> None:
        self.proposer.params = dict(params)
        if self.win.current_rgb is not None:
            self.proposer.propose_image()  # debounced by the controls; newest request wins

    def poll_registry(self) -> None:
        """A new version landed (training, an import, a rollback): refresh and offer to re-propose."""
        try:
            gen = self.host.registry.generation()
        except Exception:  # noqa: BLE001 - unreadable registry: try again at the next tick
            return
        if gen == self._generation:
            return
        first = self._generation is None
        self._generation = gen
        before = dict(self._versions)
        self.refresh_models()
        if first:
            return
        name = self.proposer.model
        if name and self._versions.get(name) and before.get(name) != self._versions.get(name):
            self.offer_repropose(name, self._versions[name])

    def offer_repropose(self, name: str, version: str) -> None:
        st = self.win.store
        paths = [r.path for r in st.images() if r.status is not ImageStatus.DONE and not r.error]
        self.training_panel.offer_repropose(name, version, paths)
        self.win.statusBar().showMessage(f"New model {name}@{version} is in use", 8000)

    def _published(self, name: str, version: str) -> None:
        self._prefer = name
        self.poll_registry()

    # ------------------------------------------------------------ training
    def start_training(self) -> None:
        self.training_panel.start()

    def _model_for_task(self, task: str) -> Optional[str]:
        """Retraining makes a new version of the model in use when it does this task."""
        info = self.review_panel.chosen_info()
        return info.name if info is not None and info.task == task and not info.read_only else None

    def close(self) -> None:
        self.timer.stop()
        self.training_panel.stop()
        self.proposer.cancel()
        self.proposer.runner.wait(5000)
        self.predictor.runner.wait(5000)
        self.host.close()
