"""What each model version's proposals became in this project (004's iterations at a
glance): accepted as proposed, accepted after an edit, rejected, still waiting, the share
accepted, and the validation IoU its trainer measured. A version that learnt from the
expert's labels should show more accepted as proposed than the one before it.

The figures come from two small queries (``annotation.versions``) and the registry's
manifests; they are re-read when asked, at most once per ``REFRESH_MS`` while the
expert works, so an edit never waits for them.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from annotation.versions import VersionOutcome, version_outcomes

REFRESH_MS = 1500
# short headers: the panel is a narrow dock (the tooltips say what each one counts)
COLUMNS = ("version", "as is", "edited", "rej.", "wait", "acc.", "IoU")
TIPS = (
    "The model version that proposed (\"drawn by hand\": masks the expert drew)",
    "Proposals accepted without an edit",
    "Proposals accepted after their mask was edited (brush, polygon, reroute, clicks…)",
    "Proposals rejected",
    "Proposals still waiting for a decision",
    "Accepted share of the decided proposals",
    "Per-image mean IoU the trainer measured on its validation images",
)


class VersionsTable(QTableWidget):
    """``request_refresh()`` after anything that may change the figures; ``refresh()`` now."""

    def __init__(self, store: Any, registry_of: Callable[[], Optional[Any]], parent=None):
        super().__init__(0, len(COLUMNS), parent)
        self.setObjectName("training.versions")
        self.store = store
        self.registry_of = registry_of
        self.rows: list[VersionOutcome] = []
        self._stale = True
        self.setHorizontalHeaderLabels(COLUMNS)
        for i, tip in enumerate(TIPS):
            self.horizontalHeaderItem(i).setToolTip(tip)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._timer = QTimer(self, singleShot=True, interval=REFRESH_MS)
        self._timer.timeout.connect(self.refresh)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        # decisions made in the clustered review's window reach the store, not this panel
        super().showEvent(event)
        if self._stale:
            self.request_refresh()

    def request_refresh(self) -> None:
        """Refresh once the expert pauses (the timer restarts on every request); a hidden
        table refreshes when it is shown instead (a big project's log takes tens of ms)."""
        self._stale = True
        if self.isVisible():
            self._timer.start()

    def refresh(self) -> None:
        self._timer.stop()
        self._stale = False
        try:
            rows = version_outcomes(self.store)
        except Exception:  # noqa: BLE001 - a closed or broken database: keep what is shown
            return
        registry = self.registry_of()
        if registry is not None:
            from inference.version_figures import fill_from_registry

            try:
                fill_from_registry(rows, registry)
            except Exception:  # noqa: BLE001 - a broken registry: the counts still show
                pass
        self.rows = rows
        self.setRowCount(len(rows))
        # one model (the usual case): its versions by number, the full name in the tooltip
        models = {row.origin.rsplit("@", 1)[0] for row in rows if not row.manual}
        for r, row in enumerate(rows):
            short = "v" + row.origin.rsplit("@", 1)[-1] if len(models) == 1 and "@" in row.origin else row.origin
            name = "by hand" if row.manual else short + (" (in use)" if row.in_use else "")
            values = (
                name, str(row.accepted_as_proposed), "-" if row.manual else str(row.accepted_edited),
                str(row.rejected), str(row.waiting),
                "-" if row.manual or row.acceptance is None else f"{100 * row.acceptance:.0f} %",
                "-" if row.validation_iou is None else f"{row.validation_iou:.3f}",
            )
            for c, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setToolTip("masks drawn by hand" if row.manual else row.origin)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.setItem(r, c, item)
