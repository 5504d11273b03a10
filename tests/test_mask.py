"""Unit tests of Mask operations on small hand-made masks, with hand-drawn expectations."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from annotation.mask import Mask, PolygonWithHoles


def grid(text: str) -> np.ndarray:
    """A bool array drawn with '#' (set) and '.' (clear), one row a line."""
    rows = [r.strip() for r in text.strip().splitlines()]
    return np.array([[c == "#" for c in r] for r in rows], bool)


def rect(size, x0, y0, x1, y1) -> Mask:
    """A mask set on [x0, x1) x [y0, y1), stored with empty margins to test that they don't matter."""
    full = np.zeros(size, bool)
    full[y0:y1, x0:x1] = True
    return Mask.from_full(full)


def full_of(size, x0, y0, x1, y1) -> np.ndarray:
    full = np.zeros(size, bool)
    full[y0:y1, x0:x1] = True
    return full


# ------------------------------------------------------------------ polygon
def test_from_polygon_rectangle_includes_its_outline():
    m = Mask.from_polygon([(2, 2), (6, 2), (6, 5), (2, 5)], (10, 10))
    # vertices are pixel centres: columns 2..6 and rows 2..5, both ends included
    np.testing.assert_array_equal(m.to_full(), full_of((10, 10), 2, 2, 7, 6))
    assert m.area == 20 and m.bbox == (2, 2, 7, 6)


def test_from_polygon_triangle_matches_drawing():
    m = Mask.from_polygon([(0, 0), (4, 0), (0, 4)], (6, 6))
    expected = grid(
        """
        #####.
        ####..
        ###...
        ##....
        #.....
        ......
        """
    )
    np.testing.assert_array_equal(m.to_full(), expected)


def test_from_polygon_clipped_at_image_edge():
    m = Mask.from_polygon([(-5, -5), (3, -5), (3, 2), (-5, 2)], (6, 8))
    np.testing.assert_array_equal(m.to_full(), full_of((6, 8), 0, 0, 4, 3))
    assert m.box[0] >= 0 and m.box[1] >= 0
    outside = Mask.from_polygon([(20, 20), (30, 20), (30, 30)], (6, 8))
    assert outside.is_empty() and outside.area == 0


def test_polygons_with_hole_round_trip():
    ring = grid(
        """
        .......
        .#####.
        .#...#.
        .#...#.
        .#####.
        .......
        """
    )
    m = Mask.from_full(ring)
    polys = m.to_polygons()
    assert len(polys) == 1 and len(polys[0].holes) == 1
    assert Mask.from_polygons(polys, m.image_size) == m
    assert Mask.from_polygons([], (6, 7)).is_empty()
    # an island inside the hole comes after the ring that encloses it
    big = np.zeros((9, 9), bool)
    big[1:8, 1:8] = True
    big[2:7, 2:7] = False
    big[4, 4] = True
    m2 = Mask.from_full(big)
    polys2 = m2.to_polygons()
    assert len(polys2) == 2 and isinstance(polys2[1], PolygonWithHoles) and polys2[1].holes == ()
    assert Mask.from_polygons(polys2, m2.image_size) == m2


# ------------------------------------------------------------------ paint / erase
DISK_R2 = grid(
    """
    ..#..
    .###.
    #####
    .###.
    ..#..
    """
)


def test_paint_disk_draws_the_disk_and_reports_its_box():
    m = Mask.empty((10, 10))
    box = m.paint_disk(5, 5, 2)
    assert box == (3, 3, 8, 8) == m.last_touched
    expected = np.zeros((10, 10), bool)
    expected[3:8, 3:8] = DISK_R2
    np.testing.assert_array_equal(m.to_full(), expected)
    assert m.area == 13


def test_erase_disk_clears_only_the_disk():
    m = rect((10, 10), 2, 2, 9, 9)
    box = m.paint_disk(5, 5, 2, value=False)
    assert box == (3, 3, 8, 8) == m.last_touched
    expected = full_of((10, 10), 2, 2, 9, 9)
    expected[3:8, 3:8] &= ~DISK_R2
    np.testing.assert_array_equal(m.to_full(), expected)


def test_erase_on_empty_mask_does_not_grow_it():
    m = Mask.empty((50, 50))
    m.erase_stroke([(10, 10), (40, 40)], 5)
    assert m.is_empty() and m.array.size == 0


def test_fast_drag_leaves_no_gap():
    # mouse events 50 px apart: the stroke must be continuous between them
    m = Mask.empty((100, 200))
    box = m.paint_stroke([(10, 50), (60, 50), (110, 50)], 3)
    assert box == m.last_touched == (7, 47, 114, 54)
    full = m.to_full()
    assert full[47:54, 10:111].all(), "a gap between dabs"
    assert not full[:46].any() and not full[55:].any()
    assert not full[:, :7].any() and not full[:, 114:].any()
    assert len(m.components()) == 1

    diag = Mask.empty((100, 100))
    diag.paint_stroke([(10, 10), (60, 60), (90, 10)], 2)
    f = diag.to_full()
    for (ax, ay), (bx, by) in [((10, 10), (60, 60)), ((60, 60), (90, 10))]:
        for t in np.linspace(0, 1, 200):
            assert f[int(round(ay + t * (by - ay))), int(round(ax + t * (bx - ax)))]
    assert len(diag.components(connectivity=4)) == 1


