"""CAM trainer (003): a U-Net classifier trained on crops around weak clicks.

Training set (003, section 4.1): five jittered crops (320 x 320 by default) around
every positive click; negative crops sampled uniformly over the negative
annotations so that each class has as many negatives as positives. Positive clicks
come from ``weak_click`` interactions, plus one interior point per accepted
instance when an image has accepted masks but no positive click; negatives from
negative ``weak_click`` s and rejected proposals (and, only when a class has none,
from background points of fully labelled images).

One binary output per class (003 trains one binary classifier per defect type; a
crop labelled for one class says nothing about the others, so the other outputs
are masked out of the loss). AdamW, lr 1e-4, weight decay 1e-2; the best
checkpoint by validation F-measure (crops around the held-out images' clicks).
Exported as TorchScript returning ``(logits (N, C), features (N, F, H, W))``.
"""
from __future__ import annotations

import copy
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
from training.datasets import Click, ImageLabels, ProjectData, _interior_point, load_project, read_rgb, split_by_image
from training.encoders.efficientnet_lite import IMAGENET_MEAN, IMAGENET_STD, WEIGHTS_SOURCE
from training.metrics_util import SegmentationMetrics, binary_f_measure

CROP = 320
CROPS_PER_CLICK = 5


def effective_clicks(im: ImageLabels, classes: Sequence[str], rng: np.random.Generator) -> list[Click]:
    """The image's clicks plus those implied by its accepted masks (see the module docstring)."""
    clicks = [c for c in im.clicks if c.class_name in classes]
    have_pos = {c.class_name for c in clicks if c.positive}
    for name, mask in im.instances:
        if name in classes and name not in have_pos:
            x, y = _interior_point(mask)
            clicks.append(Click(x, y, True, name, "accepted"))
    return clicks


def background_clicks(im: ImageLabels, cls: str, n: int, rng: np.random.Generator) -> list[Click]:
    """``n`` points outside every accepted mask of a fully labelled image."""
    if not im.fully_labelled:
        return []
    h, w = im.size
    occupied = np.zeros((h, w), bool)
    for name, mask in im.instances:
        occupied |= mask.to_full()
    ys, xs = np.nonzero(~occupied)
    if len(xs) == 0:
        return []
    idx = rng.integers(0, len(xs), n)
    return [Click(float(xs[i]), float(ys[i]), False, cls, "background") for i in idx]


