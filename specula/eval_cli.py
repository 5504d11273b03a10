"""``specula eval PRED GT``: score predictions against ground truth.

Protocols:

- ``mirror-glass`` (default): the ``000`` paper's IoU, maximum F-beta (beta^2 = 0.3) and
  MAE for mirror and glass (and glass-in-mirror where the truth has it), plus the
  "opposite mask" rows (glass prediction against the mirror truth and vice versa);
- ``binary``: the same figures for each class of ``--classes`` (default: every class of
  the truth);
- ``coco``: COCO mask AP, AP50, AP75 through pycocotools' COCOeval, overall and per class.

What the figures mean (one definition, ``annotation.metrics``, also used by training's
validation, so a manifest's figures and this command agree on the same predictions):
a probability map's hard mask is ``p >= 0.5``. For each class, IoU is the per-image IoU
and F-beta the maximum over 256 thresholds of the F-beta of the per-image precision and
recall curves averaged (the salient-object convention), both over the images whose
TRUTH holds the class ("images" column); an image whose truth lacks the class adds
nothing to them. MAE is averaged over all images, and "FP images" counts the images
whose truth lacks the class but whose prediction holds some of it. "pooled IoU" (sum of
intersections over sum of unions, all images) is a separate figure. A class no truth
image holds shows "-" for IoU and F-beta.

PRED and GT: see ``specula.eval_sources`` (projects, COCO files, mask folders). Only
images present in both are scored; the counts of unmatched images are reported. A
folder of grayscale masks does not say which class it holds: name it with ``--classes``
(the shared data sets glass-gdd, mirror-msd, cracks-cfd and cracks-deepcrack are known);
colour-coded masks are read through ``--palette`` (default: mirror-glass).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from annotation import metrics
from specula.eval_sources import EvalImage, SourceError, load_source

PROTOCOLS = ("mirror-glass", "binary", "coco")
MIRROR_GLASS = ("mirror", "glass", "glass-in-mirror")
OPPOSITE = (("glass", "mirror"), ("mirror", "glass"))


def add_parsers(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``eval`` command to the ``specula`` parser's subparsers."""
    p = subparsers.add_parser("eval", help="score predictions against ground truth (IoU, F-beta, MAE, COCO AP)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pred", help="predictions: a project folder, COCO JSON (or results list), or mask folder")
    p.add_argument("gt", help="ground truth: a project folder, COCO JSON or mask folder")
    p.add_argument("--protocol", choices=PROTOCOLS, default="mirror-glass")
    p.add_argument("--classes", nargs="+", default=None, metavar="NAME[,NAME]",
                   help="classes to score (comma- or space-separated); a folder of grayscale masks holds "
                        "the first (required for such a folder unless it is a known data set)")
    p.add_argument("--palette", default=None, help="palette (name or file) for colour-coded mask folders")
    p.add_argument("--json", dest="json_out", default=None, help="write the scores as JSON to this file")
    p.set_defaults(handler=run_eval)
    return p


def parse_classes(values: Optional[Sequence[str]]) -> Optional[list[str]]:
    """``--classes`` words, each possibly ``a,b``, as a list of names (``None`` when not given)."""
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",")]
    if not all(names):
        raise SourceError("--classes: an empty class name (write NAME[,NAME])")
    return list(dict.fromkeys(names))


