"""Properties of Mask that must hold for any mask: codecs round trip, set identities,
and an edit's cost bounded by the box it touches."""
from __future__ import annotations

import hashlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco_mask

from annotation import rle as rle_codec
from annotation.mask import Mask

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def full_arrays(draw, max_side: int = 24, size=None):
    """A full-image bool array: random noise, blobs and holes, at random density."""
    h, w = size or (draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["noise", "sparse", "dense", "blocks", "empty", "full"]))
    if kind == "noise":
        return rng.random((h, w)) < 0.5
    if kind == "sparse":
        return rng.random((h, w)) < 0.1
    if kind == "dense":
        return rng.random((h, w)) < 0.9
    if kind == "empty":
        return np.zeros((h, w), bool)
    if kind == "full":
        return np.ones((h, w), bool)
    a = np.zeros((h, w), bool)
    for _ in range(rng.integers(1, 5)):  # rectangles with rectangular holes
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = rng.integers(x0, w + 1), rng.integers(y0, h + 1)
        a[y0:y1, x0:x1] = not rng.random() < 0.3
    return a


@st.composite
def masks(draw, size=None):
    """A Mask whose array may carry empty margins and start anywhere in the image."""
    full = draw(full_arrays(size=size))
    m = Mask.from_full(full)
    if draw(st.booleans()) and not m.is_empty():
        h, w = full.shape
        x0, y0, x1, y1 = m.bbox
        mx0, my0 = draw(st.integers(0, x0)), draw(st.integers(0, y0))
        mx1, my1 = draw(st.integers(x1, w)), draw(st.integers(y1, h))
        m = Mask(mx0, my0, full[my0:my1, mx0:mx1].copy(), (h, w))
    return m


@st.composite
def mask_pairs(draw):
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    return draw(masks(size=(h, w))), draw(masks(size=(h, w)))


# ------------------------------------------------------------------ codecs
@SETTINGS
@given(masks())
def test_rle_round_trip_and_equals_pycocotools(m):
    full = m.to_full()
    rle = m.to_rle()
    expected = coco_mask.encode(np.asfortranarray(full.astype(np.uint8)))
    assert rle["size"] == list(full.shape)
    assert rle["counts"] == expected["counts"].decode("ascii")
    assert Mask.from_rle(rle) == m
    np.testing.assert_array_equal(rle_codec.decode_full(rle), full)
    counts = rle_codec.uncompressed_counts(m)
    assert sum(counts) == full.size
    assert Mask.from_rle({"size": list(full.shape), "counts": counts}) == m


@SETTINGS
@given(masks())
def test_crop_codec_round_trip(m):
    c = m.cropped()
    counts = rle_codec.encode_crop(c.array)
    np.testing.assert_array_equal(rle_codec.decode_crop(counts, *c.array.shape), c.array)


@SETTINGS
@given(masks())
def test_polygon_round_trip_with_holes(m):
    polys = m.to_polygons()
    assert Mask.from_polygons(polys, m.image_size) == m
    assert (len(polys) == 0) == m.is_empty()


# ------------------------------------------------------------------ set identities
@SETTINGS
@given(mask_pairs())
def test_set_identities(pair):
    a, b = pair
    union, inter, diff = a.union(b), a.intersect(b), a.subtract(b)
    fa, fb = a.to_full(), b.to_full()
    np.testing.assert_array_equal(union.to_full(), fa | fb)
    np.testing.assert_array_equal(inter.to_full(), fa & fb)
    np.testing.assert_array_equal(diff.to_full(), fa & ~fb)
    assert union.intersect(a) == a  # A ∪ B ⊇ A
    assert diff.intersect(b).is_empty()  # (A − B) ∩ B = ∅
    assert diff.union(inter) == a  # (A − B) ∪ (A ∩ B) = A
    assert union.area == a.area + b.area - inter.area
    assert a.intersection_area(b) == inter.area
    assert Mask.merge([a, b]) == union
    if union.area:
        assert a.iou(b) == inter.area / union.area


@SETTINGS
@given(masks())
def test_morphology_relations(m):
    assert m.dilate(1).intersect(m) == m  # dilation contains the mask
    assert m.erode(1).subtract(m).is_empty()  # erosion lies inside it
    assert m.close(1).intersect(m) == m
    filled = m.fill_holes()
    assert filled.intersect(m) == m
    assert filled.fill_holes() == filled
    parts = m.components()
    assert sum(p.area for p in parts) == m.area
    if parts:
        assert Mask.merge(parts) == m
    assert m.remove_small(3).subtract(m).is_empty()


# ------------------------------------------------------------------ cost of painting
BIG = (5000, 5000)  # a 25-megapixel image
COVER = (1000, 1000, 1600, 1600)  # the box the instance's array already covers


