"""`specula import` (and the read-only commands beside it) when things go wrong: exit codes,
what is left on disk, another writer, a full disk."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from annotation.store import DB_NAME
from specula.cli import main

REPO = Path(__file__).resolve().parents[1]


def require_data(name: str) -> Path:
    """A shared data set (as tests/conftest.py finds it), or skip saying which is missing."""
    path = Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data")) / name
    if not path.exists():
        pytest.skip(f"data set {name} not found at {path} (set SPECULA_DATA)")
    return path


def _photos(root: Path, names: tuple[str, ...] = ("1.jpg", "1000.jpg")) -> Path:
    images = require_data("glass-gdd") / "image"
    root.mkdir(parents=True)
    for name in names:
        shutil.copy(images / name, root / name)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = _photos(tmp_path / "glass")
    assert main(["init", str(root)]) == 0
    return root


def _coco(path: Path, images: list[tuple[str, Path]], boxes: int = 1) -> Path:
    """A COCO file with ``boxes`` box annotations of class glass on each named image."""
    entries, anns = [], []
    for k, (name, file) in enumerate(images, 1):
        w, h = Image.open(file).size if file.exists() else (640, 480)
        entries.append({"id": k, "file_name": name, "width": w, "height": h})
        for b in range(boxes):
            x, y = 3 + (b * 7) % (w - 20), 5 + (b * 11) % (h - 20)
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": 1, "iscrowd": 0,
                         "segmentation": [[x, y, x + 12, y, x + 12, y + 9 + b % 5, x, y + 9]]})
    path.write_text(json.dumps({"images": entries, "annotations": anns,
                                "categories": [{"id": 1, "name": "glass"}]}))
    return path


def _digest(root: Path) -> str:
    """Every row of every table, so any change to the project shows."""
    db = sqlite3.connect(f"{(root / DB_NAME).as_uri()}?mode=ro", uri=True)
    try:
        h = hashlib.sha256()
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        for t in tables:
            h.update(t.encode())
            for row in db.execute(f"SELECT * FROM \"{t}\" ORDER BY rowid"):
                h.update(repr(row).encode())
        return h.hexdigest()
    finally:
        db.close()


def test_import_that_skips_images_exits_1(project: Path, tmp_path: Path, capsys) -> None:
    coco = _coco(tmp_path / "coco.json", [("1.jpg", project / "1.jpg"), ("elsewhere/9999.jpg", tmp_path / "none")])
    assert main(["import", str(project), "--from", "coco", str(coco)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("imported 1 instances into 1 images")
    last = err.strip().splitlines()[-1]
    assert last.startswith("specula: not everything was imported: 1 images named in") and "9999.jpg" in last


def test_import_that_skips_damaged_labels_exits_1(project: Path, tmp_path: Path, capsys) -> None:
    coco = _coco(tmp_path / "coco.json", [("1.jpg", project / "1.jpg")], boxes=2)
    data = json.loads(coco.read_text())
    data["annotations"][1]["segmentation"] = [["not", "numbers"]]
    coco.write_text(json.dumps(data))
    assert main(["import", str(project), "--from", "coco", str(coco)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("imported 1 instances into 1 images")
    assert err.strip().splitlines()[-1].startswith("specula: not everything was imported: 1 damaged labels skipped")


def test_import_that_finds_every_image_exits_0(project: Path, tmp_path: Path, capsys) -> None:
    coco = _coco(tmp_path / "coco.json", [("1.jpg", project / "1.jpg")])
    assert main(["import", str(project), "--from", "coco", str(coco)]) == 0
    assert "specula:" not in capsys.readouterr().err


def test_failed_import_into_a_plain_folder_leaves_no_database(tmp_path: Path, capsys) -> None:
    folder = _photos(tmp_path / "plain")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    before = sorted(p.name for p in folder.iterdir())
    assert main(["import", str(folder), "--from", "coco", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("specula: ")
    left = sorted(p.name for p in folder.iterdir() if p.name != "specula.lock")
    assert left == before  # no specula.db, -wal or -shm


def test_successful_import_into_a_plain_folder_makes_it_a_project(tmp_path: Path) -> None:
    folder = _photos(tmp_path / "plain")
    coco = _coco(tmp_path / "coco.json", [("1.jpg", folder / "1.jpg")])
    assert main(["import", str(folder), "--from", "coco", str(coco)]) == 0
    assert (folder / DB_NAME).is_file()


def test_failed_import_into_a_project_changes_nothing(project: Path, tmp_path: Path, capsys) -> None:
    """Not the palette given with --palette, nor images added to the folder since the last scan."""
    _photos(project / "new", ("1003.jpg",))
    before = _digest(project)
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")  # truncated JSON
    assert main(["import", str(project), "--from", "coco", str(bad), "--palette", "inspection"]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert _digest(project) == before


_HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO meta(key, value) VALUES('held-by-test', '1')")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "specula", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_while_another_program_writes_reads_answer_and_import_says_so(project: Path, tmp_path: Path) -> None:
    """A foreign program in a write transaction: stats and export read (WAL readers do not
    wait), and import says in one line that another program is writing."""
    coco = _coco(tmp_path / "coco.json", [("1.jpg", project / "1.jpg")])
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(project / DB_NAME), "120"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        stats = _run("stats", str(project), "--json")
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["images"] == 2
        export = _run("export", str(project), "--to", "coco", str(tmp_path / "out.json"))
        assert export.returncode == 0, export.stderr
        assert json.loads((tmp_path / "out.json").read_text())["images"]
        started = time.monotonic()
        imported = _run("import", str(project), "--from", "coco", str(coco))
        waited = time.monotonic() - started
        assert imported.returncode == 2, imported.stderr
        assert len(imported.stderr.splitlines()) == 1
        assert imported.stderr.startswith("specula: another program is writing")
        # only a guard against the old 33-second hang, not a timing test: the store waits a
        # few seconds for a writer before giving up
        assert waited < 15
        # a photo added meanwhile cannot be scanned in (scanning writes): stats still answers
        _photos(project / "later", ("1003.jpg",))
        stats = _run("stats", str(project), "--json")
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["images"] == 2
        assert stats.stderr.startswith("warning: images added to the folder since the last scan are left out")
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs (root only); skips where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("needs root and mount(8) for a small tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(disk: Path, leave: int) -> None:
    """Fill the file system but for ``leave`` bytes."""
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
        fh.flush()
        os.fsync(fh.fileno())


def test_import_onto_a_full_disk_says_so_and_changes_nothing(small_disk: Path, tmp_path: Path) -> None:
    root = small_disk / "p"
    root.mkdir()
    cfd = require_data("cracks-cfd") / "image"
    shutil.copy(cfd / "001.jpg", root / "001.jpg")
    assert main(["init", str(root)]) == 0
    coco = _coco(tmp_path / "many.json", [("001.jpg", root / "001.jpg")], boxes=3000)
    before = _digest(root)
    _fill(small_disk, 40 * 1024)
    done = _run("import", str(root), "--from", "coco", str(coco))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("specula: ") and "disk" in done.stderr and "full" in done.stderr
    (small_disk / "filler").unlink()
    assert _digest(root) == before


def test_a_library_warning_is_one_warning_line(project: Path, tmp_path: Path) -> None:
    """Pillow warns about palette masks with byte transparency; the command says it in its own
    form, one `warning:` line, not the interpreter's two lines about site-packages."""
    import numpy as np

    w, h = Image.open(project / "1.jpg").size
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[10:40, 20:60] = 255  # opaque white glass on a transparent background
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(rgba, mode="RGBA").convert("P").save(masks / "1.png")  # transparency as bytes
    done = _run("import", str(project), "--from", "class-masks", str(masks), "--class", "glass")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported 1 instances")
    lines = done.stderr.splitlines()
    assert any("Transparency" in ln for ln in lines)  # the warning is still said
    assert all(ln.startswith("warning: ") for ln in lines), done.stderr


