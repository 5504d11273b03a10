"""CAM proposals on held-out crack photos against trivial baselines, in one CPU run.

    .venv/bin/python bench/bench_cam.py [--sets cracks-cfd cracks-deepcrack] [--train 8] [--held-out 8]
                                        [--minutes 3] [--iterations 0 2] [--maps DIR] [--extra JSON] [--params JSON]

For each data set (``../shared/data`` or ``$SPECULA_DATA``): a project of the first
``--train`` photos whose masks are accepted and which are marked done, so the trainer
derives the weak clicks an expert would place (one per crack piece of each click patch,
one per clean patch: ``training.datasets.expert_clicks``); ``training.cam.train_cam``
for ``--minutes``; then the published model proposes through the engine (the product's
path, the manifest's post-processing) on the last ``--held-out`` photos, with each number
of AdvCAM ``--iterations``. Printed per image and on average: IoU of the union of the
proposals with the crack mask and the share of the photo proposed; beside them the
all-crack baseline (every pixel proposed) and two edge detectors whose settings are
picked on the training photos (Canny on the blurred photo, dilated; Sobel magnitude
above a quantile). ``--maps DIR`` writes photo | CAM | truth | proposal PNGs. ``--extra``
passes trainer options and ``--params`` pipeline parameters: ``--extra '{"topk_fraction": 0}'
--params '{"floor_quantile": 0, "threshold": 0.1}'`` is the trainer and pipeline before
issue 17 (mean-pooled crops, CAM divided by its maximum and cut at 0.1).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CANNY_LOW = (25, 50, 100, 150, 200)
DILATIONS = (1, 3, 5)
SOBEL_QUANTILES = (0.9, 0.95, 0.97, 0.98, 0.99)


def data_root() -> Path:
    return Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data"))


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    union = int((pred | truth).sum())
    return float((pred & truth).sum()) / union if union else 1.0


def truth_of(set_dir: Path, stem: str) -> np.ndarray:
    return cv2.imread(str(set_dir / "mask" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 127


def canny(gray: np.ndarray, low: int, dilation: int) -> np.ndarray:
    edges = cv2.Canny(cv2.GaussianBlur(gray, (5, 5), 0), low, 2 * low)
    return cv2.dilate(edges, np.ones((dilation, dilation), np.uint8)) > 0


def sobel(gray: np.ndarray, quantile: float) -> np.ndarray:
    g = cv2.GaussianBlur(gray, (5, 5), 0).astype(np.float32)
    mag = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    return mag > np.quantile(mag, quantile)


def tuned(detector, settings, train: list[tuple[np.ndarray, np.ndarray]]):
    """The setting with the best mean IoU on the training photos."""
    return max(settings, key=lambda s: np.mean([iou(detector(g, *s), t) for g, t in train]))


def build(folder: Path, set_dir: Path, stems: list[str]):
    """A project of ``stems``: each crack piece an accepted instance, every photo done."""
    from annotation.document import ImageStatus, Instance, InstanceState
    from annotation.mask import Mask
    from annotation.palette import builtin_palette
    from annotation.store import ProjectStore

    folder.mkdir(parents=True)
    for s in stems:
        shutil.copy(set_dir / "image" / f"{s}.jpg", folder / f"{s}.jpg")
    store = ProjectStore.open(folder, palette=builtin_palette("inspection"))
    for rec in store.images():
        pieces = Mask.from_full(truth_of(set_dir, Path(rec.path).stem)).components()
        store.add_instances(Instance(rec.id, "crack", m, InstanceState.ACCEPTED) for m in pieces)
        store.set_image_status(rec.id, ImageStatus.DONE)
    return store


def run_set(name: str, args, work: Path) -> dict:
    from inference.engine import Engine
    from inference.registry import Registry
    from training.cam import train_cam
    from training.common import Reporter, TrainOptions
    from training.datasets import read_rgb

    set_dir = data_root() / name
    stems = sorted(p.stem for p in (set_dir / "image").glob("*.jpg"))
    train_stems, held = stems[: args.train], stems[-args.held_out:]
    store = build(work / name, set_dir, train_stems)
    store.close()
    reg = work / f"{name}-registry"
    t0 = time.perf_counter()
    out = train_cam(TrainOptions(project=work / name, task="cam", epochs=1000, minutes=args.minutes, registry=reg,
                                 name="bench-cam", num_threads=args.threads, seed=args.seed,
                                 extra=dict(args.extra)),
                    reporter=Reporter(enabled=False))
    train_s = time.perf_counter() - t0
    man = out["info"].manifest
    rows: dict[str, list[float]] = {f"cam_{it}": [] for it in args.iterations}
    cover: dict[str, list[float]] = {f"cam_{it}": [] for it in args.iterations}
    rows.update({"all_crack": [], "canny": [], "sobel": []})
    train_gray = [(cv2.imread(str(set_dir / "image" / f"{s}.jpg"), cv2.IMREAD_GRAYSCALE), truth_of(set_dir, s))
                  for s in train_stems]
    c_set = tuned(canny, [(lo, d) for lo in CANNY_LOW for d in DILATIONS], train_gray)
    s_set = tuned(sobel, [(q,) for q in SOBEL_QUANTILES], train_gray)
    engine = Engine(Registry(reg), device="cpu")
    try:
        for s in held:
            rgb = read_rgb(set_dir / "image" / f"{s}.jpg")
            truth = truth_of(set_dir, s)
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            for it in args.iterations:
                pred = np.zeros(truth.shape, bool)
                for p in engine.propose(rgb, model="bench-cam", params={**args.params, "iterations": int(it)}):
                    pred |= p.mask.to_full()
                rows[f"cam_{it}"].append(iou(pred, truth))
                cover[f"cam_{it}"].append(float(pred.mean()))
                if args.maps and it == args.iterations[-1]:
                    cam = engine.pipeline("bench-cam").cam_maps(rgb, {**args.params, "iterations": int(it), "class_threshold": 0.0})[0][0]
                    Path(args.maps).mkdir(parents=True, exist_ok=True)
                    strip = np.concatenate([gray, (cam * 255).astype(np.uint8), truth.astype(np.uint8) * 255,
                                            pred.astype(np.uint8) * 255], 1)
                    cv2.imwrite(str(Path(args.maps) / f"{name}_{s}_it{it}.png"), strip)
            rows["all_crack"].append(iou(np.ones_like(truth), truth))
            rows["canny"].append(iou(canny(gray, *c_set), truth))
            rows["sobel"].append(iou(sobel(gray, *s_set), truth))
    finally:
        engine.close()
    return {"set": name, "train_images": len(train_stems), "held_out": held, "train_seconds": round(train_s, 1),
            "epochs": man.training.get("epochs_run"), "postprocessing": {**man.defaults, **args.params},
            "classification": man.metrics.get("validation_classification"),
            "canny_setting": c_set, "sobel_setting": s_set,
            "iou": {k: [round(v, 4) for v in vs] for k, vs in rows.items()},
            "mean_iou": {k: round(float(np.mean(vs)), 4) for k, vs in rows.items()},
            "coverage_max": {k: round(float(np.max(vs)), 4) for k, vs in cover.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=["cracks-cfd", "cracks-deepcrack"])
    ap.add_argument("--train", type=int, default=8)
    ap.add_argument("--held-out", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--iterations", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--maps", default=None)
    ap.add_argument("--params", type=json.loads, default={},
                    help='pipeline parameters over the manifest\'s, e.g. \'{"floor_quantile": 0, "threshold": 0.1}\'')
    ap.add_argument("--extra", type=json.loads, default={}, help='trainer options, e.g. \'{"topk_fraction": 0.1}\'')
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-cam-"))
    try:
        for name in args.sets:
            r = run_set(name, args, work)
            print(json.dumps(r))
            print(f"\n{name}: {r['train_images']} training photos, {len(r['held_out'])} held out, "
                  f"{r['train_seconds']} s training ({r['epochs']} epochs), post-processing {r['postprocessing']}")
            for k, vs in r["iou"].items():
                print(f"  {k:10s} mean IoU {r['mean_iou'][k]:.3f}   per image {' '.join(f'{v:.3f}' for v in vs)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
