"""High-bit-depth and alpha images brought to 8-bit RGB for display (``annotation.images``
uses it; the rules are in that module's docstring)."""
from __future__ import annotations

from typing import Optional

import numpy as np

DISPLAY_PERCENTILES = (0.5, 99.5)
# samples used to find the display range of a high-bit-depth image: enough for
# stable percentiles, few enough that a 100-megapixel image costs nothing
_RANGE_SAMPLES = 1_000_000
_ROWS_PER_CHUNK = 1024  # rows scaled at a time, so float temporaries stay small


# ------------------------------------------------------------------ display
def display_range(values: np.ndarray) -> tuple[float, float]:
    """(low, high) percentiles of the finite values of a high-bit-depth image."""
    n = values.shape[0] * values.shape[1]
    step = max(1, int(np.sqrt(n / _RANGE_SAMPLES)))
    sample = np.asarray(values[::step, ::step], dtype=np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sample, DISPLAY_PERCENTILES))
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:  # a constant image: place it within its dtype's natural range
        if np.issubdtype(values.dtype, np.integer):
            info = np.iinfo(values.dtype)
            lo, hi = float(min(0, info.min)), float(info.max)
        else:
            lo, hi = min(0.0, lo), max(1.0, hi)
    return lo, hi


def _scale_to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    out = np.empty(values.shape, np.uint8)
    gain = 255.0 / (hi - lo)
    for r in range(0, values.shape[0], _ROWS_PER_CHUNK):
        block = values[r : r + _ROWS_PER_CHUNK].astype(np.float32)
        block = (block - np.float32(lo)) * np.float32(gain)
        np.nan_to_num(block, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        np.clip(block, 0, 255, out=block)
        out[r : r + _ROWS_PER_CHUNK] = np.rint(block)
    return out


def _alpha_to_uint8(alpha: np.ndarray) -> np.ndarray:
    if alpha.dtype == np.uint8:
        return np.ascontiguousarray(alpha)
    if alpha.dtype == bool:
        return alpha.astype(np.uint8) * 255
    if np.issubdtype(alpha.dtype, np.integer):
        return _scale_to_uint8(alpha, 0.0, float(np.iinfo(alpha.dtype).max))
    return _scale_to_uint8(alpha, 0.0, 1.0)  # float alpha is 0..1


def to_display(original: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray], Optional[tuple[float, float]]]:
    """(rgb, alpha, display_range) of an ``(H, W)`` or ``(H, W, 1..4)`` array.

    ``rgb`` is ``(H, W, 3)`` uint8, C-contiguous, composited on black where there is
    alpha; see the module docstring for the rules.
    """
    a = original
    if a.ndim == 2:
        colour, alpha = a[:, :, None], None
    elif a.shape[2] in (2, 4):
        colour, alpha = a[:, :, :-1], a[:, :, -1]
    elif a.shape[2] in (1, 3):
        colour, alpha = a, None
    else:
        raise ValueError(f"images of {a.shape[2]} channels are not supported (1 to 4)")
    rng: Optional[tuple[float, float]] = None
    if colour.dtype == np.uint8:
        rgb8 = colour
    elif colour.dtype == bool:
        rgb8 = colour.astype(np.uint8) * 255
    else:
        rng = display_range(colour)
        rgb8 = _scale_to_uint8(colour, *rng)
    alpha8 = None if alpha is None else _alpha_to_uint8(alpha)
    if alpha8 is not None:
        # composite on black: c * a / 255, rounded
        rgb8 = ((rgb8.astype(np.uint16) * alpha8[:, :, None] + 127) // 255).astype(np.uint8)
    if rgb8.shape[2] == 1:
        rgb8 = np.repeat(rgb8, 3, axis=2)
    return np.ascontiguousarray(rgb8), alpha8, rng
