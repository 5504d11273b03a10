"""Large images in overlapping tiles, stitched without seams.

Each tile's map is weighted by a window that is 0 on the outer quarter of the overlap
(where a tile's prediction sees the tile edge instead of image content), rises as a
raised cosine over the middle half, and is 1 inside; at the image border the window
stays 1. Adjacent windows cross-fade, and the sum of weights normalises the result, so
a translation-equivariant model whose receptive field radius is below ``overlap / 4``
gives the same map tiled as untiled (up to float rounding).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from annotation.cancel import is_cancelled

TileFn = Callable[[np.ndarray], np.ndarray]


class Cancelled(Exception):
    """Raised when the caller's cancel flag is set; nothing partial is returned."""


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with tiles of ``tile`` overlapping by >= ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _window_1d(size: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """(size,) float32 weights: 0 on the outer overlap/4, cosine ramp over overlap/2, then 1.

    A side that lies on the image border keeps weight 1 (no neighbour to fade into).
    """
    w = np.ones(size, np.float32)
    dead = overlap // 4
    ramp = max(1, overlap // 2)
    t = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
    edge = np.concatenate([np.zeros(dead, np.float32), 0.5 - 0.5 * np.cos(np.pi * t)])
    n = min(len(edge), size)
    if not at_start:
        w[:n] = np.minimum(w[:n], edge[:n])
    if not at_end:
        w[size - n :] = np.minimum(w[size - n :], edge[:n][::-1])
    return w


def tiled_apply(
    image: np.ndarray,
    fn: TileFn,
    tile: int,
    overlap: int,
    *,
    cancel: object = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> np.ndarray:
    """Apply ``fn`` to overlapping tiles of ``image`` and blend the results.

    Args:
        image: ``(H, W, ...)`` array (typically RGB uint8).
        fn: maps an ``(h, w, ...)`` tile to a ``(C, h, w)`` float map (e.g. probabilities).
        tile: tile side in pixels; images not larger than ``tile`` go through ``fn`` whole.
        overlap: minimum overlap of neighbouring tiles in pixels.
        cancel: checked between tiles (see ``is_cancelled``); raises ``Cancelled``.
        progress: called with (tiles done, tiles total).

    Returns:
        ``(C, H, W)`` float32 map.
    """
    h, w = image.shape[:2]
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    total = len(ys) * len(xs)
    if total == 1:
        out = np.asarray(fn(image), np.float32)
        if progress:
            progress(1, 1)
        return out
    acc: Optional[np.ndarray] = None
    wsum = np.zeros((h, w), np.float32)
    done = 0
    for y in ys:
        th = min(tile, h - y)
        wy = _window_1d(th, overlap, y == 0, y + th >= h)
        for x in xs:
            if is_cancelled(cancel):
                raise Cancelled("cancelled")
            tw = min(tile, w - x)
            wx = _window_1d(tw, overlap, x == 0, x + tw >= w)
            pred = np.asarray(fn(image[y : y + th, x : x + tw]), np.float32)
            if acc is None:
                acc = np.zeros((pred.shape[0], h, w), np.float32)
            win = wy[:, None] * wx[None, :]
            acc[:, y : y + th, x : x + tw] += pred * win
            wsum[y : y + th, x : x + tw] += win
            done += 1
            if progress:
                progress(done, total)
    assert acc is not None
    acc /= np.maximum(wsum, 1e-12)
    return acc
