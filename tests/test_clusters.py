"""The clustered yes/no review's logic (004, chapter 3) on embeddings of known structure."""
from __future__ import annotations

import numpy as np
import pytest

from annotation.clusters import ClusterReview


def _two_groups(n: int = 12, seed: int = 0) -> tuple[list[tuple[int, str, np.ndarray]], set[int], set[int]]:
    rng = np.random.default_rng(seed)
    items, good, bad = [], set(), set()
    for k in range(2 * n):
        centre = 0.0 if k < n else 10.0
        items.append((100 + k, "glass", rng.normal(centre, 0.3, 8)))
        (good if k < n else bad).add(100 + k)
    return items, good, bad


def test_clusters_group_similar_embeddings_and_one_answer_per_cluster_propagates():
    items, good, bad = _two_groups()
    review = ClusterReview(items, target_size=12, representatives=3)
    groups = [set(c.members) for c in review.clusters.values()]
    assert sorted(map(len, groups)) == [12, 12]
    assert good in groups and bad in groups

    while (c := review.current()) is not None:
        for r in review.pending(c):
            review.answer(r, r in good)
    assert {i for i, yes in review.decided.items() if yes} == good
    assert {i for i, yes in review.decided.items() if not yes} == bad
    assert review.questions == 6  # three per cluster for 24 proposals


def test_a_disagreeing_cluster_splits_until_its_parts_agree():
    items, good, bad = _two_groups()
    # one class, and a cut so coarse that good and bad share the first cluster
    review = ClusterReview(items, target_size=100, representatives=3)
    first = review.current()
    assert first is not None and len(first.members) == 24
    split = []
    while (c := review.current()) is not None:
        for r in review.pending(c):
            out = review.answer(r, r in good)
            split.extend(out.split)
    assert split, "the representatives disagreed, so the cluster must split"
    assert {s.parent for s in split} >= {first.id}
    assert {i for i, yes in review.decided.items() if yes} == good
    assert {i for i, yes in review.decided.items() if not yes} == bad
    assert review.questions < 24  # fewer questions than one per proposal


def test_whole_cluster_decision_and_undo_bring_proposals_back():
    items, good, _bad = _two_groups()
    review = ClusterReview(items, target_size=12)
    c = review.current()
    out = review.decide(c.id, True)
    assert sorted(out.accept) == sorted(c.members) and out.finished is c
    assert review.current() is not c
    review.sync({i: y for i, y in review.decided.items() if i not in out.accept})  # as after an undo
    assert review.current() is c and review.undecided(c) == c.members


def test_classes_are_clustered_apart_and_bad_input_is_refused():
    rng = np.random.default_rng(1)
    items = [(i, "glass" if i % 2 else "mirror", rng.normal(0, 1, 4)) for i in range(10)]
    review = ClusterReview(items, target_size=3)
    for c in review.clusters.values():
        assert len({i % 2 for i in c.members}) == 1
    with pytest.raises(ValueError, match="different lengths"):
        ClusterReview([(1, "glass", np.zeros(3)), (2, "glass", np.zeros(4))])
    with pytest.raises(KeyError):
        review.answer(99, True)


def test_no_cluster_is_larger_than_the_target_size_even_beside_far_small_groups():
    """Four small groups far apart and one large compact one: cutting into n / 12 nodes by
    height kept the large group whole (30 proposals, 3 representatives); the cut splits
    every node above the target size."""
    rng = np.random.default_rng(3)
    blobs = [(30, 0.0), (8, 40.0), (8, -40.0), (7, 80.0), (6, -80.0)]
    items, iid = [], 0
    for n, centre in blobs:
        for _ in range(n):
            items.append((iid, "glass", rng.normal(centre, 1.0, 6).astype(np.float32)))
            iid += 1
    review = ClusterReview(items, target_size=12)
    sizes = sorted(len(review.clusters[c].members) for c in review.queue)
    assert sum(sizes) == 59 and max(sizes) <= 12, sizes
    for seed in range(5):  # and on shapeless data
        r = np.random.default_rng(seed)
        review = ClusterReview([(i, "c", r.normal(0, 1, 4)) for i in range(int(r.integers(2, 80)))], target_size=7)
        assert max(len(review.clusters[c].members) for c in review.queue) <= 7
