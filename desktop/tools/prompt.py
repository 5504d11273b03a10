"""Prompt (P): clicks and boxes answered by the prompt model (a SAM pair the user registered,
else the click-refinement model, else GrabCut; ``inference.pipelines.prompt_choice``).

- With an instance or proposal selected, the clicks **refine** it: left click adds
  (positive), right click removes (negative); the selected mask is the previous mask the
  model starts from, and each answer the next one's. Its overlay is hidden while the
  preview shows the refined mask.
- With nothing selected, a left click or a left drag (a box) starts a new object of the
  current class; right clicks remove.

Each click asks for a new mask off the GUI thread (only the newest answer is shown).
Enter keeps the result as one undo step (``desktop.tools.prompt_refine``: a mask edit, or
for a proposal a refine-and-accept; a new object is an instance of the current class),
logged with every click (x, y, positive, model, time). Esc cancels and leaves the
document untouched; Esc with nothing in progress clears the selection, so that the next
click starts a new object.
"""
from __future__ import annotations

import time
from typing import Optional

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsRectItem

from annotation.document import Instance, InstanceState
from annotation.mask import Mask
from desktop.canvas.overlay import InstanceItem
from desktop.commands import AddInstanceCommand
from desktop.tools.base import Tool
from desktop.tools.prompt_refine import click_details, refine_command, refine_delta

DRAG_PX = 5  # screen pixels a press must move to become a box


