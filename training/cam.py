"""CAM trainer (003): a U-Net classifier trained on crops around weak clicks.

Training set (003, section 4.1): five jittered crops around every positive click;
negative crops sampled uniformly over the negative annotations so that each class has
as many negatives as positives. A click labels the patch around it, so the crop is that
patch (``training.datasets.click_patch_size``: a quarter of the images' shorter side,
64-320 px; 320 is 003's crop on 5K photos, and on a 480 x 320 CrackForest photo it was
the whole photo, so every crop around a clean click held the crack as well). Positive
clicks come from ``weak_click`` interactions, plus one per crack patch of the accepted
masks of an image that has accepted masks but no positive click; negatives from negative
``weak_click`` s and rejected proposals (and, only when a class has none, from clean
patches of fully labelled images, placed as ``expert_clicks`` places them).

One binary output per class (003 trains one binary classifier per defect type; a crop
labelled for one class says nothing about the others, so the other outputs are masked
out of the loss). AdamW, lr 1e-4, weight decay 1e-2; the best checkpoint by validation
F-measure (crops around the held-out images' clicks), ties to the lower validation loss.

**The classifier has no bias.** The pipeline's CAM is Grad-CAM on the decoder features,
``relu(sum_f w_cf A_f(x))``; the logit is the mean of ``w_c . A(x) + b_c`` over the
pixels, so the CAM leaves the bias out. With a learnt bias the network is free to give
every pixel a large positive ``w_c . A(x)`` and cancel it with a negative ``b_c``: the
CAM is then positive everywhere and, normalised by its maximum and cut at 003's 0.1,
covered 99 % of every image. With ``b_c = 0`` (frozen in training), a clean crop can
only score low by making its pixels' ``w_c . A(x)`` negative, so the CAM (the per-pixel
logit) is zero on clean surface and positive where the pixels say "defect". Clean crops
also teach every one of their pixels directly (a clean patch is clean everywhere): a
per-pixel term penalises any positive CAM inside them (``cam_loss``). After training
the bias is set on whole training photos (``image_bias``) so that the pipeline's
class gate passes photos holding the class; the CAM does not contain it.

**A crop's score is the mean of its top 10 % per-pixel logits** (``topk_logits``;
``topk_fraction``), not their mean over the crop. A crack is 2-5 % of the crop it
crosses; with the mean, a positive crop could only score high by raising the CAM over
a broad band around the crack (the network raised every pixel its receptive field saw
the crack from: bands 10-20 px wide around 2-3 px cracks) or over the asphalt texture
itself. The top-k score asks only the few most defect-like pixels to fire, and in
clean crops it pushes down the worst-scoring ones (hard negatives). The exported
logits stay ``fc(mean_hw(features))`` (the pipeline's class gate, ``image_bias``), and
Grad-CAM of the mean is the per-pixel logit, so the CAM is unchanged in kind.

**The post-processing is picked on held-out masks** (``calibrate_postprocessing``): the
pipeline divided the CAM by its maximum and cut it at 003's 0.1, which assumes clean
surface scores zero. After a few CPU minutes it scores 10-30 % of a crack's peak on
asphalt texture (inspected on CrackForest), and the cut proposed 60-95 % of each photo.
The pipeline now subtracts a noise floor (a quantile of the map, ``floor_quantile``)
before normalising; the floor quantile and the threshold with the best mean IoU on the
validation photos go into the manifest's ``defaults``.

Exported as TorchScript returning ``(logits (N, C), features (N, F, H, W))``; the
published figures are scored through ``CamPipeline`` itself.
"""
from __future__ import annotations

import copy
import dataclasses
import json
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
    any_rank,
    gather_rank_steps,
    start_run,
    wrap_ddp,
)
from training.datasets import (
    Click,
    ImageLabels,
    ProjectData,
    click_patch_size,
    expert_clicks,
    load_project,
    read_rgb,
    split_by_image,
)
from training.encoders.efficientnet_lite import IMAGENET_MEAN, IMAGENET_STD, WEIGHTS_SOURCE
from training.metrics_util import binary_f_measure