def gather_clicks(images: Sequence[ImageLabels], classes: Sequence[str], seed: int) -> list[tuple[int, Click]]:
    """``(image index, click)`` pairs; background negatives only for classes without negatives."""
    rng = np.random.default_rng(seed)
    out = [(i, c) for i, im in enumerate(images) for c in effective_clicks(im, classes, rng)]
    for cls in classes:
        n_pos = sum(1 for _, c in out if c.class_name == cls and c.positive)
        if n_pos and not any(c.class_name == cls and not c.positive for _, c in out):
            per = max(1, n_pos // max(1, len(images)))
            out += [(i, c) for i, im in enumerate(images) for c in background_clicks(im, cls, per, rng)]
    return out


def crop_around(rgb: np.ndarray, x: float, y: float, size: int) -> np.ndarray:
    """``size`` x ``size`` crop centred on ``(x, y)``; reflected at the image border."""
    h, w = rgb.shape[:2]
    half = size // 2
    pad = max(0, half - int(x), half - int(y), int(x) + size - half - w, int(y) + size - half - h)
    if pad:
        rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    x0, y0 = int(x) - half + pad, int(y) - half + pad
    return rgb[y0 : y0 + size, x0 : x0 + size]


class ClickCropDataset:
    """Balanced crops around clicks, re-jittered every epoch (``resample``).

    Item: ``(image (3, S, S) float32 normalised, target (C,) float32, weight (C,) float32)``.
    """

    def __init__(self, rgbs: list[np.ndarray], clicks: list[tuple[int, Click]], classes: Sequence[str],
                 crop: int, seed: int, augment: bool = True, crops_per_click: int = CROPS_PER_CLICK):
        self.rgbs, self.clicks, self.classes = rgbs, clicks, list(classes)
        self.crop, self.augment, self.per_click = crop, augment, crops_per_click
        self.rng = np.random.default_rng(seed)
        self.items: list[tuple[int, float, float, int, bool]] = []
        self.resample()

    def resample(self) -> None:
        """Draw this epoch's crops: jittered positives, as many negatives per class."""
        items = []
        jitter = self.crop / 4 if self.augment else 0.0
        n = self.per_click if self.augment else 1
        for ci, cls in enumerate(self.classes):
            pos = [(i, c) for i, c in self.clicks if c.class_name == cls and c.positive]
            neg = [(i, c) for i, c in self.clicks if c.class_name == cls and not c.positive]
            pos_items = [(i, c) for i, c in pos for _ in range(n)]
            if self.augment and neg:
                # uniform over the negative annotations, as many as the positives
                picks = self.rng.integers(0, len(neg), len(pos_items)) if pos_items else []
                neg_items = [neg[k] for k in picks]
            else:
                neg_items = [(i, c) for i, c in neg for _ in range(n)]
            for i, c in pos_items + neg_items:
                dx, dy = (self.rng.uniform(-jitter, jitter, 2) if jitter else (0.0, 0.0))
                items.append((i, c.x + dx, c.y + dy, ci, c.positive))
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        import torch

        i, x, y, ci, positive = self.items[k]
        patch = crop_around(self.rgbs[i], x, y, self.crop).astype(np.float32) / 255.0
        if self.augment:
            if self.rng.random() < 0.5:
                patch = patch[:, ::-1]
            if self.rng.random() < 0.5:
                patch = patch[::-1]
            patch = np.clip((patch - 0.5) * self.rng.uniform(0.8, 1.2) + 0.5 * self.rng.uniform(0.8, 1.2), 0, 1)
        patch = (patch - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
        target = np.zeros(len(self.classes), np.float32)
        weight = np.zeros(len(self.classes), np.float32)
        target[ci] = float(positive)
        weight[ci] = 1.0
        x_t = torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1)))
        return x_t, torch.from_numpy(target), torch.from_numpy(weight)


def classification_f(model, dataset: ClickCropDataset, device, batch: int = 8) -> dict[str, float]:
    """Mean over classes of the F-measure (beta 1, threshold 0.5) and the accuracy on ``dataset``."""
    import torch

    model.eval()
    scores, targets, weights = [], [], []
    with torch.no_grad():
        for s in range(0, len(dataset), batch):
            xs, ts, ws = zip(*(dataset[k] for k in range(s, min(len(dataset), s + batch))))
            logits, _ = model(torch.stack(xs).to(device))
            scores.append(torch.sigmoid(logits).cpu().numpy())
            targets.append(torch.stack(ts).numpy())
            weights.append(torch.stack(ws).numpy())
    if not scores:
        return {"f_measure": 0.0, "accuracy": 0.0, "crops": 0}
    sc, tg, wt = (np.concatenate(a) for a in (scores, targets, weights))
    fs, correct, total = [], 0, 0
    for c in range(sc.shape[1]):
        sel = wt[:, c] > 0
        if not sel.any():
            continue
        labels = tg[sel, c] > 0.5
        fs.append(binary_f_measure(sc[sel, c], labels))
        correct += int(((sc[sel, c] >= 0.5) == labels).sum())
        total += int(sel.sum())
    return {"f_measure": float(np.mean(fs)) if fs else 0.0, "accuracy": correct / max(1, total), "crops": total}


def class_activation_maps(model, rgb: np.ndarray, device, max_side: int = 640):
    """Grad-CAM on the decoder features (= CAM, since the head is pooling + linear).

    ``(H, W, 3)`` uint8 -> ``(C, H, W)`` float maps in [0, 1] (each normalised by its
    maximum) and ``(C,)`` class probabilities.
    """
    import torch

    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(rgb, (int(round(w * scale)) // 8 * 8 or 8, int(round(h * scale)) // 8 * 8 or 8),
                       interpolation=cv2.INTER_AREA)
    x = (small.astype(np.float32) / 255.0 - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None])).to(device)
    model.eval()
    with torch.no_grad():
        logits, feats = model(xt)
        weight = model.fc.weight  # (C, F)
        cams = torch.relu(torch.einsum("cf,fhw->chw", weight, feats[0]))
    cams = cams / cams.flatten(1).max(1).values.clamp_min(1e-6)[:, None, None]
    maps = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in cams.cpu().numpy()])
    return maps, torch.sigmoid(logits[0]).cpu().numpy()


