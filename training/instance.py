"""Instance trainer: torchvision Mask R-CNN with 001's configuration.

Defaults (001): 512 px images, RPN anchors 16-256, RPN NMS 0.8, detection
confidence 0.7 (applied by the pipeline's ``score_threshold``; the exported graph
keeps detections from 0.05 so the user can lower it), flips and brightness /
contrast augmentation, SGD at lr 1e-3 divided by 10 for the last third of the
epochs (001's stepped schedule, shortened). Validation: COCO mask AP (pycocotools
COCOeval) on held-out images. Export: ONNX taking ``(1, 3, H, W)`` RGB in [0, 1]
(the network normalises inside) with outputs boxes, labels, scores, masks.
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
    start_run,
    wrap_ddp,
)
from training.datasets import ImageLabels, ProjectData, load_project, read_rgb, split_by_image
from training.encoders.efficientnet_lite import WEIGHTS_SOURCE
from training.models import MASKRCNN_DEFAULTS, build_maskrcnn

BACKGROUND = "background"
EXPORT_SCORE_THRESH = 0.05


class InstanceSample:
    """An image resized so its longer side is ``side``, with its instances.

    ``rgb`` ``(h, w, 3)`` uint8, ``masks`` ``(N, h, w)`` bool, ``labels`` ``(N,)`` in 1..C.
    """

    def __init__(self, labels: ImageLabels, classes: Sequence[str], side: int):
        rgb = read_rgb(labels.path)
        h, w = rgb.shape[:2]
        s = min(1.0, side / max(h, w))
        nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        self.rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA) if s < 1 else rgb
        masks, cls = [], []
        for name, mask in labels.instances:
            if name not in classes:
                continue
            full = mask.to_full().astype(np.uint8)
            if s < 1:
                full = cv2.resize(full, (nw, nh), interpolation=cv2.INTER_NEAREST)
            if full.any():
                masks.append(full.astype(bool))
                cls.append(list(classes).index(name) + 1)
        self.masks = np.stack(masks) if masks else np.zeros((0, nh, nw), bool)
        self.labels = np.asarray(cls, np.int64)
        self.key = labels.key


def to_target(rgb: np.ndarray, masks: np.ndarray, labels: np.ndarray):
    """``(3, h, w)`` float image in [0, 1] and the torchvision target dict."""
    import torch

    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    target = {
        "boxes": torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)),
        "labels": torch.as_tensor(labels, dtype=torch.int64),
        "masks": torch.as_tensor(masks.astype(np.uint8)),
    }
    image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float() / 255.0
    return image, target


def augment(sample: InstanceSample, rng: np.random.Generator):
    """001's augmentations that matter at this scale: horizontal flip, brightness, contrast."""
    rgb, masks = sample.rgb, sample.masks
    if rng.random() < 0.5:
        rgb, masks = rgb[:, ::-1], masks[:, :, ::-1]
    x = rgb.astype(np.float32)
    x = (x - 127.5) * rng.uniform(0.8, 1.2) + 127.5  # ContrastNormalization((0.8, 1.2))
    x = x * rng.uniform(0.8, 1.2)  # Multiply((0.8, 1.2))
    return np.clip(x, 0, 255).astype(np.uint8), np.ascontiguousarray(masks), sample.labels