def evaluate(pred: dict[str, EvalImage], gt: dict[str, EvalImage], protocol: str,
             classes: Optional[Sequence[str]] = None) -> dict:
    """The scores of ``pred`` against ``gt`` as a JSON-ready dict (see the module docstring)."""
    keys = sorted(set(pred) & set(gt))
    result: dict = {"protocol": protocol, "images": len(keys),
                    "gt_only": len(set(gt) - set(pred)), "pred_only": len(set(pred) - set(gt))}
    for k in keys:
        if pred[k].size != gt[k].size:
            raise SourceError(f"image {k}: prediction is {pred[k].size}, truth {gt[k].size} (height, width)")
    gt_classes = sorted({i.class_name for k in keys for i in gt[k].instances})
    if protocol == "coco":
        chosen = list(classes) if classes else sorted(set(gt_classes) | {i.class_name for k in keys
                                                                          for i in pred[k].instances})
        result["coco"] = metrics.coco_mask_ap({k: gt[k].instances for k in keys},
                                              {k: pred[k].instances for k in keys},
                                              {k: gt[k].size for k in keys}, chosen)
        return result
    if protocol == "mirror-glass":
        present = set(gt_classes) | {i.class_name for k in keys for i in pred[k].instances} | {
            c for k in keys for c in pred[k].maps}
        chosen = list(classes) if classes else [c for c in MIRROR_GLASS if c in present]
        if not chosen:
            raise SourceError("no mirror or glass class in PRED or GT; use --protocol binary or name --classes")
        # a class confused with another shows when its prediction is scored on the other's truth
        opposite = [(a, b) for a, b in OPPOSITE if a in chosen and b in chosen]
    else:
        chosen = list(classes) if classes else gt_classes
        opposite = []
    preds = [{c: pred[k].class_map(c) for c in set(chosen)} for k in keys]
    gts = [{c: gt[k].class_map(c, hard=True) >= 0.5 for c in set(chosen)} for k in keys]
    scores = metrics.class_scores(preds, gts, chosen, [gt[k].size for k in keys], opposite)
    result["classes"] = {name: s.as_dict() for name, s in scores.items()}
    return result


def format_table(result: dict) -> str:
    """The scores as a plain-text table."""
    lines = [f"protocol {result['protocol']}: {result['images']} images scored"
             + (f" ({result['gt_only']} only in GT, {result['pred_only']} only in PRED)"
                if result["gt_only"] or result["pred_only"] else "")]
    if "coco" in result:
        c = result["coco"]
        lines.append(f"{'class':<20} {'AP':>7} {'AP50':>7} {'AP75':>7}")
        lines.append(f"{'all':<20} {c['AP']:>7.4f} {c['AP50']:>7.4f} {c['AP75']:>7.4f}")
        for name, s in c.get("per_class", {}).items():
            lines.append(f"{name:<20} {s['AP']:>7.4f} {s['AP50']:>7.4f} {s['AP75']:>7.4f}")
        lines.append(f"({c['n_gt']} truth instances, {c['n_pred']} predictions; -1 = nothing to score)")
        return "\n".join(lines)
    lines.append(f"{'class (pred->gt)':<24} {'images':>6} {'IoU':>7} {'F-beta':>7} {'MAE':>7} {'FP images':>9} "
                 f"{'pooled IoU':>10}")
    for name, s in result["classes"].items():
        mark = "  (opposite mask)" if "->" in name else ""
        lines.append(f"{name:<24} {s['images_with_class']:>6} {_num(s['iou']):>7} {_num(s['max_fbeta']):>7} "
                     f"{_num(s['mae']):>7} {s['images_with_false_positives']:>9} {_num(s['pooled_iou']):>10}{mark}")
    empty = [n for n, s in result["classes"].items() if s["images_with_class"] == 0]
    if empty:
        lines.append(f"no truth image holds {', '.join(empty)}: IoU and F-beta are not defined there; "
                     f"MAE and FP images show what was predicted")
    lines.append("IoU and F-beta: over the images whose truth holds the class; MAE: over all images")
    return "\n".join(lines)


def _num(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4f}"


def run_eval(args: argparse.Namespace) -> int:
    """Handler of ``specula eval``; 0 on success, 2 on bad input (one line on stderr)."""
    try:
        classes = parse_classes(args.classes)
        gt = load_source(args.gt, "gt", classes or (), args.palette)
        gt_classes = sorted({i.class_name for im in gt.values() for i in im.instances})
        # a grayscale prediction folder holds the truth's class when the truth has only one
        pred_classes = classes or (gt_classes if len(gt_classes) == 1 else ())
        pred = load_source(args.pred, "pred", pred_classes, args.palette, truth=gt)
        result = evaluate(pred, gt, args.protocol, classes)
    except (SourceError, ValueError, OSError) as exc:
        print(f"specula eval: {exc}", file=sys.stderr)
        return 2
    if result["images"] == 0:
        print(f"specula eval: no image is in both {args.pred} and {args.gt} (images are paired by file stem)",
              file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json_out:
        try:
            Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json_out).write_text(json.dumps(result, indent=2), encoding="utf-8")
        except OSError as exc:
            print(f"specula eval: cannot write {args.json_out}: {exc}", file=sys.stderr)
            return 2
    return 0
