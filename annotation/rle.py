"""COCO run-length encoding, wrapped once (STYLE.md: "wrap pycocotools once").

pycocotools' traps handled here: ``encode`` wants a Fortran-ordered uint8 array;
compressed ``counts`` come back as ``bytes`` and must be decoded for JSON;
``frPyObjects`` takes uncompressed counts and returns the compressed form.

Full-image RLE is computed from a mask's crop without building the full image:
the runs of a column-major scan are found from the crop's transitions alone.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from pycocotools import mask as coco_mask

if TYPE_CHECKING:  # pragma: no cover
    from annotation.mask import Mask


class RLEError(ValueError):
    """An RLE that cannot be decoded (wrong size, counts not summing to the image)."""


def _counts_to_str(rle: dict) -> dict:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def uncompressed_counts(mask: "Mask") -> list[int]:
    """Column-major run lengths of the full image, starting with background.

    Time is proportional to the crop (plus the number of runs), not the image.
    """
    H, W = mask.image_size
    a = mask.pixels  # read only: a packed mask stays packed
    if a.size == 0 or not a.any():
        return [H * W]
    h, w = a.shape
    padded = np.zeros((w, h + 2), np.int8)  # columns as rows: column-major scan
    padded[:, 1:-1] = a.T
    flat = padded.ravel()
    change = np.flatnonzero(np.diff(flat)) + 1  # index of first element after a change
    col = change // (h + 2)
    row = change % (h + 2)
    full_index = (mask.x0 + col).astype(np.int64) * H + mask.y0 + row - 1
    # a run that ends at the bottom of one column and restarts at the top of the
    # next is one run in the full image: those transitions coincide and cancel
    uniq, times = np.unique(full_index, return_counts=True)
    full_index = uniq[times == 1]
    bounds = np.concatenate([[0], full_index, [H * W]])
    counts = np.diff(bounds).astype(np.int64).tolist()
    if len(counts) > 1 and counts[-1] == 0:  # mask reaches the last pixel
        counts.pop()
    return counts


def mask_to_rle(mask: "Mask") -> dict:
    """Compressed full-image COCO RLE with ``counts`` as ``str``."""
    H, W = mask.image_size
    counts = uncompressed_counts(mask)
    compressed = coco_mask.frPyObjects({"size": [H, W], "counts": counts}, H, W)
    return _counts_to_str(compressed)


def decode_full(rle: dict) -> np.ndarray:
    """Any COCO RLE (compressed ``str``/``bytes`` or uncompressed list) to an (H, W) bool array."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise RLEError(f"not a COCO RLE (needs 'size' [h, w] and 'counts'): {exc}") from None
    if isinstance(counts, list):
        if sum(int(c) for c in counts) != h * w:
            raise RLEError(f"RLE counts sum to {sum(counts)}, expected {h * w} for size {h}x{w}")
        rle = coco_mask.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
    elif isinstance(counts, str):
        rle = {"size": [h, w], "counts": counts.encode("ascii")}
    elif not isinstance(counts, bytes):
        raise RLEError(f"RLE counts of type {type(counts).__name__} are not understood")
    try:
        return coco_mask.decode(rle).astype(bool)
    except Exception as exc:  # pycocotools raises bare exceptions on corrupt strings
        raise RLEError(f"corrupt compressed RLE: {exc}") from None


def rle_to_mask(rle: dict, mask_cls: Any) -> "Mask":
    return mask_cls.from_full(decode_full(rle))


def _column_major_u8(array: np.ndarray) -> np.ndarray:
    """``array`` (H, W) as a Fortran-ordered uint8 array, the layout ``encode`` wants.
    OpenCV's blocked transpose is several times faster than numpy's copy for large crops."""
    # a converting copy, not a view: a bool array may hold bytes other than 0 and 1 (masks
    # drawn through a uint8 view), which pycocotools would count as separate runs
    a = np.ascontiguousarray(array, np.uint8) if array.dtype != bool else array.astype(np.uint8)
    if a.shape[0] > 1 and a.shape[1] > 1 and a.shape[0] < 32768 and a.shape[1] < 32768:
        return cv2.transpose(a).T
    return np.asfortranarray(a)


def encode_crop(array: np.ndarray) -> str:
    """Compressed RLE string of a crop (the store keeps masks as crop + origin)."""
    if array.size == 0:
        return ""
    return coco_mask.encode(_column_major_u8(array))["counts"].decode("ascii")


