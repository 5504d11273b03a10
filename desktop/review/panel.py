"""Review panel: the current image's proposals (origin and score on every row, best
first), the project-wide count, the model in use, accept / reject / next, accept all
above a score, propose this image or the project, and the CAM controls."""
from __future__ import annotations

import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QPushButton, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from desktop.coalesce import Coalesced
from desktop.review.cam_controls import DEFAULTS as CAM_DEFAULTS, CamControls


def row_text(inst) -> str:
    score = "—" if inst.score is None else f"{inst.score:.2f}"
    return f"#{inst.id} {inst.class_name}  {score}  · {inst.origin}"


class ReviewPanel(QWidget):
    model_chosen = Signal(str)

    def __init__(self, controller, actions: dict, store, parent=None):
        super().__init__(parent)
        self.setObjectName("review")
        self.ctl = controller
        self.store = store
        self.session = controller.session
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        row.addWidget(QLabel("Model"))
        self.model_combo = QComboBox(objectName="review.model")
        self.model_combo.setToolTip("The model that proposes (chosen to match the palette)")
        self.model_combo.currentIndexChanged.connect(self._model_index)
        row.addWidget(self.model_combo, 1)
        lay.addLayout(row)
        row = QHBoxLayout()
        for name in ("action.propose_image", "action.propose_project"):
            b = QToolButton(objectName=f"button.{name}")
            b.setDefaultAction(actions[name])
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            row.addWidget(b)
        # "Propose the whole project" with several local worker processes (each its own
        # model session; this window stays the only writer)
        self.workers = QSpinBox(objectName="review.workers")
        self.workers.setRange(1, max(1, os.cpu_count() or 1))
        self.workers.setPrefix("× ")
        self.workers.setToolTip("Worker processes for 'Propose the whole project' (1: one, in the background "
                                "of this window); each loads the model, this window stores what they find")
        row.addWidget(self.workers)
        lay.addLayout(row)
        self.count = QLabel(objectName="review.count")
        lay.addWidget(self.count)
        self.list = QListWidget(objectName="review.queue")
        self.list.itemClicked.connect(self._clicked)
        lay.addWidget(self.list, 1)
        row = QHBoxLayout()
        for name, text in (("review.accept", "Accept (A)"), ("review.reject", "Reject (R)"), ("review.next", "Next (N)")):
            b = QPushButton(text, objectName=f"button.{name}")
            b.clicked.connect(actions[name].trigger)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            row.addWidget(b)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.threshold = QDoubleSpinBox(objectName="review.threshold")
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.8)
        self.accept_above = QPushButton("Accept all ≥ score", objectName="review.accept_above")
        self.accept_above.clicked.connect(lambda: self.ctl.accept_above(self.threshold.value()))
        row.addWidget(self.threshold)
        row.addWidget(self.accept_above, 1)
        lay.addLayout(row)
        self.reject_rest = QPushButton("Reject the rest (Shift+R)", objectName="review.reject_rest")
        self.reject_rest.clicked.connect(actions["review.reject_rest"].trigger)
        self.reject_rest.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        lay.addWidget(self.reject_rest)
        by_clusters = QPushButton("Review by clusters… (Ctrl+Shift+R)", objectName="review.by_clusters")
        by_clusters.setToolTip("Yes / no on groups of similar proposals across the whole project (004)")
        by_clusters.clicked.connect(actions["review.by_clusters"].trigger)
        by_clusters.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        lay.addWidget(by_clusters)
        self.cam = CamControls()
        self.cam.setVisible(False)
        lay.addWidget(self.cam)
        # IRNet's random walk over a semantic model's boundary output (002): fills what the
        # network was unsure of up to the pane's frame (glass: per-image IoU 0.894 -> 0.909
        # on 80 held-out photos, 0.26 instead of 0.10 s a photo); no effect without that output
        self.random_walk = QCheckBox("Refine along boundaries (random walk)", objectName="review.random_walk")
        self.random_walk.setToolTip("Spread each class's probabilities within the regions the model's boundary "
                                    "output encloses (IRNet's random walk) before proposing; needs a model "
                                    "with a boundary output, such as the shipped glass model")
        self.random_walk.setVisible(False)
        lay.addWidget(self.random_walk)
        self._infos: list = []
        self.project_proposed = 0
        self._later = Coalesced(self.refresh, self)  # once per event-loop turn
        controller.changed.connect(self._later)
        self.refresh_totals()

    # ------------------------------------------------------------ models
    def set_models(self, infos, chosen) -> None:
        self._infos = list(infos)
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for info in self._infos:
            self.model_combo.addItem(f"{info.name}@{info.version} ({info.task})", info.name)
        if not self._infos:
            self.model_combo.addItem("no model in the registry", None)
        i = max(0, self.model_combo.findData(chosen))
        self.model_combo.setCurrentIndex(i)
        self.model_combo.blockSignals(False)
        self._show_cam()

    def chosen_info(self):
        name = self.model_combo.currentData()
        return next((i for i in self._infos if i.name == name), None)

    def _model_index(self, _i: int) -> None:
        self._show_cam()
        name = self.model_combo.currentData()
        if name:
            self.model_chosen.emit(name)

    def _show_cam(self) -> None:
        info = self.chosen_info()
        is_cam = info is not None and info.task == "cam"
        self.cam.setVisible(is_cam)
        if is_cam:  # the model's own post-processing: the CAM trainer picks its threshold on held-out masks
            self.cam.set_params({**CAM_DEFAULTS, **info.manifest.defaults})
        self.random_walk.setVisible(info is not None and info.task == "semantic")

    def semantic_params(self) -> dict:
        """The semantic pipeline's parameters the panel sets (only what differs from the model's)."""
        return {"random_walk": True} if self.random_walk.isChecked() else {}

    # ------------------------------------------------------------ queue
    def refresh_totals(self) -> None:
        """Re-read the project's number of proposals (cached in the store: one small query)."""
        self.project_proposed = self.store.totals().get("proposed", 0)
        self._later()

    def refresh(self) -> None:
        q = self.ctl.queue()
        self.count.setText(f"{len(q)} to review on this image · {self.project_proposed} in the project")
        cur = self.ctl.current
        self.list.blockSignals(True)
        self.list.clear()
        for inst in q:
            it = QListWidgetItem(row_text(inst))
            it.setData(Qt.ItemDataRole.UserRole, inst.id)
            it.setToolTip(f"origin {inst.origin}; score {inst.score}")
            self.list.addItem(it)
            if cur is not None and inst.id == cur.id:
                it.setSelected(True)
                self.list.setCurrentItem(it)
        self.list.blockSignals(False)

    def _clicked(self, it) -> None:
        iid = it.data(Qt.ItemDataRole.UserRole)
        self.session.select([iid])
        self.ctl.canvas.centre_on_instance(iid)
