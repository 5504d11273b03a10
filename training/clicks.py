"""Click-refinement trainer (``specula train PROJECT --task clicks``): RITM's iterative training.

The recipe of Sofiiuk et al., "Reviving Iterative Training with Mask Guidance for
Interactive Segmentation" (2022), on crops around each object (an accepted instance's
connected components; the default model: every mask of ../shared/data):

- a **crop window** around the object with context, chosen by the pipeline's own
  functions (``inference.pipelines.clicks``): the whole image as a first click sees it,
  or the object's box grown by a random expansion and shifted a little, as the zoom-in
  of later clicks sees it; resized to the pipeline's input size (384 by default);
- a **previous mask**: empty, the truth degraded (eroded, dilated, shifted, a piece cut
  out, a blob added, its box), or a real proposal of the image where the data has one;
- **clicks**: with an empty previous mask the first click at the object's centre (the
  maximum of its distance transform) or a random point deep inside, sometimes with a few
  random extra clicks; otherwise a click at the centre of the previous mask's largest
  error (``next_click``);
- **iterations**: 0 to ``max_iterations`` passes without gradient, each feeding the
  prediction back as the previous mask and adding a click at its largest error, then one
  pass with gradient; loss: normalised focal loss (RITM's NFL, gamma 2).

Two designs (``ClickNet``): ``late`` (the default) keeps the ImageNet encoder frozen, so
each crop is encoded once and its maps cached (``training.click_bank``) and only a light
head trains, thousands of steps in half an hour on two CPU cores; ``early`` adds the
click maps beside the stem (RITM's Conv1S) and trains the whole network per sample.

Validation runs the real pipeline (``ClickSession``) over the network in PyTorch on
held-out objects, clicking with the benchmark's rule; the best checkpoint (mean IoU over
clicks 1-5) is exported to ONNX, checked against PyTorch, scored through ONNX Runtime and
published (task ``clicks``).
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import cv2
import numpy as np

from annotation.mask import Mask
from inference.pipelines.base import normalize_with
from inference.pipelines.clicks import (
    DEFAULT_INPUT,
    DEFAULTS,
    ClickSession,
    CropWindow,
    aux_input,
    crop_image,
    crop_mask,
    evaluate,
    next_click,
    summarize,
    window_for_first_click,
    window_for_object,
)
from training.common import Reporter, Timer, TrainOptions, start_run
from training.datasets import ImageLabels, load_project, read_rgb, split_by_image
from training.encoders.efficientnet_lite import IMAGENET_MEAN, IMAGENET_STD, WEIGHTS_SOURCE

MIN_AREA = 50  # objects below this many pixels are not clicked on (the effort benchmark's rule)
CLASS_NAME = "object"  # the model is class-agnostic; the manifest needs one class name


# ------------------------------------------------------------------ data
@dataclass
class ClickImage:
    """An image and its objects (``Mask``s of ``size`` (H, W)); ``proposal``: a model's
    proposal over the image (a real previous mask), when the data has one."""

    path: Path
    size: tuple[int, int]
    objects: list[Mask]
    group: str = ""
    key: str = ""
    proposal: Optional[Mask] = None

    @property
    def split_key(self) -> str:
        return self.key or str(self.path)


@dataclass
class ClickData:
    """Training, validation and test images (test by data set, for the figures)."""

    train: list[ClickImage]
    val: list[ClickImage]
    test: dict[str, list[ClickImage]] = field(default_factory=dict)
    project: str = ""
    excluded_keys: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        def count(images: Sequence[ClickImage]) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for im in images:
                g = out.setdefault(im.group or "project", {"images": 0, "objects": 0, "with_proposal": 0})
                g["images"] += 1
                g["objects"] += len(im.objects)
                g["with_proposal"] += int(im.proposal is not None)
            return out

        return {
            "project": self.project, "train": count(self.train), "val": count(self.val),
            "test": {k: count(v) for k, v in self.test.items()},
            "train_images": len(self.train), "val_images": len(self.val),
            "val_image_keys": [im.key for im in self.val],
            "test_image_keys": sorted(im.key for v in self.test.values() for im in v),
            "excluded_image_keys": sorted(self.excluded_keys),
            "date": time.strftime("%Y-%m-%d"),
            **self.notes,
        }


def objects_of(masks: Iterable[Mask], min_area: int = MIN_AREA) -> list[Mask]:
    """The 8-connected components of ``masks`` with at least ``min_area`` pixels."""
    out: list[Mask] = []
    for m in masks:
        out += [c for c in m.components() if c.area >= min_area]
    return out


def project_images(labels: Sequence[ImageLabels], min_area: int = MIN_AREA) -> list[ClickImage]:
    """A project's images with accepted instances as click images (components as objects)."""
    out = []
    for im in labels:
        objs = objects_of((m for _, m in im.instances), min_area)
        if objs:
            out.append(ClickImage(im.path, im.size, objs, group="", key=im.split_key))
    return out


