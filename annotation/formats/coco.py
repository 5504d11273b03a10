"""COCO instances JSON: import (polygons, compressed and uncompressed RLE, crowd) and export.

Import rasterises polygons with pycocotools, COCO's own reference, so a file
reads here as it reads in every COCO tool. Export writes compressed RLE by default;
``polygons=True`` writes pixel-edge polygons (``pixel_polygons``) that pycocotools
turns back into exactly the same pixels, holes included (keyhole rings), and falls
back to RLE for an instance where it would not (never seen, but checked, and said).

Provenance survives: each annotation carries ``score`` and the extra fields
``specula_origin`` and ``specula_state``, which other COCO tools ignore.
"""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from annotation.document import InstanceState
from annotation.formats.common import (
    Color,
    FormatError,
    ImportResult,
    LabelledImage,
    LabelledInstance,
    Progress,
    class_colors,
    read_json,
    report,
    safe_relative,
    write_json,
)
from annotation.formats.pixel_polygons import coco_polygons, polygons_reproduce, rasterize_coco_polygons
from annotation.mask import Mask
from annotation.palette import Palette
from annotation.rle import RLEError, decode_full

_STATES = {s.value for s in InstanceState}


# ------------------------------------------------------------------ import
def _key(value: Any) -> Any:
    """Ids compared by value: some writers put ``"3"`` where others put ``3``."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _color(value: Any) -> Optional[Color]:
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value):
        rgb = tuple(int(v) for v in value)
        if all(0 <= v <= 255 for v in rgb):
            return rgb  # type: ignore[return-value]
    return None


class _ImageFinder:
    """Looks for COCO ``file_name``s on disk: under the image root, or by file name nearby.

    COCO files usually sit in ``annotations/`` with the photos in ``images/`` or
    ``images/<subset>/``; when the path as written is not found, a one-time index
    of file names under the annotation folder's parent settles it.
    """

    def __init__(self, json_path: Path, image_root: Optional[Path]):
        self.roots = [Path(image_root)] if image_root is not None else [json_path.parent, json_path.parent.parent]
        self.search_root = Path(image_root) if image_root is not None else json_path.parent.parent
        self._by_name: Optional[dict[str, list[Path]]] = None

    def find(self, file_name: str) -> Optional[Path]:
        rel = safe_relative(file_name)
        if rel is not None:
            for root in self.roots:
                cand = root.joinpath(*rel.parts)
                if cand.is_file():
                    return cand
        if self._by_name is None:
            self._by_name = {}
            count = 0
            for dirpath, dirnames, filenames in os.walk(self.search_root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in filenames:
                    self._by_name.setdefault(name, []).append(Path(dirpath, name))
                    count += 1
                if count > 200_000:  # a COCO file next to a whole disk: stop looking
                    break
        name = Path(str(file_name).replace("\\", "/")).name
        hits = self._by_name.get(name, [])
        return hits[0] if len(hits) == 1 else None


def _segmentation_mask(seg: Any, bbox: Any, size: tuple[int, int], where: str, warnings: list[str]) -> Optional[Mask]:
    """One annotation's ``segmentation`` (or, lacking one, its ``bbox``) as a Mask."""
    h, w = size
    if isinstance(seg, dict):
        rle_size = seg.get("size")
        if not (isinstance(rle_size, list) and len(rle_size) == 2):
            raise ValueError("RLE without a [height, width] 'size'")
        if [int(rle_size[0]), int(rle_size[1])] != [h, w]:
            raise ValueError(f"RLE size {rle_size[0]}x{rle_size[1]} (h x w) is not the image size {h}x{w}")
        try:
            return Mask.from_full(decode_full(seg))
        except RLEError as exc:
            raise ValueError(str(exc)) from None
    if isinstance(seg, list) and seg:
        polys = []
        for k, poly in enumerate(seg):
            if not isinstance(poly, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly):
                raise ValueError(f"polygon {k} is not a list of numbers")
            if len(poly) < 6 or len(poly) % 2:
                warnings.append(f"{where}: polygon {k} has {len(poly)} numbers (needs an even count >= 6); skipped")
                continue
            polys.append(poly)
        if not polys:
            raise ValueError("no usable polygon")
        return rasterize_coco_polygons(polys, size)
    if isinstance(seg, list) or seg is None:  # detection-only annotation
        if isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox):
            x, y, bw, bh = (float(v) for v in bbox)
            if bw > 0 and bh > 0:
                warnings.append(f"{where}: no segmentation; its bbox is imported as a box-shaped mask")
                return rasterize_coco_polygons([[x, y, x + bw, y, x + bw, y + bh, x, y + bh]], size)
        raise ValueError("empty segmentation and no usable bbox")
    raise ValueError(f"segmentation of type {type(seg).__name__} is neither polygons nor RLE")


