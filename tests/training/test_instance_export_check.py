"""The ONNX-against-PyTorch check of instance models judges masks by what they decide."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")


def _detections(mask: np.ndarray) -> list[np.ndarray]:
    boxes = np.array([[2.0, 2.0, 14.0, 14.0]], np.float32)
    return [boxes, np.array([1], np.int64), np.array([0.9], np.float32), mask[None, None].astype(np.float32)]


def test_masks_differing_only_where_undecided_pass_and_decided_differences_fail() -> None:
    from training.instance import compare_detections

    ref = np.zeros((16, 16), np.float32)
    ref[4:8, 4:8] = 0.9
    ref[8:12, 4:12] = 0.51  # a barely trained head: half the mask hovers at 0.5
    flipped = ref.copy()
    flipped[8:12, 4:12] = 0.49  # float rounding across runtimes: IoU 16 / 48
    ok = compare_detections(_detections(ref), _detections(flipped), floor=0.05)
    assert ok["paired"] == 1 and ok["min_mask_iou"] < 0.9 and ok["problems"] == []

    wrong = ref.copy()
    wrong[4:8, 4:8] = 0.1  # the confident part lost: a real export error
    bad = compare_detections(_detections(ref), _detections(wrong), floor=0.05)
    assert any("overlap by IoU" in p for p in bad["problems"])
