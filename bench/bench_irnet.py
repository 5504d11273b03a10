"""CAM, CAM + AdvCAM and CAM + IRNet (002) on held-out crack photos: per-image IoU and mask AP50.

    .venv/bin/python bench/bench_irnet.py [--datasets cracks-cfd cracks-deepcrack] [--train 20] [--test 10]
        [--cam-minutes 4] [--irnet-minutes 1.5] [--threads 1] [--json out.json]

Per data set (``../shared/data`` or ``$SPECULA_DATA``): a project in a temporary folder
with ``--train`` photos and only weak clicks (``training.datasets.expert_clicks``: one
click per crack piece and per clean patch, as an expert places them; no masks), a CAM
model trained for ``--cam-minutes`` (``training.cam``), IRNet trained for
``--irnet-minutes`` on its CAMs (``training.irnet``), then ``--test`` other photos
proposed through the engine, the product's path, with the class gate open
(``class_threshold`` 0: every test photo holds cracks, and what is measured is the mask):

- ``CAM``: the CAM pipeline, no AdvCAM (the noise floor and threshold its trainer picked, closing, components);
- ``CAM + AdvCAM(2)``: the CAM pipeline, two AdvCAM steps;
- ``CAM + boundary``: the irnet pipeline, one instance per class, random walk (002 Table 1, row 2);
- ``CAM + IRNet``: the irnet pipeline, displacement field and random walk (002's method);
- ``all crack``: every pixel proposed (the trivial baseline of the IoU).

IoU: of the union of the proposals with the truth, per image, averaged. AP50: COCO mask
AP at IoU 0.5 (``annotation.metrics.coco_mask_ap``), truth instances are the connected
pieces of the mask (8-connected), a proposal's score is the pipeline's.
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data"))
CLASS = "crack"


def read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L")) > 127


def split(dataset: str, n_train: int, n_test: int, seed: int = 0) -> tuple[list[Path], list[Path]]:
    images = sorted((DATA / dataset / "image").glob("*.jpg"))
    order = np.random.default_rng(seed).permutation(len(images))
    picked = [images[i] for i in order]
    return picked[:n_train], picked[n_train: n_train + n_test]


def make_project(folder: Path, dataset: str, photos: list[Path]) -> Path:
    """A project of ``photos`` with the weak clicks an expert would give, and nothing else."""
    from annotation.palette import builtin_palette
    from annotation.store import ProjectStore
    from training.datasets import expert_clicks, log_weak_clicks

    folder.mkdir(parents=True)
    for p in photos:
        shutil.copy(p, folder / p.name)
    store = ProjectStore.open(folder, palette=builtin_palette("inspection"))
    try:
        for rec in store.images():
            truth = read_mask(DATA / dataset / "mask" / f"{Path(rec.path).stem}.png")
            log_weak_clicks(store, rec.id, expert_clicks(truth, CLASS))
    finally:
        store.close()
    return folder


def union_iou(proposals, truth: np.ndarray) -> float:
    pred = np.zeros(truth.shape, bool)
    for p in proposals:
        if p.class_name == CLASS:
            pred |= p.mask.to_full()
    union = int((pred | truth).sum())
    return float((pred & truth).sum()) / union if union else 1.0


def run_dataset(dataset: str, args: argparse.Namespace, work: Path) -> dict:
    from annotation.mask import Mask
    from annotation.metrics import CocoInstance, coco_mask_ap
    from inference.engine import Engine
    from inference.registry import Registry
    from training.cam import train_cam
    from training.common import Reporter, TrainOptions
    from training.datasets import read_rgb
    from training.irnet import train_irnet

    train, test = split(dataset, args.train, args.test, args.seed)
    project = make_project(work / dataset, dataset, train)
    reg = work / "registry"
    quiet = Reporter(enabled=False)
    t0 = time.perf_counter()
    train_cam(TrainOptions(project=project, task="cam", epochs=1000, minutes=args.cam_minutes, registry=reg,
                           name=f"{dataset}-cam", num_threads=args.threads, val_fraction=0.15,
                           extra={"score_iterations": ()}), quiet)
    cam_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ir = train_irnet(TrainOptions(project=project, task="irnet", max_steps=args.irnet_steps,
                                  minutes=args.irnet_minutes, registry=reg, name=f"{dataset}-irnet",
                                  num_threads=args.threads, val_fraction=0.0,
                                  extra={"cam_model": f"{dataset}-cam", "score_images": 0}), quiet)
    irnet_s = time.perf_counter() - t0
    methods = {
        "CAM": (f"{dataset}-cam", {"iterations": 0, "class_threshold": 0.0}),
        "CAM + AdvCAM(2)": (f"{dataset}-cam", {"iterations": 2, "class_threshold": 0.0}),
        "CAM + boundary": (f"{dataset}-irnet", {"mode": "boundary", "class_threshold": 0.0}),
        "CAM + IRNet": (f"{dataset}-irnet", {"mode": "instances", "class_threshold": 0.0}),
    }
    engine = Engine(Registry(reg), device="cpu")
    ious: dict[str, list[float]] = {m: [] for m in [*methods, "all crack"]}
    preds: dict[str, dict[str, list]] = {m: {} for m in methods}
    counts: dict[str, list[int]] = {m: [] for m in methods}
    seconds: dict[str, float] = {m: 0.0 for m in methods}
    gt: dict[str, list] = {}
    sizes: dict[str, tuple[int, int]] = {}
    try:
        for photo in test:
            rgb = read_rgb(photo)
            truth = read_mask(DATA / dataset / "mask" / f"{photo.stem}.png")
            key = photo.stem
            sizes[key] = truth.shape
            gt[key] = [CocoInstance(CLASS, m) for m in Mask.from_full(truth).components()]
            ious["all crack"].append(float(truth.mean()))
            for name, (model, params) in methods.items():
                t = time.perf_counter()
                props = engine.propose(rgb, model=model, params=params)
                seconds[name] += time.perf_counter() - t
                ious[name].append(union_iou(props, truth))
                counts[name].append(len(props))
                preds[name][key] = [CocoInstance(p.class_name, p.mask, p.score) for p in props]
    finally:
        engine.close()
    rows = {}
    for name in [*methods, "all crack"]:
        row = {"iou": float(np.mean(ious[name])), "per_image_iou": [round(v, 4) for v in ious[name]]}
        if name in methods:
            ap = coco_mask_ap(gt, preds[name], sizes, classes=[CLASS], per_class=False)
            row.update(ap50=ap["AP50"], ap=ap["AP"], proposals_per_image=float(np.mean(counts[name])),
                       seconds_per_image=seconds[name] / max(1, len(test)))
        rows[name] = row
    man = ir["manifest"]["training"]
    return {"dataset": dataset, "train_images": len(train), "test_images": len(test),
            "cam_train_seconds": round(cam_s, 1), "irnet_train_seconds": round(irnet_s, 1),
            "irnet_steps": man["steps"], "irnet_labels": man["labels"], "irnet_final_parts": man["last_parts"],
            "methods": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["cracks-cfd", "cracks-deepcrack"])
    ap.add_argument("--train", type=int, default=20)
    ap.add_argument("--test", type=int, default=10)
    ap.add_argument("--cam-minutes", type=float, default=4.0)
    ap.add_argument("--irnet-minutes", type=float, default=1.5)
    ap.add_argument("--irnet-steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("SPECULA_ORT_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-irnet-") as tmp:
        os.environ.setdefault("SPECULA_HOME", str(Path(tmp) / "home"))
        for ds in args.datasets:
            if not (DATA / ds / "image").is_dir():
                print(f"{ds}: missing at {DATA / ds}; skipped", file=sys.stderr)
                continue
            res = run_dataset(ds, args, Path(tmp))
            results.append(res)
            print(f"\n{ds}: {res['train_images']} training photos (weak clicks only), {res['test_images']} held out; "
                  f"CAM trained {res['cam_train_seconds']} s, IRNet {res['irnet_train_seconds']} s "
                  f"({res['irnet_steps']} steps)")
            print("| method | IoU per image | mask AP50 | proposals / image | s / image |")
            print("|---|---|---|---|---|")
            for name, row in res["methods"].items():
                if "ap50" in row:
                    print(f"| {name} | {row['iou']:.3f} | {max(0.0, row['ap50']):.3f} | "
                          f"{row['proposals_per_image']:.1f} | {row['seconds_per_image']:.2f} |")
                else:
                    print(f"| {name} | {row['iou']:.3f} | - | - | - |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
