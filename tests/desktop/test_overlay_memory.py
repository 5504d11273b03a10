"""Instance overlays cost bits, not bytes, and look as they did.

Each overlay keeps one bit plane per colour it shows (fill, outline, and a proposal's
hatching), an eighth of its box per colour instead of one byte a pixel; on a real canvas
it shows exactly the pixels of one persistent 4-colour 8-bit image built from the same
indices and colour table (the former drawing, rebuilt here as the reference): after a
dab, with a selection, for a proposal, zoomed in, and when only part of it is repainted.
"""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QImage, QPainter, QTransform, QUndoStack
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem

from annotation.document import Instance, InstanceState
from annotation.mask import Mask, rasterize_polygon
from annotation.store import ProjectStore
from desktop.canvas.overlay import InstanceItem, color_table, overlay_image
from desktop.geometry.render import overlay_indices
from desktop.session import EditingSession

H, W = 480, 640


class _Indexed8Item(QGraphicsItem):
    """The reference: the instance drawn as one 8-bit indexed image of its box."""

    def __init__(self, item: InstanceItem):
        super().__init__()
        m = item.inst.mask
        x0, y0, x1, y1 = m.box
        idx = np.ascontiguousarray(overlay_indices(m, m.box, item.inst.is_proposal))
        self._img = QImage(idx.data, x1 - x0, y1 - y0, x1 - x0, QImage.Format.Format_Indexed8).copy()
        self._img.setColorTable(color_table(item.rgb, item.opacity_, item.inst.is_proposal, item.selected))
        self.setPos(x0, y0)
        self.setZValue(item.zValue())

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self._img.width(), self._img.height())

    def paint(self, painter, option, widget=None) -> None:
        painter.drawImage(QPointF(0, 0), self._img)


def _grab(widget) -> np.ndarray:
    return _pixels(widget.grab().toImage())


