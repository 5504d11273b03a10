"""Click refinement: an image, the previous mask and positive / negative clicks -> a mask.

The pipeline of the ``clicks`` task (our own click-refinement model, DESIGN.md), with
segment-anything's ``SamPredictor`` shape: ``set_image`` once per image, then ``predict``
per click, numpy in and ``Mask`` out::

    session = ClickSession.from_info(info)          # or from_folder(path)
    session.set_image(rgb)                           # (H, W, 3) uint8 RGB
    mask = session.predict([[120.0, 88.5]])          # first click: positive points only
    mask = session.predict([[120.0, 88.5]], [[300.0, 40.0]], previous_mask=mask)

Coordinates (the ``Mask`` convention): points are ``(N, 2)`` float arrays of ``(x, y)`` in
image pixels, pixel centres at integer coordinates, x to the right, y down; a box is
``(x0, y0, x1, y1)`` with exclusive ends; sizes are ``(H, W)``. A previous mask is a
``Mask`` of this image or an ``(H, W)`` bool array.

What happens inside ``predict`` (the same functions build the training samples, so the
network sees in the field what it saw in training):

1. a square **crop window** is chosen (``choose_window``): with no previous mask and no
   box (a first click, whose object's extent is unknown) the whole image (capped at
   ``first_click_side`` pixels around the clicks); otherwise the box around the previous
   mask, the box and the positive clicks, grown by ``expansion`` (1.4: 20 % context per
   side, RITM's zoom-in) and at least ``min_side`` pixels. A window that still holds the
   object with a margin and is not much larger than the new one is kept, so the cached
   encoder features of a crop serve several clicks;
2. the crop is resized to ``S x S`` (``S`` = the manifest's input size; area-averaged when
   shrinking, ``inference.pipelines.base.resize_image``); parts outside the image are
   the ImageNet mean colour (zero after normalisation);
3. the network gets the normalised crop ``image`` ``(1, 3, S, S)`` and ``aux``
   ``(1, 3, S, S)``: the previous mask resampled to the crop (area average, 0..1), and
   disks of radius ``disk_radius`` (network pixels) at the positive and at the negative
   clicks; it answers mask logits ``(1, 1, S, S)``;
4. the logits are resized back to the window (bilinear) and thresholded at 0; the part
   inside the image is the returned ``Mask`` (nothing outside the window is set).

Weights: ``model.onnx`` (inputs ``image``, ``aux``; output ``logits``: the click maps enter
beside the encoder's stem, so the whole network runs per click), or ``encoder.onnx``
(``image`` -> features, run once per crop and cached) plus ``decoder.onnx`` (the
features and ``aux`` -> ``logits``, run per click). A box alone is fed as a previous mask
that fills the box (the trainer shows the network such boxes).

The click rule of training and of the benchmark (RITM's, Sofiiuk et al. 2022) is here
too: ``next_click`` puts the next click at the centre of the largest error region (the
point farthest from the boundary of the false negatives or false positives, whichever
reaches farther), positive in a missed region and negative in a wrong one, and
``click_trajectory`` runs it for ``max_clicks`` clicks. ``GrabCutClickSession`` answers
the same calls with OpenCV GrabCut (the prompt tool's fallback) for comparison.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import cv2
import numpy as np

from annotation.mask import Box, Mask
from inference.pipelines.base import check_image, normalize_with, resize_image
from inference.pipelines.prompt import GrabCutPromptSession
from inference.registry import Manifest, ModelError, ModelInfo

TASK = "clicks"
# one of these sets of files makes a click model (inference.registry.REQUIRED_FILES)
REQUIRED = (("model.onnx",), ("encoder.onnx", "decoder.onnx"))
DEFAULT_INPUT = 384
DEFAULTS: dict[str, float] = {
    "expansion": 1.4,  # window side / object box side (RITM's zoom-in expansion ratio)
    "min_side_fraction": 0.5,  # smallest window side, as a fraction of the input size S
    "first_click_side": 1600,  # largest window (pixels) for a click without a previous mask
    "disk_radius": 5.0,  # click disks, in network pixels (RITM: 5 at 320-400 px)
    "keep_ratio": 1.25,  # a window is kept while it is at most this much larger than needed
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------ geometry
@dataclass(frozen=True)
class CropWindow:
    """A square window of the image, seen by the network at ``size x size`` pixels.

    ``x0``, ``y0``: image coordinates of the window's top-left pixel (may be negative,
    or the window may pass the right/bottom edge: those pixels are padding);
    ``side``: its side in image pixels; ``size``: the network's side ``S``.
    """

    x0: int
    y0: int
    side: int
    size: int

    @property
    def scale(self) -> float:
        """Network pixels per image pixel."""
        return self.size / self.side

    @property
    def box(self) -> Box:
        """``(x0, y0, x1, y1)`` of the window in image pixels (exclusive ends)."""
        return (self.x0, self.y0, self.x0 + self.side, self.y0 + self.side)

    def to_network(self, xy: np.ndarray) -> np.ndarray:
        """``(N, 2)`` image ``(x, y)`` -> network ``(u, v)`` (pixel centres map to pixel centres)."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        return (xy + 0.5 - np.array([self.x0, self.y0], np.float64)) * self.scale - 0.5

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        """Inverse of ``to_network``."""
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        return (uv + 0.5) / self.scale - 0.5 + np.array([self.x0, self.y0], np.float64)

    def holds(self, box: Box, margin: float = 0.0) -> bool:
        """Whether ``box`` lies inside the window shrunk by ``margin`` (a fraction of the side)."""
        m = margin * self.side
        x0, y0, x1, y1 = self.box
        return box[0] >= x0 + m and box[1] >= y0 + m and box[2] <= x1 - m and box[3] <= y1 - m


