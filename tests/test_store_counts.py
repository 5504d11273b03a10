"""Instance counts cached on the image rows (schema 3): kept exact by triggers, whoever writes."""
from __future__ import annotations

import random
import sqlite3

import numpy as np
import pytest

from annotation import rle as rle_codec
from annotation.document import Instance, InstanceState
from annotation.mask import Mask
from annotation.schema import MIGRATIONS, SCHEMA_VERSION
from annotation.store import DB_NAME, ProjectStore, StoreError

STATES = [s.value for s in InstanceState]
SIZE = (40, 50)


def _mask(rng: random.Random) -> Mask:
    m = Mask.empty(SIZE)
    m.paint_disk(rng.randrange(5, 45), rng.randrange(5, 35), rng.randrange(1, 5))
    return m


def _recount(path) -> dict[int, dict[str, int]]:
    """The counts as the desktop computed them before schema 3: a GROUP BY over every instance."""
    db = sqlite3.connect(path)
    try:
        out: dict[int, dict[str, int]] = {}
        for image_id, state, n in db.execute("SELECT image_id, state, COUNT(*) FROM instances GROUP BY image_id, state"):
            out.setdefault(image_id, {})[state] = n
        return out
    finally:
        db.close()


def _assert_counts_exact(store: ProjectStore) -> None:
    expected = _recount(store.root / DB_NAME)
    assert store.instance_counts() == expected
    for rec in store.images():
        want = {s: expected.get(rec.id, {}).get(s, 0) for s in STATES}
        assert store.image_counts(rec.id) == want
        assert (rec.n_proposed, rec.n_accepted, rec.n_rejected) == (want["proposed"], want["accepted"], want["rejected"])
    assert store.totals() == {s: sum(c.get(s, 0) for c in expected.values()) for s in STATES}


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    with ProjectStore.open(root, scan=False) as st:
        for i in range(4):
            st.add_image(f"virtual/{i}.png", *SIZE)
        yield st


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counts_equal_a_recount_after_random_edits(store: ProjectStore, seed: int) -> None:
    rng = random.Random(seed)
    image_ids = [r.id for r in store.images()]
    # a second writer on the same file, as another process (or a raw SQL fix) would be:
    # the counts must stay right without the store's methods being involved
    raw = sqlite3.connect(store.root / DB_NAME, isolation_level=None, timeout=5)
    raw.execute("PRAGMA foreign_keys=ON")
    ops = ["add", "add", "add_many", "delete", "delete_ids", "delete_states", "set_state", "set_states",
           "update", "move", "raw_insert", "raw_state", "rollback"]
    try:
        for step in range(150):
            ids = [i.id for i in store.instances()]
            op = rng.choice(ops)
            if op in ("delete", "delete_ids", "set_state", "set_states", "update", "move", "raw_state") and not ids:
                op = "add"
            if op == "add":
                store.add_instance(Instance(rng.choice(image_ids), "mirror", _mask(rng), state=rng.choice(STATES)))
            elif op == "add_many":
                store.add_instances(
                    [Instance(rng.choice(image_ids), "glass", _mask(rng), state=rng.choice(STATES)) for _ in range(3)]
                )
            elif op == "delete":
                store.delete_instance(rng.choice(ids))
            elif op == "delete_ids":
                store.delete_instance_ids(rng.sample(ids, min(len(ids), 3)))
            elif op == "delete_states":
                store.delete_instances(rng.choice(image_ids), rng.sample(STATES, 2), keep=ids[:1])
            elif op == "set_state":
                store.set_state(rng.choice(ids), rng.choice(STATES))
            elif op == "set_states":
                assert store.set_states(rng.sample(ids, min(len(ids), 4)), rng.choice(STATES)) == min(len(ids), 4)
            elif op == "update":
                inst = store.instance(rng.choice(ids))
                inst.state = InstanceState(rng.choice(STATES))
                inst.class_name = "glass-in-mirror"
                store.update_instance(inst)
            elif op == "move":  # no store method moves an instance between images; SQL can
                raw.execute("UPDATE instances SET image_id=? WHERE id=?", (rng.choice(image_ids), rng.choice(ids)))
            elif op == "raw_insert":
                m = _mask(rng).cropped()
                h, w = m.array.shape
                raw.execute(
                    "INSERT INTO instances(image_id, class_name, state, origin, x0, y0, w, h, rle, created, modified) "
                    "VALUES(?, 'mirror', ?, 'manual', ?, ?, ?, ?, ?, 0, 0)",
                    (rng.choice(image_ids), rng.choice(STATES), m.x0, m.y0, w, h, rle_codec.encode_crop(m.array)),
                )
            elif op == "raw_state":
                raw.execute("UPDATE instances SET state=?, image_id=? WHERE id=?",
                            (rng.choice(STATES), rng.choice(image_ids), rng.choice(ids)))
            elif op == "rollback":
                before = store.instance_counts()
                with pytest.raises(RuntimeError):
                    with store.transaction():
                        store.add_instance(Instance(rng.choice(image_ids), "mirror", _mask(rng), state="proposed"))
                        if ids:
                            store.set_states(ids, "rejected")
                            store.delete_instance(ids[0])
                        raise RuntimeError("the user cancelled")
                assert store.instance_counts() == before
            _assert_counts_exact(store)
    finally:
        raw.close()
    assert sum(store.totals().values()) == len(store.instances())


