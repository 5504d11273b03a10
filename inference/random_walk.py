"""IRNet's label synthesis (seed 002, sections 4.4 and 5) in plain numpy.

Everything here works on IRNet's downsampled grid (the network's boundary and
displacement outputs, stride 4 of the photo by default): maps are ``(h, w)`` or
``(K, h, w)`` float32 arrays, a displacement field is ``(2, h, w)`` float32 in grid
pixels, channel 0 the row (y, down) offset and channel 1 the column (x, right) offset.

**Sparse matrices as stencils.** The affinity matrix ``A`` of the paper is
``(h w) x (h w)`` but non-zero only between pixels closer than ``radius``: in the
row-major vectorisation, pixel ``p`` and ``p + (dy, dx)`` sit on the diagonal
``dy * w + dx``. So ``A`` is a handful of diagonals, and each is stored as one
``(h, w)`` array (``Stencil.values[k]``: the entry between ``p`` and ``p + offsets[k]``,
zero where ``p + offsets[k]`` leaves the image, which is what keeps the flattened
diagonal from wrapping onto the next row). A matrix-vector product is then a sum of
shifted arrays, ``(T v)(p) = sum_k T_k(p) v(p + o_k)``: no scipy (not a dependency of
Specula), no index arrays, and every step is a vectorised numpy operation over the
whole grid (and over a stack of maps at once). The random walk is ``t`` such products.

Connected components use OpenCV, which the inference layer already depends on.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

INFERENCE_RADIUS = 5  # 002: pairs within 5 grid pixels at inference ("conservative propagation")
TRAINING_RADIUS = 10  # 002: within 10 for training
BETA = 10.0  # 002: Hadamard power of the affinities (Eq. 12)
WALK_ITERATIONS = 256  # 002: t in Eq. 13
REFINE_ITERATIONS = 100  # 002: updates of the displacement field (Eq. 10)
CENTROID_THRESHOLD = 2.5  # grid pixels: a displacement this short marks a candidate centroid
SEED_THRESHOLD = 0.05  # 002: CAM scores below this are confident background
BACKGROUND_THRESHOLD = 0.25  # 002: a pixel whose best propagated score is below this is background


def pair_offsets(radius: float, *, half: bool = False, include_self: bool = False) -> np.ndarray:
    """``(K, 2)`` int ``(dy, dx)`` offsets with ``0 < dy^2 + dx^2 < radius^2`` (002, Eq. 2).

    ``half``: one offset of each pair ``(o, -o)`` (``dy > 0``, or ``dy == 0`` and ``dx > 0``):
    training needs every unordered pair once. ``include_self`` puts ``(0, 0)`` first.
    """
    r = int(np.ceil(radius))
    out = [(0, 0)] if include_self else []
    for dy in range(-r + 1 if not half else 0, r):
        for dx in range(-r + 1, r):
            if dy == 0 and dx == 0:
                continue
            if half and dy == 0 and dx < 0:
                continue
            if dy * dy + dx * dx < radius * radius:
                out.append((dy, dx))
    return np.asarray(out, np.int64).reshape(-1, 2)


def line_points(dy: int, dx: int) -> list[tuple[int, int]]:
    """The grid pixels on the segment from ``(0, 0)`` to ``(dy, dx)``, both ends included:
    ``max(|dy|, |dx|) + 1`` evenly spaced points, rounded (the set ``Pi_ij`` of Eq. 7)."""
    n = max(abs(int(dy)), abs(int(dx)))
    if n == 0:
        return [(0, 0)]
    pts = []
    for s in range(n + 1):
        p = (round(dy * s / n), round(dx * s / n))
        if not pts or pts[-1] != p:
            pts.append(p)
    return pts


def shifted(a: np.ndarray, dy: int, dx: int, fill: float = 0.0) -> np.ndarray:
    """``out[..., y, x] = a[..., y + dy, x + dx]``, ``fill`` where that leaves the array."""
    h, w = a.shape[-2:]
    out = np.full(a.shape, fill, a.dtype)
    ys, yd = (slice(dy, h), slice(0, h - dy)) if dy >= 0 else (slice(0, h + dy), slice(-dy, h))
    xs, xd = (slice(dx, w), slice(0, w - dx)) if dx >= 0 else (slice(0, w + dx), slice(-dx, w))
    out[..., yd, xd] = a[..., ys, xs]
    return out


def inside(shape: tuple[int, int], dy: int, dx: int) -> np.ndarray:
    """``(h, w)`` bool: where ``p + (dy, dx)`` is still on the grid."""
    h, w = shape
    ok = np.zeros((h, w), bool)
    ok[max(0, -dy): h - max(0, dy), max(0, -dx): w - max(0, dx)] = True
    return ok


@dataclass
class Stencil:
    """A sparse ``(h w) x (h w)`` matrix stored by diagonals (see the module docstring).

    ``offsets``: ``(K, 2)`` int ``(dy, dx)``; ``values``: ``(K, h, w)`` float32, ``values[k][p]``
    the entry of row ``p``, column ``p + offsets[k]`` (zero off the grid).
    """

    offsets: np.ndarray
    values: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.values.shape[1]), int(self.values.shape[2])

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """``M v`` for a map ``(h, w)`` or a stack of maps ``(N, h, w)`` (one product each).

        The maps are padded once by the stencil's reach, then each diagonal adds its
        values times a shifted view of the padded maps: no copies per offset.
        """
        h, w = self.shape
        r = int(np.abs(self.offsets).max()) if len(self.offsets) else 0
        pad = [(0, 0)] * (v.ndim - 2) + [(r, r), (r, r)]
        vp = np.pad(v.astype(np.float32, copy=False), pad)
        out = np.zeros(v.shape, np.float32)
        for (dy, dx), coef in zip(self.offsets, self.values):
            out += coef * vp[..., r + dy: r + dy + h, r + dx: r + dx + w]
        return out

    def row_sums(self) -> np.ndarray:
        """``(h, w)``: the sum of each row (each pixel's outgoing weights)."""
        return self.values.sum(axis=0)


def line_max(boundary: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``(K, h, w)``: for each offset ``o`` and pixel ``p``, the largest boundary value on the
    segment from ``p`` to ``p + o`` (``max_{k in Pi_ij} B(x_k)`` of Eq. 7); 1 off the grid."""
    b = np.asarray(boundary, np.float32)
    shifts: dict[tuple[int, int], np.ndarray] = {}
    out = np.empty((len(offsets),) + b.shape, np.float32)
    for k, (dy, dx) in enumerate(offsets):
        m = np.zeros(b.shape, np.float32)
        for p in line_points(int(dy), int(dx)):
            s = shifts.get(p)
            if s is None:
                s = shifts[p] = shifted(b, p[0], p[1], fill=1.0)
            np.maximum(m, s, out=m)
        out[k] = m
    return out


def semantic_affinities(boundary: np.ndarray, radius: float = INFERENCE_RADIUS) -> Stencil:
    """002's Eq. 7 as a stencil: ``a_ij = 1 - max boundary on the line between i and j`` for
    every pair closer than ``radius`` grid pixels; ``a_ii = 1`` (a pixel is of its own class,
    and keeps every row of ``T`` well defined, even a boundary pixel's whose neighbours are
    all cut off); zero for pairs that leave the grid.

    ``boundary``: ``(h, w)`` class boundary probability in [0, 1].
    """
    b = np.clip(np.asarray(boundary, np.float32), 0.0, 1.0)
    offsets = pair_offsets(radius, include_self=True)
    values = 1.0 - line_max(b, offsets)
    values[0] = 1.0
    for k, (dy, dx) in enumerate(offsets):
        values[k][~inside(b.shape, int(dy), int(dx))] = 0.0
    return Stencil(offsets, np.clip(values, 0.0, 1.0))


def transition_matrix(affinity: Stencil, beta: float = BETA) -> Stencil:
    """``T = S^-1 A^beta`` (002, Eq. 12): each affinity to the power ``beta`` (a weak
    affinity, i.e. a likely boundary, counts for almost nothing), rows normalised to one."""
    powered = np.power(affinity.values, np.float32(beta), dtype=np.float32)
    sums = powered.sum(axis=0)
    sums[sums <= 0] = 1.0
    return Stencil(affinity.offsets, powered / sums[None])


def random_walk(transition: Stencil, maps: np.ndarray, iterations: int = WALK_ITERATIONS) -> np.ndarray:
    """``vec(M*) = T^t vec(M)`` (002, Eq. 13) for a map ``(h, w)`` or a stack ``(N, h, w)``.

    Each step replaces a pixel's score by the affinity-weighted mean of its neighbours'
    scores, so scores spread within regions and stop at class boundaries.
    """
    v = np.asarray(maps, np.float32)
    for _ in range(int(iterations)):
        v = transition.matvec(v)
    return v


def propagate(maps: np.ndarray, boundary: np.ndarray, *, radius: float = INFERENCE_RADIUS, beta: float = BETA,
              iterations: int = WALK_ITERATIONS) -> np.ndarray:
    """Random-walk propagation of score maps within the class boundaries (002, Eq. 12-13).

    ``maps``: ``(N, h, w)`` (or ``(h, w)``) scores on the grid; ``boundary``: ``(h, w)``.
    The maps are first multiplied by ``1 - boundary`` (Eq. 13: a boundary pixel is cut off
    from its neighbours and would otherwise keep an unduly high score).
    """
    trans = transition_matrix(semantic_affinities(boundary, radius), beta)
    start = np.asarray(maps, np.float32) * (1.0 - np.clip(np.asarray(boundary, np.float32), 0.0, 1.0))
    return random_walk(trans, start, iterations)


# --------------------------------------------------------------------------- instances


def grid_coordinates(shape: tuple[int, int]) -> np.ndarray:
    """``(2, h, w)`` float32: each pixel's own ``(y, x)``."""
    ys, xs = np.mgrid[0: shape[0], 0: shape[1]]
    return np.stack([ys, xs]).astype(np.float32)


def refine_displacement(displacement: np.ndarray, iterations: int = REFINE_ITERATIONS) -> np.ndarray:
    """002's Eq. 10: ``D_{u+1}(x) = D_u(x) + D(x + D_u(x))``, ``D_0 = D``.

    A network's vectors fall short of or overshoot the centroid; adding the vector found
    where the current estimate lands walks every pixel on towards the point where the
    field vanishes (the centroid). Landing points are rounded to the nearest grid pixel
    and kept on the grid. Returns the refined ``(2, h, w)`` field.
    """
    d = np.asarray(displacement, np.float32)
    h, w = d.shape[1:]
    base = grid_coordinates((h, w))
    cur = d.copy()
    for _ in range(int(iterations)):
        land = base + cur
        ly = np.clip(np.rint(land[0]), 0, h - 1).astype(np.int64)
        lx = np.clip(np.rint(land[1]), 0, w - 1).astype(np.int64)
        step = d[:, ly, lx]
        cur = cur + step
        if float(np.abs(step).max(initial=0.0)) < 1e-3:
            break  # every pixel has reached a point whose displacement is nil
    return cur


def centroid_candidates(displacement: np.ndarray, threshold: float = CENTROID_THRESHOLD) -> tuple[int, np.ndarray]:
    """Candidate centroids (002, section 5.1): pixels whose displacement is shorter than
    ``threshold`` grid pixels, grouped into connected components (a centroid is a small
    group of pixels, not one coordinate, since refined estimates stay scattered).

    Returns ``(n, labels)``: ``labels`` ``(h, w)`` int32, 1..n on candidates, 0 elsewhere.
    """
    mag = np.hypot(displacement[0], displacement[1])
    n, labels = cv2.connectedComponents((mag < threshold).astype(np.uint8), connectivity=4)
    return int(n) - 1, labels.astype(np.int32)


def instance_map(displacement: np.ndarray, *, iterations: int = REFINE_ITERATIONS,
                 threshold: float = CENTROID_THRESHOLD, region: np.ndarray | None = None) -> np.ndarray:
    """The class-agnostic instance map ``I`` (002, section 5.1): each pixel's refined
    displacement is followed to its centroid, and pixels landing on the same centroid
    share a label.

    ``region``: optional ``(h, w)`` bool; centroid candidates are looked for only there
    (the foreground the CAMs can reach: background pixels, taught to share one
    displacement, would otherwise form one big centroid of their own that swallows
    what lands near it). A pixel landing off every candidate joins the nearest one.
    Returns ``(h, w)`` int32 labels ``1..K`` (all 1 when no candidate exists).
    """
    d = np.asarray(displacement, np.float32)
    h, w = d.shape[1:]
    n, cand = centroid_candidates(d, threshold)
    if region is not None:
        keep = np.zeros(n + 1, bool)
        keep[np.unique(cand[np.asarray(region, bool) & (cand > 0)])] = True
        keep[0] = False
        relabel = np.zeros(n + 1, np.int32)
        relabel[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        cand, n = relabel[cand], int(keep.sum())
    if n == 0:
        return np.ones((h, w), np.int32)
    refined = refine_displacement(d, iterations)
    land = grid_coordinates((h, w)) + refined
    ly = np.clip(np.rint(land[0]), 0, h - 1).astype(np.int64)
    lx = np.clip(np.rint(land[1]), 0, w - 1).astype(np.int64)
    # the nearest candidate of every grid pixel (the pixel itself on a candidate)
    _, nearest = cv2.distanceTransformWithLabels((cand == 0).astype(np.uint8), cv2.DIST_L2, 5,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
    on = cand > 0
    lut = np.zeros(int(nearest.max()) + 1, np.int32)
    lut[nearest[on]] = cand[on]
    owner = lut[nearest]
    return owner[ly, lx].astype(np.int32)


@dataclass
class GridInstances:
    """Instances on the grid: ``labels`` ``(h, w)`` int32 (0 background, ``1..K``),
    ``classes[k - 1]`` the class index of instance ``k`` and ``scores[k - 1]`` its score."""

    labels: np.ndarray
    classes: list[int]
    scores: list[float]


def instance_cams(cams: np.ndarray, instances: np.ndarray, class_indices: Sequence[int],
                  seed_threshold: float = 0.0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """002's Eq. 11: ``M_ck = M_c`` on instance ``k``, 0 elsewhere, for every class in
    ``class_indices`` and every instance where the class's CAM exceeds ``seed_threshold``
    (an instance holding only traces of the CAM would be one more map to walk for nothing).

    Returns ``(maps (N, h, w), [(class index, instance label)] * N)``.
    """
    maps, keys = [], []
    for c in class_indices:
        cam = cams[c]
        for k in np.unique(instances[cam > seed_threshold]):
            m = np.where(instances == k, cam, 0.0).astype(np.float32)
            maps.append(m)
            keys.append((int(c), int(k)))
    h, w = instances.shape
    return (np.stack(maps) if maps else np.zeros((0, h, w), np.float32)), keys


def normalise_per_class(maps: np.ndarray, keys: Sequence[tuple[int, int]]) -> np.ndarray:
    """Divide every map by the largest score of its class over all its maps, so the
    background threshold means the same for every class (scores of one class stay
    comparable between its instances)."""
    out = np.asarray(maps, np.float32).copy()
    for c in {k[0] for k in keys}:
        idx = [i for i, k in enumerate(keys) if k[0] == c]
        top = float(out[idx].max()) if idx else 0.0
        if top > 0:
            out[idx] /= top
    return out


def assign_labels(scores: np.ndarray, bg_threshold: float = BACKGROUND_THRESHOLD) -> np.ndarray:
    """Each pixel takes the map with the highest score, or background (0) when that score
    is below ``bg_threshold`` (002, section 5.2). ``scores`` ``(N, h, w)``; returns
    ``(h, w)`` int32 in ``0..N``."""
    if scores.shape[0] == 0:
        return np.zeros(scores.shape[1:], np.int32)
    best = scores.argmax(axis=0).astype(np.int32) + 1
    best[scores.max(axis=0) < bg_threshold] = 0
    return best


def irnet_instances(cams: np.ndarray, boundary: np.ndarray, displacement: np.ndarray,
                    class_indices: Sequence[int], *, radius: float = INFERENCE_RADIUS, beta: float = BETA,
                    iterations: int = WALK_ITERATIONS, refine_iterations: int = REFINE_ITERATIONS,
                    centroid_threshold: float = CENTROID_THRESHOLD, seed_threshold: float = SEED_THRESHOLD,
                    use_displacement: bool = True) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """002's section 5: CAMs + boundary map + displacement field -> propagated instance scores.

    ``cams``: ``(C, h, w)`` in [0, 1] on the grid; ``boundary`` ``(h, w)``; ``displacement``
    ``(2, h, w)``. With ``use_displacement`` False every class is one instance (the "CAM +
    class boundary" row of 002's Table 1). Centroids are looked for, and instance-wise CAMs
    made, only where a CAM exceeds ``seed_threshold`` (002's confident-background cut). Returns ``(scores (N, h, w), keys)``: the
    propagated instance-wise CAMs, normalised per class, and ``(class, instance)`` of each.
    """
    if use_displacement:
        region = np.zeros(boundary.shape, bool)
        for c in class_indices:
            region |= cams[c] > seed_threshold
        inst = instance_map(displacement, iterations=refine_iterations, threshold=centroid_threshold,
                            region=region if region.any() else None)
    else:
        inst = np.ones(boundary.shape, np.int32)
    maps, keys = instance_cams(cams, inst, class_indices, seed_threshold)
    if not keys:
        return maps, keys
    walked = propagate(maps, boundary, radius=radius, beta=beta, iterations=iterations)
    return normalise_per_class(walked, keys), keys


def labels_to_instances(labels: np.ndarray, keys: Sequence[tuple[int, int]], cams: np.ndarray) -> GridInstances:
    """Split the label image of ``assign_labels`` into connected instances with classes and
    scores: the score of an instance is the largest CAM value of its class inside it (002,
    section 6.2: "the maximum class score within its mask")."""
    out = np.zeros(labels.shape, np.int32)
    classes: list[int] = []
    scores: list[float] = []
    for idx in range(1, len(keys) + 1):
        sel = labels == idx
        if not sel.any():
            continue
        n, comp = cv2.connectedComponents(sel.astype(np.uint8), connectivity=8)
        c = keys[idx - 1][0]
        for j in range(1, int(n)):
            part = comp == j
            out[part] = len(classes) + 1
            classes.append(c)
            scores.append(float(np.clip(cams[c][part].max(), 0.0, 1.0)))
    return GridInstances(out, classes, scores)


def pool_to_grid(maps: np.ndarray, stride: int) -> np.ndarray:
    """``(C, H, W)`` full-resolution maps -> ``(C, ceil(H / s), ceil(W / s))`` by the maximum of
    each ``s x s`` cell: a crack two pixels wide is a quarter of a stride-4 cell, and an
    average would cut its score by that much, the maximum keeps it."""
    c, h, w = maps.shape
    s = int(stride)
    gh, gw = -(-h // s), -(-w // s)
    padded = np.zeros((c, gh * s, gw * s), np.float32)
    padded[:, :h, :w] = maps
    return padded.reshape(c, gh, s, gw, s).max(axis=(2, 4))