def _place(centre: float, side: int, extent: int) -> int:
    """Left (top) edge of a window of ``side`` about ``centre`` on an axis of ``extent``:
    inside the image when it fits, else covering the whole axis with the padding split
    as evenly as the centre allows."""
    start = int(round(centre - side / 2.0))
    if side <= extent:
        return min(max(start, 0), extent - side)
    return min(max(start, extent - side), 0)


def points_box(points: np.ndarray) -> Box:
    """Smallest box (exclusive ends) holding the pixels of ``(N, 2)`` xy points."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    x0, y0 = np.floor(p.min(0) + 0.5).astype(int)
    x1, y1 = np.floor(p.max(0) + 0.5).astype(int) + 1
    return int(x0), int(y0), int(x1), int(y1)


def union_boxes(boxes: Sequence[Optional[Box]]) -> Optional[Box]:
    """The box around all the non-empty ``boxes``; None when there is none."""
    real = [b for b in boxes if b is not None and b[2] > b[0] and b[3] > b[1]]
    if not real:
        return None
    return (min(b[0] for b in real), min(b[1] for b in real), max(b[2] for b in real), max(b[3] for b in real))


def window_for_object(image_size: tuple[int, int], roi: Box, size: int, expansion: float,
                      min_side: float, centre_shift: tuple[float, float] = (0.0, 0.0)) -> CropWindow:
    """The window around ``roi`` (image pixels): side ``max(w, h) * expansion``, at least
    ``min_side``, at most the image's longest side; ``centre_shift`` moves the centre by a
    fraction of the side (training jitter)."""
    h, w = image_size
    bw, bh = roi[2] - roi[0], roi[3] - roi[1]
    side = int(np.ceil(max(max(bw, bh) * float(expansion), float(min_side), 8.0)))
    # never wider than the image's long side: beyond it a window only adds padding and
    # shrinks the object (a crack across a photo would lose its 2-px width)
    side = max(min(side, max(h, w)), 1)
    cx = (roi[0] + roi[2]) / 2.0 + centre_shift[0] * side
    cy = (roi[1] + roi[3]) / 2.0 + centre_shift[1] * side
    return CropWindow(_place(cx, side, w), _place(cy, side, h), side, int(size))


def window_for_first_click(image_size: tuple[int, int], points: np.ndarray, size: int,
                           first_click_side: float) -> CropWindow:
    """The window for clicks without a previous mask: the whole image (as a square, the
    padding split evenly) up to ``first_click_side`` pixels, centred on the clicks beyond."""
    h, w = image_size
    side = int(min(max(h, w), max(int(first_click_side), 8)))
    if side >= max(h, w):
        return CropWindow((w - side) // 2, (h - side) // 2, side, int(size))
    c = np.asarray(points, np.float64).reshape(-1, 2).mean(0) + 0.5
    return CropWindow(_place(c[0], side, w), _place(c[1], side, h), side, int(size))


# ------------------------------------------------------------------ network inputs
def mean_fill(mean: Sequence[float] = IMAGENET_MEAN) -> np.ndarray:
    """The RGB uint8 colour padding is filled with: the normalisation mean (zero after it)."""
    return np.clip(np.round(np.asarray(mean, np.float64) * 255.0), 0, 255).astype(np.uint8)


def crop_image(rgb: np.ndarray, window: CropWindow, fill: Optional[np.ndarray] = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> the window at ``(S, S, 3)`` uint8 (padding filled with ``fill``)."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = window.box
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if (ix0, iy0, ix1, iy1) == (x0, y0, x1, y1):
        canvas = rgb[y0:y1, x0:x1]
    else:
        canvas = np.empty((window.side, window.side, 3), np.uint8)
        canvas[:] = mean_fill() if fill is None else fill
        if ix1 > ix0 and iy1 > iy0:
            canvas[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = rgb[iy0:iy1, ix0:ix1]
    return np.ascontiguousarray(resize_image(np.ascontiguousarray(canvas), (window.size, window.size)))


def crop_mask(mask: Optional[Mask], window: CropWindow) -> np.ndarray:
    """A mask seen through the window: ``(S, S)`` float32 in [0, 1] (area fraction when
    shrinking, bilinear when enlarging); zeros for None or an empty mask."""
    if mask is None or mask.is_empty():
        return np.zeros((window.size, window.size), np.float32)
    part = mask.read_box(window.box).astype(np.float32)
    return resize_image(part, (window.size, window.size)).astype(np.float32, copy=False)


def disk_map(uv: np.ndarray, size: int, radius: float) -> np.ndarray:
    """``(S, S)`` float32: 1 within ``radius`` of any network point ``(N, 2)`` ``(u, v)``."""
    out = np.zeros((size, size), np.float32)
    r = float(radius)
    k = int(np.ceil(r)) + 1
    for u, v in np.asarray(uv, np.float64).reshape(-1, 2):
        cx, cy = int(round(u)), int(round(v))
        x0, x1, y0, y1 = max(0, cx - k), min(size, cx + k + 1), max(0, cy - k), min(size, cy + k + 1)
        if x1 <= x0 or y1 <= y0:
            continue  # a click outside the window says nothing about it
        yy, xx = np.mgrid[y0:y1, x0:x1]
        out[y0:y1, x0:x1][(xx - u) ** 2 + (yy - v) ** 2 <= r * r] = 1.0
    return out


def aux_input(previous: np.ndarray, positive_uv: np.ndarray, negative_uv: np.ndarray, size: int,
              radius: float) -> np.ndarray:
    """``(1, 3, S, S)`` float32: previous mask (0..1), positive disks, negative disks."""
    out = np.empty((1, 3, size, size), np.float32)
    out[0, 0] = previous
    out[0, 1] = disk_map(positive_uv, size, radius)
    out[0, 2] = disk_map(negative_uv, size, radius)
    return out


def paste_logits(logits: np.ndarray, window: CropWindow, image_size: tuple[int, int],
                 threshold: float = 0.0) -> Mask:
    """``(S, S)`` logits of the window -> a ``Mask`` of the image (``logits > threshold``
    after a bilinear resize to the window; only the part inside the image)."""
    h, w = image_size
    lg = np.asarray(logits, np.float32)
    if lg.shape != (window.side, window.side):
        lg = cv2.resize(lg, (window.side, window.side), interpolation=cv2.INTER_LINEAR)
    x0, y0, x1, y1 = window.box
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if ix1 <= ix0 or iy1 <= iy0:
        return Mask.empty(image_size)
    part = lg[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] > threshold
    return Mask(ix0, iy0, part, image_size).cropped()


def _points(points: Optional[Any]) -> np.ndarray:
    if points is None:
        return np.zeros((0, 2), np.float64)
    p = np.asarray(points, np.float64).reshape(-1, 2)
    if not np.isfinite(p).all():
        raise ValueError("click coordinates must be finite numbers")
    return p


def as_mask(previous: Optional[Any], image_size: tuple[int, int]) -> Optional[Mask]:
    """A ``Mask`` of ``image_size`` from a ``Mask`` or an ``(H, W)`` bool array; None when empty."""
    if previous is None:
        return None
    if isinstance(previous, Mask):
        if previous.image_size != tuple(image_size):
            raise ValueError(f"previous mask is of a {previous.image_size} image, not {tuple(image_size)}")
        return None if previous.is_empty() else previous
    arr = np.asarray(previous)
    if arr.shape != tuple(image_size):
        raise ValueError(f"previous mask has shape {arr.shape}; expected (H, W) = {tuple(image_size)}")
    m = Mask.from_full(arr.astype(bool))
    return None if m.is_empty() else m


def box_mask(box: Sequence[float], image_size: tuple[int, int]) -> Mask:
    """A mask filling ``box`` (x0, y0, x1, y1; exclusive ends), clipped to the image."""
    h, w = image_size
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the box {tuple(box)} is empty or outside the {w} x {h} image")
    return Mask(x0, y0, np.ones((y1 - y0, x1 - x0), bool), image_size)


# ------------------------------------------------------------------ the network behind a session
class ClickModel(Protocol):
    """What a session runs: ``encode`` once per crop, ``head`` once per click.

    ``encode(image)``: ``(1, 3, S, S)`` float32 normalised crop -> a tuple of arrays;
    ``head(features, aux)``: those arrays and ``aux`` ``(1, 3, S, S)`` -> logits ``(1, 1, S, S)``.
    """

    def encode(self, image: np.ndarray) -> tuple[np.ndarray, ...]: ...

    def head(self, features: tuple[np.ndarray, ...], aux: np.ndarray) -> np.ndarray: ...


class OnnxClickModel:
    """ONNX Runtime behind ``ClickModel``: one ``model.onnx``, or ``encoder.onnx`` + ``decoder.onnx``."""

    def __init__(self, folder: Path, onnx_runtime: Any = None):
        folder = Path(folder)
        if onnx_runtime is None:
            from inference.runtime import OnnxRuntime

            onnx_runtime = OnnxRuntime("cpu")
        self.two_part = (folder / "encoder.onnx").is_file() and (folder / "decoder.onnx").is_file()
        if self.two_part:
            self._enc = onnx_runtime.session(folder / "encoder.onnx")
            self._dec = onnx_runtime.session(folder / "decoder.onnx")
            self._feature_names = [o.name for o in self._enc.get_outputs()]
            dec_inputs = [i.name for i in self._dec.get_inputs()]
            if "aux" not in dec_inputs or not set(self._feature_names) <= set(dec_inputs):
                raise ModelError(f"{folder / 'decoder.onnx'}: inputs {dec_inputs} are not the encoder's outputs "
                                 f"{self._feature_names} plus 'aux'")
        elif (folder / "model.onnx").is_file():
            self._net = onnx_runtime.session(folder / "model.onnx")
            names = sorted(i.name for i in self._net.get_inputs())
            if names != ["aux", "image"]:
                raise ModelError(f"{folder / 'model.onnx'}: a click model takes inputs 'image' and 'aux', "
                                 f"this one takes {names}")
        else:
            raise ModelError(f"{folder}: a click model needs model.onnx, or encoder.onnx + decoder.onnx")

    def encode(self, image: np.ndarray) -> tuple[np.ndarray, ...]:
        if not self.two_part:
            return (image,)  # the one-file network takes the image with every click
        return tuple(self._enc.run(None, {"image": image}))

    def head(self, features: tuple[np.ndarray, ...], aux: np.ndarray) -> np.ndarray:
        if not self.two_part:
            return self._net.run(["logits"], {"image": features[0], "aux": aux})[0]
        feeds = dict(zip(self._feature_names, features))
        feeds["aux"] = aux
        return self._dec.run(["logits"], feeds)[0]


# ------------------------------------------------------------------ the session
@dataclass
class Prediction:
    """The last answer of a session: the mask, its window, and the raw crop logits ``(S, S)``."""

    mask: Mask
    window: CropWindow
    logits: np.ndarray
    encoded: bool  # whether the encoder ran for it (False: cached features served)


class ClickSession:
    """Click refinement on one image at a time (see the module docstring for coordinates).

    Args:
        model: the network (``OnnxClickModel``, or a PyTorch one in training).
        input_size: ``S``, the network's side in pixels.
        mean, std: normalisation of RGB scaled to [0, 1].
        params: overrides of ``DEFAULTS`` (``expansion``, ``min_side_fraction``,
            ``first_click_side``, ``disk_radius``, ``keep_ratio``).
        cache_items: encoder outputs kept (per crop window of the current image).
    """

    supports_points = True
    supports_box = True

    def __init__(self, model: ClickModel, input_size: int = DEFAULT_INPUT, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, params: Optional[dict[str, float]] = None,
                 cache_items: int = 4, name: str = "", version: str = ""):
        unknown = set(params or {}) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"click session has no parameter {sorted(unknown)}; it takes {', '.join(DEFAULTS)}")
        self.model = model
        self.size = int(input_size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.params = {**DEFAULTS, **(params or {})}
        self.name, self.version = name, version
        self._fill = mean_fill(self.mean)
        self._rgb: Optional[np.ndarray] = None
        self._features: OrderedDict[tuple[int, int, int], tuple[np.ndarray, ...]] = OrderedDict()
        self._cache_items = int(cache_items)
        self._window: Optional[CropWindow] = None
        self.last: Optional[Prediction] = None
        self.encoder_runs = 0

    # ---------------------------------------------------------------- building
    @classmethod
    def from_info(cls, info: ModelInfo, onnx_runtime: Any = None, params: Optional[dict[str, float]] = None
                  ) -> "ClickSession":
        """A session over a registry version of task ``clicks`` (ONNX Runtime; ``onnx_runtime``
        is the engine's ``OnnxRuntime``, a CPU one when None). ``ModelError`` if it cannot load."""
        man = info.manifest
        if man.task != TASK:
            raise ModelError(f"{info.name}@{info.version} is a {man.task} model, not a click model")
        size = (man.input_size or (DEFAULT_INPUT, DEFAULT_INPUT))[0]
        merged = {k: float(v) for k, v in man.defaults.items() if k in DEFAULTS}
        merged.update(params or {})
        return cls(OnnxClickModel(info.path, onnx_runtime), size, man.mean, man.std, merged,
                   name=info.name, version=info.version)

    @classmethod
    def from_folder(cls, folder: str | Path, onnx_runtime: Any = None, params: Optional[dict[str, float]] = None
                    ) -> "ClickSession":
        """A session over a model folder (``manifest.json`` beside the ONNX files)."""
        folder = Path(folder)
        return cls.from_info(ModelInfo(Manifest.read(folder / "manifest.json"), folder), onnx_runtime, params)

    # ---------------------------------------------------------------- image
    def set_image(self, rgb: np.ndarray, key: Optional[str] = None) -> None:
        """Select the image: ``(H, W, 3)`` uint8 RGB. Forgets the cached crops of the last one."""
        self._rgb = check_image(rgb)
        self._features.clear()
        self._window = None
        self.last = None

    @property
    def image_size(self) -> tuple[int, int]:
        if self._rgb is None:
            raise RuntimeError("call set_image before predict")
        return self._rgb.shape[0], self._rgb.shape[1]

    def window(self, positive: np.ndarray, previous: Optional[Mask], box: Optional[Sequence[float]]) -> CropWindow:
        """The crop window for these prompts (module docstring, step 1); keeps the current
        window while it still holds the object with a 5 % margin and is at most
        ``keep_ratio`` times the side the prompts need."""
        size = self.image_size
        roi = union_boxes([previous.bbox if previous is not None else None,
                           None if box is None else tuple(int(v) for v in (np.floor(box[0]), np.floor(box[1]),
                                                                          np.ceil(box[2]), np.ceil(box[3]))),
                           points_box(positive) if len(positive) else None])
        if previous is None and box is None:
            new = window_for_first_click(size, positive, self.size, self.params["first_click_side"])
        else:
            assert roi is not None
            new = window_for_object(size, roi, self.size, self.params["expansion"],
                                    self.params["min_side_fraction"] * self.size)
        old = self._window
        if (old is not None and roi is not None and old.holds(roi, 0.05)
                and old.side <= self.params["keep_ratio"] * new.side):
            return old
        return new

    def _encoded(self, window: CropWindow) -> tuple[tuple[np.ndarray, ...], bool]:
        key = (window.x0, window.y0, window.side)
        hit = self._features.get(key)
        if hit is not None:
            self._features.move_to_end(key)
            return hit, False
        assert self._rgb is not None
        crop = crop_image(self._rgb, window, self._fill)
        feats = self.model.encode(normalize_with(crop, self.mean, self.std))
        self.encoder_runs += 1
        self._features[key] = feats
        while len(self._features) > self._cache_items:
            self._features.popitem(last=False)
        return feats, True

    # ---------------------------------------------------------------- prompts
    def predict(self, positive_points: Optional[Any] = None, negative_points: Optional[Any] = None,
                previous_mask: Optional[Any] = None, box: Optional[Sequence[float]] = None) -> Mask:
        """The refined mask for these prompts on the current image.

        Args:
            positive_points: ``(P, 2)`` float ``(x, y)`` image pixels on the object (or None).
            negative_points: ``(Q, 2)`` float ``(x, y)`` image pixels off the object (or None).
            previous_mask: the mask to refine (a ``Mask`` of this image or an ``(H, W)``
                bool array): a proposal, the last answer, or None for none.
            box: ``(x0, y0, x1, y1)`` around the object, exclusive ends (or None); without a
                previous mask it becomes one that fills the box.

        Returns:
            A ``Mask`` of the ``(H, W)`` image (empty when the network finds nothing).
            ``self.last`` holds its window and crop logits.
        """
        size = self.image_size
        pos, neg = _points(positive_points), _points(negative_points)
        prev = as_mask(previous_mask, size)
        if box is not None:
            box = [float(v) for v in box]
            if len(box) != 4 or not np.isfinite(box).all():
                raise ValueError(f"a box is (x0, y0, x1, y1) in image pixels, got {box}")
            if prev is None:
                prev = box_mask(box, size)
        if len(pos) == 0 and prev is None:
            raise ValueError("give at least one positive click, a box or a previous mask")
        window = self.window(pos, prev, box)
        feats, encoded = self._encoded(window)
        aux = aux_input(crop_mask(prev, window), window.to_network(pos), window.to_network(neg), self.size,
                        self.params["disk_radius"])
        logits = np.asarray(self.model.head(feats, aux), np.float32).reshape(self.size, self.size)
        mask = paste_logits(logits, window, size)
        self._window = window
        self.last = Prediction(mask, window, logits, encoded)
        return mask

    def close(self) -> None:
        self._features.clear()


# ------------------------------------------------------------------ GrabCut, the baseline
class GrabCutClickSession:
    """The same calls answered by OpenCV GrabCut, for comparison.

    Without a previous mask it is the prompt tool's fallback itself
    (``inference.pipelines.prompt.GrabCutPromptSession``: probable foreground in the box,
    or in a box around the clicks spread by a tenth of the image; clicks as sure
    foreground / background). With one, GrabCut starts from it: probable foreground
    inside it, probable background in a margin around it, the clicks sure. ``max_side``
    shrinks the worked region to at most that many pixels per side (None: full
    resolution, as the tool; on a 1280 x 1024 photo that is seconds per click).
    """

    supports_points = True
    supports_box = True
    name = "grabcut"
    version = "opencv"

    def __init__(self, iterations: int = 5, click_radius: int = 4, margin: int = 16, max_side: Optional[int] = None):
        self.iterations, self.click_radius, self.margin = iterations, click_radius, margin
        self.max_side = max_side
        self._tool = GrabCutPromptSession(iterations=iterations, click_radius=click_radius, margin=margin)
        self._rgb: Optional[np.ndarray] = None

    def set_image(self, rgb: np.ndarray, key: Optional[str] = None) -> None:
        self._rgb = check_image(rgb)
        self._tool.set_image(self._rgb)

    def predict(self, positive_points: Optional[Any] = None, negative_points: Optional[Any] = None,
                previous_mask: Optional[Any] = None, box: Optional[Sequence[float]] = None) -> Mask:
        """As ``ClickSession.predict``."""
        if self._rgb is None:
            raise RuntimeError("call set_image before predict")
        h, w = self._rgb.shape[:2]
        pos, neg = _points(positive_points), _points(negative_points)
        prev = as_mask(previous_mask, (h, w))
        if prev is None and not self.max_side:
            pts = np.concatenate([pos, neg]).astype(np.float32)
            labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]).astype(np.float32)
            try:
                return self._tool.predict(pts, labels, box)
            except ValueError:
                return Mask.empty((h, w))  # the tool needs a positive click or a box
        if prev is None:  # the tool's region: the box, or the clicks spread by a tenth of the image
            if box is not None:
                region = tuple(float(v) for v in box)
            elif len(pos):
                spread = max(32.0, 0.1 * max(h, w))
                region = (*(pos.min(0) - spread), *(pos.max(0) + spread))
            else:
                return Mask.empty((h, w))
            x0, y0 = max(0, int(np.floor(region[0]))), max(0, int(np.floor(region[1])))
            x1, y1 = min(w, int(np.ceil(region[2]))), min(h, int(np.ceil(region[3])))
            inside = cv2.GC_PR_FGD
        else:
            roi = union_boxes([prev.bbox, points_box(pos) if len(pos) else None])
            assert roi is not None
            grow = max(self.margin, int(0.1 * max(roi[2] - roi[0], roi[3] - roi[1])))
            x0, y0 = max(0, roi[0] - grow), max(0, roi[1] - grow)
            x1, y1 = min(w, roi[2] + grow), min(h, roi[3] + grow)
            inside = cv2.GC_PR_BGD
        if x1 - x0 < 2 or y1 - y0 < 2:
            return Mask.empty((h, w))
        cx0, cy0 = max(0, x0 - self.margin), max(0, y0 - self.margin)
        cx1, cy1 = min(w, x1 + self.margin), min(h, y1 + self.margin)
        crop = np.ascontiguousarray(self._rgb[cy0:cy1, cx0:cx1][:, :, ::-1])  # OpenCV wants BGR
        gc = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
        gc[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0] = inside
        if prev is not None:
            gc[prev.read_box((cx0, cy0, cx1, cy1))] = cv2.GC_PR_FGD
        for pts, label in ((pos, cv2.GC_FGD), (neg, cv2.GC_BGD)):
            for x, y in pts:
                cv2.circle(gc, (int(round(x - cx0)), int(round(y - cy0))), self.click_radius, int(label), -1)
        f = 1.0
        if self.max_side and max(crop.shape[:2]) > self.max_side:
            f = self.max_side / max(crop.shape[:2])
            small = (max(2, int(round(crop.shape[1] * f))), max(2, int(round(crop.shape[0] * f))))
            crop = cv2.resize(crop, small, interpolation=cv2.INTER_AREA)
            gc = cv2.resize(gc, small, interpolation=cv2.INTER_NEAREST)
        if not ((gc == cv2.GC_BGD) | (gc == cv2.GC_PR_BGD)).any():
            gc[0, :] = cv2.GC_BGD  # GrabCut needs background samples
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(crop, gc, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            pass  # degenerate colour statistics: keep the initial labelling
        fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
        if f != 1.0:
            fg = cv2.resize(fg, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_NEAREST)
        return Mask.from_box_array(cx0, cy0, fg.astype(bool), (h, w)).cropped()

    def close(self) -> None:
        pass


# ------------------------------------------------------------------ the click rule and the measure
@dataclass(frozen=True)
class Click:
    """One simulated click: ``(x, y)`` image pixels, positive or negative."""

    x: float
    y: float
    positive: bool


def _error_maps(pred: Optional[Mask], truth: Mask) -> tuple[Box, np.ndarray, np.ndarray]:
    """(box, false negatives, false positives) over the box around both masks."""
    box = union_boxes([truth.bbox, pred.bbox if pred is not None and not pred.is_empty() else None])
    assert box is not None
    t = truth.read_box(box)
    p = pred.read_box(box) if pred is not None else np.zeros_like(t)
    return box, t & ~p, p & ~t


def _inner_distance(err: np.ndarray) -> np.ndarray:
    """Distance of each error pixel to the nearest non-error pixel (the box edge counts as
    non-error: nothing outside the box is an error)."""
    if not err.any():
        return np.zeros(err.shape, np.float32)
    padded = np.pad(err.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def next_click(pred: Optional[Mask], truth: Mask, rng: Optional[np.random.Generator] = None) -> Optional[Click]:
    """RITM's click: at the centre of the largest error region, or None when there is no error.

    The false negatives (truth not predicted) and false positives (predicted, not truth)
    each get a distance transform; the click goes where the larger of the two reaches its
    maximum (the interior point farthest from that region's boundary): positive in a
    missed region, negative in a wrong one. With ``rng`` (training), a random pixel whose
    distance is over half that maximum, as RITM samples its training clicks.
    """
    box, fn, fp = _error_maps(pred, truth)
    if not fn.any() and not fp.any():
        return None
    dfn, dfp = _inner_distance(fn), _inner_distance(fp)
    mfn, mfp = float(dfn.max()), float(dfp.max())
    positive = mfn > mfp
    dist, top = (dfn, mfn) if positive else (dfp, mfp)
    if rng is None:
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    else:
        ys, xs = np.nonzero(dist > top / 2.0)
        if len(ys) == 0:
            ys, xs = np.nonzero(dist >= top)
        k = int(rng.integers(len(ys)))
        y, x = ys[k], xs[k]
    return Click(float(box[0] + x), float(box[1] + y), bool(positive))


@dataclass
class Trajectory:
    """IoU with the truth after each click (``ious[0]`` after the first), and the time spent."""

    ious: list[float] = field(default_factory=list)
    clicks: list[Click] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # process CPU time: the cost of the clicks on a machine shared with others

    def iou_at(self, k: int) -> float:
        """IoU after ``k`` clicks (the last one reached if the run stopped earlier: it had
        already passed every threshold the run was asked for and would only be refined)."""
        if not self.ious:
            return 0.0
        return self.ious[min(k, len(self.ious)) - 1]

    def clicks_to(self, threshold: float, max_clicks: int) -> int:
        """Clicks until the IoU first reaches ``threshold``; ``max_clicks`` when never (NoC)."""
        for i, v in enumerate(self.ious[:max_clicks]):
            if v >= threshold:
                return i + 1
        return max_clicks


def click_trajectory(session: Any, truth: Mask, max_clicks: int = 20, stop_at: Optional[float] = 0.9,
                     min_clicks: int = 5, feed_back: bool = True) -> Trajectory:
    """Click on ``truth`` with RITM's rule until ``max_clicks`` (the NoC protocol).

    ``session`` has ``set_image`` already called and answers ``predict(pos, neg,
    previous_mask)``. The first click is the centre of the object (the largest error of an
    empty prediction); each next one is ``next_click`` on the last answer, which is fed
    back as the previous mask (``feed_back``). Stops early once at least ``min_clicks``
    clicks were made and the IoU reached ``stop_at``.
    """
    out = Trajectory()
    pred: Optional[Mask] = None
    pos: list[tuple[float, float]] = []
    neg: list[tuple[float, float]] = []
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(max_clicks):
        click = next_click(pred, truth)
        if click is None:  # a perfect mask: every further click would find nothing to fix
            out.ious.extend([1.0] * (max_clicks - i))
            break
        (pos if click.positive else neg).append((click.x, click.y))
        out.clicks.append(click)
        pred = session.predict(np.array(pos).reshape(-1, 2), np.array(neg).reshape(-1, 2),
                               previous_mask=pred if feed_back else None)
        out.ious.append(float(pred.iou(truth)))
        if stop_at is not None and i + 1 >= min_clicks and out.ious[-1] >= stop_at:
            break
    out.seconds = time.perf_counter() - t0
    out.cpu_seconds = time.process_time() - c0
    return out


def summarize(trajectories: Sequence[Trajectory], max_clicks: int = 20,
              thresholds: Sequence[float] = (0.85, 0.9), at: Sequence[int] = (1, 3, 5)) -> dict[str, float]:
    """``NoC@85``, ``NoC@90`` (mean clicks to the IoU; ``max_clicks`` when not reached),
    ``IoU@k`` (mean IoU after k clicks), the share of objects not reaching 90 %
    (``failed@90``), wall-clock and CPU milliseconds per click (the click rule's own
    bookkeeping included) and the object count."""
    n = len(trajectories)
    out: dict[str, float] = {"objects": float(n)}
    if n == 0:
        return out
    for t in thresholds:
        out[f"NoC@{int(round(t * 100))}"] = float(np.mean([tr.clicks_to(t, max_clicks) for tr in trajectories]))
    for k in at:
        out[f"IoU@{k}"] = float(np.mean([tr.iou_at(k) for tr in trajectories]))
    top = max(thresholds)
    out[f"failed@{int(round(top * 100))}"] = float(np.mean([tr.clicks_to(top, max_clicks + 1) > max_clicks
                                                              for tr in trajectories]))
    clicks = sum(len(tr.clicks) for tr in trajectories)
    out["ms_per_click"] = 1000.0 * sum(tr.seconds for tr in trajectories) / max(1, clicks)
    out["cpu_ms_per_click"] = 1000.0 * sum(tr.cpu_seconds for tr in trajectories) / max(1, clicks)
    return out


def evaluate(session: Any, items: Any, max_clicks: int = 20, stop_at: Optional[float] = 0.9,
             min_clicks: int = 5, progress: Any = None) -> list[Trajectory]:
    """``click_trajectory`` on every object of every image: ``items`` yields
    ``(rgb (H, W, 3) uint8, [truth Mask, ...])``; one ``set_image`` per image.
    ``progress(done, total)`` after each image when ``items`` has a length."""
    out: list[Trajectory] = []
    total = len(items) if hasattr(items, "__len__") else 0
    for i, (rgb, truths) in enumerate(items):
        session.set_image(rgb)
        for truth in truths:
            out.append(click_trajectory(session, truth, max_clicks, stop_at, min_clicks))
        if progress is not None:
            progress(i + 1, total)
    return out
