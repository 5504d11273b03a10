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
