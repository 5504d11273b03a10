"""Boundary reroute geometry, plain numpy (no Qt)."""
import numpy as np
import pytest

from annotation.mask import rasterize_polygon
from annotation.reroute import near_boundary, reroute

SIZE = (200, 200)


def square():
    return rasterize_polygon([(50, 50), (150, 50), (150, 150), (50, 150)], SIZE)


def apply(mask, res):
    m = mask.copy()
    m.write_box(res.box, res.after)
    return m


def test_outward_path_adds_the_region_between_path_and_boundary():
    m = square()
    # from the top edge up and over, back to the top edge: a 40x20 bump
    path = [(70, 50), (70, 30), (110, 30), (110, 50)]
    res = reroute(m, path)
    assert res is not None and res.removed == 0
    new = apply(m, res)
    bump = rasterize_polygon([(70, 30), (110, 30), (110, 50), (70, 50)], SIZE)
    assert new == m.union(bump)
    assert res.added == bump.subtract(m).area


def test_inward_path_cuts_the_smaller_side():
    m = square()
    # a notch 30 deep from the left edge
    path = [(50, 80), (80, 80), (80, 120), (50, 120)]
    res = reroute(m, path)
    assert res is not None and res.added == 0
    new = apply(m, res)
    notch = rasterize_polygon([(49, 81), (79, 81), (79, 119), (49, 119)], SIZE)
    assert new == m.subtract(notch)
    assert res.removed == notch.intersect(m).area


def test_inward_path_over_most_of_the_mask_still_cuts_the_smaller_side():
    m = square()
    # a line close to the right edge: the thin strip on the right goes, not the body
    path = [(140, 50), (140, 150)]
    res = reroute(m, path)
    new = apply(m, res)
    assert res.removed == 10 * 101 and res.added == 0
    assert new.bbox == (50, 50, 141, 151)


def test_path_ends_snap_across_a_small_gap():
    m = square()
    path = [(70, 47), (70, 30), (110, 30), (110, 47)]  # ends 3 px off the boundary
    res = reroute(m, path, snap_radius=4)
    assert res is not None and res.added > 0 and res.removed == 0
    new = apply(m, res)
    assert new.bbox[1] == 30


def test_crossing_path_adds_and_cuts():
    m = square()
    # out over the top edge, then down into the mask and back to the top edge
    path = [(60, 50), (60, 40), (90, 40), (90, 70), (120, 70), (120, 50)]
    res = reroute(m, path)
    assert res.added > 0 and res.removed > 0


def test_holes_and_other_parts_survive():
    m = square()
    m.write_box((90, 90, 110, 110), np.zeros((20, 20), bool))  # a hole
    other = rasterize_polygon([(170, 170), (190, 170), (190, 190), (170, 190)], SIZE)
    m = m.union(other)
    path = [(70, 50), (70, 30), (110, 30), (110, 50)]
    new = apply(m, reroute(m, path))
    assert not new.read_box((90, 90, 110, 110)).any()
    assert new.read_box((170, 170, 191, 191)).all()
    assert len(new.components()) == 2


def test_path_that_leaves_no_boundary_is_refused():
    m = square()
    assert reroute(m, [(5, 5), (20, 5)]) is None
    assert reroute(m, [(70, 50)]) is None


def test_near_boundary():
    m = square()
    assert near_boundary(m, 50, 100, 3)
    assert near_boundary(m, 47, 100, 4)
    assert not near_boundary(m, 100, 100, 5)
    assert not near_boundary(m, 10, 10, 5)


@pytest.mark.parametrize("inward", [False, True])
def test_cost_is_local(inward):
    # a large image: the work box covers mask and path only
    size = (5000, 5000)
    m = rasterize_polygon([(100, 100), (300, 100), (300, 300), (100, 300)], size)
    path = [(150, 300), (150, 200 if inward else 350), (250, 200 if inward else 350), (250, 300)]
    res = reroute(m, path)
    x0, y0, x1, y1 = res.box
    assert (x1 - x0) * (y1 - y0) < 300 * 300
    assert (res.removed > 0) == inward and (res.added > 0) == (not inward)


