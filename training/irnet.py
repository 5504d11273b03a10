"""IRNet trainer (seed 002, section 4): a class boundary map and a displacement field
learnt from the inter-pixel relations of a published CAM model's CAMs.

Input: a CAM model of the registry (``--cam-model NAME[@VERSION]``, else the active
version of ``<project>-cam``, else the newest CAM model whose classes are all in the
project's palette). Its network is rebuilt from the TorchScript file's weights (a
``CamNet``; the file is loaded through the registry's trust check) and kept **frozen**,
as 002 freezes its backbone.

Relations (002, section 4.2): the CAM of every class an image is known to hold (a
positive click or an accepted mask: the weak labels; an image known to hold none is all
background) is the per-pixel logit ``relu(fc.weight . features)`` normalised by its
maximum, brought to the stride-4 grid by the maximum of each cell
(``inference.random_walk.pool_to_grid``, what the pipeline does). Grid pixels above 0.3
are confident foreground of the best class, below 0.05 confident background, the rest
is ignored (002's dense CRF on the confident areas is left out: it is not a dependency
here). Pairs closer than 10 grid pixels (002's training radius) are ``P+fg``, ``P+bg``
(same label) or ``P-`` (different labels).

Network: the CAM network's levels (stem, the two encoder stages, both decoder stages;
strides 1, 2, 4, 2, 1) are brought to the grid by an average and a maximum per cell,
once per training image, and cached: the backbone is frozen, so only the two heads
learn, on cached features (thousands of steps on a CPU). Boundary branch: 1x1
convolutions (GroupNorm, ReLU), then one 1x1 to a sigmoid map. Displacement branch: a
1x1 reduction, a bottom-up path to stride 32 and 002's top-down pathway back (upsample,
concatenate, 1x1), three 1x1 convolutions to two channels (grid pixels, ``(dy, dx)``),
minus a running mean (002: "further refined by subtracting the mean of D"). The CAM
network is shallow (stride 4 at most), so the displacement branch needs its own
context to see a whole instance.

Losses (002, Eq. 5, 6, 8, 9): L1 between ``D(i) - D(j)`` and ``x_j - x_i`` over
``P+fg``; L1 of ``D(i) - D(j)`` over ``P+bg``; cross-entropy of the affinity
``a_ij = 1 - max B on the line`` against class equivalence, the three parts each
normalised by their own count. SGD, lr 0.1 with polynomial decay, the displacement
branch's gradients multiplied by 10 (002, section 6.1: here a learning rate ten times
higher for that branch, the same thing for SGD).

Exported as one ONNX file (``model.onnx``) that runs the frozen CAM network and both
heads: ``image (1, 3, H, W)`` -> ``logits (1, C)``, ``cams (1, C, H, W)`` (the per-pixel
logits, ``relu``-ed, not normalised), ``boundary (1, 1, H/4, W/4)`` and ``displacement
(1, 2, H/4, W/4)``; H and W multiples of 4. The engine needs no other model and no
torch (``inference.pipelines.irnet``).
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.pipelines.cam import normalise_cam
from training.common import Reporter, Timer, TrainOptions, start_run
from training.datasets import (
    ImageLabels,
    ProjectData,
    load_project,
    read_rgb,
    split_by_image,
)

GRID_STRIDE = 4
FG_THRESHOLD = 0.3  # 002: CAM above this is confident foreground
BG_THRESHOLD = 0.05  # 002: CAM below this is confident background
IGNORE = 255
# offsets (of the 155 within radius 10) whose pairs enter one step's loss, drawn anew each
# step: every pair still counts over the steps, and a CPU step costs a quarter (0: all)
OFFSETS_PER_STEP = 40
CROPS_PER_IMAGE = 8  # an epoch: this many random crops of every training image
DISPLACEMENT_LR_FACTOR = 10.0  # 002: the displacement branch's gradients amplified by 10
LEVEL_CHANNELS = (16, 24, 40, 64, 32)  # CamNet efficientnet-lite0: stem, down1, down2, up1, up0
LEVEL_STRIDES = (1, 2, 4, 2, 1)


def _gn(c: int):
    from torch import nn

    return nn.GroupNorm(max(1, min(8, c // 4)), c)


def _conv(cin: int, cout: int, k: int = 1, stride: int = 1):
    from torch import nn

    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), _gn(cout),
                         nn.ReLU(inplace=True))


def cam_level_channels(net) -> tuple[int, ...]:
    """Channels of the five levels of a ``CamNet`` (the encoder decides the first three)."""
    if getattr(net, "encoder_name", "efficientnet-lite0") == "resnet34":
        return (64, 64, 128, 64, 32)
    return LEVEL_CHANNELS


def cam_levels(net, x):
    """Run a ``CamNet`` and keep its levels: ``(logits (N, C), cams (N, C, H, W), levels)``.

    ``levels``: the five maps of strides 1, 2, 4, 2, 1 (stem, the two encoder stages,
    the two decoder stages). ``cams`` is ``relu(fc.weight . features)``, the per-pixel
    logit without the bias, which is the CAM pipeline's Grad-CAM up to a constant factor.
    """
    import torch
    from torch.nn import functional as F

    s0 = net.stem(x)
    s1 = net.down1(s0)
    s2 = net.down2(s1)
    y = net.up1(torch.cat([F.interpolate(s2, size=s1.shape[-2:], mode="bilinear", align_corners=False), s1], 1))
    feats = net.up0(torch.cat([F.interpolate(y, size=s0.shape[-2:], mode="bilinear", align_corners=False), s0], 1))
    logits = net.fc(feats.mean(dim=(2, 3)))
    cams = F.relu(torch.einsum("cf,nfhw->nchw", net.fc.weight, feats))
    return logits, cams, (s0, s1, s2, y, feats)


def levels_to_grid(levels: Sequence[Any], strides: Sequence[int] = LEVEL_STRIDES):
    """Every level at the stride-4 grid: the average and the maximum of each cell for the
    finer levels (the maximum keeps a crack one pixel wide), the stride-4 level as it is;
    concatenated ``(N, sum, H/4, W/4)``."""
    import torch
    from torch.nn import functional as F

    out = []
    for lv, s in zip(levels, strides):
        k = GRID_STRIDE // s
        if k == 1:
            out.append(lv)
        else:
            out += [F.avg_pool2d(lv, k), F.max_pool2d(lv, k)]
    return torch.cat(out, 1)


def grid_channels(level_channels: Sequence[int], strides: Sequence[int] = LEVEL_STRIDES) -> int:
    return sum(c if s == GRID_STRIDE else 2 * c for c, s in zip(level_channels, strides))


def build_heads(in_channels: int, width: int = 32):
    """The two IRNet branches over the grid features (see the module docstring)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class IRNetHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.edge = nn.Sequential(_conv(in_channels, width), _conv(width, width, 3), nn.Conv2d(width, 1, 1))
            self.disp_in = _conv(in_channels, width)
            self.down = nn.ModuleList(_conv(width, width, 3, 2) for _ in range(3))  # strides 8, 16, 32
            self.merge = nn.ModuleList(_conv(2 * width, width) for _ in range(3))
            self.disp_out = nn.Sequential(_conv(width, width), _conv(width, width), nn.Conv2d(width, 2, 1))
            self.register_buffer("mean_shift", torch.zeros(1, 2, 1, 1))
            self.momentum = 0.1

        def forward(self, g):
            boundary = torch.sigmoid(self.edge(g))
            p = [self.disp_in(g)]
            for d in self.down:
                p.append(d(p[-1]))
            top = p[-1]
            for i in (2, 1, 0):  # 002's top-down pathway: up, concatenate, 1x1
                up = F.interpolate(top, size=p[i].shape[-2:], mode="bilinear", align_corners=False)
                top = self.merge[i](torch.cat([up, p[i]], 1))
            disp = self.disp_out(top)
            if self.training:
                mean = disp.mean(dim=(0, 2, 3), keepdim=True)
                with torch.no_grad():
                    self.mean_shift.mul_(1 - self.momentum).add_(self.momentum * mean.detach())
                disp = disp - mean
            else:
                disp = disp - self.mean_shift
            return boundary, disp

        def displacement_parameters(self):
            return [p for n, p in self.named_parameters() if not n.startswith("edge.")]

        def boundary_parameters(self):
            return list(self.edge.parameters())

    return IRNetHeads()