def import_coco(path: str | Path, image_root: Optional[str | Path] = None, *, progress: Progress = None) -> ImportResult:
    """Read a COCO instances file.

    ``image_root`` is the folder ``file_name``s are relative to (default: beside the
    file, its parent, or found by file name below the parent). Images missing on
    disk are imported anyway (their masks need only the size) and reported.
    Annotations that cannot be read are skipped with a warning; a file whose every
    annotation fails, or which is not COCO at all, raises ``FormatError``.
    """
    path = Path(path)
    data = read_json(path, "COCO")
    if not isinstance(data, dict):
        raise FormatError(f"{path}: a COCO file is a JSON object with 'images' and 'annotations'; this is a {type(data).__name__}")
    images_raw, anns_raw, cats_raw = data.get("images"), data.get("annotations", []), data.get("categories", [])
    if not isinstance(images_raw, list):
        raise FormatError(f"{path}: no 'images' list, so not a COCO instances file; pick the instances_*.json file")
    if not isinstance(anns_raw, list) or not isinstance(cats_raw, list):
        raise FormatError(f"{path}: 'annotations' and 'categories' must be lists; the file is damaged, export it again")
    warnings: list[str] = []
    classes: dict[str, Optional[Color]] = {}
    cat_names: dict[Any, str] = {}
    for c in cats_raw:
        if not isinstance(c, dict) or "id" not in c or not isinstance(c.get("name"), str):
            warnings.append(f"{path}: category {c!r:.80} has no id or name; skipped")
            continue
        cat_names[_key(c["id"])] = c["name"]
        classes[c["name"]] = _color(c.get("color"))
    finder = _ImageFinder(path, Path(image_root) if image_root is not None else None)
    by_id: dict[Any, LabelledImage] = {}
    order: list[LabelledImage] = []
    for k, im in enumerate(images_raw):
        try:
            h, w, name = int(im["height"]), int(im["width"]), im["file_name"]
            if h <= 0 or w <= 0 or not isinstance(name, str):
                raise ValueError("bad size or file name")
            img_id = _key(im["id"])
        except (KeyError, TypeError, ValueError) as exc:
            warnings.append(f"{path}: image entry {k} lacks a valid id, file_name, width or height ({exc}); skipped")
            continue
        file = finder.find(name)
        if file is None:
            warnings.append(f"{path}: image {name} not found on disk; its annotations are imported anyway")
        li = LabelledImage(name.replace("\\", "/"), (h, w), [], file)
        by_id[img_id] = li
        order.append(li)
    failures: list[str] = []
    total = len(anns_raw)
    for k, ann in enumerate(anns_raw):
        where = f"annotation {ann.get('id', k) if isinstance(ann, dict) else k}"
        try:
            if not isinstance(ann, dict):
                raise ValueError("not an object")
            img = by_id.get(_key(ann.get("image_id")))
            if img is None:
                raise ValueError(f"image_id {ann.get('image_id')!r} names no image of the file")
            name = cat_names.get(_key(ann.get("category_id")))
            if name is None:
                raise ValueError(f"category_id {ann.get('category_id')!r} names no category of the file")
            mask = _segmentation_mask(ann.get("segmentation"), ann.get("bbox"), img.size, f"{path}: {where}", warnings)
            if mask is None or mask.is_empty():
                raise ValueError("the segmentation covers no pixel")
            score = ann.get("score")
            score = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None
            state = ann.get("specula_state", "accepted")
            if state not in _STATES:
                warnings.append(f"{path}: {where}: unknown specula_state {state!r}; read as accepted")
                state = "accepted"
            origin = ann.get("specula_origin")
            img.instances.append(
                LabelledInstance(
                    class_name=name,
                    mask=mask,
                    score=score,
                    origin=origin if isinstance(origin, str) and origin else "manual",
                    iscrowd=bool(int(ann.get("iscrowd", 0) or 0)),
                    state=state,
                )
            )
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            failures.append(f"{where}: {exc}")
        report(progress, k + 1, total)
    if failures and len(failures) == total:
        raise FormatError(
            f"{path}: none of its {total} annotations could be read (first: {failures[0]}); "
            f"the file is damaged or not COCO instances, export it again"
        )
    warnings.extend(f"{path}: {f}; skipped" for f in failures)
    return ImportResult(order, classes, warnings)


