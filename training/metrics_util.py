"""Validation metrics of the 000 protocol, per class: IoU, maximum F-beta (beta^2 = 0.3), MAE.

The per-image precision-recall curve, F-beta and MAE are ``annotation.metrics``'; what
is particular to training is the accumulation below.

Conventions: ``prob`` is an ``(H, W)`` float map in [0, 1] for one class, ``gt`` an
``(H, W)`` bool map. IoU is accumulated over the data set (sum of intersections over
sum of unions) from the hard prediction the caller passes; max F-beta follows the
salient-object protocol: per-image precision and recall at 256 thresholds, averaged
over the images that hold the class, F-beta of the averages, maximum over thresholds.
MAE is the mean absolute error per image, averaged over images. For a single image
max F-beta and MAE equal ``annotation.metrics.max_fbeta`` / ``mae`` (tested).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from annotation import metrics

BETA2 = metrics.BETA2


@dataclass
class ClassAccumulator:
    """Running sums for one class over a validation set."""

    intersection: int = 0
    union: int = 0
    mae: list[float] = field(default_factory=list)
    precision: list[np.ndarray] = field(default_factory=list)
    recall: list[np.ndarray] = field(default_factory=list)

    def add(self, prob: np.ndarray, pred: np.ndarray, gt: np.ndarray) -> None:
        """``prob`` (H, W) float in [0, 1]; ``pred`` and ``gt`` (H, W) bool."""
        gt = gt.astype(bool, copy=False)
        pred = pred.astype(bool, copy=False)
        self.intersection += int(np.count_nonzero(pred & gt))
        self.union += int(np.count_nonzero(pred | gt))
        self.mae.append(metrics.mae(prob, gt))
        if not gt.any():
            return
        precision, recall = metrics.pr_curve(prob, gt)
        self.precision.append(precision)
        self.recall.append(recall)

    def result(self) -> dict[str, float | None]:
        # a class absent from the ground truth has no IoU (false positives are counted
        # in MAE); otherwise a class nobody labelled would drag the mean to zero
        iou = self.intersection / self.union if self.union and self.precision else None
        fbeta = None
        if self.precision:
            f = metrics.fbeta(np.mean(self.precision, axis=0), np.mean(self.recall, axis=0), BETA2)
            fbeta = float(f.max())
        return {
            "iou": None if iou is None else float(iou),
            "max_fbeta": fbeta,
            "mae": float(np.mean(self.mae)) if self.mae else None,
            "images_with_class": len(self.precision),
        }


class SegmentationMetrics:
    """Per-class accumulators fed with softmax probabilities and the ground-truth class map."""

    def __init__(self, classes: list[str]):
        self.classes = list(classes)
        self.acc = {c: ClassAccumulator() for c in self.classes}

    def add(self, probs: np.ndarray, target: np.ndarray) -> None:
        """``probs`` ``(K, H, W)`` with channel 0 background and ``1 + i`` for ``classes[i]``;
        ``target`` ``(H, W)`` int map in the same indexing."""
        pred = probs.argmax(0)
        for i, c in enumerate(self.classes):
            self.acc[c].add(probs[i + 1], pred == i + 1, target == i + 1)

    def result(self) -> dict:
        per = {c: a.result() for c, a in self.acc.items()}
        ious = [v["iou"] for v in per.values() if v["iou"] is not None]
        fs = [v["max_fbeta"] for v in per.values() if v["max_fbeta"] is not None]
        return {
            "per_class": per,
            "mean_iou": float(np.mean(ious)) if ious else None,
            "mean_max_fbeta": float(np.mean(fs)) if fs else None,
        }


def binary_f_measure(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5, beta2: float = 1.0) -> float:
    """F-measure of a binary classifier: ``scores`` (N,) probabilities, ``labels`` (N,) bool."""
    pred = scores >= threshold
    tp = float(np.count_nonzero(pred & labels))
    p = tp / max(1, int(np.count_nonzero(pred)))
    r = tp / max(1, int(np.count_nonzero(labels)))
    return 0.0 if p + r == 0 else (1 + beta2) * p * r / (beta2 * p + r)
