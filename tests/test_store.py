"""The project store: opening, WAL, scanning, instances, log, palette, schema, damage."""
from __future__ import annotations

import json
import sqlite3
import time

import numpy as np
import pytest
from PIL import Image

from annotation import rle as rle_codec
from annotation.document import ImageStatus, Instance, InstanceState
from annotation.mask import Mask
from annotation.palette import Palette, builtin_palette, load_palette
from annotation.schema import MIGRATIONS, SCHEMA_VERSION
from annotation.store import DB_NAME, ProjectStore, StoreError


def _image(path, h=48, w=64):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    _image(root / "a.jpg")
    _image(root / "sub" / "b.png", 30, 40)
    _image(root / "sub" / "deeper" / "c.tif", 20, 25)
    _image(root / ".hidden" / "skip.png")
    (root / "notes.txt").write_text("not an image")
    return root


def _blob(size, seed) -> Mask:
    """A mask with a hole and a separate island, built by painting (so its array has margins)."""
    rng = np.random.default_rng(seed)
    m = Mask.empty(size)
    h, w = size
    cx, cy = rng.integers(8, w - 8), rng.integers(8, h - 8)
    m.paint_disk(cx, cy, 6)
    m.paint_disk(cx, cy, 2, value=False)
    m.paint_stroke([(1, 1), (4, 3)], 1)
    return m


# ------------------------------------------------------------------ open / create
def test_open_creates_project_with_wal_and_scans_recursively(project):
    assert not (project / DB_NAME).exists()
    with ProjectStore.open(project) as store:
        assert (project / DB_NAME).exists()
        assert store.schema_version == SCHEMA_VERSION
        paths = [r.path for r in store.images()]
        assert paths == ["a.jpg", "sub/b.png", "sub/deeper/c.tif"]  # hidden folders and non-images skipped
        b = store.image_by_path("sub/b.png")
        assert b.size == (30, 40) and b.status is ImageStatus.NEW and b.error is None
        assert store.image_file(b) == project / "sub" / "b.png"
    db = sqlite3.connect(project / DB_NAME)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_rescan_adds_new_images_and_reports_missing(project):
    with ProjectStore.open(project) as store:
        _image(project / "sub" / "new.bmp", 10, 12)
        (project / "a.jpg").unlink()
        report = store.scan_images()
        assert report.added == ["sub/new.bmp"]
        assert report.missing == ["a.jpg"]
        assert report.errors == {}
        assert store.image_by_path("sub/new.bmp").size == (10, 12)