# ------------------------------------------------------------------ export
def _bbox(mask: Mask) -> list[float]:
    x0, y0, x1, y1 = mask.bbox
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def export_coco(
    images: Sequence[LabelledImage],
    palette: Palette,
    out_path: str | Path,
    *,
    polygons: bool = False,
    progress: Progress = None,
) -> list[str]:
    """Write a COCO instances file; returns warnings.

    Categories come from the palette (ids 1..n in palette order, with a ``color``
    field that other tools ignore); a class an instance uses but the palette lacks
    is appended. Crowd instances are always RLE (COCO's rule).
    """
    out_path = Path(out_path)
    warnings: list[str] = []
    names = list(palette.names)
    colors: dict[str, Optional[Color]] = {c.name: c.color for c in palette.classes}
    for name in class_colors(images):
        if name not in colors:
            warnings.append(f"class '{name}' is not in palette '{palette.name}'; written as an extra category")
            names.append(name)
            colors[name] = None
    cat_id = {n: i + 1 for i, n in enumerate(names)}
    categories = []
    for n in names:
        cat: dict[str, Any] = {"id": cat_id[n], "name": n, "supercategory": ""}
        if colors[n] is not None:
            cat["color"] = list(colors[n])  # type: ignore[arg-type]
        categories.append(cat)
    out_images, annotations = [], []
    ann_id = 0
    for i, img in enumerate(images):
        image_id = i + 1
        h, w = img.size
        out_images.append({"id": image_id, "file_name": img.path, "height": int(h), "width": int(w)})
        for inst in img.instances:
            mask = inst.mask
            if mask.is_empty():
                warnings.append(f"{img.path}: an empty '{inst.class_name}' instance was not written")
                continue
            if tuple(mask.image_size) != (h, w):
                warnings.append(f"{img.path}: a '{inst.class_name}' mask is sized for another image; not written")
                continue
            seg: Any
            if polygons and not inst.iscrowd:
                seg = coco_polygons(mask)
                if not polygons_reproduce(seg, mask):
                    warnings.append(
                        f"{img.path}: a '{inst.class_name}' instance does not survive as polygons; written as RLE"
                    )
                    seg = mask.to_rle()
            else:
                seg = mask.to_rle()
            ann_id += 1
            ann: dict[str, Any] = {
                "id": ann_id,
                "image_id": image_id,
                "category_id": cat_id[inst.class_name],
                "segmentation": seg,
                "area": float(mask.area),
                "bbox": _bbox(mask),
                "iscrowd": int(bool(inst.iscrowd)),
                "specula_origin": inst.origin,
                "specula_state": str(getattr(inst.state, "value", inst.state)),
            }
            if inst.score is not None:
                ann["score"] = float(inst.score)
            annotations.append(ann)
        report(progress, i + 1, len(images))
    data = {
        "info": {
            "description": "exported by Specula",
            "date_created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
        "licenses": [],
        "categories": categories,
        "images": out_images,
        "annotations": annotations,
    }
    write_json(out_path, data)
    return warnings


@dataclass(frozen=True)
class CocoResult:
    """One prediction of a COCO results list (or one annotation of a COCO file read as a
    prediction). ``image_key`` is the image's file-name stem when the entry or the file's
    ``images`` list names it, else ``str(image_id)``."""

    image_key: str
    image_id: Any
    class_name: Optional[str]
    score: float
    segmentation: Any

    def mask(self, height: int, width: int) -> Optional[Mask]:
        """The prediction's pixels on an image of that size, None when it has none.
        Raises ``RLEError`` for an RLE of another size."""
        from annotation.rle import segmentation_to_full

        full = segmentation_to_full(self.segmentation, height, width)
        return Mask.from_full(full) if full.any() else None


def read_coco_results(data: Any, where: str) -> list[CocoResult]:
    """The predictions of a COCO results list, or of a COCO instances file's annotations
    (``data`` as parsed from JSON); ``FormatError`` naming ``where`` for anything else."""
    if isinstance(data, dict):
        names = {im.get("id"): Path(str(im.get("file_name", im.get("id")))).stem
                 for im in data.get("images", []) if isinstance(im, dict)}
        cats = {c.get("id"): c.get("name") for c in data.get("categories", []) if isinstance(c, dict)}
        entries = data.get("annotations", [])
    elif isinstance(data, list):
        names, cats, entries = {}, {}, data
    else:
        raise FormatError(f"{where}: expected a COCO results list or a COCO file")
    out = []
    for n, e in enumerate(entries):
        if not isinstance(e, dict) or "segmentation" not in e:
            raise FormatError(f"{where}: entry {n} has no segmentation; not COCO results")
        iid = e.get("image_id")
        key = Path(str(e["file_name"])).stem if "file_name" in e else names.get(iid, str(iid))
        cls = cats.get(e.get("category_id"), e.get("category_name"))
        try:
            score = float(e.get("score", 1.0))
        except (TypeError, ValueError):
            raise FormatError(f"{where}: entry {n} has a score that is not a number") from None
        out.append(CocoResult(key, iid, None if cls is None else str(cls), score, e["segmentation"]))
    return out