def test_erase_stroke_cuts_a_mask_in_two():
    m = rect((40, 40), 5, 5, 35, 35)
    m.erase_stroke([(20, 0), (20, 39)], 2)
    parts = m.components()
    assert len(parts) == 2
    assert not m.to_full()[:, 18:23].any()
    assert m.area == 30 * (13 + 12)  # columns 5..17 and 23..34 survive


def test_paint_at_image_edge_is_clipped():
    m = Mask.empty((10, 10))
    box = m.paint_disk(0, 0, 3)
    assert box == (0, 0, 4, 4)
    expected = grid(
        """
        ####
        ###.
        ###.
        #...
        """
    )
    np.testing.assert_array_equal(m.to_full()[:4, :4], expected)
    assert m.area == expected.sum()
    assert m.box[0] >= 0 and m.box[1] >= 0 and m.box[2] <= 10 and m.box[3] <= 10
    assert m.paint_disk(-10, -10, 3) == (0, 0, 0, 0)
    assert m.area == expected.sum()
    m.paint_disk(9, 9, 1)
    assert m.to_full()[9, 9] and m.to_full()[8, 9] and m.box[2] == 10 and m.box[3] == 10


def test_repeated_dabs_grow_array_with_slack():
    m = Mask.empty((1000, 1000))
    m.paint_disk(500, 500, 5)
    first = m.array
    m.paint_disk(530, 500, 5)  # outside the array: grows, with slack
    grown = m.array
    assert grown is not first
    m.paint_disk(532, 500, 5)  # inside the slack: no new allocation
    assert m.array is grown
    assert m.bbox == (495, 495, 538, 506)


def test_paint_mask_and_write_box():
    m = Mask.empty((10, 10))
    other = rect((10, 10), 1, 1, 4, 4)
    assert m.paint_mask(other) == other.box
    assert m == other
    m.paint_mask(rect((10, 10), 2, 2, 3, 3), value=False)
    assert m.area == 8 and not m.to_full()[2, 2]
    m.write_box((6, 6, 8, 8), np.ones((2, 2), bool))
    assert m.last_touched == (6, 6, 8, 8)
    np.testing.assert_array_equal(m.read_box((5, 5, 9, 9)), full_of((4, 4), 1, 1, 3, 3))
    with pytest.raises(ValueError):
        m.write_box((0, 0, 3, 3), np.ones((2, 2), bool))


# ------------------------------------------------------------------ set algebra
def test_union_subtract_intersect():
    size = (10, 10)
    a, b = rect(size, 2, 2, 6, 6), rect(size, 4, 4, 8, 8)
    fa, fb = a.to_full(), b.to_full()
    np.testing.assert_array_equal(a.union(b).to_full(), fa | fb)
    np.testing.assert_array_equal((a | b).to_full(), fa | fb)
    np.testing.assert_array_equal(a.intersect(b).to_full(), full_of(size, 4, 4, 6, 6))
    np.testing.assert_array_equal((a & b).to_full(), fa & fb)
    np.testing.assert_array_equal(a.subtract(b).to_full(), fa & ~fb)
    np.testing.assert_array_equal((a - b).to_full(), fa & ~fb)
    assert a.union(b).area == 28 and a.intersect(b).area == 4 and a.subtract(b).area == 12
    assert a.intersection_area(b) == 4
    # disjoint and empty operands
    c = rect(size, 8, 0, 10, 2)
    assert a.intersect(c).is_empty() and a.subtract(c) == a
    empty = Mask.empty(size)
    assert a.union(empty) == a and a.intersect(empty).is_empty() and empty.subtract(a).is_empty()
    # pure: operands unchanged
    np.testing.assert_array_equal(a.to_full(), fa)


def test_merge():
    size = (12, 12)
    parts = [rect(size, 0, 0, 2, 2), rect(size, 5, 5, 7, 9), rect(size, 1, 1, 3, 3)]
    merged = Mask.merge(parts)
    np.testing.assert_array_equal(merged.to_full(), parts[0].to_full() | parts[1].to_full() | parts[2].to_full())
    assert merged.area == 4 + 8 + 4 - 1
    assert Mask.merge([Mask.empty(size)]).is_empty()
    with pytest.raises(ValueError):
        Mask.merge([])


# ------------------------------------------------------------------ morphology
def test_dilate_single_pixel_gives_disk():
    m = rect((9, 9), 4, 4, 5, 5)
    d = m.dilate(2)
    expected = np.zeros((9, 9), bool)
    expected[2:7, 2:7] = DISK_R2
    np.testing.assert_array_equal(d.to_full(), expected)
    assert m.area == 1  # pure
    assert m.dilate(0) == m


