"""Proposals by several workers with one writer: the same result as one process, resumable
after the driver is killed, a killed worker's images retried; and on a local Ray cluster."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data"))
MODEL = "mirror-glass-semantic"
pytestmark = pytest.mark.slow


def _project(folder: Path, n: int) -> Path:
    from annotation.palette import builtin_palette
    from annotation.store import ProjectStore

    src = DATA / "glass-gdd" / "image"
    if not src.is_dir():
        pytest.fail(f"data set missing: {src} (set SPECULA_DATA)")
    folder.mkdir(parents=True)
    for p in sorted(src.glob("*.jpg"))[:n]:
        shutil.copy(p, folder / p.name)
    ProjectStore.open(folder, palette=builtin_palette("mirror-glass")).close()
    return folder


def _proposals(folder: Path) -> dict[str, list[tuple[str, float, bytes]]]:
    """path -> sorted (class, score, packed mask) of its proposals."""
    from annotation.store import ProjectStore

    out: dict[str, list] = {}
    with ProjectStore.open(folder, create=False) as store:
        for rec in store.images():
            rows = [(i.class_name, round(float(i.score), 5), np.packbits(i.mask.to_full()).tobytes())
                    for i in store.instances(rec.id) if i.is_proposal]
            out[rec.path] = sorted(rows)
    return out


def _reference(folder: Path) -> dict:
    from annotation.store import ProjectStore
    from inference.engine import Engine
    from inference.propose import propose_project
    from inference.registry import Registry

    os.environ["SPECULA_ORT_THREADS"] = "1"  # the workers' share of two cores: the same arithmetic
    try:
        engine = Engine(Registry.default(), device="cpu")
        with ProjectStore.open(folder, create=False) as store:
            summary = propose_project(store, engine, MODEL)
        engine.close()
    finally:
        del os.environ["SPECULA_ORT_THREADS"]
    assert summary.images == len(list(folder.glob("*.jpg"))) and not summary.skipped
    return _proposals(folder)


def _cli(folder: Path, *extra: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "specula", "propose", str(folder), "--model", MODEL,
                             "--device", "cpu", *extra], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _proposed_images(folder: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{folder / 'specula.db'}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT COUNT(DISTINCT image_id) FROM interactions WHERE action='propose'").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def test_two_workers_equal_one_process_and_survive_a_killed_driver_and_a_killed_worker(tmp_path: Path) -> None:
    reference = _reference(_project(tmp_path / "one", 40))
    assert sum(len(v) for v in reference.values()) > 40  # real proposals to compare

    # the driver killed half-way (with its workers), then the same command again
    folder = _project(tmp_path / "many", 40)
    run = _cli(folder, "--workers", "2", start_new_session=True)
    deadline = time.monotonic() + 300
    while _proposed_images(folder) < 12 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.2)
    assert run.poll() is None, run.communicate()
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    stored = _proposed_images(folder)
    assert 12 <= stored < 40

    # the second run resumes; one of its workers is killed while it works
    run = _cli(folder, "--workers", "2", start_new_session=True)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and run.poll() is None:
        if _proposed_images(folder) >= stored + 4:
            kids = [k for k in _children(run.pid)]
            workers = [k for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]
            if workers:
                killed = workers[0]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.1)
    out, err = run.communicate(timeout=600)
    assert killed is not None, err
    assert run.returncode == 0, err
    assert f"{stored} images already proposed with {MODEL}@" in err, err
    assert "retried after a worker stopped" in err, err
    assert _proposals(folder) == reference  # every image once, as one process made it

    # a finished job run again does nothing
    again = _cli(folder, "--workers", "2")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0 and "0 proposals on 0 images" in out and "40 images already proposed" in err, err


def test_a_local_ray_cluster_gives_the_one_process_result(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="the cluster extra (pip install 'specula[cluster]') is not installed")
    from annotation.store import ProjectStore
    from inference.batch import propose_with_workers
    from inference.registry import Registry

    reference = _reference(_project(tmp_path / "one", 40))
    folder = _project(tmp_path / "ray", 40)
    registry = Registry.default()
    version = registry.active(MODEL).version
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with ProjectStore.open(folder, create=False) as store:
            summary = propose_with_workers(store, registry, MODEL, version, workers=2, backend="ray", device="cpu")
    finally:
        ray.shutdown()
    assert summary.images == 40 and not summary.skipped, summary
    assert _proposals(folder) == reference


def test_json_progress_for_the_desktop_and_scripts(tmp_path: Path) -> None:
    import json

    folder = _project(tmp_path / "p", 3)
    run = _cli(folder, "--workers", "1", "--json")
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["done"] for e in progress] == [1, 2, 3] and all(e["total"] == 3 for e in progress)
    assert all(e["images_per_second"] > 0 for e in progress) and progress[-1]["eta_s"] == 0
    assert events[-1]["event"] == "done" and events[-1]["images"] == 3 and events[-1]["skipped"] == {}