def cam_segmentation_metrics(model, images: Sequence[ImageLabels], classes: Sequence[str], device,
                             threshold: float = 0.3) -> dict:
    """IoU / max F-beta / MAE of thresholded CAMs against accepted masks of held-out images."""
    metrics = SegmentationMetrics(list(classes))
    n = 0
    for im in images:
        if not im.instances:
            continue
        rgb = read_rgb(im.path)
        maps, _ = class_activation_maps(model, rgb, device)
        target = im.class_map(classes)
        for i, c in enumerate(classes):
            metrics.acc[c].add(maps[i], maps[i] > threshold, target == i + 1)
        n += 1
    out = metrics.result()
    out["images"] = n
    out["cam_threshold"] = threshold
    return out


def train_cam(opts: TrainOptions, reporter: Optional[Reporter] = None, data: Optional[ProjectData] = None) -> dict[str, Any]:
    """Train, pick the best checkpoint by validation F-measure, export TorchScript, publish (task ``cam``)."""
    import torch
    from torch.nn import functional as F

    from training.models import CamNet

    reporter, dist_info, device = start_run(opts, reporter)
    data = data or load_project(opts.project)
    classes = [c for c in data.classes if any(
        (cl.positive and cl.class_name == c) for im in data.images for cl in im.clicks
    ) or any(n == c for im in data.images for n, _ in im.instances)]
    if not classes:
        raise RuntimeError(f"{data.project}: no positive weak click or accepted mask; click on some defects first")
    train, val = split_by_image(data.images, opts.val_fraction, opts.seed)
    train = train or val
    crop = int(opts.input_size[0]) if opts.input_size else CROP
    train_clicks = gather_clicks(train, classes, opts.seed)
    val_clicks = gather_clicks(val, classes, opts.seed + 1)
    reporter.emit("data", train_images=len(train), val_images=len(val), classes=classes, crop=crop,
                  train_clicks=len(train_clicks), val_clicks=len(val_clicks))
    train_rgb = [read_rgb(im.path) for im in train]
    val_rgb = [read_rgb(im.path) for im in val]
    per_click = int(opts.extra.get("crops_per_click", CROPS_PER_CLICK))
    dataset = ClickCropDataset(train_rgb, train_clicks, classes, crop, opts.seed + dist_info.rank, True, per_click)
    val_set = ClickCropDataset(val_rgb, val_clicks, classes, crop, opts.seed, augment=False)
    if len(dataset) == 0:
        raise RuntimeError(f"{data.project}: the training images hold no usable clicks")

    encoder = opts.encoder
    pretrained = opts.init is None and encoder == "efficientnet-lite0"
    model = CamNet(len(classes), encoder=encoder, pretrained=pretrained)
    sources = [f"encoder: EfficientNet-Lite0 ImageNet, {WEIGHTS_SOURCE}"] if pretrained else []
    init_record = None
    if opts.init is not None:
        init_record = apply_init(model, opts.init)
        sources.append(f"init: {opts.init} (sha256 {init_record['sha256_16']}..., {init_record['loaded']} tensors)")
    if not sources:
        sources.append(f"{encoder} from scratch (random initialisation)")
    model.to(device)
    ddp_model = wrap_ddp(model, dist_info, device)
    batch = opts.batch_size or (32 if device.type == "cuda" else 8)
    lr = opts.lr or 1e-4
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    epochs = opts.epochs or 10
    timer = Timer(opts.minutes)
    best_state, best_val, best_epoch = None, None, -1
    step, seen, epoch, stop, last_loss = 0, 0, 0, False, float("nan")
    while epoch < epochs and not stop:
        epoch += 1
        dataset.resample()
        loader = make_loader(dataset, batch, True, dist_info, opts.seed + epoch)
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        ddp_model.train()
        losses = []
        for x, t, w in loader:
            x, t, w = x.to(device), t.to(device), w.to(device)
            logits, _ = ddp_model(x)
            loss = (F.binary_cross_entropy_with_logits(logits, t, reduction="none") * w).sum() / w.sum().clamp_min(1)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            step += 1
            seen += x.shape[0]
            losses.append(float(loss.detach()))
            reporter.emit("step", epoch=epoch, step=step, total=len(loader), loss=losses[-1])
            if (opts.max_steps and step >= opts.max_steps) or timer.expired():
                stop = True
                break
        last_loss = float(np.mean(losses)) if losses else last_loss
        val_result = None
        if dist_info.is_main:
            val_result = classification_f(model, val_set if len(val_set) else dataset, device)
            if best_val is None or val_result["f_measure"] > best_val["f_measure"]:
                best_state, best_val, best_epoch = copy.deepcopy(model.state_dict()), val_result, epoch
        reporter.emit("epoch", epoch=epoch, loss=last_loss, val=val_result, elapsed_s=round(timer.elapsed, 1))
    train_seconds = timer.elapsed
    if not dist_info.is_main:
        return {"info": None}
    model.load_state_dict(best_state)
    model.eval().cpu()
    seg = cam_segmentation_metrics(model, val, classes, torch.device("cpu"))
    run_info = {"epochs_run": epoch, "steps": step, "crops_seen": seen, "train_seconds": round(train_seconds, 1),
                "final_loss": last_loss, "batch_size": batch, "lr": lr, "weight_decay": 1e-2, "crop": crop,
                "crops_per_click": per_click, "device": str(device), "encoder": encoder, "best_epoch": best_epoch}
    out = _export_and_publish(model, opts, data, train, val, classes, crop, best_val, seg, sources, init_record,
                              run_info, reporter, val_set if len(val_set) else dataset)
    out["crops_per_second"] = seen / max(train_seconds, 1e-9)
    return out