def test_dilate_and_erode_at_image_edge():
    m = rect((10, 10), 0, 0, 3, 3)
    d = m.dilate(1)
    assert d.box[0] == 0 and d.box[1] == 0
    np.testing.assert_array_equal(d.to_full()[:5, :5], grid(
        """
        ####.
        ####.
        ####.
        ###..
        .....
        """
    ))
    # outside the image counts as outside the mask: erosion eats at the edge too
    e = rect((10, 10), 0, 0, 5, 5).erode(1)
    np.testing.assert_array_equal(e.to_full(), full_of((10, 10), 1, 1, 4, 4))


def test_erode():
    m = rect((9, 9), 2, 2, 7, 7)  # 5 x 5
    np.testing.assert_array_equal(m.erode(1).to_full(), full_of((9, 9), 3, 3, 6, 6))
    assert m.erode(3).is_empty()
    assert m.erode(0) == m


def test_close_bridges_a_narrow_gap_and_keeps_a_rectangle():
    size = (20, 30)
    two = rect(size, 2, 5, 10, 15).union(rect(size, 12, 5, 20, 15))  # 2 px gap
    closed = two.close(2)
    assert len(closed.components()) == 1
    assert closed.to_full()[5:15, 10:12].all() or closed.to_full()[7:13, 10:12].all()
    assert closed.union(two) == closed  # closing only adds
    box = rect(size, 0, 0, 8, 8)  # touching the image corner: edges stay
    assert box.close(3) == box


def test_fill_holes():
    ring = Mask.from_full(grid(
        """
        .......
        .#####.
        .#...#.
        .#.#.#.
        .#...#.
        .#####.
        .......
        """
    ))
    filled = ring.fill_holes()
    np.testing.assert_array_equal(filled.to_full(), full_of((7, 7), 1, 1, 6, 6))
    # a bay open to the image edge is not a hole
    bay = Mask.from_full(grid(
        """
        #...#
        #...#
        #####
        .....
        """
    ))
    assert bay.fill_holes() == bay


def test_remove_small_and_components():
    full = grid(
        """
        ##.....
        ##....#
        ......#
        .###...
        .###...
        .###..#
        """
    )
    m = Mask.from_full(full)
    parts = m.components()
    assert [p.area for p in parts] == [9, 4, 2, 1]  # largest first
    assert Mask.merge(parts) == m
    for p in parts:
        assert len(p.components()) == 1
    kept = m.remove_small(3)
    assert sorted(p.area for p in kept.components()) == [4, 9]
    assert m.remove_small(1) == m
    assert m.remove_small(100).is_empty()
    # diagonal neighbours: one component with 8-connectivity, two with 4
    diag = Mask.from_full(grid(
        """
        #.
        .#
        """
    ))
    assert len(diag.components()) == 1 and len(diag.components(connectivity=4)) == 2
    assert Mask.empty((3, 3)).components() == []


# ------------------------------------------------------------------ measures
def test_area_bbox_iou():
    size = (10, 10)
    a, b = rect(size, 2, 2, 6, 6), rect(size, 4, 4, 8, 8)
    assert a.area == 16 and a.bbox == (2, 2, 6, 6)
    assert a.iou(b) == pytest.approx(4 / 28)
    assert a.iou(a) == 1.0
    assert a.iou(rect(size, 7, 7, 9, 9)) == 0.0
    assert Mask.empty(size).iou(Mask.empty(size)) == 1.0
    assert Mask.empty(size).bbox == (0, 0, 0, 0) and Mask.empty(size).area == 0
    # margins in the array do not change the tight bbox
    padded = Mask(1, 1, np.pad(np.ones((2, 3), bool), 2), size)
    assert padded.bbox == (3, 3, 6, 5) and padded.box == (1, 1, 8, 7)
    assert padded.cropped().array.shape == (2, 3)


def test_to_full_and_from_box_array_clip():
    m = Mask.from_box_array(-2, 7, np.ones((5, 5), bool), (10, 10))
    assert m.box == (0, 7, 3, 10)
    full = m.to_full()
    assert full.shape == (10, 10) and full.dtype == bool
    np.testing.assert_array_equal(full, full_of((10, 10), 0, 7, 3, 10))
    assert Mask.from_box_array(20, 20, np.ones((3, 3), bool), (10, 10)).is_empty()


def test_rle_matches_pycocotools_and_round_trips():
    full = grid(
        """
        .##..
        .##..
        ....#
        #...#
        """
    )
    m = Mask.from_full(full)
    rle = m.to_rle()
    assert isinstance(rle["counts"], str)
    expected = coco_mask.encode(np.asfortranarray(full.astype(np.uint8)))
    assert rle["counts"] == expected["counts"].decode("ascii") and rle["size"] == [4, 5]
    assert Mask.from_rle(rle) == m
    empty = Mask.empty((4, 5)).to_rle()
    assert Mask.from_rle(empty).is_empty()


def test_equality_ignores_margins_and_checks_image_size():
    a = rect((10, 10), 2, 2, 4, 4)
    b = Mask(0, 0, full_of((10, 10), 2, 2, 4, 4), (10, 10))
    assert a == b
    assert a != rect((10, 11), 2, 2, 4, 4)
    assert a != rect((10, 10), 2, 2, 4, 5)