@pytest.mark.parametrize("name", ["cr\x1b[31mack\nnext line", "glass\u2028sep", "bell\x07\r"])
def test_names_from_a_file_neither_break_lines_nor_drive_the_terminal(project: Path, tmp_path: Path,
                                                                      name: str) -> None:
    coco = _coco(tmp_path / "coco.json", [("1.jpg", project / "1.jpg")])
    data = json.loads(coco.read_text())
    data["categories"][0]["name"] = name
    coco.write_text(json.dumps(data))
    done = _run("import", str(project), "--from", "coco", str(coco))
    assert done.returncode in (0, 2), done.stderr  # imported, or refused in one line
    for stream in (done.stdout, done.stderr):
        assert not any(c in stream for c in "\x1b\x07\r\u2028")
    if done.returncode == 0:
        assert len(done.stdout.splitlines()) == 1 and "classes added: " in done.stdout
        stats = _run("stats", str(project))
        assert stats.returncode == 0 and "\x1b" not in stats.stdout and "\x07" not in stats.stdout
    else:
        assert len(done.stderr.splitlines()) == 1


def test_import_as_accepted_overrides_the_states_a_file_carries(project: Path, tmp_path: Path) -> None:
    from annotation.store import ProjectStore

    coco = _coco(tmp_path / "c.json", [(n, project / n) for n in ("1.jpg", "1000.jpg")])
    data = json.loads(coco.read_text())
    for a in data["annotations"]:
        a.update(specula_state="proposed", specula_origin="far-away@5", score=0.6)
    coco.write_text(json.dumps(data))
    assert main(["import", str(project), "--from", "coco", str(coco)]) == 0
    with ProjectStore.open(project, scan=False) as store:
        assert {i.state.value for i in store.instances()} == {"proposed"}
    other = _photos(tmp_path / "other")
    assert main(["init", str(other)]) == 0
    assert main(["import", str(other), "--from", "coco", str(coco), "--as", "accepted"]) == 0
    with ProjectStore.open(other, scan=False) as store:
        insts = store.instances()
        assert insts and {i.state.value for i in insts} == {"accepted"}
        assert {i.origin for i in insts} == {"far-away@5"}


