"""Semantic segmentation: per-class probability maps -> threshold -> connected components."""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Optional

import numpy as np

from inference.pipelines.base import (
    NetworkMaps, Pipeline, Progress, Runtimes, check_image, expect_rgb_input, maps_to_proposals, resize_maps,
    semantic_network_maps,
)
from inference.embedding import attach_embeddings
from inference.pipelines.postprocess import network_maps_to_proposals
from inference.proposal import Proposal
from inference.registry import ModelError, ModelInfo
from inference.tiling import tiled_apply

_WARMUP_SIDE = 64


class SemanticPipeline(Pipeline):
    """A model mapping ``(1, 3, H, W)`` normalised RGB to ``(1, C, H, W)`` scores, C = len(classes).

    ``model.onnx`` runs in ONNX Runtime; without it ``model.pt`` (TorchScript) runs in PyTorch.
    The manifest's ``output_activation`` turns the output into probabilities. Images larger
    than the manifest's tile are processed in overlapping tiles (``inference.tiling``).

    Pre-processing, the network pass and activation are ``semantic_network_maps``, the
    function training validates with: a fixed ``input_size`` is reached with
    ``resize_image`` (area-averaging when shrinking); a model with ``input_size`` null
    sees the image at its own size, padded to ``pad_multiple``.

    Parameters: ``threshold`` (probability, default 0.5), ``min_area`` (pixels, default 64:
    specks smaller than an 8 x 8 patch are noise an expert would only have to reject;
    a manifest's ``defaults`` or the caller's params can lower it), ``flip_tta``
    (average with the mirrored image; the trainer sets it where it paid on validation),
    ``pad_multiple`` (1: no padding; 32 for a stride-32 network taking any size),
    ``split_panes`` (use the model's boundary output, where it has one, to cut each
    class map into panes: ``boundary_threshold``, seeds of ``min_seed_area`` pixels),
    ``random_walk`` (IRNet's propagation, 002, on the model's boundary map: each class's
    probabilities spread within the regions the boundary encloses and stop at it, on a
    stride-4 grid; about a second per photo, off by default; ``walk_probabilities``),
    ``full_resolution`` (post-process the maps resized to the photo, the reference
    path ``maps_to_proposals``; by default thresholds, components and pane splitting
    run on the network's map and only each region's box is resized:
    ``inference.pipelines.postprocess``).
    """

    task = "semantic"
    defaults = {
        "threshold": 0.5, "min_area": 64, "flip_tta": False, "pad_multiple": 1,
        "split_panes": True, "boundary_threshold": 0.5, "min_seed_area": 400, "full_resolution": False,
        "random_walk": False,
    }

    def __init__(self, info: ModelInfo, runtimes: Runtimes):
        super().__init__(info, runtimes)
        man = self.manifest
        self._fixed = man.input_size
        if info.has("model.onnx"):
            path = info.file("model.onnx")
            self._sess = runtimes.onnx.session(path)
            self._input, fixed = expect_rgb_input(self._sess, path)
            self._outputs = [o.name for o in self._sess.get_outputs()]
            if fixed is not None and man.input_size is not None and tuple(fixed) != tuple(man.input_size):
                raise ModelError(
                    f"{path}: the model takes {fixed[0]}x{fixed[1]} images but the manifest says "
                    f"input_size {man.input_size[0]}x{man.input_size[1]}"
                )
            self._fixed = fixed or man.input_size
            self._module = None
        else:
            self._sess = None
            self._module = runtimes.torch.load_module(info.file("model.pt"))
        side = self._fixed or (_WARMUP_SIDE, _WARMUP_SIDE)
        try:
            out = self._raw(np.zeros((1, 3, side[0], side[1]), np.float32))
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the runtime raises, the model is unusable
            raise ModelError(f"{info.path}: the model does not run on a {side[0]}x{side[1]} test image "
                             f"({str(exc).strip().splitlines()[0][:300]})") from None
        if out.ndim != 4 or out.shape[1] != len(man.classes):
            raise ModelError(
                f"{info.path}: the model outputs shape {tuple(out.shape)}; the manifest's "
                f"{len(man.classes)} classes need (1, {len(man.classes)}, H, W)"
            )

    def _run(self, x: np.ndarray) -> list[Optional[np.ndarray]]:
        """``(1, 3, H, W)`` float32 -> ``[logits (1, C, H, W), boundary logits (1, 1, H, W)
        or None, decoder features (1, F, h, w) or None]``: the boundary where the model
        has that output (pane splitting), the features where it exposes them (embeddings)."""
        if self._sess is not None:
            values = self._sess.run(None, {self._input: x})
            named = dict(zip(self._outputs, values))
            # the second output, whatever its name, is the boundary map; "features" is not
            second = values[1] if len(values) > 1 and self._outputs[1] != "features" else None
            features = named.get("features")
            return [np.asarray(values[0]), None if second is None else np.asarray(second),
                    None if features is None else np.asarray(features)]
        import torch

        dev = self.runtimes.torch.device
        with torch.no_grad():
            y = self._module(torch.from_numpy(x).to(dev))
        ys = list(y[:2]) if isinstance(y, (tuple, list)) else [y]
        return [t.float().cpu().numpy() for t in ys]

    def _raw(self, x: np.ndarray) -> np.ndarray:
        """``(1, 3, H, W)`` float32 -> ``(1, C, H, W)`` float32 raw output."""
        return self._run(x)[0]

    def _network_maps(self, rgb: np.ndarray, p: Mapping[str, Any], keep_logits: bool = False) -> NetworkMaps:
        man = self.manifest
        return semantic_network_maps(
            rgb, self._run, input_size=self._fixed, mean=man.mean, std=man.std, activation=man.output_activation,
            flip=bool(p["flip_tta"]), pad_multiple=int(p["pad_multiple"]), keep_logits=keep_logits,
        )

    def probabilities(
        self, rgb: np.ndarray, threshold: Optional[float] = None, params: Optional[Mapping[str, Any]] = None
    ) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB (one tile or a whole image) -> ``(C, H, W)`` float32 in [0, 1].

        With ``threshold`` (proposing), channels that cannot exceed it anywhere, and the
        background channel, are returned as zeros without being resized to full size.
        """
        return self._maps(rgb, threshold, self.params(params))[: len(self.manifest.classes)]

    def _maps(self, rgb: np.ndarray, threshold: Optional[float], p: Mapping[str, Any]) -> np.ndarray:
        """``probabilities``, with the boundary map as one more channel when the model has one."""
        h, w = rgb.shape[:2]
        net = self._network_maps(rgb, p)
        probs = net.probs
        assert probs is not None  # asked without keep_logits
        skip: list[int] = []
        if threshold is not None:
            bg = self.manifest.background_class
            skip = [i for i, name in enumerate(self.manifest.classes) if name == bg]
        if net.boundary is not None and p["split_panes"]:
            probs = np.concatenate([probs, net.boundary[None]], 0)
        if threshold is None:
            return resize_maps(probs, (h, w))
        return resize_maps(probs, (h, w), skip_at_or_below=threshold, skip=skip)

    def probability_maps(
        self, rgb: np.ndarray, cancel: object = None, progress: Progress = None, threshold: Optional[float] = None,
        params: Optional[Mapping[str, Any]] = None,
    ) -> np.ndarray:
        """Whole-image ``(C, H, W)`` float32 probabilities, tiled when the image exceeds the tile.

        ``threshold``: only what proposing at that threshold needs (see ``probabilities``).
        """
        return self._whole_maps(rgb, cancel, progress, threshold, self.params(params))[: len(self.manifest.classes)]

    def _whole_maps(self, rgb: np.ndarray, cancel: object, progress: Progress, threshold: Optional[float],
                    p: Mapping[str, Any]) -> np.ndarray:
        rgb = check_image(rgb)
        tile = self.manifest.tile
        if tile is None or max(rgb.shape[:2]) <= tile:
            maps = self._maps(rgb, threshold, p)
            if progress:
                progress(1, 1)
            return maps
        # tiles are blended: a channel below the threshold in one tile still weighs in
        # the overlap with its neighbour, so tiles skip only the background channel
        fn = functools.partial(self._maps, threshold=None if threshold is None else -np.inf, p=p)
        return tiled_apply(rgb, fn, tile, self.manifest.overlap, cancel=cancel, progress=progress)

    def propose(
        self, rgb: np.ndarray, params: Optional[Mapping[str, Any]] = None, cancel: object = None, progress: Progress = None
    ) -> list[Proposal]:
        return self.propose_steps(rgb, params, cancel, progress)()

    def propose_steps(
        self, rgb: np.ndarray, params: Optional[Mapping[str, Any]] = None, cancel: object = None, progress: Progress = None
    ) -> Callable[[], list[Proposal]]:
        """The network pass (and, tiled, the stitching) now; thresholds and components later."""
        p = self.params(params)
        thr = float(p["threshold"])
        n = len(self.manifest.classes)
        if p["full_resolution"]:
            maps = self._whole_maps(rgb, cancel, progress, thr, p)
            boundary = maps[n] if maps.shape[0] > n else None
            return lambda: maps_to_proposals(
                maps[:n], self.manifest.classes, self.info, threshold=thr,
                background=self.manifest.background_class, min_area=int(p["min_area"]),
                boundary=boundary, boundary_threshold=float(p["boundary_threshold"]),
                min_seed_area=int(p["min_seed_area"]),
            )
        rgb = check_image(rgb)
        tile = self.manifest.tile
        if tile is not None and max(rgb.shape[:2]) > tile:
            # tiles are stitched at full resolution: post-process the stitched maps as they are
            maps = self._whole_maps(rgb, cancel, progress, thr, p)
            net = NetworkMaps(maps[:n], maps[n] if maps.shape[0] > n else None)
        else:
            walk = bool(p["random_walk"])
            net = self._network_maps(rgb, p, keep_logits=0.0 < thr < 1.0 and not walk)
            if walk and net.boundary is not None and net.probs is not None:
                net = NetworkMaps(walk_probabilities(net.probs, net.boundary, self.manifest.classes,
                                                     self.manifest.background_class),
                                  net.boundary, features=net.features)
            if progress:
                progress(1, 1)

        def finish() -> list[Proposal]:
            proposals = network_maps_to_proposals(
                net, rgb.shape[:2], self.manifest.classes, self.info, threshold=thr,
                background=self.manifest.background_class, min_area=int(p["min_area"]),
                split_panes=bool(p["split_panes"]), boundary_threshold=float(p["boundary_threshold"]),
                min_seed_area=int(p["min_seed_area"]),
            )
            attach_embeddings(proposals, rgb, net.features)
            return proposals

        return finish


WALK_STRIDE = 4  # IRNet's grid


def walk_probabilities(probs: np.ndarray, boundary: np.ndarray, classes: tuple[str, ...],
                       background: Optional[str]) -> np.ndarray:
    """``(C, h, w)`` class probabilities refined by IRNet's random walk (002, Eq. 12-13) over
    the model's ``(h, w)`` boundary map: on a stride-4 grid (cell means of the
    probabilities, cell maxima of the boundary, so a thin boundary still cuts), each
    foreground class's map is propagated 256 steps within what the boundary encloses,
    then brought back to ``(h, w)``; the background is what the classes leave. Where a
    proposal's mask is ragged along a frame or a reflection, the walk fills it up to the
    boundary instead of the threshold's contour."""
    import cv2

    from inference import random_walk as rw

    c, h, w = probs.shape
    s = WALK_STRIDE
    gh, gw = -(-h // s), -(-w // s)
    pad = np.zeros((c, gh * s, gw * s), np.float32)
    pad[:, :h, :w] = probs
    grid = pad.reshape(c, gh, s, gw, s).mean(axis=(2, 4))
    bnd = rw.pool_to_grid(np.asarray(boundary, np.float32)[None], s)[0]
    fg = [i for i, name in enumerate(classes) if name != background]
    walked = rw.propagate(grid[fg], bnd)
    out = probs.copy()
    for k, i in enumerate(fg):
        up = cv2.resize(walked[k], (gw * s, gh * s), interpolation=cv2.INTER_LINEAR)[:h, :w]
        out[i] = np.clip(up, 0.0, 1.0)
    bg = [i for i, name in enumerate(classes) if name == background]
    if bg:
        out[bg[0]] = np.clip(1.0 - out[fg].sum(0), 0.0, 1.0)
    return out
