"""Reading what ``specula eval`` compares: projects, COCO files and mask folders.

Every source becomes ``{image key: EvalImage}``, the key being the image file's stem
(so a prediction folder of ``123.png`` maps and a truth project holding ``123.jpg`` pair
up). Sources:

- a Specula project folder (``specula.db``): as truth, its accepted instances; as
  prediction, accepted (score 1) and proposed (their score) instances;
- a COCO instances JSON (``annotation.formats.coco.import_coco``), or a COCO
  *results* list together with the truth's images (``image_id`` as in the truth);
- a folder of mask images (or a data-set folder holding ``mask/``): grayscale
  images are one class, 0/255 masks or, for predictions, probability maps (any other
  grey levels, kept for the F-beta sweep and MAE); RGB images are colour-coded class
  masks read through a palette (default: mirror-glass of ``000``: mirror green, glass
  red, glass-in-mirror blue). A grayscale image does not say which class it holds:
  the class is ``--classes``' first name, or the class of one of the shared data sets
  (``DATASET_CLASSES``) when the folder is that data set (its ``image/`` and ``mask/``
  folders, or its ``mask/`` folder); otherwise the folder is refused (``SourceError``)
  rather than scored as a guessed class.

Instances of mask images are their 8-connected components.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from annotation.images import IMAGE_EXTENSIONS
from annotation.mask import Mask
from annotation.metrics import CocoInstance


class SourceError(ValueError):
    """A source that cannot be read; the message is one line saying what to do."""


DATASET_CLASSES = {"glass-gdd": "glass", "mirror-msd": "mirror", "cracks-cfd": "crack", "cracks-deepcrack": "crack"}


@dataclass
class EvalImage:
    """One image: ``(H, W)``, its instances, and per-class probability maps where a source has them."""

    key: str
    size: tuple[int, int]
    instances: list[CocoInstance] = field(default_factory=list)
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # class -> (H, W) float in [0, 1]

    def class_map(self, class_name: str, hard: bool = False) -> np.ndarray:
        """The class as one map: its probability map, else each pixel's best instance score."""
        if class_name in self.maps and not hard:
            return self.maps[class_name]
        out = np.zeros(self.size, np.float64)
        for inst in self.instances:
            if inst.class_name == class_name and isinstance(inst.mask, Mask):
                full = inst.mask.to_full()
                np.maximum(out, np.where(full, 1.0 if hard else float(inst.score), 0.0), out=out)
        if class_name in self.maps:
            return np.maximum(out, (self.maps[class_name] >= 0.5).astype(np.float64))
        return out


def load_source(path: str | Path, role: str, classes: Sequence[str] = (),
                palette: Optional[str] = None, truth: Optional[dict[str, EvalImage]] = None) -> dict[str, EvalImage]:
    """Read ``path`` as ``role`` (``"pred"`` or ``"gt"``); see the module docstring."""
    p = Path(path)
    if not p.exists():
        raise SourceError(f"{p}: no such file or folder")
    if p.is_dir() and (p / "specula.db").exists():
        return _load_project(p, role)
    if p.is_file() and p.suffix.lower() == ".json":
        return _load_json(p, role, truth)
    if p.is_dir():
        folder = p / "mask" if (p / "mask").is_dir() else p
        grey = classes[0] if classes else dataset_class(p)
        return _load_mask_folder(folder, role, grey, palette, p)
    raise SourceError(f"{p}: not a Specula project, COCO JSON or folder of masks")


def dataset_class(folder: Path) -> Optional[str]:
    """The class of a shared data set's masks when ``folder`` is that data set (its root,
    holding ``image/`` and ``mask/``, or its ``mask/``), else ``None``: a folder merely
    named like one is not trusted."""
    folder = Path(folder).resolve()
    root = folder.parent if folder.name == "mask" else folder
    if root.name in DATASET_CLASSES and (root / "image").is_dir() and (root / "mask").is_dir():
        return DATASET_CLASSES[root.name]
    return None


def _load_project(p: Path, role: str) -> dict[str, EvalImage]:
    from annotation.store import ProjectStore, StoreError

    try:
        store = ProjectStore.open(p, create=False, scan=False)
    except StoreError as exc:
        raise SourceError(str(exc)) from None
    states = ["accepted"] if role == "gt" else ["accepted", "proposed"]
    out: dict[str, EvalImage] = {}
    with store:
        for rec in store.images():
            if rec.error or rec.id is None:
                continue
            im = EvalImage(Path(rec.path).stem, rec.size)
            for inst in store.instances(rec.id, states=states):
                score = 1.0 if inst.state.value == "accepted" or inst.score is None else float(inst.score)
                im.instances.append(CocoInstance(inst.class_name, inst.mask, score))
            out[im.key] = im
    return out


