"""Segmentation metrics: the ``000_...`` protocol (IoU, maximum F-beta, MAE) and COCO mask AP.

One definition of the per-class scores, used by ``specula eval`` and by training's
validation (``training.metrics_util`` accumulates through this module), so that a model's
manifest and ``specula eval`` report the same numbers on the same predictions.

Per image and class (``000_0bffb380ab10507f.txt`` section 6: the class's pixels white,
everything else black): the truth ``G`` is a binary mask; the prediction ``p`` a
probability map in ``[0, 1]`` or a hard mask; its hard mask ``H`` is ``p >= 0.5`` unless
the caller passes its own (the CAM trainer cuts its maps lower).

- **IoU** ``|H & G| / |H | G|``;
- **precision and recall** at the 256 thresholds ``t/255`` (``p >= t/255`` after
  quantising ``p`` to 8 bits, like the PNG maps these models write); a hard mask has one
  operating point, the same at every threshold; **F-beta** ``(1 + b2) P R / (b2 P + R)``
  with ``beta^2 = 0.3``;
- **MAE** the mean of ``|p - g|`` over the pixels.

Over a data set, for one class:

- ``iou``: the mean of the per-image IoU over the images whose TRUTH holds the class;
- ``max_fbeta``: the salient-object convention (the evaluation code of the mirror and
  glass detectors ``000`` compares, GDNet's among them): precision and recall curves
  averaged over the images whose truth holds the class, F-beta of the mean curves, the
  maximum over thresholds; ``mean_image_max_fbeta`` is the other common reading (each
  image's own maximum, averaged over the same images);
- ``mae``: the mean of the per-image MAE over ALL images;
- ``images_with_false_positives``: images whose truth lacks the class but whose hard
  prediction holds at least one pixel of it;
- ``pooled_iou``: the sum of intersections over the sum of unions over ALL images (so
  false positives on images without the class count); a separate figure, never "IoU".

An image whose truth lacks the class contributes nothing to that class's IoU and F-beta:
with nothing to find, "perfect" or "zero" would be a convention, not a measurement, and
a class missing from most images would otherwise be scored mostly on empty images. Its
false positives show in MAE, in the false-positive count and in the pooled IoU. A class
no truth image holds has ``iou`` and ``max_fbeta`` ``None``; ``mean_iou`` and
``mean_max_fbeta`` average over the classes that have images.

"Opposite mask" scores (``000``'s Table 1, red): a class's prediction scored against
another class's truth (glass prediction against the mirror mask, and vice versa), with
the same definition (images whose mirror truth holds mirror). High opposite scores mean
the model confuses the two classes.

Entry points: ``image_scores`` (one class, one image), ``per_image_scores`` (one image's
``(K, H, W)`` probability maps and ``(H, W)`` class-index truth, what a trainer has),
``ClassAccumulator`` and ``ScoreAccumulator`` (a data set), ``binary_scores`` and
``class_scores`` (pairs of maps and masks, what ``specula eval`` has).

COCO mask AP: ``coco_mask_ap`` builds the ground truth and the detections as in-memory
COCO objects from RLE and runs pycocotools' ``COCOeval`` with ``iouType="segm"``.

Arrays: masks are ``(H, W)`` bool; probability maps ``(H, W)`` float in ``[0, 1]``
(uint8 maps are divided by 255). ``Mask`` objects are accepted wherever a hard mask is.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

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


# ------------------------------------------------------------------ one class on one image
HARD_THRESHOLD = 0.5  # a probability map's hard mask is p >= 0.5 (the product proposes above 0.5)


@dataclass(frozen=True)
class ImageScores:
    """One class on one image (see the module docstring).

    ``iou``, ``max_fbeta``, ``precision`` and ``recall`` are ``None`` when the truth lacks
    the class; ``false_positive`` is True only then, when the hard prediction holds some.
    """

    has_class: bool
    mae: float
    intersection: int
    union: int
    false_positive: bool
    iou: Optional[float] = None
    max_fbeta: Optional[float] = None
    precision: Optional[np.ndarray] = None  # (256,) at thresholds t/255
    recall: Optional[np.ndarray] = None


def image_scores(pred: MaskLike, gt: MaskLike, hard: Optional[MaskLike] = None, beta2: float = BETA2) -> ImageScores:
    """Score one class on one image: ``pred`` a map or mask, ``gt`` the binary truth.

    ``hard``: the hard prediction IoU is taken of (default ``pred >= 0.5``).
    """
    g = as_bool(gt)
    mask_pred = is_hard(pred)
    prob = as_bool(pred).astype(np.float64) if mask_pred else as_probability(pred)
    if prob.shape != g.shape:
        raise ValueError(f"prediction {prob.shape} and truth {g.shape} differ in size")
    h = as_bool(hard) if hard is not None else prob >= HARD_THRESHOLD
    inter = int(np.count_nonzero(h & g))
    union = int(np.count_nonzero(h | g))
    err = float(np.mean(np.abs(prob - g))) if prob.size else 0.0
    if not g.any():
        return ImageScores(False, err, inter, union, bool(h.any()))
    precision, recall = pr_curve(prob, g)
    if mask_pred:
        # t = 0 would keep every pixel; a mask has one operating point, the t >= 1 one
        precision[0], recall[0] = precision[1], recall[1]
    best = float(np.max(fbeta(precision, recall, beta2)))
    return ImageScores(True, err, inter, union, False, inter / union, best, precision, recall)


def per_image_scores(
    probs: np.ndarray, target: np.ndarray, classes: Sequence[Optional[str]], beta2: float = BETA2,
    hard: Optional[np.ndarray] = None,
) -> dict[str, ImageScores]:
    """Score one image's per-class maps: what a trainer's validation has.

    Args:
        probs: ``(K, H, W)`` float maps in ``[0, 1]``, channel ``k`` for ``classes[k]``.
        target: ``(H, W)`` int truth; value ``k`` is ``classes[k]`` (other values: none).
        classes: ``K`` names; ``None`` marks a channel not scored (the background).
        hard: optional ``(K, H, W)`` bool hard predictions (default ``probs >= 0.5``).

    Returns:
        class name -> ``ImageScores``, for every named channel.
    """
    probs = np.asarray(probs)
    if probs.ndim != 3 or probs.shape[0] != len(classes) or probs.shape[1:] != np.shape(target):
        raise ValueError(f"probabilities {probs.shape} do not match {len(classes)} classes and truth {np.shape(target)}")
    out: dict[str, ImageScores] = {}
    for k, name in enumerate(classes):
        if name is None:
            continue
        out[name] = image_scores(probs[k], np.asarray(target) == k, None if hard is None else hard[k], beta2)
    return out


# ------------------------------------------------------------------ data set
@dataclass
class ClassScores:
    """One class over a data set (see the module docstring for each figure)."""

    iou: Optional[float]
    max_fbeta: Optional[float]
    mae: Optional[float]
    images: int
    images_with_class: int
    images_with_false_positives: int
    mean_image_max_fbeta: Optional[float] = None
    pooled_iou: Optional[float] = None

    def as_dict(self) -> dict:
        return {"iou": self.iou, "max_fbeta": self.max_fbeta, "mae": self.mae, "images": self.images,
                "images_with_class": self.images_with_class,
                "images_with_false_positives": self.images_with_false_positives,
                "mean_image_max_fbeta": self.mean_image_max_fbeta, "pooled_iou": self.pooled_iou}


@dataclass
class ClassAccumulator:
    """Adds one class's images one at a time; ``result()`` gives the data-set scores."""

    beta2: float = BETA2
    ious: list[float] = field(default_factory=list)
    image_fbetas: list[float] = field(default_factory=list)
    maes: list[float] = field(default_factory=list)
    false_positives: int = 0
    intersection: int = 0
    union: int = 0
    precision_sum: np.ndarray = field(default_factory=lambda: np.zeros(N_THRESHOLDS))
    recall_sum: np.ndarray = field(default_factory=lambda: np.zeros(N_THRESHOLDS))

    def add(self, pred: MaskLike, gt: MaskLike, hard: Optional[MaskLike] = None) -> ImageScores:
        """Score one image (``image_scores``) and add it; returns its scores."""
        scores = image_scores(pred, gt, hard, self.beta2)
        self.add_scores(scores)
        return scores

    def add_scores(self, s: ImageScores) -> None:
        """Add one image already scored by ``image_scores`` / ``per_image_scores``."""
        self.maes.append(s.mae)
        self.intersection += s.intersection
        self.union += s.union
        if not s.has_class:
            self.false_positives += int(s.false_positive)
            return
        assert s.iou is not None and s.max_fbeta is not None and s.precision is not None and s.recall is not None
        self.ious.append(s.iou)
        self.image_fbetas.append(s.max_fbeta)
        self.precision_sum += s.precision
        self.recall_sum += s.recall

    def result(self) -> ClassScores:
        n = len(self.ious)
        mean_curve = None
        if n:
            mean_curve = float(np.max(fbeta(self.precision_sum / n, self.recall_sum / n, self.beta2)))
        return ClassScores(
            iou=float(np.mean(self.ious)) if n else None,
            max_fbeta=mean_curve,
            mae=float(np.mean(self.maes)) if self.maes else None,
            images=len(self.maes),
            images_with_class=n,
            images_with_false_positives=self.false_positives,
            mean_image_max_fbeta=float(np.mean(self.image_fbetas)) if n else None,
            pooled_iou=self.intersection / self.union if self.union else None,
        )