def _instance_array(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((COVER[3] - COVER[1], COVER[2] - COVER[0])) < 0.3


@SETTINGS
@given(
    cx=st.floats(1040, 1560, allow_nan=False),
    cy=st.floats(1040, 1560, allow_nan=False),
    radius=st.floats(0, 35, allow_nan=False),
    value=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_dab_changes_only_its_box_in_place(cx, cy, radius, value, seed):
    m = Mask(COVER[0], COVER[1], _instance_array(seed), BIG)
    before = m.array.copy()
    array, buffer = m.array, m.array.__array_interface__["data"][0]

    box = m.paint_disk(cx, cy, radius, value)

    k = int(np.ceil(radius))
    expected_box = (int(np.floor(cx)) - k, int(np.floor(cy)) - k, int(np.ceil(cx)) + k + 1, int(np.ceil(cy)) + k + 1)
    assert box == expected_box == m.last_touched
    # no reallocation: same array object over the same memory, same origin
    assert m.array is array and m.array.__array_interface__["data"][0] == buffer
    assert (m.x0, m.y0) == COVER[:2]
    # every pixel outside the dab's box unchanged
    lx0, ly0, lx1, ly1 = box[0] - COVER[0], box[1] - COVER[1], box[2] - COVER[0], box[3] - COVER[1]
    outside = np.ones(before.shape, bool)
    outside[ly0:ly1, lx0:lx1] = False
    np.testing.assert_array_equal(m.array[outside], before[outside])
    # inside the box: exactly the old pixels with the disk set (or cleared)
    yy, xx = np.mgrid[box[1] : box[3], box[0] : box[2]]
    disk = (xx - round(cx)) ** 2 + (yy - round(cy)) ** 2 <= radius**2 + 1e-9
    old = before[ly0:ly1, lx0:lx1]
    np.testing.assert_array_equal(m.array[ly0:ly1, lx0:lx1], old | disk if value else old & ~disk)


class _Touches(np.ndarray):
    """An ndarray that logs how many elements each access to it (or its views) covers.

    Slicing, assignment, ufuncs (``any``, ``&``, ...), numpy functions and copies
    are logged, so the largest entry bounds the pixels an edit read or wrote.
    """

    def __array_finalize__(self, obj):
        self.log = getattr(obj, "log", None)

    def _note(self, what: str, n: int) -> None:
        if self.log is not None:
            self.log.append((what, int(n)))

    def __getitem__(self, key):
        out = super().__getitem__(key)
        self._note("read", out.size if isinstance(out, np.ndarray) else 1)
        return out

    def __setitem__(self, key, value):
        target = np.ndarray.__getitem__(self.view(np.ndarray), key)
        self._note("write", target.size if isinstance(target, np.ndarray) else 1)
        super().__setitem__(key, value)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [x.view(np.ndarray) if isinstance(x, _Touches) else x for x in inputs]
        self._note(f"ufunc {ufunc.__name__}.{method}", max(np.size(x) for x in plain))
        if "out" in kwargs:
            kwargs["out"] = tuple(x.view(np.ndarray) if isinstance(x, _Touches) else x for x in kwargs["out"])
        return getattr(ufunc, method)(*plain, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        self._note(f"function {func.__name__}", self.size)
        return super().__array_function__(func, types, args, kwargs)

    def copy(self, *args, **kwargs):
        self._note("copy", self.size)
        return super().copy(*args, **kwargs)

    def astype(self, *args, **kwargs):
        self._note("astype", self.size)
        return super().astype(*args, **kwargs)


def test_40px_dab_into_25_megapixel_instance_touches_a_few_thousand_pixels():
    # an instance covering 2000 x 2000 pixels of a 5000 x 5000 image
    rng = np.random.default_rng(7)
    base = rng.random((2000, 2000)) < 0.5
    tracked = base.copy().view(_Touches)
    tracked.log = []
    buffer = tracked.__array_interface__["data"][0]
    m = Mask(1500, 1500, np.zeros((1, 1), bool), BIG)
    m.array = tracked  # bypass the constructor's asarray, which would drop the logger

    box = m.paint_disk(2500.0, 2500.0, 20.0)  # a 40 px dab

    assert m.array is tracked and m.array.__array_interface__["data"][0] == buffer
    assert box == m.last_touched == (2480, 2480, 2521, 2521)
    assert tracked.log, "the instrument saw nothing: it is broken"
    touched = max(n for _, n in tracked.log)
    # 4 million pixels in the instance, 25 million in the image; the dab's box is 41 x 41
    assert touched <= 41 * 41, f"a 40 px dab touched {touched} pixels: {tracked.log}"
    # control: the instrument does see a whole-array operation
    tracked.log.clear()
    _ = m.area
    assert max(n for _, n in tracked.log) == base.size
    # only the dab's box changed: checksums of everything else agree
    result = tracked.view(np.ndarray)

    def checksum_outside(a: np.ndarray) -> str:
        a = a.copy()
        a[980:1021, 980:1021] = False
        return hashlib.sha1(np.packbits(a).tobytes()).hexdigest()

    assert checksum_outside(result) == checksum_outside(base)
    for y, x in [(1000, 1000), (1000, 1020), (1020, 1000), (980, 1000), (1000, 980)]:
        assert result[y, x], (y, x)  # centre and the four extreme points of the disk


@SETTINGS
@given(
    points=st.lists(st.tuples(st.floats(1100, 1500), st.floats(1100, 1500)), min_size=1, max_size=5),
    radius=st.floats(0.5, 20),
)
def test_stroke_changes_only_its_box_and_leaves_no_gap(points, radius):
    m = Mask(COVER[0], COVER[1], np.zeros((600, 600), bool), BIG)
    array = m.array
    box = m.paint_stroke(points, radius)
    assert m.array is array and box == m.last_touched
    full_box = m.read_box(box)
    assert m.area == int(full_box.sum())  # nothing outside the box
    pts = np.asarray(points)
    assert box[0] <= pts[:, 0].min() and box[2] > pts[:, 0].max()
    # every point on every segment is painted (no gap, however far apart the events)
    for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:]):
        for t in np.linspace(0, 1, 64):
            x, y = int(round(ax + t * (bx - ax))), int(round(ay + t * (by - ay)))
            if radius >= 1:
                assert m.read_box((x, y, x + 1, y + 1))[0, 0], (x, y)
