"""The store's read-only queries behind the images panel's filters: which images hold a
class, and which have a waiting proposal scoring within a range."""
from __future__ import annotations

import pytest

from annotation.document import Instance, InstanceState
from annotation.mask import Mask
from annotation.store import ProjectStore

SIZE = (30, 40)


def _mask() -> Mask:
    m = Mask.empty(SIZE)
    m.paint_disk(20, 15, 4)
    return m


@pytest.fixture
def filled(tmp_path):
    """A store of five images (a-e) with instances of two classes in every state; yields
    the store and the image ids."""
    root = tmp_path / "project"
    root.mkdir()
    with ProjectStore.open(root, scan=False) as st:
        ids = [st.add_image(f"virtual/{i}.png", *SIZE) for i in range(5)]
        a, b, c, d, e = ids
        P, A, R = InstanceState.PROPOSED, InstanceState.ACCEPTED, InstanceState.REJECTED
        st.add_instances([
            Instance(a, "glass", _mask(), A),
            Instance(a, "mirror", _mask(), P, origin="m@1", score=0.9),
            Instance(b, "glass", _mask(), R, origin="m@1", score=0.95),  # rejected: no glass here
            Instance(b, "mirror", _mask(), P, origin="m@1", score=0.3),
            Instance(c, "glass", _mask(), P, origin="m@1", score=0.5),
            Instance(d, "mirror", _mask(), A, origin="m@1", score=0.7),  # accepted: not waiting
            Instance(d, "glass", _mask(), P, origin="m@1"),  # no score: in no range
        ])
        yield st, ids


def test_images_with_a_class_ignore_rejected_instances(filled) -> None:
    store, (a, b, c, d, e) = filled
    assert store.image_ids_with_class("glass") == {a, c, d}
    assert store.image_ids_with_class("mirror") == {a, b, d}
    assert store.image_ids_with_class("glass-in-mirror") == set()
    # one image at a time (after an action on it)
    assert store.image_ids_with_class("glass", image_id=a) == {a}
    assert store.image_ids_with_class("glass", image_id=b) == set()
    assert store.image_ids_with_class("glass", image_id=e) == set()


def test_images_with_a_proposal_in_a_score_range(filled) -> None:
    store, (a, b, c, d, e) = filled
    assert store.image_ids_with_proposal_score(0.0, 1.0) == {a, b, c}  # d's accepted and unscored do not count
    assert store.image_ids_with_proposal_score(0.5, 0.9) == {a, c}  # both ends included
    assert store.image_ids_with_proposal_score(0.6, 0.89) == set()
    assert store.image_ids_with_proposal_score(0.0, 0.4) == {b}
    assert store.image_ids_with_proposal_score(0.0, 1.0, image_id=b) == {b}
    assert store.image_ids_with_proposal_score(0.0, 0.4, image_id=a) == set()


def test_queries_follow_state_and_class_changes(filled) -> None:
    store, (a, b, c, d, e) = filled
    glass_c = store.instances(c)[0]
    store.set_states([glass_c.id], InstanceState.REJECTED)
    assert store.image_ids_with_class("glass") == {a, d}
    assert c not in store.image_ids_with_proposal_score(0.0, 1.0)
    mirror_b = next(i for i in store.instances(b) if i.class_name == "mirror")
    store.set_class([mirror_b.id], "glass")
    assert store.image_ids_with_class("glass") == {a, b, d}
    assert store.image_ids_with_class("mirror") == {a, d}
