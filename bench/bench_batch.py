"""Proposals by several workers: images per second with 1 and with N worker processes, the
writer's sustained rate, and the database's size per million masks, in one run.

    .venv/bin/python bench/bench_batch.py [--images 40] [--workers 2] [--model mirror-glass-semantic]

- throughput: the same ``--images`` real GDD photos (``../shared/data`` or
  ``$SPECULA_DATA``) proposed by ``specula propose --workers 1`` and ``--workers N``
  (``inference.batch``: worker processes compute, the driver writes), alternately, twice
  each, into fresh projects; images per second from the process's start to its end
  (worker start-up included) and the ratio (aim: at least 0.8 x N);
- writer: the driver's storing alone (``store_proposals`` in transactions of
  ``COMMIT_EVERY`` images) of the proposals the run made, replayed many times: images and
  masks stored per second;
- size: the project file's bytes per stored mask (RLE and log rows), times a million.

Then a projection for 8 million images (004 ran its model over Places' 8 million): hours on
one CPU worker, on N, and the writer's share.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data"))


def make_project(folder: Path, photos: list[Path]) -> Path:
    from annotation.palette import builtin_palette
    from annotation.store import ProjectStore

    folder.mkdir(parents=True)
    for p in photos:
        shutil.copy(p, folder / p.name)
    ProjectStore.open(folder, palette=builtin_palette("mirror-glass")).close()
    return folder


def db_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("specula.db*"))


def timed_run(folder: Path, model: str, workers: int, threads: int) -> float:
    # one ONNX Runtime thread per worker in both runs: the figure is how the work scales
    # with workers (one worker with every core already uses them all through its threads)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SPECULA_ORT_THREADS": str(threads)}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "specula", "propose", str(folder), "--model", model, "--device", "cpu",
                          "--workers", str(workers)], cwd=REPO, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"propose failed: {res.stderr[-2000:]}")
    return time.perf_counter() - t0


def writer_rate(folder: Path, seconds: float = 10.0) -> tuple[float, float, int]:
    """(images/s, masks/s, masks) replaying the stored proposals of ``folder`` into a copy."""
    from annotation.store import ProjectStore
    from inference.batch import COMMIT_EVERY
    from inference.propose import store_proposals

    with ProjectStore.open(folder, create=False) as src:
        per_image = [(rec.id, [i for i in src.instances(rec.id) if i.is_proposal]) for rec in src.images()]
    target = folder.parent / "writer"
    shutil.copytree(folder, target)
    images = masks = 0
    with ProjectStore.open(target, create=False) as st:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for k in range(0, len(per_image), COMMIT_EVERY):
                with st.transaction():
                    for image_id, insts in per_image[k : k + COMMIT_EVERY]:
                        for inst in insts:
                            inst.id = None
                        store_proposals(st, image_id, insts, model="bench", version="1", proposals=len(insts))
                        images += 1
                        masks += len(insts)
        elapsed = time.perf_counter() - t0
    total = sum(len(i) for _, i in per_image)
    return images / elapsed, masks / elapsed, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", default="mirror-glass-semantic")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per worker (default 1)")
    args = ap.parse_args()
    photos = sorted((DATA / "glass-gdd" / "image").glob("*.jpg"))[: args.images]
    if len(photos) < args.images:
        raise SystemExit(f"need {args.images} photos in {DATA / 'glass-gdd' / 'image'}")
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        times: dict[int, list[float]] = {1: [], args.workers: []}
        last = None
        for rep in range(2):
            for n in (1, args.workers):
                folder = make_project(Path(tmp) / f"w{n}-{rep}", photos)
                before = db_bytes(folder)
                times[n].append(timed_run(folder, args.model, n, args.threads))
                last = folder
        assert last is not None
        rate = {n: len(photos) / statistics.median(ts) for n, ts in times.items()}
        size = db_bytes(last) - before  # what the proposals and their log rows added
        img_s, mask_s, masks = writer_rate(last)
    per_million = size / max(1, masks) * 1e6
    print(f"{len(photos)} GDD photos, {args.model}, CPU ({os.cpu_count()} cores, {args.threads} thread(s) per "
          f"worker), worker start-up included:")
    print(f"  1 worker: {rate[1]:.2f} images/s; {args.workers} workers: {rate[args.workers]:.2f} images/s; "
          f"ratio {rate[args.workers] / rate[1]:.2f} (aim >= {0.8 * args.workers:.1f})")
    print(f"  writer alone: {img_s:.0f} images/s, {mask_s:.0f} masks/s (transactions of 16 images)")
    print(f"  database: {size / 1e6:.1f} MB for {masks} masks: {per_million / 1e9:.2f} GB per million masks")
    n_images = 8e6
    masks_per_image = masks / len(photos)
    print(f"projection for 8 million images ({masks_per_image:.1f} masks each, {n_images * masks_per_image / 1e6:.0f} "
          f"million masks):")
    print(f"  one CPU worker like this one: {n_images / rate[1] / 3600:.0f} h; the writer alone needs "
          f"{n_images / img_s / 3600:.1f} h, so it keeps up with about {img_s / rate[1]:.0f} such workers")
    print(f"  database: {n_images * masks_per_image * per_million / 1e6 / 1e9:.0f} GB in one SQLite file")


if __name__ == "__main__":
    main()
