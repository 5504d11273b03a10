"""Masks not used lately are bit-packed (an eighth of their box), and that changes
nothing a caller sees: pixels, boxes, areas, RLE, edits and ``array`` stay the same;
an edit in progress is not lost when another thread makes masks meanwhile."""
from __future__ import annotations

import threading

import numpy as np

from annotation import maskbits
from annotation.mask import _HOT, Mask

SIZE = (900, 1200)


def _masks(n: int, seed: int = 0) -> list[tuple[Mask, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(20, 240, 2))
        a = rng.random((h, w)) < 0.4
        x0, y0 = int(rng.integers(-30, SIZE[1] - w)), int(rng.integers(-30, SIZE[0] - h))
        out.append((Mask.from_box_array(x0, y0, a, SIZE), a))
    return out


def test_packed_bits_round_trip_by_box():
    rng = np.random.default_rng(1)
    for w in (1, 7, 8, 9, 63, 200):
        a = rng.random((13, w)) < 0.5
        p = maskbits.pack(a)
        assert p.shape == (13, w) and p.nbytes == 13 * -(-w // 8)
        assert np.array_equal(maskbits.unpack(p), a)
        for c0, c1 in [(0, w), (w // 3, w), (1, max(1, w - 1)), (w - 1, w)]:
            assert np.array_equal(maskbits.unpack_box(p, 2, 11, c0, c1), a[2:11, c0:c1]), (w, c0, c1)


def test_old_masks_are_packed_to_an_eighth_and_read_the_same():
    made = _masks(300)
    references = [(m.pixels.copy(), m.box) for m, _ in made]  # what each held when made
    packed = [m for m, _ in made if m.is_packed]
    unpacked = [m for m, _ in made if not m.is_packed]
    # all but the most recent ones are packed, and those stay within the budget
    assert len(packed) >= 150 and len(packed) + len(unpacked) == 300
    assert all(not m.is_packed for m, _ in made[len(packed) :])
    assert sum(m.nbytes for m in unpacked) <= maskbits.HOT_BYTES or len(unpacked) <= maskbits.HOT_KEEP
    assert _HOT.nbytes <= maskbits.HOT_BYTES or len(_HOT) <= maskbits.HOT_KEEP
    for m in packed:
        h, w = m.box[3] - m.box[1], m.box[2] - m.box[0]
        assert m.nbytes == h * -(-w // 8) <= h * w / 8 + h
    for (m, _), (ref, box) in zip(made, references):
        was_packed = m.is_packed
        full = np.zeros(SIZE, bool)
        full[box[1] : box[3], box[0] : box[2]] = ref
        assert m.box == box
        assert m.area == int(ref.sum())
        assert m.bbox == Mask.from_full(full).bbox
        assert m.is_empty() == (not ref.any())
        assert np.array_equal(m.pixels, ref)
        part = (box[0] - 5, box[1] + 3, box[2] + 17, box[3] - 2)  # reaching out of the box
        padded = np.pad(full, 20)
        assert np.array_equal(m.read_box(part), padded[part[1] + 20 : part[3] + 20, part[0] + 20 : part[2] + 20])
        assert np.array_equal(m.to_full(), full)
        assert m.to_rle() == Mask.from_full(full).to_rle()
        assert m.is_packed == was_packed  # reading did not unpack it
        assert m.copy() == m and m.cropped() == Mask.from_full(full)


def test_array_unpacks_and_edits_survive_packing_again():
    made = _masks(200, seed=2)
    m = made[0][0]
    assert m.is_packed
    arr = m.array
    assert not m.is_packed and arr.dtype == bool and np.array_equal(arr, m.pixels)
    before = m.area
    box = m.paint_disk(m.box[0] + 10, m.box[1] + 10, 6)
    assert m.area >= before and m.last_touched == box
    expected = m.to_full()
    _masks(200, seed=3)  # other masks used: this one is packed again
    assert m.is_packed
    assert np.array_equal(m.to_full(), expected)
    # an edit of a packed mask unpacks it first
    m.write_box((m.box[0], m.box[1], m.box[0] + 4, m.box[1] + 4), np.ones((4, 4), bool))
    expected[m.box[1] : m.box[1] + 4, m.box[0] : m.box[0] + 4] = True
    assert not m.is_packed and np.array_equal(m.to_full(), expected)


def test_edit_in_progress_is_not_lost_to_a_thread_making_masks():
    target = Mask(100, 100, np.zeros((400, 600), bool), SIZE)
    reference = np.zeros(SIZE, bool)
    stop = threading.Event()

    def churn() -> None:
        rng = np.random.default_rng(4)
        while not stop.is_set():  # a proposer's worker making masks
            Mask(0, 0, rng.random((300, 300)) < 0.5, SIZE)

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        rng = np.random.default_rng(5)
        for _ in range(300):
            x, y = float(rng.uniform(110, 690)), float(rng.uniform(110, 490))
            target.paint_stroke([(x, y), (x + 9, y + 4)], 4)
            probe = Mask.empty(SIZE)
            probe.paint_stroke([(x, y), (x + 9, y + 4)], 4)
            reference |= probe.to_full()
    finally:
        stop.set()
        worker.join()
    assert np.array_equal(target.to_full(), reference)