def project_data(opts: TrainOptions) -> ClickData:
    """Objects of a project split by image (``split_by_image``, ``opts.val_fraction``, seed)."""
    data = load_project(opts.project)
    usable = [im for im in data.images if im.instances]
    if not usable:
        raise RuntimeError(f"{opts.project}: no image has accepted masks; accept or draw some before training")
    train, val = split_by_image(usable, opts.val_fraction, opts.seed)
    return ClickData(project_images(train) or project_images(val), project_images(val), project=str(opts.project))


# ------------------------------------------------------------------ the previous mask, degraded
def _disk(r: int) -> np.ndarray:
    r = max(1, int(r))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def degrade(target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A wrong version of ``target`` ``(S, S)`` bool, as a proposal or an earlier answer is
    wrong: 1-2 of eroded, dilated, shifted, a piece cut out, a blob added; or its box."""
    t = target.astype(np.uint8)
    ys, xs = np.nonzero(t)
    if len(ys) == 0:
        return target.copy()
    extent = max(4.0, float(max(ys.max() - ys.min(), xs.max() - xs.min()) + 1))
    if rng.random() < 0.08:  # a box prompt arrives as a previous mask that fills the box
        out = np.zeros_like(t)
        j = (rng.uniform(-0.05, 0.1, 4) * extent).astype(int)
        out[max(0, ys.min() - j[0]):ys.max() + 1 + j[1], max(0, xs.min() - j[2]):xs.max() + 1 + j[3]] = 1
        return out.astype(bool)
    out = t.copy()
    for op in rng.choice(["erode", "dilate", "shift", "cut", "add"], size=int(rng.integers(1, 3)), replace=False):
        r = int(max(1, rng.uniform(0.02, 0.12) * extent))
        if op == "erode":
            out = cv2.erode(out, _disk(r))
        elif op == "dilate":
            out = cv2.dilate(out, _disk(r))
        elif op == "shift":
            dx, dy = (rng.uniform(-0.08, 0.08, 2) * extent).round().astype(int)
            m = np.float32([[1, 0, dx], [0, 1, dy]])
            out = cv2.warpAffine(out, m, (out.shape[1], out.shape[0]), flags=cv2.INTER_NEAREST)
        else:
            src = np.nonzero(out if op == "cut" else cv2.dilate(t, _disk(max(2, r))) & (1 - t))
            if len(src[0]) == 0:
                continue
            k = int(rng.integers(len(src[0])))
            radius = int(max(2, rng.uniform(0.08, 0.3) * extent))
            axes = (radius, int(max(2, radius * rng.uniform(0.4, 1.0))))
            cv2.ellipse(out, (int(src[1][k]), int(src[0][k])), axes, float(rng.uniform(0, 180)), 0, 360,
                        0 if op == "cut" else 1, -1)
    return out.astype(bool)


# ------------------------------------------------------------------ samples
@dataclass
class Sample:
    """One training object seen through its window (network pixels, ``S x S``)."""

    rgb: Optional[np.ndarray]  # (S, S, 3) uint8; None over cached features
    target: np.ndarray  # (S, S) bool
    previous: np.ndarray  # (S, S) float32 0..1
    positive: list[tuple[float, float]]
    negative: list[tuple[float, float]]
    kind: str


@dataclass
class SamplerSettings:
    size: int = DEFAULT_INPUT
    whole_image: float = 0.3  # share of windows as a first click sees them (whole image)
    expansion: tuple[float, float] = (1.2, 2.0)
    shift: float = 0.12  # window centre jitter, fraction of its side
    previous_empty: float = 0.4
    previous_proposal: float = 0.25  # where the image has a proposal; else degraded truth
    extra_clicks: float = 0.3
    flip: float = 0.5
    group_weights: dict[str, float] = field(default_factory=dict)


class ClickSampler:
    """Random training samples from ``images`` (one object each), reproducible from ``seed``.

    Objects are drawn by group (data set) with ``group_weights`` (missing groups: their
    share of objects), then uniformly within the group. Images are decoded on demand (a
    few milliseconds against a second of network time per batch) with a small cache.
    """

    def __init__(self, images: Sequence[ClickImage], settings: SamplerSettings, seed: int = 0,
                 cache_items: int = 48):
        self.images = [im for im in images if im.objects]
        if not self.images:
            raise RuntimeError("no objects to train the click model on")
        self.s = settings
        self.rng = np.random.default_rng(seed)
        groups: dict[str, list[tuple[int, int]]] = {}
        for i, im in enumerate(self.images):
            for j in range(len(im.objects)):
                groups.setdefault(im.group, []).append((i, j))
        self.groups = groups
        names = sorted(groups)
        total = sum(len(v) for v in groups.values())
        w = np.array([settings.group_weights.get(g, len(groups[g]) / total) for g in names], np.float64)
        self.group_names, self.group_p = names, w / w.sum()
        self._cache: dict[int, np.ndarray] = {}
        self._order: list[int] = []
        self._cache_items = cache_items

    def _rgb(self, i: int) -> np.ndarray:
        if i in self._cache:
            return self._cache[i]
        rgb = read_rgb(self.images[i].path)
        self._cache[i] = rgb
        self._order.append(i)
        while len(self._order) > self._cache_items:
            self._cache.pop(self._order.pop(0), None)
        return rgb

    def window(self, im: ClickImage, obj: Mask) -> tuple[CropWindow, str]:
        s, rng = self.s, self.rng
        if rng.random() < s.whole_image:
            centre = np.array([[(obj.bbox[0] + obj.bbox[2]) / 2.0, (obj.bbox[1] + obj.bbox[3]) / 2.0]])
            return window_for_first_click(im.size, centre, s.size, DEFAULTS["first_click_side"]), "whole"
        exp = float(rng.uniform(*s.expansion))
        shift = tuple(rng.uniform(-s.shift, s.shift, 2))
        return window_for_object(im.size, obj.bbox, s.size, exp, DEFAULTS["min_side_fraction"] * s.size,
                                 shift), "zoom"  # type: ignore[arg-type]

    def crop(self) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray], str]:
        """A random object through a random window: ``(rgb (S, S, 3) uint8, target (S, S)
        bool, the image's proposal for it seen through the window (S, S) float32 or None,
        kind)``, flipped left-right at random."""
        s, rng = self.s, self.rng
        for _ in range(20):
            g = self.group_names[int(rng.choice(len(self.group_names), p=self.group_p))]
            i, j = self.groups[g][int(rng.integers(len(self.groups[g])))]
            im = self.images[i]
            obj = im.objects[j]
            window, view = self.window(im, obj)
            target = crop_mask(obj, window) >= 0.5
            if target.sum() >= 4:
                break
        rgb = crop_image(self._rgb(i), window)
        proposal = None
        if im.proposal is not None:
            # the proposal's parts that touch the object: what a model offered for it
            near = obj.dilate(3)
            parts = [c for c in im.proposal.components() if c.intersection_area(near) > 0]
            proposal = crop_mask(Mask.merge(parts), window) if parts else None
        if rng.random() < s.flip:
            rgb, target = rgb[:, ::-1], target[:, ::-1]
            proposal = None if proposal is None else proposal[:, ::-1]
        proposal = None if proposal is None else np.ascontiguousarray(proposal)
        return np.ascontiguousarray(rgb), np.ascontiguousarray(target), proposal, f"{view}/{im.group}"

    def prompts(self, rgb: Optional[np.ndarray], target: np.ndarray, proposal: Optional[np.ndarray],
                kind: str = "") -> Sample:
        """A sample of this crop: a previous mask (empty, degraded truth or the proposal)
        and the clicks a user would give first (RITM's sampling; module docstring)."""
        s, rng = self.s, self.rng
        previous = np.zeros(target.shape, np.float32)
        prev_kind = "empty"
        if rng.random() >= s.previous_empty:
            prev_kind = "degraded"
            if proposal is not None and rng.random() < s.previous_proposal / (1.0 - s.previous_empty):
                prev_kind, previous = "proposal", proposal.astype(np.float32)
            else:
                previous = degrade(target, rng).astype(np.float32)
        smp = Sample(rgb, target, previous, [], [], f"{kind}/{prev_kind}")
        truth = Mask(0, 0, target, target.shape)
        prev_mask = Mask(0, 0, previous >= 0.5, target.shape)
        if prev_mask.is_empty() or rng.random() < 0.5:
            # a first click: the object's centre (the benchmark's) or a point deep inside it
            c = next_click(None, truth, None if rng.random() < 0.6 else rng)
            if c is not None:
                smp.positive.append((c.x, c.y))
        if not prev_mask.is_empty():
            c = next_click(prev_mask, truth, rng)
            if c is not None:
                (smp.positive if c.positive else smp.negative).append((c.x, c.y))
        if rng.random() < s.extra_clicks:
            self._random_clicks(smp, rng)
        return smp

    def sample(self) -> Sample:
        return self.prompts(*self.crop())

    @staticmethod
    def _random_clicks(smp: Sample, rng: np.random.Generator) -> None:
        """1-2 more clicks anywhere sensible: inside the object, or in a band around it."""
        t = smp.target.astype(np.uint8)
        band = cv2.dilate(t, _disk(max(3, int(0.05 * t.shape[0])))) & (1 - t)
        for _ in range(int(rng.integers(1, 3))):
            src = np.nonzero(t if rng.random() < 0.5 else band)
            if len(src[0]) == 0:
                continue
            k = int(rng.integers(len(src[0])))
            pt = (float(src[1][k]), float(src[0][k]))
            (smp.positive if t[src[0][k], src[1][k]] else smp.negative).append(pt)


def batch_arrays(samples: Sequence[Sample], radius: float, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image ``(B, 3, S, S)``, aux ``(B, 3, S, S)``, target ``(B, 1, S, S)``) float32
    (image None when the samples carry no pixels: cached features stand for them)."""
    size = samples[0].target.shape[0]
    image = None if samples[0].rgb is None else np.concatenate([normalize_with(s.rgb, mean, std) for s in samples])
    aux = np.concatenate([aux_input(s.previous, np.array(s.positive).reshape(-1, 2),
                                    np.array(s.negative).reshape(-1, 2), size, radius) for s in samples])
    target = np.stack([s.target for s in samples])[:, None].astype(np.float32)
    return image, aux, target


# ------------------------------------------------------------------ loss
def normalized_focal_loss(logits, target, gamma: float = 2.0, eps: float = 1e-8):
    """RITM's NFL: binary cross-entropy weighted by ``(1 - p_t)^gamma``, the weights of each
    image rescaled to mean 1 (so easy pixels stop dominating without the loss vanishing)."""
    import torch
    from torch.nn import functional as F

    p = torch.sigmoid(logits)
    pt = torch.where(target > 0.5, p, 1 - p)
    beta = (1 - pt).pow(gamma)
    with torch.no_grad():
        norm = beta.flatten(1).mean(1).clamp_min(eps).view(-1, 1, 1, 1)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (beta / norm * ce).mean()


# ------------------------------------------------------------------ PyTorch behind the pipeline
class TorchClickModel:
    """A ``ClickNet`` in PyTorch behind the pipeline's ``ClickModel`` interface (validation)."""

    def __init__(self, net, device=None):
        self.net = net
        self.device = device

    def encode(self, image: np.ndarray) -> tuple:
        import torch

        with torch.no_grad():
            return tuple(self.net.encode(torch.from_numpy(image).to(self.device)))

    def head(self, features: tuple, aux: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.net.head(features, torch.from_numpy(aux).to(self.device)).float().cpu().numpy()


def load_items(images: Sequence[ClickImage]) -> list[tuple[np.ndarray, list[Mask]]]:
    """``(rgb, objects)`` per image, decoded once (validation repeats them every round)."""
    return [(read_rgb(im.path), im.objects) for im in images]


def pick_objects(images: Sequence[ClickImage], per_group: int, seed: int) -> list[ClickImage]:
    """At most ``per_group`` objects per group, spread over as many images as possible."""
    rng = np.random.default_rng(seed)
    out: list[ClickImage] = []
    by_group: dict[str, list[ClickImage]] = {}
    for im in images:
        by_group.setdefault(im.group, []).append(im)
    for g in sorted(by_group):
        ims = list(by_group[g])
        rng.shuffle(ims)  # type: ignore[arg-type]
        left = per_group
        for im in ims:
            if left <= 0:
                break
            objs = sorted(im.objects, key=lambda m: -m.area)[:min(2, left)]
            out.append(ClickImage(im.path, im.size, objs, im.group, im.key))
            left -= len(objs)
    return out


def score_session(session: ClickSession, items: Sequence[tuple[np.ndarray, list[Mask]]],
                  max_clicks: int) -> dict[str, float]:
    """The benchmark's figures on ``items`` plus ``score``: mean IoU over clicks 1-5."""
    trajs = evaluate(session, items, max_clicks=max_clicks)
    out = summarize(trajs, max_clicks)
    out["score"] = float(np.mean([np.mean([t.iou_at(k) for k in range(1, 6)]) for t in trajs])) if trajs else 0.0
    return out


# ------------------------------------------------------------------ training
def _set_lr(optim, base: float, progress: float, warmup: float = 0.05) -> None:
    """Linear warm-up, cosine decay to 1 %; each group keeps its ``lr_mult``."""
    if progress < warmup:
        f = max(progress / warmup, 0.02)
    else:
        q = (progress - warmup) / max(1e-9, 1 - warmup)
        f = 0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * min(1.0, q)))
    for g in optim.param_groups:
        g["lr"] = base * f * g.get("lr_mult", 1.0)


def train_clicks(opts: TrainOptions, reporter: Optional[Reporter] = None, data: Optional[ClickData] = None
                 ) -> dict[str, Any]:
    """Train a click-refinement model, validate through the pipeline, export and publish.

    ``data`` overrides reading ``opts.project`` (the default model's script gives the
    shared data sets). ``opts.extra``: ``fusion`` (``late``, default: frozen encoder, cached features; or ``early``),
    ``max_iterations`` (no-gradient passes, 3), ``val_minutes`` (between validations, 10),
    ``val_per_group`` (validation objects per data set, 24), ``val_clicks`` (10),
    ``test_clicks`` (20), ``score_test`` (True: score the exported model on ``data.test``),
    ``encoder_lr_mult`` (0.25), ``group_weights``, ``write_local``, ``training_notes``,
    ``save_state`` (a path: the kept weights as a state dict, for ``--init``). Returns ``{"info", "path", "manifest", ...}``.
    """
    import torch

    reporter, dist_info, device = start_run(opts, reporter)
    if dist_info.distributed:
        raise RuntimeError("the click trainer runs on one process (its samples are built between passes); "
                           "start it without torchrun")
    data = data or project_data(opts)
    size = int((opts.input_size or (DEFAULT_INPUT, DEFAULT_INPUT))[0])
    if size % 32:
        raise ValueError(f"--input-size {size}: the click model needs a multiple of 32")
    extra = opts.extra
    fusion = str(extra.get("fusion", "late"))
    max_iter = int(extra.get("max_iterations", 3))
    radius = float(DEFAULTS["disk_radius"])
    settings = SamplerSettings(size=size, group_weights=dict(extra.get("group_weights", {})))
    sampler = ClickSampler(data.train, settings, seed=opts.seed)
    val_images = pick_objects(data.val, int(extra.get("val_per_group", 24)), opts.seed) if data.val else []
    val_items = load_items(val_images)
    reporter.emit("data", train_images=len(data.train), train_objects=sum(len(i.objects) for i in data.train),
                  val_images=len(val_images), val_objects=sum(len(i.objects) for i in val_images),
                  input_size=[size, size], fusion=fusion)

    from training.common import apply_init
    from training.models import ClickNet

    pretrained = opts.init is None
    model = ClickNet(fusion, pretrained=pretrained)
    sources = [f"encoder: EfficientNet-Lite0 ImageNet, {WEIGHTS_SOURCE}"] if pretrained else []
    init_record = None
    if opts.init is not None:
        init_record = apply_init(model, opts.init)
        sources.append(f"init: {opts.init} (sha256 {init_record['sha256_16']}..., {init_record['loaded']} tensors)")
    model.to(device)
    channels_last = device.type == "cpu"  # 2x faster depthwise convolutions on the CPU (semantic trainer)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    enc_params = list(model.encoder.parameters())
    enc_ids = {id(p) for p in enc_params}
    rest = [p for p in model.parameters() if id(p) not in enc_ids]
    lr = opts.lr or (3e-3 if fusion == "late" else 1e-3)
    enc_mult = 0.0 if fusion == "late" else float(extra.get("encoder_lr_mult", 0.25))
    groups = [{"params": rest, "lr_mult": 1.0}]
    if fusion == "late":
        for p in enc_params:  # frozen: its maps are cached (training.click_bank)
            p.requires_grad_(False)
    else:
        groups.insert(0, {"params": enc_params, "lr_mult": enc_mult})
    optim = torch.optim.AdamW(groups, lr=lr, weight_decay=1e-4)
    batch = opts.batch_size or (16 if device.type == "cuda" else 8)
    steps_total = opts.max_steps or int(extra.get("steps", 100000))
    timer = Timer(opts.minutes)
    bank = None
    refresh_every = int(extra.get("bank_refresh_every", 8))
    if fusion == "late":
        from training.click_bank import FeatureBank

        bank = FeatureBank(model, sampler, device)
        bank_size = int(extra.get("bank_size", 1200))
        if opts.max_steps:  # never more crops than the steps will draw
            bank_size = max(1, min(bank_size, opts.max_steps * batch))
        share = float(extra.get("bank_share", 0.3))  # at most this share of the time budget
        deadline = time.monotonic() + share * timer.limit if timer.limit else None
        bank.fill(bank_size, deadline, lambda n: reporter.emit("bank", crops=n, of=bank_size)
                  if n % 64 == 0 else None)
        reporter.emit("bank", crops=len(bank.items), encode_seconds=round(bank.encode_seconds, 1))
    val_every_s = float(extra.get("val_minutes", 10.0)) * 60.0
    val_clicks = int(extra.get("val_clicks", 10))
    _set_lr(optim, lr, 0.0)

    def to_t(a: np.ndarray):
        return torch.from_numpy(a).to(device).contiguous(memory_format=fmt)

    def validate() -> dict[str, float]:
        model.eval()
        session = ClickSession(TorchClickModel(model, device), size)
        out = score_session(session, val_items, val_clicks)
        model.train()
        return out

    best_state, best_val, best_step = None, None, 0
    curve: list[dict[str, Any]] = []
    step, seen, losses, last_val_t = 0, 0, [], 0.0
    iter_counts = np.zeros(max_iter + 1, int)
    model.train()
    while step < steps_total and not timer.expired():
        if bank is not None:
            if step and refresh_every and step % refresh_every == 0:
                bank.refresh()
            feats, samples = bank.batch(batch)
            feats = tuple(f.contiguous(memory_format=fmt) for f in feats)
            _, aux, target = batch_arrays(samples, radius)
        else:
            samples = [sampler.sample() for _ in range(batch)]
            image, aux, target = batch_arrays(samples, radius)
            feats = model.encode(to_t(image))
        n_iter = int(sampler.rng.integers(0, max_iter + 1))
        iter_counts[n_iter] += 1
        if n_iter:
            # RITM: earlier answers come from the network itself, without gradient, in
            # eval mode (as it will run), each adding a click at its largest error
            model.eval()
            with torch.no_grad():
                frozen = tuple(f.detach() for f in feats)
                for _ in range(n_iter):
                    pred = torch.sigmoid(model.head(frozen, to_t(aux))).cpu().numpy()[:, 0] > 0.5
                    for k, s in enumerate(samples):
                        c = next_click(Mask(0, 0, pred[k], pred[k].shape), Mask(0, 0, s.target, s.target.shape),
                                       sampler.rng)
                        s.previous = pred[k].astype(np.float32)
                        if c is not None:
                            (s.positive if c.positive else s.negative).append((c.x, c.y))
                    _, aux, _ = batch_arrays(samples, radius)
            model.train()
        logits = model.head(feats, to_t(aux))
        loss = normalized_focal_loss(logits, torch.from_numpy(target).to(device))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        step += 1
        seen += batch
        progress = min(1.0, max(step / steps_total, timer.elapsed / timer.limit if timer.limit else 0.0))
        _set_lr(optim, lr, progress)
        losses.append(float(loss.detach()))
        reporter.emit("step", epoch=len(curve) + 1, step=step, total=None, loss=losses[-1])
        done = step >= steps_total or timer.expired()
        if val_items and (timer.elapsed - last_val_t >= val_every_s or done):
            last_val_t = timer.elapsed
            t0 = time.monotonic()
            val = validate()
            mean_loss = float(np.mean(losses)) if losses else float("nan")
            losses = []
            curve.append({"step": step, "samples": seen, "loss": round(mean_loss, 5),
                          "elapsed_s": round(timer.elapsed, 1), "val_seconds": round(time.monotonic() - t0, 1),
                          **{k: round(v, 4) for k, v in val.items()}})
            if best_val is None or val["score"] > best_val["score"]:
                best_state, best_val, best_step = copy.deepcopy(model.state_dict()), val, step
            reporter.emit("epoch", epoch=len(curve), loss=mean_loss,
                          val={k: val[k] for k in ("score", "IoU@1", "IoU@5", "NoC@90") if k in val},
                          elapsed_s=round(timer.elapsed, 1), samples=seen)
    train_seconds = timer.elapsed
    if best_state is not None:
        model.load_state_dict(best_state)
    if extra.get("save_state"):  # the kept weights as a plain state dict, to go on from with --init
        torch.save(model.state_dict(), str(extra["save_state"]))
    model.eval()
    model.cpu().to(memory_format=torch.contiguous_format)
    run_info = {
        "steps": step, "samples_seen": seen, "train_seconds": round(train_seconds, 1),
        "samples_per_second": round(seen / max(train_seconds, 1e-9), 3), "batch_size": batch, "lr": lr,
        "encoder_lr_mult": enc_mult, "device": str(device), "best_step": best_step,
        "iterations_histogram": iter_counts.tolist(), "validation_curve": curve,
        **({"feature_bank": {"crops_encoded": bank.encoded, "held": len(bank.items),
                             "encode_seconds": round(bank.encode_seconds, 1), "refresh_every_steps": refresh_every}}
           if bank is not None else {}),
        "schedule": "AdamW, linear warm-up 5 %, cosine decay to 1 % (by steps or the time budget)",
        "recipe": ("RITM iterative training: 0-%d passes without gradient feeding the prediction back and adding a "
                   "click at its largest error, then one with; previous masks empty %.0f %%, degraded truth or a "
                   "real proposal otherwise; normalised focal loss" % (max_iter, settings.previous_empty * 100)),
    }
    return export_and_publish(model, opts, data, size, fusion, best_val, sources, init_record, run_info, reporter)


# ------------------------------------------------------------------ export
def export_click_onnx(model, folder: Path, size: int, opset: int = 17) -> list[Path]:
    """Write the network's ONNX file(s) into ``folder``: ``model.onnx`` (early fusion:
    ``image``, ``aux`` -> ``logits``) or ``encoder.onnx`` (``image`` -> ``f2``, ``f4``,
    ``f8``, ``f16``, ``f32``) + ``decoder.onnx`` (those and ``aux`` -> ``logits``). Batch, height and
    width stay dynamic."""
    import torch

    from training.models import ClickEncoder, ClickHead

    model.eval()
    image = torch.zeros(1, 3, size, size)
    aux = torch.zeros(1, 3, size, size)
    folder = Path(folder)
    axes = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad():
        if model.fusion == "early":
            path = folder / "model.onnx"
            torch.onnx.export(model, (image, aux), str(path), input_names=["image", "aux"], output_names=["logits"],
                              dynamic_axes={"image": axes, "aux": axes, "logits": axes}, opset_version=opset,
                              dynamo=False)
            return [path]
        enc, dec = folder / "encoder.onnx", folder / "decoder.onnx"
        names = ["f2", "f4", "f8", "f16", "f32"]
        torch.onnx.export(ClickEncoder(model).eval(), (image,), str(enc), input_names=["image"], output_names=names,
                          dynamic_axes={n: axes for n in ["image", *names]}, opset_version=opset, dynamo=False)
        feats = tuple(model.encode(image))
        torch.onnx.export(ClickHead(model).eval(), (*feats, aux), str(dec), input_names=[*names, "aux"],
                          output_names=["logits"], dynamic_axes={n: axes for n in [*names, "aux", "logits"]},
                          opset_version=opset, dynamo=False)
        model.eval()
        return [enc, dec]


def check_click_onnx(model, folder: Path, inputs: Sequence[tuple[np.ndarray, np.ndarray]], atol: float = 1e-3
                     ) -> dict[str, float]:
    """Run ``(image, aux)`` pairs through PyTorch and through the exported file(s) in ONNX
    Runtime (the pipeline's ``OnnxClickModel``); raise ``ExportError`` beyond ``atol``
    (relative to the logits' scale)."""
    import torch

    from inference.pipelines.clicks import OnnxClickModel
    from training.export import ExportError

    onnx_model = OnnxClickModel(folder)
    worst, scale = 0.0, 1.0
    model.eval()
    for image, aux in inputs:
        with torch.no_grad():
            ref = model(torch.from_numpy(image), torch.from_numpy(aux)).numpy()
        got = onnx_model.head(onnx_model.encode(image), aux)
        if got.shape != ref.shape:
            raise ExportError(f"{folder}: ONNX logits {got.shape} differ in shape from PyTorch's {ref.shape}")
        scale = max(scale, float(np.abs(ref).max()))
        worst = max(worst, float(np.abs(got - ref).max()))
    if worst > atol * scale:
        raise ExportError(f"{folder}: ONNX logits differ from PyTorch's by up to {worst:.2e} (tolerance {atol * scale:.2e})")
    return {"max_abs_diff": worst, "logit_scale": scale, "inputs_checked": len(inputs)}


def score_test_sets(folder: Path, test: dict[str, list[ClickImage]], max_clicks: int = 20,
                    reporter: Optional[Reporter] = None) -> dict[str, dict[str, float]]:
    """The benchmark's figures of an exported model folder on each test set (ONNX Runtime,
    the pipeline itself)."""
    out = {}
    for name, images in sorted(test.items()):
        session = ClickSession.from_folder(folder)
        trajs = evaluate(session, [(read_rgb(im.path), im.objects) for im in images], max_clicks=max_clicks)
        out[name] = {k: round(v, 4) for k, v in summarize(trajs, max_clicks).items()}
        if reporter:
            reporter.emit("test", dataset=name, **out[name])
    return out


def export_and_publish(model, opts: TrainOptions, data: ClickData, size: int, fusion: str, best_val, sources,
                       init_record, run_info: dict, reporter: Reporter) -> dict[str, Any]:
    """Export, check, score on the test sets through ONNX Runtime, write the manifest and
    publish (or write into ``opts.extra["write_local"]``)."""
    from inference.registry import Manifest
    from training.export import publish, scratch_dir, write_local

    name = opts.name or f"{Path(str(data.project or opts.project)).name}-clicks"
    sampler = ClickSampler(data.val or data.train, SamplerSettings(size=size), seed=opts.seed + 1)
    check_inputs = [batch_arrays([sampler.sample()], DEFAULTS["disk_radius"])[:2] for _ in range(2)]
    with scratch_dir() as tmp:
        files = export_click_onnx(model, Path(tmp), size)
        check = check_click_onnx(model, Path(tmp), check_inputs)
        manifest: dict[str, Any] = {
            "name": name, "version": opts.version or "0", "task": "clicks", "classes": [CLASS_NAME],
            "input_size": [size, size],
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "output_activation": "sigmoid",
            "defaults": dict(DEFAULTS),
            "training": {
                "trainer": "training.clicks",
                "architecture": ("EfficientNet-Lite0 + FPN; click maps (previous mask, positive and negative "
                                 "disks) " + ("added to the stem through a zero-initialised convolution (RITM "
                                              "Conv1S) and again at the stride-2 stage; one network per click"
                                              if fusion == "early" else
                                              "enter a light head (no FPN) over the frozen ImageNet encoder's "
                                              "maps, computed once per crop (encoder.onnx) and cached in "
                                              "training")),
                "fusion": fusion,
                "data": data.summary(),
                "init": init_record,
                "onnx_check": check,
                **run_info,
                **opts.extra.get("training_notes", {}),
            },
            "metrics": {"validation": best_val or {},
                        "protocol": ("NoC@85/90: mean clicks until the IoU with the object reaches 85 / 90 % "
                                     "(objects not reached count the maximum); IoU@k: mean IoU after k clicks; "
                                     "clicks at the centre of the largest error region (RITM), the previous "
                                     "answer fed back; objects: 8-connected components of at least 50 px"),
                        "validation_clicks": int(opts.extra.get("val_clicks", 10))},
            "sources": sources or ["random initialisation"],
        }
        Manifest.from_json(dict(manifest), "manifest")
        (Path(tmp) / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if data.test and opts.extra.get("score_test", True):
            test_clicks = int(opts.extra.get("test_clicks", 20))
            manifest["metrics"]["test"] = score_test_sets(Path(tmp), data.test, test_clicks, reporter)
            manifest["metrics"]["test_clicks"] = test_clicks
        if opts.extra.get("write_local"):
            manifest["version"] = opts.version or "1"
            manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            folder = write_local(Path(opts.extra["write_local"]), files, manifest)
            reporter.emit("published", name=name, version=manifest["version"], path=str(folder))
            return {"info": None, "path": folder, "manifest": manifest, "validation": best_val}
        manifest["version"] = opts.version or ""
        info = publish(opts.registry, files, manifest)
    reporter.emit("published", name=info.name, version=info.version, path=str(info.path))
    return {"info": info, "path": info.path, "manifest": info.manifest.to_json(), "validation": best_val}
