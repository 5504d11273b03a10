"""COCO run-length encoding, wrapped once (STYLE.md: "wrap pycocotools once").

pycocotools' traps handled here: ``encode`` wants a Fortran-ordered uint8 array;
compressed ``counts`` come back as ``bytes`` and must be decoded for JSON;
``frPyObjects`` takes uncompressed counts and returns the compressed form.

Full-image RLE is computed from a mask's crop without building the full image:
the runs of a column-major scan are found from the crop's transitions alone.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    a = mask.array
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


def encode_crop(array: np.ndarray) -> str:
    """Compressed RLE string of a crop (the store keeps masks as crop + origin)."""
    a = np.asfortranarray(np.asarray(array, dtype=np.uint8))
    if a.size == 0:
        return ""
    return coco_mask.encode(a)["counts"].decode("ascii")


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
