"""Controls of the CAM pipeline (003_...: low threshold, closing, small parts removed,
AdvCAM iterations). A change re-runs the current image after a short pause, so that
turning a spin box does not start one run per step."""
from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QDoubleSpinBox, QFormLayout, QGroupBox, QSpinBox

DEBOUNCE_MS = 400
DEFAULTS = {"threshold": 0.1, "closing": 2, "min_area": 20, "iterations": 2}


class CamControls(QGroupBox):
    params_changed = Signal(dict)  # debounced

    def __init__(self, parent=None):
        super().__init__("CAM settings", parent)
        self.setObjectName("cam_controls")
        form = QFormLayout(self)
        self.threshold = QDoubleSpinBox(objectName="cam.threshold")
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.02)
        self.threshold.setDecimals(2)
        self.closing = QSpinBox(objectName="cam.closing")
        self.closing.setRange(0, 50)
        self.min_area = QSpinBox(objectName="cam.min_area")
        self.min_area.setRange(0, 1_000_000)
        self.min_area.setSingleStep(10)
        self.iterations = QSpinBox(objectName="cam.iterations")
        self.iterations.setRange(0, 50)
        self.threshold.setToolTip("CAM threshold: lower keeps fainter defect evidence (003 uses 0.1)")
        self.closing.setToolTip("Morphological closing radius in pixels (joins broken cracks)")
        self.min_area.setToolTip("Connected parts smaller than this many pixels are dropped")
        self.iterations.setToolTip("AdvCAM adversarial steps (more finds more of the defect; slower)")
        form.addRow("Threshold", self.threshold)
        form.addRow("Closing", self.closing)
        form.addRow("Minimum area", self.min_area)
        form.addRow("AdvCAM iterations", self.iterations)
        self.set_params(DEFAULTS)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(lambda: self.params_changed.emit(self.params()))
        for w in (self.threshold, self.closing, self.min_area, self.iterations):
            w.valueChanged.connect(lambda _v: self._timer.start())

    def params(self) -> dict:
        return {"threshold": round(self.threshold.value(), 4), "closing": self.closing.value(),
                "min_area": self.min_area.value(), "iterations": self.iterations.value()}

    def set_params(self, p: dict) -> None:
        for name in DEFAULTS:
            if name in p:
                w = getattr(self, name)
                w.blockSignals(True)
                w.setValue(p[name])
                w.blockSignals(False)
