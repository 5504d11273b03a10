"""The canvas: a QGraphicsView over the tiled photo and one overlay item per instance.

Scene coordinates are image pixels. Wheel zooms about the cursor, Ctrl+wheel goes to
the tool (brush radius); middle-drag or Space+drag pans; events in between go to the
active tool in image coordinates.

Overlay items are created at most ``ADD_CHUNK`` per event-loop turn: a proposing run (or
its undo) that adds 150 instances at once gets them on screen over a few turns instead of
blocking one turn; the rest wait in ``_pending`` (``pending_items`` counts them).

Brightness, contrast and gamma (``set_display``) change only what is shown, per image for
the session; the overview map (``minimap``, objectName ``navigator``) shows where the
view is while it does not show the whole photo.
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPen, QUndoCommand, QUndoStack
from PySide6.QtWidgets import QFrame, QGraphicsEllipseItem, QGraphicsScene, QGraphicsView, QLabel

from annotation.palette import QUALITATIVE
from desktop.canvas.display import NEUTRAL, DisplayAdjust
from desktop.canvas.minimap import Minimap
from desktop.canvas.overlay import InstanceItem
from desktop.canvas.selection import SelectionItem
from desktop.canvas.tiles import TiledImageItem
from desktop.geometry.hit import instance_at
from desktop.session import EditingSession
from desktop.tools.base import Tool

MIN_ZOOM, MAX_ZOOM = 1 / 64, 64.0
ADD_CHUNK = 20  # overlay items created per event-loop turn


class CanvasView(QGraphicsView):
    status_message = Signal(str)
    zoom_changed = Signal(float)

    def __init__(self, session: EditingSession, undo_stack: QUndoStack, parent=None):
        super().__init__(parent)
        self.setObjectName("canvas")
        self.session = session
        self.undo_stack = undo_stack
        self.setScene(QGraphicsScene(self))
        self.setBackgroundBrush(QColor(0, 0, 0))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontSavePainterState, True)
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.image_item: Optional[TiledImageItem] = None
        self.items_by_id: dict[int, InstanceItem] = {}
        self._pending: dict[int, None] = {}  # instance ids waiting for their item, in order
        self._prebuilt: dict[int, tuple] = {}  # instance id -> overlay_image(...) made by a worker
        self._added_this_turn = 0
        self._turn = QTimer(self)  # fires once the current event-loop turn is over
        self._turn.setSingleShot(True)
        self._turn.setInterval(0)
        self._turn.timeout.connect(self._next_turn)
        self.opacity = 0.45
        self.color_by_instance = False
        self.brush_radius = 8.0
        self.tool: Optional[Tool] = None
        self._panning: Optional[QPoint] = None
        self._space = False
        self._brush_cursor = QGraphicsEllipseItem()
        pen = QPen(QColor(255, 255, 255), 1)
        pen.setCosmetic(True)
        self._brush_cursor.setPen(pen)
        self._brush_cursor.setZValue(20)
        self._brush_cursor.setVisible(False)
        self.scene().addItem(self._brush_cursor)
        self.selection_item = SelectionItem()
        self.scene().addItem(self.selection_item)
        # what stands instead of a photo that cannot be shown (missing, unreadable)
        self.problem = QLabel(self.viewport(), objectName="canvas.problem")
        self.problem.setWordWrap(True)
        self.problem.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.problem.setStyleSheet("color: #ffd060; font-size: 15px; padding: 24px;")
        self.problem.hide()
        session.instance_changed.connect(self._on_instance_changed)
        session.instance_added.connect(self._on_instance_added)
        session.instance_removed.connect(self._on_instance_removed)
        session.instances_reloaded.connect(self._rebuild_items)
        session.selection_changed.connect(self._restyle_all)
        session.selection_changed.connect(self._show_selection)
        session.palette_changed.connect(self._restyle_all)
        # display setting per image id, for the session: an image comes back as it was left
        self._display: dict[Optional[int], DisplayAdjust] = {}
        self.minimap = Minimap(self)
        # every way the view moves: scroll (pan, centerOn), zoom, fit, a changed transform
        for bar in (self.horizontalScrollBar(), self.verticalScrollBar()):
            bar.valueChanged.connect(self.minimap.follow)
            bar.rangeChanged.connect(self.minimap.follow)
        self.zoom_changed.connect(self.minimap.follow)

    # ------------------------------------------------------------ content
    def show_problem(self, text: str) -> None:
        """Say in the middle of the canvas why there is no photo to show."""
        self.problem.setText(text)
        self.problem.setGeometry(self.viewport().rect())
        self.problem.show()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.problem.setGeometry(self.viewport().rect())
        self.minimap.follow()  # its corner and size follow the canvas

    def set_image(self, rgb, low=None) -> None:
        """Show an (H, W, 3) uint8 RGB array and the session's instances; ``low`` is its
        zoomed-out level when the loader made it off the GUI thread."""
        self.problem.hide()
        if self.tool is not None:
            self.tool.cancel()
        for item in self.items_by_id.values():
            self.scene().removeItem(item)
        self.items_by_id.clear()
        self._pending.clear()
        self._prebuilt.clear()
        if self.image_item is not None:
            self.scene().removeItem(self.image_item)
            self.image_item = None
        self.selection_item.set_selected([])
        self.selection_item.set_hover(None, (0, 0, 0))
        if rgb is None:
            self.minimap.set_source(None)
            return
        self.image_item = TiledImageItem(rgb, low)
        self.scene().addItem(self.image_item)
        h, w = rgb.shape[:2]
        item = self.image_item
        self.minimap.set_source(item.low if item.low is not None else item.rgb, (w, h))
        self._apply_display()
        # room around the image so that any point can be zoomed about / centred
        self.setSceneRect(QRectF(-w, -h, 3 * w, 3 * h))
        self._rebuild_items()
        self.fit()

    def _show_selection(self) -> None:
        s = self.session
        self.selection_item.set_selected(s.instances[i] for i in s.selection if i in s.instances)

    def _rebuild_items(self) -> None:
        """One item per instance of the session, afresh (a new image, or the session re-read
        the store after an action could not be saved)."""
        self.selection_item.set_hover(None, (0, 0, 0))
        self._show_selection()
        for item in self.items_by_id.values():
            self.scene().removeItem(item)
        self.items_by_id.clear()
        self._pending.clear()
        if self.image_item is None:
            return
        for iid in self.session.instances:
            self._create_item(iid)
        self._added_this_turn = 0  # one deliberate turn; later adds start afresh

    def _style_of(self, inst):
        if self.color_by_instance and inst.id is not None:
            # neighbouring instances of one class must not run together: a qualitative
            # palette by id (ids of one image are consecutive, so neighbours differ)
            rgb = QUALITATIVE[inst.id % len(QUALITATIVE)]
        else:
            try:
                rgb = self.session.palette.color_of(inst.class_name)
            except KeyError:
                rgb = (200, 200, 200)
        return rgb, self.opacity, inst.id in self.session.selection

    def set_color_by_instance(self, on: bool) -> None:
        """Colour the overlays by instance (True) or by class (False)."""
        self.color_by_instance = bool(on)
        self._restyle_all()

    @property
    def pending_items(self) -> int:
        """Instances whose overlay item is still to be created (a later turn)."""
        return len(self._pending)

    def preload_overlays(self, images: dict) -> None:
        """{instance id: ``overlay_image(mask, proposal)``} built off the GUI thread, used
        when those instances are added next (one whose mask changed meanwhile is redrawn)."""
        self._prebuilt.update(images)

    def _on_instance_added(self, iid: int) -> None:
        if self._pending or self._added_this_turn >= ADD_CHUNK:
            self._pending[iid] = None
        else:
            self._create_item(iid)
        self._turn.start()

    def _next_turn(self) -> None:
        self._added_this_turn = 0
        while self._pending and self._added_this_turn < ADD_CHUNK:
            iid = next(iter(self._pending))
            del self._pending[iid]
            self._create_item(iid)
        if self._pending:
            self._turn.start()
        else:
            self._prebuilt.clear()  # those of instances removed before their turn

    def _create_item(self, iid: int) -> None:
        inst = self.session.instances.get(iid)
        prebuilt = self._prebuilt.pop(iid, None)
        if inst is None:
            return
        old = self.items_by_id.pop(iid, None)
        if old is not None:
            self.scene().removeItem(old)
        self._added_this_turn += 1
        rgb, op, sel = self._style_of(inst)
        item = InstanceItem(inst, rgb, op, prebuilt)
        item.set_style(rgb, op, sel)
        item.setVisible(self.session.is_visible(inst))
        self.scene().addItem(item)
        self.items_by_id[iid] = item

    def _on_instance_removed(self, iid: int) -> None:
        self._pending.pop(iid, None)
        self._prebuilt.pop(iid, None)
        item = self.items_by_id.pop(iid, None)
        if item is not None:
            self.scene().removeItem(item)

    def _on_instance_changed(self, iid: int, box) -> None:
        item = self.items_by_id.get(iid)
        if item is None:
            self._prebuilt.pop(iid, None)  # still pending: its item is drawn afresh when its turn comes
            return
        inst = self.session.instances[iid]
        item.inst = inst
        self.selection_item.refresh(inst)
        if box is None:
            rgb, op, sel = self._style_of(inst)
            item.set_style(rgb, op, sel)
            item.rebuild()
            item.setVisible(self.session.is_visible(inst))
        else:
            item.update_box(box)

    def instance_pixels_changed(self, iid: int, box) -> None:
        """A live stroke changed ``box`` of an instance's mask (no commit yet)."""
        item = self.items_by_id.get(iid)
        if item is not None:
            item.update_box(box)

    def _restyle_all(self) -> None:
        for iid, item in self.items_by_id.items():
            inst = self.session.instances.get(iid)
            if inst is not None:
                item.set_style(*self._style_of(inst))

    def set_opacity(self, opacity: float) -> None:
        self.opacity = opacity
        self._restyle_all()

    # ------------------------------------------------------------ display (view only)
    def _image_key(self) -> Optional[int]:
        return None if self.session.image is None else self.session.image.id

    @property
    def display(self) -> DisplayAdjust:
        """Brightness, contrast and gamma of the open image's display."""
        return self._display.get(self._image_key(), NEUTRAL)

    def set_display(self, adjust: DisplayAdjust) -> None:
        """Show the open image through ``adjust`` (remembered for it); the pixels that tools,
        models and exports read are not changed."""
        key = self._image_key()
        if adjust.is_neutral:
            self._display.pop(key, None)
        else:
            self._display[key] = adjust
        self._apply_display()
        self.message(adjust.describe())

    def step_display(self, what: str, steps: int) -> None:
        """``steps`` presses of "brightness", "contrast" or "gamma" (negative: down)."""
        self.set_display(self.display.stepped(what, steps))

    def reset_display(self) -> None:
        self.set_display(NEUTRAL)

    def _apply_display(self) -> None:
        lut = self.display.lut()
        if self.image_item is not None:
            self.image_item.set_lut(lut)
        self.minimap.set_lut(lut)

    # ------------------------------------------------------------ tools
    def set_tool(self, tool: Tool) -> None:
        if self.tool is not None:
            self.tool.deactivate()
        self.tool = tool
        tool.activate()

    def push(self, command: QUndoCommand) -> None:
        self.undo_stack.push(command)

    def message(self, text: str) -> None:
        self.status_message.emit(text)

    def instance_at(self, pos: QPointF):
        return instance_at(
            (i for i in self.session.instances.values() if self.session.is_visible(i)), pos.x(), pos.y()
        )

    # ------------------------------------------------------------ brush cursor
    def set_brush_radius(self, r: float) -> None:
        self.brush_radius = float(min(500.0, max(1.0, r)))
        self._update_brush_cursor()
        self.message(f"Brush radius {self.brush_radius:.0f} px")

    def show_brush_cursor(self, on: bool) -> None:
        self._brush_cursor.setVisible(on)
        self._update_brush_cursor()

    def move_brush_cursor(self, pos: QPointF) -> None:
        self._brush_cursor.setPos(pos)

    def _update_brush_cursor(self) -> None:
        r = self.brush_radius
        # the true footprint: a disk of radius r around the pixel centre
        self._brush_cursor.setRect(QRectF(-r, -r, 2 * r, 2 * r).adjusted(0.5, 0.5, 0.5, 0.5))

    # ------------------------------------------------------------ view
    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def fit(self) -> None:
        if self.image_item is None:
            return
        r = self.image_item.boundingRect()
        self.fitInView(r, Qt.AspectRatioMode.KeepAspectRatio)
        self.zoom_changed.emit(self.zoom)

    def zoom_at(self, factor: float, view_pos: QPoint) -> None:
        z = self.zoom
        factor = max(MIN_ZOOM / z, min(MAX_ZOOM / z, factor))
        before = self.mapToScene(view_pos)
        self.scale(factor, factor)
        after = self.mapFromScene(before)
        d = after - view_pos
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + d.x())
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + d.y())
        self.zoom_changed.emit(self.zoom)

    def centre_on_instance(self, iid: int) -> None:
        inst = self.session.instances.get(iid)
        if inst is None or inst.mask.is_empty():
            return
        x0, y0, x1, y1 = inst.mask.bbox
        self.centerOn(QPointF((x0 + x1) / 2, (y0 + y1) / 2))

    def start_pan(self) -> None:
        self._panning = self._last_view_pos

    # ------------------------------------------------------------ events
    _last_view_pos = QPoint(0, 0)

    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() / 120.0
        mods = event.modifiers()
        if mods & Qt.KeyboardModifier.ControlModifier and self.tool is not None:
            if self.tool.wheel(steps, mods):
                return
            self.set_brush_radius(self.brush_radius * (1.15 ** steps))
            return
        self.zoom_at(1.25 ** steps, event.position().toPoint())

    def mousePressEvent(self, event) -> None:
        self.setFocus()
        self._last_view_pos = event.position().toPoint()
        if event.button() == Qt.MouseButton.MiddleButton or (
            self._space and event.button() == Qt.MouseButton.LeftButton
        ):
            self._panning = event.position().toPoint()
            return
        if self.tool is not None and self.image_item is not None:
            if self.tool.edits and self.session.read_only:
                self.message(f"Read-only: {self.session.read_only}")
                return
            if self.tool.press(self.mapToScene(event.position().toPoint()), event.button(), event.modifiers()):
                return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:
        p = event.position().toPoint()
        self._last_view_pos = p
        if self._panning is not None:
            d = p - self._panning
            self._panning = p
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - d.x())
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - d.y())
            return
        if self.tool is not None and self.image_item is not None:
            pos = self.mapToScene(p)
            self.tool.move(pos, event.modifiers())
            if not self.tool.busy:  # highlight what a click would select
                inst = self.instance_at(pos)
                self.selection_item.set_hover(inst, self._style_of(inst)[0] if inst is not None else (0, 0, 0))

    def mouseReleaseEvent(self, event) -> None:
        if self._panning is not None:
            self._panning = None
            return
        if self.tool is not None and self.image_item is not None:
            self.tool.release(self.mapToScene(event.position().toPoint()), event.button(), event.modifiers())

    def mouseDoubleClickEvent(self, event) -> None:
        if self.tool is not None and self.image_item is not None and event.button() == Qt.MouseButton.LeftButton:
            if self.tool.double_click(self.mapToScene(event.position().toPoint()), event.modifiers()):
                return
        self.mousePressEvent(event)

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            return
        if self.tool is not None and self.tool.key(event.key(), event.modifiers()):
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            return
        super().keyReleaseEvent(event)