def test_open_without_create_and_missing_folder(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        ProjectStore.open(tmp_path / "nowhere")
    with pytest.raises(StoreError, match="not a Specula project yet; create it with `specula init"):
        ProjectStore.open(tmp_path, create=False)
    assert not (tmp_path / DB_NAME).exists()
    file_not_folder = tmp_path / "file.jpg"
    file_not_folder.write_bytes(b"x")
    with pytest.raises(StoreError, match="is a file, not a folder"):
        ProjectStore.open(file_not_folder)


# ------------------------------------------------------------------ instances
def test_add_update_delete_instances_survive_reopen(project):
    with ProjectStore.open(project) as store:
        img = store.image_by_path("a.jpg")
        masks = [_blob(img.size, s) for s in range(3)]
        ids = store.add_instances(
            [
                Instance(img.id, "mirror", masks[0]),
                Instance(img.id, "glass", masks[1], state=InstanceState.PROPOSED, origin="msd@3", score=0.75),
                Instance(img.id, "glass-in-mirror", masks[2]),
            ]
        )
        assert len(set(ids)) == 3
        # update: new mask, class and visibility
        inst = store.instance(ids[0])
        before = inst.modified
        time.sleep(0.01)
        inst.mask.paint_disk(40, 30, 5)
        inst.class_name = "glass"
        inst.hidden = True
        store.update_instance(inst)
        assert inst.modified > before
        masks[0] = inst.mask.copy()
        store.set_state(ids[1], InstanceState.ACCEPTED)
        store.delete_instance(ids[2])
        with pytest.raises(KeyError):
            store.instance(ids[2])
        missing = Instance(img.id, "glass", masks[0], id=9999)
        with pytest.raises(KeyError):
            store.update_instance(missing)
        with pytest.raises(ValueError):
            store.update_instance(Instance(img.id, "glass", masks[0]))

    with ProjectStore.open(project) as store:
        got = store.instances(img.id)
        assert [i.id for i in got] == ids[:2]
        first, second = got
        assert first.mask == masks[0] and first.class_name == "glass" and first.hidden
        assert first.mask.image_size == img.size
        assert first.mask.array.shape == (first.mask.bbox[3] - first.mask.bbox[1], first.mask.bbox[2] - first.mask.bbox[0])
        assert second.mask == masks[1] and second.state is InstanceState.ACCEPTED
        assert second.origin == "msd@3" and second.model_name == "msd" and second.model_version == "3"
        assert second.score == 0.75
        assert store.instances(states=[InstanceState.ACCEPTED])[0].id == ids[0]
        assert store.instance_counts() == {img.id: {"accepted": 2}}
        assert store.delete_instances(img.id, [InstanceState.ACCEPTED]) == 2
        assert store.instances() == []


def test_deleted_instance_restored_with_its_id_for_undo(project):
    with ProjectStore.open(project) as store:
        img = store.images()[0]
        inst = Instance(img.id, "mirror", _blob(img.size, 1))
        iid = store.add_instance(inst)
        store.delete_instance(iid)
        again = store.add_instance(inst)  # undo of the delete
        assert again == iid and store.instance(iid).mask == inst.mask


def test_empty_mask_and_rle_columns(project):
    with ProjectStore.open(project) as store:
        img = store.images()[0]
        iid = store.add_instance(Instance(img.id, "mirror", Mask.empty(img.size)))
        assert store.instance(iid).mask.is_empty()
        m = _blob(img.size, 2)
        iid2 = store.add_instance(Instance(img.id, "mirror", m))
    db = sqlite3.connect(project / DB_NAME)
    x0, y0, w, h, counts = db.execute("SELECT x0, y0, w, h, rle FROM instances WHERE id=?", (iid2,)).fetchone()
    db.close()
    assert (x0, y0, x0 + w, y0 + h) == m.bbox  # stored as the tight crop
    np.testing.assert_array_equal(rle_codec.decode_crop(counts, h, w), m.cropped().array)


def test_transaction_groups_an_edit_and_its_log_entry(project):
    with ProjectStore.open(project) as store:
        img = store.images()[0]
        with pytest.raises(RuntimeError):
            with store.transaction():
                iid = store.add_instance(Instance(img.id, "mirror", _blob(img.size, 3)))
                store.log("draw", image_id=img.id, instance_id=iid)
                raise RuntimeError("the user pressed escape mid-edit")
        assert store.instances() == [] and store.interactions() == []
        with store.transaction():
            iid = store.add_instance(Instance(img.id, "mirror", _blob(img.size, 3)))
            store.log("draw", image_id=img.id, instance_id=iid)
    with ProjectStore.open(project) as store:
        assert len(store.instances()) == 1 and len(store.interactions()) == 1


# ------------------------------------------------------------------ images
def test_image_status_sha1_and_registered_images(project):
    with ProjectStore.open(project) as store:
        img = store.images()[0]
        store.set_image_status(img.id, ImageStatus.DONE)
        store.set_image_sha1(img.id, "ab" * 20)
        virtual = store.add_image("imported/x.jpg", 100, 200)
        assert store.add_image("imported/x.jpg", 100, 200) == virtual
    with ProjectStore.open(project, scan=False) as store:
        again = store.image(img.id)
        assert again.status is ImageStatus.DONE and again.sha1 == "ab" * 20
        assert store.image(virtual).size == (100, 200)
        with pytest.raises(KeyError):
            store.image(12345)


# ------------------------------------------------------------------ interaction log
def test_interaction_log_rows_with_json_details(project):
    with ProjectStore.open(project) as store:
        img = store.images()[0]
        a = store.log("accept", image_id=img.id, instance_id=7, class_name="mirror", started=100.0, ended=101.5,
                      proposal_score=0.9, model="msd@3")
        b = store.log("weak_click", image_id=img.id, class_name="glass", points=[[10, 12], [30, 4]], positive=True)
        store.log("reject", image_id=img.id + 1, instance_id=8)
    with ProjectStore.open(project) as store:
        rows = store.interactions(image_id=img.id)
        assert [r.id for r in rows] == [a, b]
        accept, click = rows
        assert accept.action == "accept" and accept.instance_id == 7 and accept.class_name == "mirror"
        assert accept.duration == pytest.approx(1.5)
        assert accept.details == {"proposal_score": 0.9, "model": "msd@3"}
        assert click.details == {"points": [[10, 12], [30, 4]], "positive": True}
        assert click.started == click.ended
        assert [r.action for r in store.interactions(actions=["reject"])] == ["reject"]
        assert len(store.interactions()) == 3
    db = sqlite3.connect(project / DB_NAME)
    raw = db.execute("SELECT details FROM interactions WHERE id=?", (b,)).fetchone()[0]
    db.close()
    assert json.loads(raw)["positive"] is True


# ------------------------------------------------------------------ palette
def test_palette_stored_and_reloaded(project, tmp_path):
    with ProjectStore.open(project) as store:
        assert store.palette == builtin_palette()  # the default
    custom_file = tmp_path / "mine.toml"
    custom_file.write_text(
        'name = "mine"\n[[classes]]\nname = "pane"\ncolor = [1, 2, 3]\nkey = "p"\n'
        '[[classes]]\nname = "frame"\ncolor = [4, 5, 6]\n'
        '[[rules]]\nkind = "inside"\ninner = "pane"\nouter = "frame"\n'
    )
    custom = load_palette(custom_file)
    with ProjectStore.open(project, palette=custom) as store:
        assert store.palette == custom
    with ProjectStore.open(project) as store:
        assert store.palette == custom  # reopening without a palette keeps the project's
        store.ensure_class("sash", (7, 8, 9))
        assert store.palette.color_of("sash") == (7, 8, 9)
    with ProjectStore.open(project) as store:
        assert store.palette.names == ["pane", "frame", "sash"]
        assert isinstance(store.palette, Palette) and store.palette.rules == custom.rules


# ------------------------------------------------------------------ schema
def _version_1_project(root) -> None:
    root.mkdir(parents=True, exist_ok=True)
    _image(root / "a.jpg")
    db = sqlite3.connect(root / DB_NAME, isolation_level=None)
    db.execute("BEGIN")
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO images(path, width, height, status) VALUES('a.jpg', 64, 48, 'done')")
    m = Mask.from_box_array(10, 5, np.ones((6, 8), bool), (48, 64))
    db.execute(
        "INSERT INTO instances(image_id, class_name, state, origin, score, x0, y0, w, h, rle, created, modified) "
        "VALUES(1, 'mirror', 'accepted', 'manual', NULL, 10, 5, 8, 6, ?, 1.0, 2.0)",
        (rle_codec.encode_crop(m.array),),
    )
    db.execute("INSERT INTO interactions(action, image_id, started, ended, details) VALUES('draw', 1, 1.0, 2.0, '{\"n\": 3}')")
    db.execute("COMMIT")
    db.close()


def test_version_1_database_migrates_with_data_kept(tmp_path):
    root = tmp_path / "old"
    _version_1_project(root)
    assert SCHEMA_VERSION > 1 and len(MIGRATIONS) == SCHEMA_VERSION
    with ProjectStore.open(root) as store:
        assert store.schema_version == SCHEMA_VERSION
        img = store.image_by_path("a.jpg")
        assert img.status is ImageStatus.DONE
        (inst,) = store.instances()
        assert inst.class_name == "mirror" and inst.hidden is False
        assert inst.mask == Mask.from_box_array(10, 5, np.ones((6, 8), bool), (48, 64))
        assert store.interactions()[0].details == {"n": 3}
        inst.hidden = True
        store.update_instance(inst)  # the migrated column works
    db = sqlite3.connect(root / DB_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    columns = [r[1] for r in db.execute("PRAGMA table_info(instances)")]
    assert "hidden" in columns
    db.close()


def test_newer_schema_refused_with_clear_message(project):
    ProjectStore.open(project).close()
    db = sqlite3.connect(project / DB_NAME)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError) as err:
        ProjectStore.open(project)
    msg = str(err.value)
    assert "newer Specula" in msg and str(SCHEMA_VERSION + 1) in msg and "update Specula" in msg


def test_corrupt_database_gives_store_error(project):
    (project / DB_NAME).write_bytes(b"this is not a database at all " * 200)
    with pytest.raises(StoreError) as err:
        ProjectStore.open(project)
    msg = str(err.value)
    assert str(project / DB_NAME) in msg and "backup" in msg
    assert "Traceback" not in msg and "\n" not in msg


def test_damaged_pages_give_store_error(project):
    with ProjectStore.open(project) as store:
        img = store.images()[0]
        store.add_instances([Instance(img.id, "mirror", _blob(img.size, s)) for s in range(200)])
    db = sqlite3.connect(project / DB_NAME)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    data = bytearray((project / DB_NAME).read_bytes())
    page = 4096
    assert len(data) > 4 * page
    for at in range(2 * page, len(data), page):  # keep the header page, ruin the rest
        data[at + 8 : at + 200] = b"\xa5" * 192
    (project / DB_NAME).write_bytes(bytes(data))
    with pytest.raises(StoreError) as err:
        ProjectStore.open(project)
    assert str(project / DB_NAME) in str(err.value) and "Specula changed nothing" in str(err.value)
    # checked before the journal mode is set: a rollback-journal file keeps its header
    assert (project / DB_NAME).read_bytes() == bytes(data)
