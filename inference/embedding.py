"""Each proposal's embedding: what the clustered review (004) groups proposals by.

An embedding is ``SHAPE_DIMS`` statistics of the proposal (score, size, shape, place,
colour) followed, where the model exposes its decoder's last feature map (an ONNX output
named ``features``), by that map averaged inside the mask. 004 takes the classification
head's last layer as the embedding and adds that the score correlates with mask quality;
our semantic models have no per-object head, so the decoder features pooled over the
mask play that part, and the statistics carry what the features cannot see (how large,
how ragged, how sure).

Costs stay small on any photo and any mask: the mask, the colours and the features are
all read at the centres of at most 32 x 32 cells of the feature map's grid (or of a
128 x 128 grid without one).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from inference.proposal import Proposal

SHAPE_DIMS = 10

_COLOUR_SAMPLES = 4096


_SAMPLE_GRID = 128  # cells per side where the model gives no feature map (colour sampling only)
_SAMPLES_PER_SIDE = 32  # at most 32 x 32 cells read per proposal (0.3 ms; 64 x 64 took 0.4)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _sample_centres(lo: int, hi: int, scale: float, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The cells of a grid of ``scale`` cells per pixel over pixels ``[lo, hi)`` (every
    ``step``-th, at most ``limit``) and the pixel at each one's centre."""
    c0 = int(math.floor(lo * scale))
    c1 = max(c0 + 1, int(math.ceil(hi * scale)))
    step = max(1, math.ceil((c1 - c0) / limit))
    cells = np.arange(c0, c1, step)
    return cells, ((cells + 0.5) / scale).astype(np.int64)


def _cell_weights(proposal: Proposal, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which cells of a ``grid`` (rows, cols) over the image the mask covers, read at the
    cells' centres, at most ``_SAMPLES_PER_SIDE`` per side (a few thousand reads, whatever
    the photo's or the mask's size): 0/1 weights ``(rows, cols)`` and the cells' row and
    column indices."""
    m = proposal.mask
    H, W = m.image_size
    gh, gw = grid
    x0, y0, x1, y1 = m.box
    cols, xs = _sample_centres(x0, x1, gw / max(1, W), _SAMPLES_PER_SIDE)
    rows, ys = _sample_centres(y0, y1, gh / max(1, H), _SAMPLES_PER_SIDE)
    keep_c, keep_r = cols < gw, rows < gh
    cols, xs, rows, ys = cols[keep_c], np.clip(xs[keep_c], 0, W - 1), rows[keep_r], np.clip(ys[keep_r], 0, H - 1)
    weights = np.zeros((len(rows), len(cols)), np.float32)
    inx, iny = (xs >= x0) & (xs < x1), (ys >= y0) & (ys < y1)
    if inx.any() and iny.any():
        weights[np.ix_(iny, inx)] = m.pixels[np.ix_(ys[iny] - y0, xs[inx] - x0)]
    if not weights.any() and weights.size:
        # a sliver between cell centres: the cell under its middle stands for it
        weights[len(rows) // 2, len(cols) // 2] = 1.0
    return weights, rows, cols


def proposal_embedding(proposal: Proposal, rgb: Optional[np.ndarray], features: Optional[np.ndarray]) -> np.ndarray:
    """``SHAPE_DIMS`` statistics (score, log area fraction, log aspect, fill of the box,
    centre x and y as fractions of the image, mean R, G, B and the luminance spread inside
    the mask), then, with a ``(C, h, w)`` feature map covering the image, the features
    averaged inside the mask, L2-normalised."""
    m = proposal.mask
    H, W = m.image_size
    x0, y0, x1, y1 = m.box
    area = int(m.area)
    bw, bh = max(1, x1 - x0), max(1, y1 - y0)
    stats = np.zeros(SHAPE_DIMS, np.float32)
    stats[0] = float(proposal.score)
    stats[1] = math.log(max(area, 1) / max(1, H * W))
    stats[2] = math.log(bw / bh)
    stats[3] = area / (bw * bh)
    stats[4] = (x0 + x1) / (2.0 * max(1, W))
    stats[5] = (y0 + y1) / (2.0 * max(1, H))
    grid = features.shape[1:] if features is not None else (min(H, _SAMPLE_GRID), min(W, _SAMPLE_GRID))
    weights, rows, cols = _cell_weights(proposal, grid)
    inside = weights > 0
    if rgb is not None and inside.any():
        gh, gw = grid
        ys = np.clip(((rows + 0.5) * H / gh).astype(np.int64), 0, H - 1)
        xs = np.clip(((cols + 0.5) * W / gw).astype(np.int64), 0, W - 1)
        pixels = rgb[np.ix_(ys, xs)][inside].astype(np.float32) / 255.0
        stats[6:9] = pixels.mean(0)
        stats[9] = float((pixels @ _LUMA).std())
    if features is None:
        return stats
    cells = features[:, rows[:, None], cols[None, :]]  # (C, rows, cols): a gather, not the box
    vec = cells[:, inside].mean(1) if inside.any() else np.zeros(features.shape[0], np.float32)
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm == 0.0:  # a broken feature map: the statistics alone speak
        vec = np.zeros(features.shape[0], np.float32)
    else:
        vec = vec / norm
    return np.concatenate([stats, vec.astype(np.float32)])


def attach_embeddings(proposals: Sequence[Proposal], rgb: Optional[np.ndarray],
                      features: Optional[np.ndarray] = None) -> None:
    """Give every proposal its embedding (in place)."""
    for p in proposals:
        p.embedding = proposal_embedding(p, rgb, features)