class ScoreAccumulator:
    """Per-class accumulators for a data set of images scored by ``per_image_scores``.

    ``result()``: ``{"per_class": {class: ClassScores.as_dict()}, "mean_iou", "mean_max_fbeta"}``,
    the means over the classes that have images (``None`` when none has).
    """

    def __init__(self, classes: Sequence[str], beta2: float = BETA2):
        self.classes = list(classes)
        self.acc = {c: ClassAccumulator(beta2=beta2) for c in self.classes}

    def add(self, scores: Mapping[str, ImageScores]) -> None:
        """Add one image's ``per_image_scores`` (classes not accumulated are ignored)."""
        for name, s in scores.items():
            if name in self.acc:
                self.acc[name].add_scores(s)

    def result(self) -> dict:
        per = {c: a.result().as_dict() for c, a in self.acc.items()}
        return {"per_class": per, **mean_over_classes(per)}


def mean_over_classes(per_class: Mapping[str, Mapping[str, Any]]) -> dict[str, Optional[float]]:
    """``mean_iou`` and ``mean_max_fbeta`` over the classes that have images."""
    ious = [v["iou"] for v in per_class.values() if v.get("iou") is not None]
    fs = [v["max_fbeta"] for v in per_class.values() if v.get("max_fbeta") is not None]
    return {"mean_iou": float(np.mean(ious)) if ious else None,
            "mean_max_fbeta": float(np.mean(fs)) if fs else None}