def _filled(size) -> QImage:
    img = QImage(size, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(Qt.GlobalColor.darkCyan)
    return img


def _pixels(img: QImage) -> np.ndarray:
    img = img.convertToFormat(QImage.Format.Format_RGB32)
    w, h = img.width(), img.height()
    rows = np.frombuffer(img.constBits(), np.uint8).reshape(h, img.bytesPerLine())
    return rows[:, : 4 * w].reshape(h, w, 4).copy()


@pytest.fixture
def canvas(qtbot, tmp_path):
    from desktop.canvas.view import CanvasView

    store = ProjectStore.open(tmp_path, scan=False)
    image_id = store.add_image("synthetic.png", H, W)
    rng = np.random.default_rng(3)
    ring = np.c_[200 + 90 * np.cos(np.linspace(0, 6.2, 11)), 180 + 70 * np.sin(np.linspace(0, 6.2, 11))]
    stroke = Mask.empty((H, W))
    stroke.paint_stroke([(330, 300), (420, 330), (520, 280)], 18)  # grown with slack, as a brush does
    proposal = rasterize_polygon([(430, 60), (600, 90), (560, 210), (450, 180)], (H, W))
    store.add_instances([
        Instance(image_id, "mirror", rasterize_polygon(ring + rng.normal(0, 4, ring.shape), (H, W))),
        Instance(image_id, "glass", stroke),
        Instance(image_id, "glass", proposal, state=InstanceState.PROPOSED, origin="m@1", score=0.8),
    ])
    session = EditingSession(store)
    session.open_image(image_id)
    view = CanvasView(session, QUndoStack())
    qtbot.addWidget(view)
    view.resize(700, 540)
    view.show()
    qtbot.waitExposed(view)
    view.set_image(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    qtbot.waitUntil(lambda: len(view.items_by_id) == 3 and not view.pending_items, timeout=5000)
    view.resetTransform()
    view.centerOn(QPointF(W / 2, H / 2))
    yield view
    store.close()


def _same_as_indexed8(view, qtbot) -> None:
    """The grab with the planes equals the grab with the reference images in their place,
    and the overlays do show (the grab without any overlay differs)."""
    qtbot.wait(10)
    planes = _grab(view.viewport())
    items = list(view.items_by_id.values())
    refs = [_Indexed8Item(it) for it in items]
    for it, ref in zip(items, refs):
        it.hide()
        view.scene().addItem(ref)
    reference = _grab(view.viewport())
    for ref in refs:
        ref.hide()
    bare = _grab(view.viewport())
    for it, ref in zip(items, refs):
        view.scene().removeItem(ref)
        it.show()
    assert not np.array_equal(planes, bare), "no overlay on screen: the comparison would prove nothing"
    diff = np.argwhere(np.any(planes != reference, axis=2))
    assert diff.size == 0, f"{len(diff)} screen pixels differ from the 8-bit drawing, first at {diff[:3].tolist()}"


def test_overlay_bytes_are_bits_of_its_box(canvas):
    assert len(canvas.items_by_id) == 3
    for item in canvas.items_by_id.values():
        x0, y0, x1, y1 = item.inst.mask.box
        w, h = x1 - x0, y1 - y0
        colours = 3 if item.inst.is_proposal else 2
        # one bit a pixel and colour: each plane is at most an eighth of the box, plus
        # the last byte of each row
        assert item._planes.dtype == np.uint8 and item._planes.shape == (colours, h, -(-w // 8))
        assert item.nbytes == item._planes.nbytes <= colours * (w * h / 8 + h)
        assert item.nbytes / colours <= w * h / 8 + h
        # the 8-bit image it replaces took a byte a pixel (rows padded to 4 bytes)
        assert item.nbytes * 8 <= colours * h * ((w + 3) // 4 * 4) + 8 * colours * h
    # the worker's prebuilt planes are the item's own
    some = next(iter(canvas.items_by_id.values()))
    box, planes = overlay_image(some.inst.mask, some.inst.is_proposal)
    assert box == some.inst.mask.box and np.array_equal(planes, some._planes)


@pytest.mark.parametrize("scale", [1.0, 2.0, 0.37])
def test_painting_part_of_an_overlay_gives_the_pixels_of_painting_it_whole(canvas, scale):
    """A dab repaints a small rectangle: the part unpacked for it must draw what the whole
    overlay draws there (also when smooth-scaled: its edge samples real neighbours)."""
    for item in canvas.items_by_id.values():
        whole, part = (QImage(520, 420, QImage.Format.Format_ARGB32_Premultiplied) for _ in range(2))
        rect = QRectF(21, 13, 37, 29)
        for img, exposed in ((whole, item.boundingRect()), (part, rect)):
            img.fill(Qt.GlobalColor.darkCyan)
            painter = QPainter(img)
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, scale < 1)
            painter.setTransform(QTransform.fromScale(scale, scale))
            painter.setClipRect(rect)
            option = QStyleOptionGraphicsItem()
            option.exposedRect = exposed
            item.paint(painter, option)
            painter.end()
        assert np.array_equal(_pixels(whole), _pixels(part)), (item.inst.class_name, scale)
        assert not np.array_equal(_pixels(whole), _pixels(_filled(whole.size()))), "nothing drawn"


def test_planes_draw_the_pixels_of_the_8_bit_image(canvas, qtbot):
    _same_as_indexed8(canvas, qtbot)
    # a dab: only its box of each plane is rewritten, at a box edge not on a byte boundary
    glass = next(i for i in canvas.session.instances.values() if i.class_name == "glass" and not i.is_proposal)
    item = canvas.items_by_id[glass.id]
    before = item.inst.mask.box
    box = glass.mask.paint_stroke([(before[0] + 13, 300)], 5, False)
    assert glass.mask.box == before  # an erase in place: the planes are updated, not rebuilt
    planes = item._planes
    item.update_box(box)
    assert item._planes is planes
    box = glass.mask.paint_stroke([(423, 318), (431, 329)], 3, False)
    item.update_box(box)
    _same_as_indexed8(canvas, qtbot)
    # selected: white outline, on top
    canvas.session.select([glass.id])
    assert item.selected
    _same_as_indexed8(canvas, qtbot)
    # zoomed in twice: each plane scaled like the 8-bit image was
    canvas.scale(2, 2)
    canvas.centerOn(QPointF(500, 150))
    _same_as_indexed8(canvas, qtbot)