def build_export_module(net, heads):
    """The ONNX graph: image -> ``(logits, cams, boundary, displacement)``."""
    from torch import nn

    class IRNetExport(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.heads = net, heads

        def forward(self, image):
            logits, cams, levels = cam_levels(self.net, image)
            boundary, disp = self.heads(levels_to_grid(levels))
            return logits, cams, boundary, disp

    return IRNetExport()


# --------------------------------------------------------------------------- the CAM model


def resolve_cam_model(registry_root: Path | None, project: Path, palette_names: Sequence[str],
                      asked: str | None = None):
    """The CAM model IRNet learns from (see the module docstring): a ``ModelInfo``."""
    from inference.registry import ModelError, Registry

    reg = Registry(registry_root) if registry_root is not None else Registry.default()
    if asked:
        name, _, version = asked.partition("@")
        info = reg.get(name, version) if version else reg.active(name)
    else:
        info = None
        own = f"{Path(project).name}-cam"
        if own in reg.names():
            info = reg.active(own)
        else:
            fitting = []
            for name in reg.names():
                try:
                    cand = reg.active(name)
                except ModelError:
                    continue
                if cand.task == "cam" and set(cand.manifest.classes) <= set(palette_names):
                    fitting.append(cand)
            if fitting:
                info = max(fitting, key=lambda i: (i.manifest.created, i.name))
    if info is None:
        raise RuntimeError(f"{project}: no CAM model to learn from; train one (--task cam) or give --cam-model")
    if info.task != "cam":
        raise RuntimeError(f"{info.name}@{info.version} is a {info.task} model; IRNet needs a cam model")
    return info


def load_cam_network(info):
    """Rebuild the ``CamNet`` of a published CAM model from its TorchScript weights (the
    file goes through the registry's trust check before it is loaded)."""
    from inference.runtime import TorchRuntime
    from training.models import CamNet

    module = TorchRuntime("cpu").load_module(info.file("model.pt"))
    encoder = str(info.manifest.training.get("encoder") or "efficientnet-lite0")
    net = CamNet(len(info.manifest.classes), encoder=encoder, pretrained=False)
    state = {k: v for k, v in module.state_dict().items()}
    missing, _unexpected = net.load_state_dict(state, strict=False)
    if missing:
        raise RuntimeError(f"{info.path}: the CAM model's weights do not fit a CamNet ({len(missing)} missing, "
                           f"e.g. {missing[0]})")
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


# --------------------------------------------------------------------------- relations


def present_classes(im: ImageLabels, classes: Sequence[str]) -> list[int] | None:
    """The class indices an image is known to hold (the weak labels), ``[]`` for an image
    known to hold none, None when nothing is known."""
    have = {c.class_name for c in im.clicks if c.positive} | {n for n, _ in im.instances}
    idx = [i for i, c in enumerate(classes) if c in have]
    if idx:
        return idx
    return [] if (im.done or im.clicks) else None


def pseudo_labels(cams_grid: np.ndarray, present: Sequence[int], fg: float = FG_THRESHOLD,
                  bg: float = BG_THRESHOLD) -> np.ndarray:
    """``(h, w)`` uint8 grid labels from ``(C, h, w)`` CAMs normalised to [0, 1]: ``1 + class``
    where the best present class is above ``fg``, 0 where every present class is below
    ``bg``, ``IGNORE`` in between."""
    h, w = cams_grid.shape[1:]
    if not present:
        return np.zeros((h, w), np.uint8)
    sub = cams_grid[list(present)]
    best = sub.max(axis=0)
    cls = np.asarray(present)[sub.argmax(axis=0)]
    out = np.full((h, w), IGNORE, np.uint8)
    out[best < bg] = 0
    sel = best > fg
    out[sel] = (cls[sel] + 1).astype(np.uint8)
    return out


def relation_loss(boundary, disp, labels, offsets: np.ndarray) -> tuple[Any, dict[str, float]]:
    """002's Eq. 9 over every pair ``(p, p + o)`` of the batch, ``o`` in ``offsets`` (one of
    each unordered pair).

    ``boundary`` ``(N, 1, h, w)`` in [0, 1]; ``disp`` ``(N, 2, h, w)``; ``labels`` ``(N, h, w)``
    long (``IGNORE`` left out). Returns ``(loss, parts)``.

    One adaptation to thin structures: a pair with equal labels whose line crosses a
    pixel confidently labelled otherwise is left out of ``P+`` (two background pixels on
    either side of a crack one grid pixel wide: 002's loss would ask for no boundary on
    a line that crosses the crack, against the ``P-`` pairs that ask for one there).

    Vectorised over the offsets: every grid point on any of the lines is one shifted
    view of the padded maps, stacked once; each offset's line maximum is a gather and a
    maximum over that stack (a loop of ``torch.maximum`` per offset and line point cost
    ten times more in the backward pass on a CPU).
    """
    import torch
    from torch.nn import functional as F

    from inference.random_walk import line_points

    h, w = boundary.shape[-2:]
    offs = [(int(dy), int(dx)) for dy, dx in offsets]
    r = max(max(abs(dy), abs(dx)) for dy, dx in offs)
    lines = [line_points(dy, dx) for dy, dx in offs]
    points = sorted({p for line in lines for p in line})
    index = {p: i for i, p in enumerate(points)}
    length = max(len(line) for line in lines)
    # each line as indices into ``points``, padded by repeating its start (max is idempotent)
    gather = torch.tensor([[index[p] for p in line] + [index[line[0]]] * (length - len(line)) for line in lines])
    ends = torch.tensor([index[p] for p in offs])

    def views(t, pts):
        return torch.stack([t[..., r + dy: r + dy + h, r + dx: r + dx + w] for dy, dx in pts])

    bpts = views(F.pad(boundary[:, 0], (r, r, r, r), value=1.0), points)  # (P, N, h, w)
    line_max = bpts[gather].amax(dim=1)  # (K, N, h, w)
    aff = (1.0 - line_max).clamp(1e-5, 1 - 1e-5)
    with torch.no_grad():
        lpts = views(F.pad(labels.to(torch.uint8), (r, r, r, r), value=IGNORE), points)  # (P, N, h, w)
        a = labels.to(torch.uint8)[None]
        b = lpts[ends]
        valid = (a != IGNORE) & (b != IGNORE)
        on_line = lpts[gather]  # (K, L, N, h, w)
        crossed = ((on_line != a[:, None]) & (on_line != IGNORE)).any(dim=1)
        same = valid & (a == b) & ~crossed
        fg = (same & (a > 0)).float()
        bg = (same & (a == 0)).float()
        neg = (valid & (a != b)).float()
    dother = views(F.pad(disp, (r, r, r, r)), offs)  # (K, N, 2, h, w): D(j)
    diff = disp[None] - dother  # D(i) - D(j)
    target = torch.tensor(offs, dtype=disp.dtype).view(-1, 1, 2, 1, 1)  # x_j - x_i
    fg_n, bg_n, neg_n = (max(1.0, float(m.sum())) for m in (fg, bg, neg))
    loss_d = ((diff - target).abs().sum(2) * fg).sum() / fg_n + (diff.abs().sum(2) * bg).sum() / bg_n
    log_a, log_1a = torch.log(aff), torch.log(1.0 - aff)
    loss_b = -(log_a * fg).sum() / (2 * fg_n) - (log_a * bg).sum() / (2 * bg_n) - (log_1a * neg).sum() / neg_n
    loss = loss_d + loss_b
    parts = {"displacement": float(loss_d.detach()), "boundary": float(loss_b.detach()),
             "pairs_fg": int(fg.sum()), "pairs_bg": int(bg.sum()), "pairs_neg": int(neg.sum())}
    return loss, parts


class GridCache:
    """Per training image: the frozen grid features ``(F, h, w)`` float32, the grid labels
    ``(h, w)`` uint8, and the image's padded size."""

    def __init__(self, net, images: Sequence[ImageLabels], classes: Sequence[str], mean, std, device,
                 floor_quantile: float = 0.0) -> None:
        import torch

        from inference.pipelines.base import normalize_with, pad_to_multiple
        from inference.random_walk import pool_to_grid

        self.features: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.used: list[ImageLabels] = []
        for im in images:
            present = present_classes(im, classes)
            if present is None:
                continue
            rgb = pad_to_multiple(read_rgb(im.path), GRID_STRIDE)
            x = torch.from_numpy(normalize_with(rgb, mean, std)).to(device)
            with torch.no_grad():
                _, cams, levels = cam_levels(net, x)
                grid = levels_to_grid(levels)[0].cpu().numpy().astype(np.float32)
            cams = cams[0].cpu().numpy()
            norm = np.zeros_like(cams)
            for c in present:  # as the CAM pipeline reads them: the clean surface's level taken off
                norm[c] = normalise_cam(cams[c], floor_quantile)
            self.features.append(grid)
            self.labels.append(pseudo_labels(pool_to_grid(norm, GRID_STRIDE), present))
            self.used.append(im)

    def __len__(self) -> int:
        return len(self.features)

    def batch(self, rng: np.random.Generator, size: int, crop: int):
        """``size`` random grid crops of ``crop`` cells (smaller images: whole), flipped at random.

        Returns ``(features (N, F, c, c), labels (N, c, c))`` tensors; crops of one batch
        share a side (the smallest image's, when it is smaller than ``crop``).
        """
        import torch

        picks = rng.integers(0, len(self.features), size)
        side_y = min(crop, *(self.labels[k].shape[0] for k in picks))
        side_x = min(crop, *(self.labels[k].shape[1] for k in picks))
        fs, ls = [], []
        for k in picks:
            f, lab = self.features[k], self.labels[k]
            y0 = int(rng.integers(0, lab.shape[0] - side_y + 1))
            x0 = int(rng.integers(0, lab.shape[1] - side_x + 1))
            f = f[:, y0: y0 + side_y, x0: x0 + side_x]
            lab = lab[y0: y0 + side_y, x0: x0 + side_x]
            # flips only: the displacement target x_j - x_i follows the flipped grid itself
            if rng.random() < 0.5:
                f, lab = f[:, :, ::-1], lab[:, ::-1]
            if rng.random() < 0.5:
                f, lab = f[:, ::-1], lab[::-1]
            fs.append(np.ascontiguousarray(f))
            ls.append(np.ascontiguousarray(lab))
        return torch.from_numpy(np.stack(fs)), torch.from_numpy(np.stack(ls).astype(np.int64))

    def label_counts(self) -> dict[str, int]:
        allv = np.concatenate([lab.ravel() for lab in self.labels]) if self.labels else np.zeros(0)
        return {"foreground": int(((allv > 0) & (allv != IGNORE)).sum()), "background": int((allv == 0).sum()),
                "ignored": int((allv == IGNORE).sum())}


# --------------------------------------------------------------------------- training


def train_irnet(opts: TrainOptions, reporter: Reporter | None = None,
                data: ProjectData | None = None) -> dict[str, Any]:
    """Learn IRNet's two branches from a CAM model's CAMs, export ONNX, publish (task ``irnet``).

    ``opts.extra``: ``cam_model`` (``NAME[@VERSION]``), ``radius`` (training pair radius in
    grid pixels, 10), ``offsets_per_step`` (``OFFSETS_PER_STEP``; 0 for all), ``score_images``
    (held-out images scored through the pipeline, 4).
    ``opts.input_size``: the training crop in photo pixels (default 256; a multiple of 4).
    ``opts.max_steps`` / ``opts.epochs`` (default 20; an epoch is ``CROPS_PER_IMAGE`` crops per image) /
    ``opts.minutes`` bound the run.
    """
    import torch

    from inference.random_walk import TRAINING_RADIUS, pair_offsets

    reporter, dist_info, device = start_run(opts, reporter)
    if dist_info.distributed:
        raise RuntimeError("IRNet trains on cached features in one process; run it without --gpus")
    data = data or load_project(opts.project)
    cam_info = resolve_cam_model(opts.registry, data.project, data.classes, opts.extra.get("cam_model"))
    classes = list(cam_info.manifest.classes)
    net = load_cam_network(cam_info).to(device)
    mean, std = cam_info.manifest.mean, cam_info.manifest.std
    train, val = split_by_image(data.images, opts.val_fraction, opts.seed)
    train = train or val
    timer = Timer(opts.minutes)
    t0 = time.perf_counter()
    # the CAM model's noise floor (picked on validation by its trainer): without it the
    # texture of clean surface reaches the foreground cut-off on every photo
    floor = float(cam_info.manifest.defaults.get("floor_quantile", 0.0))
    cache = GridCache(net, train, classes, mean, std, device, floor)
    if not len(cache):
        raise RuntimeError(f"{data.project}: no training image says which classes it holds (clicks or masks)")
    cache_seconds = time.perf_counter() - t0
    reporter.emit("data", cam_model=f"{cam_info.name}@{cam_info.version}", train_images=len(cache),
                  val_images=len(val), classes=classes, labels=cache.label_counts(),
                  cache_seconds=round(cache_seconds, 1))
    radius = float(opts.extra.get("radius", TRAINING_RADIUS))
    offsets = pair_offsets(radius, half=True)
    per_step = int(opts.extra.get("offsets_per_step", OFFSETS_PER_STEP))
    heads = build_heads(cache.features[0].shape[0]).to(device)
    lr = opts.lr or 0.1
    optim = torch.optim.SGD([
        {"params": heads.boundary_parameters(), "lr": lr},
        {"params": heads.displacement_parameters(), "lr": lr * DISPLACEMENT_LR_FACTOR},
    ], lr=lr, momentum=0.9, weight_decay=1e-4)
    base_lrs = [g["lr"] for g in optim.param_groups]
    batch = opts.batch_size or 8
    crop = max(GRID_STRIDE, int(opts.input_size[0]) if opts.input_size else 256) // GRID_STRIDE
    epochs = opts.epochs or 20
    steps_per_epoch = max(1, len(cache) * CROPS_PER_IMAGE // batch)
    total = int(opts.max_steps) if opts.max_steps else epochs * steps_per_epoch
    rng = np.random.default_rng(opts.seed)
    heads.train()
    losses: list[float] = []
    parts: dict[str, float] = {}
    step = 0
    while step < total and not timer.expired():
        for g, base in zip(optim.param_groups, base_lrs):  # 002: polynomial decay (power 0.9)
            g["lr"] = base * (1 - step / total) ** 0.9
        feats, labels = cache.batch(rng, batch, crop)
        boundary, disp = heads(feats.to(device))
        step_offsets = offsets
        if 0 < per_step < len(offsets):  # a random share of the pairs' offsets, new every step
            step_offsets = offsets[np.sort(rng.choice(len(offsets), per_step, replace=False))]
        loss, parts = relation_loss(boundary, disp, labels.to(device), step_offsets)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        step += 1
        losses.append(float(loss.detach()))
        reporter.emit("step", epoch=1 + (step - 1) // steps_per_epoch, step=step, total=total, loss=losses[-1],
                      **{k: v for k, v in parts.items()})
        if step % steps_per_epoch == 0 or step == total:
            reporter.emit("epoch", epoch=(step - 1) // steps_per_epoch + 1, loss=float(np.mean(losses[-steps_per_epoch:])),
                          val=None, elapsed_s=round(timer.elapsed, 1))
    train_seconds = time.perf_counter() - t0
    heads.eval().cpu()
    net.cpu()
    run_info = {"cam_model": {"name": cam_info.name, "version": cam_info.version}, "steps": step,
                "train_seconds": round(train_seconds, 1), "feature_cache_seconds": round(cache_seconds, 1),
                "final_loss": losses[-1] if losses else None, "last_parts": parts, "batch_size": batch,
                "lr": lr, "displacement_lr_factor": DISPLACEMENT_LR_FACTOR, "crop_cells": crop,
                "grid_stride": GRID_STRIDE, "radius": radius, "pairs_offsets": len(offsets),
                "offsets_per_step": per_step,
                "fg_threshold": FG_THRESHOLD, "bg_threshold": BG_THRESHOLD, "labels": cache.label_counts(),
                "train_images": len(cache), "device": str(device)}
    return _export_and_publish(net, heads, opts, data, cam_info, classes, val, run_info, reporter)


def _export_and_publish(net, heads, opts, data, cam_info, classes, val, run_info, reporter) -> dict[str, Any]:
    import torch

    from inference.pipelines.base import normalize_with, pad_to_multiple
    from inference.registry import Manifest
    from training.cam import _class_mask, score_proposals
    from training.export import check_onnx_matches, publish, scratch_dir

    name = opts.name or f"{Path(data.project).name}-irnet"
    model = build_export_module(net, heads).eval()
    src = data.images[0]
    rgb = pad_to_multiple(read_rgb(src.path), GRID_STRIDE)
    example = torch.from_numpy(normalize_with(rgb, cam_info.manifest.mean, cam_info.manifest.std))
    small = example[:, :, :64, :96].contiguous()
    with scratch_dir() as tmp:
        path = Path(tmp) / "model.onnx"
        names = ["logits", "cams", "boundary", "displacement"]
        axes = {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"},
                **{n: {0: "batch", 2: "height", 3: "width"} for n in names[1:]}}
        with torch.no_grad():
            torch.onnx.export(model, (example,), str(path), input_names=["image"], output_names=names,
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        check = check_onnx_matches(model, path, [example, small], atol=1e-3, rtol=1e-3)
        manifest = {
            "name": name, "version": "0", "task": "irnet", "classes": classes, "input_size": None,
            "normalization": {"mean": list(cam_info.manifest.mean), "std": list(cam_info.manifest.std)},
            "output_activation": "sigmoid",
            "defaults": {"floor_quantile": float(cam_info.manifest.defaults.get("floor_quantile", 0.0))},
            "training": {
                "trainer": "training.irnet",
                "architecture": "IRNet (002) boundary and displacement branches over the frozen levels of the CAM "
                                f"network of {cam_info.name}@{cam_info.version}, at stride {GRID_STRIDE}",
                "interface": "model(image (1,3,H,W) normalised, H and W multiples of 4) -> logits (1,C), "
                             "cams (1,C,H,W) relu per-pixel logits, boundary (1,1,H/4,W/4) in [0,1], "
                             "displacement (1,2,H/4,W/4) (dy, dx) in grid pixels",
                "data": {**data.summary(), "split_seed": opts.seed, "val_fraction": opts.val_fraction,
                         "val_images": len(val)},
                "onnx_check": check,
                **run_info,
            },
            "metrics": {"protocol": "proposals of the irnet pipeline (its defaults, class_threshold 0: the "
                                    "held-out photos hold the class; mode as keyed) against held-out accepted masks: per-image IoU of their union, share of the image "
                                    "proposed"},
            "sources": [f"CAM model {cam_info.name}@{cam_info.version} (frozen backbone and CAMs)"],
        }
        Manifest.from_json(dict(manifest), "manifest")
        (Path(tmp) / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        scored: dict[str, Any] = {}
        held = [im for im in val if im.instances][: int(opts.extra.get("score_images", 4))]
        if held:
            pipe = irnet_pipeline(Path(tmp))
            for cls in classes:
                pairs = [(read_rgb(im.path), _class_mask(im, cls)) for im in held
                         if any(n == cls for n, _ in im.instances)]
                if pairs:
                    scored[cls] = {mode: score_proposals(
                        lambda im_rgb, mode=mode: pipe.propose(im_rgb, params={"mode": mode, "class_threshold": 0.0}),
                        pairs, cls) for mode in ("cam", "boundary", "instances")}
        manifest["metrics"]["validation_proposals"] = scored
        manifest["version"] = opts.version or ""
        info = publish(opts.registry, [path], manifest)
    reporter.emit("published", name=info.name, version=info.version, path=str(info.path))
    return {"info": info, "metrics": scored, "manifest": info.manifest.to_json(), "steps": run_info["steps"]}


def irnet_pipeline(folder: Path):
    """``IRNetPipeline`` over a model folder this run wrote (``model.onnx`` + ``manifest.json``), CPU."""
    from inference.pipelines.base import Runtimes
    from inference.pipelines.irnet import IRNetPipeline
    from inference.registry import Manifest, ModelInfo
    from inference.runtime import OnnxRuntime

    info = ModelInfo(manifest=Manifest.read(Path(folder) / "manifest.json"), path=Path(folder))
    return IRNetPipeline(info, Runtimes(OnnxRuntime("cpu")))
