"""Train the shipped default models from ../shared/data into ``assets/models``.

    python -m training.default_models --out assets/models --models mirror-glass-semantic --minutes 68 --threads 1
    python -m training.default_models --out assets/models --models cracks-semantic --minutes 55 --epochs 80 --threads 1

- ``mirror-glass-semantic``: GDD (glass) + MSD (mirror); classes mirror, glass,
  glass-in-mirror (no glass-in-mirror data exists in these sets: the class is in the
  output so the model matches the palette, but it was never trained positively);
  384 x 384 input (area-averaged), boundary head for splitting neighbouring panes;
- ``cracks-semantic``: CrackForest (CFD) + DeepCrack; class crack; native resolution
  (256 x 256 crops in training, the whole image padded to a multiple of 32 when proposing).

Each image's mask becomes one accepted instance of its set's class. Images are split
by image, stratified by data set and fixed by ``--seed``: 20 % test (the published
figures and the effort benchmark; never trained on, never used for selection), 10 %
validation (scored every epoch through the pipeline's code; the best epoch is
published), 70 % training. The manifests list the test and validation images and carry
the data terms of each set (all research-only), the validation curve, the test figures,
the training time and throughput. ``scripts/evaluate_default_models.py`` re-scores the
test images through ``specula propose`` / ``export`` / ``eval``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from annotation.mask import Mask
from training.datasets import ImageLabels, ProjectData

REPO = Path(__file__).resolve().parents[1]

TERMS = {
    "glass-gdd": "GDD (Mei et al., CVPR 2020): non-commercial research/teaching only, no redistribution of the data",
    "mirror-msd": "MSD (Yang et al., ICCV 2019): given out on request for non-commercial use; treated as research-only",
    "cracks-cfd": "CrackForest (Shi et al. 2016): non-commercial research purposes only",
    "cracks-deepcrack": "DeepCrack (Liu et al. 2019): non-commercial research and educational purposes only",
}

MODELS = {
    "mirror-glass-semantic": {
        "classes": ["mirror", "glass", "glass-in-mirror"],
        "sets": {"glass-gdd": "glass", "mirror-msd": "mirror"},
        "input_size": (384, 384),
        "extra": {"boundary": True, "flip_tta": "auto", "scale": (0.3, 1.0)},
        "batch_size": 4,
        "notes": "No glass-in-mirror data exists in GDD or MSD: the glass-in-mirror output was never trained "
                 "on a positive example and should not be trusted. MSD has only 10 images, so mirror "
                 "figures rest on very few held-out images.",
    },
    "cracks-semantic": {
        "classes": ["crack"],
        "sets": {"cracks-cfd": "crack", "cracks-deepcrack": "crack"},
        "input_size": None,  # native resolution: a 1-px crack must not be shrunk away
        "extra": {"native": True, "crop": (256, 256), "flip_tta": "auto"},
        "batch_size": 8,
        "notes": "Cracks are thin (about 1.6 % of a CFD image); figures are per pixel without boundary tolerance. "
                 "The model runs on the whole image at its own resolution (padded to a multiple of 32), "
                 "trained on 256 x 256 crops at native resolution.",
    },
}

VAL_FRACTION = 0.1
TEST_FRACTION = 0.2


def data_root() -> Path:
    return Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data"))


def set_labels(set_dir: Path, class_name: str, limit: Optional[int] = None) -> list[ImageLabels]:
    """One ``ImageLabels`` per image/mask pair of a shared data set (mask > 127 = the class)."""
    from PIL import Image

    out = []
    images = sorted((set_dir / "image").glob("*.jpg"))[:limit]
    for i, img in enumerate(images):
        mpath = set_dir / "mask" / f"{img.stem}.png"
        if not mpath.exists():
            continue
        full = np.asarray(Image.open(mpath).convert("L")) > 127
        im = ImageLabels(image_id=i, path=img, size=full.shape, done=True, rel_path=f"{set_dir.name}/image/{img.name}")
        if full.any():
            im.instances.append((class_name, Mask.from_full(full)))
        out.append(im)
    return out


def model_data(name: str, root: Path, limit: Optional[int] = None) -> ProjectData:
    spec = MODELS[name]
    images: list[ImageLabels] = []
    for set_name, cls in spec["sets"].items():
        images += set_labels(root / set_name, cls, limit)
    return ProjectData(project=root, classes=list(spec["classes"]), images=images)


def train_default(name: str, out: Path, minutes: float, seed: int, version: str, device: str,
                  limit: Optional[int] = None, json_lines: bool = True, epochs: int = 1000,
                  val_every: int = 1, lr: Optional[float] = None, threads: Optional[int] = None) -> dict:
    """Train one default model into ``out/<name>/<version>``; returns the trainer's result.

    Split: 20 % of each data set's images are test (the README and effort figures),
    10 % validation (checkpoint selection), by image, fixed by ``seed``.
    """
    from training.common import Reporter, TrainOptions
    from training.semantic import train_semantic

    spec = MODELS[name]
    root = data_root()
    for s in spec["sets"]:
        if not (root / s / "image").is_dir():
            raise SystemExit(f"data set {s} is missing at {root / s}; set SPECULA_DATA")
    data = model_data(name, root, limit)
    notes = {
        "datasets": {s: {"class": c, "images": sum(1 for im in data.images if s in str(im.path)),
                         "terms": TERMS[s], "source_file": f"{s}/SOURCE.txt"} for s, c in spec["sets"].items()},
        "terms_summary": "RESEARCH-ONLY: every training set is licensed for non-commercial research only; "
                         "check before shipping these weights in a commercial product.",
        "notes": spec["notes"],
        "command": f"python -m training.default_models --models {name} --minutes {minutes:g} --epochs {epochs}"
                   + (f" --threads {threads}" if threads else ""),
    }
    opts = TrainOptions(
        project=Path(f"shared-data:{'+'.join(spec['sets'])}"), task="semantic", epochs=epochs, device=device,
        val_fraction=VAL_FRACTION, seed=seed, name=name, version=version, input_size=spec["input_size"],
        minutes=minutes, json=json_lines, batch_size=spec.get("batch_size"), lr=lr, num_threads=threads,
        extra={"write_local": str(out), "training_notes": notes, "val_every": val_every,
               "test_fraction": TEST_FRACTION, **spec.get("extra", {})},
    )
    data.project = opts.project
    t0 = time.monotonic()
    result = train_semantic(opts, Reporter(json_lines), data=data)
    result["wall_seconds"] = time.monotonic() - t0
    return result


def finalize(folder: Path, search: bool = True) -> dict:
    """Choose the pipeline defaults on validation and re-score the test images of a model
    folder written by ``train_default`` (what the trainer does after export; for a folder
    trained before that step existed, or to redo it)."""
    from training.semantic import finalize_folder

    man = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
    name = man["name"]
    images = {im.key: im for im in model_data(name, data_root()).images}
    data = man["training"]["data"]
    val = [images[k] for k in data["val_image_keys"]]
    test = [images[k] for k in data["test_image_keys"]]
    from training.common import Reporter

    return finalize_folder(Path(folder), val, test, MODELS[name]["classes"], search=search, reporter=Reporter(True))


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.default_models", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "assets" / "models")
    ap.add_argument("--minutes", type=float, default=12.0, help="training time budget per model")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--version", default="1")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None, help="images per set (smoke runs)")
    ap.add_argument("--epochs", type=int, default=1000, help="epochs (the cosine schedule spans the epochs or the "
                                                              "time budget, whichever ends first)")
    ap.add_argument("--val-every", type=int, default=1, help="epochs between validations")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--finalize", type=Path, default=None, metavar="FOLDER",
                    help="only choose the pipeline defaults on validation and re-score the test images of FOLDER")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.finalize:
        man = finalize(args.finalize)
        print(json.dumps({"event": "finalized", "defaults": man["defaults"],
                          "test": (man["metrics"].get("test") or {}).get("mean_iou")}), flush=True)
        return 0
    for name in args.models:
        res = train_default(name, args.out, args.minutes, args.seed, args.version, args.device, args.limit,
                            epochs=args.epochs, val_every=args.val_every, lr=args.lr, threads=args.threads)
        man = res["manifest"]
        print(json.dumps({"event": "default_model", "name": name, "path": str(res["path"]),
                          "wall_seconds": round(res["wall_seconds"], 1), "images_per_second": res["images_per_second"],
                          "best_epoch": man["training"]["best_epoch"],
                          "validation": (res.get("protocol") or {}).get("mean_iou"),
                          "test": (man["metrics"].get("test") or {}).get("mean_iou")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