def test_specula_proposals_shards_come_home_as_proposals(project: Path, tmp_path: Path) -> None:
    """`export --to specula-proposals` writes only the proposals, exactly (RLE), with their
    state, score and origin; `import --from specula-proposals` brings them into another copy
    of the project as proposals, accepted labels there untouched."""
    import numpy as np

    from annotation.document import Instance, InstanceState
    from annotation.mask import Mask
    from annotation.store import ProjectStore

    with ProjectStore.open(project, create=False) as store:
        rec = store.images()[0]
        full = np.zeros(rec.size, bool)
        full[10:60, 20:90] = True
        full[30:40, 40:50] = False  # a hole: RLE keeps it exactly
        store.add_instances([Instance(rec.id, "glass", Mask.from_full(full), InstanceState.PROPOSED, "m@7", 0.61),
                             Instance(rec.id, "mirror", Mask.from_full(np.roll(full, 100, axis=1)))])
    shard = tmp_path / "shard.json"
    assert main(["export", str(project), "--to", "specula-proposals", str(shard)]) == 0
    data = json.loads(shard.read_text())
    assert len(data["annotations"]) == 1 and isinstance(data["annotations"][0]["segmentation"], dict)

    home = _photos(tmp_path / "home")
    assert main(["init", str(home)]) == 0
    assert main(["import", str(home), "--from", "specula-proposals", str(shard)]) == 0
    with ProjectStore.open(home, create=False) as store:
        (got,) = store.instances()
        assert got.state is InstanceState.PROPOSED and got.origin == "m@7" and got.score == pytest.approx(0.61)
        assert np.array_equal(got.mask.to_full(), full)
