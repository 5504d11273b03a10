"""Thumbnails of proposals for the clustered review: the proposal's neighbourhood with its
mask outlined, made in a worker (plain numpy and OpenCV; Qt only turns them into icons).

Each image is decoded once per batch, reduced in the DCT domain where the file allows
(a thumbnail needs a fraction of a 25-megapixel photo's pixels).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

from annotation.images import decode_reduced, load_image
from annotation.store import ProjectStore

THUMB_SIDE = 160
_MARGIN = 0.25  # of the box's larger side, on every side: enough context to judge an edge


def _reduced_image(path: Path, size: tuple[int, int]) -> tuple[np.ndarray, int]:
    """The image and its reduction factor: 1/4 or 1/2 for a big JPEG, else full size."""
    h, w = size
    for factor in (4, 2):
        if max(h, w) // factor >= 4 * THUMB_SIDE:
            reduced = decode_reduced(path, factor)
            if reduced is not None:
                return reduced, factor
    return load_image(path).rgb, 1


def outlined(rgb: np.ndarray, factor: int, box: tuple[int, int, int, int], mask_box: np.ndarray,
             colour: tuple[int, int, int]) -> np.ndarray:
    """``THUMB_SIDE``-sided RGB thumbnail of the proposal: the box with a margin, the mask's
    outline in ``colour``, the inside faintly tinted."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 1)
    m = int(side * _MARGIN)
    H, W = rgb.shape[0] * factor, rgb.shape[1] * factor
    cx0, cy0, cx1, cy1 = max(0, x0 - m), max(0, y0 - m), min(W, x1 + m), min(H, y1 + m)
    crop = rgb[cy0 // factor: max(cy0 // factor + 1, cy1 // factor), cx0 // factor: max(cx0 // factor + 1, cx1 // factor)]
    scale = THUMB_SIDE / max(crop.shape[:2])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    thumb = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    full = np.zeros((cy1 - cy0, cx1 - cx0), np.uint8)
    full[y0 - cy0: y1 - cy0, x0 - cx0: x1 - cx0] = mask_box.astype(np.uint8)
    small = cv2.resize(full, size, interpolation=cv2.INTER_NEAREST)
    tint = np.array(colour, np.float32)
    inside = small.astype(bool)
    thumb = thumb.copy()
    thumb[inside] = (0.75 * thumb[inside] + 0.25 * tint).astype(np.uint8)
    contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(thumb, contours, -1, tuple(int(c) for c in colour), 2)
    return np.ascontiguousarray(thumb)


def make_thumbnails(root: Path, ids: Sequence[int], colours: dict[str, tuple[int, int, int]],
                    cancel: Optional[Callable[[], bool]] = None) -> dict[int, Optional[np.ndarray]]:
    """instance id -> thumbnail (None where the image cannot be read), grouped by image so
    each file is decoded once. Opens its own connection: it runs in a worker thread."""
    out: dict[int, Optional[np.ndarray]] = {}
    # read only, no folder scan: the window's own connection is the one that writes
    with ProjectStore.open(root, create=False, scan=False, read_only=True) as store:
        by_image: dict[int, list] = {}
        for iid in ids:
            try:
                inst = store.instance(iid)
            except KeyError:  # deleted meanwhile
                continue
            by_image.setdefault(inst.image_id, []).append(inst)
        for image_id, insts in by_image.items():
            if cancel is not None and cancel():
                break
            rec = store.image(image_id)
            try:
                rgb, factor = _reduced_image(root / rec.path, (rec.height, rec.width))
            except Exception:  # noqa: BLE001 - one unreadable image leaves its thumbnails blank
                for inst in insts:
                    out[inst.id] = None
                continue
            for inst in insts:
                box = inst.mask.bbox
                if box[2] <= box[0] or box[3] <= box[1]:
                    out[inst.id] = None
                    continue
                out[inst.id] = outlined(rgb, factor, box, inst.mask.read_box(box),
                                        colours.get(inst.class_name, (255, 255, 0)))
    return out
