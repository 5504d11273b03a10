"""Undo deltas per touched tile: exact round trips, memory that follows the stroke."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotation.delta import TILE, MaskDelta, StrokeRecorder
from annotation.mask import Mask

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _paint_box(points, radius, image_size):
    """A box holding everything ``paint_stroke(points, radius)`` may touch (what a tool
    passes to ``touch`` before painting)."""
    pts = np.asarray(points, float).reshape(-1, 2)
    k = int(np.ceil(radius)) + 1
    return (
        int(np.floor(pts[:, 0].min())) - k,
        int(np.floor(pts[:, 1].min())) - k,
        int(np.ceil(pts[:, 0].max())) + k + 1,
        int(np.ceil(pts[:, 1].max())) + k + 1,
    )


@st.composite
def start_masks(draw):
    """A mask of a random image: empty, a few rectangles, or noise, in a crop that may
    be smaller than later strokes (so painting grows the array)."""
    h, w = draw(st.integers(1, 150)), draw(st.integers(1, 150))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    full = np.zeros((h, w), bool)
    kind = draw(st.sampled_from(["empty", "rects", "noise"]))
    if kind == "rects":
        for _ in range(rng.integers(1, 4)):
            x0, y0 = rng.integers(0, w), rng.integers(0, h)
            full[y0 : rng.integers(y0, h + 1), x0 : rng.integers(x0, w + 1)] = True
    elif kind == "noise":
        full = rng.random((h, w)) < 0.3
    return Mask.from_full(full)


@st.composite
def strokes(draw, image_size):
    """Brush and eraser strokes: a few dabs each, points possibly past the image edges."""
    h, w = image_size
    out = []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 5))
        pts = [(draw(st.floats(-10, w + 10)), draw(st.floats(-10, h + 10))) for _ in range(n)]
        out.append((pts, draw(st.floats(0, 12)), draw(st.booleans())))
    return out


def _record(mask, stroke_list, tile):
    """Paint the strokes dab by dab as the brush does, touching before each paint."""
    rec = StrokeRecorder(mask, tile)
    for pts, radius, value in stroke_list:
        for a, b in zip([pts[0]] + pts[:-1], pts):
            seg = [a, b]
            rec.touch(_paint_box(seg, radius, mask.image_size))
            mask.paint_stroke(seg, radius, value)
    return rec


@PROPERTY
@given(data=st.data())
def test_recorded_stroke_round_trips_exactly(data):
    start = data.draw(start_masks())
    tile = data.draw(st.sampled_from([1, 5, 16, TILE]))
    mask = start.copy()
    rec = _record(mask, data.draw(strokes(start.image_size)), tile)
    after = mask.copy()
    delta = rec.finish()

    undone = after.copy()
    box = delta.apply(undone, "before")
    assert undone == start
    redone = undone.copy()
    assert delta.apply(redone, "after") == box
    assert redone == after
    assert delta.area_change == after.area - start.area
    assert delta.is_empty == (after == start)

    h, w = start.image_size
    for tb, before, now in delta.tiles():
        x0, y0, x1, y1 = tb
        # one grid tile, clipped to the image, that really changed
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert x0 // tile == (x1 - 1) // tile and y0 // tile == (y1 - 1) // tile
        assert x0 % tile == 0 and y0 % tile == 0
        assert (x1 % tile == 0 or x1 == w) and (y1 % tile == 0 or y1 == h)
        assert not np.array_equal(before, now)
        assert np.array_equal(before, start.read_box(tb)) and np.array_equal(now, after.read_box(tb))
    if not delta.is_empty:
        assert rec.before(delta.box).shape == (delta.box[3] - delta.box[1], delta.box[2] - delta.box[0])
        assert np.array_equal(rec.before(delta.box), start.read_box(delta.box))

    # the same stroke cancelled instead
    assert rec.restore() == rec.touched_box
    assert mask == start


@PROPERTY
@given(data=st.data())
def test_delta_from_a_box_round_trips_exactly(data):
    start = data.draw(start_masks())
    h, w = start.image_size
    x0, y0 = data.draw(st.integers(-5, w)), data.draw(st.integers(-5, h))
    box = (x0, y0, data.draw(st.integers(x0, w + 5)), data.draw(st.integers(y0, h + 5)))
    tile = data.draw(st.sampled_from([3, 16, TILE]))
    before = start.read_box(box)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    after = before.copy()
    if after.size:
        ys, xs = rng.integers(0, after.shape[0], 5), rng.integers(0, after.shape[1], 5)
        after[ys, xs] = ~after[ys, xs]
    delta = MaskDelta.from_box(box, before, after, tile)
    expected = start.copy()
    inside = (max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3]))
    if inside[2] > inside[0] and inside[3] > inside[1]:
        expected.write_box(inside, after[inside[1] - box[1] : inside[3] - box[1], inside[0] - box[0] : inside[2] - box[0]])
    changed = start.copy()
    delta.apply(changed, "after")
    assert changed == expected
    delta.apply(changed, "before")
    assert changed == start
    assert delta.area_change == int(after.sum()) - int(before.sum())
    if inside == box:
        assert delta.area_change == expected.area - start.area


def test_a_diagonal_stroke_across_a_large_image_holds_its_tiles_only():
    size = (5000, 5000)
    mask = Mask.empty(size)
    rec = StrokeRecorder(mask)
    radius = 6.0
    pts = [(float(t), float(t)) for t in range(0, 5000, 25)]
    for a, b in zip(pts[:-1], pts[1:]):
        rec.touch(_paint_box([a, b], radius, size))
        mask.paint_stroke([a, b], radius)
    delta = rec.finish()
    x0, y0, x1, y1 = delta.box
    bbox_area = (x1 - x0) * (y1 - y0)
    assert bbox_area > 4900 * 4900
    # bit-packed pixels of the bounding box would be bbox_area / 8 bytes; a copy of the
    # mask as the brush used to take, a byte per pixel
    assert delta.nbytes * 10 < bbox_area / 8
    assert delta.nbytes * 100 < mask.array.nbytes
    assert len(delta) < 3 * (5000 // TILE + 1)
    assert delta.area_change == mask.area
    undone = mask.copy()
    delta.apply(undone, "before")
    assert undone.is_empty()


def test_restore_gives_back_the_exact_mask_after_growth_and_erasing():
    size = (300, 400)
    start = Mask.from_full(np.pad(np.ones((20, 20), bool), ((100, 180), (100, 280))))
    mask = start.copy()
    rec = StrokeRecorder(mask)
    for seg, radius, value in (
        ([(110, 110), (390, 290)], 5.0, True),  # runs off the array and into the corner
        ([(0, 0), (0, 299)], 3.0, True),  # along the image edge
        ([(105, 105), (115, 115)], 4.0, False),  # erases part of the square
    ):
        rec.touch(_paint_box(seg, radius, size))
        mask.paint_stroke(seg, radius, value)
    assert mask != start and mask.box != start.box
    rec.restore()
    assert mask == start


def test_an_unchanged_stroke_gives_an_empty_delta():
    full = np.zeros((100, 100), bool)
    full[20:80, 20:80] = True
    mask = Mask.from_full(full)
    rec = StrokeRecorder(mask)
    seg = [(40, 40), (60, 60)]
    rec.touch(_paint_box(seg, 5, mask.image_size))
    mask.paint_stroke(seg, 5)  # paints where the mask already is
    erase = [(5, 95), (10, 90)]
    rec.touch(_paint_box(erase, 3, mask.image_size))
    mask.erase_stroke(erase, 3)  # erases where there is nothing
    delta = rec.finish()
    assert delta.is_empty and len(delta) == 0
    assert delta.box == (0, 0, 0, 0) and delta.area_change == 0 and delta.nbytes == 0
    assert delta.apply(mask, "before") == (0, 0, 0, 0) and mask == Mask.from_full(full)
    assert MaskDelta.from_box((0, 0, 10, 10), full[:10, :10], full[:10, :10]).is_empty


def test_before_reads_untouched_tiles_from_the_mask():
    full = np.zeros((200, 200), bool)
    full[:, :100] = True
    mask = Mask.from_full(full)
    rec = StrokeRecorder(mask, tile=32)
    rec.touch((0, 0, 10, 10))
    mask.write_box((0, 0, 10, 10), np.zeros((10, 10), bool))
    got = rec.before((-5, -5, 150, 40))
    assert np.array_equal(got, Mask.from_full(full).read_box((-5, -5, 150, 40)))


def test_delta_is_immutable_and_checks_its_input():
    before = np.zeros((4, 4), bool)
    after = before.copy()
    after[1, 2] = True
    delta = MaskDelta.from_box((10, 10, 14, 14), before, after, tile=8)
    assert delta.box == (10, 10, 14, 14) and delta.area_change == 1
    after[0, 0] = True  # the caller's arrays are not held
    _, _, held = next(delta.tiles())
    assert held.sum() == 1
    with pytest.raises(AttributeError):
        delta._box = (0, 0, 1, 1)
    with pytest.raises(ValueError, match="before"):
        MaskDelta.from_box((0, 0, 4, 4), before, np.zeros((3, 4), bool))
    with pytest.raises(ValueError, match="which"):
        delta.apply(Mask.empty((20, 20)), "later")
