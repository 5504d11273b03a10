"""Segmentation metrics: the ``000_...`` protocol (IoU, maximum F-beta, MAE) and COCO mask AP.

Binary protocol (Beyond Reflections, ``000_0bffb380ab10507f.txt``, section 6): for one
class, the ground truth is a binary image (the class's pixels white, all else black)
and the prediction is either a hard mask or a probability map in ``[0, 1]``.

- **IoU**: ``|P & G| / |P | G|`` of the hard prediction (a probability map is cut at
  0.5). An image whose prediction and truth are both empty scores 1.
- **MAE**: mean of ``|p - g|`` over the pixels, ``p`` the probability (or 0/1).
- **maximum F-beta**, ``beta^2 = 0.3``: ``F = (1 + b2) P R / (b2 P + R)``. For a probability
  map, precision and recall are taken at the 256 thresholds ``t/255, t = 0..255``
  (``p >= t/255``, after quantising ``p`` to 8 bits like the PNG maps these models write),
  and the maximum over thresholds is reported. For a hard mask there is one threshold,
  so the value is the F-beta of the mask. Over a data set, precision and recall curves
  are averaged over images first and the maximum is taken of the F-beta of the mean
  curves (the convention of the salient/mirror/glass detection evaluation code the
  ``000`` paper's models come from); IoU and MAE are means over images.

"Opposite mask" scores (``000``'s Table 1, red): a class's prediction scored against
another class's truth (glass prediction against the mirror mask, and vice versa). High
opposite scores mean the model confuses the two classes.

COCO mask AP: ``coco_mask_ap`` builds the ground truth and the detections as in-memory
COCO objects from RLE and runs pycocotools' ``COCOeval`` with ``iouType="segm"``.

Arrays: masks are ``(H, W)`` bool; probability maps ``(H, W)`` float in ``[0, 1]``
(uint8 maps are divided by 255). ``Mask`` objects are accepted wherever a hard mask is.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from annotation.mask import Mask

BETA2 = 0.3
N_THRESHOLDS = 256
_EPS = 1e-12

MaskLike = Union[np.ndarray, Mask]


# ------------------------------------------------------------------ inputs
def as_bool(mask: MaskLike, image_size: Optional[tuple[int, int]] = None) -> np.ndarray:
    """A full ``(H, W)`` bool array from a ``Mask``, a bool array, or a 0/1 or 0/255 array."""
    if isinstance(mask, Mask):
        return mask.to_full()
    a = np.asarray(mask)
    if image_size is not None and a.shape != tuple(image_size):
        raise ValueError(f"mask of shape {a.shape} does not match image size {image_size}")
    if a.dtype == bool:
        return a
    if np.issubdtype(a.dtype, np.floating):
        return a >= 0.5
    return a > (127 if a.max(initial=0) > 1 else 0)


def as_probability(pred: MaskLike) -> np.ndarray:
    """A ``(H, W)`` float64 map in ``[0, 1]``: bool -> 0/1, uint8 -> /255, float clipped."""
    if isinstance(pred, Mask):
        return pred.to_full().astype(np.float64)
    a = np.asarray(pred)
    if a.dtype == bool:
        return a.astype(np.float64)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if np.issubdtype(a.dtype, np.integer):
        top = 255.0 if a.max(initial=0) > 1 else 1.0
        return np.clip(a.astype(np.float64) / top, 0.0, 1.0)
    return np.clip(a.astype(np.float64), 0.0, 1.0)


def is_hard(pred: MaskLike) -> bool:
    """True when ``pred`` holds only the values 0 and 1 (a mask, not a probability map)."""
    if isinstance(pred, Mask):
        return True
    a = np.asarray(pred)
    if a.dtype == bool:
        return True
    p = as_probability(a)
    return bool(np.all((p == 0.0) | (p == 1.0)))


# ------------------------------------------------------------------ single image
def iou(pred: MaskLike, gt: MaskLike) -> float:
    """Binary IoU of two hard masks (a probability map is cut at 0.5); 1.0 when both are empty."""
    if isinstance(pred, Mask) and isinstance(gt, Mask):
        return pred.iou(gt)
    p = as_bool(pred)
    g = as_bool(gt)
    union = np.count_nonzero(p | g)
    return 1.0 if union == 0 else float(np.count_nonzero(p & g)) / union


def mae(pred: MaskLike, gt: MaskLike) -> float:
    """Mean absolute error between a probability map (or mask) and the binary truth."""
    p = as_probability(pred)
    g = as_bool(gt).astype(np.float64)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and truth {g.shape} differ in size")
    return float(np.mean(np.abs(p - g))) if p.size else 0.0


def pr_curve(pred: MaskLike, gt: MaskLike) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at the 256 thresholds ``t/255`` (``p >= t/255``), each ``(256,)``.

    Precision where nothing is predicted is 0 unless the truth is empty too (then 1);
    recall with an empty truth is 1 (nothing to find). The maps are quantised to
    8 bits first, so threshold ``t`` keeps exactly the pixels of level ``>= t``.
    """
    p = np.rint(as_probability(pred) * 255.0).astype(np.int64).ravel()
    g = as_bool(gt).ravel()
    if p.shape != g.shape:
        raise ValueError("prediction and truth differ in size")
    pos_hist = np.bincount(p[g], minlength=N_THRESHOLDS)[:N_THRESHOLDS]
    all_hist = np.bincount(p, minlength=N_THRESHOLDS)[:N_THRESHOLDS]
    tp = np.cumsum(pos_hist[::-1])[::-1].astype(np.float64)  # pixels >= t that are true
    pp = np.cumsum(all_hist[::-1])[::-1].astype(np.float64)  # pixels >= t
    n_true = float(np.count_nonzero(g))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(pp > 0, tp / np.maximum(pp, 1), 1.0 if n_true == 0 else 0.0)
        recall = tp / n_true if n_true > 0 else np.ones(N_THRESHOLDS)
    return precision, recall


