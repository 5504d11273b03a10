"""Instance segmentation with a Mask R-CNN-style ONNX model."""
from __future__ import annotations

from typing import Any, Mapping, Optional

import cv2
import numpy as np

from annotation.mask import Mask
from inference.pipelines.base import Pipeline, Progress, Runtimes, check_image, expect_rgb_input, normalize
from inference.proposal import Proposal
from inference.registry import ModelError, ModelInfo
from annotation.cancel import is_cancelled
from inference.tiling import Cancelled

OUTPUTS = ("boxes", "labels", "scores", "masks")


class InstancePipeline(Pipeline):
    """``model.onnx`` with input ``(1, 3, H, W)`` normalised RGB and outputs

    - ``boxes`` ``(N, 4)`` float xyxy in input pixels,
    - ``labels`` ``(N,)`` int, an index into the manifest's ``classes``,
    - ``scores`` ``(N,)`` float in [0, 1],
    - ``masks`` ``(N, 1, H, W)`` float probabilities at input resolution.

    One proposal per detection (the mask's pixels above ``mask_threshold``), for
    detections scoring at least ``score_threshold``; the background class is skipped.
    """

    task = "instance"
    defaults = {"score_threshold": 0.7, "mask_threshold": 0.5, "min_area": 1}

    def __init__(self, info: ModelInfo, runtimes: Runtimes):
        super().__init__(info, runtimes)
        path = info.file("model.onnx")
        self._sess = runtimes.onnx.session(path)
        self._input, fixed = expect_rgb_input(self._sess, path)
        self._fixed = fixed or self.manifest.input_size
        names = [o.name for o in self._sess.get_outputs()]
        missing = [n for n in OUTPUTS if n not in names]
        if missing:
            raise ModelError(f"{path}: outputs {names}; an instance model needs {', '.join(OUTPUTS)} (missing {missing})")
        side = self._fixed or (64, 64)
        try:
            self._run(np.zeros((1, 3, side[0], side[1]), np.float32))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: the model does not run on a test image ({str(exc).splitlines()[0][:300]})") from None

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs = self._sess.run(list(OUTPUTS), {self._input: x})
        return dict(zip(OUTPUTS, (np.asarray(o) for o in outs)))

    def propose(
        self, rgb: np.ndarray, params: Optional[Mapping[str, Any]] = None, cancel: object = None, progress: Progress = None
    ) -> list[Proposal]:
        p = self.params(params)
        rgb = check_image(rgb)
        h, w = rgb.shape[:2]
        src = rgb
        if self._fixed is not None and (h, w) != tuple(self._fixed):
            src = cv2.resize(rgb, (self._fixed[1], self._fixed[0]), interpolation=cv2.INTER_LINEAR)
        out = self._run(normalize(src, self.manifest))
        if is_cancelled(cancel):
            raise Cancelled("cancelled")
        classes = self.manifest.classes
        proposals: list[Proposal] = []
        for score, label, mprob in zip(out["scores"].reshape(-1), out["labels"].reshape(-1), out["masks"]):
            if score < p["score_threshold"]:
                continue
            label = int(label)
            if not 0 <= label < len(classes):
                raise ModelError(f"{self.info.path}: label {label} but the manifest has {len(classes)} classes")
            name = classes[label]
            if name == self.manifest.background_class:
                continue
            prob = np.asarray(mprob, np.float32).reshape(mprob.shape[-2:])
            if prob.shape != (h, w):
                prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
            mask = Mask.from_full(prob > p["mask_threshold"])
            if mask.area < max(1, int(p["min_area"])):
                continue
            proposals.append(Proposal(mask, name, float(score), self.info.name, self.info.version))
        if progress:
            progress(1, 1)
        proposals.sort(key=lambda q: -q.score)
        return proposals
