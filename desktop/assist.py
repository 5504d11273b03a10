"""Model assistance for one open project: proposing (this image, the project), the review
panel and its keys, the prompt predictor, the training panel, the registry watch and the
status-bar job progress. Built by the editor from the project context; it knows the
canvas and the navigator it is given, never the window."""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QWidget

from annotation.document import ImageStatus
from desktop.actions import make_action
from desktop.canvas.view import CanvasView
from desktop.context import ProjectContext
from desktop.navigator import ImageNavigator
from desktop.prompt_predictor import PromptPredictor
from desktop.review.controller import ReviewController
from desktop.review.panel import ReviewPanel
from desktop.review.proposer import Proposer
from desktop.training_panel import TrainingPanel

REGISTRY_POLL_MS = 2000


class Assist(QObject):
    menus = {
        "&Review": ["review.accept", "review.reject", "review.reject_rest", "review.next", "review.by_clusters", None,
                    "action.propose_image",
                    "action.propose_project", "action.cancel_job"],
        "T&raining": ["action.train"],
    }

    def __init__(self, ctx: ProjectContext, canvas: CanvasView, navigator: ImageNavigator):
        super().__init__(ctx)
        self.ctx = ctx
        self.canvas = canvas
        self.navigator = navigator
        self.host = ctx.host
        self.host.message.connect(lambda t: ctx.say(t, 8000))
        self.host.device_report.connect(self._device)
        self.predictor = PromptPredictor(self.host, self)
        self.proposer = Proposer(ctx, canvas)
        self.review = ReviewController(ctx.session, canvas, self)
        self.review.on_exhausted = navigator.next_pending
        self.proposer.busy_changed.connect(self._busy)
        self.proposer.progress.connect(self._progress)
        self.proposer.done.connect(lambda t: ctx.say(t, 8000))
        self.proposer.failed.connect(self._failed)
        navigator.image_opened.connect(lambda _i: self.predictor.forget_image())
        navigator.pixels_ready.connect(self._precompute_prompts)
        self._generation: Optional[int] = None
        self._versions: dict[str, str] = {}
        self._prefer: Optional[str] = None
        self.actions: dict = {}
        self.timer = QTimer(self)
        self.timer.setInterval(REGISTRY_POLL_MS)
        self.timer.timeout.connect(self.poll_registry)

    # ------------------------------------------------------------ status bar
    def status_widgets(self) -> list[QWidget]:
        self.device_label = QLabel(objectName="status.device")
        self.job_bar = QProgressBar(objectName="job.progress")
        self.job_bar.setMaximumWidth(180)
        self.job_bar.setVisible(False)
        self.job_cancel = QPushButton("Cancel", objectName="job.cancel")
        self.job_cancel.setVisible(False)
        self.job_cancel.clicked.connect(self.proposer.cancel)
        return [self.device_label, self.job_bar, self.job_cancel]

    def _device(self, short: str, full: str) -> None:
        self.device_label.setText(f"Inference: {short.removeprefix('inference on ')}")
        self.device_label.setToolTip(full)

    def _busy(self, busy: bool, text: str) -> None:
        self.job_bar.setVisible(busy)
        self.job_cancel.setVisible(busy)
        self.job_bar.setRange(0, 0)  # busy until the first progress report
        if text:
            self.ctx.say(text, 0)
        for n in ("action.propose_image", "action.propose_project"):
            self.actions[n].setEnabled(not self.ctx.read_only and (not busy or n == "action.propose_image"))

    def _progress(self, done: int, total: int) -> None:
        self.job_bar.setRange(0, max(1, total))
        self.job_bar.setValue(done)

    def _failed(self, text: str) -> None:
        self.ctx.say(text, 12000)

    # ------------------------------------------------------------ actions, panels
    def build_actions(self, parent: QWidget) -> dict:
        r = self.review
        A = {}

        def add(name, text, fn):
            A[name] = make_action(parent, name, text, fn)

        add("review.accept", "&Accept proposal", lambda: r.accept())
        add("review.reject", "&Reject proposal", lambda: r.reject())
        add("review.reject_rest", "Reject the &rest of this image", r.reject_rest)
        add("review.next", "&Next proposal", r.next)
        add("review.by_clusters", "Review by &clusters…", self.review_by_clusters)
        add("action.propose_image", "Propose this &image", self.proposer.propose_image)
        add("action.propose_project", "Propose the whole &project", self.proposer.propose_images)
        add("action.cancel_job", "Cancel the running job", self.proposer.cancel)
        add("action.train", "&Train now", self.start_training)
        self.actions = A
        return A

    def build_panels(self, actions: dict) -> list[tuple[str, QWidget, Qt.DockWidgetArea]]:
        ctx = self.ctx
        self.review_panel = ReviewPanel(self.review, actions, ctx.store)
        self.review_panel.model_chosen.connect(self._model_chosen)
        self.review_panel.workers.valueChanged.connect(lambda n: setattr(self.proposer, "workers", int(n)))
        self.review_panel.cam.params_changed.connect(self._cam_params)
        self.review_panel.random_walk.toggled.connect(self._random_walk_toggled)
        try:
            root = self.host.registry.root
        except Exception:  # noqa: BLE001 - no registry: training still runs with its default
            root = None
        self.training_panel = TrainingPanel(ctx.store, actions["action.train"], root,
                                            registry_of=lambda: self.host.registry)
        self.training_panel.model_for_task = self._model_for_task
        self.training_panel.published.connect(self._published)
        self.training_panel.repropose.connect(lambda paths: self.proposer.propose_images(paths))
        self.training_panel.message.connect(lambda t: ctx.say(t, 8000))
        # counted after the command that accepted finishes (a retrain may start from here)
        ctx.session.image_updated.connect(lambda _i: QTimer.singleShot(0, self._after_edit))
        self.proposer.image_stored.connect(lambda _i: self.review_panel.refresh_totals())
        self.proposer.image_stored.connect(lambda _i: self.training_panel.versions.request_refresh())
        self.refresh_models()
        self.timer.start()
        return [("Review", self.review_panel, Qt.DockWidgetArea.RightDockWidgetArea),
                ("Training", self.training_panel, Qt.DockWidgetArea.LeftDockWidgetArea)]

    def _after_edit(self) -> None:
        if not self.ctx.closed:
            self.review_panel.refresh_totals()
            self.training_panel.refresh_count()

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
            chosen = self.host.model_for_palette(self.ctx.session.palette) if infos else None
        self.review_panel.set_models(infos, chosen)
        self._model_chosen(chosen)
        self._versions = {i.name: i.version for i in infos}

    def _model_chosen(self, name: Optional[str]) -> None:
        self.proposer.model = name
        info = self.review_panel.chosen_info()
        self.proposer.params = self._params_for(info)
        if info is not None and info.task in ("semantic", "cam", "instance"):
            self.training_panel.task.setCurrentText(info.task)

    def _params_for(self, info) -> dict:
        """The pipeline parameters the review panel sets for this model's task."""
        if info is None:
            return {}
        if info.task == "cam":
            return self.review_panel.cam.params()
        if info.task == "semantic":
            return self.review_panel.semantic_params()
        return {}

    def _random_walk_toggled(self, _on: bool) -> None:
        self.proposer.params = self._params_for(self.review_panel.chosen_info())

    def _cam_params(self, params: dict) -> None:
        self.proposer.params = dict(params)
        if self.ctx.current_rgb is not None:
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
        paths = [r.path for r in self.ctx.store.images() if r.status is not ImageStatus.DONE and not r.error]
        self.training_panel.offer_repropose(name, version, paths)
        self.ctx.say(f"New model {name}@{version} is in use", 8000)

    def _published(self, name: str, version: str) -> None:
        self._prefer = name
        self.poll_registry()

    def _precompute_prompts(self) -> None:
        """Embeddings of this image and the next in the background (only with a SAM pair)."""
        store, s = self.ctx.store, self.ctx.session
        if s.image is None:
            return
        paths = [store.image_file(s.image)]
        nxt = self.navigator.neighbour(1)
        if nxt is not None:
            paths.append(store.image_file(store.image(nxt)))
        try:
            if self.host.has_prompt_model():
                self.predictor.precompute([str(p) for p in paths])
        except Exception as exc:  # noqa: BLE001 - a broken registry must not stop the image from showing
            self.ctx.say(f"Model registry: {exc}", 6000)

    # ------------------------------------------------------------ training
    def start_training(self) -> None:
        if self.ctx.read_only:
            self.ctx.say(f"Training needs a writable project: {self.ctx.read_only}", 8000)
            return
        self.training_panel.start()

    def review_by_clusters(self) -> None:
        """The clustered yes/no review of the whole project's proposals (one window per project)."""
        from desktop.review.clusters_dialog import ClusterReviewDialog

        dialog = getattr(self, "clusters_dialog", None)
        if dialog is None:
            self.clusters_dialog = dialog = ClusterReviewDialog(self.ctx, self._open_instance,
                                                                self.review_panel.window())
        else:
            dialog.rebuild()
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()

    def _open_instance(self, image_id: int, instance_id: int) -> None:
        """A proposal chosen in the clustered review, shown in the editor."""
        s = self.ctx.session
        if s.image is None or s.image.id != image_id:
            self.navigator.open_image(image_id)
        if instance_id in s.instances:
            s.select([instance_id])
            self.canvas.centre_on_instance(instance_id)

    def _model_for_task(self, task: str) -> Optional[str]:
        """Retraining makes a new version of the model in use when it does this task, a
        shipped one included: the new version lands in the user's registry, starts from the
        shipped weights and is used only if it beats them on this project's validation
        images (``training.gate``)."""
        info = self.review_panel.chosen_info()
        return info.name if info is not None and info.task == task else None

    def close(self) -> None:
        self.timer.stop()
        self.training_panel.proc.shutdown()  # the project closes: the training ends with it
        self.proposer.cancel()
        self.proposer.runner.wait(5000)
        self.predictor.runner.wait(5000)
        dialog = getattr(self, "clusters_dialog", None)
        if dialog is not None:  # its history refers to this project's store
            dialog.shutdown()
            self.clusters_dialog = None