CROPS_PER_CLICK = 5
CALIBRATION_SIDE = 1024  # whole photos are brought down to this side for the bias calibration
PIXEL_NEGATIVE_WEIGHT = 1.0
TOPK_FRACTION = 0.1
# post-processing picked on held-out masks (``calibrate_postprocessing``); without any, the default
FLOOR_QUANTILES = (0.0, 0.9, 0.95, 0.98)
THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
DEFAULT_POSTPROCESSING = {"floor_quantile": 0.95, "threshold": 0.1}  # weight of the per-pixel term of clean crops (see the module docstring)


def crop_side(images: Sequence[ImageLabels], asked: Optional[int] = None) -> int:
    """The training crop: ``asked`` (``--input-size``), else the click patch of the median image."""
    if asked:
        return int(asked)
    if not images:
        return click_patch_size((1280, 1280))
    sides = sorted(min(im.size) for im in images)
    mid = sides[len(sides) // 2]
    return click_patch_size((mid, mid))


def _class_mask(im: ImageLabels, cls: str) -> np.ndarray:
    out = np.zeros(im.size, bool)
    for name, mask in im.instances:
        if name == cls:
            out |= mask.to_full()
    return out


def effective_clicks(im: ImageLabels, classes: Sequence[str], patch: int) -> list[Click]:
    """The image's clicks plus those implied by its accepted masks (see the module docstring)."""
    clicks = [c for c in im.clicks if c.class_name in classes]
    have_pos = {c.class_name for c in clicks if c.positive}
    for cls in classes:
        if cls in have_pos or not any(name == cls for name, _ in im.instances):
            continue
        clicks += [dataclasses.replace(c, source="accepted")
                   for c in expert_clicks(_class_mask(im, cls), cls, patch) if c.positive]
    return clicks


def background_clicks(im: ImageLabels, cls: str, patch: int) -> list[Click]:
    """Clean-patch points of a fully labelled image: one per patch whose surroundings hold
    no accepted mask of any class (``expert_clicks`` on the union of the masks)."""
    if not (im.instances or im.done):  # an image with rejections only says nothing of its clean surface
        return []
    occupied = np.zeros(im.size, bool)
    for _, mask in im.instances:
        occupied |= mask.to_full()
    return [dataclasses.replace(c, class_name=cls, source="background")
            for c in expert_clicks(occupied, cls, patch) if not c.positive]


def gather_clicks(images: Sequence[ImageLabels], classes: Sequence[str], patch: int) -> list[tuple[int, Click]]:
    """``(image index, click)`` pairs; background negatives only for classes without negatives."""
    out = [(i, c) for i, im in enumerate(images) for c in effective_clicks(im, classes, patch)]
    for cls in classes:
        n_pos = sum(1 for _, c in out if c.class_name == cls and c.positive)
        if n_pos and not any(c.class_name == cls and not c.positive for _, c in out):
            out += [(i, c) for i, im in enumerate(images) for c in background_clicks(im, cls, patch)]
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

    Positive crops move by up to a quarter of the crop (the clicked point stays well
    inside), negative crops by up to an eighth (what ``expert_clicks`` leaves clean
    around a negative click). Item: ``(image (3, S, S) float32 normalised, target (C,)
    float32, weight (C,) float32)``.
    """

    def __init__(self, rgbs: list[np.ndarray], clicks: list[tuple[int, Click]], classes: Sequence[str],
                 crop: int, seed: int, augment: bool = True, crops_per_click: int = CROPS_PER_CLICK,
                 aug_seed: Optional[int] = None):
        self.rgbs, self.clicks, self.classes = rgbs, clicks, list(classes)
        self.crop, self.augment, self.per_click = crop, augment, crops_per_click
        self.seed = seed
        # the crops drawn depend on (seed, epoch) only, so every rank of a torchrun job holds
        # the same list and the sampler splits it; flips and photometric changes may differ
        self.aug_rng = np.random.default_rng(seed + 1 if aug_seed is None else aug_seed)
        self.items: list[tuple[int, float, float, int, bool]] = []
        self.resample()

    def resample(self, epoch: int = 0) -> None:
        """Draw this epoch's crops: jittered positives, as many negatives per class."""
        self.rng = np.random.default_rng([self.seed, epoch])
        items = []
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
                jitter = (self.crop / 4 if c.positive else self.crop / 8) if self.augment else 0.0
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
            rng = self.aug_rng
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            if rng.random() < 0.5:
                patch = patch[::-1]
            if rng.random() < 0.5:  # defects have no up: right-angle turns too
                patch = patch.transpose(1, 0, 2)
            # brightness / contrast (001's Multiply and ContrastNormalization ranges)
            patch = np.clip((patch - 0.5) * rng.uniform(0.8, 1.2) + 0.5, 0, 1) * rng.uniform(0.8, 1.2)
            patch = np.clip(patch, 0, 1)
        patch = (patch - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
        target = np.zeros(len(self.classes), np.float32)
        weight = np.zeros(len(self.classes), np.float32)
        target[ci] = float(positive)
        weight[ci] = 1.0
        x_t = torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1)))
        return x_t, torch.from_numpy(target), torch.from_numpy(weight)


