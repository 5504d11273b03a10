"""Where the assisted run's proposals come from.

A ``ProposalSource`` turns one image into ``ProposalMask`` es. Three kinds:

- ``specula.effort_model.EngineSource``: a model of the registry through
  ``inference.Engine`` (the product path; it lives in ``specula`` because
  ``annotation`` never imports ``inference``).
- ``CocoResultsSource``: a COCO results file (``[{image_id | file_name, category_id,
  segmentation (RLE or polygons), score}]``, or a full COCO file with ``images``),
  e.g. proposals exported from another tool.
- ``DegradedTruthSource``: **synthetic proposals made by damaging the ground truth**
  (eroded / dilated boundaries, cut-off parts, dropped instances, false blobs). It is
  not a model and its numbers say nothing about any model; it exists so the benchmark
  and its tests run where no model is available, and reports name it as such.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

import numpy as np

from annotation.effort.annotator import ProposalMask
from annotation.mask import Mask


class ProposalError(ValueError):
    """Proposals that cannot be produced; the message says what to do."""


@dataclass(frozen=True)
class EffortImage:
    """One image of a benchmark: its file, ``(H, W)`` and truth instances ``(class, mask)``."""

    path: Path
    size: tuple[int, int]
    truths: tuple[tuple[str, Mask], ...]

    @property
    def key(self) -> str:
        return self.path.stem


class ProposalSource(Protocol):
    """Turns an image into proposals. ``label`` names it in reports."""

    label: str

    def propose(self, image: EffortImage) -> list[ProposalMask]: ...


class DegradedTruthSource:
    """SYNTHETIC proposals: the truth damaged at random (seeded per image), not a model.

    ``quality`` in ``[0, 1]``: 1 gives the truth back; lower values drop more instances
    (probability ``0.3 (1 - q)``), move boundaries further (erosion or dilation by up
    to ``round(6 (1 - q))`` px), cut off part of more instances (probability
    ``0.5 (1 - q)``: the pixels beyond a random line through the instance, 15-45 % of
    its box) and add more false blobs (Poisson, mean ``1.5 (1 - q)`` per image).
    """

    def __init__(self, quality: float = 0.5, seed: int = 0):
        if not 0.0 <= quality <= 1.0:
            raise ProposalError(f"degraded-truth quality must be in [0, 1], got {quality}")
        self.quality = float(quality)
        self.seed = int(seed)
        self.label = f"degraded ground truth (synthetic, quality {self.quality:.2f}; not a model)"

    def _rng(self, image: EffortImage) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(image.key.encode()), int(self.quality * 1000)])

    def propose(self, image: EffortImage) -> list[ProposalMask]:
        rng = self._rng(image)
        bad = 1.0 - self.quality
        out: list[ProposalMask] = []
        for cls, truth in image.truths:
            if rng.random() < 0.3 * bad:
                continue
            m = truth.cropped()
            shift = int(rng.integers(-round(6 * bad), round(6 * bad) + 1)) if bad > 0 else 0
            if shift > 0:
                m = m.dilate(shift)
            elif shift < 0:
                eroded = m.erode(-shift)
                m = eroded if eroded.area > 0.3 * m.area else m
            if rng.random() < 0.5 * bad and not m.is_empty():
                m = self._cut(m, rng)
            if not m.is_empty():
                out.append(ProposalMask(m, cls, float(rng.uniform(0.5, 1.0))))
        h, w = image.size
        classes = [c for c, _ in image.truths] or ["object"]
        for _ in range(int(rng.poisson(1.5 * bad))):
            blob = Mask.empty(image.size)
            r = float(rng.uniform(4, max(5.0, min(h, w) / 12)))
            blob.paint_disk(float(rng.uniform(0, w)), float(rng.uniform(0, h)), r)
            out.append(ProposalMask(blob.cropped(), classes[0], float(rng.uniform(0.5, 0.8))))
        return out

    @staticmethod
    def _cut(m: Mask, rng: np.random.Generator) -> Mask:
        x0, y0, x1, y1 = m.bbox
        angle = rng.uniform(0, 2 * np.pi)
        nx, ny = np.cos(angle), np.sin(angle)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        proj = (xx - x0) * nx + (yy - y0) * ny
        cut_at = np.quantile(proj, 1.0 - rng.uniform(0.15, 0.45))
        keep = m.read_box((x0, y0, x1, y1)) & (proj < cut_at)
        out = Mask(x0, y0, keep, m.image_size).cropped()
        return out if out.area > 0 else m


class CocoResultsSource:
    """Proposals read from a COCO results or COCO instances JSON file.

    Entries are matched to images by ``file_name`` stem (results may carry it, or the
    file's ``images`` list gives it) or else by ``image_id`` equal to the image's stem.
    """

    def __init__(self, path: str | Path, min_score: float = 0.0):
        from annotation.formats.coco import read_coco_results
        from annotation.formats.common import FormatError

        self.path = Path(path)
        self.label = f"COCO results {self.path.name}"
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            results = read_coco_results(data, str(self.path))
        except FileNotFoundError:
            raise ProposalError(f"{self.path}: proposals file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ProposalError(f"{self.path}: not a JSON file ({exc})") from None
        except FormatError as exc:
            raise ProposalError(str(exc)) from None
        self._by_key: dict[str, list] = {}
        for r in results:
            if r.score >= min_score:
                self._by_key.setdefault(r.image_key, []).append(r)

    def propose(self, image: EffortImage) -> list[ProposalMask]:
        from annotation.rle import RLEError

        out = []
        default_class = image.truths[0][0] if image.truths else "object"
        for r in self._by_key.get(image.key, []):
            try:
                mask = r.mask(*image.size)
            except RLEError as exc:
                raise ProposalError(f"{self.path}: a proposal for {image.key}: {exc}") from None
            if mask is not None:
                out.append(ProposalMask(mask, r.class_name or default_class, r.score))
        return out


def proposals_json(proposals: dict[str, list[ProposalMask]], images: dict[str, Path]) -> list[dict]:
    """Proposals as a COCO results list (``file_name``, ``category_name``, RLE, ``score``),
    which ``CocoResultsSource`` reads back: a run repeated without the model."""
    out = []
    for key, props in proposals.items():
        name = images[key].name if key in images else key
        for prop in props:
            out.append({"file_name": name, "category_name": prop.class_name, "score": float(prop.score),
                        "segmentation": prop.mask.to_rle()})
    return out


def source_for(kind: str, *, path: Optional[str] = None, quality: float = 0.5, seed: int = 0,
               min_score: float = 0.5) -> ProposalSource:
    """Build a source from command-line words: ``coco`` or ``degraded-truth``."""
    if kind == "degraded-truth":
        return DegradedTruthSource(quality, seed)
    if kind == "coco":
        if not path:
            raise ProposalError("--proposals FILE.json is needed for COCO-results proposals")
        return CocoResultsSource(path, min_score)
    raise ProposalError(f"unknown proposal source '{kind}' (coco, degraded-truth; model proposals: "
                        f"specula.effort_model.EngineSource)")

