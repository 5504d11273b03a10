"""Network maps to proposals at the network's resolution.

The reference path (``base.maps_to_proposals``) resizes every class map to the photo,
thresholds it and labels the whole photo: on a 1.3-MP photo from a 384 x 384 network
that is most of the engine's time. Here the thresholding and labelling happen on the
network's map, and only the box of each region found there is brought to full
resolution:

- a full-resolution pixel is a bilinear mix of at most 2 x 2 neighbouring cells, so it
  can pass the threshold only if one of them does: every such pixel lies in the
  regions of the thresholded map *widened by one cell* (its nearest cell is one of
  its two taps per axis, hence next to a cell above the threshold);
- each region's box is resized on exactly the sampling grid the whole-map resize
  uses (``_Axis.crop``), thresholded and split into its 8-connected components
  there, so proposals and their scores (mean probability over the mask) are those
  of the reference path, up to float rounding;
- pane splitting by the boundary head (``split_regions``) finds the seeds and grows
  them on the network's map, and each full-resolution pixel takes the pane of its
  nearest cell, except within ``_CONTESTED`` cells of a border between two panes:
  there the network map's growth can be off by a few cells, so those pixels join
  their nearest seed at full resolution, as the reference does everywhere. Seeds
  themselves are decided on the network's map; where the boundary map hovers at its
  threshold the reference's own seeds flip with a change of 0.01 in that threshold, and
  so may these (on the 80 held-out GDD photos: mean mask IoU 0.986 per photo against
  the reference, 0.976 per proposal, 6 photos with one proposal more or less; the
  reference at boundary threshold 0.14 instead of 0.15 agrees with itself at 0.979 and
  0.971). Without pane splitting the proposals are the reference's.

A model that sees the photo at its own size (no resize), or an image no larger than the
network's map, is thresholded and labelled once at the image's size, exactly as the
reference; with a sigmoid or a two-class softmax and no test-time augmentation the raw
scores are thresholded (``NetworkMaps.logits``) and probabilities are computed only
on the proposals' pixels.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import cv2
import numpy as np

from annotation.mask import Mask
from inference.pipelines.base import NetworkMaps, resize_maps, split_regions_with_seeds
from inference.proposal import Proposal
from inference.registry import ModelInfo

# a sampling period longer than this (an image side sharing no factor with the network's)
# makes a region's crop as long as the whole axis: resizing that axis whole is as cheap
_MAX_PERIOD = 512
_CROSS = np.ones((3, 3), np.uint8)
ToProb = Optional[Callable[[np.ndarray], np.ndarray]]


class _Axis:
    """One axis of the bilinear resize from ``n_src`` network cells to ``n_dst`` pixels.

    cv2.resize samples pixel ``x`` at ``(x + 0.5) * n_src / n_dst - 0.5``; that grid
    repeats every ``q`` pixels (``p`` cells), ``p / q`` being ``n_src / n_dst`` in lowest
    terms, so a crop that starts and ends on the period, resized alone, samples the
    same points as the whole axis.
    """

    def __init__(self, n_src: int, n_dst: int):
        self.n_src, self.n_dst = int(n_src), int(n_dst)
        self.same = self.n_src == self.n_dst
        g = math.gcd(self.n_src, self.n_dst)
        self.p, self.q, self.periods = self.n_src // g, self.n_dst // g, g
        # the cell nearest each pixel centre: one of the two cells bilinear reads there
        near = np.floor((np.arange(self.n_dst) + 0.5) * (self.n_src / self.n_dst)).astype(np.int64)
        self.near = np.minimum(near, self.n_src - 1)

    def pixels(self, c0: int, c1: int) -> tuple[int, int]:
        """The pixels ``[lo, hi)`` whose nearest cell lies in ``[c0, c1)``."""
        if self.same:
            return c0, c1
        return int(np.searchsorted(self.near, c0, "left")), int(np.searchsorted(self.near, c1, "left"))

    def crop(self, lo: int, hi: int) -> tuple[int, int, int, int]:
        """Cells ``[c0, c1)`` and pixels ``[a0, a1)`` covering ``[lo, hi)`` such that
        ``cv2.resize`` of those cells alone to ``a1 - a0`` pixels samples the whole
        axis's grid. One period of margin on each side keeps the crop's own border
        (where cv2 repeats the edge cell) away from the pixels asked for."""
        if self.same:
            return lo, hi, lo, hi
        if self.q > _MAX_PERIOD:
            return 0, self.n_src, 0, self.n_dst
        k0 = max(0, lo // self.q - 1)
        k1 = min(self.periods, -(-hi // self.q) + 1)
        return k0 * self.p, k1 * self.p, k0 * self.q, k1 * self.q


def resize_box(values: np.ndarray, ay: _Axis, ax: _Axis, box: tuple[int, int, int, int]) -> np.ndarray:
    """``box`` = ``(y0, y1, x0, x1)`` of the full-size bilinear resize of ``values`` (``(h, w)``
    float32), computed from the cells under it only; equal to cropping the whole resize."""
    y0, y1, x0, x1 = box
    cy0, cy1, py0, py1 = ay.crop(y0, y1)
    cx0, cx1, px0, px1 = ax.crop(x0, x1)
    src = values[cy0:cy1, cx0:cx1]
    if (py1 - py0, px1 - px0) != src.shape:
        src = cv2.resize(src, (px1 - px0, py1 - py0), interpolation=cv2.INTER_LINEAR)
    return src[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]


def components(binary: np.ndarray, min_area: int = 1, likely_one: bool = False) -> tuple[int, Optional[np.ndarray], np.ndarray]:
    """8-connected components of an ``(h, w)`` uint8 0/1 image.

    Returns ``(n, labels, stats)`` like ``cv2.connectedComponentsWithStats`` (``n``
    counts the background; ``stats`` rows are x, y, width, height, area), except that
    a component with fewer than ``min_area`` pixels may come back with an empty box.
    OpenCV's statistics pass costs ten times its labelling (10 ms per megapixel here):
    a single component takes its box and area from ``boundingRect`` and
    ``countNonZero``, and a few components large enough (typically one pane and specks)
    their areas from one ``bincount`` and their boxes from their own pixels.

    ``likely_one``: the caller expects one component (a region of the network's map):
    outer contours (5x cheaper than labelling a smooth mask) tell whether it is, and
    then ``labels`` is None: the component is ``binary`` itself.
    """
    if likely_one:
        # RETR_CCOMP puts every outer boundary at the top level, also one inside a hole
        _, hier = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        tops = 0 if hier is None else int(np.count_nonzero(hier[0, :, 3] < 0))
        if tops <= 1:
            stats = np.zeros((tops + 1, 5), np.int64)
            if tops:
                stats[1, :4] = cv2.boundingRect(binary)
                stats[1, 4] = cv2.countNonZero(binary)
            return tops + 1, None, stats
    n, labels = cv2.connectedComponents(binary, connectivity=8, ltype=cv2.CV_32S)
    stats = np.zeros((n, 5), np.int64)
    if n == 2:
        stats[1, :4] = cv2.boundingRect(binary)
        stats[1, 4] = cv2.countNonZero(binary)
    elif n > 2:
        areas = np.bincount(labels.ravel(), minlength=n)
        big = np.flatnonzero(areas[1:] >= max(1, min_area)) + 1
        if len(big) > 8:
            _, _, stats, _ = cv2.connectedComponentsWithStats(
                binary, connectivity=8, ltype=cv2.CV_16U if n <= 65535 else cv2.CV_32S
            )
            return n, labels, stats
        stats[:, 4] = areas
        for k in big:
            stats[k, :4] = cv2.boundingRect((labels == k).view(np.uint8))
    return n, labels, stats


def _label_boxes(labels: np.ndarray, n: int) -> np.ndarray:
    """``(n, 4)`` boxes ``y0, y1, x0, x1`` (exclusive ends) of labels ``1 .. n-1`` of an
    ``(h, w)`` label image with few labels (row and column presence by one bincount each);
    an absent label gets an empty box."""
    h, w = labels.shape
    if n <= 9:  # a few panes: a comparison and a bounding rectangle each, 4x cheaper than gathering
        out = np.zeros((max(n, 1), 4), np.int64)
        for k in range(1, n):
            x, y, bw, bh = cv2.boundingRect((labels == k).view(np.uint8))
            if bw and bh:
                out[k] = (y, y + bh, x, x + bw)
        return out[:n]
    ys, xs = np.nonzero(labels)
    v = labels[ys, xs].astype(np.int64)
    rows = np.bincount(v * h + ys, minlength=n * h).reshape(n, h) > 0
    cols = np.bincount(v * w + xs, minlength=n * w).reshape(n, w) > 0
    out = np.zeros((n, 4), np.int64)
    out[:, 0] = rows.argmax(1)
    out[:, 1] = h - rows[:, ::-1].argmax(1)
    out[:, 2] = cols.argmax(1)
    out[:, 3] = w - cols[:, ::-1].argmax(1)
    out[~rows.any(1)] = 0
    return out


def _cell_box(cells: np.ndarray) -> tuple[int, int, int, int]:
    """``y0, y1, x0, x1`` (exclusive ends) of the set cells of an ``(h, w)`` bool map."""
    x, y, w, h = cv2.boundingRect(cells.view(np.uint8))
    return y, y + h, x, x + w


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _class_values(net: NetworkMaps, ci: int, threshold: float) -> tuple[np.ndarray, float, ToProb]:
    """Class ``ci``'s map, the threshold on that map's scale, and what turns its values
    into probabilities (None: they are probabilities)."""
    if net.probs is not None:
        return net.probs[ci], threshold, None
    assert net.logits is not None and 0.0 < threshold < 1.0
    t = math.log(threshold / (1.0 - threshold))
    if net.activation == "sigmoid":
        return net.logits[ci], t, _sigmoid
    if net.activation == "softmax" and net.logits.shape[0] == 2:
        # p_ci = exp(l_ci) / (exp(l_0) + exp(l_1)) = sigmoid(l_ci - l_other)
        return net.logits[ci] - net.logits[1 - ci], t, _sigmoid
    raise ValueError(f"cannot threshold {net.activation} logits of {net.logits.shape[0]} classes")


def _crop_proposals(
    binary: np.ndarray, values: np.ndarray, x0: int, y0: int, to_prob: ToProb, min_area: int,
    image_size: tuple[int, int], name: str, info: ModelInfo, likely_one: bool = True,
) -> list[Proposal]:
    """One proposal per 8-connected component of ``binary`` (a uint8 crop at ``x0, y0``) with
    at least ``min_area`` pixels, scored by the mean probability of ``values`` under it."""
    n, labels, stats = components(binary, min_area, likely_one)
    out = []
    for k in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[k])
        if area < min_area:
            continue
        part = binary[y : y + h, x : x + w] if labels is None or n == 2 else \
            (labels[y : y + h, x : x + w] == k).view(np.uint8)
        vals = values[y : y + h, x : x + w]
        if to_prob is None:  # a product and a sum: 6x faster than cv2.mean with a mask
            score = cv2.sumElems(cv2.multiply(vals, part, dtype=cv2.CV_32F))[0] / area
        else:
            score = float(to_prob(vals[part.view(bool)]).mean())
        # a 0/1 crop viewed as bool: the mask keeps this function's scratch array, no copy
        out.append(Proposal(Mask(x0 + x, y0 + y, part.view(bool), image_size), name, score,
                            info.name, info.version))
    return out


def _overlapping(boxes: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: which of the ``(n, 4)`` boxes ``y0, y1, x0, x1`` meets another one."""
    if len(boxes) < 2:
        return np.zeros(len(boxes), bool)
    y0, y1, x0, x1 = (boxes[:, i] for i in range(4))
    meet = ((np.maximum(y0[:, None], y0[None]) < np.minimum(y1[:, None], y1[None]))
            & (np.maximum(x0[:, None], x0[None]) < np.minimum(x1[:, None], x1[None])))
    np.fill_diagonal(meet, False)
    return meet.any(1)


def _nearest(cells: np.ndarray, ay: _Axis, ax: _Axis, box: tuple[int, int, int, int]) -> np.ndarray:
    """``box`` = ``(y0, y1, x0, x1)`` of the full-size image in which every pixel takes the
    value of its nearest cell of ``cells`` (``(h, w)``)."""
    y0, y1, x0, x1 = box
    # columns first, on the few rows of cells: the rows are then whole-row copies (2x faster)
    return cells.take(ax.near[x0:x1], 1).take(ay.near[y0:y1], 0)


def _pixel_box(cells: np.ndarray, ay: _Axis, ax: _Axis, grow: int = 0) -> tuple[int, int, int, int]:
    """The pixels whose nearest cell lies in the cell box ``y0, y1, x0, x1``, widened by ``grow`` cells."""
    y0, y1 = ay.pixels(max(0, int(cells[0]) - grow), min(ay.n_src, int(cells[1]) + grow))
    x0, x1 = ax.pixels(max(0, int(cells[2]) - grow), min(ax.n_src, int(cells[3]) + grow))
    return y0, y1, x0, x1


def _contested(panes: np.ndarray, n_seeds: int, support: np.ndarray) -> np.ndarray:
    """``(h, w)`` uint8: the cells within ``_CONTESTED`` cells of a border between two panes
    grown from seeds. There the pane of the nearest cell can be off by a few cells (the
    network map's seeds grow on a grid 3 px wide); elsewhere it is the pane."""
    f = panes.astype(np.float32)
    hi = cv2.dilate(f, _CROSS)
    lo = cv2.erode(np.where(panes > 0, f, np.float32(2**24)), _CROSS)
    border = ((panes > 0) & (hi != lo) & (hi <= n_seeds)).view(np.uint8)
    k = 2 * _CONTESTED + 1
    return cv2.dilate(border, np.ones((k, k), np.uint8)) & support


# how far (cells) from a border between panes the pane of a pixel is decided at full
# resolution; beyond, the network map's panes give the same proposals (mean mask IoU
# 0.99 against the reference path on GDD photos, see tests/inference/test_postprocess_agreement.py)
_CONTESTED = 8


def _split_group(
    values: np.ndarray, thr: float, boundary: np.ndarray, boundary_threshold: float, ay: _Axis, ax: _Axis,
    box: tuple[int, int, int, int], group: np.ndarray, panes: np.ndarray, seeds: np.ndarray, zone: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, list[int]]]:
    """Pane labels and values of one region (``group``: its cells) that holds a border between
    panes, over its full-resolution ``box``: ``(labels (bh, bw) int32, above (bh, bw) bool:
    the class passes the threshold, values (bh, bw), {label: box y0, y1, x0, x1 in the
    region's box holding its pixels})``.

    Each pixel takes the pane of its nearest cell, except near a border between panes
    (``zone``), where it joins its nearest seed at full resolution, as the reference path
    does everywhere: seeds there are the network map's seeds cut to the full-resolution
    core (class above threshold, boundary below), grown by a distance transform over the
    border's box widened by ``_CONTESTED`` cells.
    """
    y0, y1, x0, x1 = box
    vals = resize_box(values, ay, ax, box)
    above = vals > thr
    labels = _nearest(panes, ay, ax, box)
    # where each label can be: its cells' pixels, and the boxes where pixels were handed over
    where: dict[int, list[int]] = {}
    # the group's cells lie in its own box of cells: label boxes there, not on the whole map
    gy0, gy1, gx0, gx1 = _cell_box(group)
    in_group = np.where(group[gy0:gy1, gx0:gx1], panes[gy0:gy1, gx0:gx1], 0)
    for k, cb in enumerate(_label_boxes(in_group, int(in_group.max()) + 1)):
        if k > 0 and cb[1] > cb[0]:
            py0, py1, px0, px1 = _pixel_box(cb + (gy0, gy0, gx0, gx0), ay, ax)
            where[k] = [max(py0, y0) - y0, min(py1, y1) - y0, max(px0, x0) - x0, min(px1, x1) - x0]
    # seeds of this region's split components only (a pane grown from a seed has the seed's label)
    own_seeds = np.where(group & (panes == seeds), seeds, 0)
    n, zones, stats = components(zone & group.view(np.uint8))
    assert zones is not None
    for z in range(1, n):
        zx, zy, zw, zh = (int(v) for v in stats[z, :4])
        zb = _pixel_box((zy, zy + zh, zx, zx + zw), ay, ax, _CONTESTED)
        zb = (max(zb[0], y0), min(zb[1], y1), max(zb[2], x0), min(zb[3], x1))
        inner = (slice(zb[0] - y0, zb[1] - y0), slice(zb[2] - x0, zb[3] - x0))
        core = above[inner] & ~(resize_box(boundary, ay, ax, zb) > boundary_threshold)
        s = _nearest(own_seeds, ay, ax, zb) * core
        if not s.any():
            continue
        _, nearest = cv2.distanceTransformWithLabels(
            (s == 0).view(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
        )
        on = s > 0
        lut = np.zeros(int(nearest.max()) + 1, np.int32)
        lut[nearest[on]] = s[on]
        mine = (_nearest((zones == z).view(np.uint8), ay, ax, zb) > 0) & above[inner]
        handed = lut[nearest[mine]]
        labels[inner][mine] = handed
        for k in np.unique(handed).tolist():
            b = where.setdefault(int(k), [inner[0].start, inner[0].stop, inner[1].start, inner[1].stop])
            b[0], b[1] = min(b[0], inner[0].start), max(b[1], inner[0].stop)
            b[2], b[3] = min(b[2], inner[1].start), max(b[3], inner[1].stop)
    return labels, above, vals, where


def network_maps_to_proposals(
    net: NetworkMaps,
    image_size: tuple[int, int],
    classes: tuple[str, ...],
    info: ModelInfo,
    *,
    threshold: float,
    background: Optional[str] = None,
    min_area: int = 1,
    split_panes: bool = True,
    boundary_threshold: float = 0.5,
    min_seed_area: int = 0,
) -> list[Proposal]:
    """Proposals of ``net`` (maps at the network's resolution) for an image of
    ``image_size`` ``(H, W)``: what ``base.maps_to_proposals`` gives on the maps resized
    to ``(H, W)``, computed on the network's map and the regions' boxes only.

    Args:
        threshold: a pixel belongs to a class where its probability exceeds it.
        background: a class that yields no proposals.
        min_area: components with fewer full-resolution pixels are dropped.
        split_panes, boundary_threshold, min_seed_area: with ``net.boundary``, each
            class map is cut along ``boundary > boundary_threshold`` into panes
            (``split_regions`` on the network's map; ``min_seed_area`` is in image pixels,
            ``min_area`` when 0) before components are taken.

    Returns:
        Proposals, best score first.
    """
    maps = net.probs if net.probs is not None else net.logits
    assert maps is not None
    h, w = maps.shape[1:]
    if (h, w) != tuple(image_size) and net.probs is not None and image_size[0] * image_size[1] <= h * w:
        # an image no larger than the network's map: resizing the maps costs less than the
        # map itself, and the reference's own steps follow exactly
        size = (int(image_size[0]), int(image_size[1]))
        net = NetworkMaps(resize_maps(net.probs, size),
                          None if net.boundary is None else resize_maps(net.boundary[None], size)[0])
        maps = net.probs
        h, w = size
    ay, ax = _Axis(h, image_size[0]), _Axis(w, image_size[1])
    same = ay.same and ax.same
    cut = None
    if split_panes and net.boundary is not None:
        cut = net.boundary > boundary_threshold
    seed_cells = max(1, round((min_seed_area or min_area) * (h * w) / (image_size[0] * image_size[1])))
    out: list[Proposal] = []

    def emit(part: np.ndarray, vals: np.ndarray, x0: int, y0: int) -> None:
        out.extend(_crop_proposals(part, vals, x0, y0, to_prob, min_area, image_size, name, info))

    for ci, name in enumerate(classes):
        if name == background:
            continue
        values, thr, to_prob = _class_values(net, ci, threshold)
        # bilinear values never exceed the map's maximum: a class below the threshold
        # everywhere proposes nothing at any size
        if not float(values.max()) > thr:
            continue
        low = values > thr
        split = split_regions_with_seeds(low, cut, seed_cells) if cut is not None else None
        if same:
            if split is None:  # nothing to resize nor split: label the map once
                out.extend(_crop_proposals(low.view(np.uint8), values, 0, 0, to_prob, min_area, image_size, name,
                                           info, likely_one=False))
                continue
            panes = split[0]
            for k, cb in enumerate(_label_boxes(panes, int(panes.max()) + 1)):
                if k > 0 and cb[1] > cb[0]:
                    y0, y1, x0, x1 = (int(v) for v in cb)
                    emit((panes[y0:y1, x0:x1] == k).view(np.uint8), values[y0:y1, x0:x1], x0, y0)
            continue
        # regions: the cells above the threshold widened by one cell, so that they hold
        # every full-resolution pixel that can pass
        support = cv2.dilate(low.view(np.uint8), _CROSS)
        n, groups, stats = components(support)
        assert groups is not None
        zone: Optional[np.ndarray] = None
        if split is not None:
            panes, seeds, n_seeds = split
            # widened cells join the neighbouring pane with the highest label (labels < 2**24: exact in float32)
            grown = cv2.dilate(panes.astype(np.float32), _CROSS).astype(np.int32)
            panes = np.where(panes > 0, panes, np.where(support > 0, grown, 0))
            if int(panes.max()) < 65535:  # half the bytes to gather at full resolution
                panes = panes.astype(np.uint16)
            zone = _contested(panes, n_seeds, support)
            zoned = np.zeros(n, bool)
            zoned[groups[zone > 0]] = True
        boxes = np.zeros((n, 4), np.int64)
        for k in range(1, n):
            x, y, bw, bh = (int(v) for v in stats[k, :4])
            boxes[k] = _pixel_box((y, y + bh, x, x + bw), ay, ax)
        areas = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
        live = np.flatnonzero(areas >= max(1, min_area))
        live = live[live > 0]
        shared = np.zeros(n, bool)
        shared[live] = _overlapping(boxes[live])
        for k in live:
            box = tuple(int(v) for v in boxes[k])
            y0, y1, x0, x1 = box
            if zone is not None and zoned[k]:
                group = groups == k
                labels, above, vals, where = _split_group(values, thr, net.boundary, boundary_threshold, ay, ax,  # type: ignore[arg-type]
                                                   box, group, panes, seeds, zone)
                if shared[k]:  # pixels of another region's cells inside this box are that region's
                    above &= _nearest(group, ay, ax, box)
                for j, (a0, a1, b0, b1) in sorted(where.items()):
                    if a1 > a0 and b1 > b0:
                        part = (labels[a0:a1, b0:b1] == j) & above[a0:a1, b0:b1]
                        emit(part.view(np.uint8), vals[a0:a1, b0:b1], x0 + b0, y0 + a0)
                continue
            vals = resize_box(values, ay, ax, box)
            part = (vals > thr).view(np.uint8)
            if shared[k]:
                # another region's box reaches in: keep the pixels whose nearest cell is this region's
                part &= _nearest((groups == k).view(np.uint8), ay, ax, box)
            emit(part, vals, x0, y0)
    out.sort(key=lambda p: -p.score)
    return out
