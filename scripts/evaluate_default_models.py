"""Score the shipped default models on their test images through the product's own path.

    .venv/bin/python scripts/evaluate_default_models.py                 # assets/models, newest versions
    .venv/bin/python scripts/evaluate_default_models.py --models-dir /tmp/newmodels --json reports/models.json
    .venv/bin/python scripts/evaluate_default_models.py --defaults split_panes=false   # one setting changed

For each model (the newest version folder of each name in ``--models-dir``) and each
data set it was trained on, exactly what a user would run:

1. a temporary project holding that data set's test images (the manifest's
   ``training.data.test_image_keys``: never trained on, never used to choose a checkpoint),
   ``specula init`` (nothing imported: no labels);
2. a temporary ``SPECULA_HOME`` and ``specula models import MODEL_FOLDER``;
3. ``specula propose PROJECT --model NAME@VERSION --device cpu``;
4. ``specula export PROJECT --to coco --states proposed`` (proposals with their scores);
5. ``specula eval COCO TRUTH --protocol binary --classes CLASS`` against the data set's
   truth masks: per-image IoU and max F-beta (beta^2 = 0.3) per class.

It prints one table and, beside the eval figures, two counts read from the same
export: images whose IoU is below 0.5, and truth components (8-connected pieces of
the truth of at least ``--min-component`` pixels) that get a proposal of their own
(a proposal with IoU >= 0.5 with that component: neighbouring panes merged into one
proposal do not count).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PALETTES = {"glass": "mirror-glass", "mirror": "mirror-glass", "glass-in-mirror": "mirror-glass", "crack": "inspection"}


def data_root() -> Path:
    return Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data"))


def newest_versions(models_dir: Path, names: Optional[Sequence[str]]) -> list[Path]:
    """The newest version folder of each model name in ``models_dir``."""
    from inference.registry import version_key

    out = []
    for name_dir in sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if names and name_dir.name not in names:
            continue
        versions = [v for v in name_dir.iterdir() if (v / "manifest.json").is_file()]
        if versions:
            out.append(max(versions, key=lambda v: version_key(v.name)))
    return out


def specula(args: Sequence[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    """Run the ``specula`` command of this checkout, as a user would."""
    cmd = [sys.executable, "-m", "specula", *args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    return res


def own_proposals(pred: dict, gt: dict, class_name: str, min_component: int) -> tuple[int, int, list[float]]:
    """``(truth components with a proposal of their own, truth components, per-image IoU)``."""
    from annotation import metrics
    from annotation.mask import Mask

    own = total = 0
    ious: list[float] = []
    for key, g in gt.items():
        if key not in pred:
            continue
        size = g.size
        p = pred[key]
        comps = [i.mask for i in g.instances if i.class_name == class_name and isinstance(i.mask, Mask)]
        props = [i.mask for i in p.instances if i.class_name == class_name and isinstance(i.mask, Mask)]
        if not comps:
            continue
        truth_full = np.zeros(size, bool)
        for m in comps:
            truth_full |= m.to_full()
        pred_full = np.zeros(size, bool)
        for m in props:
            pred_full |= m.to_full()
        ious.append(metrics.iou(pred_full, truth_full))
        for t in comps:
            if t.area < min_component:
                continue
            total += 1
            if any(t.iou(q) >= 0.5 for q in props):
                own += 1
    return own, total, ious


def held_out_keys(folder: Path) -> set[str]:
    """The images a model folder's manifest says it did not train on (validation and test)."""
    data = json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("training", {}).get("data", {})
    return set(data.get("val_image_keys") or []) | set(data.get("test_image_keys") or [])


