"""Proposal embeddings: made by the pipelines, stored with the proposal, read back, checked
at the edge; and clustering a real project's proposals by them."""
from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from annotation.document import Instance, InstanceState
from annotation.mask import Mask
from annotation.store import DB_NAME, ProjectStore
from annotation.store_queries import decode_embedding, encode_embedding

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data"))


def _store(tmp_path: Path) -> ProjectStore:
    import cv2

    root = tmp_path / "p"
    root.mkdir()
    cv2.imwrite(str(root / "a.png"), np.full((40, 50, 3), 90, np.uint8))
    return ProjectStore.open(root)


def test_embeddings_round_trip_follow_deletes_and_bad_vectors_are_left_out(tmp_path):
    store = _store(tmp_path)
    img = store.images()[0]
    vec = np.linspace(-3, 3, 42).astype(np.float32)
    mask = Mask.from_box_array(2, 3, np.ones((5, 6), bool), (40, 50))
    with_vec = Instance(img.id, "glass", mask, InstanceState.PROPOSED, "m@1", 0.9, embedding=vec)
    without = Instance(img.id, "glass", mask.copy(), InstanceState.PROPOSED, "m@1", 0.5)
    a, b = store.add_instances([with_vec, without])
    got = store.embeddings()
    assert set(got) == {a}
    assert np.allclose(got[a], vec, atol=2e-3)  # float16 on disk
    assert store.instances()[0].embedding is None  # reading instances never drags vectors along
    # a corrupt row (odd length, NaN) is left out, not an error
    store._db.execute("INSERT INTO embeddings VALUES(?, ?)", (b, b"\x00\x7e\x00\x7e"))  # two float16 NaNs
    assert set(store.embeddings([a, b])) == {a}
    with store.transaction():
        store.delete_instances(img.id, [InstanceState.PROPOSED])
    assert store._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 0
    store.close()
    with pytest.raises(ValueError):
        encode_embedding(np.array([1.0, np.inf]))
    with pytest.raises(ValueError):
        decode_embedding(b"\x00" * 3)


def test_a_version_4_project_gains_the_embeddings_table(tmp_path):
    from annotation.schema import MIGRATIONS

    root = tmp_path / "old"
    root.mkdir()
    db = sqlite3.connect(root / DB_NAME, isolation_level=None)
    db.execute("BEGIN")
    for migrate in MIGRATIONS[:4]:
        migrate(db)
    db.execute("PRAGMA user_version=4")
    db.execute("COMMIT")
    db.close()
    with ProjectStore.open(root) as store:
        assert store.schema_version >= 5  # and on to the newest
        assert store.embeddings() == {}


@pytest.mark.slow
def test_real_proposals_carry_features_and_cluster_by_them(tmp_path):
    """The shipped glass model on real GDD photos: every proposal gets an embedding with
    the decoder's features, ``store_proposals`` keeps it, and the clusters group them."""
    from annotation.clusters import ClusterReview
    from annotation.palette import builtin_palette
    from inference.embedding import SHAPE_DIMS
    from inference.engine import Engine
    from inference.propose import propose_project
    from inference.registry import Registry

    src = DATA / "glass-gdd" / "image"
    assert src.is_dir(), f"data set missing: {src} (set SPECULA_DATA)"
    root = tmp_path / "gdd"
    root.mkdir()
    for p in sorted(src.glob("*.jpg"))[:12]:
        shutil.copy(p, root / p.name)
    with ProjectStore.open(root, palette=builtin_palette("mirror-glass")) as store:
        propose_project(store, Engine(Registry.default(), device="cpu"), "mirror-glass-semantic")
        proposals = store.instances(states=[InstanceState.PROPOSED])
        vectors = store.embeddings([p.id for p in proposals])
    assert len(proposals) >= 12
    assert set(vectors) == {p.id for p in proposals}
    lengths = {v.size for v in vectors.values()}
    assert lengths == {SHAPE_DIMS + 32}, lengths  # statistics + the decoder's 32 channels
    for p in proposals:  # the statistics are the proposal's own: its score first
        assert abs(float(vectors[p.id][0]) - p.score) < 2e-3

    review = ClusterReview([(p.id, p.class_name, vectors[p.id]) for p in proposals], target_size=4)
    clusters = list(review.clusters.values())
    assert 1 < len(clusters) < len(proposals)
    assert sorted(m for c in clusters for m in c.members) == sorted(p.id for p in proposals)
    # members of one cluster are closer to each other than to the rest (what grouping means)
    from annotation.clusters import standardise

    ids = [p.id for p in proposals]
    std = dict(zip(ids, standardise(np.stack([vectors[i] for i in ids]))))
    within, between = [], []
    for c in clusters:
        for i in c.members:
            for j in ids:
                if j != i:
                    (within if j in c.members else between).append(float(np.linalg.norm(std[i] - std[j])))
    assert np.mean(within) < 0.8 * np.mean(between)
