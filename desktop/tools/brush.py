"""Brush (B) and eraser (E) on the selected instance; the smart brush (Shift+B) adds
when the stroke starts inside the selected mask and cuts when it starts outside
(LabelMeLite). Radius on Ctrl+wheel and [ ]. Strokes are interpolated between mouse
positions (``Mask.paint_stroke``) and are one undo step. A ``StrokeRecorder`` saves the
pixels of each tile just before the stroke first touches it, so a stroke costs the
tiles it crosses, never a copy of the instance, and its undo holds only changed tiles.

With nothing selected the brush starts a new instance of the current class (as CVAT's
and X-AnyLabeling's brushes do): the stroke paints a draft shown by its own overlay
item, and the release adds it as one ``AddInstanceCommand`` (logged as ``brush`` with
``from_scratch``), so undo removes the instance. The eraser needs a selection."""
from __future__ import annotations

import time

from PySide6.QtCore import QPointF, Qt

from annotation.delta import StrokeRecorder
from annotation.document import Instance
from annotation.mask import Mask, stroke_box, union_box
from desktop.canvas.overlay import InstanceItem
from desktop.commands import AddInstanceCommand, MaskEditCommand
from desktop.geometry.hit import contains
from desktop.tools.base import Tool

class BrushTool(Tool):
    name = "brush"
    label = "Brush"
    mode = "add"  # "add", "erase" or "auto"
    cursor = Qt.CursorShape.BlankCursor

    def __init__(self, canvas):
        super().__init__(canvas)
        self._inst = None
        self._recorder = None  # StrokeRecorder of the stroke in progress
        self._value = True
        self._last = None
        self._box = None
        self._started = 0.0
        self._draft_item = None  # overlay of a new instance being painted (not in the session yet)

    @property
    def radius(self) -> float:
        return self.canvas.brush_radius

    @property
    def busy(self) -> bool:
        return self._inst is not None

    def activate(self) -> None:
        super().activate()
        self.canvas.show_brush_cursor(True)

    def deactivate(self) -> None:
        super().deactivate()
        self.canvas.show_brush_cursor(False)

    def press(self, pos: QPointF, button, mods) -> bool:
        if button != Qt.MouseButton.LeftButton:
            return False
        inst = self.session.selected
        if inst is None:
            if self.mode == "erase":
                self.canvas.message("Select an instance to erase from (V, then click)")
                return True
            if self.mode == "auto":
                self.canvas.message("Select an instance to paint on (V, then click), or paint a new one with B")
                return True
            return self._start_new(pos)
        if self.mode == "auto":
            self._value = contains(inst, pos.x(), pos.y())
        else:
            self._value = self.mode == "add"
        self._begin(inst, pos)
        return True

    def _begin(self, inst, pos: QPointF) -> None:
        self._inst = inst
        self._recorder = StrokeRecorder(inst.mask)
        self._started = time.time()
        self._box = (0, 0, 0, 0)
        self._last = (pos.x(), pos.y())
        self._dab([self._last])

    def _start_new(self, pos: QPointF) -> bool:
        """A stroke with nothing selected: paint a draft instance of the current class."""
        s = self.session
        if s.image is None:
            return True
        draft = Instance(s.image.id, s.current_class, Mask.empty(s.image_size))
        try:
            rgb = s.palette.color_of(draft.class_name)
        except KeyError:
            rgb = (200, 200, 200)
        self._draft_item = InstanceItem(draft, rgb, self.canvas.opacity)
        self._draft_item.setZValue(3)
        self.canvas.scene().addItem(self._draft_item)
        self._value = True
        self._begin(draft, pos)
        return True

    def _dab(self, points) -> None:
        inst = self._inst
        box = stroke_box(points, self.radius, inst.mask.image_size)
        if box[2] <= box[0] or box[3] <= box[1]:
            return
        self._recorder.touch(box)  # before painting: the tiles' pre-stroke pixels
        inst.mask.paint_stroke(points, self.radius, self._value)
        if self._value and self.session.overlap_enabled:
            after = inst.mask.read_box(box)
            clipped = self.session.clip(inst.class_name, box, self._recorder.before(box), after, exclude_id=inst.id)
            if clipped is not after:
                inst.mask.write_box(box, clipped)
        self._box = union_box(self._box, box)
        if self._draft_item is not None:
            self._draft_item.update_box(box)
        else:
            self.canvas.instance_pixels_changed(inst.id, box)

    def move(self, pos: QPointF, mods) -> None:
        self.canvas.move_brush_cursor(pos)
        if self._inst is None:
            return
        p = (pos.x(), pos.y())
        if p != self._last:
            self._dab([self._last, p])
            self._last = p

    def release(self, pos: QPointF, button, mods) -> None:
        if self._inst is None or button != Qt.MouseButton.LeftButton:
            return
        inst, recorder, box = self._inst, self._recorder, self._box
        self._inst = self._recorder = None
        if self._draft_item is not None:
            self._drop_draft()
            if box[2] > box[0]:
                self._add_new(inst)
            return
        delta = recorder.finish()
        if delta.is_empty:
            return
        action = "brush" if self._value else "erase"
        self.canvas.push(MaskEditCommand(self.session, inst.id, delta, action, started=self._started,
                                         radius=self.radius, mode=self.mode))

    def _add_new(self, draft) -> None:
        mask = draft.mask.cropped()
        if mask.is_empty():
            self.canvas.message("The stroke lies entirely on masks of other classes (overlap policy)")
            return
        inst = Instance(draft.image_id, draft.class_name, mask)
        self.canvas.push(AddInstanceCommand(self.session, inst, "brush", started=self._started,
                                            radius=self.radius, mode=self.mode, from_scratch=True))

    def _drop_draft(self) -> None:
        if self._draft_item is not None:
            self.canvas.scene().removeItem(self._draft_item)
            self._draft_item = None

    def cancel(self) -> None:
        if self._draft_item is not None:
            self._drop_draft()  # the new instance was never added: nothing to put back
        elif self._inst is not None and self._recorder is not None:
            # put the stroke in progress back
            box = self._recorder.restore()
            self.canvas.instance_pixels_changed(self._inst.id, box)
        self._inst = self._recorder = None

    def wheel(self, steps: float, mods) -> bool:
        self.canvas.set_brush_radius(self.radius * (1.15 ** steps))
        return True


class EraserTool(BrushTool):
    name = "eraser"
    label = "Eraser"
    mode = "erase"


class SmartBrushTool(BrushTool):
    name = "smartbrush"
    label = "Smart brush (adds inside, cuts outside)"
    mode = "auto"
