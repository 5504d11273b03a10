"""Training panel: task, epochs, start / stop, progress, live loss and validation
curves, "retrain after N new accepted labels", and the notice offering to re-propose
the images not done when a new model version lands."""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QSpinBox, QTabWidget, QToolButton, QVBoxLayout, QWidget)

from desktop.panels.curves import CurvesWidget
from desktop.panels.versions_table import VersionsTable
from desktop.training_process import TrainingProcess, runs_dir_of, train_command

TASKS = ("semantic", "cam", "instance")
META_ACCEPTED_AT_START = "training.accepted_at_start"
META_RETRAIN_AFTER = "training.retrain_after"
META_AUTO = "training.auto"
# the validation figures the trainers report, as the curves' legend names them
VAL_NAMES = {"mean_iou": "IoU", "mean_max_fbeta": "F-beta"}


def accepted_count(store) -> int:
    """Accepted instances in the project (counts cached in the store: one small query)."""
    return store.totals().get("accepted", 0)


class TrainingPanel(QWidget):
    published = Signal(str, str)  # name, version (from the process's 'published' event)
    repropose = Signal(list)  # image paths to propose again
    message = Signal(str)

    def __init__(self, store, train_action, registry_root=None, parent=None, registry_of=None):
        super().__init__(parent)
        self.setObjectName("training")
        self.store = store
        self.registry_root = registry_root
        # task -> the model name to publish a new version of (the one in use), or None for the default
        self.model_for_task = lambda task: None
        self.proc = TrainingProcess(runs_dir_of(store.root), self)
        self.proc.event.connect(self._event)
        self.proc.finished.connect(self._finished)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        form = QFormLayout()
        self.task = QComboBox(objectName="training.task")
        self.task.addItems(TASKS)
        self.epochs = QSpinBox(objectName="training.epochs")
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(10)
        form.addRow("Task", self.task)
        form.addRow("Epochs", self.epochs)
        self.retrain_after = QSpinBox(objectName="training.retrain_after")
        self.retrain_after.setRange(1, 100000)
        self.retrain_after.setValue(int(store.get_meta(META_RETRAIN_AFTER, "50") or 50))
        self.retrain_after.valueChanged.connect(lambda v: self._save_meta(META_RETRAIN_AFTER, str(v)))
        self.auto = QCheckBox("retrain automatically", objectName="training.auto")
        self.auto.setToolTip("When this many new labels are accepted while you work, training starts by "
                             "itself. Opening a project never starts it: it is offered.")
        # off unless the user turned it on for this project: training never starts unasked
        self.auto.setChecked(store.get_meta(META_AUTO, "0") == "1")
        self.auto.toggled.connect(lambda on: self._save_meta(META_AUTO, "1" if on else "0"))
        row = QHBoxLayout()
        row.addWidget(self.retrain_after)
        row.addWidget(self.auto)
        form.addRow("New labels", row)
        lay.addLayout(form)
        row = QHBoxLayout()
        self.start_button = QToolButton(objectName="training.start")
        self.start_button.setDefaultAction(train_action)
        self.start_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.stop_button = QPushButton("Stop", objectName="training.stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        row.addWidget(self.start_button)
        row.addWidget(self.stop_button)
        lay.addLayout(row)
        self.new_labels = QLabel(objectName="training.new_labels")
        lay.addWidget(self.new_labels)
        self.offer = QPushButton(objectName="training.offer")
        self.offer.setVisible(False)
        self.offer.clicked.connect(self.start)
        lay.addWidget(self.offer)
        self.progress = QProgressBar(objectName="training.progress")
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        lay.addWidget(self.progress)
        self.status = QLabel("Not training", objectName="training.status")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.status)
        self.curves = CurvesWidget()
        # registry_of: the registry the running engine reads (None until it is made)
        self.versions = VersionsTable(store, registry_of or (lambda: None))
        # one space for both, so the panel fits a 720-pixel laptop screen
        self.views = QTabWidget(objectName="training.views")
        self.views.addTab(self.curves, "Curves")
        self.views.addTab(self.versions, "By model version")
        self.views.setTabToolTip(1, "What each model version's proposals became: accepted as proposed, "
                                    "edited, rejected, waiting")
        lay.addWidget(self.views, 1)
        self.repropose_button = QPushButton(objectName="training.repropose")
        self.repropose_button.setVisible(False)
        self.repropose_button.clicked.connect(self._repropose)
        lay.addWidget(self.repropose_button)
        self._pending_paths: list[str] = []
        self._n_epochs = 1
        self.last_published: Optional[tuple[str, str]] = None
        self.last_gate: Optional[dict] = None
        kept = TrainingProcess.find_running(runs_dir_of(store.root))
        if kept is not None and self.proc.attach(kept):
            self._running_ui(True)
            self.status.setText("A training started earlier is still running; its progress follows")
        self.refresh_count(on_open=True)

    def _save_meta(self, key: str, value: str) -> None:
        if not self.store.read_only:
            self.store.set_meta(key, value)

    # ------------------------------------------------------------ counting
    def new_accepted(self) -> int:
        base = int(self.store.get_meta(META_ACCEPTED_AT_START, "0") or 0)
        return max(0, accepted_count(self.store) - base)

    def refresh_count(self, on_open: bool = False) -> None:
        """Show the count; with "retrain automatically" on and the count reached, start
        training, except when the project is just opening: then offer it (a button)."""
        n, limit = self.new_accepted(), self.retrain_after.value()
        self.new_labels.setText(f"{n} new accepted label{'' if n == 1 else 's'} since the last training "
                                f"(retrain at {limit})")
        if not on_open:
            self.versions.request_refresh()
        due = n >= limit and not self.proc.running and not self.store.read_only
        self.offer.setText(f"Retrain now ({n} new label{'' if n == 1 else 's'})")
        self.offer.setVisible(due)
        if due and self.auto.isChecked() and not on_open:
            self.message.emit(f"{n} new accepted labels: retraining")
            self.start()

    # ------------------------------------------------------------ process
    @property
    def running(self) -> bool:
        return self.proc.running

    def start(self) -> bool:
        if self.proc.running:
            self.message.emit("Training is already running")
            return False
        task, epochs = self.task.currentText(), self.epochs.value()
        extra = ["--registry", str(self.registry_root)] if self.registry_root else []
        name = self.model_for_task(task)
        if name:
            extra += ["--name", name]
        cmd = train_command(str(self.store.root), task, epochs, extra)
        self.store.set_meta(META_ACCEPTED_AT_START, str(accepted_count(self.store)))
        self._n_epochs = epochs
        self.last_published, self.last_gate = None, None
        self.curves.clear()
        self.views.setCurrentWidget(self.curves)
        self.progress.setValue(0)
        self.status.setStyleSheet("")
        self.status.setText(f"Starting {task} training ({epochs} epochs)…")
        self._running_ui(True)
        self.proc.start(cmd)
        self.refresh_count()
        return True

    def _running_ui(self, running: bool) -> None:
        self.stop_button.setEnabled(running)
        self.start_button.setEnabled(not running)
        if running:
            self.offer.setVisible(False)

    def stop(self) -> None:
        if self.proc.running:
            self.status.setText("Stopping…")
            self.proc.stop()

    def _event(self, ev: dict) -> None:
        kind = ev.get("event")
        n = max(1, self._n_epochs)
        if kind == "step":
            epoch, step, total = ev.get("epoch", 1), ev.get("step", 0), max(1, ev.get("total", 1) or 1)
            frac = (epoch - 1 + min(1.0, (step % total or total) / total)) / n
            self.progress.setValue(int(1000 * min(1.0, frac)))
        elif kind == "epoch":
            epoch = ev.get("epoch", 0)
            self.progress.setValue(int(1000 * min(1.0, epoch / n)))
            if isinstance(ev.get("loss"), (int, float)):
                self.curves.add("loss", epoch, ev["loss"])
            for k, v in (ev.get("val") or {}).items():
                if isinstance(v, (int, float)):
                    self.curves.add(VAL_NAMES.get(k, k), epoch, v)
            self.status.setText(f"Epoch {epoch}/{n}: loss {ev.get('loss', float('nan')):.4f}")
        elif kind == "data":
            self.status.setText(f"Training on {ev.get('train_images')} images, validating on {ev.get('val_images')}")
        elif kind == "gate":
            self.last_gate = dict(ev)
        elif kind == "published":
            self.last_published = (str(ev.get("name")), str(ev.get("version")))
            name, version = self.last_published
            if ev.get("activated", True):
                self.status.setText(f"Published {name}@{version}: now in use")
            else:
                # the quality gate kept the version in use: say why, and how to use the new one anyway
                why = (self.last_gate or {}).get("reason", "not better on the validation images")
                self.status.setText(f"Published {name}@{version}, not used: {why}. "
                                    f"To use it anyway: specula models activate {name} {version}")
            self.published.emit(*self.last_published)
            self.versions.request_refresh()  # the new version's validation IoU and "in use"
        elif kind == "error":
            self.status.setText(f"Training error: {ev.get('message')}")

    def _finished(self, ok: bool, msg: str) -> None:
        self._running_ui(False)
        if ok:
            self.progress.setValue(1000)
            if self.last_published:
                msg += f": {self.last_published[0]}@{self.last_published[1]}"
                if self.last_gate is not None and not self.last_gate.get("activated", True):
                    msg += (f", not used ({self.last_gate.get('reason')}); to use it anyway: specula models "
                            f"activate {self.last_published[0]} {self.last_published[1]}")
        else:
            self.status.setStyleSheet("color: #e05050")
        self.status.setText(msg)
        self.message.emit(msg.splitlines()[0])

    # ------------------------------------------------------------ new versions
    def offer_repropose(self, name: str, version: str, paths: list[str]) -> None:
        self._pending_paths = list(paths)
        self.repropose_button.setText(f"New model {name}@{version}: re-propose {len(paths)} images not done")
        self.repropose_button.setVisible(bool(paths))

    def _repropose(self) -> None:
        self.repropose_button.setVisible(False)
        self.repropose.emit(self._pending_paths)
