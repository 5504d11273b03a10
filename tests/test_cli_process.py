"""The `specula` command as a process: output into a closed pipe, and --help anywhere."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from specula.cli import EXIT_BROKEN_PIPE, main

REPO = Path(__file__).resolve().parents[1]


def require_data(name: str) -> Path:
    """A shared data set (as tests/conftest.py finds it), or skip saying which is missing."""
    path = Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data")) / name
    if not path.exists():
        pytest.skip(f"data set {name} not found at {path} (set SPECULA_DATA)")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Two real glass photos made a project."""
    images = require_data("glass-gdd") / "image"
    root = tmp_path / "glass"
    root.mkdir()
    for name in ("1.jpg", "1000.jpg"):
        shutil.copy(images / name, root / name)
    assert main(["init", str(root)]) == 0
    return root


def _specula(*args: str) -> list[str]:
    return [sys.executable, "-m", "specula", *args]


@pytest.mark.parametrize("command", [["stats"], ["stats", "--json"]])
def test_output_into_a_closed_pipe_ends_quietly(project: Path, command: list[str]) -> None:
    """`specula stats P | head` when head has gone: no traceback, the conventional 141."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # write at once, so the write meets the closed pipe
    proc = subprocess.Popen(_specula(command[0], str(project), *command[1:]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=REPO)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE == 141
    assert err == ""


def test_buffered_output_into_a_closed_pipe_ends_quietly(project: Path) -> None:
    """The same when the write happens only at the final flush (block-buffered stdout)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(_specula("stats", str(project)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=REPO)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err and err == ""


def _no_display() -> dict[str, str]:
    """The environment of a machine without a display: there `specula FOLDER` runs the headless job."""
    return {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}


@pytest.mark.parametrize("args", [["{p}", "--help"], ["{p}", "-h"], ["--help", "{p}"], ["{p}", "--headless", "-h"]])
def test_help_anywhere_prints_help_and_runs_nothing(project: Path, args: list[str]) -> None:
    # a child process with no display: without the fix this runs the headless job (and
    # writes exports/), it never opens a window that would wait for a user
    done = subprocess.run(_specula(*[a.format(p=project) for a in args]), capture_output=True, text=True,
                          env=_no_display(), cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: specula") and "import" in done.stdout and "stats" in done.stdout
    assert not (project / "exports").exists()  # the headless job did not run


def test_help_of_a_subcommand_still_works(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["import", "--help"])
    assert stop.value.code == 0
    assert "--from" in capsys.readouterr().out


def test_a_reason_is_one_printable_line_whatever_it_quotes(capsys) -> None:
    """Messages quote names from files; a newline, an escape sequence or a lone surrogate
    in them must not break the one line, drive the terminal or fail to encode."""
    from specula.cli import fail

    assert fail("class 'a\nb\x1b[2J\ud800' is bad") == 2
    err = capsys.readouterr().err
    assert err == "specula: class 'a\\x0ab\\x1b[2J\\ud800' is bad\n"