def _load_json(p: Path, role: str, truth: Optional[dict[str, EvalImage]]) -> dict[str, EvalImage]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{p}: not a readable JSON file ({exc})") from None
    if isinstance(data, list):
        return _load_results(p, data, truth)
    try:
        from annotation.formats.coco import import_coco
        from annotation.formats.common import FormatError
    except ImportError:  # pragma: no cover - the formats package ships with annotation
        raise SourceError("COCO import is not available in this build") from None
    try:
        result = import_coco(p)
    except FormatError as exc:
        raise SourceError(str(exc)) from None
    out: dict[str, EvalImage] = {}
    for li in result.images:
        im = EvalImage(Path(li.path).stem, li.size)
        for inst in li.instances:
            if role == "gt" and inst.state != "accepted":
                continue
            score = 1.0 if inst.score is None else float(inst.score)
            im.instances.append(CocoInstance(inst.class_name, inst.mask, score, inst.iscrowd))
        out[im.key] = im
    return out


def _load_results(p: Path, entries: list, truth: Optional[dict[str, EvalImage]]) -> dict[str, EvalImage]:
    """A COCO results list: ``image_id`` is matched to the truth image of the same key or order."""
    from annotation.formats.coco import read_coco_results
    from annotation.formats.common import FormatError
    from annotation.rle import RLEError

    if truth is None:
        raise SourceError(f"{p}: a COCO results list needs the truth for image sizes; pass it as GT")
    keys = sorted(truth)
    out = {k: EvalImage(k, truth[k].size) for k in keys}
    try:
        results = read_coco_results(entries, str(p))
    except FormatError as exc:
        raise SourceError(str(exc)) from None
    for n, r in enumerate(results):
        key = r.image_key if r.image_key in out else None
        if key is None and isinstance(r.image_id, int) and 1 <= r.image_id <= len(keys):
            key = keys[r.image_id - 1]
        if key is None:
            continue
        try:
            mask = r.mask(*out[key].size)
        except RLEError as exc:
            raise SourceError(f"{p}: result {n}: {exc}") from None
        if mask is not None:
            out[key].instances.append(CocoInstance(str(r.class_name), mask, r.score))
    return out


def _palette_colours(palette: Optional[str]) -> dict[tuple[int, int, int], str]:
    from annotation.palette import builtin_palette, resolve_palette

    pal = resolve_palette(palette) if palette else builtin_palette()
    return {tuple(int(v) for v in pal.color_of(n)): n for n in pal.names}


def _load_mask_folder(folder: Path, role: str, class_name: Optional[str], palette: Optional[str],
                      given: Path) -> dict[str, EvalImage]:
    """``class_name``: the class of grayscale masks (``None``: unknown, such a mask is refused)."""
    from PIL import Image

    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise SourceError(f"{folder}: no mask images in this folder")
    colours: Optional[dict[tuple[int, int, int], str]] = None
    out: dict[str, EvalImage] = {}
    for f in files:
        try:
            with Image.open(f) as img:
                img.load()
                if img.mode in ("P", "RGB", "RGBA", "PA"):
                    arr = np.asarray(img.convert("RGB"))
                    if arr[..., 0].tobytes() == arr[..., 1].tobytes() == arr[..., 2].tobytes():
                        arr = arr[..., 0]
                else:
                    arr = np.asarray(img.convert("L") if img.mode not in ("L", "1", "I;16", "I") else img)
        except OSError as exc:
            raise SourceError(f"{f}: cannot read the mask image ({exc})") from None
        im = EvalImage(f.stem, (int(arr.shape[0]), int(arr.shape[1])))
        if arr.ndim == 3:
            colours = colours if colours is not None else _palette_colours(palette)
            for rgb, name in colours.items():
                hit = np.all(arr == np.array(rgb, np.uint8), axis=2)
                im.instances += [CocoInstance(name, m) for m in Mask.from_full(hit).components()]
        else:
            if class_name is None:
                which = "PRED" if role == "pred" else "GT"
                raise SourceError(f"{given} ({which}): grayscale masks do not say which class they hold; "
                                  f"name it with --classes NAME[,NAME] (or use colour-coded masks and --palette)")
            levels = arr.astype(np.float64) / (255.0 if arr.dtype != bool and arr.max(initial=0) > 1 else 1.0)
            if arr.dtype == np.uint16 or arr.dtype == np.int32:
                levels = arr.astype(np.float64) / max(1.0, float(arr.max(initial=0)))
            soft = not np.all((levels == 0) | (levels == 1))
            hard = levels >= 0.5
            if soft and role == "pred":
                im.maps[class_name] = levels
            for m in Mask.from_full(hard).components():
                score = float(levels[m.y0 : m.y0 + m.array.shape[0], m.x0 : m.x0 + m.array.shape[1]][m.array].mean())
                im.instances.append(CocoInstance(class_name, m, score if soft else 1.0))
        out[im.key] = im
    return out
