"""Read-only projects and errors that name their cause.

The tests run as root here, and root passes every permission check: a folder after
``chmod -R a-w`` is still writable for root. A read-only medium is therefore stood in
for by making the store's permission check (``annotation.store._can_write``) read the
file's mode bits, as ``os.access`` does for an ordinary user; SQLite itself is given
nothing to stop it, so every test also checks that the files were left byte for byte.
"""
from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import annotation.store as store_module
from annotation.document import Instance, InstanceState
from annotation.mask import Mask
from annotation.palette import builtin_palette
from annotation.schema import MIGRATIONS, SCHEMA_VERSION
from annotation.store import DB_NAME, ProjectStore, StoreError


def _image(path: Path, h: int = 30, w: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(path)


def _write_bit(path: Path) -> bool:
    """``os.access(path, W_OK)`` as a non-root user sees it: the owner's write bit."""
    return bool(path.stat().st_mode & stat.S_IWUSR)


@pytest.fixture
def permissions_as_a_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "_can_write", _write_bit)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """A project with two images and three labelled instances, closed cleanly (no -wal left)."""
    root = tmp_path / "labelled"
    _image(root / "a.png")
    _image(root / "sub" / "b.png", 20, 24)
    with ProjectStore.open(root, palette=builtin_palette("inspection")) as store:
        a = store.image_by_path("a.png")
        full = Mask.from_box_array(3, 4, np.ones((5, 6), bool), a.size)
        store.add_instances([
            Instance(a.id, "crack", full),
            Instance(a.id, "rust", full.copy(), state=InstanceState.PROPOSED, origin="m@1", score=0.5),
            Instance(a.id, "rust", full.copy(), state=InstanceState.REJECTED),
        ])
        store.log("accept", image_id=a.id, class_name="crack")
    assert not (root / f"{DB_NAME}-wal").exists()
    yield root
    subprocess.run(["chmod", "-R", "u+w", str(root)], check=True)


def _chmod_read_only(root: Path) -> None:
    subprocess.run(["chmod", "-R", "a-w", str(root)], check=True)


def test_read_only_folder_opens_with_labels_and_refuses_writes(labelled: Path, permissions_as_a_user) -> None:
    _chmod_read_only(labelled)
    before = _files(labelled)
    with ProjectStore.open(labelled) as store:
        assert store.read_only is not None and not store.in_memory
        assert f"the folder {labelled} is read-only" in store.read_only
        assert "copy the folder somewhere writable" in store.read_only
        assert store.palette.name == "inspection"
        a = store.image_by_path("a.png")
        assert sorted(i.class_name for i in store.instances(a.id)) == ["crack", "rust", "rust"]
        assert store.image_counts(a.id) == {"proposed": 1, "accepted": 1, "rejected": 1}
        assert a.n_accepted == 1 and store.totals()["proposed"] == 1
        assert [i.action for i in store.interactions()] == ["accept"]
        inst = store.instances(a.id)[0]
        writes = [
            lambda: store.add_instance(Instance(a.id, "crack", inst.mask.copy())),
            lambda: store.update_instance(inst),
            lambda: store.set_states([inst.id], InstanceState.REJECTED),
            lambda: store.delete_instance(inst.id),
            lambda: store.set_meta("k", "v"),
            lambda: store.log("accept", image_id=a.id),
            lambda: store.add_image("x.png", 3, 3),
            lambda: store.ensure_class("spall"),
            lambda: store.transaction().__enter__(),
        ]
        for write in writes:
            with pytest.raises(StoreError, match="read-only"):
                write()
        report = store.scan_images()  # skipped, and said so
        assert report.added == [] and report.skipped == store.read_only
    # nothing was written, no -wal or -shm appeared: SQLite opened the file immutable
    assert _files(labelled) == before


def test_labels_still_in_the_wal_file_are_read(labelled: Path, permissions_as_a_user) -> None:
    writer = ProjectStore.open(labelled, scan=False)  # holds the -wal file open, as a crashed writer leaves it
    a = writer.image_by_path("a.png")
    writer.add_instance(Instance(a.id, "spalling", Mask.from_box_array(0, 0, np.ones((2, 2), bool), a.size)))
    assert (labelled / f"{DB_NAME}-wal").exists()
    _chmod_read_only(labelled)
    try:
        with ProjectStore.open(labelled) as store:
            assert store.read_only is not None
            assert "spalling" in [i.class_name for i in store.instances(a.id)]
    finally:
        writer.close()


def test_read_only_folder_without_a_project_opens_in_memory(tmp_path: Path, permissions_as_a_user) -> None:
    root = tmp_path / "dvd"
    _image(root / "one.png", 12, 16)
    _image(root / "deep" / "two.jpg", 8, 10)
    _chmod_read_only(root)
    try:
        with ProjectStore.open(root) as store:
            assert store.in_memory and "holds no Specula project" in store.read_only
            assert [(r.path, r.size) for r in store.images()] == [("deep/two.jpg", (8, 10)), ("one.png", (12, 16))]
            assert store.palette == builtin_palette()
            with pytest.raises(StoreError, match="read-only"):
                store.add_instance(Instance(store.images()[0].id, "glass", Mask.empty((8, 10))))
        with ProjectStore.open(root, scan=False) as store:  # the GUI's way: scan later (here, or in a worker)
            assert store.images() == []
            assert store.scan_images().added == ["one.png", "deep/two.jpg"]  # walk order
        assert not (root / DB_NAME).exists()
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=True)