def fbeta(precision: np.ndarray | float, recall: np.ndarray | float, beta2: float = BETA2) -> np.ndarray:
    """``(1 + b2) P R / (b2 P + R)``, 0 where both are 0."""
    p = np.asarray(precision, dtype=np.float64)
    r = np.asarray(recall, dtype=np.float64)
    return (1 + beta2) * p * r / np.maximum(beta2 * p + r, _EPS)


def max_fbeta(pred: MaskLike, gt: MaskLike, beta2: float = BETA2) -> float:
    """Maximum F-beta of one image: over 256 thresholds for a map, the single value for a mask."""
    if is_hard(pred):
        p, g = as_bool(pred), as_bool(gt)
        tp = float(np.count_nonzero(p & g))
        npred, ntrue = float(np.count_nonzero(p)), float(np.count_nonzero(g))
        prec = tp / npred if npred else (1.0 if ntrue == 0 else 0.0)
        rec = tp / ntrue if ntrue else 1.0
        return float(fbeta(prec, rec, beta2))
    precision, recall = pr_curve(pred, gt)
    return float(np.max(fbeta(precision, recall, beta2)))


# ------------------------------------------------------------------ data set
@dataclass
class BinaryScores:
    """IoU, maximum F-beta and MAE of one class over a data set (means over images)."""

    iou: float
    fbeta: float
    mae: float
    n_images: int

    def as_dict(self) -> dict:
        return {"iou": self.iou, "fbeta": self.fbeta, "mae": self.mae, "n_images": self.n_images}


@dataclass
class BinaryAccumulator:
    """Adds images one at a time; ``result()`` gives the data-set scores.

    Hard predictions contribute a one-threshold curve (their P and R at every
    level), so a data set of masks gets the mean-P/mean-R F-beta of those masks.
    """

    beta2: float = BETA2
    ious: list[float] = field(default_factory=list)
    maes: list[float] = field(default_factory=list)
    precision_sum: np.ndarray = field(default_factory=lambda: np.zeros(N_THRESHOLDS))
    recall_sum: np.ndarray = field(default_factory=lambda: np.zeros(N_THRESHOLDS))

    def add(self, pred: MaskLike, gt: MaskLike) -> None:
        """Score one image: ``pred`` a mask or probability map, ``gt`` the binary truth."""
        if is_hard(pred):
            pred = as_bool(pred)  # levels 0/255 only: P and R are constant over t = 1..255
        precision, recall = pr_curve(pred, gt)
        if is_hard(pred):
            # t = 0 would keep every pixel; a mask has one operating point, the t >= 1 one
            precision[0], recall[0] = precision[1], recall[1]
        self.precision_sum += precision
        self.recall_sum += recall
        self.ious.append(iou(pred, gt))
        self.maes.append(mae(pred, gt))

    def result(self) -> BinaryScores:
        n = len(self.ious)
        if n == 0:
            return BinaryScores(float("nan"), float("nan"), float("nan"), 0)
        f = fbeta(self.precision_sum / n, self.recall_sum / n, self.beta2)
        return BinaryScores(float(np.mean(self.ious)), float(np.max(f)), float(np.mean(self.maes)), n)


def binary_scores(pairs: Iterable[tuple[MaskLike, MaskLike]], beta2: float = BETA2) -> BinaryScores:
    """IoU, maximum F-beta and MAE over ``(prediction, truth)`` pairs of one class."""
    acc = BinaryAccumulator(beta2=beta2)
    for pred, gt in pairs:
        acc.add(pred, gt)
    return acc.result()