class PromptTool(Tool):
    name = "prompt"
    label = "Prompt (click / box; refines the selection; Enter keeps, Esc cancels)"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, canvas, predictor, rgb_source):
        """``rgb_source()`` returns ``(rgb, key)`` of the shown image, or ``(None, None)``."""
        super().__init__(canvas)
        self.predictor = predictor
        self.rgb_source = rgb_source
        self.points: list[tuple[float, float]] = []
        self.labels: list[int] = []
        self.click_log: list[dict] = []  # per click: x, y, positive, t (time), model (once answered)
        self.box: Optional[tuple[float, float, float, float]] = None
        self.target: Optional[int] = None  # the instance / proposal being refined
        self.original: Optional[Mask] = None  # its mask when refining began (what the model starts from)
        self.mask: Optional[Mask] = None
        self.source = ""
        self.started: Optional[float] = None
        self._press: Optional[QPointF] = None
        self._dragging = False
        self._rid = 0
        self._asked = 0  # how many clicks the newest request held
        self._commit_when_ready = False
        self._items: list = []
        self._preview: Optional[InstanceItem] = None
        self._rect = QGraphicsRectItem()
        pen = QPen(QColor(255, 255, 0), 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self._rect.setPen(pen)
        self._rect.setZValue(12)
        predictor.mask_ready.connect(self._mask_ready)
        predictor.failed.connect(self._failed)
        canvas.session.image_changed.connect(self.clear)  # a refinement belongs to its image

    @property
    def clicks(self) -> int:
        return len(self.points) + (1 if self.box is not None else 0)

    @property
    def pending(self) -> bool:
        return self._rid != 0

    @property
    def refining(self) -> bool:
        return self.target is not None

    def activate(self) -> None:
        super().activate()
        self.canvas.message(self.hint())

    def hint(self) -> str:
        """One line for the status bar: the model in use and what the buttons do now."""
        model = self.source if self.clicks and self.source else self.predictor.model_name()
        sel = self.session.instances.get(self.target) if self.target is not None else self.session.selected
        if sel is not None:
            what = "proposal" if sel.is_proposal else "instance"
            return (f"Prompt with {model}: refining {what} #{sel.id}: left click adds, right click removes; "
                    "Enter keeps, Esc cancels")
        return (f"Prompt with {model}: click or drag a box on an object (right click removes); "
                "Enter keeps, Esc cancels")

    # ------------------------------------------------------------ gestures
    def press(self, pos: QPointF, button, mods) -> bool:
        if button == Qt.MouseButton.LeftButton:
            self._press = QPointF(pos)
            self._dragging = False
            return True
        if button == Qt.MouseButton.RightButton:
            self._add_point(pos, 0)
            return True
        return False

    def move(self, pos: QPointF, mods) -> None:
        if self._press is None or self._will_refine():
            return  # refining takes clicks; a drag is a click where it was pressed
        d = pos - self._press
        if not self._dragging and max(abs(d.x()), abs(d.y())) >= self.screen_px(DRAG_PX):
            self._dragging = True
            if self._rect.scene() is None:
                self.canvas.scene().addItem(self._rect)
        if self._dragging:
            self._rect.setRect(QRectF(self._press, pos).normalized())

    def release(self, pos: QPointF, button, mods) -> None:
        if button != Qt.MouseButton.LeftButton or self._press is None:
            return
        start, self._press = self._press, None
        if self._dragging:
            r = QRectF(start, pos).normalized()
            self._start_clock()
            self.box = (r.left(), r.top(), r.right(), r.bottom())
            self._rect.setRect(r)
            self._request()
        else:
            self._add_point(start if self._will_refine() else pos, 1)

    def key(self, key: int, mods) -> bool:
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.commit()
            return True
        if key == Qt.Key.Key_Escape:
            if self.clicks or self.pending or self.refining:
                self.clear()
                self.canvas.message("Prompt cancelled: nothing changed")
            elif self.session.selection:
                self.session.select([])
                self.canvas.message(self.hint())
            return True
        return False

    # ------------------------------------------------------------ prompts -> mask
    def _will_refine(self) -> bool:
        return self.refining or (self.clicks == 0 and self.session.selected is not None)

    def _start_clock(self) -> None:
        if self.started is None:
            self.started = time.time()

    def _begin_refine(self) -> None:
        """The first click with a selection: refine the selected mask (hidden meanwhile)."""
        inst = self.session.selected
        if inst is None or self.clicks:
            return
        self.target = inst.id
        self.original = inst.mask.copy()
        item = self.canvas.items_by_id.get(inst.id)
        if item is not None:
            item.setVisible(False)
        self.canvas.message(self.hint())

    def _end_refine(self) -> None:
        iid, self.target, self.original = self.target, None, None
        if iid is None:
            return
        item = self.canvas.items_by_id.get(iid)
        inst = self.session.instances.get(iid)
        if item is not None and inst is not None:
            item.setVisible(self.session.is_visible(inst))

    def _add_point(self, pos: QPointF, label: int) -> None:
        if not self.clicks:
            self._begin_refine()
        self._start_clock()
        self.points.append((pos.x(), pos.y()))
        self.labels.append(label)
        self.click_log.append({"x": round(pos.x(), 2), "y": round(pos.y(), 2), "positive": bool(label),
                               "t": round(time.time(), 3)})
        r = self.screen_px(5)
        dot = QGraphicsEllipseItem(QRectF(pos.x() - r, pos.y() - r, 2 * r, 2 * r))
        dot.setBrush(QColor(0, 220, 0) if label else QColor(230, 0, 0))
        pen = QPen(QColor(255, 255, 255), 1)
        pen.setCosmetic(True)
        dot.setPen(pen)
        dot.setZValue(12)
        self.canvas.scene().addItem(dot)
        self._items.append(dot)
        self._request()

    def _request(self) -> None:
        rgb, key = self.rgb_source()
        if rgb is None:
            self.canvas.message("The image is still loading")
            return
        if not self.refining and not any(self.labels) and self.box is None:
            self.canvas.message("Add a positive click (left) or a box (drag) first")
            return
        self._asked = len(self.points)
        self._rid = self.predictor.request(rgb, key, self.points, self.labels, self.box,
                                           self.original if self.refining else None)

    def _mask_ready(self, rid: int, mask, source: str) -> None:
        if rid != self._rid:
            return
        self._rid = 0
        if source != self.source:  # say which model answers (a model that failed to load: GrabCut)
            self.source = source
            self.canvas.message(self.hint())
        self.mask = mask
        for c in self.click_log[:self._asked]:
            c.setdefault("model", source)
        self._show_preview()
        if self._commit_when_ready:
            self._commit_when_ready = False
            self.commit()

    def _failed(self, msg: str) -> None:
        self._rid = 0
        self._commit_when_ready = False
        self.canvas.message(f"Prompt: {msg}")

    def _show_preview(self) -> None:
        if self._preview is not None:
            self.canvas.scene().removeItem(self._preview)
            self._preview = None
        if self.mask is None or self.mask.is_empty():
            return
        s = self.session
        target = s.instances.get(self.target) if self.target is not None else None
        cls = target.class_name if target is not None else s.current_class
        inst = Instance(0, cls, self.mask, InstanceState.PROPOSED)
        try:
            rgb = s.palette.color_of(cls)
        except KeyError:
            rgb = (255, 255, 0)
        self._preview = InstanceItem(inst, rgb, 0.6)
        self._preview.set_style(rgb, 0.6, True)
        self._preview.setZValue(11)
        self.canvas.scene().addItem(self._preview)

    # ------------------------------------------------------------ decision
    def commit(self) -> None:
        if self.pending:
            self._commit_when_ready = True
            return
        if self.refining:
            self._commit_refined()
            return
        if self.mask is None or self.mask.is_empty():
            self.canvas.message("Nothing to keep: click on the object first")
            return
        s = self.session
        cls = s.current_class
        mask = s.clip_new_mask(cls, self.mask.copy())
        if mask.is_empty():
            self.canvas.message("The mask lies where the overlap rule forbids this class")
            self.clear()
            return
        inst = Instance(s.image.id, cls, mask, InstanceState.ACCEPTED)
        details = click_details(self.click_log, self.labels, self.box, self.source)
        started = self.started
        self.clear()
        self.canvas.push(AddInstanceCommand(s, inst, "prompt", started=started, **details))
        self.canvas.message(f"New {cls} instance from the prompt")

    def _commit_refined(self) -> None:
        s = self.session
        iid = self.target
        if iid not in s.instances:
            self.canvas.message("The refined instance is gone (undone meanwhile): nothing kept")
            self.clear()
            return
        if self.mask is None:
            self.canvas.message("Nothing to keep: click on the selected object first")
            return
        if self.mask.is_empty():
            self.canvas.message("The refined mask is empty: delete the instance instead (Del), or click again")
            return
        delta = refine_delta(s, iid, self.mask)
        if delta is None:
            self.canvas.message("The clicks changed nothing")
            self.clear()
            return
        details = click_details(self.click_log, self.labels, self.box, self.source)
        started = self.started
        if s.instances[iid].is_proposal:
            details["edit_duration"] = round(time.time() - (started or time.time()), 3)
        command = refine_command(s, iid, delta, started, details)
        self.clear()
        self.canvas.push(command)
        self.canvas.message(f"Refined #{iid} with {details['clicks']} click{'s' if details['clicks'] != 1 else ''}")

    def clear(self) -> None:
        for it in self._items:
            self.canvas.scene().removeItem(it)
        self._items.clear()
        if self._rect.scene() is not None:
            self.canvas.scene().removeItem(self._rect)
        self._end_refine()
        self.points, self.labels, self.click_log, self.box = [], [], [], None
        self.mask, self.started, self._rid, self._press = None, None, 0, None
        self._commit_when_ready = False
        self._show_preview()

    def cancel(self) -> None:
        self.clear()