def topk_logits(feats, fc_weight, fraction: float):
    """``(N, C)``: each crop's score for each class, the mean of its ``fraction`` highest
    per-pixel logits (``fc_weight . A(x)``, the CAM before the relu)."""
    import torch

    pix = torch.einsum("cf,nfhw->nchw", fc_weight, feats).flatten(2)
    k = max(1, round(fraction * pix.shape[-1]))
    return pix.topk(k, dim=-1).values.mean(-1)


def cam_loss(model_out, fc_weight, target, weight, pixel_negative_weight: float = PIXEL_NEGATIVE_WEIGHT,
             topk_fraction: float = 0.0):
    """003's crop classification loss plus the per-pixel term of clean crops.

    ``model_out`` ``(logits (N, C), features (N, F, H, W))``; ``target``/``weight`` ``(N, C)``.
    Classification: binary cross-entropy of each crop's score for the class it was
    labelled for (its logit, or with ``topk_fraction`` the mean of its top per-pixel
    logits: ``topk_logits``). Clean crops: the mean over their pixels of ``relu(w_c . A(x))``, which
    is their CAM: no pixel of clean surface may keep a positive CAM, even when the crop's
    mean is negative. Only the positive part is penalised: pushing clean pixels further
    below zero (a per-pixel cross-entropy) makes a crop with a thin crack, whose pooled
    logit is a mean over mostly clean pixels, unable to score positive.
    """
    import torch
    from torch.nn import functional as F

    logits, feats = model_out
    if topk_fraction > 0:
        logits = topk_logits(feats, fc_weight, topk_fraction)
    cls = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).sum()
    cls = cls / weight.sum().clamp_min(1)
    if pixel_negative_weight <= 0:
        return cls
    neg = weight * (1.0 - target)  # (N, C): crops labelled clean for class c
    if float(neg.sum()) == 0:
        return cls + 0.0 * feats.sum()
    pix = torch.einsum("cf,nfhw->nchw", fc_weight, feats)  # per-pixel logits (bias is zero)
    per_crop = F.relu(pix).mean(dim=(2, 3))  # (N, C)
    return cls + pixel_negative_weight * (per_crop * neg).sum() / neg.sum()