def class_scores(
    preds: Sequence[Mapping[str, MaskLike]],
    gts: Sequence[Mapping[str, MaskLike]],
    classes: Sequence[str],
    image_sizes: Sequence[tuple[int, int]],
    opposite: Sequence[tuple[str, str]] = (),
) -> dict[str, BinaryScores]:
    """Per-class binary scores, plus "opposite mask" scores.

    Args:
        preds, gts: one dict per image, class name -> map or mask (a missing class
            means an empty prediction / truth).
        classes: the classes to score against their own truth.
        image_sizes: ``(H, W)`` of each image (used for the missing entries).
        opposite: ``(pred_class, gt_class)`` pairs scored across classes, reported
            under the key ``"pred_class->gt_class"`` (e.g. ``"glass->mirror"``).
    """
    jobs = [(c, c, c) for c in classes] + [(f"{p}->{g}", p, g) for p, g in opposite]
    out: dict[str, BinaryScores] = {}
    for key, pc, gc in jobs:
        acc = BinaryAccumulator()
        for pred, gt, size in zip(preds, gts, image_sizes):
            empty = np.zeros(size, bool)
            acc.add(pred.get(pc, empty), gt.get(gc, empty))
        out[key] = acc.result()
    return out


# ------------------------------------------------------------------ COCO AP
@dataclass(frozen=True)
class CocoInstance:
    """One instance for COCO evaluation: class, mask (a ``Mask`` or a COCO RLE dict), score."""

    class_name: str
    mask: Union[Mask, dict]
    score: float = 1.0
    iscrowd: bool = False


def _rle_of(mask: Union[Mask, dict]) -> dict:
    from pycocotools import mask as coco_mask

    if isinstance(mask, Mask):
        rle = mask.to_rle()
    else:
        rle = dict(mask)
        if isinstance(rle.get("counts"), list):  # uncompressed: compress for COCOeval
            rle = coco_mask.frPyObjects(rle, int(rle["size"][0]), int(rle["size"][1]))
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def coco_mask_ap(
    gt: Mapping[str, Sequence[CocoInstance]],
    pred: Mapping[str, Sequence[CocoInstance]],
    image_sizes: Mapping[str, tuple[int, int]],
    classes: Optional[Sequence[str]] = None,
    per_class: bool = True,
) -> dict:
    """COCO mask AP, AP50 and AP75 through pycocotools' ``COCOeval`` (``iouType="segm"``).

    Args:
        gt, pred: image key -> instances. Images missing from ``pred`` have no detections.
        image_sizes: image key -> ``(H, W)``; every image of ``gt`` must be there.
        classes: the categories (default: every class in ``gt`` and ``pred``, sorted).
        per_class: also evaluate each class alone (``"per_class"`` in the result).

    Returns:
        ``{"AP": .., "AP50": .., "AP75": .., "n_gt": .., "n_pred": .., "per_class": {..}}``
        with AP values in ``[0, 1]`` (``-1`` where COCOeval has nothing to score,
        e.g. no truth of a class).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if classes is None:
        names = {i.class_name for v in gt.values() for i in v} | {i.class_name for v in pred.values() for i in v}
        classes = sorted(names)
    cat_ids = {c: k + 1 for k, c in enumerate(classes)}
    keys = sorted(image_sizes)
    img_ids = {k: n + 1 for n, k in enumerate(keys)}
    images = [{"id": img_ids[k], "height": int(image_sizes[k][0]), "width": int(image_sizes[k][1]),
               "file_name": str(k)} for k in keys]
    anns, dets = [], []
    for k in keys:
        for inst in gt.get(k, ()):
            if inst.class_name not in cat_ids:
                continue
            rle = _rle_of(inst.mask)
            anns.append({"id": len(anns) + 1, "image_id": img_ids[k], "category_id": cat_ids[inst.class_name],
                         "segmentation": rle, "area": float(_area(rle)), "bbox": _bbox(rle),
                         "iscrowd": int(inst.iscrowd)})
        for inst in pred.get(k, ()):
            if inst.class_name not in cat_ids:
                continue
            rle = _rle_of(inst.mask)
            dets.append({"id": len(dets) + 1, "image_id": img_ids[k], "category_id": cat_ids[inst.class_name],
                         "segmentation": rle, "area": float(_area(rle)), "bbox": _bbox(rle),
                         "score": float(inst.score), "iscrowd": 0})

    def run(cats: list[int]) -> dict:
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": anns,
                           "categories": [{"id": i, "name": c} for c, i in cat_ids.items()]}
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt.createIndex()
            if dets:
                coco_dt = coco_gt.loadRes([dict(d) for d in dets])
            else:
                coco_dt = COCO()
                coco_dt.dataset = {"images": images, "annotations": [], "categories": coco_gt.dataset["categories"]}
                coco_dt.createIndex()
            ev = COCOeval(coco_gt, coco_dt, iouType="segm")
            ev.params.catIds = cats
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1]), "AP75": float(ev.stats[2])}

    result = run(list(cat_ids.values()))
    result["n_gt"] = len(anns)
    result["n_pred"] = len(dets)
    if per_class:
        result["per_class"] = {c: run([i]) for c, i in cat_ids.items()}
    return result


def _area(rle: dict) -> int:
    from pycocotools import mask as coco_mask

    return int(coco_mask.area(rle))


def _bbox(rle: dict) -> list[float]:
    from pycocotools import mask as coco_mask

    return [float(v) for v in coco_mask.toBbox(rle)]