def test_read_only_database_file_in_a_writable_folder(labelled: Path, permissions_as_a_user) -> None:
    os.chmod(labelled / DB_NAME, 0o444)
    with ProjectStore.open(labelled) as store:
        assert f"{labelled / DB_NAME} is read-only" in store.read_only
        assert len(store.instances()) == 3
        with pytest.raises(StoreError, match="read-only"):
            store.set_states([1], "accepted")
    with pytest.raises(StoreError, match="is read-only"):
        ProjectStore.open(labelled, read_only=False)


def test_opened_read_only_on_request(labelled: Path) -> None:
    before = (labelled / DB_NAME).read_bytes()
    _image(labelled / "new.png")
    with ProjectStore.open(labelled, read_only=True, palette=builtin_palette("inspection")) as store:
        assert "opened read-only" in store.read_only
        assert store.known_image_paths() == {"a.png", "sub/b.png"}  # new.png was not added
        with pytest.raises(StoreError, match="read-only"):
            store.add_scanned(list(store_module.read_image_headers(labelled, ["new.png"])))
    assert (labelled / DB_NAME).read_bytes() == before
    with pytest.raises(StoreError, match="read-only"):  # a different palette would need a write
        ProjectStore.open(labelled, read_only=True, palette=builtin_palette("mirror-glass"))


def test_older_project_on_a_read_only_folder_is_read_through_a_migrated_copy(
    tmp_path: Path, permissions_as_a_user
) -> None:
    root = tmp_path / "old"
    _image(root / "a.png")
    db = sqlite3.connect(root / DB_NAME, isolation_level=None)
    db.execute("BEGIN")
    MIGRATIONS[0](db)
    MIGRATIONS[1](db)
    db.execute("PRAGMA user_version=2")
    db.execute("INSERT INTO images(path, width, height) VALUES('a.png', 40, 30)")
    for state in ("accepted", "accepted", "proposed"):
        db.execute("INSERT INTO instances(image_id, class_name, state, origin, x0, y0, w, h, rle, created, modified) "
                   "VALUES(1, 'mirror', ?, 'manual', 0, 0, 1, 1, '01', 0, 0)", (state,))
    db.execute("COMMIT")
    db.close()
    _chmod_read_only(root)
    before = _files(root)
    try:
        with ProjectStore.open(root) as store:
            assert store.read_only is not None and store.schema_version == SCHEMA_VERSION
            assert store.image_counts(1) == {"proposed": 1, "accepted": 2, "rejected": 0}
        assert _files(root) == before
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=True)


# ------------------------------------------------------------------ errors that name the cause
def test_garbage_database_is_reported_damaged_and_left_unchanged(labelled: Path) -> None:
    garbage = b"PK\x03\x04 this was a zip file, renamed " * 300
    (labelled / DB_NAME).write_bytes(garbage)
    before = _files(labelled)
    with pytest.raises(StoreError) as err:
        ProjectStore.open(labelled)
    msg = str(err.value)
    assert "damaged" in msg and "Specula changed nothing" in msg and f"restore {DB_NAME} from a backup" in msg
    assert "move" not in msg and "\n" not in msg
    assert _files(labelled) == before  # same bytes, and no -wal or -shm beside it


def test_missing_folder_and_no_read_permission(tmp_path: Path, labelled: Path, monkeypatch) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        ProjectStore.open(tmp_path / "unplugged-drive" / "project")
    monkeypatch.setattr(store_module, "_can_read", lambda p: p.name != DB_NAME)
    with pytest.raises(StoreError) as err:
        ProjectStore.open(labelled)
    assert f"no permission to read {labelled / DB_NAME}" in str(err.value) and "ask for read access" in str(err.value)
    monkeypatch.setattr(store_module, "_can_read", lambda p: False)
    with pytest.raises(StoreError, match="no permission to read the folder .*ask for read access"):
        ProjectStore.open(labelled)


def test_a_project_locked_by_another_writer_says_so(labelled: Path, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "OPEN_BUSY_TIMEOUT_S", 0.05)
    other = sqlite3.connect(labelled / DB_NAME, isolation_level=None)
    other.execute("PRAGMA locking_mode=EXCLUSIVE")
    other.execute("BEGIN EXCLUSIVE")
    other.execute("INSERT INTO meta(key, value) VALUES('x', 'y')")
    try:
        with pytest.raises(StoreError) as err:
            ProjectStore.open(labelled)
        assert str(err.value) == (
            f"another program is writing to this project ({labelled / DB_NAME}); close it and try again"
        )
    finally:
        other.execute("ROLLBACK")
        other.close()
    with ProjectStore.open(labelled) as store:  # and the labels are all there afterwards
        assert len(store.instances()) == 3