def classification_f(model, dataset: ClickCropDataset, device, batch: int = 8, topk_fraction: float = 0.0) -> dict[str, float]:
    """Mean over classes of the F-measure (beta 1, threshold 0.5), the accuracy and the mean
    binary cross-entropy (``loss``) on ``dataset``."""
    import torch
    from torch.nn import functional as F

    model.eval()
    scores, targets, weights, losses = [], [], [], []
    with torch.no_grad():
        for s in range(0, len(dataset), batch):
            xs, ts, ws = zip(*(dataset[k] for k in range(s, min(len(dataset), s + batch))))
            logits, feats = model(torch.stack(xs).to(device))
            if topk_fraction > 0:
                logits = topk_logits(feats, model.fc.weight, topk_fraction)
            t, w = torch.stack(ts).to(device), torch.stack(ws).to(device)
            losses.append(float((F.binary_cross_entropy_with_logits(logits, t, reduction="none") * w).sum()))
            scores.append(torch.sigmoid(logits).cpu().numpy())
            targets.append(t.cpu().numpy())
            weights.append(w.cpu().numpy())
    if not scores:
        return {"f_measure": 0.0, "accuracy": 0.0, "loss": float("inf"), "crops": 0}
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
    return {"f_measure": float(np.mean(fs)) if fs else 0.0, "accuracy": correct / max(1, total),
            "loss": sum(losses) / max(1.0, float(wt.sum())), "crops": total}


def _better(new: dict, old: Optional[dict]) -> bool:
    """003's selection (highest validation F-measure), ties to the lower validation loss: a
    handful of held-out clicks saturates the F-measure after an epoch or two."""
    if old is None:
        return True
    return (new["f_measure"], -new["loss"]) > (old["f_measure"], -old["loss"])


class _OwnTorchScript:
    """What ``CamPipeline`` asks of the engine's torch runtime, over a file this run has
    just traced (the registry's trust check is for files from elsewhere; this one is ours
    and not yet published)."""

    def __init__(self, device: Any = "cpu"):
        import torch

        self.device = torch.device(device)

    def load_module(self, path: str | Path) -> Any:
        import torch

        return torch.jit.load(str(path), map_location=self.device).eval()


def cam_pipeline(folder: Path) -> Any:
    """``CamPipeline`` over a model folder this run wrote (``model.pt`` + ``manifest.json``), CPU."""
    from inference.pipelines.base import Runtimes
    from inference.pipelines.cam import CamPipeline
    from inference.registry import Manifest, ModelInfo
    from inference.runtime import OnnxRuntime

    info = ModelInfo(manifest=Manifest.read(Path(folder) / "manifest.json"), path=Path(folder))
    return CamPipeline(info, Runtimes(OnnxRuntime("cpu"), _OwnTorchScript("cpu")))  # type: ignore[arg-type]


def score_proposals(propose: Any, images: Sequence[tuple[np.ndarray, np.ndarray]], cls: str) -> dict[str, Any]:
    """How the proposals of one class overlap the truth, per image then averaged.

    ``propose``: RGB -> proposals (``Proposal`` s with ``mask`` and ``class_name``);
    ``images``: ``(rgb, truth (H, W) bool)`` pairs. Returns the mean IoU of the union of
    the class's proposals with the truth, the mean share of the image proposed
    (``coverage``), the images with no proposal, and the same IoU for "all of the image is
    the class" (``all_class_iou``: the trivial baseline).
    """
    ious, cover, base, empty = [], [], [], 0
    for rgb, truth in images:
        pred = np.zeros(truth.shape, bool)
        for p in propose(rgb):
            if p.class_name == cls:
                pred |= p.mask.to_full()
        empty += int(not pred.any())
        union = int((pred | truth).sum())
        ious.append(float((pred & truth).sum()) / union if union else 1.0)
        cover.append(float(pred.mean()))
        base.append(float(truth.mean()))
    n = len(ious)
    return {"iou": float(np.mean(ious)) if n else None, "coverage": float(np.mean(cover)) if n else None,
            "max_coverage": float(np.max(cover)) if n else None, "all_class_iou": float(np.mean(base)) if n else None,
            "images": n, "images_without_proposal": empty, "per_image_iou": [round(v, 4) for v in ious]}


