"""Semantic trainer: EfficientNet-Lite0 + light FPN decoder, softmax over background + classes.

Trained from accepted masks of fully labelled images (unlabelled pixels are
background, rejected proposals included). Images are split by image into training,
validation (checkpoint selection only) and, where asked, test (the published figures:
never trained on, never used to choose). Every epoch the model is scored on the
validation images through the semantic pipeline's own code
(``inference.pipelines.base.semantic_network_maps``: the same resize, padding,
softmax, resize back and threshold), the best epoch's weights are kept, exported to
ONNX, checked against PyTorch, re-scored through the exported file and published.

Two input modes:

- fixed ``input_size`` (glass): the whole photo is resized to the network input
  (``resize_image``: area-averaging when shrinking), training crops are resized the same way;
- native (``input_size`` None, cracks): training takes crops at the image's own
  resolution and inference runs the whole image padded to a multiple of 32, so a
  1-px crack stays 1 px wide.

With ``extra["boundary"]`` the network has a second output trained on the band
around each truth component's boundary; the pipeline cuts class maps along it so
that neighbouring panes become separate proposals.
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import cv2
import numpy as np

from annotation import metrics as am
from inference.pipelines.base import pad_to_multiple, resize_image, resize_maps, semantic_network_maps
from training.common import (
    Reporter,
    Timer,
    TrainOptions,
    any_rank,
    apply_init,
    gather_rank_steps,
    make_loader,
    start_run,
    wrap_ddp,
)
from training.datasets import IGNORE, ImageLabels, ProjectData, load_project, read_rgb, split_by_image, split_three
from training.encoders.efficientnet_lite import IMAGENET_MEAN, IMAGENET_STD, WEIGHTS_SOURCE
from training.metrics_util import SegmentationMetrics
from training.gate import WEIGHTS_FILE, has_boundary_head, init_from_active

FINE_TUNE_LR = 1e-4  # learning rate when a run starts from the model version in use


def freeze_batchnorm_statistics(model) -> int:
    """Put every batch-norm layer in eval mode (its running statistics stay as learnt;
    scale and shift still train). Fine-tuning on a few images in batches of 4 random
    crops would otherwise replace statistics gathered over the whole earlier training by
    those of a few crops, within tens of steps. Returns how many layers were frozen."""
    import torch

    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
            n += 1
    return n

DEFAULT_INPUT = (320, 320)
BACKGROUND = "background"
PAD_MULTIPLE = 32  # the encoder's stride: native-size inputs are padded to it
BOUNDARY_RADIUS = 2  # boundary band half-width in network pixels
DEFAULT_THRESHOLD = 0.5
DEFAULT_MIN_AREA = 64  # the pipeline's default: validation scores what it proposes


def to_tensor_batch(rgb: np.ndarray):
    """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` float32 tensor, ImageNet-normalised."""
    import torch

    x = (rgb.astype(np.float32) / 255.0 - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))


def boundary_band(target: np.ndarray, radius: int = BOUNDARY_RADIUS) -> np.ndarray:
    """``(H, W)`` class map -> ``(H, W)`` uint8, 1 within ``radius`` px of a boundary
    between two truth regions (each connected component of each class is a region of
    its own, so two panes touching each other are separated, and so is glass from
    background)."""
    labels = np.zeros(target.shape, np.int32)
    nxt = 1
    for v in np.unique(target):
        if v == 0 or v == IGNORE:  # unlabelled pixels are no region (their loss is left out)
            continue
        n, lab = cv2.connectedComponents((target == v).astype(np.uint8), connectivity=8)
        m = lab > 0
        labels[m] = lab[m] + nxt - 1
        nxt += n - 1
    if nxt == 1:
        return np.zeros(target.shape, np.uint8)
    lab = labels.astype(np.float32)  # float for cv2's min/max filters: exact up to 2^24 labels
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return (cv2.dilate(lab, k) != cv2.erode(lab, k)).astype(np.uint8)


class CachedImage:
    """An image and its class map in memory (uint8): resized to ``cache_scale`` times the
    network input when ``size`` is given, at native resolution when it is None."""

    def __init__(self, labels: ImageLabels, classes: Sequence[str], size: Optional[tuple[int, int]],
                 cache_scale: float = 1.25):
        rgb = read_rgb(labels.path)
        target = labels.training_map(classes)
        if target.shape != rgb.shape[:2]:
            target = cv2.resize(target, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
        if size is None:
            self.rgb, self.target = rgb, target
        else:
            ch, cw = int(size[0] * cache_scale), int(size[1] * cache_scale)
            self.rgb = resize_image(rgb, (ch, cw))
            self.target = cv2.resize(target, (cw, ch), interpolation=cv2.INTER_NEAREST)
        self.key = labels.key


class SegmentationDataset:
    """Random crops, flips and photometric jitter of cached images.

    ``size`` is the network input ``(H, W)``. ``native`` False: random-resized crops of
    ``scale`` (area fraction) of the cached image, resized to ``size`` (scale
    augmentation for whole-photo models); ``native`` True: crops of ``size`` at the
    image's own resolution up to a factor in ``zoom`` (thin cracks keep their width),
    with vertical flips and right-angle turns too (cracks have no up).

    Item: ``(image (3, H, W) float32 normalised, target (H, W) int64)``, plus
    ``boundary (H, W) float32`` when ``boundary`` is set.
    """

    def __init__(self, images: list[CachedImage], size: tuple[int, int], seed: int, augment: bool = True,
                 native: bool = False, boundary: bool = False, scale: tuple[float, float] = (0.3, 1.0),
                 zoom: tuple[float, float] = (0.8, 1.25)):
        self.images = images
        self.size = size
        self.augment = augment
        self.native = native
        self.boundary = boundary
        self.scale = scale
        self.zoom = zoom
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def _crop_resized(self, rgb: np.ndarray, tgt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        H, W = tgt.shape
        scale = self.rng.uniform(*self.scale)
        ratio = math.exp(self.rng.uniform(math.log(0.75), math.log(1.33)))
        ch = int(min(H, round(H * math.sqrt(scale / ratio))))
        cw = int(min(W, round(W * math.sqrt(scale * ratio))))
        y0 = int(self.rng.integers(0, H - ch + 1))
        x0 = int(self.rng.integers(0, W - cw + 1))
        return rgb[y0 : y0 + ch, x0 : x0 + cw], tgt[y0 : y0 + ch, x0 : x0 + cw]

    def _crop_native(self, rgb: np.ndarray, tgt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.size
        z = math.exp(self.rng.uniform(math.log(self.zoom[0]), math.log(self.zoom[1]))) if self.augment else 1.0
        ch, cw = int(round(h / z)), int(round(w / z))
        if ch > tgt.shape[0] or cw > tgt.shape[1]:  # an image smaller than the crop: pad it
            ph, pw = max(0, ch - tgt.shape[0]), max(0, cw - tgt.shape[1])
            rgb = cv2.copyMakeBorder(rgb, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
            tgt = cv2.copyMakeBorder(tgt, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
        H, W = tgt.shape
        y0 = int(self.rng.integers(0, H - ch + 1)) if self.augment else (H - ch) // 2
        x0 = int(self.rng.integers(0, W - cw + 1)) if self.augment else (W - cw) // 2
        return rgb[y0 : y0 + ch, x0 : x0 + cw], tgt[y0 : y0 + ch, x0 : x0 + cw]

    def __getitem__(self, i: int):
        import torch

        im = self.images[i]
        rgb, tgt = im.rgb, im.target
        h, w = self.size
        if self.native:
            rgb, tgt = self._crop_native(rgb, tgt)
        elif self.augment:
            rgb, tgt = self._crop_resized(rgb, tgt)
        if self.augment:
            if self.rng.random() < 0.5:
                rgb, tgt = rgb[:, ::-1], tgt[:, ::-1]
            if self.native and self.rng.random() < 0.5:
                rgb, tgt = rgb[::-1], tgt[::-1]
            if self.native and h == w and self.rng.random() < 0.5:
                rgb, tgt = rgb.transpose(1, 0, 2), tgt.T
        rgb = resize_image(np.ascontiguousarray(rgb), (h, w))
        tgt = cv2.resize(np.ascontiguousarray(tgt), (w, h), interpolation=cv2.INTER_NEAREST)
        x = rgb.astype(np.float32) / 255.0
        if self.augment:  # brightness / contrast as in 001's Multiply and ContrastNormalization, plus saturation
            grey = x.mean(axis=2, keepdims=True)
            x = grey + (x - grey) * self.rng.uniform(0.7, 1.3)
            x = (x - 0.5) * self.rng.uniform(0.8, 1.2) + 0.5
            x = x * self.rng.uniform(0.8, 1.2)
            x = np.clip(x, 0.0, 1.0)
        x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
        yt = torch.from_numpy(tgt.astype(np.int64))
        if not self.boundary:
            return xt, yt
        return xt, yt, torch.from_numpy(boundary_band(tgt).astype(np.float32))


def segmentation_loss(logits, target, dice_weight: float = 1.0):
    """Cross-entropy plus soft Dice over the foreground classes present in the batch.

    ``logits`` ``(N, K, H, W)``, ``target`` ``(N, H, W)`` int64. Dice keeps thin
    structures (cracks are ~1.6 % of the pixels) from drowning in background: it
    counts a missed crack pixel as much as the crack is small. Pixels of value
    ``IGNORE`` (nobody labelled them) count in neither term.
    """
    from torch.nn import functional as F

    valid = target != IGNORE
    if not bool(valid.any()):
        return 0.0 * logits.sum()
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE)
    probs = logits.softmax(1) * valid[:, None]
    k = logits.shape[1]
    onehot = F.one_hot(target.masked_fill(~valid, 0), k).permute(0, 3, 1, 2).float() * valid[:, None]
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    present[0] = False
    if present.any():
        dice = 1.0 - (2 * inter[present] + 1.0) / (denom[present] + 1.0)
        return ce + dice_weight * dice.mean()
    return ce + 0.0 * probs.sum()


def boundary_loss(logits, band, pos_weight: float = 3.0, valid=None):
    """Binary cross-entropy of the boundary head; the band is a few % of the pixels, so
    its pixels weigh ``pos_weight`` times more (a missed cut merges two panes).
    ``valid`` ``(N, H, W)`` bool: only those pixels count (the labelled ones)."""
    import torch
    from torch.nn import functional as F

    if valid is None:
        return F.binary_cross_entropy_with_logits(logits[:, 0], band, pos_weight=torch.tensor(pos_weight))
    per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], band, pos_weight=torch.tensor(pos_weight),
                                                   reduction="none")
    w = valid.float()
    return (per_pixel * w).sum() / w.sum().clamp(min=1.0)


def torch_runner(model, device) -> Callable[[np.ndarray], list[np.ndarray]]:
    """A ``semantic_network_maps`` ``run`` over a PyTorch model (what ONNX Runtime is to the pipeline)."""
    import torch

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            out = model(torch.from_numpy(x).to(device))
        outs = out if isinstance(out, (tuple, list)) else [out]
        return [t.float().cpu().numpy() for t in outs]

    return run


def predict_probs(model, rgb: np.ndarray, size: Optional[tuple[int, int]], device, flip: bool = False) -> np.ndarray:
    """What the semantic pipeline computes: ``(H, W, 3)`` uint8 -> ``(K, H, W)`` softmax probabilities."""
    net = semantic_network_maps(rgb, torch_runner(model, device), input_size=size, mean=IMAGENET_MEAN,
                                std=IMAGENET_STD, activation="softmax", flip=flip, pad_multiple=PAD_MULTIPLE)
    return resize_maps(net.probs, rgb.shape[:2])


def pipeline_masks(probs: np.ndarray, threshold: float = DEFAULT_THRESHOLD, min_area: int = DEFAULT_MIN_AREA) -> np.ndarray:
    """``(K, H, W)`` probabilities -> ``(K, H, W)`` bool: what the semantic pipeline proposes
    for each channel (above ``threshold``, 8-connected pieces of fewer than ``min_area``
    pixels dropped): the union of its proposals."""
    out = probs > threshold
    for k in range(out.shape[0]):
        if not out[k].any() or min_area <= 1:
            continue
        n, lab, stats, _ = cv2.connectedComponentsWithStats(out[k].astype(np.uint8), connectivity=8)
        small = stats[:, cv2.CC_STAT_AREA] < min_area
        small[0] = False
        if small.any():
            out[k][small[lab]] = False
    return out


class ProtocolScores:
    """The published figure: per class, IoU and max F-beta (beta^2 = 0.3) of each image
    whose truth holds the class, averaged over those images (GDNet's protocol), from the
    pipeline's hard masks (IoU) and probabilities (F-beta)."""

    def __init__(self, classes: Sequence[str]):
        self.classes = list(classes)
        self.iou: dict[str, list[float]] = {c: [] for c in self.classes}
        self.fbeta: dict[str, list[float]] = {c: [] for c in self.classes}
        self.keys: dict[str, list[str]] = {c: [] for c in self.classes}

    def add(self, probs: np.ndarray, hard: np.ndarray, target: np.ndarray, key: str = "") -> None:
        """``probs``/``hard`` ``(K, H, W)`` with channel 0 background; ``target`` the class map."""
        for i, c in enumerate(self.classes):
            gt = target == i + 1
            if not gt.any():
                continue
            self.iou[c].append(am.iou(hard[i + 1], gt))
            self.fbeta[c].append(am.max_fbeta(probs[i + 1], gt))
            self.keys[c].append(key)

    def result(self) -> dict[str, Any]:
        per = {}
        for c in self.classes:
            n = len(self.iou[c])
            per[c] = {"iou": float(np.mean(self.iou[c])) if n else None,
                      "max_fbeta": float(np.mean(self.fbeta[c])) if n else None,
                      "images": n, "below_0.5": int(sum(v < 0.5 for v in self.iou[c]))}
        ious = [v["iou"] for v in per.values() if v["iou"] is not None]
        fs = [v["max_fbeta"] for v in per.values() if v["max_fbeta"] is not None]
        pairs = [v for c in self.classes for v in self.iou[c]]
        by_set: dict[str, dict[str, Any]] = {}
        for c in self.classes:
            for key, iou, fb in zip(self.keys[c], self.iou[c], self.fbeta[c]):
                entry = by_set.setdefault(Path(key).parts[0] if key else "", {}).setdefault(c, [[], []])
                entry[0].append(iou)
                entry[1].append(fb)
        per_set = {name: {c: {"iou": float(np.mean(v[0])), "max_fbeta": float(np.mean(v[1])), "images": len(v[0]),
                              "below_0.5": int(sum(x < 0.5 for x in v[0]))} for c, v in cls.items()}
                   for name, cls in sorted(by_set.items())}
        return {"per_class": per, "per_data_set": per_set, "mean_iou": float(np.mean(ious)) if ious else None,
                "mean_max_fbeta": float(np.mean(fs)) if fs else None,
                # every (image, class) pair counts once: what checkpoint selection uses, so
                # a class held by one validation image (MSD's mirror) cannot outvote 40 glass photos
                "image_mean_iou": float(np.mean(pairs)) if pairs else None}


def score_images(
    predict: Callable[[np.ndarray], np.ndarray], images: Sequence[ImageLabels], classes: Sequence[str],
    threshold: float = DEFAULT_THRESHOLD, min_area: int = DEFAULT_MIN_AREA,
) -> tuple[dict, dict]:
    """``(protocol result, SegmentationMetrics result)`` of ``predict`` (RGB -> ``(K, H, W)``
    probabilities at full size) on ``images`` at their full resolution."""
    proto = ProtocolScores(classes)
    seg = SegmentationMetrics(list(classes))
    for im in images:
        rgb = read_rgb(im.path)
        target = im.class_map(classes)
        probs = predict(rgb)
        proto.add(probs, pipeline_masks(probs, threshold, min_area), target, im.key)
        seg.add(probs, target)
    return proto.result(), seg.result()


def evaluate(model, images: Sequence[ImageLabels], classes: Sequence[str], size: Optional[tuple[int, int]], device,
             max_side: Optional[int] = None, flip: bool = False) -> dict:
    """Per-class IoU / max F-beta / MAE (``SegmentationMetrics``) on ``images`` through the
    pipeline's path; ``max_side`` caps the resolution (a quick look, not the protocol)."""
    model.eval()
    metrics = SegmentationMetrics(list(classes))
    for im in images:
        rgb = read_rgb(im.path)
        target = im.class_map(classes)
        scale = max_side / max(rgb.shape[:2]) if max_side else 1.0
        if scale < 1:
            nh, nw = int(round(rgb.shape[0] * scale)), int(round(rgb.shape[1] * scale))
            rgb = resize_image(rgb, (nh, nw))
            target = cv2.resize(target, (nw, nh), interpolation=cv2.INTER_NEAREST)
        metrics.add(predict_probs(model, rgb, size, device, flip), target)
    return metrics.result()


def schedule_progress(step: int, steps_total: int, timer: Timer) -> float:
    """Fraction of the run done, by steps or by the time budget, whichever is further."""
    by_time = timer.elapsed / timer.limit if timer.limit else 0.0
    return min(1.0, max(step / max(1, steps_total), by_time))


def set_lr(optim, base_lr: float, progress: float, warmup: float = 0.05) -> None:
    """Linear warm-up then cosine decay to 1 % of ``base_lr``."""
    if progress < warmup:
        f = 0.1 + 0.9 * progress / warmup
    else:
        f = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup)))
    for g in optim.param_groups:
        g["lr"] = base_lr * f


def _score(result: Optional[dict]) -> float:
    """The selection figure: per-image IoU over every (image, class) pair of the validation images."""
    v = None if result is None else result.get("image_mean_iou", result.get("mean_iou"))
    return -1.0 if v is None else float(v)


def _split(usable: list[ImageLabels], opts: TrainOptions) -> tuple[list, list, list]:
    test_fraction = float(opts.extra.get("test_fraction", 0.0))
    if test_fraction > 0:
        return split_three(usable, opts.val_fraction, test_fraction, opts.seed)
    train, val = split_by_image(usable, opts.val_fraction, opts.seed)
    return train, val, []


def train_semantic(opts: TrainOptions, reporter: Optional[Reporter] = None, data: Optional[ProjectData] = None) -> dict[str, Any]:
    """Train, validate every epoch, keep the best epoch, export and publish.

    Returns ``{"info": ModelInfo | None, "metrics": ..., ...}``. ``data`` overrides
    reading ``opts.project`` (the default-model script merges several sets).
    ``opts.extra``: ``test_fraction`` (a third split, scored once at the end),
    ``native`` (+ ``crop``: train on native-resolution crops, infer at native size),
    ``boundary`` (pane-splitting head), ``val_every`` (epochs), ``flip_tta``
    (``"auto"``: kept when it scores higher on validation), ``scale`` (crop area range).
    """
    import torch

    reporter, dist_info, device = start_run(opts, reporter)
    data = data or load_project(opts.project)
    usable = [im for im in data.images if im.fully_labelled]
    if not usable:
        raise RuntimeError(f"{data.project}: no image has accepted masks; accept or draw some before training")
    train, val, test = _split(usable, opts)
    # scores read every unlabelled pixel of a held-out image as background: only images
    # marked done or holding accepted masks are held out (rejections alone say too little)
    val = [im for im in val if im.done or im.instances]
    test = [im for im in test if im.done or im.instances]
    if not train:
        train = val
    classes = list(data.classes)
    base = None
    if opts.init is None and not opts.extra.get("from_scratch") and not opts.extra.get("write_local"):
        # fine-tune the version in use: a few new labels refine it instead of restarting
        base = init_from_active(opts.registry, model_name(opts, data), "semantic")
        # weights recovered from ONNX are all or nothing: its output channels must mean what
        # this run's do (kept PyTorch weights load by name and shape, a new head included)
        if base is not None and not base.has(WEIGHTS_FILE) \
                and [str(c) for c in base.manifest.classes] != [BACKGROUND, *classes]:
            reporter.emit("init", path=str(base.path), loaded=0, skipped=0,
                          note=f"{base.name}@{base.version} has other classes: starting from ImageNet")
            base = None
    # a fine-tuned version keeps what it was (input size, heads) unless asked otherwise
    native = bool(opts.extra.get("native", base is not None and base.manifest.input_size is None))
    with_boundary = bool(opts.extra.get("boundary", False)) or (base is not None and has_boundary_head(base))
    base_size = None if base is None or base.manifest.input_size is None else tuple(base.manifest.input_size)
    net_size: Optional[tuple[int, int]] = None if native else tuple(opts.input_size or base_size or DEFAULT_INPUT)  # type: ignore[assignment]
    crop = tuple(opts.extra.get("crop") or opts.input_size or DEFAULT_INPUT)
    train_size = crop if native else net_size
    reporter.emit("data", train_images=len(train), val_images=len(val), test_images=len(test), classes=classes,
                  input_size=None if native else list(net_size), crop=list(train_size))

    from training.models import SemanticNet

    init_path = opts.init
    if base is not None:
        init_path = base.file(WEIGHTS_FILE) if base.has(WEIGHTS_FILE) else base.file("model.onnx")
    model = SemanticNet(1 + len(classes), pretrained=False, boundary=with_boundary)
    sources: list[str] = []
    init_record = None
    if init_path is not None and init_path.suffix == ".onnx":
        from training.onnx_weights import RecoveryError, recover_state_dict

        try:
            rec = recover_state_dict(model, init_path, net_size or crop)
        except RecoveryError as exc:
            reporter.emit("init", path=str(init_path), loaded=0, skipped=0, note=f"{exc}: starting from ImageNet")
            init_path = None
        else:
            init_record = {"file": rec["file"], "recovered_from_onnx": True, "loaded": len(model.state_dict()),
                           "skipped": 0, "max_abs_diff": rec["max_abs_diff"]}
            sources.append(f"init: {init_path} (weights recovered from the ONNX graph, {rec['convolutions']} "
                           f"convolutions, max difference {rec['max_abs_diff']:.1g})")
            reporter.emit("init", path=str(init_path), loaded=init_record["loaded"], skipped=0, recovered=True)
    elif init_path is not None:
        init_record = apply_init(model, init_path)
        sources.append(f"init: {init_path} (sha256 {init_record['sha256_16']}..., {init_record['loaded']} tensors)")
        reporter.emit("init", path=str(init_path), loaded=init_record["loaded"], skipped=init_record["skipped"])
    if init_path is None and opts.encoder == "efficientnet-lite0":
        from training.encoders.efficientnet_lite import load_imagenet

        load_imagenet(model.encoder)
        sources.append(f"encoder: EfficientNet-Lite0 ImageNet, {WEIGHTS_SOURCE}")
    if not sources:
        sources.append("random initialisation")
    model.to(device)
    # channels-last runs the depthwise convolutions of the encoder about twice as fast
    # on the CPU (measured: 2.6 against 1.1 images/s at 384 x 384, one thread)
    channels_last = device.type == "cpu" and bool(opts.extra.get("channels_last", True))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    ddp_model = wrap_ddp(model, dist_info, device)

    cached = [CachedImage(im, classes, None if native else net_size) for im in train]
    dataset = SegmentationDataset(cached, train_size, opts.seed + dist_info.rank, native=native,
                                  boundary=with_boundary, scale=tuple(opts.extra.get("scale", (0.3, 1.0))))
    batch = opts.batch_size or (8 if device.type == "cuda" else 4)
    # a ragged last batch is dropped only when a rank has more than one batch of its own
    # (under torchrun a rank holds ceil(n / world) images: 5 images, 2 ranks, batch 4 would
    # otherwise drop every rank's only batch)
    per_rank = -(-len(dataset) // dist_info.world_size)
    loader = make_loader(dataset, batch, True, dist_info, opts.seed, drop_last=per_rank > batch)
    epochs = opts.epochs or 30
    steps_total = epochs * max(1, len(loader))
    if opts.max_steps:
        steps_total = min(steps_total, opts.max_steps)
    # fine-tuning the version in use: a tenth of the rate, so a few new labels refine what it
    # learnt instead of shaking it loose (at 1e-3, 8 epochs on 18 images took a model from
    # validation IoU 0.50 to 0.28)
    fine_tuning = init_path is not None and opts.init is None
    lr = opts.lr or (FINE_TUNE_LR if fine_tuning else 1e-3)
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    timer = Timer(opts.minutes)
    set_lr(optim, lr, 0.0)
    val_every = max(1, int(opts.extra.get("val_every", 1)))
    # a fine-tuned version keeps its base's pipeline settings unless this run is told or searches
    inherited = dict(base.manifest.defaults) if base is not None and init_record is not None else {}
    threshold = float(opts.extra.get("threshold", inherited.get("threshold", DEFAULT_THRESHOLD)))

    def validate(flip: bool = False) -> tuple[dict, dict]:
        model.eval()
        run = torch_runner(model, device)

        def predict(rgb: np.ndarray) -> np.ndarray:
            net = semantic_network_maps(rgb, run, input_size=net_size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                        activation="softmax", flip=flip, pad_multiple=PAD_MULTIPLE)
            return resize_maps(net.probs, rgb.shape[:2])

        return score_images(predict, val, classes, threshold)

    best_state, best_proto, best_seg, best_epoch = None, None, None, -1
    curve: list[dict[str, Any]] = []
    step, images_seen, last_loss = 0, 0, float("nan")
    if fine_tuning and dist_info.is_main and val:
        # the version in use is a candidate too (epoch 0): a fine-tuning run whose every
        # epoch scores below its start publishes its start, which the gate then keeps out
        proto, seg = validate()
        curve.append({"epoch": 0, "step": 0, "loss": None, "val_score": _score(proto), "val_mean_iou": proto["mean_iou"],
                      "val_mean_max_fbeta": proto["mean_max_fbeta"], "elapsed_s": round(timer.elapsed, 1)})
        best_state, best_proto, best_seg, best_epoch = copy.deepcopy(model.state_dict()), proto, seg, 0
    epoch = 0
    stop = False
    while epoch < epochs and not stop:
        epoch += 1
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        ddp_model.train()
        if fine_tuning:
            freeze_batchnorm_statistics(model)
        losses = []
        for batch_items in loader:
            x, y = batch_items[0].to(device, memory_format=memory_format), batch_items[1].to(device)
            out = ddp_model(x)
            if with_boundary:
                logits, bnd = out
                loss = segmentation_loss(logits, y) + boundary_loss(bnd, batch_items[2].to(device), valid=y != IGNORE)
            else:
                loss = segmentation_loss(out, y)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            step += 1
            set_lr(optim, lr, schedule_progress(step, steps_total, timer))
            images_seen += x.shape[0]
            losses.append(float(loss.detach()))
            reporter.emit("step", epoch=epoch, step=step, total=len(loader), loss=losses[-1])
            # every rank must stop at the same step (one stopping alone leaves the others
            # waiting in the gradient all-reduce): the budget is agreed on
            if any_rank(step >= steps_total or timer.expired(), dist_info):
                stop = True
                break
        last_loss = float(np.mean(losses)) if losses else last_loss
        proto = None
        if dist_info.is_main and val and (epoch % val_every == 0 or stop or epoch >= epochs):
            t0 = time.monotonic()
            proto, seg = validate()
            curve.append({"epoch": epoch, "step": step, "loss": round(last_loss, 5),
                          "val_score": _score(proto), "val_mean_iou": proto["mean_iou"],
                          "val_mean_max_fbeta": proto["mean_max_fbeta"],
                          "val_per_class_iou": {c: v["iou"] for c, v in proto["per_class"].items() if v["iou"] is not None},
                          "elapsed_s": round(timer.elapsed, 1), "val_seconds": round(time.monotonic() - t0, 1)})
            if best_proto is None or _score(proto) > _score(best_proto):
                best_state, best_proto, best_seg, best_epoch = copy.deepcopy(model.state_dict()), proto, seg, epoch
        summary = None if proto is None else {"score": _score(proto), "mean_iou": proto["mean_iou"],
                                              "mean_max_fbeta": proto["mean_max_fbeta"]}
        reporter.emit("epoch", epoch=epoch, loss=last_loss, val=summary, elapsed_s=round(timer.elapsed, 1))
    train_seconds = timer.elapsed
    ranks = gather_rank_steps(step, images_seen, dist_info)
    if not dist_info.is_main:
        return {"info": None, "steps": step}
    if best_state is not None:
        model.load_state_dict(best_state)
    else:  # no validation image: the last weights, scored on the training images
        val_or_train = val or train
        best_proto, best_seg = score_images(lambda rgb: predict_probs(model, rgb, net_size, device), val_or_train, classes)
        best_epoch = epoch
    model.eval()
    search = opts.extra.get("flip_tta") == "auto" or bool(opts.extra.get("tune"))
    flip = opts.extra.get("flip_tta", inherited.get("flip_tta")) is True
    model.cpu().to(memory_format=torch.contiguous_format)
    run_info = {
        "epochs_run": epoch, "steps": step, "images_seen": images_seen, "train_seconds": round(train_seconds, 1),
        "images_per_second": round(images_seen / max(train_seconds, 1e-9), 3),
        "final_loss": last_loss, "batch_size": batch, "lr": lr, "device": str(device),
        "schedule": "AdamW, linear warm-up 5 %, cosine decay to 1 % (by steps or the time budget)",
        "validation_curve": curve, "ranks": ranks,
        "input": ("native resolution, padded to a multiple of 32; training crops "
                  f"{train_size[0]} x {train_size[1]}") if native else f"resized to {net_size[0]} x {net_size[1]}",
    }
    out = _export_and_publish(
        model, opts, data, train, val, test, classes, net_size, best_proto, best_seg, best_epoch, sources,
        init_record, run_info, reporter, flip=flip, with_boundary=with_boundary, threshold=threshold,
        search=search, inherited=inherited,
    )
    out["images_per_second"] = images_seen / max(train_seconds, 1e-9)
    out["steps"] = step
    return out


THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def _pipeline(folder: Path):
    """``SemanticPipeline`` over an exported model folder (ONNX Runtime, CPU)."""
    from inference.pipelines.base import Runtimes
    from inference.pipelines.semantic import SemanticPipeline
    from inference.registry import Manifest, ModelInfo
    from inference.runtime import OnnxRuntime

    info = ModelInfo(manifest=Manifest.read(Path(folder) / "manifest.json"), path=Path(folder))
    return SemanticPipeline(info, Runtimes(OnnxRuntime("cpu")))


def _published_scores(folder: Path, images: Sequence[ImageLabels], classes: Sequence[str]) -> tuple[dict, dict]:
    """Scores of an exported model folder through ``SemanticPipeline`` itself (ONNX Runtime,
    the manifest's defaults): what ``specula propose`` will give on these images."""
    pipe = _pipeline(folder)
    p = pipe.params()
    return score_images(pipe.probability_maps, images, classes, float(p["threshold"]), int(p["min_area"]))


def choose_settings(folder: Path, val: Sequence[ImageLabels], classes: Sequence[str],
                    flips: Sequence[bool] = (False, True), thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    """The pipeline defaults (``flip_tta``, ``threshold``) that score highest on the
    validation images, through the exported model and the pipeline itself.

    Each flip setting costs one pass over the images; the thresholds are applied to the
    same maps. Ties go to no flip (half the time) and the threshold nearest 0.5.
    """
    pipe = _pipeline(folder)
    min_area = int(pipe.params()["min_area"])
    candidates = []
    for flip in flips:
        protos = {t: ProtocolScores(classes) for t in thresholds}
        for im in val:
            rgb = read_rgb(im.path)
            target = im.class_map(classes)
            probs = pipe.probability_maps(rgb, params={"flip_tta": bool(flip)})
            for t in thresholds:
                protos[t].add(probs, pipeline_masks(probs, t, min_area), target, im.key)
        for t in thresholds:
            r = protos[t].result()
            candidates.append({"flip_tta": bool(flip), "threshold": float(t), "val_score": _score(r),
                               "val_mean_iou": r["mean_iou"]})
    best = max(candidates, key=lambda c: (c["val_score"], not c["flip_tta"], -abs(c["threshold"] - 0.5)))
    return {"chosen": {"flip_tta": best["flip_tta"], "threshold": best["threshold"], "val_score": best["val_score"]},
            "candidates": candidates, "rule": "highest validation score; ties: no flip, threshold nearest 0.5"}


def finalize_folder(folder: Path, val: Sequence[ImageLabels], test: Sequence[ImageLabels], classes: Sequence[str],
                    search: bool = True, reporter: Optional[Reporter] = None) -> dict[str, Any]:
    """Choose the pipeline defaults on validation (``search``), then score the folder's
    model through the pipeline on the validation and test images and write all of it
    into its manifest. Returns the manifest."""
    path = Path(folder) / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if search and val:
        found = choose_settings(folder, val, classes)
        manifest["defaults"] = {**manifest.get("defaults", {}), "flip_tta": found["chosen"]["flip_tta"],
                                "threshold": found["chosen"]["threshold"]}
        manifest.setdefault("training", {})["settings_search"] = found
        _rewrite_manifest(path, manifest)
        if reporter:
            reporter.emit("settings", **found["chosen"])
    metrics = manifest.setdefault("metrics", {})
    if val:
        metrics["validation_published"], _ = _published_scores(folder, val, classes)
    if test:
        metrics["test"], metrics["test_segmentation_metrics"] = _published_scores(folder, test, classes)
    _rewrite_manifest(path, manifest)
    if reporter:
        reporter.emit("scored", validation=(metrics.get("validation_published") or {}).get("image_mean_iou"),
                      test=(metrics.get("test") or {}).get("mean_iou"))
    return manifest


def _export_and_publish(model, opts, data, train, val, test, classes, size, proto, seg, best_epoch, sources,
                        init_record, run_info, reporter, *, flip: bool, with_boundary: bool,
                        threshold: float, search: bool = False, inherited: Optional[dict] = None) -> dict[str, Any]:
    from inference.registry import Manifest
    from training.export import (
        check_onnx_matches, expose_decoder_features, export_semantic_onnx, scratch_dir, write_local,
    )
    from training.gate import judge, publish_gated, save_weights

    name = model_name(opts, data)
    check_images = [read_rgb(im.path) for im in (val or train)[:2]]
    if size is None:
        inputs = [to_tensor_batch(pad_to_multiple(rgb, PAD_MULTIPLE)) for rgb in check_images]
    else:
        inputs = [to_tensor_batch(resize_image(rgb, size)) for rgb in check_images]
    # a fine-tuned version keeps its base's settings this run does not choose (the glass
    # model's boundary threshold, 0.15, was searched for pane splitting; 0.5 merges panes)
    defaults: dict[str, Any] = {**(inherited or {}), "threshold": threshold, "flip_tta": flip}
    if size is None:
        defaults["pad_multiple"] = PAD_MULTIPLE
    protocol = ("per-image IoU (the pipeline's proposals: threshold, pieces under min_area dropped) and per-image "
                "max F-beta (beta^2 = 0.3, 256 thresholds of the probability map) of each class, averaged over the "
                "images whose truth holds the class, at full image resolution")
    with scratch_dir() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_semantic_onnx(model, inputs[0], onnx_path)
        check = check_onnx_matches(model, onnx_path, inputs)
        expose_decoder_features(onnx_path)  # pooled into each proposal's embedding (clustered review)
        manifest = {
            "name": name,
            "version": opts.version or "",
            "task": "semantic",
            "classes": [BACKGROUND, *classes],
            "background_class": BACKGROUND,
            "input_size": None if size is None else list(size),
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "output_activation": "softmax",
            "defaults": defaults,
            "training": {
                "trainer": "training.semantic",
                "architecture": "EfficientNet-Lite0 encoder + FPN decoder (stride-2 skip), softmax"
                                + (", boundary head (pane splitting)" if with_boundary else ""),
                "data": {**data.summary(train), "split_seed": opts.seed, "val_fraction": opts.val_fraction,
                         "test_fraction": float(opts.extra.get("test_fraction", 0.0)),
                         "train_images": len(train), "val_images": len(val), "test_images": len(test),
                         "val_image_keys": [im.key for im in val], "test_image_keys": [im.key for im in test]},
                "best_epoch": best_epoch,
                "init": init_record,
                "onnx_check": check,
                **run_info,
                **opts.extra.get("training_notes", {}),
            },
            "metrics": {"validation": seg, "validation_protocol": proto, "protocol": protocol,
                        "selection": "the epoch with the highest validation per-image IoU over every (image, class) "
                                      "pair (val_score in the curve)"},
            "sources": sources,
        }
        if size is None:  # any size: photos far larger than the training images go in tiles
            manifest["tiling"] = {"tile": int(opts.extra.get("tile", 1024)), "overlap": 128}
        manifest["version"] = manifest["version"] or "0"  # the scratch copy needs one; publish fills the real one
        # choose the pipeline defaults on validation (flip, threshold) and score what was
        # exported, through the pipeline and ONNX Runtime, before it is published: the
        # validation figure must be the kept epoch's, and the test figure (never seen in
        # training or selection) is scored once, here
        Manifest.from_json(dict(manifest), "manifest")
        (Path(tmp) / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        manifest = finalize_folder(Path(tmp), val, test, classes, search=search, reporter=reporter)
        if manifest["version"] == "0":
            manifest["version"] = opts.version or ""
        if opts.extra.get("write_local"):
            manifest["version"] = manifest["version"] or "1"
            manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            folder = write_local(Path(opts.extra["write_local"]), [onnx_path], manifest)
            reporter.emit("published", name=name, version=manifest["version"], path=str(folder))
            return {"info": None, "path": folder, "metrics": seg, "protocol": proto, "manifest": manifest}
        new_score = (manifest["metrics"].get("validation_published") or {}).get("image_mean_iou")
        gate = judge(opts.registry, name, manifest["classes"], new_score,
                     lambda folder: _published_scores(folder, val, classes)[0].get("image_mean_iou"),
                     "validation per-image mean IoU through the pipeline")
        info = publish_gated(opts.registry, [onnx_path, save_weights(model, Path(tmp))], manifest, gate, reporter)
    reporter.emit("published", name=info.name, version=info.version, path=str(info.path), activated=gate["activate"])
    return {"info": info, "path": info.path, "metrics": seg, "protocol": proto, "manifest": info.manifest.to_json(),
            "gate": gate}


def model_name(opts: TrainOptions, data: ProjectData) -> str:
    """The registry name a run publishes under: ``--name``, else ``<project folder>-semantic``."""
    return opts.name or f"{Path(data.project).name}-semantic"


def _rewrite_manifest(path: Path, data: dict) -> None:
    """Replace a manifest atomically (a reader never sees half a file), validated first."""
    import os

    from inference.registry import Manifest

    Manifest.from_json(dict(data), str(path))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)
