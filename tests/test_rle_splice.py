"""Storing an edit re-encodes only the columns it touched: the vectorised COCO string
decoder, the splice, and the store's use of them, against pycocotools' own encoding."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco_mask

from annotation import rle
from annotation.document import Instance
from annotation.mask import Mask
from annotation.store import ProjectStore


def _runs(a: np.ndarray) -> np.ndarray:
    """Column-major run lengths starting with background, straight from the pixels."""
    f = a.ravel(order="F").astype(np.int8)
    edges = np.concatenate([[0], np.flatnonzero(np.diff(f)) + 1, [f.size]])
    counts = np.diff(edges)
    return np.concatenate([[0], counts]) if f[0] == 1 else counts


@st.composite
def crops(draw):
    h, w = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["noise", "blob", "full", "empty"]))
    if kind == "noise":
        a = rng.random((h, w)) < rng.random()
    elif kind == "blob":
        yy, xx = np.mgrid[:h, :w]
        a = (yy - rng.uniform(0, h)) ** 2 + (xx - rng.uniform(0, w)) ** 2 < rng.uniform(1, 30) ** 2
    else:
        a = np.full((h, w), kind == "full")
    c0 = draw(st.integers(0, w))
    c1 = draw(st.integers(c0, w))
    cols = rng.random((h, c1 - c0)) < draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    return a, c0, c1, cols


@settings(max_examples=400, deadline=None)
@given(crops())
def test_decoder_and_splice_agree_with_pycocotools(case):
    a, c0, c1, cols = case
    h, w = a.shape
    s = rle.encode_crop(a)
    assert s == coco_mask.encode(np.asfortranarray(a.astype(np.uint8)))["counts"].decode()
    assert np.array_equal(rle.string_to_counts(s), _runs(a))
    b = a.copy()
    b[:, c0:c1] = cols
    spliced = rle.splice_crop(s, h, w, c0, c1, cols)
    assert spliced == rle.encode_crop(b)
    assert np.array_equal(rle.decode_crop(spliced, h, w), b)


def test_large_counts_and_a_corrupt_string():
    a = np.zeros((3000, 2500), bool)
    a[1000:2900, 7:2400] = True  # runs far above 32: several 5-bit groups, negative deltas
    s = rle.encode_crop(a)
    assert np.array_equal(rle.string_to_counts(s), _runs(a))
    with pytest.raises(rle.RLEError):
        rle.splice_crop(s, 3000, 2501, 0, 1, np.zeros((3000, 1), bool))


def test_store_splices_edits_of_a_large_instance_exactly(tmp_path, monkeypatch):
    """Strokes on a 3-megapixel instance, stored with the box they touched: after each the
    stored mask equals the one in memory, and (once the array stopped growing) the store
    re-encodes only a few columns, never the whole crop."""
    rng = np.random.default_rng(7)
    size = (4000, 5000)
    full = np.zeros(size, bool)
    yy, xx = np.mgrid[:size[0], :size[1]]
    full[(yy - 2000) ** 2 / 1000**2 + (xx - 2500) ** 2 / 950**2 < 1] = True
    with ProjectStore.open(tmp_path, scan=False) as store:
        image_id = store.add_image("big.png", *size)
        inst = Instance(image_id, "glass", Mask.from_full(full))
        store.add_instance(inst)
        widths = []
        real = rle.encode_crop

        def counting_encode(array):
            widths.append(array.shape[1])
            return real(array)

        monkeypatch.setattr(rle, "encode_crop", counting_encode)
        for k in range(25):
            x, y = rng.uniform(1400, 3600), rng.uniform(900, 3100)
            pts = [(x, y), (x + rng.uniform(-60, 60), y + rng.uniform(-60, 60))]
            box = inst.mask.paint_stroke(pts, rng.uniform(3, 30), value=bool(k % 3))
            store.update_instance(inst, changed=box)
            stored = store.instance(inst.id)
            assert stored.mask == inst.mask, f"stroke {k}"
        # a stroke that grows the array stores its whole box once; the rest were splices
        assert len(widths) <= 2 and all(w > 1000 for w in widths)


def test_bool_arrays_holding_other_bytes_than_one_encode_as_true():
    """A mask drawn through a uint8 view (cv2.fillPoly with 255) holds 255 in its bool
    bytes; the encoder must see True, not a value of its own (a run boundary)."""
    raw = np.zeros((30, 40), np.uint8)
    raw[5:20, 3:30] = 255
    raw[10:12, 8:9] = 1
    a = raw.view(bool)
    assert rle.encode_crop(a) == rle.encode_crop(raw > 0)
    assert np.array_equal(rle.decode_crop(rle.encode_crop(a), 30, 40), raw > 0)
