"""Training curves: the loss, and the validation scores, against the epoch, with axes,
values and a legend (pyqtgraph, a plotting library made for Qt).

Two plots share the epoch axis: the loss on its own scale above, the validation scores
(0 to 1) below, so an IoU of 0.8 is read as 0.8 and not against the loss's range. The
legend carries each series' last value. pyqtgraph is imported when the first point
arrives, so opening a project does not pay for it.
"""
from __future__ import annotations

import math
import os

from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

COLOURS = ["#5aaaff", "#ff963c", "#78dc78", "#e65ac8", "#e6e650"]


class CurvesWidget(QWidget):
    """``add(name, x, y)`` appends a point to the series ``name`` ("loss" goes to the upper
    plot, everything else to the validation plot); ``series`` holds the points."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("training.curves")
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.setMinimumHeight(120)  # a laptop screen: the window must still fit 720 pixels
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._placeholder = QLabel("Loss and validation scores appear here while training runs")
        self._placeholder.setWordWrap(True)
        self._layout.addWidget(self._placeholder)
        self._plots = None
        self._lines: dict[str, object] = {}

    # ------------------------------------------------------------ data
    def clear(self) -> None:
        self.series.clear()
        for line in self._lines.values():
            line.setData([], [])  # type: ignore[attr-defined]
        self._retitle()

    def add(self, name: str, x: float, y: float) -> None:
        if y is None or not math.isfinite(float(y)):
            return
        pts = self.series.setdefault(name, [])
        pts.append((float(x), float(y)))
        if not self._ensure_plots():
            self._placeholder.setText("  ".join(f"{n} {p[-1][1]:.3g}" for n, p in self.series.items()))
            return
        line = self._lines.get(name)
        if line is None:
            plot = self._plots[0] if name == "loss" else self._plots[1]
            import pyqtgraph as pg

            colour = COLOURS[len(self._lines) % len(COLOURS)]
            line = plot.plot([], [], pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5,
                             symbolBrush=colour, name=name)
            self._lines[name] = line
        line.setData([p[0] for p in pts], [p[1] for p in pts])  # type: ignore[attr-defined]
        self._retitle()

    def last(self, name: str) -> float | None:
        pts = self.series.get(name)
        return pts[-1][1] if pts else None

    # ------------------------------------------------------------ plots
    def _ensure_plots(self) -> bool:
        """Make the plots on first use; False where the plotting library is absent (the
        field bundle, which cannot train): the text below the panel then carries the values."""
        if self._plots is not None:
            return True
        os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
        try:
            import pyqtgraph as pg
        except ImportError:
            return False

        view = pg.GraphicsLayoutWidget()
        view.setObjectName("training.curves.plot")
        loss = view.addPlot(row=0, col=0)
        val = view.addPlot(row=1, col=0)
        # the loss falls: its legend goes top right; scores rise: theirs bottom right
        for plot, label, corner in ((loss, "loss", (-4, 4)), (val, "validation", (-4, -4))):
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.setLabel("left", label)
            plot.getAxis("left").enableAutoSIPrefix(False)  # a loss of 0.4 reads 0.4, not 400 (x0.001)
            plot.addLegend(offset=corner, labelTextSize="8pt")
        val.setLabel("bottom", "epoch")
        val.setYRange(0.0, 1.0)
        val.setXLink(loss)
        self._placeholder.hide()
        self._layout.addWidget(view)
        self._view = view
        self._plots = (loss, val)
        return True

    def _retitle(self) -> None:
        """The legend's entries carry the last value of each series."""
        if self._plots is None:
            return
        for plot in self._plots:
            legend = plot.legend
            if legend is None:
                continue
            for sample, label in legend.items:
                name = sample.item.name()
                value = self.last(name)
                label.setText(name if value is None else f"{name} {value:.3g}")