def _export_and_publish(model, opts, data, train, val, classes, crop, best_val, seg, sources, init_record,
                        run_info, reporter, check_set) -> dict[str, Any]:
    import torch

    from training.export import export_cam_torchscript, publish, scratch_dir

    name = opts.name or f"{Path(data.project).name}-cam"
    example = check_set[0][0][None]
    with scratch_dir() as tmp:
        pt = Path(tmp) / "model.pt"
        check = export_cam_torchscript(model, example, pt)
        # a second, differently sized input: the traced module must not have frozen the size
        export_check_other = torch.jit.load(str(pt))(torch.zeros(1, 3, crop // 2, crop // 2))
        if tuple(export_check_other[1].shape[-2:]) != (crop // 2, crop // 2):
            raise RuntimeError("the traced CAM model does not follow the input size")
        manifest = {
            "name": name,
            "version": opts.version or "",
            "task": "cam",
            "classes": list(classes),
            "input_size": None,
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "output_activation": "sigmoid",
            "feature_layer": "features",
            "training": {
                "trainer": "training.cam",
                "architecture": f"U-Net over the first two stages of {run_info['encoder']} (stem stride 1), "
                                "classification head on the decoder (global average pool -> linear)",
                "interface": "model(x (N,3,H,W) normalised) -> (logits (N,C), features (N,32,H,W)); "
                             "logits = fc(mean_hw(features)); CAM_c = relu(sum_f fc.weight[c,f] * features[f])",
                "data": {**data.summary(train), "split_seed": opts.seed, "val_fraction": opts.val_fraction,
                         "val_images": len(val)},
                "init": init_record,
                "torchscript_check": check,
                **run_info,
            },
            "metrics": {"validation_classification": best_val, "validation_cam_segmentation": seg,
                        "protocol": "F-measure (beta 1, threshold 0.5) on crops centred on held-out clicks; "
                                    "CAM IoU / max F-beta (beta^2=0.3) / MAE on held-out accepted masks"},
            "sources": sources,
        }
        info = publish(opts.registry, [pt], manifest)
    reporter.emit("published", name=info.name, version=info.version, path=str(info.path))
    return {"info": info, "metrics": {"classification": best_val, "cam_segmentation": seg},
            "manifest": info.manifest.to_json()}
