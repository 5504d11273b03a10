"""The real application, killed (SIGKILL) at random moments while a script drives it,
loses no finished action and keeps no action in part.

A child process (``app_crash_driver.py``) opens the real main window offscreen and does
brush strokes, polygons, merges, splits, deletes, proposals through the worker, batch
accepts, "reject the rest", undo and redo, reporting each action's start, each commit
(with a digest of the whole project as that commit leaves it) and each action's end.
After every kill the parent checks:

- ``PRAGMA integrity_check`` is ok;
- the project is exactly as the last finished action left it, or exactly as the action
  in flight left it at its commit: never a state in between;
- every finished action made at most one commit (one user action, one transaction).

``SPECULA_APP_CRASH_KILLS`` sets the number of kills (CI: a short run; the README gives
the long one, 200 kills).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app_crash_driver import project_digest
from desktop_helpers import GDD

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
KILLS = int(os.environ.get("SPECULA_APP_CRASH_KILLS", "8"))
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")]


def _lines(side: Path) -> list[list[str]]:
    if not side.exists():
        return []
    text = side.read_text()
    complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    return [ln.split() for ln in complete.splitlines() if ln.strip()]


def _check(db_path: Path, side: Path) -> tuple[str, int, bool]:
    """Verify the project after a kill. Returns (its digest, actions finished so far,
    whether the kill came after the in-flight action's commit)."""
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        digest = project_digest(db)
    finally:
        db.close()
    committed = None  # the project as the last finished action (or the last check) left it
    finished = 0
    current, made = None, []  # the action begun and not finished, and its commits
    for ln in _lines(side):
        if ln[0] == "verified":  # the state found after an earlier kill
            committed, current, made = ln[1], None, []
        elif ln[0] == "begin":
            current, made = ln, []
        elif ln[0] == "commit":
            made.append(ln[2])
        elif ln[0] == "done":
            if int(ln[1]) > 0:  # action 0 is the start-up (opening, scanning)
                assert len(made) <= 1, f"action {current} made {len(made)} commits"
                finished += 1
            if made:
                committed = made[-1]
            current, made = None, []
    if current is not None and int(current[1]) > 0:
        assert len(made) <= 1, f"action {current} made {len(made)} commits before the kill"
    allowed = {committed, *made[-1:]} - {None}
    if allowed:
        assert digest in allowed, (
            f"the project is in a state no finished action left it in (in flight: {current}, "
            f"{len(made)} commit(s) of it reported)")
    return digest, finished, bool(made) and digest == made[-1]


@pytest.mark.timeout(3600)
def test_killed_application_keeps_whole_actions_only(tmp_path):
    if not (GDD / "image" / "1000.jpg").exists():
        pytest.skip(f"GDD images not found under {GDD} (set SPECULA_DATA)")
    pytest.importorskip("onnx")
    from desktop_models import publish_bright

    seed = int(os.environ.get("SPECULA_CRASH_SEED", "20261201"))
    rng = random.Random(seed)
    proj = tmp_path / "project"
    proj.mkdir()
    shutil.copy(GDD / "image" / "1000.jpg", proj / "1000.jpg")
    home = tmp_path / "home"
    from inference.registry import Registry

    publish_bright(Registry(home / "models").root, tmp_path / "build", min_area=800)
    side = tmp_path / "side.txt"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", SPECULA_HOME=str(home),
               PYTHONPATH=os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")]))
    mid_commit = 0
    finished = 0
    for round_no in range(KILLS):
        proc = subprocess.Popen([sys.executable, str(HERE / "app_crash_driver.py"), str(proj), str(side),
                                 str(rng.randrange(1 << 30))],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            ready = time.monotonic() + 120
            while time.monotonic() < ready and proc.poll() is None:
                if any(ln[0] == "done" and ln[1] == "0" for ln in _lines(side)[-50:]):
                    break
                time.sleep(0.02)
            time.sleep(rng.uniform(0.2, 4.0))
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL, f"the application ended by itself (seed {seed}):\n{err[-3000:]}"
        assert "Traceback" not in err, f"round {round_no} (seed {seed}) printed a traceback:\n{err[-3000:]}"
        digest, finished, inside = _check(proj / "specula.db", side)
        mid_commit += inside
        text = side.read_text()
        side.write_text(text[: text.rfind("\n") + 1] + f"verified {digest}\n")  # drop a line cut by the kill
    print(f"{KILLS} kills, {finished} actions finished, {mid_commit} kills between a commit and its report")
    assert finished >= KILLS, f"only {finished} actions finished in {KILLS} rounds (seed {seed})"
