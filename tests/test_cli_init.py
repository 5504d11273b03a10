"""`specula init` makes a folder a project; the other project commands send a plain folder there."""
from __future__ import annotations

import os
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import annotation.store as store_module
from annotation.palette import builtin_palette
from annotation.store import DB_NAME, ProjectStore
from specula.cli import main


def require_data(name: str) -> Path:
    """A shared data set (as tests/conftest.py finds it), or skip saying which is missing.

    Not imported from conftest: another folder's conftest may hold that module name."""
    path = Path(os.environ.get("SPECULA_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / name
    if not path.exists():
        pytest.skip(f"data set {name} not found at {path} (set SPECULA_DATA)")
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Three real crack photos in two folders, and no project yet."""
    data = require_data("cracks-cfd") / "image"
    root = tmp_path / "bridge"
    (root / "span2").mkdir(parents=True)
    shutil.copy(data / "001.jpg", root / "001.jpg")
    shutil.copy(data / "002.jpg", root / "span2" / "002.jpg")
    shutil.copy(data / "003.jpg", root / "span2" / "003.jpg")
    return root


def test_init_creates_the_project_and_prints_one_line(photos: Path, capsys) -> None:
    assert main(["init", str(photos), "--palette", "inspection"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"created project {photos}: 3 images (3 new), palette 'inspection' (crack, spalling, rust)"
    ]
    with ProjectStore.open(photos, create=False, scan=False) as store:
        assert store.palette == builtin_palette("inspection")
        assert [(r.path, r.size) for r in store.images()] == [
            ("001.jpg", (320, 480)), ("span2/002.jpg", (320, 480)), ("span2/003.jpg", (320, 480))
        ]


def test_init_again_keeps_the_project_and_refuses_another_palette(photos: Path, capsys) -> None:
    assert main(["init", str(photos)]) == 0  # the default palette
    capsys.readouterr()
    before = (photos / DB_NAME).read_bytes()
    assert main(["init", str(photos), "--palette", "inspection"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"specula: {photos} is already a Specula project with palette 'mirror-glass'")
    assert "--palette inspection would change it" in err and len(err.splitlines()) == 1
    assert (photos / DB_NAME).read_bytes() == before
    shutil.copy(photos / "001.jpg", photos / "004.jpg")
    assert main(["init", str(photos), "--palette", "mirror-glass"]) == 0  # the same palette is fine
    assert capsys.readouterr().out.startswith(f"project {photos}: 4 images (1 new), palette 'mirror-glass'")


def test_init_reports_unreadable_images_and_still_succeeds(photos: Path, capsys) -> None:
    data = (photos / "001.jpg").read_bytes()
    (photos / "cut.jpg").write_bytes(data[: len(data) // 2])  # a copy cut short
    assert main(["init", str(photos)]) == 0
    captured = capsys.readouterr()
    assert "4 images (4 new, 1 unreadable)" in captured.out
    assert captured.err.startswith("warning: unreadable: cut.jpg: ")


@pytest.mark.parametrize("args, message", [
    (["init", "{tmp}/nowhere"], "does not exist"),
    (["init", "{tmp}", "--palette", "no-such-palette"], "no-such-palette"),
])
def test_init_bad_input_exits_2(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / DB_NAME).exists()


def test_init_on_a_read_only_folder_exits_2(photos: Path, capsys, monkeypatch) -> None:
    # root passes every permission check; the store's check stands in for a DVD
    monkeypatch.setattr(store_module, "_can_write", lambda path: False)
    assert main(["init", str(photos)]) == 2
    err = capsys.readouterr().err
    assert f"cannot create a project in {photos}: the folder {photos} is read-only" in err
    assert not (photos / DB_NAME).exists()


@pytest.mark.parametrize("command", [["propose"], ["stats"], ["export", "--to", "coco", "{tmp}/out.json"]])
def test_project_commands_on_a_plain_folder_point_to_init(photos: Path, tmp_path: Path, capsys,
                                                          command: list[str]) -> None:
    args = [command[0], str(photos)] + [a.format(tmp=tmp_path) for a in command[1:]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == (f"specula: {photos} is not a Specula project yet; create it with `specula init {photos}` "
                   f"(or open it in the editor)\n")
    assert not (photos / DB_NAME).exists() and not (tmp_path / "out.json").exists()


def test_stats_after_init_from_a_terminal_command(photos: Path) -> None:
    """The installed command, as a user types it."""
    specula = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "specula"
    if not specula.exists():
        pytest.skip(f"no installed command at {specula}")
    init = subprocess.run([str(specula), "init", str(photos), "--palette", "inspection"],
                          capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    stats = subprocess.run([str(specula), "stats", str(photos), "--json"], capture_output=True, text=True,
                           timeout=120)
    assert stats.returncode == 0, stats.stderr
    figures = json.loads(stats.stdout)
    assert (figures["images"], figures["palette"]) == (3, "inspection")
