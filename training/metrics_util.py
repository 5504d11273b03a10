"""Validation metrics of the 000 protocol, per class: IoU, maximum F-beta (beta^2 = 0.3), MAE.

The definitions are ``annotation.metrics``' (its docstring states them), so that a
manifest's validation figures are the numbers ``specula eval`` reports on the same
predictions: per-image IoU of the hard prediction and the mean-curve maximum F-beta,
both averaged over the images whose truth holds the class; MAE over all images; images
whose truth lacks the class count only in MAE, the pooled IoU and
``images_with_false_positives``. This module only adapts the trainers' inputs
(softmax maps with a background channel, class-index targets) to that module.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from annotation import metrics

BETA2 = metrics.BETA2


class ClassAccumulator:
    """Running scores of one class over a validation set (``annotation.metrics.ClassAccumulator``)."""

    def __init__(self) -> None:
        self._acc = metrics.ClassAccumulator(beta2=BETA2)

    def add(self, prob: np.ndarray, pred: Optional[np.ndarray], gt: np.ndarray) -> None:
        """``prob`` (H, W) float in [0, 1]; ``pred`` the (H, W) bool hard prediction IoU is
        taken of (``None``: ``prob >= 0.5``, what ``specula eval`` does with a map); ``gt`` (H, W) bool."""
        self._acc.add(prob, gt, pred)

    def add_scores(self, scores: metrics.ImageScores) -> None:
        """Add one image already scored by ``annotation.metrics.per_image_scores``."""
        self._acc.add_scores(scores)

    def result(self) -> dict:
        """``iou``, ``max_fbeta``, ``mae``, ``images_with_class``, ``images_with_false_positives``, ..."""
        return self._acc.result().as_dict()


class SegmentationMetrics:
    """Per-class accumulators fed with softmax probabilities and the ground-truth class map."""

    def __init__(self, classes: list[str]):
        self.classes = list(classes)
        self.acc = {c: ClassAccumulator() for c in self.classes}

    def add(self, probs: np.ndarray, target: np.ndarray) -> None:
        """``probs`` ``(K, H, W)`` with channel 0 background and ``1 + i`` for ``classes[i]``;
        ``target`` ``(H, W)`` int map in the same indexing.

        The hard prediction of a class is its map at 0.5, as the semantic pipeline
        proposes and as ``specula eval`` cuts a probability map, not the argmax."""
        scores = metrics.per_image_scores(probs, target, [None, *self.classes], BETA2)
        for c, s in scores.items():
            self.acc[c].add_scores(s)

    def result(self) -> dict:
        """``{"per_class": {class: {...}}, "mean_iou", "mean_max_fbeta"}`` (means over classes with images)."""
        per = {c: a.result() for c, a in self.acc.items()}
        return {"per_class": per, **metrics.mean_over_classes(per)}


def binary_f_measure(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5, beta2: float = 1.0) -> float:
    """F-measure of a binary classifier: ``scores`` (N,) probabilities, ``labels`` (N,) bool."""
    pred = scores >= threshold
    tp = float(np.count_nonzero(pred & labels))
    p = tp / max(1, int(np.count_nonzero(pred)))
    r = tp / max(1, int(np.count_nonzero(labels)))
    return 0.0 if p + r == 0 else (1 + beta2) * p * r / (beta2 * p + r)