def string_to_counts(counts: str) -> np.ndarray:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``,
    vectorised): each count is 5-bit groups (+48, 0x20 = more follows, 0x10 of the last
    group = negative), and from the fourth on it is stored minus the count two before."""
    c = np.frombuffer(counts.encode("ascii"), np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, np.int64)
    last = (c & 0x20) == 0  # the last group of each count
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    k = np.arange(c.size) - np.repeat(starts, ends - starts + 1)  # group index within its count
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[ends] & 0x10) != 0
    x = x - (negative.astype(np.int64) << (5 * (ends - starts + 1)))
    out = x.copy()
    # counts[i] += counts[i - 2] from i = 3 on: two interleaved running sums
    if x.size > 3:
        out[3::2] = x[1] + np.cumsum(x[3::2])
    if x.size > 4:
        out[4::2] = x[2] + np.cumsum(x[4::2])
    return out


def counts_to_string(counts: np.ndarray, height: int, width: int) -> str:
    """Compress run lengths (column-major, starting with background) to COCO's string."""
    rle = coco_mask.frPyObjects({"size": [height, width], "counts": [int(v) for v in counts]}, height, width)
    return rle["counts"].decode("ascii")


def splice_crop(counts: str, height: int, width: int, col0: int, col1: int, columns: np.ndarray) -> str:
    """The RLE string of an (height, width) crop whose columns ``[col0, col1)`` became
    ``columns`` ((height, col1 - col0) bool), from its old string: the runs of the other
    columns are kept as they are, so the cost follows the runs and the columns given,
    not the crop (a stroke on a 3-megapixel instance re-encodes a few columns)."""
    n = height * width
    old = string_to_counts(counts)
    if old.sum() != n:
        raise RLEError(f"RLE counts sum to {int(old.sum())}, not {height} x {width}")
    toggles = np.cumsum(old)[:-1]  # positions where the value changes (0: the crop starts with 1)
    s, e = col0 * height, col1 * height
    flat = _column_major_u8(columns).ravel(order="F") if columns.size else np.zeros(0, np.uint8)
    left, right = toggles[toggles < s], toggles[toggles > e]
    mid = [left]
    if flat.size:
        before = int(left.size % 2)  # the value at s - 1 (0 before the crop starts)
        if s < n and int(flat[0]) != before:
            mid.append(np.array([s], np.int64))
        mid.append(s + np.flatnonzero(flat[1:] != flat[:-1]).astype(np.int64) + 1)
        if e < n:
            after = int(np.count_nonzero(toggles <= e) % 2)  # the value at e, unchanged
            if int(flat[-1]) != after:
                mid.append(np.array([e], np.int64))
    else:
        mid.append(toggles[(toggles >= s) & (toggles <= e)])
    mid.append(right)
    new = np.concatenate(mid)
    return counts_to_string(np.diff(np.concatenate([[0], new, [n]])), height, width)


def decode_crop(counts: str, height: int, width: int) -> np.ndarray:
    if height == 0 or width == 0:
        return np.zeros((height, width), bool)
    return coco_mask.decode({"size": [height, width], "counts": counts.encode("ascii")}).astype(bool)


def polygon_rle(polygons: list[list[float]], height: int, width: int) -> dict:
    """pycocotools' own rasterisation of COCO polygons (used to compare with ours)."""
    # frPyObjects reads a 4-number list as a box: pad such degenerate polygons
    polys = [p + p[:2] if len(p) == 4 else p for p in polygons if len(p) >= 4]
    rles = coco_mask.frPyObjects(polys, height, width)
    return _counts_to_str(coco_mask.merge(rles))


def segmentation_to_full(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO annotation's ``segmentation`` (polygons, or compressed / uncompressed RLE) as an
    ``(H, W)`` bool array; polygons with fewer than three points are ignored (an empty mask
    when none is left). Raises ``RLEError`` when an RLE is not of the image's size."""
    if isinstance(segmentation, list):
        polys = [list(map(float, q)) for q in segmentation if len(q) >= 6 and len(q) % 2 == 0]
        if not polys:
            return np.zeros((height, width), bool)
        return decode_full(polygon_rle(polys, height, width))
    size = [int(v) for v in segmentation.get("size", ())]
    if size != [height, width]:
        raise RLEError(f"RLE of size {size} for an image of size {[height, width]}")
    return decode_full(segmentation)