def evaluate_model(folder: Path, work: Path, defaults: dict[str, Any], min_component: int,
                   split: str = "test", keys_from: Optional[Path] = None,
                   unseen_by: Sequence[Path] = ()) -> list[dict]:
    """Every data set of one model folder through init, import, propose, export and eval."""
    from specula.eval_sources import load_source

    man = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    if defaults:
        copy = work / "model" / man["name"] / man["version"]
        shutil.copytree(folder, copy)
        man["defaults"] = {**man.get("defaults", {}), **defaults}
        (copy / "manifest.json").write_text(json.dumps(man, indent=2), encoding="utf-8")
        folder = copy
    src = man if keys_from is None else json.loads((keys_from / "manifest.json").read_text(encoding="utf-8"))
    keys = src.get("training", {}).get("data", {}).get(f"{split}_image_keys") or []
    for other in unseen_by:  # a before/after comparison on images neither model trained on
        keys = [k for k in keys if k in held_out_keys(other)]
    if not keys:
        raise SystemExit(f"{folder}: the manifest lists no {split} images (training.data.{split}_image_keys)")
    env = {**os.environ, "SPECULA_HOME": str(work / "home"), "QT_QPA_PLATFORM": "offscreen"}
    specula(["models", "import", str(folder)], env)
    by_set: dict[str, list[str]] = {}
    for k in keys:
        set_name = Path(k).parts[0]
        by_set.setdefault(set_name, []).append(k)
    from specula.eval_sources import DATASET_CLASSES

    rows = []
    for set_name, set_keys in sorted(by_set.items()):
        class_name = DATASET_CLASSES[set_name]
        project = work / f"project-{set_name}"
        project.mkdir(parents=True)
        for k in set_keys:
            shutil.copy2(data_root() / k, project / Path(k).name)
        specula(["init", str(project), "--palette", PALETTES[class_name]], env)
        propose = specula(["propose", str(project), "--model", f"{man['name']}@{man['version']}", "--device", "cpu"],
                          env)
        coco = work / f"{set_name}-proposals.json"
        specula(["export", str(project), "--to", "coco", str(coco), "--states", "proposed"], env)
        scores = work / f"{set_name}-scores.json"
        truth = data_root() / set_name
        specula(["eval", str(coco), str(truth), "--protocol", "binary", "--classes", class_name,
                 "--json", str(scores)], env)
        result = json.loads(scores.read_text(encoding="utf-8"))
        s = result["classes"][class_name]
        gt = {k: v for k, v in load_source(truth, "gt", [class_name]).items() if k in {Path(x).stem for x in set_keys}}
        pred = load_source(coco, "pred", [class_name], truth=gt)
        own, total, ious = own_proposals(pred, gt, class_name, min_component)
        rows.append({
            "model": f"{man['name']}@{man['version']}", "data_set": set_name, "split": split, "class": class_name,
            "images": result["images"], "iou": s["iou"], "max_fbeta": s.get("max_fbeta", s.get("fbeta")),
            "mae": s["mae"], "eval": s,
            "below_0.5": int(sum(v < 0.5 for v in ious)), "own_proposal": own, "truth_components": total,
            "propose_summary": propose.stdout.strip().splitlines()[-1:] if propose.stdout.strip() else [],
        })
    return rows


def format_rows(rows: list[dict]) -> str:
    head = (f"{'model':<26} {'data set':<18} {'class':<7} {'images':>6} {'IoU':>6} {'F-beta':>6} "
            f"{'MAE':>6} {'IoU<0.5':>7} {'own proposal':>13}")
    lines = [head]
    for r in rows:
        lines.append(f"{r['model']:<26} {r['data_set']:<18} {r['class']:<7} {r['images']:>6} {r['iou']:>6.3f} "
                     f"{r['max_fbeta']:>6.3f} {r['mae']:>6.3f} {r['below_0.5']:>7} "
                     f"{r['own_proposal']:>5} / {r['truth_components']:<5}")
    return "\n".join(lines)


def parse_defaults(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        k, _, v = item.partition("=")
        if not k or not _:
            raise SystemExit(f"--defaults {item!r}: write KEY=VALUE")
        out[k] = json.loads(v) if v not in ("true", "false") else v == "true"
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models-dir", type=Path, default=REPO / "assets" / "models")
    ap.add_argument("--models", nargs="*", default=None, help="model names (default: every model in the folder)")
    ap.add_argument("--defaults", nargs="*", default=[], help="KEY=VALUE pipeline defaults to override "
                                                               "(e.g. split_panes=false flip_tta=false)")
    ap.add_argument("--split", choices=("test", "val"), default="test",
                    help="test (the figures) or val (tuning a setting without looking at the test images)")
    ap.add_argument("--keys-from", type=Path, default=None,
                    help="take the image list from this model version folder's manifest (to score an older model, "
                         "whose manifest has no test list, on the new model's test images)")
    ap.add_argument("--unseen-by", type=Path, nargs="*", default=[],
                    help="keep only images that these model version folders did not train on")
    ap.add_argument("--min-component", type=int, default=64, help="truth components smaller than this are not counted")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temporary projects (their path is printed)")
    args = ap.parse_args(argv)
    defaults = parse_defaults(args.defaults)
    rows: list[dict] = []
    for folder in newest_versions(args.models_dir, args.models):
        work = Path(tempfile.mkdtemp(prefix=f"specula-eval-{folder.parent.name}-"))
        try:
            rows += evaluate_model(folder, work, defaults, args.min_component, args.split, args.keys_from,
                                   args.unseen_by)
        finally:
            if args.keep:
                print(f"kept {work}", file=sys.stderr)
            else:
                shutil.rmtree(work, ignore_errors=True)
    print(format_rows(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