def test_counts_follow_deleting_an_image_and_replacing_an_instance(store: ProjectStore) -> None:
    rng = random.Random(5)
    a, b = [r.id for r in store.images()[:2]]
    iid = store.add_instance(Instance(a, "mirror", _mask(rng), state=InstanceState.PROPOSED))
    store.add_instance(Instance(b, "mirror", _mask(rng), state=InstanceState.ACCEPTED))
    # REPLACE deletes the old row first; the store turns recursive triggers on so that
    # delete is counted
    store._db.execute("INSERT OR REPLACE INTO instances(id, image_id, class_name, state, origin, x0, y0, w, h, rle, "
                      "created, modified) SELECT id, ?, class_name, 'rejected', origin, x0, y0, w, h, rle, created, "
                      "modified FROM instances WHERE id=?", (b, iid))
    _assert_counts_exact(store)
    assert store.image_counts(a) == {"proposed": 0, "accepted": 0, "rejected": 0}
    assert store.image_counts(b) == {"proposed": 0, "accepted": 1, "rejected": 1}
    store._db.execute("DELETE FROM images WHERE id=?", (b,))  # cascades to its instances
    _assert_counts_exact(store)
    assert store.totals() == {"proposed": 0, "accepted": 0, "rejected": 0}
    with pytest.raises(KeyError):
        store.image_counts(b)


def test_set_states_changes_state_and_time_never_the_mask(store: ProjectStore) -> None:
    rng = random.Random(7)
    image_ids = [r.id for r in store.images()]
    ids = store.add_instances(
        [Instance(image_ids[i % 3], "glass", _mask(rng), state=InstanceState.PROPOSED, modified=1.0) for i in range(9)]
    )
    db = sqlite3.connect(store.root / DB_NAME)
    masks_before = db.execute("SELECT id, x0, y0, w, h, rle FROM instances ORDER BY id").fetchall()
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        assert store.set_states(ids[:6] + [99999], InstanceState.ACCEPTED) == 6
    finally:
        store._db.set_trace_callback(None)
    # one UPDATE statement on the instances table for all of them, whatever their number
    # (SQLite traces a statement again for each trigger run it starts, hence the set)
    updates = {s for s in statements if s.lstrip().upper().startswith("UPDATE INSTANCES")}
    assert len(updates) == 1 and "json_each" in updates.pop()
    assert db.execute("SELECT id, x0, y0, w, h, rle FROM instances ORDER BY id").fetchall() == masks_before
    db.close()
    got = {i.id: i for i in store.instances()}
    assert all(got[i].state is InstanceState.ACCEPTED and got[i].modified > 1.0 for i in ids[:6])
    assert all(got[i].state is InstanceState.PROPOSED and got[i].modified == 1.0 for i in ids[6:])
    assert store.totals() == {"proposed": 3, "accepted": 6, "rejected": 0}
    assert store.set_states([], "rejected") == 0
    _assert_counts_exact(store)


def _version_2_database(root) -> dict[int, dict[str, int]]:
    """A project written by schema 2 (only the first two migrations run), with instances."""
    root.mkdir(parents=True)
    db = sqlite3.connect(root / DB_NAME, isolation_level=None)
    db.execute("BEGIN")
    MIGRATIONS[0](db)
    MIGRATIONS[1](db)
    db.execute("PRAGMA user_version=2")
    rle = rle_codec.encode_crop(np.ones((3, 4), bool))
    rng = random.Random(3)
    for i in range(1, 6):
        db.execute("INSERT INTO images(id, path, width, height) VALUES(?, ?, 50, 40)", (i, f"gone/{i}.png"))
    for _ in range(40):
        db.execute(
            "INSERT INTO instances(image_id, class_name, state, origin, x0, y0, w, h, rle, created, modified, hidden) "
            "VALUES(?, 'mirror', ?, 'manual', 1, 1, 4, 3, ?, 0, 0, 0)",
            (rng.randrange(1, 5), rng.choice(STATES), rle),  # image 5 keeps none
        )
    db.execute("COMMIT")
    db.close()
    return _recount(root / DB_NAME)


def test_version_2_database_migrates_with_right_counts(tmp_path) -> None:
    root = tmp_path / "v2"
    expected = _version_2_database(root)
    assert len(MIGRATIONS) == SCHEMA_VERSION >= 3
    with ProjectStore.open(root, scan=False) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.instance_counts() == expected
        assert store.image_counts(5) == {"proposed": 0, "accepted": 0, "rejected": 0}
        _assert_counts_exact(store)
        # and the triggers work from here on
        store.set_states([i.id for i in store.instances(image_id=1)], InstanceState.REJECTED)
        store.add_instance(Instance(5, "glass", Mask.from_box_array(0, 0, np.ones((2, 2), bool), SIZE)))
        _assert_counts_exact(store)
        assert store.image(5).n_accepted == 1


def test_a_failing_migration_leaves_version_2_untouched(tmp_path, monkeypatch) -> None:
    from annotation import store as store_module

    root = tmp_path / "v2"
    _version_2_database(root)
    real_migration = store_module.MIGRATIONS[2]

    def fails_halfway(db: sqlite3.Connection) -> None:
        real_migration(db)
        raise sqlite3.OperationalError("disk I/O error")  # as if the disk failed after the triggers

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS[:2], fails_halfway,
                                                     *store_module.MIGRATIONS[3:]])
    with pytest.raises(StoreError, match="changed nothing"):
        ProjectStore.open(root, scan=False)
    db = sqlite3.connect(root / DB_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert "n_proposed" not in [r[1] for r in db.execute("PRAGMA table_info(images)")]
    assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type='trigger'").fetchone()[0] == 0
    db.close()
    monkeypatch.undo()
    with ProjectStore.open(root, scan=False) as store:  # and it migrates once the disk is fine
        _assert_counts_exact(store)
