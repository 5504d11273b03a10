"""Train the shipped default models from ../shared/data into ``assets/models``.

    python -m training.default_models --out assets/models --models mirror-glass-semantic --minutes 68 --threads 1
    python -m training.default_models --out assets/models --models cracks-semantic --minutes 55 --epochs 80 --threads 1

- ``mirror-glass-semantic``: GDD (glass) + MSD (mirror); classes mirror, glass,
  glass-in-mirror (no glass-in-mirror data exists in these sets: the class is in the
  output so the model matches the palette, but it was never trained positively);
  384 x 384 input (area-averaged), boundary head for splitting neighbouring panes;
- ``cracks-semantic``: CrackForest (CFD) + DeepCrack; class crack; native resolution
  (256 x 256 crops in training, the whole image padded to a multiple of 32 when proposing);
- ``click-refine`` (only when named): the class-agnostic click-refinement model
  (``training.clicks``) on every mask of the four sets and the format fixtures, the
  semantic models' test images excluded (``--fusion``, ``--input-size``, ``--minutes``).

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


# --------------------------------------------------------------------------- the click model
# ``click-refine`` (task clicks, training.clicks): class-agnostic, trained on every mask of
# ../shared/data. Its test images are the shipped semantic models' (their manifests'
# test_image_keys), never trained on, so ``specula bench clicks`` scores images neither model
# saw; their validation images choose its checkpoint.
CLICK_MODELS = {
    "click-refine": {
        "sets": ("glass-gdd", "mirror-msd", "cracks-cfd", "cracks-deepcrack"),
        # the semantic model whose proposals are real previous masks, and its class, per set
        "proposals": {"glass-gdd": ("mirror-glass-semantic", "glass"), "mirror-msd": ("mirror-glass-semantic", "mirror"),
                      "cracks-cfd": ("cracks-semantic", "crack"), "cracks-deepcrack": ("cracks-semantic", "crack")},
        "test_sets": ("glass-gdd", "cracks-deepcrack", "cracks-cfd"),
        "split_from": ("mirror-glass-semantic", "cracks-semantic"),
        # share of training objects per set: glass and cracks alike, the rest for variety
        "group_weights": {"glass-gdd": 0.4, "cracks-deepcrack": 0.2, "cracks-cfd": 0.2, "mirror-msd": 0.05,
                          "formats": 0.15},
        "input_size": (384, 384),
        "notes": "Class-agnostic click refinement; objects are the 8-connected components (>= 50 px) of each mask "
                 "(cracks: each piece of a crack network), and the instances of the format fixtures that have "
                 "their image.",
    },
}

# format fixtures with real images and instance masks: (importer, path below formats/)
FORMAT_FIXTURES = (
    ("labelme", "labelme-examples/instance_segmentation/data_annotated"),
    ("labelme", "labelme-examples/video_annotation/data_annotated"),
    ("labelme", "labelme-examples/tutorial/apc2016_obj3.json"),
    ("labelme", "labelme-examples/primitives/primitives.json"),
    ("coco", "sahi-coco/terrain_all_coco.json"),
    ("coco", "pycococreator/example_data/annotations/coco_example.json"),
    ("instance-masks", "pycococreator/examples/shapes/train/annotations"),
)
FORMAT_TERMS = ("labelme examples: GPL-3.0 repository, PASCAL VOC / APC photos (internal testing); SAHI: MIT; "
                "pycococreator: Apache-2.0")


def format_fixture_images(root: Path, min_area: int = 50):
    """Click images from the format fixtures: every non-crowd instance (components of at
    least ``min_area`` px) of an image that is on disk; ``__ignore__`` regions are skipped."""
    from annotation.formats.coco import import_coco
    from annotation.formats.common import FormatError
    from annotation.formats.instance_masks import import_instance_masks
    from annotation.formats.labelme import import_labelme
    from training.clicks import ClickImage, objects_of

    importers = {"labelme": import_labelme, "coco": import_coco, "instance-masks": import_instance_masks}
    out, seen = [], set()
    for kind, rel in FORMAT_FIXTURES:
        path = root / "formats" / rel
        if not path.exists():
            continue
        try:
            result = importers[kind](path)
        except (FormatError, OSError, ValueError):
            continue
        for im in result.images:
            if im.file is None or not Path(im.file).is_file() or str(im.file) in seen:
                continue
            seen.add(str(im.file))
            objs = objects_of([i.mask for i in im.instances if not i.iscrowd and not i.class_name.startswith("__")],
                              min_area)
            if objs and min(im.size) >= 64:
                key = str(Path(im.file).resolve().relative_to(root.resolve()))
                out.append(ClickImage(Path(im.file), tuple(im.size), objs, "formats", key))
    return out


def _semantic_split(names: Sequence[str]) -> tuple[set[str], set[str]]:
    """(test keys, validation keys) of the shipped semantic models (latest shipped version)."""
    test, val = set(), set()
    for name in names:
        folder = REPO / "assets" / "models" / name
        versions = sorted((p for p in folder.iterdir() if (p / "manifest.json").is_file()),
                          key=lambda p: int(p.name) if p.name.isdigit() else -1) if folder.is_dir() else []
        if not versions:
            raise SystemExit(f"{folder}: the shipped {name} (whose test images the click model must not see) is missing")
        data = json.loads((versions[-1] / "manifest.json").read_text(encoding="utf-8"))["training"]["data"]
        test |= set(data.get("test_image_keys", []))
        val |= set(data.get("val_image_keys", []))
    return test, val


def proposal_masks(set_name: str, model: str, class_name: str, images: Sequence[Path], cache: Path,
                   progress: bool = False) -> dict[str, Optional[Mask]]:
    """The shipped ``model``'s ``class_name`` proposals of each image (their union), by file
    stem, cached as PNG under ``cache/<set>/`` (outside the repository)."""
    from PIL import Image

    folder = cache / set_name / model
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Optional[Mask]] = {}
    pipe = None
    for n, path in enumerate(images):
        f = folder / f"{path.stem}.png"
        if not f.is_file():
            if pipe is None:
                from inference.pipelines import Runtimes, build_pipeline
                from inference.registry import Registry
                from inference.runtime import OnnxRuntime

                reg = Registry(cache / "no-user-registry", [REPO / "assets" / "models"])
                pipe = build_pipeline(reg.active(model), Runtimes(OnnxRuntime("cpu")))
            from training.datasets import read_rgb

            rgb = read_rgb(path)
            full = np.zeros(rgb.shape[:2], bool)
            for p in pipe.propose(rgb):
                if p.class_name == class_name:
                    full |= p.mask.to_full()
            Image.fromarray(full.astype(np.uint8) * 255).save(f)
            if progress:
                print(f"\rproposals {set_name} {n + 1}/{len(images)}", end="", file=sys.stderr, flush=True)
        full = np.asarray(Image.open(f).convert("L")) > 127
        out[path.stem] = Mask.from_full(full) if full.any() else None
    if progress:
        print(file=sys.stderr)
    return out


def click_data(name: str, root: Path, limit: Optional[int] = None, proposals: bool = True,
               cache: Optional[Path] = None):
    """The default click model's ``ClickData``: the shared sets' objects split by the shipped
    semantic models' lists (their test images excluded, their validation images for the
    checkpoint), plus the format fixtures (training only)."""
    from training.clicks import ClickData, ClickImage, objects_of

    spec = CLICK_MODELS[name]
    test_keys, val_keys = _semantic_split(spec["split_from"])
    cache = cache or Path(os.environ.get("SPECULA_CLICK_CACHE", "/tmp/specula-click-proposals"))
    train, val, test = [], [], {s: [] for s in spec["test_sets"]}
    from PIL import Image

    for s in spec["sets"]:
        d = root / s
        if not (d / "image").is_dir():
            raise SystemExit(f"data set {s} is missing at {d}; set SPECULA_DATA")
        paths = [p for p in sorted((d / "image").glob("*.jpg")) if (d / "mask" / f"{p.stem}.png").is_file()][:limit]
        model, cls = spec["proposals"][s]
        # proposals only where they can be used: training images (the test ones are excluded)
        usable = [p for p in paths if f"{s}/image/{p.name}" not in test_keys and f"{s}/image/{p.name}" not in val_keys]
        props = proposal_masks(s, model, cls, usable, cache, progress=True) if proposals else {}
        for p in paths:
            key = f"{s}/image/{p.name}"
            full = np.asarray(Image.open(d / "mask" / f"{p.stem}.png").convert("L")) > 127
            objs = objects_of([Mask.from_full(full)]) if full.any() else []
            im = ClickImage(p, full.shape, objs, s, key, props.get(p.stem))
            if key in test_keys:
                if s in test:
                    test[s].append(im)
            elif key in val_keys:
                val.append(im)
            elif objs:
                train.append(im)
    train += format_fixture_images(root)
    notes = {"datasets": {s: {"terms": TERMS[s], "source_file": f"{s}/SOURCE.txt"} for s in spec["sets"]},
             "formats_terms": FORMAT_TERMS,
             "split": f"test and validation images of the shipped {', '.join(spec['split_from'])} (their manifests' "
                      f"test_image_keys / val_image_keys); every other image trains",
             "proposals": {s: f"{m} ({c})" for s, (m, c) in spec["proposals"].items()},
             "terms_summary": "RESEARCH-ONLY: the GDD, MSD, CrackForest and DeepCrack sets are licensed for "
                              "non-commercial research only; check before shipping these weights commercially.",
             "notes": spec["notes"]}
    return ClickData(train, val, test, project=f"shared-data:{'+'.join(spec['sets'])}+formats",
                     excluded_keys=sorted(test_keys), notes=notes)


def train_default_clicks(name: str, out: Path, minutes: float, seed: int, version: str, device: str,
                         limit: Optional[int] = None, threads: Optional[int] = None, fusion: str = "late",
                         size: Optional[int] = None, batch_size: Optional[int] = None, lr: Optional[float] = None,
                         val_minutes: float = 10.0, max_steps: Optional[int] = None,
                         init: Optional[Path] = None, score_test: bool = True,
                         save_state: Optional[Path] = None, bank_size: Optional[int] = None,
                         max_iterations: Optional[int] = None) -> dict:
    """Train the default click model into ``out/<name>/<version>``; returns the trainer's result."""
    from training.clicks import train_clicks
    from training.common import Reporter, TrainOptions

    spec = CLICK_MODELS[name]
    data = click_data(name, data_root(), limit)
    side = int(size or spec["input_size"][0])
    cmd = (f"python -m training.default_models --models {name} --minutes {minutes:g} --fusion {fusion} "
           f"--input-size {side}" + (f" --threads {threads}" if threads else "")
           + (f" --bank-size {bank_size}" if bank_size else "") + (f" --lr {lr:g}" if lr else "")
           + (f" --batch-size {batch_size}" if batch_size else "") + f" --val-minutes {val_minutes:g}"
           + ("" if score_test else " --no-test"))
    opts = TrainOptions(
        project=Path(data.project), task="clicks", device=device, seed=seed, name=name, version=version,
        input_size=(side, side), minutes=minutes, json=True, batch_size=batch_size, lr=lr, num_threads=threads,
        max_steps=max_steps, init=init,
        extra={"write_local": str(out), "fusion": fusion, "group_weights": spec["group_weights"],
               "val_minutes": val_minutes, "score_test": score_test, "training_notes": {"command": cmd},
               "val_per_group": 12, "val_clicks": 5,
               **({"save_state": str(save_state)} if save_state else {}),
               **({"bank_size": bank_size} if bank_size else {}),
               **({"max_iterations": max_iterations} if max_iterations is not None else {})},
    )
    t0 = time.monotonic()
    result = train_clicks(opts, Reporter(True), data=data)
    result["wall_seconds"] = time.monotonic() - t0
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.default_models", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "assets" / "models")
    ap.add_argument("--minutes", type=float, default=12.0, help="training time budget per model")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS) + list(CLICK_MODELS),
                    help=f"default: the semantic models; the click model ({', '.join(CLICK_MODELS)}) when named")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--version", default="1")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None, help="images per set (smoke runs)")
    ap.add_argument("--epochs", type=int, default=1000, help="epochs (the cosine schedule spans the epochs or the "
                                                              "time budget, whichever ends first)")
    ap.add_argument("--val-every", type=int, default=1, help="epochs between validations")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--fusion", default="late", choices=("early", "late"), help="click model: where clicks enter")
    ap.add_argument("--input-size", type=int, default=None, help="click model: crop side (default 384)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--val-minutes", type=float, default=10.0, help="click model: minutes between validations")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--init", type=Path, default=None, help="click model: start from these weights (state dict)")
    ap.add_argument("--no-test", action="store_true", help="click model: do not score the test images (experiments)")
    ap.add_argument("--save-state", type=Path, default=None, help="click model: also save the kept weights here")
    ap.add_argument("--bank-size", type=int, default=None, help="click model (late): crops whose features are cached")
    ap.add_argument("--max-iterations", type=int, default=None, help="click model: RITM passes without gradient")
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
        if name in CLICK_MODELS:
            res = train_default_clicks(name, args.out, args.minutes, args.seed, args.version, args.device, args.limit,
                                       args.threads, args.fusion, args.input_size, args.batch_size, args.lr,
                                       args.val_minutes, args.max_steps, args.init, not args.no_test,
                                       args.save_state, args.bank_size, args.max_iterations)
            man = res["manifest"]
            print(json.dumps({"event": "default_model", "name": name, "path": str(res["path"]),
                              "wall_seconds": round(res["wall_seconds"], 1),
                              "samples_per_second": man["training"]["samples_per_second"],
                              "validation": res.get("validation"), "test": man["metrics"].get("test")}), flush=True)
            continue
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