def pipeline_cam_scores(pipe: Any, images: Sequence[ImageLabels], classes: Sequence[str],
                        iterations: Sequence[int] = (0, 2)) -> dict[str, Any]:
    """``score_proposals`` of every class through ``pipe.propose`` (the product's path: Grad-CAM,
    AdvCAM with each number of ``iterations``, threshold, closing, small parts removed) on the
    ``images`` whose accepted masks hold the class."""
    out: dict[str, Any] = {}
    for cls in classes:
        pairs = [(read_rgb(im.path), _class_mask(im, cls)) for im in images
                 if any(n == cls for n, _ in im.instances)]
        if not pairs:
            continue
        out[cls] = {str(it): score_proposals(lambda rgb, it=it: pipe.propose(rgb, params={"iterations": int(it)}),
                                             pairs, cls)
                    for it in iterations}
    return out


def calibrate_postprocessing(pipe: Any, val: Sequence[ImageLabels], train: Sequence[ImageLabels],
                             classes: Sequence[str], max_images: int = 6) -> dict[str, Any]:
    """The pipeline's ``floor_quantile`` and ``threshold`` with the best mean IoU per image
    (``FLOOR_QUANTILES`` x ``THRESHOLDS``, at the pipeline's other defaults) on held-out
    images with masks of the classes, else on training images with masks (their CAMs are
    a little too good, which only matters for the threshold), else ``DEFAULT_POSTPROCESSING``.
    Returns ``{"defaults", "source", "images", "iou"}``."""
    from inference.pipelines.base import maps_to_proposals
    from inference.pipelines.cam import normalise_cam

    def holders(images: Sequence[ImageLabels]) -> list[tuple[ImageLabels, str]]:
        return [(im, c) for im in images for c in classes if any(n == c for n, _ in im.instances)][:max_images]

    source, pairs = "validation", holders(val)
    if not pairs:
        source, pairs = "training", holders(train)
    if not pairs:
        return {"defaults": dict(DEFAULT_POSTPROCESSING), "source": "default", "images": 0, "iou": None}
    p = pipe.params()
    cams = []
    for im, cls in pairs:
        maps, _ = pipe.cam_maps(read_rgb(im.path), {"class_threshold": 0.0, "floor_quantile": 0.0})
        cams.append((maps[list(pipe.manifest.classes).index(cls)], _class_mask(im, cls), cls))
    best: tuple[float, float, float] | None = None
    for q in FLOOR_QUANTILES:
        normed = [normalise_cam(m, q) for m, _, _ in cams]
        for t in THRESHOLDS:
            ious = []
            for m, (_, truth, cls) in zip(normed, cams):
                pred = np.zeros(truth.shape, bool)
                for prop in maps_to_proposals(m[None], (cls,), pipe.info, threshold=t, close_radius=int(p["closing"]),
                                              min_area=int(p["min_area"]), scores={cls: 1.0}):
                    pred |= prop.mask.to_full()
                union = int((pred | truth).sum())
                ious.append(float((pred & truth).sum()) / union if union else 1.0)
            if best is None or float(np.mean(ious)) > best[0]:
                best = (float(np.mean(ious)), q, t)
    assert best is not None
    return {"defaults": {"floor_quantile": best[1], "threshold": best[2]}, "source": source,
            "images": len(pairs), "iou": round(best[0], 4)}


