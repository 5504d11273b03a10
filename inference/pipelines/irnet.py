"""IRNet proposals (seed 002, section 5): CAMs, a class boundary map and a displacement
field from one ONNX model, turned into instance masks by ``inference.random_walk``.

The model (``training.irnet``) maps ``image (1, 3, H, W)`` (H, W multiples of 4; the
pipeline pads) to ``logits (1, C)``, ``cams (1, C, H, W)``, ``boundary (1, 1, H/4, W/4)``
and ``displacement (1, 2, H/4, W/4)``. Classes whose probability reaches
``class_threshold`` get a CAM, normalised by its maximum. Then, by ``mode``:

- ``instances`` (002's method): CAMs brought to the grid, a class-agnostic instance map
  from the refined displacement field, instance-wise CAMs propagated by the random
  walk over the boundary map's affinities, each pixel labelled with the best
  (class, instance), or background below ``bg_threshold``;
- ``boundary``: the same walk with one instance per class (002's Table 1, "CAM + class
  boundary"), instances are connected components;
- ``cam``: the CAM thresholded at ``cam_threshold``, connected components (Table 1, "CAM").

A proposal's score is the largest CAM value of its class inside its mask (002, section
6.2), so it lies in [0, 1]. Everything after the network is numpy: no torch here.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import cv2
import numpy as np

from annotation.mask import Mask
from inference import random_walk as rw
from inference.pipelines.base import (
    Pipeline,
    Progress,
    Runtimes,
    activate,
    check_image,
    expect_rgb_input,
    normalize,
    pad_to_multiple,
)
from inference.pipelines.cam import normalise_cam
from inference.proposal import Proposal
from inference.registry import ModelError, ModelInfo

GRID_STRIDE = 4
OUTPUTS = ("logits", "cams", "boundary", "displacement")
MODES = ("instances", "boundary", "cam")


class IRNetPipeline(Pipeline):
    task = "irnet"
    defaults: ClassVar[Mapping[str, Any]] = {
        "mode": "instances",
        "class_threshold": 0.5,
        "cam_threshold": 0.1,  # the CAM pipeline's threshold, for mode "cam"
        "floor_quantile": 0.0,  # the CAM's clean-surface level taken off (the CAM model's, set by the trainer)
        "radius": rw.INFERENCE_RADIUS,
        "beta": rw.BETA,
        "iterations": rw.WALK_ITERATIONS,
        "refine_iterations": rw.REFINE_ITERATIONS,
        "centroid_threshold": rw.CENTROID_THRESHOLD,
        "seed_threshold": rw.SEED_THRESHOLD,
        "bg_threshold": rw.BACKGROUND_THRESHOLD,
        "min_area": 20,
    }

    def __init__(self, info: ModelInfo, runtimes: Runtimes):
        super().__init__(info, runtimes)
        path = info.file("model.onnx")
        self._sess = runtimes.onnx.session(path)
        self._input, _fixed = expect_rgb_input(self._sess, path)
        names = [o.name for o in self._sess.get_outputs()]
        if sorted(names) != sorted(OUTPUTS):
            raise ModelError(f"{path}: outputs {names}; an irnet model gives {', '.join(OUTPUTS)}")
        self._order = [names.index(n) for n in OUTPUTS]
        try:
            outs = self._run(np.zeros((1, 3, 32, 48), np.float32))
        except Exception as exc:  # noqa: BLE001 - whatever the runtime raises, the model is unusable
            raise ModelError(f"{path}: the model does not run on a test image "
                             f"({str(exc).strip().splitlines()[0][:300]})") from None
        c = len(self.manifest.classes)
        want = {"logits": (1, c), "cams": (1, c, 32, 48), "boundary": (1, 1, 8, 12), "displacement": (1, 2, 8, 12)}
        for name, arr in zip(OUTPUTS, outs):
            if tuple(arr.shape) != want[name]:
                raise ModelError(f"{path}: output {name!r} has shape {tuple(arr.shape)} on a 32x48 image; "
                                 f"expected {want[name]}")

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        outs = self._sess.run(None, {self._input: x})
        return [np.asarray(outs[i]) for i in self._order]

    def network(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One network pass: ``(probs (C,), cams (C, H, W), boundary (h, w), displacement (2, h, w))``.

        ``cams`` is cropped back to the photo and not normalised; the grid outputs keep the
        padded photo's grid (``h = ceil(H / 4)``).
        """
        h, w = rgb.shape[:2]
        padded = pad_to_multiple(rgb, GRID_STRIDE)
        logits, cams, boundary, disp = self._run(normalize(padded, self.manifest))
        act = self.manifest.output_activation
        probs = activate(logits[0], "sigmoid" if act == "none" else act, axis=0)
        return probs, cams[0][:, :h, :w], boundary[0, 0], disp[0]

    def propose(
        self, rgb: np.ndarray, params: Mapping[str, Any] | None = None, cancel: object = None, progress: Progress = None
    ) -> list[Proposal]:
        p = self.params(params)
        if p["mode"] not in MODES:
            raise ValueError(f"irnet mode {p['mode']!r}: use one of {', '.join(MODES)}")
        rgb = check_image(rgb)
        h, w = rgb.shape[:2]
        probs, cams, boundary, disp = self.network(rgb)
        classes = self.manifest.classes
        chosen = [i for i, c in enumerate(classes)
                  if probs[i] >= p["class_threshold"] and c != self.manifest.background_class]
        norm = np.zeros_like(cams, dtype=np.float32)
        for i in chosen:
            norm[i] = normalise_cam(cams[i], float(p["floor_quantile"]))
        chosen = [i for i in chosen if norm[i].max() > 0]
        if progress:
            progress(1, 2)
        if not chosen:
            return []
        if p["mode"] == "cam":
            keys = [(i, 1) for i in chosen]
            labels = rw.assign_labels(norm[chosen], float(p["cam_threshold"]))
        else:
            keys, labels = self._walk(norm, boundary, disp, chosen, p, (h, w))
        found = rw.labels_to_instances(labels, keys, norm)
        if progress:
            progress(2, 2)
        out = []
        for k, (ci, score) in enumerate(zip(found.classes, found.scores), start=1):
            full = found.labels == k
            if int(full.sum()) < int(p["min_area"]):
                continue
            out.append(Proposal(Mask.from_full(full), classes[ci], float(score), self.info.name, self.info.version))
        out.sort(key=lambda pr: -pr.score)
        return out

    def _walk(self, norm: np.ndarray, boundary: np.ndarray, disp: np.ndarray, chosen: list[int],
              p: Mapping[str, Any], size: tuple[int, int]) -> tuple[list[tuple[int, int]], np.ndarray]:
        """The random walk on the grid, then each pixel's label at the photo's size."""
        h, w = size
        gh, gw = boundary.shape
        full = np.zeros((norm.shape[0], gh * GRID_STRIDE, gw * GRID_STRIDE), np.float32)
        full[:, :h, :w] = norm
        grid = rw.pool_to_grid(full, GRID_STRIDE)
        scores, keys = rw.irnet_instances(
            grid, boundary, disp, chosen, radius=float(p["radius"]), beta=float(p["beta"]),
            iterations=int(p["iterations"]), refine_iterations=int(p["refine_iterations"]),
            centroid_threshold=float(p["centroid_threshold"]), seed_threshold=float(p["seed_threshold"]),
            use_displacement=p["mode"] == "instances",
        )
        if not keys:
            return keys, np.zeros((h, w), np.int32)
        up = np.zeros((len(keys), h, w), np.float32)
        for i in range(len(keys)):
            big = cv2.resize(scores[i], (gw * GRID_STRIDE, gh * GRID_STRIDE), interpolation=cv2.INTER_LINEAR)
            up[i] = big[:h, :w]
        return keys, rw.assign_labels(up, float(p["bg_threshold"]))
