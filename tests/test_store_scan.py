"""Scanning in pieces: finding files and reading headers need no database (a GUI runs them
in a worker); one writer adds the result in one transaction."""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotation.scanning import ScannedImage, find_image_files, read_image_headers
from annotation.store import DB_NAME, ProjectStore, StoreError


def require_data(name: str) -> Path:
    """A shared data set (as tests/conftest.py finds it), or skip saying which is missing.

    Not imported from conftest: another folder's conftest may hold that module name."""
    path = Path(os.environ.get("SPECULA_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / name
    if not path.exists():
        pytest.skip(f"data set {name} not found at {path} (set SPECULA_DATA)")
    return path


def _image(path: Path, h: int = 20, w: int = 30) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 200, np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    _image(root / "z.png", 10, 11)
    _image(root / "A.JPG", 12, 13)  # extensions match whatever their case
    _image(root / "b" / "y.tif", 14, 15)
    _image(root / "a" / "x.bmp", 16, 17)
    _image(root / ".thumbs" / "t.png")
    (root / "notes.txt").write_text("not an image")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    return root


def test_find_image_files_walks_sorted_and_skips_hidden_folders(folder: Path) -> None:
    assert find_image_files(folder) == ["A.JPG", "broken.jpg", "z.png", "a/x.bmp", "b/y.tif"]
    assert not (folder / DB_NAME).exists()


def test_read_image_headers_reports_sizes_and_reasons(folder: Path) -> None:
    got = {s.path: s for s in read_image_headers(folder, find_image_files(folder))}
    assert got["z.png"] == ScannedImage("z.png", 10, 11)
    assert (got["a/x.bmp"].height, got["a/x.bmp"].width) == (16, 17)
    broken = got["broken.jpg"]
    assert (broken.height, broken.width) == (0, 0) and "broken.jpg" in broken.error
    assert all(s.error is None for p, s in got.items() if p != "broken.jpg")
    assert not (folder / DB_NAME).exists()


def test_read_image_headers_stops_when_cancelled(folder: Path) -> None:
    paths = find_image_files(folder)
    event = threading.Event()
    seen = []
    for scanned in read_image_headers(folder, paths, cancel=event):
        seen.append(scanned.path)
        event.set()  # the user pressed cancel while the first file was read
    assert seen == paths[:1]
    calls = iter([False, False, True])
    assert len(list(read_image_headers(folder, paths, cancel=lambda: next(calls)))) == 2


def test_add_scanned_is_one_transaction_and_skips_known_paths(folder: Path) -> None:
    with ProjectStore.open(folder, scan=False) as store:
        assert store.known_image_paths() == set()
        first = store.add_scanned([ScannedImage("z.png", 10, 11)])
        assert [(r.path, r.size, r.id is not None, r.n_accepted) for r in first] == [("z.png", (10, 11), True, 0)]
        scanned = list(read_image_headers(folder, find_image_files(folder)))
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        added = store.add_scanned(scanned)
        store._db.set_trace_callback(None)
        assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == ["BEGIN IMMEDIATE", "COMMIT"]
        assert [r.path for r in added] == ["A.JPG", "broken.jpg", "a/x.bmp", "b/y.tif"]  # z.png was known
        assert store.image(added[1].id).error == added[1].error and "broken.jpg" in added[1].error
        assert store.known_image_paths() == {"A.JPG", "broken.jpg", "z.png", "a/x.bmp", "b/y.tif"}
        assert store.add_scanned([]) == []


def test_scan_images_is_the_composition_and_reports_missing(folder: Path) -> None:
    progress: list[tuple[int, int]] = []
    with ProjectStore.open(folder, scan=False) as store:
        report = store.scan_images(progress=lambda done, total: progress.append((done, total)))
        assert report.added == find_image_files(folder) and report.missing == [] and report.skipped is None
        assert list(report.errors) == ["broken.jpg"]
        assert progress == [(i, 5) for i in range(1, 6)]
        store.add_image("imported/elsewhere.png", 5, 5)  # registered by an import, never on disk
        (folder / "z.png").unlink()
        _image(folder / "b" / "new.webp", 7, 9)
        again = store.scan_images()
        assert again.added == ["b/new.webp"]
        assert again.missing == ["imported/elsewhere.png", "z.png"]
        assert again.errors == {}
        assert store.image_by_path("b/new.webp").size == (7, 9)


def test_add_scanned_on_a_read_only_project_raises(folder: Path) -> None:
    ProjectStore.open(folder, scan=False).close()
    with ProjectStore.open(folder, read_only=True) as store:
        with pytest.raises(StoreError, match="read-only"):
            store.add_scanned([ScannedImage("z.png", 10, 11)])


def test_scanning_a_real_data_set(tmp_path: Path) -> None:
    data = require_data("mirror-msd")
    root = tmp_path / "msd"
    shutil.copytree(data / "image", root / "image")
    paths = find_image_files(root)
    assert paths and all(p.startswith("image/") for p in paths)
    for scanned in read_image_headers(root, paths):
        with Image.open(root / scanned.path) as im:
            assert scanned.error is None and (scanned.width, scanned.height) == im.size
    with ProjectStore.open(root) as store:
        assert [r.path for r in store.images()] == sorted(paths)


def test_a_file_name_that_is_not_utf8_is_reported_not_fatal(tmp_path):
    """os.walk gives undecodable bytes as surrogates, which SQLite refuses: opening such a
    folder crashed. It is left out and named, the rest of the folder opens."""
    import os

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "good.png")
    bad = os.path.join(os.fsencode(tmp_path), b"caf\xe9.png")
    with open(bad, "wb") as f:
        f.write((tmp_path / "good.png").read_bytes())
    with ProjectStore.open(tmp_path, scan=False) as store:
        report = store.scan_images()
        assert [r.path for r in store.images()] == ["good.png"]
        assert any("UTF-8" in why for why in report.errors.values())