def whole_image_logits(model, images: Sequence[ImageLabels], device) -> np.ndarray:
    """``(len(images), C)``: the classifier's logits of each whole image at its own size,
    without the bias (what the CAM pipeline feeds it: the full photo, ImageNet-normalised)."""
    import torch

    from inference.pipelines.base import normalize_with

    out = []
    model.eval()
    with torch.no_grad():
        for im in images:
            rgb = read_rgb(im.path)
            scale = CALIBRATION_SIDE / max(rgb.shape[:2])
            if scale < 1:  # the pooled logit is a mean over pixels: a smaller copy gives about the same
                rgb = cv2.resize(rgb, (max(8, round(rgb.shape[1] * scale)), max(8, round(rgb.shape[0] * scale))),
                                 interpolation=cv2.INTER_AREA)
            x = torch.from_numpy(normalize_with(rgb, IMAGENET_MEAN, IMAGENET_STD)).to(device)
            _, feats = model(x)
            out.append((feats.mean(dim=(2, 3)) @ model.fc.weight.T)[0].cpu().numpy())
    return np.asarray(out, np.float64).reshape(len(images), -1)


def image_bias(logits: np.ndarray, present: np.ndarray, absent: np.ndarray, margin: float = 0.25) -> float:
    """The bias that makes one class's whole-image probability say whether a photo holds it.

    Training sees crops, where a defect fills more of the picture than in a whole photo
    (a crack is 4 % of an 80 px crop it crosses, 1.6 % of a CrackForest photo), and the
    pooled logit is a mean over pixels: whole photos with cracks scored below 0.5 and
    the pipeline, which makes CAMs only for classes at or above its ``class_threshold``,
    proposed nothing. The bias moves only that decision: the CAM (Grad-CAM over the
    features) does not contain it.

    ``logits``: bias-free whole-image logits of the images; ``present``/``absent``: bool
    masks of the images known to hold / not to hold the class (a positive click or
    accepted mask; only negative clicks, or done without the class). With images on both
    sides, the cut that separates them best (ties: the middle of the widest gap); with
    only holders, low enough that every holder passes by ``margin``; the bias is never
    negative then (it would only hide holders the network already finds).
    """
    pos, neg = logits[present], logits[absent]
    if len(pos) == 0:
        return 0.0
    if len(neg) == 0:
        return max(0.0, margin - float(pos.min()))
    values = np.unique(np.concatenate([pos, neg]))
    cuts = np.concatenate([[values[0] - margin], (values[:-1] + values[1:]) / 2, [values[-1] + margin]])
    best, best_key = 0.0, None
    for cut in cuts:
        acc = 0.5 * (float((pos >= cut).mean()) + float((neg < cut).mean()))
        gap = min(float(np.abs(np.concatenate([pos, neg]) - cut).min()), 1e9)
        key = (acc, gap)
        if best_key is None or key > best_key:
            best, best_key = float(cut), key
    return -best


def calibrate_bias(model, images: Sequence[ImageLabels], classes: Sequence[str], device) -> dict[str, Any]:
    """Set ``model.fc.bias`` per class with ``image_bias`` on ``images``; returns the record."""
    import torch

    if not images:
        return {}
    logits = whole_image_logits(model, images, device)
    record = {}
    bias = torch.zeros(len(classes))
    for ci, cls in enumerate(classes):
        present = np.array([any(c.positive and c.class_name == cls for c in im.clicks)
                            or any(n == cls for n, _ in im.instances) for im in images])
        absent = np.array([not present[k] and (any((not c.positive) and c.class_name == cls for c in im.clicks)
                                               or im.done) for k, im in enumerate(images)])
        b = image_bias(logits[:, ci], present, absent)
        bias[ci] = b
        p = 1 / (1 + np.exp(-(logits[:, ci] + b)))
        record[cls] = {"bias": round(b, 4), "images_with_class": int(present.sum()),
                       "images_without_class": int(absent.sum()),
                       "holders_passing": int((p[present] >= 0.5).sum()),
                       "clean_passing": int((p[absent] >= 0.5).sum())}
    with torch.no_grad():
        model.fc.bias.copy_(bias.to(model.fc.bias.device))
    return record