def binary_scores(pairs: Iterable[tuple[MaskLike, MaskLike]], beta2: float = BETA2) -> ClassScores:
    """The scores of one class over ``(prediction, truth)`` pairs, one pair per image."""
    acc = ClassAccumulator(beta2=beta2)
    for pred, gt in pairs:
        acc.add(pred, gt)
    return acc.result()


def class_scores(
    preds: Sequence[Mapping[str, MaskLike]],
    gts: Sequence[Mapping[str, MaskLike]],
    classes: Sequence[str],
    image_sizes: Sequence[tuple[int, int]],
    opposite: Sequence[tuple[str, str]] = (),
) -> dict[str, ClassScores]:
    """Per-class scores, plus "opposite mask" scores.

    Args:
        preds, gts: one dict per image, class name -> map or mask (a missing class
            means an empty prediction / truth).
        classes: the classes to score against their own truth.
        image_sizes: ``(H, W)`` of each image (used for the missing entries).
        opposite: ``(pred_class, gt_class)`` pairs scored across classes, reported
            under the key ``"pred_class->gt_class"`` (e.g. ``"glass->mirror"``).
    """
    jobs = [(c, c, c) for c in classes] + [(f"{p}->{g}", p, g) for p, g in opposite]
    out: dict[str, ClassScores] = {}
    for key, pc, gc in jobs:
        acc = ClassAccumulator()
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
