"""What pipelines share: the backend interface, pre-processing and maps-to-proposals.

A pipeline is built from a ``ModelInfo`` and the engine's ``Runtimes``; building loads
and checks the weights (``ModelError`` if they do not load or do not run on a test input),
``propose`` turns one RGB image into proposals.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Optional, Sequence

import cv2
import numpy as np

from annotation.mask import Mask
from inference.proposal import Proposal
from inference.registry import Manifest, ModelError, ModelInfo
from inference.runtime import OnnxRuntime, TorchRuntime

Progress = Optional[Callable[[int, int], None]]


@dataclass
class Runtimes:
    """The engine's runtimes; ``torch`` is a ``TorchRuntime`` that imports torch only when used."""

    onnx: OnnxRuntime
    torch: TorchRuntime = field(default_factory=TorchRuntime)


class Pipeline:
    """Backend interface (subclasses register themselves in ``inference.pipelines.PIPELINES``).

    Attributes:
        task: the manifest ``task`` this backend runs.
        defaults: parameter defaults; the manifest's ``defaults`` and the caller's
            ``params`` override them, in that order.
    """

    task: ClassVar[str] = ""
    defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, info: ModelInfo, runtimes: Runtimes):
        self.info = info
        self.manifest: Manifest = info.manifest
        self.runtimes = runtimes

    def params(self, overrides: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        """Effective parameters; unknown keys are refused so a typo does not pass silently."""
        out = {**self.defaults, **{k: v for k, v in self.manifest.defaults.items() if k in self.defaults}}
        for k, v in (overrides or {}).items():
            if k not in self.defaults:
                raise ValueError(f"{self.task} pipeline has no parameter {k!r}; it takes {', '.join(self.defaults)}")
            out[k] = v
        return out

    def propose(
        self, rgb: np.ndarray, params: Optional[Mapping[str, Any]] = None, cancel: object = None, progress: Progress = None
    ) -> list[Proposal]:
        """Proposals for ``rgb``, an ``(H, W, 3)`` uint8 RGB image."""
        raise NotImplementedError


@functools.lru_cache(maxsize=16)
def _normalize_lut(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: the normalised value of each 8-bit level, per channel."""
    levels = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
    return ((levels - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]).astype(np.float32)


def normalize(rgb: np.ndarray, manifest: Manifest) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(1, 3, H, W)`` float32, ``(rgb / 255 - mean) / std``.

    A table lookup per channel (3x faster than float arithmetic, and it writes the
    planar layout directly).
    """
    lut = _normalize_lut(tuple(manifest.mean), tuple(manifest.std))
    out = np.empty((1, 3) + rgb.shape[:2], np.float32)
    for c in range(3):
        np.take(lut[c], rgb[:, :, c], out=out[0, c])
    return out


def activate(raw: np.ndarray, activation: str, axis: int = 0) -> np.ndarray:
    """Raw model output to probabilities: ``softmax`` over ``axis``, ``sigmoid``, or ``none``."""
    raw = raw.astype(np.float32, copy=False)
    if activation == "softmax":
        e = np.exp(raw - raw.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    if activation == "sigmoid":
        out = np.negative(raw)
        np.exp(out, out=out)
        out += 1.0
        np.reciprocal(out, out=out)
        return out
    return raw


def resize_maps(
    maps: np.ndarray, size: tuple[int, int], *, skip_at_or_below: Optional[float] = None, skip: Sequence[int] = ()
) -> np.ndarray:
    """``(C, h, w)`` float maps -> ``(C, H, W)`` bilinear, ``size`` = ``(H, W)``.

    Channels in ``skip``, and channels whose maximum is at most ``skip_at_or_below``, come
    back as zeros without being resized: bilinear values never exceed the input's
    maximum, so such a channel cannot pass a ``> threshold`` test at full size either.
    """
    c, h, w = maps.shape
    if (h, w) == tuple(size):
        return maps
    out = np.zeros((c, size[0], size[1]), np.float32)
    for i in range(c):
        m = maps[i]
        if i in skip or (skip_at_or_below is not None and float(m.max()) <= skip_at_or_below):
            continue
        cv2.resize(m, (size[1], size[0]), dst=out[i], interpolation=cv2.INTER_LINEAR)
    return out


def check_image(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    return rgb


def maps_to_proposals(
    maps: np.ndarray,
    classes: tuple[str, ...],
    info: ModelInfo,
    *,
    threshold: float,
    background: Optional[str] = None,
    close_radius: int = 0,
    min_area: int = 1,
    scores: Optional[Mapping[str, float]] = None,
) -> list[Proposal]:
    """One proposal per connected component of each class map above ``threshold``.

    Args:
        maps: ``(C, H, W)`` float maps in [0, 1], channel ``i`` is ``classes[i]``.
        background: a class that yields no proposals.
        close_radius: morphological closing radius applied after thresholding (0 = none).
        min_area: components with fewer pixels are dropped.
        scores: class -> fixed score; otherwise a component's score is its mean map value.
    """
    out: list[Proposal] = []
    for ci, name in enumerate(classes):
        if name == background or (scores is not None and name not in scores):
            continue
        prob = maps[ci]
        mask = Mask.from_full(prob > threshold)
        if mask.is_empty():
            continue
        if close_radius > 0:
            mask = mask.close(int(close_radius))
        # one labelling pass: components, then the small ones dropped (remove_small
        # first would label the whole map twice)
        for comp in (c for c in mask.components() if c.area >= min_area):
            if scores is not None:
                score = float(scores[name])
            else:
                y0, x0 = comp.y0, comp.x0
                h, w = comp.array.shape
                score = float(prob[y0 : y0 + h, x0 : x0 + w][comp.array].mean())
            out.append(Proposal(comp, name, score, info.name, info.version))
    out.sort(key=lambda p: -p.score)
    return out


def expect_rgb_input(sess: Any, path: object) -> tuple[str, Optional[tuple[int, int]]]:
    """Check an ONNX session takes one ``(1, 3, H, W)`` image; returns (input name, fixed (H, W) or None)."""
    inputs = sess.get_inputs()
    shape = list(inputs[0].shape)
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
        raise ModelError(f"{path}: input {inputs[0].name!r} has shape {shape}; expected (1, 3, H, W) RGB")
    fixed = (shape[2], shape[3]) if isinstance(shape[2], int) and isinstance(shape[3], int) else None
    return inputs[0].name, fixed