def train_cam(opts: TrainOptions, reporter: Optional[Reporter] = None, data: Optional[ProjectData] = None) -> dict[str, Any]:
    """Train, pick the best checkpoint by validation F-measure, export TorchScript, publish (task ``cam``).

    ``opts.extra``: ``crops_per_click`` (5), ``pixel_negative_weight`` (1.0; 0 is 003's
    loss alone), ``topk_fraction`` (0.1; 0 scores a crop by its mean logit, 003's GAP),
    ``score_iterations`` (AdvCAM iterations the held-out proposals are scored with,
    default ``(0, 2)``).
    """
    import torch

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
    crop = crop_side(data.images, int(opts.input_size[0]) if opts.input_size else None)
    train_clicks = gather_clicks(train, classes, crop)
    val_clicks = gather_clicks(val, classes, crop)
    reporter.emit("data", train_images=len(train), val_images=len(val), classes=classes, crop=crop,
                  train_clicks=len(train_clicks), val_clicks=len(val_clicks))
    train_rgb = [read_rgb(im.path) for im in train]
    val_rgb = [read_rgb(im.path) for im in val]
    per_click = int(opts.extra.get("crops_per_click", CROPS_PER_CLICK))
    pixel_weight = float(opts.extra.get("pixel_negative_weight", PIXEL_NEGATIVE_WEIGHT))
    topk = float(opts.extra.get("topk_fraction", TOPK_FRACTION))
    # every rank draws the same crops (the sampler splits one list); augmentations differ per rank
    dataset = ClickCropDataset(train_rgb, train_clicks, classes, crop, opts.seed, True, per_click,
                               aug_seed=opts.seed + 1000 * (dist_info.rank + 1))
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
    if model.fc.bias is not None:  # see the module docstring: the CAM must be the per-pixel logit
        with torch.no_grad():
            model.fc.bias.zero_()
        model.fc.bias.requires_grad_(False)
    model.to(device)
    ddp_model = wrap_ddp(model, dist_info, device)
    batch = opts.batch_size or (32 if device.type == "cuda" else 16)
    lr = opts.lr or 1e-4
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=1e-2)
    epochs = opts.epochs or 10
    timer = Timer(opts.minutes)
    best_state, best_val, best_epoch = None, None, -1
    step, seen, epoch, stop, last_loss = 0, 0, 0, False, float("nan")
    while epoch < epochs and not stop:
        epoch += 1
        dataset.resample(epoch)
        loader = make_loader(dataset, batch, True, dist_info, opts.seed + epoch)
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        ddp_model.train()
        losses = []
        for x, t, w in loader:
            x, t, w = x.to(device), t.to(device), w.to(device)
            loss = cam_loss(ddp_model(x), model.fc.weight, t, w, pixel_weight, topk)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            step += 1
            seen += x.shape[0]
            losses.append(float(loss.detach()))
            reporter.emit("step", epoch=epoch, step=step, total=len(loader), loss=losses[-1])
            # every rank must stop at the same step (a rank that stops alone leaves the
            # others waiting in the gradient all-reduce): the budget is agreed on
            if any_rank((opts.max_steps and step >= opts.max_steps) or timer.expired(), dist_info):
                stop = True
                break
        last_loss = float(np.mean(losses)) if losses else last_loss
        val_result = None
        if dist_info.is_main:
            val_result = classification_f(model, val_set if len(val_set) else dataset, device, topk_fraction=topk)
            if _better(val_result, best_val):
                best_state, best_val, best_epoch = copy.deepcopy(model.state_dict()), val_result, epoch
        reporter.emit("epoch", epoch=epoch, loss=last_loss, val=val_result, elapsed_s=round(timer.elapsed, 1))
    train_seconds = timer.elapsed
    ranks = gather_rank_steps(step, seen, dist_info)
    if not dist_info.is_main:
        return {"info": None, "steps": step}
    model.load_state_dict(best_state)
    model.eval().cpu()
    bias_record = calibrate_bias(model, train, classes, torch.device("cpu"))
    reporter.emit("calibrated", classes=bias_record)
    run_info = {"epochs_run": epoch, "steps": step, "crops_seen": seen, "train_seconds": round(train_seconds, 1),
                "final_loss": last_loss, "batch_size": batch, "lr": lr, "weight_decay": 1e-2, "crop": crop,
                "crops_per_click": per_click, "pixel_negative_weight": pixel_weight, "topk_fraction": topk, "device": str(device),
                "encoder": encoder, "best_epoch": best_epoch, "ranks": ranks, "image_bias": bias_record,
                "clicks": {"train": _click_counts(train_clicks), "val": _click_counts(val_clicks)}}
    iterations = tuple(int(i) for i in opts.extra.get("score_iterations", (0, 2)))
    out = _export_and_publish(model, opts, data, train, val, classes, crop, best_val, sources, init_record,
                              run_info, reporter, val_set if len(val_set) else dataset, iterations)
    out["crops_per_second"] = seen / max(train_seconds, 1e-9)
    out["steps"] = step
    return out


