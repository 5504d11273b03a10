"""IRNet's label synthesis on synthetic grids whose right answer is known by construction."""
from __future__ import annotations

import numpy as np

from inference import random_walk as rw


def _dense(stencil: rw.Stencil) -> np.ndarray:
    """The stencil as a dense ``(h w) x (h w)`` matrix (small grids only)."""
    h, w = stencil.shape
    out = np.zeros((h * w, h * w), np.float64)
    for (dy, dx), vals in zip(stencil.offsets, stencil.values):
        for y in range(h):
            for x in range(w):
                if vals[y, x] != 0:
                    out[y * w + x, (y + dy) * w + (x + dx)] += vals[y, x]
    return out


def test_stencil_matvec_equals_the_dense_matrix_product():
    rng = np.random.default_rng(0)
    boundary = rng.uniform(0, 1, (7, 9)).astype(np.float32)
    trans = rw.transition_matrix(rw.semantic_affinities(boundary, radius=3), beta=2.0)
    dense = _dense(trans)
    v = rng.uniform(0, 1, (7, 9)).astype(np.float32)
    assert np.allclose(trans.matvec(v).ravel(), dense @ v.ravel(), atol=1e-5)
    # rows of T sum to one (Eq. 12), and no entry points off the grid
    assert np.allclose(dense.sum(axis=1), 1.0, atol=1e-5)
    # a stack of maps is one product per map
    stack = rng.uniform(0, 1, (3, 7, 9)).astype(np.float32)
    assert np.allclose(trans.matvec(stack)[2], trans.matvec(stack[2]), atol=1e-6)


def test_affinity_is_one_minus_the_largest_boundary_on_the_line():
    boundary = np.zeros((9, 9), np.float32)
    boundary[4, 4] = 0.7
    aff = rw.semantic_affinities(boundary, radius=5)
    offsets = [tuple(o) for o in aff.offsets]
    across = aff.values[offsets.index((0, 4))][4, 2]  # (4, 2) -> (4, 6) crosses (4, 4)
    beside = aff.values[offsets.index((0, 4))][3, 2]  # one row up: does not cross it
    assert abs(across - 0.3) < 1e-6
    assert abs(beside - 1.0) < 1e-6
    assert aff.values[offsets.index((0, 4))][4, 6] == 0.0  # (4, 10) is off the grid
    assert all(o[0] ** 2 + o[1] ** 2 < 25 for o in offsets)


def test_random_walk_stays_on_its_side_of_a_boundary_wall():
    h, w = 40, 60
    boundary = np.zeros((h, w), np.float32)
    boundary[:, 29:31] = 1.0  # a wall two pixels thick, top to bottom
    seed = np.zeros((h, w), np.float32)
    seed[18:22, 8:12] = 1.0  # a small CAM blob on the left
    out = rw.propagate(seed[None], boundary)[0]
    out = out / out.max()
    left, right = out[:, :29], out[:, 31:]
    assert (left > 0.2).mean() > 0.9, (left > 0.2).mean()
    assert (right > 0.2).mean() < 0.01
    assert float(right.max()) < 1e-6  # with beta = 10 a wall of 1 passes nothing at all
    # without the wall the same seed reaches the right side
    free = rw.propagate(seed[None], np.zeros((h, w), np.float32))[0]
    free = free / free.max()
    assert (free[:, 31:] > 0.2).mean() > 0.9


def test_refinement_walks_short_vectors_on_to_the_centroid():
    h, w = 30, 30
    coords = rw.grid_coordinates((h, w))
    centre = np.array([12.0, 17.0], np.float32)[:, None, None]
    half = 0.5 * (centre - coords)  # every vector stops halfway
    refined = rw.refine_displacement(half, 100)
    landing = coords + refined
    assert float(np.abs(landing - centre).max()) <= 1.0
    assert float(np.abs(coords + half - centre).max()) > 5.0


def _two_blob_field(h: int = 40, w: int = 70):
    yy, xx = np.mgrid[0:h, 0:w]
    blobs = [((20, 18), 10), ((20, 50), 10)]
    field = np.zeros((2, h, w), np.float32)
    masks = []
    for (cy, cx), r in blobs:
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        masks.append(m)
        # 0.6 of the way, with noise: the network's field is never exact
        field[0][m] = 0.6 * (cy - yy[m])
        field[1][m] = 0.6 * (cx - xx[m])
    rng = np.random.default_rng(1)
    field += rng.normal(0, 0.3, field.shape).astype(np.float32) * (masks[0] | masks[1])
    return field, masks


def test_centroids_separate_two_blobs_into_two_instances():
    field, (a, b) = _two_blob_field()
    labels = rw.instance_map(field, region=a | b)
    la = np.bincount(labels[a]).argmax()
    lb = np.bincount(labels[b]).argmax()
    assert la != lb
    assert (labels[a] == la).mean() > 0.95
    assert (labels[b] == lb).mean() > 0.95


def test_instance_wise_propagation_gives_one_mask_per_blob():
    h, w = 40, 70
    field, (a, b) = _two_blob_field(h, w)
    # the blobs touch through a band of CAM: without the displacement field they are one instance
    cams = np.zeros((1, h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    cams[0][((yy - 20) ** 2 + (xx - 18) ** 2) <= 16] = 1.0
    cams[0][((yy - 20) ** 2 + (xx - 50) ** 2) <= 16] = 0.8
    cams[0][19:22, 18:51] = np.maximum(cams[0][19:22, 18:51], 0.3)
    boundary = np.ones((h, w), np.float32)
    boundary[a | b] = 0.0
    boundary[19:22, 28:41] = 0.0  # the band joins them: only the displacement tells them apart
    scores, keys = rw.irnet_instances(cams, boundary, field, [0])
    inst = rw.labels_to_instances(rw.assign_labels(scores), keys, cams)
    found = [inst.labels == k for k in range(1, len(inst.classes) + 1)]
    best_a = max(found, key=lambda m: (m & a).sum())
    best_b = max(found, key=lambda m: (m & b).sum())
    assert best_a is not best_b
    for m, truth in ((best_a, a), (best_b, b)):
        iou = (m & truth).sum() / (m | truth).sum()
        assert iou > 0.7, iou
    assert all(c == 0 for c in inst.classes)
    assert all(0.0 <= s <= 1.0 for s in inst.scores)
    # with one instance per class (CAM + class boundary) the band merges them
    scores1, keys1 = rw.irnet_instances(cams, boundary, field, [0], use_displacement=False)
    one = rw.labels_to_instances(rw.assign_labels(scores1), keys1, cams)
    assert len(one.classes) < len(inst.classes)


def test_pool_to_grid_keeps_a_thin_line():
    maps = np.zeros((1, 16, 16), np.float32)
    maps[0, :, 5] = 1.0  # one pixel wide
    grid = rw.pool_to_grid(maps, 4)
    assert grid.shape == (1, 4, 4)
    assert np.all(grid[0, :, 1] == 1.0) and np.all(grid[0, :, 0] == 0.0)
