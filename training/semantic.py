"""Semantic trainer: EfficientNet-Lite0 + light FPN decoder, softmax over background + classes.

Trained from accepted masks of fully labelled images (unlabelled pixels are
background, rejected proposals included), validated on held-out images at their
full resolution exactly as the semantic pipeline will run it (resize to the input
size, softmax, resize back), exported to ONNX, checked against PyTorch, published.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import cv2
import numpy as np

from training.common import (
    Reporter,
    Timer,
    TrainOptions,
    apply_init,
    make_loader,
    start_run,
    wrap_ddp,
)
from training.datasets import ImageLabels, ProjectData, load_project, read_rgb, split_by_image
from training.encoders.efficientnet_lite import IMAGENET_MEAN, IMAGENET_STD, WEIGHTS_SOURCE
from training.metrics_util import SegmentationMetrics

DEFAULT_INPUT = (320, 320)
BACKGROUND = "background"


def to_tensor_batch(rgb: np.ndarray):
    """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` float32 tensor, ImageNet-normalised."""
    import torch

    x = (rgb.astype(np.float32) / 255.0 - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))


class CachedImage:
    """An image and its class map resized to the network input ``(H, W)``; uint8 in memory."""

    def __init__(self, labels: ImageLabels, classes: Sequence[str], size: tuple[int, int], cache_scale: float = 1.25):
        rgb = read_rgb(labels.path)
        target = labels.class_map(classes)
        if target.shape != rgb.shape[:2]:
            target = cv2.resize(target, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
        ch, cw = int(size[0] * cache_scale), int(size[1] * cache_scale)
        self.rgb = cv2.resize(rgb, (cw, ch), interpolation=cv2.INTER_AREA)
        self.target = cv2.resize(target, (cw, ch), interpolation=cv2.INTER_NEAREST)
        self.key = labels.key


class SegmentationDataset:
    """Random-resized crops, flips and photometric jitter of cached images.

    Item: ``(image (3, H, W) float32 normalised, target (H, W) int64)``.
    """

    def __init__(self, images: list[CachedImage], size: tuple[int, int], seed: int, augment: bool = True):
        self.images = images
        self.size = size
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        import torch

        im = self.images[i]
        rgb, tgt = im.rgb, im.target
        h, w = self.size
        if self.augment:
            H, W = tgt.shape
            scale = self.rng.uniform(0.45, 1.0)
            ratio = math.exp(self.rng.uniform(math.log(0.8), math.log(1.25)))
            ch = int(min(H, round(H * math.sqrt(scale / ratio))))
            cw = int(min(W, round(W * math.sqrt(scale * ratio))))
            y0 = int(self.rng.integers(0, H - ch + 1))
            x0 = int(self.rng.integers(0, W - cw + 1))
            rgb = rgb[y0 : y0 + ch, x0 : x0 + cw]
            tgt = tgt[y0 : y0 + ch, x0 : x0 + cw]
            if self.rng.random() < 0.5:
                rgb, tgt = rgb[:, ::-1], tgt[:, ::-1]
        rgb = cv2.resize(np.ascontiguousarray(rgb), (w, h), interpolation=cv2.INTER_LINEAR)
        tgt = cv2.resize(np.ascontiguousarray(tgt), (w, h), interpolation=cv2.INTER_NEAREST)
        x = rgb.astype(np.float32) / 255.0
        if self.augment:  # brightness / contrast as in 001's Multiply and ContrastNormalization
            x = (x - 0.5) * self.rng.uniform(0.8, 1.2) + 0.5
            x = x * self.rng.uniform(0.8, 1.2)
            x = np.clip(x, 0.0, 1.0)
        x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), torch.from_numpy(tgt.astype(np.int64))


def segmentation_loss(logits, target, dice_weight: float = 1.0):
    """Cross-entropy plus soft Dice over the foreground classes present in the batch.

    ``logits`` ``(N, K, H, W)``, ``target`` ``(N, H, W)`` int64. Dice keeps thin
    structures (cracks are ~1.6 % of the pixels) from drowning in background.
    """
    from torch.nn import functional as F

    ce = F.cross_entropy(logits, target)
    probs = logits.softmax(1)
    k = logits.shape[1]
    onehot = F.one_hot(target, k).permute(0, 3, 1, 2).float()
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    present[0] = False
    if present.any():
        dice = 1.0 - (2 * inter[present] + 1.0) / (denom[present] + 1.0)
        return ce + dice_weight * dice.mean()
    return ce + 0.0 * probs.sum()


def predict_probs(model, rgb: np.ndarray, size: tuple[int, int], device) -> np.ndarray:
    """What the semantic pipeline computes: ``(H, W, 3)`` uint8 -> ``(K, H, W)`` softmax probabilities."""
    import torch

    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    with torch.no_grad():
        probs = model(to_tensor_batch(small).to(device)).softmax(1)[0].float().cpu().numpy()
    return np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) for p in probs])


def evaluate(model, images: Sequence[ImageLabels], classes: Sequence[str], size: tuple[int, int], device,
             max_side: int = 1024) -> dict:
    """Per-class IoU / max F-beta / MAE on ``images`` (full resolution, capped at ``max_side``)."""
    model.eval()
    metrics = SegmentationMetrics(list(classes))
    for im in images:
        rgb = read_rgb(im.path)
        target = im.class_map(classes)
        scale = max_side / max(rgb.shape[:2])
        if scale < 1:  # metrics on a 1280 x 1024 image at 1024 px differ by rounding only
            nh, nw = int(round(rgb.shape[0] * scale)), int(round(rgb.shape[1] * scale))
            rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
            target = cv2.resize(target, (nw, nh), interpolation=cv2.INTER_NEAREST)
        metrics.add(predict_probs(model, rgb, size, device), target)
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


def _score(result: dict) -> float:
    v = result.get("mean_iou")
    return -1.0 if v is None else float(v)


def train_semantic(opts: TrainOptions, reporter: Optional[Reporter] = None, data: Optional[ProjectData] = None) -> dict[str, Any]:
    """Train, validate, export and publish; returns ``{"info": ModelInfo | None, "metrics": ..., ...}``.

    ``data`` overrides reading ``opts.project`` (the default-model script merges several sets).
    """
    import torch

    reporter, dist_info, device = start_run(opts, reporter)
    data = data or load_project(opts.project)
    usable = [im for im in data.images if im.fully_labelled]
    if not usable:
        raise RuntimeError(f"{data.project}: no image has accepted masks; accept or draw some before training")
    train, val = split_by_image(usable, opts.val_fraction, opts.seed)
    if not train:
        train = val
    classes = list(data.classes)
    size = tuple(opts.input_size or DEFAULT_INPUT)
    reporter.emit("data", train_images=len(train), val_images=len(val), classes=classes, input_size=list(size))

    from training.models import SemanticNet

    pretrained = opts.init is None and opts.encoder == "efficientnet-lite0"
    model = SemanticNet(1 + len(classes), pretrained=pretrained)
    sources = [f"encoder: EfficientNet-Lite0 ImageNet, {WEIGHTS_SOURCE}"] if pretrained else []
    init_record = None
    if opts.init is not None:
        init_record = apply_init(model, opts.init)
        sources.append(f"init: {opts.init} (sha256 {init_record['sha256_16']}..., {init_record['loaded']} tensors)")
    if not sources:
        sources.append("random initialisation")
    model.to(device)
    ddp_model = wrap_ddp(model, dist_info, device)

    cached = [CachedImage(im, classes, size) for im in train]
    dataset = SegmentationDataset(cached, size, opts.seed + dist_info.rank)
    batch = opts.batch_size or (8 if device.type == "cuda" else 4)
    loader = make_loader(dataset, batch, True, dist_info, opts.seed, drop_last=len(dataset) > batch)
    epochs = opts.epochs or 30
    steps_total = epochs * max(1, len(loader))
    if opts.max_steps:
        steps_total = min(steps_total, opts.max_steps)
    lr = opts.lr or 1e-3
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    timer = Timer(opts.minutes)
    set_lr(optim, lr, 0.0)
    planned_epochs = min(epochs, math.ceil(steps_total / max(1, len(loader))))
    # validation at full resolution costs more than a short epoch: about five times a run
    val_every = int(opts.extra.get("val_every", max(1, planned_epochs // 5)))
    val_side = int(opts.extra.get("val_max_side", 1024))

    best_state, best_result, best_epoch = None, None, -1
    step, images_seen, last_loss = 0, 0, float("nan")
    epoch = 0
    stop = False
    while epoch < epochs and not stop:
        epoch += 1
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        ddp_model.train()
        losses = []
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = segmentation_loss(ddp_model(x), y)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            step += 1
            set_lr(optim, lr, schedule_progress(step, steps_total, timer))
            images_seen += x.shape[0]
            losses.append(float(loss.detach()))
            reporter.emit("step", epoch=epoch, step=step, total=len(loader), loss=losses[-1])
            if step >= steps_total or timer.expired():
                stop = True
                break
        last_loss = float(np.mean(losses)) if losses else last_loss
        result = None
        if dist_info.is_main and val and (epoch % val_every == 0 or stop or epoch >= planned_epochs):
            result = evaluate(model, val, classes, size, device, val_side)
            if best_result is None or _score(result) > _score(best_result):
                best_state, best_result, best_epoch = copy.deepcopy(model.state_dict()), result, epoch
        summary = None if result is None else {"mean_iou": result["mean_iou"], "mean_max_fbeta": result["mean_max_fbeta"]}
        reporter.emit("epoch", epoch=epoch, loss=last_loss, val=summary, elapsed_s=round(timer.elapsed, 1))
    train_seconds = timer.elapsed
    if not dist_info.is_main:
        return {"info": None}
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_result = evaluate(model, val or train, classes, size, device, val_side)
        best_epoch = epoch
    model.eval().cpu()
    out = _export_and_publish(
        model, opts, data, train, val, classes, size, best_result, best_epoch, sources, init_record,
        {"epochs_run": epoch, "steps": step, "images_seen": images_seen, "train_seconds": round(train_seconds, 1),
         "final_loss": last_loss, "batch_size": batch, "lr": lr, "device": str(device)},
        reporter,
    )
    out["images_per_second"] = images_seen / max(train_seconds, 1e-9)
    return out


def _export_and_publish(model, opts, data, train, val, classes, size, result, best_epoch, sources, init_record,
                        run_info, reporter) -> dict[str, Any]:
    from training.export import check_onnx_matches, export_semantic_onnx, publish, scratch_dir, write_local

    name = opts.name or f"{Path(data.project).name}-semantic"
    check_images = [read_rgb(im.path) for im in (val or train)[:2]]
    inputs = [to_tensor_batch(cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)) for rgb in check_images]
    with scratch_dir() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_semantic_onnx(model, inputs[0], onnx_path)
        check = check_onnx_matches(model, onnx_path, inputs)
        manifest = {
            "name": name,
            "version": opts.version or "",
            "task": "semantic",
            "classes": [BACKGROUND, *classes],
            "background_class": BACKGROUND,
            "input_size": list(size),
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "output_activation": "softmax",
            "defaults": {"threshold": 0.5},
            "training": {
                "trainer": "training.semantic",
                "architecture": "EfficientNet-Lite0 encoder + FPN decoder (stride-2 skip), softmax",
                "data": {**data.summary(train), "split_seed": opts.seed, "val_fraction": opts.val_fraction,
                         "val_images": len(val), "val_image_keys": [im.key for im in val][:200]},
                "best_epoch": best_epoch,
                "init": init_record,
                "onnx_check": check,
                **run_info,
                **opts.extra.get("training_notes", {}),
            },
            "metrics": {"validation": result, "protocol": "IoU (argmax), max F-beta (beta^2=0.3), MAE per class "
                        f"at full image resolution (capped at {opts.extra.get('val_max_side', 1024)} px), held-out images"},
            "sources": sources,
        }
        if opts.extra.get("write_local"):
            manifest["version"] = manifest["version"] or "1"
            manifest["created"] = __import__("time").strftime("%Y-%m-%dT%H:%M:%S%z")
            folder = write_local(Path(opts.extra["write_local"]), [onnx_path], manifest)
            reporter.emit("published", name=name, version=manifest["version"], path=str(folder))
            return {"info": None, "path": folder, "metrics": result, "manifest": manifest}
        info = publish(opts.registry, [onnx_path], manifest)
    reporter.emit("published", name=info.name, version=info.version, path=str(info.path))
    return {"info": info, "metrics": result, "manifest": info.manifest.to_json()}