# ------------------------------------------------------------------ the window
# The rule is evaluated around the stroke and widened only where the window cannot
# tell; ``window=None`` evaluates it at once in the box of the whole mask, the
# reference every windowed answer must equal.

import cv2  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from annotation.mask import Mask  # noqa: E402

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def shaped_masks(draw):
    """Ellipses, rectangles and polygons, some cleared (holes, bays), some past the
    image border; several parts happen often."""
    h, w = draw(st.integers(16, 72)), draw(st.integers(16, 72))
    full = np.zeros((h, w), np.uint8)
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["ellipse", "rect", "poly"]))
        value = 0 if draw(st.integers(0, 9)) < 3 else 1
        cx, cy = draw(st.integers(-6, w + 6)), draw(st.integers(-6, h + 6))
        a, b = draw(st.integers(2, max(3, w // 2))), draw(st.integers(2, max(3, h // 2)))
        if kind == "ellipse":
            cv2.ellipse(full, (cx, cy), (a, b), draw(st.integers(0, 179)), 0, 360, value, -1)
        elif kind == "rect":
            cv2.rectangle(full, (cx - a, cy - b), (cx + a, cy + b), value, -1)
        else:
            n = draw(st.integers(3, 7))
            pts = [(draw(st.integers(-6, w + 6)), draw(st.integers(-6, h + 6))) for _ in range(n)]
            cv2.fillPoly(full, [np.array(pts, np.int32)], value)
    return Mask.from_full(full.astype(bool))


@st.composite
def traces(draw, mask):
    """Ends near the boundary (as the tool demands), middle points anywhere: outside,
    inside, crossing."""
    h, w = mask.image_size
    full = mask.to_full()
    edge = full & ~cv2.erode(full.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    ys, xs = np.nonzero(edge)

    def end():
        i = draw(st.integers(0, len(xs) - 1))
        return (float(xs[i] + draw(st.integers(-2, 2))), float(ys[i] + draw(st.integers(-2, 2))))

    middle = [
        (float(draw(st.integers(-3, w + 3))), float(draw(st.integers(-3, h + 3))))
        for _ in range(draw(st.integers(0, 4)))
    ]
    return [end(), *middle, end()]


def _applied(mask, res):
    out = mask.copy()
    if res is not None:
        out.write_box(res.box, res.after)
    return out


def _assert_tight(mask, res):
    """The result covers exactly the changed pixels' box and ``before`` is the mask there."""
    if not res.changed:
        assert res.box == (0, 0, 0, 0) and res.after.size == 0
        return
    x0, y0, x1, y1 = res.box
    assert res.before.shape == res.after.shape == (y1 - y0, x1 - x0)
    assert np.array_equal(res.before, mask.read_box(res.box))
    diff = res.before != res.after
    assert diff[0].any() and diff[-1].any() and diff[:, 0].any() and diff[:, -1].any()
    assert 0 <= x0 and 0 <= y0 and x1 <= mask.width and y1 <= mask.height


@PROPERTY
@given(data=st.data())
def test_windowed_reroute_equals_the_whole_mask_reroute(data):
    mask = data.draw(shaped_masks())
    if mask.is_empty():
        return
    path = data.draw(traces(mask))
    reference = reroute(mask, path, window=None)
    # tiny first windows make the window grow through every stage
    for window in (1, 2, 5, "auto"):
        res = reroute(mask, path, window=window)
        assert (res is None) == (reference is None)
        if res is None:
            continue
        assert _applied(mask, res) == _applied(mask, reference)
        assert (res.added, res.removed) == (reference.added, reference.removed)
        _assert_tight(mask, res)


def test_arms_joined_outside_the_window_are_one_part():
    # a U: a trace across both arms near their tips cuts both tips; the arms meet far
    # below the first window, so only the count of pieces per arm tells it is safe
    size = (120, 100)
    full = np.zeros(size, bool)
    full[10:110, 10:30] = True
    full[10:110, 70:90] = True
    full[90:110, 10:90] = True
    m = Mask.from_full(full)
    path = [(10, 20), (50, 20), (90, 20)]
    res = reroute(m, path, window=1)
    ref = reroute(m, path, window=None)
    assert _applied(m, res) == _applied(m, ref)
    new = _applied(m, res)
    assert not new.read_box((10, 10, 30, 20)).any() and not new.read_box((70, 10, 90, 20)).any()
    assert new.read_box((10, 30, 30, 90)).all()


def test_a_hole_piece_leaving_the_window_is_not_taken_for_the_outside():
    # a hole with a thin tail; the trace cuts off the hole's tail side, which leaves
    # the window, small there and small in all: the hole keeps its big side and the
    # tail is filled. Keeping the piece that leaves the window would fill the hole.
    full = np.zeros((110, 110), bool)
    full[5:100, 5:100] = True
    full[30:70, 30:70] = False
    full[49:51, 70:90] = False
    m = Mask.from_full(full)
    path = [(68, 29), (68, 70), (29, 70)]
    ref = reroute(m, path, window=None)
    for window in (1, 3, "auto"):
        res = reroute(m, path, window=window)
        assert _applied(m, res) == _applied(m, ref)
    new = _applied(m, ref)
    assert new.read_box((70, 49, 90, 51)).all() and not new.read_box((31, 31, 67, 68)).any()


def test_a_trace_splitting_the_mask_in_two_is_decided_on_the_whole_mask():
    # which half is smaller is only known from the whole mask: the window grows to it
    m = square()
    for x, small_side in ((60, "left"), (140, "right")):
        res = reroute(m, [(x, 50), (x, 150)], window=1)
        ref = reroute(m, [(x, 50), (x, 150)], window=None)
        assert _applied(m, res) == _applied(m, ref)
        kept = _applied(m, res).bbox
        assert (kept[0] > 50) if small_side == "left" else (kept[2] < 151)


def test_result_box_holds_only_the_change():
    m = square()
    res = reroute(m, [(70, 50), (70, 30), (110, 30), (110, 50)])
    # the bump's pixels between the trace and the old top edge, nothing of the square
    assert res.box == (70, 30, 111, 50)
    _assert_tight(m, res)
    assert res.before.sum() == 0 and res.after.all()


def test_a_trace_along_the_boundary_changes_nothing_and_says_so():
    m = square()
    res = reroute(m, [(50, 60), (50, 140)])
    assert res is not None and not res.changed and res.box == (0, 0, 0, 0)


@pytest.fixture
def component_sizes(monkeypatch):
    """Record the size of every array given to OpenCV's connected-components calls."""
    sizes = []
    for name in ("connectedComponents", "connectedComponentsWithStats"):
        real = getattr(cv2, name)

        def spy(image, *args, _real=real, **kwargs):
            sizes.append(int(image.size))
            return _real(image, *args, **kwargs)

        monkeypatch.setattr(cv2, name, spy)
    return sizes


def _car(size=(5000, 5000)):
    """A 3-megapixel instance (an ellipse 2000 x 1910, a car up close) in a 25-MP image."""
    a, b = 1000, 955
    arr = np.zeros((2 * b + 1, 2 * a + 1), np.uint8)
    cv2.ellipse(arr, (a, b), (a, b), 0, 0, 360, 1, -1)
    return Mask(1500, 1500, arr.astype(bool), size)


@pytest.mark.parametrize("inward", [False, True])
def test_work_on_a_large_instance_stays_near_the_trace(component_sizes, inward):
    m = _car()
    assert 2.9e6 < m.area < 3.1e6
    bx0, by0, bx1, by1 = m.bbox
    top = by0  # the ellipse's top at x = 2500
    depth = 60 if inward else -60
    path = [(2440, top + 3), (2440, top + depth), (2560, top + depth), (2560, top + 3)]
    res = reroute(m, path)
    assert res is not None and (res.removed > 0) == inward and (res.added > 0) == (not inward)
    instance_box = (bx1 - bx0) * (by1 - by0)
    assert component_sizes and max(component_sizes) * 50 < instance_box
    x0, y0, x1, y1 = res.box
    assert (x1 - x0) * (y1 - y0) <= 125 * 70
    component_sizes.clear()
    ref = reroute(m, path, window=None)
    assert max(component_sizes) >= instance_box  # the reference works on the whole mask
    assert _applied(m, res) == _applied(m, ref)