def _click_counts(clicks: Sequence[tuple[int, Click]]) -> dict[str, int]:
    return {"positive": sum(1 for _, c in clicks if c.positive), "negative": sum(1 for _, c in clicks if not c.positive)}


def _export_and_publish(model, opts, data, train, val, classes, crop, best_val, sources, init_record,
                        run_info, reporter, check_set, iterations) -> dict[str, Any]:
    import torch

    from inference.registry import Manifest
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
                                "classification head on the decoder (global average pool -> linear; bias held at 0 in "
                                "training, then set on whole training photos: image_bias)",
                "interface": "model(x (N,3,H,W) normalised) -> (logits (N,C), features (N,32,H,W)); "
                             "logits = fc(mean_hw(features)); CAM_c = relu(sum_f fc.weight[c,f] * features[f]), "
                             "the per-pixel logit",
                "data": {**data.summary(train), "split_seed": opts.seed, "val_fraction": opts.val_fraction,
                         "val_images": len(val)},
                "init": init_record,
                "torchscript_check": check,
                **run_info,
            },
            "metrics": {"validation_classification": best_val,
                        "protocol": "F-measure (beta 1, threshold 0.5) on crops centred on held-out clicks (crop "
                                    "score: the mean of its top topk_fraction per-pixel logits, bias-free); "
                                    "proposals of the CAM pipeline (its defaults, AdvCAM iterations as keyed) "
                                    "against held-out accepted masks: per-image IoU of their union, share of the "
                                    "image proposed"},
            "sources": sources,
        }
        manifest["version"] = manifest["version"] or "0"  # the scratch copy needs one; publish fills the real one
        Manifest.from_json(dict(manifest), "manifest")
        (Path(tmp) / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        # the CAM's noise floor and threshold, picked on held-out masks (003 picked its threshold on validation)
        post = calibrate_postprocessing(cam_pipeline(Path(tmp)), val, train, classes)
        reporter.emit("postprocessing", **post)
        manifest["defaults"] = dict(post["defaults"])
        manifest["training"]["postprocessing"] = post
        (Path(tmp) / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        # score what is exported through the pipeline itself, before publishing
        seg: dict[str, Any] = {}
        if any(im.instances for im in val):
            seg = pipeline_cam_scores(cam_pipeline(Path(tmp)), val, classes, iterations)
        manifest["metrics"]["validation_cam_proposals"] = seg
        if manifest["version"] == "0":
            manifest["version"] = opts.version or ""
        info = publish(opts.registry, [pt], manifest)
    reporter.emit("published", name=info.name, version=info.version, path=str(info.path))
    return {"info": info, "metrics": {"classification": best_val, "cam_proposals": seg},
            "manifest": info.manifest.to_json()}
