"""The labelling-effort benchmark: data sets, the manual-versus-assisted run and the loop.

``load_dataset`` reads one of the shared binary-mask sets (``image/`` + ``mask/``, 255 =
the class); truth instances are the 8-connected components of the mask with at least
``min_area`` pixels (smaller specks are ignored: nobody labels a 10-pixel fleck).

``run_effort`` labels every image twice with the same ``SimulatedAnnotator``: manually
and from proposals; ``run_efforts`` does it for several annotators (e.g. several target
IoUs, with and without click correction) on the same proposals, asked for once per
image. ``run_loop`` labels ``k``
images, retrains through a ``Trainer``, proposes on the next ``k``, and so on.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence

import cv2
import numpy as np

from annotation.effort.annotator import CORRECTION_KINDS, MODES, ImageLabelling, ProposalMask, SimulatedAnnotator
from annotation.effort.proposals import EffortImage, ProposalSource
from annotation.images import IMAGE_EXTENSIONS, load_image
from annotation.mask import Mask

DATASETS = {  # folder under the shared data root -> class of its white pixels
    "glass-gdd": "glass",
    "mirror-msd": "mirror",
    "cracks-cfd": "crack",
    "cracks-deepcrack": "crack",
}
DEFAULT_MIN_AREA = 50
GROUPS = (("saved > 95 %", 95.0, None), ("75-95 %", 75.0, 95.0), ("50-75 %", 50.0, 75.0), ("< 50 %", None, 50.0))


class EffortError(ValueError):
    """A benchmark that cannot run; the message says what to do."""


def data_root() -> Path:
    """``SPECULA_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("SPECULA_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def truth_instances(mask: np.ndarray, class_name: str, min_area: int = DEFAULT_MIN_AREA) -> list[tuple[str, Mask]]:
    """Connected components (8-connected) of a bool mask with at least ``min_area`` pixels."""
    return [(class_name, m) for m in Mask.from_full(mask).components() if m.area >= min_area]


def load_dataset(
    name_or_path: str, limit: Optional[int] = None, min_area: int = DEFAULT_MIN_AREA,
    class_name: Optional[str] = None, root: Optional[Path] = None, offset: int = 0,
    only_stems: Optional[set[str]] = None,
) -> list[EffortImage]:
    """The images of a binary-mask data set, sorted by name, ``limit`` of them from ``offset``.

    ``only_stems`` keeps only images with those file stems (a model's held-out images).

    ``name_or_path`` is a folder under the data root (``glass-gdd``, ...) or a path to a
    folder with ``image/`` and ``mask/``. Images without a mask are skipped.
    """
    folder = Path(name_or_path)
    if not (folder / "mask").is_dir():
        folder = (root or data_root()) / name_or_path
    if not (folder / "mask").is_dir() or not (folder / "image").is_dir():
        raise EffortError(f"{name_or_path}: no data set with image/ and mask/ folders there "
                          f"(known: {', '.join(DATASETS)} under {root or data_root()}; set SPECULA_DATA)")
    cls = class_name or DATASETS.get(folder.name, "object")
    masks = {p.stem: p for p in (folder / "mask").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    images = sorted(p for p in (folder / "image").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.stem in masks)
    if only_stems is not None:
        images = [p for p in images if p.stem in only_stems]
    images = images[offset:]
    if limit is not None:
        images = images[: max(0, limit)]
    out = []
    for path in images:
        m = cv2.imread(str(masks[path.stem]), cv2.IMREAD_GRAYSCALE)
        if m is None:
            raise EffortError(f"{masks[path.stem]}: cannot read the mask")
        out.append(EffortImage(path, (int(m.shape[0]), int(m.shape[1])), tuple(truth_instances(m > 127, cls, min_area))))
    return out


def saving_group(saved_percent: float) -> str:
    """The group of 003's Table 2 a per-instance saving falls into."""
    for name, low, high in GROUPS:
        if (low is None or saved_percent >= low) and (high is None or saved_percent < high):
            return name
    return GROUPS[-1][0]


@dataclass
class ImageEffort:
    """Both labellings of one image."""

    key: str
    manual: ImageLabelling
    assisted: ImageLabelling
    n_proposals: int


@dataclass
class EffortResult:
    """The benchmark on one data set, and its summary (``summary()``)."""

    dataset: str
    source: str
    images: list[ImageEffort]
    costs_source: str
    params: dict
    wall_seconds: float = 0.0
    clicks: Optional[str] = None  # the click tool's label when the annotator had one

    def summary(self) -> dict:
        n = sum(len(im.manual.instances) for im in self.images)
        manual = sum(im.manual.seconds for im in self.images)
        assisted = sum(im.assisted.seconds for im in self.images)
        groups = {g[0]: 0 for g in GROUPS}
        modes = {m: 0 for m in MODES if m != "manual"}
        ious_m, ious_a, saved = [], [], []
        capped = {"manual": 0, "assisted": 0}
        for im in self.images:
            for mi, ai in zip(im.manual.instances, im.assisted.instances):
                s = 100.0 * (1.0 - ai.seconds / mi.seconds) if mi.seconds > 0 else 0.0
                saved.append(s)
                groups[saving_group(s)] += 1
                modes[ai.mode] = modes.get(ai.mode, 0) + 1
                ious_m.append(mi.iou)
                ious_a.append(ai.iou)
                capped["manual"] += int(mi.capped)
                capped["assisted"] += int(ai.capped)
        corrections = {side: {k: 0 for k in CORRECTION_KINDS} for side in ("manual", "assisted")}
        for im in self.images:
            for side, labelling in (("manual", im.manual), ("assisted", im.assisted)):
                for inst in labelling.instances:
                    for k, v in inst.corrections.items():
                        corrections[side][k] = corrections[side].get(k, 0) + v
        lower_bound = (0.95 * groups[GROUPS[0][0]] + 0.75 * groups[GROUPS[1][0]] + 0.5 * groups[GROUPS[2][0]]) / n if n else 0.0
        target = float(self.params.get("target_iou", 0.9))
        extra = [a for im in self.images for a in im.assisted.extra_actions]
        return {
            "dataset": self.dataset,
            "proposals": self.source,
            "clicks": self.clicks,
            "clicks_made": {side: corrections[side].get("click", 0) for side in ("manual", "assisted")},
            "clicks_undone": {side: corrections[side].get("click_undone", 0) for side in ("manual", "assisted")},
            "target_iou": target,
            "images": len(self.images),
            "instances": n,
            "manual_seconds": manual,
            "assisted_seconds": assisted,
            "manual_s_per_instance": manual / n if n else 0.0,
            "assisted_s_per_instance": assisted / n if n else 0.0,
            "saved_percent": 100.0 * (1 - assisted / manual) if manual > 0 else 0.0,
            "saved_percent_003_formula": 100.0 * lower_bound,
            "groups": groups,
            "modes": modes,
            "median_instance_saved_percent": float(np.median(saved)) if saved else 0.0,
            "manual_mean_iou": float(np.mean(ious_m)) if ious_m else 0.0,
            "assisted_mean_iou": float(np.mean(ious_a)) if ious_a else 0.0,
            "manual_reached_target": sum(i >= target for i in ious_m),
            "assisted_reached_target": sum(i >= target for i in ious_a),
            "capped": capped,
            "corrections": corrections,
            "proposals_total": sum(im.n_proposals for im in self.images),
            "rejected_one_by_one": sum(a.kind == "reject" for a in extra),
            "rejected_with_reject_rest": sum(a.kind == "glance" for a in extra),
            "reject_rest_uses": sum(a.kind == "reject_rest" for a in extra),
            "left_over_seconds": sum(a.seconds for a in extra),
            "costs": self.costs_source,
            "params": self.params,
            "wall_seconds": self.wall_seconds,
        }


def run_effort(
    dataset: str, images: Sequence[EffortImage], source: ProposalSource, annotator: SimulatedAnnotator,
    progress: Optional[Callable[[int, int], None]] = None,
) -> EffortResult:
    """Label every image manually and from ``source``'s proposals."""
    return run_efforts(dataset, images, source, [annotator], progress)[0]


def run_efforts(
    dataset: str, images: Sequence[EffortImage], source: ProposalSource, annotators: Sequence[SimulatedAnnotator],
    progress: Optional[Callable[[int, int], None]] = None,
    keep_proposals: Optional[dict[str, list[ProposalMask]]] = None,
) -> list[EffortResult]:
    """``run_effort`` for each annotator on the same proposals (asked for once per image).

    ``keep_proposals``: a dict that receives each image's proposals (by image key), e.g.
    to write them out so the run can be repeated without the model.
    """
    t0 = time.perf_counter()
    per: list[list[ImageEffort]] = [[] for _ in annotators]
    for n, image in enumerate(images):
        proposals = source.propose(image)
        if keep_proposals is not None:
            keep_proposals[image.key] = list(proposals)
        rgb = image_rgb(image) if any(a.clicks is not None for a in annotators) else None
        for k, annotator in enumerate(annotators):
            per[k].append(label_image(image, None, annotator, proposals, rgb))
        if progress:
            progress(n + 1, len(images))
    wall = time.perf_counter() - t0
    return [EffortResult(dataset, source.label, efforts, a.costs.source, vars(a.params).copy(), wall,
                         a.clicks.label if a.clicks is not None else None)
            for efforts, a in zip(per, annotators)]


def image_rgb(image: EffortImage) -> np.ndarray:
    """The image's pixels, ``(H, W, 3)`` uint8 RGB, for a click tool."""
    rgb = np.asarray(load_image(image.path).rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    return np.ascontiguousarray(rgb[:, :, :3]).astype(np.uint8, copy=False)


def label_image(image: EffortImage, source: Optional[ProposalSource], annotator: SimulatedAnnotator,
                proposals: Optional[Sequence[ProposalMask]] = None, rgb: Optional[np.ndarray] = None) -> ImageEffort:
    """Both labellings of one image (assisted = manual when there is no source and no
    ``proposals``); ``proposals`` given are used instead of asking ``source``. An
    annotator with a click tool is shown the image first (``rgb``, read when not given)."""
    if annotator.clicks is not None:
        annotator.set_image(image_rgb(image) if rgb is None else rgb, image.key)
    manual = annotator.label_manual(image.truths)
    if proposals is None:
        if source is None:
            return ImageEffort(image.key, manual, manual, 0)
        proposals = source.propose(image)
    assisted = annotator.label_assisted(image.truths, proposals, manual)
    return ImageEffort(image.key, manual, assisted, len(proposals))


# ------------------------------------------------------------------ the loop
@dataclass(frozen=True)
class LabelledExample:
    """An image as the annotator finished it: the file and its final ``(class, mask)``s."""

    path: Path
    size: tuple[int, int]
    instances: tuple[tuple[str, Mask], ...]


class Trainer(Protocol):
    """Trains on what has been labelled so far and returns the new model's proposals."""

    def train(self, examples: Sequence[LabelledExample], round_index: int) -> ProposalSource: ...


@dataclass
class LoopRow:
    """One round of the loop: images labelled before it, and the effort of its images."""

    round_index: int
    labelled_before: int
    images: int
    instances: int
    manual_s_per_image: float
    assisted_s_per_image: float
    saved_percent: float
    assisted_mean_iou: float
    source: str


@dataclass
class LoopResult:
    dataset: str
    rows: list[LoopRow] = field(default_factory=list)
    efforts: list[ImageEffort] = field(default_factory=list)


def run_loop(
    dataset: str, images: Sequence[EffortImage], k: int, trainer: Trainer, annotator: SimulatedAnnotator,
    initial: Optional[ProposalSource] = None, progress: Optional[Callable[[str], None]] = None,
) -> LoopResult:
    """Label ``k`` images, retrain, propose on the next ``k``, repeat until all are labelled.

    The first round uses ``initial`` (``None``: no model yet, so it is labelled by hand).
    Each round's finished masks (the assisted labelling's final masks) are added to the
    training examples before the trainer is called.
    """
    if k <= 0:
        raise EffortError("--k must be a positive number of images per round")
    result = LoopResult(dataset)
    examples: list[LabelledExample] = []
    source = initial
    for r, start in enumerate(range(0, len(images), k)):
        batch = images[start : start + k]
        efforts = [label_image(im, source, annotator) for im in batch]
        result.efforts.extend(efforts)
        n_inst = sum(len(e.manual.instances) for e in efforts)
        man = sum(e.manual.seconds for e in efforts)
        ass = sum(e.assisted.seconds for e in efforts)
        ious = [i.iou for e in efforts for i in e.assisted.instances]
        result.rows.append(LoopRow(r, start, len(batch), n_inst, man / len(batch), ass / len(batch),
                                   100.0 * (1 - ass / man) if man > 0 else 0.0,
                                   float(np.mean(ious)) if ious else 0.0,
                                   source.label if source is not None else "none (manual)"))
        for im, e in zip(batch, efforts):
            examples.append(LabelledExample(im.path, im.size, tuple((i.class_name, i.mask) for i in e.assisted.instances)))
        if progress:
            progress(f"round {r}: {len(examples)} images labelled, {result.rows[-1].saved_percent:.0f} % saved")
        if start + k < len(images):
            source = trainer.train(examples, r)
    return result


def result_json(result: EffortResult) -> str:
    """The summary and per-image figures as JSON text."""
    per_image = [{"image": im.key, "instances": len(im.manual.instances), "proposals": im.n_proposals,
                  "manual_seconds": im.manual.seconds, "assisted_seconds": im.assisted.seconds,
                  "manual_instance_seconds": [i.seconds for i in im.manual.instances],
                  "assisted_instance_seconds": [i.seconds for i in im.assisted.instances],
                  "manual_iou": [i.iou for i in im.manual.instances],
                  "assisted_modes": [i.mode for i in im.assisted.instances],
                  "assisted_iou": [i.iou for i in im.assisted.instances],
                  "left_over_seconds": sum(a.seconds for a in im.assisted.extra_actions)} for im in result.images]
    return json.dumps({"summary": result.summary(), "images": per_image}, indent=2)
