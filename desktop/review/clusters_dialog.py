"""Review by clusters (004, chapter 3): the project's proposals grouped by embedding, one
cluster at a time as a grid of thumbnails, a yes / no per question.

Keys: Y / N answer the focused thumbnail (a representative is asked first, marked "?");
Shift+Y / Shift+N answer the whole cluster; arrow keys move; Ctrl+Z / Ctrl+Shift+Z undo
and redo; a double click opens the proposal in the editor. When a cluster's
representatives agree, their answer goes to the rest of it; when they disagree, the
cluster splits and its parts are asked (``annotation.clusters``). Every answer is one
``ClusterDecisionCommand``: ordinary accept / reject states and log rows, in one
transaction, on this window's own undo history (the editor's history is per image).
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np
from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtGui import QAction, QColor, QIcon, QImage, QKeySequence, QPixmap, QUndoStack
from PySide6.QtWidgets import (QDialog, QDoubleSpinBox, QHBoxLayout, QLabel, QListView, QListWidget, QListWidgetItem,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from annotation.clusters import DEFAULT_AGREEMENT, DEFAULT_REPRESENTATIVES, DEFAULT_TARGET_SIZE, QUALITY_REVIEW, \
    Cluster, ClusterReview, Outcome, review_items
from annotation.document import InstanceState
from desktop.context import ProjectContext
from desktop.review.cluster_thumbs import THUMB_SIDE, make_thumbnails
from desktop.review.commands import ClusterDecisionCommand
from desktop.workers import JobRunner

_ID = Qt.ItemDataRole.UserRole


def _icon(rgb: Optional[np.ndarray]) -> QIcon:
    if rgb is None:
        pix = QPixmap(THUMB_SIDE, THUMB_SIDE)
        pix.fill(Qt.GlobalColor.darkGray)
        return QIcon(pix)
    h, w = rgb.shape[:2]
    img = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()  # own the bytes
    return QIcon(QPixmap.fromImage(img))


class ClusterReviewDialog(QDialog):
    """The clustered review of one open project (non-modal; one per project)."""

    def __init__(self, ctx: ProjectContext, open_instance: Optional[Callable[[int, int], None]] = None,
                 parent: Optional[QWidget] = None, *, sync_jobs: bool = False):
        super().__init__(parent)
        self.setObjectName("clusters")
        self.setWindowTitle("Review by clusters")
        self.ctx = ctx
        self.store = ctx.store
        self.open_instance = open_instance
        self.review: Optional[ClusterReview] = None
        self.history = QUndoStack(self)
        self.history.indexChanged.connect(self._history_moved)
        self.thumbs: dict[int, Optional[np.ndarray]] = {}
        self.scores: dict[int, float] = {}  # read once per clustering: a review does not change them
        self.jobs = JobRunner(self, sync=sync_jobs)
        self.jobs.result.connect(self._thumbs_ready)
        self.jobs.error.connect(lambda _rid, msg: self.status.setText(f"Thumbnails could not be made: {msg}"))
        self._shown_at = time.time()
        self._shown_cluster: Optional[int] = None

        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.target = self._spin(row, "clusters.size", "Cluster size", 2, 500, DEFAULT_TARGET_SIZE,
                                 "The most proposals one cluster holds")
        self.reps = self._spin(row, "clusters.representatives", "Questions per cluster", 1, 15,
                               DEFAULT_REPRESENTATIVES, "Representatives asked before a cluster's answer is taken")
        row.addWidget(QLabel("Agreement"))
        self.agreement = QDoubleSpinBox(objectName="clusters.agreement")
        self.agreement.setRange(0.5, 1.0)
        self.agreement.setSingleStep(0.05)
        self.agreement.setValue(DEFAULT_AGREEMENT)
        self.agreement.setToolTip("Share of the representatives' answers that must agree for the answer to go to "
                                  "the whole cluster; below it, the cluster splits (004)")
        row.addWidget(self.agreement)
        rebuild = QPushButton("Cluster again", objectName="clusters.rebuild")
        rebuild.clicked.connect(self.rebuild)
        row.addWidget(rebuild)
        lay.addLayout(row)
        self.header = QLabel(objectName="clusters.header")
        lay.addWidget(self.header)
        self.grid = QListWidget(objectName="clusters.grid")
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setIconSize(QSize(THUMB_SIDE, THUMB_SIDE))
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setSpacing(6)
        self.grid.setUniformItemSizes(True)
        self.grid.setGridSize(QSize(THUMB_SIDE + 20, THUMB_SIDE + 40))  # thumbnails arrive later: reserve room
        self.grid.setWordWrap(True)
        self.grid.itemDoubleClicked.connect(self._open)
        self.grid.installEventFilter(self)
        lay.addWidget(self.grid, 1)
        self.status = QLabel(objectName="clusters.status")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        row = QHBoxLayout()
        for name, text, fn in (("clusters.yes", "Yes (Y)", lambda: self.answer_focused(True)),
                               ("clusters.no", "No (N)", lambda: self.answer_focused(False)),
                               ("clusters.all_yes", "All yes (Shift+Y)", lambda: self.answer_cluster(True)),
                               ("clusters.all_no", "All no (Shift+N)", lambda: self.answer_cluster(False))):
            b = QPushButton(text, objectName=f"button.{name}")
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.clicked.connect(fn)
            row.addWidget(b)
        lay.addLayout(row)
        self.actions: dict[str, QAction] = {}
        for name, keys, fn in (("clusters.yes", ("Y",), lambda: self.answer_focused(True)),
                               ("clusters.no", ("N",), lambda: self.answer_focused(False)),
                               ("clusters.all_yes", ("Shift+Y",), lambda: self.answer_cluster(True)),
                               ("clusters.all_no", ("Shift+N",), lambda: self.answer_cluster(False)),
                               ("clusters.undo", ("Ctrl+Z",), self.history.undo),
                               ("clusters.redo", ("Ctrl+Shift+Z", "Ctrl+Y"), self.history.redo)):
            a = QAction(name, self)
            a.setObjectName(name)
            a.setShortcuts([QKeySequence(k) for k in keys])
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            a.triggered.connect(lambda _c=False, fn=fn: fn())
            self.addAction(a)
            self.actions[name] = a
        self.resize(5 * (THUMB_SIDE + 24), 3 * (THUMB_SIDE + 40) + 120)
        self.rebuild()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        """Y / N (with Shift: the cluster) typed in the grid, where the window's shortcuts
        did not take them (the grid would otherwise jump to an item by its first letter)."""
        if obj is self.grid and event.type() == QEvent.Type.KeyPress:
            mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
            if event.key() in (Qt.Key.Key_Y, Qt.Key.Key_N) and mods in (Qt.KeyboardModifier.NoModifier,
                                                                         Qt.KeyboardModifier.ShiftModifier):
                yes = event.key() == Qt.Key.Key_Y
                if mods == Qt.KeyboardModifier.ShiftModifier:
                    self.answer_cluster(yes)
                else:
                    self.answer_focused(yes)
                return True
        return super().eventFilter(obj, event)

    def shutdown(self) -> None:
        """The project closes: stop the thumbnail job, forget the history, close."""
        self.history.indexChanged.disconnect()
        self.review = None
        self.jobs.cancel()
        self.jobs.wait(5000)
        self.history.clear()
        self.close()
        self.deleteLater()

    def _spin(self, row: QHBoxLayout, name: str, label: str, lo: int, hi: int, value: int, tip: str) -> QSpinBox:
        row.addWidget(QLabel(label))
        spin = QSpinBox(objectName=name)
        spin.setRange(lo, hi)
        spin.setValue(value)
        spin.setToolTip(tip)
        row.addWidget(spin)
        return spin

    # ------------------------------------------------------------ building
    def rebuild(self) -> None:
        """Cluster the project's waiting proposals again (the answers so far are in the
        project as accepted / rejected, so only what still waits is clustered)."""
        items = review_items(self.store)
        self.review = ClusterReview(items, target_size=self.target.value(), representatives=self.reps.value(),
                                    agreement=self.agreement.value()) if items else None
        self.history.clear()
        self.thumbs.clear()
        self.scores = {iid: score for iid, _img, _cls, score in self.store.proposal_rows()}
        n = len(self.review.clusters) if self.review else 0
        self.status.setText(f"{len(items)} proposals in {n} clusters" if items else
                            "No proposals wait for review: propose the project first (Ctrl+Shift+P).")
        self._show()

    def current(self) -> Optional[Cluster]:
        return None if self.review is None else self.review.current()

    def _show(self) -> None:
        c = self.current()
        self.grid.clear()
        if c is None:
            asked = 0 if self.review is None else self.review.questions
            self.header.setText(f"Every proposal is decided ({asked} answers)." if self.review else "")
            return
        if c.id != self._shown_cluster:
            self._shown_cluster, self._shown_at = c.id, time.time()
        r = self.review
        assert r is not None
        pending = set(r.pending(c))
        order = [m for m in c.representatives if m in pending] + \
                [m for m in c.members if m not in pending and m not in r.decided] + \
                [m for m in c.members if m in r.decided]
        scores = self.scores
        for iid in order:
            mark = "?" if iid in pending else ("✓" if r.decided.get(iid) else "✗" if iid in r.decided else "")
            score = scores.get(iid)
            it = QListWidgetItem(f"{mark} {score:.2f}".strip() if score is not None else f"{mark} #{iid}".strip())
            it.setToolTip(f"proposal #{iid}" + ("" if score is None else f", score {score:.2f}"))
            it.setData(_ID, iid)
            if iid in r.decided:
                it.setFlags(it.flags() & ~Qt.ItemFlag.ItemIsEnabled)
                it.setBackground(QColor(200, 235, 200) if r.decided[iid] else QColor(240, 200, 200))
            elif iid in pending:  # the questions: asked first, marked
                it.setBackground(QColor(255, 240, 180))
                it.setToolTip(f"proposal #{iid}: a representative of this cluster, answer Y or N")
            it.setIcon(_icon(self.thumbs.get(iid)))
            self.grid.addItem(it)
        if self.grid.count():
            self.grid.setCurrentRow(0)
        split = f" · split from cluster {c.parent}" if c.parent is not None else ""
        self.header.setText(f"Cluster {c.id} · {c.class_name} · {len(r.undecided(c))} of {len(c.members)} waiting"
                            f" · {len(pending)} question(s) left here{split} · {r.remaining} proposals left"
                            f" · {r.questions} answers so far")
        missing = [m for m in c.members if m not in self.thumbs]
        if missing:
            self._request_thumbs(missing)

    def _request_thumbs(self, ids: list[int]) -> None:
        palette = self.store.palette
        colours = {name: palette.color_of(name) for name in palette.names}
        root = self.store.root
        self.jobs.submit(lambda cancel: make_thumbnails(root, ids, colours, cancel.is_set), with_cancel=True)

    def _thumbs_ready(self, _rid: int, thumbs: dict) -> None:
        self.thumbs.update(thumbs)
        for i in range(self.grid.count()):
            it = self.grid.item(i)
            iid = it.data(_ID)
            if iid in thumbs:
                it.setIcon(_icon(thumbs[iid]))

    # ------------------------------------------------------------ answering
    def focused(self) -> Optional[int]:
        it = self.grid.currentItem()
        return None if it is None else it.data(_ID)

    def answer_focused(self, yes: bool) -> None:
        c, iid = self.current(), self.focused()
        if c is None or iid is None or self.review is None or iid in self.review.decided:
            return
        started = self._shown_at
        out = self.review.answer(iid, yes)
        self._push(out, f"{'yes' if yes else 'no'} on #{iid}", started, question=iid, cluster=c.id)

    def answer_cluster(self, yes: bool) -> None:
        c = self.current()
        if c is None or self.review is None:
            return
        out = self.review.decide(c.id, yes)
        self._push(out, f"{'yes' if yes else 'no'} on cluster {c.id} ({len(out.accept) + len(out.reject)})",
                   self._shown_at, question=None, cluster=c.id)

    def _push(self, out: Outcome, text: str, started: float, *, question: Optional[int], cluster: int) -> None:
        if self.ctx.read_only:
            self.status.setText(f"Nothing can be saved here: {self.ctx.read_only}")
            self._resync([*out.accept, *out.reject])
            return
        images = self.store.images_of([*out.accept, *out.reject])
        now = time.time()
        decisions = []
        for ids, state, action in ((out.accept, InstanceState.ACCEPTED, "accept"),
                                   (out.reject, InstanceState.REJECTED, "reject")):
            for iid in ids:
                if iid not in images:
                    continue
                asked = iid == question or question is None
                details = {"review": QUALITY_REVIEW, "cluster": cluster}
                if not asked:
                    details["propagated"] = True
                # the question's time is the answer's; a propagated decision took none
                decisions.append((iid, images[iid], state, action, started if asked else now, details))
        if decisions:
            cmd = ClusterDecisionCommand(self.ctx.session, decisions, text)
            self.history.push(cmd)  # its ids are re-synced by _history_moved
            if cmd.failed:
                self.status.setText(f"Not saved: {text}. Nothing of it was kept; see the status bar.")
        self._shown_at = time.time()
        said = []
        if out.split:
            said.append(f"the representatives disagreed: cluster {cluster} split into {len(out.split)}")
        rest = len(decisions) - (1 if question is not None else 0)
        if rest > 0 and question is not None:
            said.append(f"their answer went to {rest} more")
        if said:
            self.status.setText("; ".join(said))
        if not decisions:
            self._resync([*out.accept, *out.reject])

    def _history_moved(self, index: int) -> None:
        """A push, undo or redo: re-read the proposals of the commands beside the new index
        (the one just done or undone), not the whole review."""
        ids: list[int] = []
        for i in (index - 1, index):
            cmd = self.history.command(i) if 0 <= i < self.history.count() else None
            if isinstance(cmd, ClusterDecisionCommand):
                ids.extend(d[0] for d in cmd.decisions)
        self._resync(ids)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        # back in this window: the editor may have decided some of these proposals meanwhile
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow():
            self._resync()
        super().changeEvent(event)

    def _resync(self, ids: Optional[list[int]] = None) -> None:
        """Take the decisions on ``ids`` (None: every proposal of the review) as the project
        holds them (after an undo, a redo, a failed save, or a decision made in the
        editor), then show the next question."""
        if self.review is None:
            return
        if ids is None:
            ids = [m for c in self.review.clusters.values() for m in c.members]
        states = self.store.states_of(ids)
        decided = dict(self.review.decided)
        for iid in ids:
            state = states.get(iid)
            if state is None:  # deleted meanwhile (a new run replaced it): nothing to ask
                decided[iid] = False
            elif state == InstanceState.PROPOSED.value:
                decided.pop(iid, None)
            else:
                decided[iid] = state == InstanceState.ACCEPTED.value
        self.review.sync(decided)
        self._show()

    def _open(self, it: QListWidgetItem) -> None:
        iid = it.data(_ID)
        if self.open_instance is None or iid is None:
            return
        images = self.store.images_of([iid])
        if iid in images:
            self.open_instance(images[iid], iid)
