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
    any_rank,
    apply_init,
    gather_rank_steps,
    rank_indices,
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
    rng = np.random.default_rng(opts.seed + dist_info.rank)  # augmentations only: they may differ per rank
    timer = Timer(opts.minutes)
    best_state, best_val, best_epoch = None, None, -1
    step, seen, epoch, stop, last_loss = 0, 0, 0, False, float("nan")
    while epoch < epochs and not stop:
        epoch += 1
        for g in optim.param_groups:  # stepped LR (001): divide by 10 for the last third
            g["lr"] = lr if epoch <= max(1, (2 * epochs) // 3) else lr / 10
        # one permutation for all ranks (seeded by the run and the epoch, not the rank), padded
        # and dealt out as DistributedSampler does: every rank takes the same number of steps
        order = rank_indices(len(train_s), dist_info, opts.seed * 1000 + epoch)
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
            # every rank must stop at the same step (one stopping alone leaves the others
            # waiting in the gradient all-reduce): the budget is agreed on
            if any_rank((opts.max_steps and step >= opts.max_steps) or timer.expired(), dist_info):
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
    ranks = gather_rank_steps(step, seen, dist_info)
    if not dist_info.is_main:
        return {"info": None, "steps": step}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval().cpu()
    model.roi_heads.score_thresh = EXPORT_SCORE_THRESH
    run_info = {"epochs_run": epoch, "steps": step, "images_seen": seen, "train_seconds": round(train_seconds, 1),
                "final_loss": last_loss, "batch_size": batch, "lr": lr, "lr_schedule": "stepped: /10 after 2/3 of epochs",
                "optimizer": "SGD momentum 0.9, weight decay 1e-4", "device": str(device), "backbone": backbone,
                "best_epoch": best_epoch, "config": {**MASKRCNN_DEFAULTS, "image_size": side}, "ranks": ranks}
    out = _export_and_publish(model, opts, data, train, val, classes, val_s or train_s, best_val, sources,
                              init_record, run_info, reporter)
    out["images_per_second"] = seen / max(train_seconds, 1e-9)
    out["steps"] = step
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


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, 4)`` and ``(M, 4)`` xyxy boxes -> ``(N, M)`` IoU."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_detections(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], *, min_iou: float = 0.9,
                     score_tol: float = 1e-3) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of two detection sets ``(boxes, labels, scores, ...)``.

    In order of decreasing reference score, each reference detection takes the
    unmatched detection of the other set with the same label, a box IoU of at least
    ``min_iou`` and a score within ``score_tol``, the highest IoU first. Detections are
    matched by what they are, not where they stand in the list: two detections whose
    scores differ in the sixth decimal swap places between ONNX Runtime and PyTorch.
    """
    rb, rl, rs = (np.asarray(v) for v in ref[:3])
    gb, gl, gs = (np.asarray(v) for v in got[:3])
    if len(rs) == 0 or len(gs) == 0:
        return []
    ious = box_iou_matrix(rb, gb)
    ok = (ious >= min_iou) & (rl.reshape(-1)[:, None] == gl.reshape(-1)[None, :]) & (
        np.abs(rs.reshape(-1)[:, None].astype(np.float64) - gs.reshape(-1)[None, :]) < score_tol)
    pairs, taken = [], np.zeros(len(gs), bool)
    for i in np.argsort(-rs.reshape(-1), kind="stable"):
        cand = np.flatnonzero(ok[i] & ~taken)
        if len(cand):
            j = int(cand[np.argmax(ious[i, cand])])
            taken[j] = True
            pairs.append((int(i), j))
    return pairs


def _borderline(k: int, dets: Sequence[np.ndarray], other: Sequence[np.ndarray], *, floor: float, limit: int,
                score_tol: float, nms_iou: float) -> bool:
    """Whether an unmatched detection ``k`` of ``dets`` may be missing from ``other`` for a
    reason that is not a wrong export: its score is within ``score_tol`` of the score
    floor, or of the last score kept when the list is cut at ``limit``, or ``other`` holds
    a detection of its class with a score within ``score_tol`` overlapping it beyond the
    NMS threshold (a near tie that non-maximum suppression settled the other way)."""
    boxes, labels, scores = (np.asarray(v) for v in dets[:3])
    s = float(scores.reshape(-1)[k])
    if s - floor < score_tol:
        return True
    if len(scores) >= limit and s - float(scores.min()) < score_tol:
        return True
    ob, ol, os_ = (np.asarray(v) for v in other[:3])
    if len(os_) == 0:
        return False
    near = (ol.reshape(-1) == labels.reshape(-1)[k]) & (np.abs(os_.reshape(-1) - s) < score_tol)
    return bool((box_iou_matrix(boxes[k : k + 1], ob)[0][near] > nms_iou).any())


MASK_UNDECIDED = 0.05  # mask probabilities within this of 0.5 may fall either way between runtimes


def compare_detections(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], *, floor: float = EXPORT_SCORE_THRESH,
                       limit: int = 100, min_iou: float = 0.9, score_tol: float = 1e-3, nms_iou: float = 0.5,
                       mask_iou: float = 0.9) -> dict[str, Any]:
    """Compare PyTorch's and ONNX Runtime's detections ``(boxes, labels, scores, masks)`` of one image.

    Detections are paired with ``match_detections``; the masks of every pair are compared
    (IoU of the masks cut at 0.5, and the largest probability difference). Returns the
    counts, the worst box IoU / score / mask figures of the pairs, and ``problems``: one
    line per unexplained difference (an unpaired detection that is not ``_borderline``, a
    pair whose masks overlap less than ``mask_iou``). An empty ``problems`` means the
    export does what the network does.
    """
    pairs = match_detections(ref, got, min_iou=min_iou, score_tol=score_tol)
    problems: list[str] = []
    paired_r = {i for i, _ in pairs}
    paired_g = {j for _, j in pairs}
    for name, dets, other, paired in (("PyTorch", ref, got, paired_r), ("ONNX", got, ref, paired_g)):
        for k in range(len(np.asarray(dets[2]).reshape(-1))):
            if k in paired:
                continue
            if not _borderline(k, dets, other, floor=floor, limit=limit, score_tol=score_tol, nms_iou=nms_iou):
                box = np.round(np.asarray(dets[0])[k], 1).tolist()
                problems.append(f"{name} detection {k} (label {int(np.asarray(dets[1]).reshape(-1)[k])}, "
                                f"score {float(np.asarray(dets[2]).reshape(-1)[k]):.4f}, box {box}) has no counterpart")
    worst_box, worst_score, worst_mask_iou, worst_mask_diff = 1.0, 0.0, 1.0, 0.0
    rb, gb = np.asarray(ref[0]), np.asarray(got[0])
    for i, j in pairs:
        worst_box = min(worst_box, float(box_iou_matrix(rb[i : i + 1], gb[j : j + 1])[0, 0]))
        worst_score = max(worst_score, abs(float(np.asarray(ref[2]).reshape(-1)[i]) - float(np.asarray(got[2]).reshape(-1)[j])))
        if len(ref) > 3 and len(got) > 3:
            mr = np.asarray(ref[3][i], np.float32)
            mg = np.asarray(got[3][j], np.float32)
            if mr.shape != mg.shape:
                problems.append(f"mask of pair ({i}, {j}) has shape {mg.shape} in ONNX, {mr.shape} in PyTorch")
                continue
            worst_mask_diff = max(worst_mask_diff, float(np.abs(mr - mg).max()) if mr.size else 0.0)
            a, b = mr > 0.5, mg > 0.5
            union = int((a | b).sum())
            m_iou = float((a & b).sum()) / union if union else 1.0
            worst_mask_iou = min(worst_mask_iou, m_iou)
            # a barely trained head leaves many pixels at about 0.5, where float rounding
            # flips them: a disagreement counts only where PyTorch's probability is decided
            decided = np.abs(mr - 0.5) > MASK_UNDECIDED
            if m_iou < mask_iou and bool(((a != b) & decided).any()):
                problems.append(f"masks of pair ({i}, {j}) overlap by IoU {m_iou:.3f} only")
    return {"pytorch": int(len(np.asarray(ref[2]).reshape(-1))), "onnx": int(len(np.asarray(got[2]).reshape(-1))),
            "paired": len(pairs), "min_box_iou": worst_box, "max_score_diff": worst_score,
            "min_mask_iou": worst_mask_iou, "max_mask_prob_diff": worst_mask_diff, "problems": problems}


def check_instance_onnx(model, path: Path, inputs: Sequence, *, floor: float = EXPORT_SCORE_THRESH) -> dict[str, Any]:
    """Same detections from ONNX Runtime and PyTorch on ``inputs`` (``compare_detections``:
    paired by label, box IoU >= 0.9 and score within 1e-3, masks compared per pair).

    Raises ``ExportError`` naming the first unexplained differences; returns the figures
    for the manifest.
    """
    import torch

    from training.export import ExportError, onnx_session

    sess = onnx_session(path)
    wrapper = InstanceExport.wrap(model)
    limit = int(getattr(getattr(model, "roi_heads", None), "detections_per_img", 100))
    per_input = []
    for x in inputs:
        with torch.no_grad():
            ref = [t.numpy() for t in wrapper(x)]
        got = sess.run(None, {"image": x.numpy()})
        result = compare_detections(ref, got, floor=floor, limit=limit)
        if result["problems"]:
            raise ExportError(f"{path}: ONNX detections differ from PyTorch's on a {tuple(x.shape[-2:])} image: "
                              + "; ".join(result["problems"][:3])
                              + (f" (and {len(result['problems']) - 3} more)" if len(result["problems"]) > 3 else ""))
        per_input.append(result)
    return {
        "inputs_checked": len(inputs),
        "rule": "detections paired greedily by label, box IoU >= 0.9 and score within 1e-3; masks per pair "
                "(IoU >= 0.9 at 0.5, or differing only where PyTorch gives 0.45-0.55); unpaired only at the "
                "score floor, the detection limit or an NMS near tie",
        "detections_pytorch": [r["pytorch"] for r in per_input],
        "detections_onnx": [r["onnx"] for r in per_input],
        "paired": [r["paired"] for r in per_input],
        "min_box_iou": min((r["min_box_iou"] for r in per_input), default=1.0),
        "max_score_diff": max((r["max_score_diff"] for r in per_input), default=0.0),
        "min_mask_iou": min((r["min_mask_iou"] for r in per_input), default=1.0),
    }


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