def mask_ap(model, samples: Sequence[InstanceSample], classes: Sequence[str], device) -> dict[str, Any]:
    """COCO mask AP / AP50 of ``model`` on ``samples`` (``annotation.metrics.coco_mask_ap``)."""
    import torch

    from annotation.mask import Mask
    from annotation.metrics import CocoInstance, coco_mask_ap

    names = {i + 1: c for i, c in enumerate(classes)}  # label 0 is the background
    gt: dict[str, list[CocoInstance]] = {}
    pred: dict[str, list[CocoInstance]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    model.eval()
    for i, s in enumerate(samples):
        key = str(i)
        sizes[key] = s.rgb.shape[:2]
        gt[key] = [CocoInstance(names[int(lab)], Mask.from_full(m)) for m, lab in zip(s.masks, s.labels)]
        image, _ = to_target(s.rgb, s.masks, s.labels)
        with torch.no_grad():
            out = model([image.to(device)])[0]
        pred[key] = [
            CocoInstance(names.get(int(lab), str(int(lab))), Mask.from_full(pm[0] > 0.5), float(score))
            for score, lab, pm in zip(out["scores"].cpu().numpy(), out["labels"].cpu().numpy(),
                                      out["masks"].cpu().numpy())
        ]
    n_gt = sum(len(v) for v in gt.values())
    n_det = sum(len(v) for v in pred.values())
    if not n_gt:
        return {"mask_ap": None, "mask_ap50": None, "detections": n_det, "gt_instances": 0}
    res = coco_mask_ap(gt, pred, sizes, classes=list(classes), per_class=False)
    return {"mask_ap": max(0.0, res["AP"]), "mask_ap50": max(0.0, res["AP50"]),
            "detections": n_det, "gt_instances": n_gt}


class InstanceExport:
    """Factory for the ONNX wrapper: ``(1, 3, H, W)`` [0, 1] -> boxes, labels, scores, masks."""

    @staticmethod
    def wrap(model):
        import torch

        class _Wrapper(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x: torch.Tensor):
                o = self.m([x[0]])[0]
                return o["boxes"], o["labels"], o["scores"], o["masks"]

        return _Wrapper(model).eval()


def train_instance(opts: TrainOptions, reporter: Optional[Reporter] = None, data: Optional[ProjectData] = None) -> dict[str, Any]:
    """Train Mask R-CNN, validate mask AP, export ONNX (checked against PyTorch), publish ``instance``."""
    import torch

    reporter, dist_info, device = start_run(opts, reporter)
    data = data or load_project(opts.project)
    usable = [im for im in data.images if im.instances]
    if not usable:
        raise RuntimeError(f"{data.project}: no image has accepted masks; accept or draw some before training")
    train, val = split_by_image(usable, opts.val_fraction, opts.seed)
    train = train or val
    classes = [c for c in data.classes if any(n == c for im in usable for n, _ in im.instances)]
    side = int(opts.input_size[0]) if opts.input_size else MASKRCNN_DEFAULTS["image_size"]
    reporter.emit("data", train_images=len(train), val_images=len(val), classes=classes, image_size=side)
    backbone = "resnet50" if opts.encoder == "resnet50" else "efficientnet-lite0"
    pretrained = opts.init is None and backbone == "efficientnet-lite0"
    model = build_maskrcnn(1 + len(classes), backbone=backbone, pretrained=pretrained, image_size=side)
    sources = [f"backbone: EfficientNet-Lite0 ImageNet, {WEIGHTS_SOURCE}"] if pretrained else []
    init_record = None
    if opts.init is not None:
        init_record = apply_init(model, opts.init)
        sources.append(f"init: {opts.init} (sha256 {init_record['sha256_16']}..., {init_record['loaded']} tensors)")
    if not sources:
        sources.append(f"{backbone} Mask R-CNN from scratch (random initialisation)")
    model.to(device)
    ddp_model = wrap_ddp(model, dist_info, device)
    train_s = [InstanceSample(im, classes, side) for im in train]
    val_s = [InstanceSample(im, classes, side) for im in val]
    train_s = [s for s in train_s if len(s.labels)]
    lr = opts.lr or MASKRCNN_DEFAULTS["lr"]
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    epochs = opts.epochs or 12
    batch = opts.batch_size or (4 if device.type == "cuda" else 1)
    rng = np.random.default_rng(opts.seed + dist_info.rank)
    timer = Timer(opts.minutes)
    best_state, best_val, best_epoch = None, None, -1
    step, seen, epoch, stop, last_loss = 0, 0, 0, False, float("nan")
    while epoch < epochs and not stop:
        epoch += 1
        for g in optim.param_groups:  # stepped LR (001): divide by 10 for the last third
            g["lr"] = lr if epoch <= max(1, (2 * epochs) // 3) else lr / 10
        order = rng.permutation(len(train_s))
        if dist_info.distributed:  # each rank takes its share, as DistributedSampler would
            order = order[dist_info.rank :: dist_info.world_size]
        ddp_model.train()
        losses = []
        for b in range(0, len(order), batch):
            images, targets = [], []
            for k in order[b : b + batch]:
                img, tgt = to_target(*augment(train_s[k], rng))
                images.append(img.to(device))
                targets.append({k2: v.to(device) for k2, v in tgt.items()})
            loss_dict = ddp_model(images, targets)
            loss = sum(loss_dict.values())
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optim.step()
            step += 1
            seen += len(images)
            losses.append(float(loss.detach()))
            reporter.emit("step", epoch=epoch, step=step, total=(len(order) + batch - 1) // batch, loss=losses[-1])
            if (opts.max_steps and step >= opts.max_steps) or timer.expired():
                stop = True
                break
        last_loss = float(np.mean(losses)) if losses else last_loss
        val_result = None
        if dist_info.is_main and val_s:
            model.roi_heads.score_thresh = EXPORT_SCORE_THRESH
            val_result = mask_ap(model, val_s, classes, device)
            score = val_result["mask_ap"] or 0.0
            if best_val is None or score > (best_val["mask_ap"] or 0.0):
                best_state, best_val, best_epoch = copy.deepcopy(model.state_dict()), val_result, epoch
        reporter.emit("epoch", epoch=epoch, loss=last_loss, val=val_result, elapsed_s=round(timer.elapsed, 1))
    train_seconds = timer.elapsed
    if not dist_info.is_main:
        return {"info": None}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval().cpu()
    model.roi_heads.score_thresh = EXPORT_SCORE_THRESH
    run_info = {"epochs_run": epoch, "steps": step, "images_seen": seen, "train_seconds": round(train_seconds, 1),
                "final_loss": last_loss, "batch_size": batch, "lr": lr, "lr_schedule": "stepped: /10 after 2/3 of epochs",
                "optimizer": "SGD momentum 0.9, weight decay 1e-4", "device": str(device), "backbone": backbone,
                "best_epoch": best_epoch, "config": {**MASKRCNN_DEFAULTS, "image_size": side}}
    out = _export_and_publish(model, opts, data, train, val, classes, val_s or train_s, best_val, sources,
                              init_record, run_info, reporter)
    out["images_per_second"] = seen / max(train_seconds, 1e-9)
    return out


def export_instance_onnx(model, example, path: Path, opset: int = 17) -> None:
    """Export the wrapped Mask R-CNN (TorchScript-based exporter; opset >= 11 needed)."""
    import warnings

    import torch

    wrapper = InstanceExport.wrap(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (example,), str(path), input_names=["image"], output_names=["boxes", "labels", "scores", "masks"],
            dynamic_axes={"image": {2: "height", 3: "width"}, "boxes": {0: "n"}, "labels": {0: "n"}, "scores": {0: "n"},
                          "masks": {0: "n", 2: "height", 3: "width"}},
            opset_version=opset, dynamo=False,
        )


def check_instance_onnx(model, path: Path, inputs: Sequence) -> dict[str, float]:
    """Same detections from ONNX Runtime and PyTorch on ``inputs`` (boxes within 1e-2 px, scores 1e-3)."""
    import torch

    from training.export import ExportError, onnx_session

    sess = onnx_session(path)
    wrapper = InstanceExport.wrap(model)
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            ref = [t.numpy() for t in wrapper(x)]
        got = sess.run(None, {"image": x.numpy()})
        if got[0].shape != ref[0].shape:
            raise ExportError(f"{path}: ONNX finds {len(got[0])} detections, PyTorch {len(ref[0])}")
        if len(ref[0]):
            d = [float(np.abs(g.astype(np.float64) - r).max()) for g, r in zip(got, ref)]
            if d[0] > 1e-2 or d[2] > 1e-3 or d[1] > 0 or d[3] > 1e-2:
                raise ExportError(f"{path}: ONNX detections differ from PyTorch's (boxes {d[0]:.2e}, scores {d[2]:.2e})")
            worst = max(worst, d[0])
    return {"max_abs_box_diff": worst, "inputs_checked": len(inputs)}


def _export_and_publish(model, opts, data, train, val, classes, samples, best_val, sources, init_record,
                        run_info, reporter) -> dict[str, Any]:
    import torch

    from training.export import publish, scratch_dir

    name = opts.name or f"{Path(data.project).name}-instance"
    inputs = [torch.from_numpy(np.ascontiguousarray(s.rgb.transpose(2, 0, 1)))[None].float() / 255.0 for s in samples[:2]]
    with scratch_dir() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_instance_onnx(model, inputs[0], onnx_path)
        check = check_instance_onnx(model, onnx_path, inputs)
        manifest = {
            "name": name,
            "version": opts.version or "",
            "task": "instance",
            "classes": [BACKGROUND, *classes],
            "background_class": BACKGROUND,
            "input_size": None,
            # the network normalises inside (torchvision's transform): feed RGB / 255
            "normalization": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
            "output_activation": "none",
            "defaults": {"score_threshold": MASKRCNN_DEFAULTS["box_score_thresh"], "mask_threshold": 0.5},
            "training": {
                "trainer": "training.instance",
                "architecture": f"torchvision MaskRCNN, {run_info['backbone']} FPN backbone",
                "data": {**data.summary(train), "split_seed": opts.seed, "val_fraction": opts.val_fraction,
                         "val_images": len(val)},
                "init": init_record,
                "onnx_check": check,
                "exported_score_floor": EXPORT_SCORE_THRESH,
                **run_info,
            },
            "metrics": {"validation": best_val, "protocol": "COCO mask AP and AP50 (pycocotools COCOeval segm), "
                        "held-out images, detections from score 0.05"},
            "sources": sources,
        }
        info = publish(opts.registry, [onnx_path], manifest)
    reporter.emit("published", name=info.name, version=info.version, path=str(info.path))
    return {"info": info, "metrics": best_val, "manifest": info.manifest.to_json()}
