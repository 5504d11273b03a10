"""COCO instances JSON: import (polygons, compressed and uncompressed RLE, crowd) and export.

Import rasterises polygons with pycocotools, COCO's own reference, so a file
reads here as it reads in every COCO tool. Export writes compressed RLE by default;
``polygons=True`` writes pixel-edge polygons (``pixel_polygons``) that pycocotools
turns back into exactly the same pixels, holes included (keyhole rings), and falls
back to RLE for an instance where it would not (never seen, but checked, and said).

Provenance survives: each annotation carries ``score`` and the extra fields
``specula_origin`` and ``specula_state``, which other COCO tools ignore. So do
``iscrowd``, instance attributes (``attributes``, as CVAT's COCO export writes them)
and image tags (``specula_tags`` on the image entry).

Validation at the edge is in ``_CocoReader`` (see ``import_coco``); the numbers it
checks against are in ``annotation.formats.limits``.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from annotation import rle as rle_codec
from annotation.document import InstanceState
from annotation.formats.common import (
    Color,
    FormatError,
    ImportResult,
    LabelledImage,
    LabelledInstance,
    Progress,
    Tally,
    class_colors,
    element,
    is_file,
    path_text_problem,
    read_json,
    report,
    safe_relative,
    shown,
    too_many_instances,
    write_json,
)
from annotation.formats.limits import (
    MAX_INSTANCES_PER_IMAGE,
    MAX_POLYGON_VERTICES,
    MAX_RING_OUTLINE,
    MAX_TEXT_LENGTH,
    class_name_problem,
    clip_box,
    name_problem,
    size_problem,
)
from annotation.formats.pixel_polygons import (
    clip_ring,
    coco_polygons,
    polygons_reproduce,
    rasterize_coco_polygons,
    ring_outline,
)
from annotation.mask import Mask
from annotation.palette import Palette
from annotation.rle import RLEError, decode_full

_STATES = {s.value for s in InstanceState}


# ------------------------------------------------------------------ import
_DAMAGED = "the file is damaged or not COCO instances, export it again"


class _Skip(Exception):
    """One annotation or image entry that cannot be read; ``where`` names its element."""

    def __init__(self, where: str, why: str):
        super().__init__(f"{where}: {why}")


def _key(value: Any) -> Any:
    """Ids compared by value: some writers put ``"3"`` where others put ``3``."""
    if isinstance(value, str) and len(value) <= 18 and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _id(entry: dict, field: str, where: str) -> Any:
    """An id field as a dict key; ``_Skip`` for a list, an object, a bool or nothing."""
    if field not in entry:
        raise _Skip(where, "missing")
    value = entry[field]
    if type(value) is int or type(value) is str or (type(value) is float and value.is_integer()):
        return _key(value)
    raise _Skip(where, f"{shown(value)} is not an id (an integer or a text)")


def _whole(value: Any, where: str) -> int:
    """A size field: an integer (or an integral float, as some writers put it)."""
    if type(value) is int or (type(value) is float and value.is_integer()):
        return int(value)
    raise _Skip(where, f"{shown(value)} is not a whole number of pixels")


def _color(value: Any) -> Optional[Color]:
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(type(v) in (int, float) for v in value):
        rgb = tuple(int(v) for v in value)
        if all(0 <= v <= 255 for v in rgb):
            return rgb  # type: ignore[return-value]
    return None


def compressed_rle_problem(counts: str, height: int, width: int) -> Optional[str]:
    """Why a compressed COCO RLE string is not a mask of ``height`` x ``width`` (None if it is).

    pycocotools decodes whatever it is given: runs that stop short leave the rest of
    its buffer as it was (a random instance, imported as if fine), runs that go on
    write past it. So the runs are read first (``rle.string_to_counts``, pycocotools'
    own decoding, vectorised) and must be non-negative and cover the image exactly.
    """
    if not counts.isascii():
        return "counts hold characters outside COCO's compressed RLE alphabet"
    c = np.frombuffer(counts.encode("ascii"), np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return "counts are empty"
    bad = np.flatnonzero((c < 0) | (c > 63))
    if bad.size:
        i = int(bad[0])
        return f"counts character {counts[i]!r} at {i} is outside COCO's compressed RLE alphabet ('0' to 'o')"
    more = (c & 0x20) != 0
    if more[-1]:
        return "counts end inside a number (the string is cut short)"
    ends = np.flatnonzero(~more)
    if int(np.diff(ends, prepend=-1).max()) > 7:  # 35 bits: no run of an image is that long
        return "counts hold a number too long for any run of an image"
    runs = rle_codec.string_to_counts(counts)
    negative = np.flatnonzero(runs < 0)
    if negative.size:
        i = int(negative[0])
        return f"run {i} of the counts is negative ({int(runs[i])})"
    total = int(runs.sum())
    if total != height * width:
        return f"counts sum to {total}, expected {height * width} for the image's {height} x {width} pixels"
    return None


def _rle_mask(seg: dict, where: str, size: tuple[int, int]) -> Mask:
    """A validated RLE ``segmentation`` (compressed or not) as a Mask."""
    h, w = size
    rle_size = seg.get("size")
    if not (type(rle_size) is list and len(rle_size) == 2 and all(type(v) is int for v in rle_size)):
        raise _Skip(f"{where}.size", f"{shown(rle_size)} is not the [height, width] of an RLE")
    if rle_size != [h, w]:
        raise _Skip(f"{where}.size", f"RLE size {rle_size[0]}x{rle_size[1]} (h x w) is not the image size {h}x{w}")
    counts = seg.get("counts")
    if type(counts) is str:
        problem = compressed_rle_problem(counts, h, w)
        if problem:
            raise _Skip(f"{where}.counts", problem)
    elif type(counts) is list:
        if not all(type(v) is int and v >= 0 for v in counts):
            i = next(i for i, v in enumerate(counts) if not (type(v) is int and v >= 0))
            raise _Skip(f"{where}.counts[{i}]", f"{shown(counts[i])} is not a run length (a whole number >= 0)")
        if sum(counts) != h * w:
            raise _Skip(f"{where}.counts", f"counts sum to {sum(counts)}, expected {h * w} for the image's {h} x {w} pixels")
    else:
        raise _Skip(f"{where}.counts", f"{shown(counts)} is neither compressed (a text) nor uncompressed (a list) RLE")
    return Mask.from_full(decode_full({"size": [h, w], "counts": counts}))


class _CocoReader:
    """Reads one COCO file: every value checked where it is read (``FormatError`` for the
    file, ``_Skip`` for one entry), nothing unchecked reaches pycocotools."""

    def __init__(self, path: Path):
        self.path = path
        self.warnings: list[str] = []
        self.tally = Tally()
        self.outside = 0  # polygon vertices outside their image
        self.far = 0  # ... of which clipped to the image's box (more than one image size away)
        self.first_outside = ""

    def refuse(self, where: str, why: str, advice: str = _DAMAGED) -> FormatError:
        return FormatError(f"{self.path}: {where}: {why}; {advice}")

    # ---- categories
    def categories(self, cats: list) -> tuple[dict[Any, str], dict[str, Optional[Color]]]:
        names: dict[Any, str] = {}
        first: dict[Any, int] = {}
        classes: dict[str, Optional[Color]] = {}
        for k, c in enumerate(cats):
            where = element("categories", k)
            if not isinstance(c, dict) or "id" not in c or "name" not in c:
                self.tally.add("categories without an id or a name skipped", where)
                continue
            try:
                cid = _id(c, "id", f"{where}.id")
            except _Skip as exc:
                raise FormatError(f"{self.path}: {exc}; {_DAMAGED}") from None
            name = c["name"]
            problem = class_name_problem(name)
            if problem:
                raise self.refuse(f"{where}.name", problem, "rename the category in the tool that wrote the file")
            if cid in names and names[cid] != name:
                raise self.refuse(f"{where}.id", f"id {cid} is also category {first[cid]} ({shown(names[cid])})")
            names[cid] = name
            first.setdefault(cid, k)
            classes.setdefault(name, _color(c.get("color")))
        return names, classes

    # ---- images
    def image(self, im: Any, k: int, finder: "_ImageFinder") -> tuple[Any, LabelledImage]:
        where = element("images", k)
        if not isinstance(im, dict):
            raise _Skip(where, f"{shown(im)} is not an image object")
        img_id = _id(im, "id", f"{where}.id")
        name = im.get("file_name")
        if type(name) is not str or not name.strip():
            raise _Skip(f"{where}.file_name", f"{shown(name)} is not a file name")
        problem = path_text_problem(name)
        if problem:
            raise _Skip(f"{where}.file_name", f"{shown(name)} {problem}")
        if "height" not in im or "width" not in im:
            raise _Skip(where, "no height or width")
        h, w = _whole(im["height"], f"{where}.height"), _whole(im["width"], f"{where}.width")
        problem = size_problem(h, w)
        if problem:  # before anything of that size exists; the whole file, so the user sees it
            raise self.refuse(f"{where} ({name})", problem,
                              "fix the size in the file, or raise the limit if the image really is that large")
        tags = self.tags(im.get("specula_tags"), f"{where}.specula_tags")
        file = finder.find(name)
        if file is None:
            self.tally.add("images not found on disk; their annotations are imported anyway", name)
        return img_id, LabelledImage(name.replace("\\", "/"), (h, w), [], file, tags=tags)

    def tags(self, raw: Any, where: str) -> list[str]:
        if raw is None:
            return []
        if type(raw) is not list:
            self.tally.add("specula_tags that are not a list of names; not kept", where)
            return []
        out = []
        for t in raw:
            if name_problem(t, "tag name"):
                self.tally.add("image tags that cannot be a name; not kept", where)
            else:
                out.append(t)
        return out

    # ---- annotations
    def annotation(self, ann: Any, k: int, by_id: dict[Any, LabelledImage], cat_names: dict[Any, str]) -> tuple[LabelledImage, LabelledInstance]:
        where = element("annotations", k)
        if not isinstance(ann, dict):
            raise _Skip(where, f"{shown(ann)} is not an annotation object")
        img_key = _id(ann, "image_id", f"{where}.image_id")
        img = by_id.get(img_key)
        if img is None:
            raise _Skip(f"{where}.image_id", f"{shown(ann['image_id'])} names no image of the file")
        cat_key = _id(ann, "category_id", f"{where}.category_id")
        name = cat_names.get(cat_key)
        if name is None:
            raise _Skip(f"{where}.category_id", f"{shown(ann['category_id'])} names no category of the file")
        crowd = ann.get("iscrowd", 0)
        if type(crowd) not in (int, bool, float) or crowd not in (0, 1):
            raise _Skip(f"{where}.iscrowd", f"{shown(crowd)} is not 0 or 1")
        mask = self.mask(ann, where, img.size)
        if mask.is_empty():
            raise _Skip(f"{where}.segmentation", "covers no pixel of the image")
        score = ann.get("score")
        if score is not None and type(score) not in (int, float):
            raise _Skip(f"{where}.score", f"{shown(score)} is not a number")
        state = ann.get("specula_state", "accepted")
        if state not in _STATES:
            self.tally.add("annotations with an unknown specula_state; read as accepted", f"{where}.specula_state")
            state = "accepted"
        origin = ann.get("specula_origin")
        if origin is not None and (type(origin) is not str or not origin or name_problem(origin, "origin")):
            self.tally.add("specula_origin values that are not a short name; read as manual", f"{where}.specula_origin")
            origin = None
        if ann.get("keypoints"):
            self.tally.add("annotations with keypoints: the keypoints are not kept (Specula stores masks)", where)
        inst = LabelledInstance(
            class_name=name,
            mask=mask,
            score=None if score is None else float(score),
            origin=origin or "manual",
            iscrowd=bool(crowd),
            state=state,
            attributes=self.attributes(ann.get("attributes"), f"{where}.attributes"),
        )
        return img, inst

    def attributes(self, raw: Any, where: str) -> dict:
        """CVAT's COCO export writes ``attributes`` (``occluded`` and the label's own)."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.tally.add("'attributes' that are not an object; not kept", where)
            return {}
        out: dict[str, Any] = {}
        for name, value in raw.items():
            if name_problem(name, "attribute name"):
                self.tally.add("attributes whose name cannot be a name; not kept", where)
            elif type(value) in (bool, int, float) or (type(value) is str and len(value) <= MAX_TEXT_LENGTH):
                out[name] = value
            else:
                self.tally.add(
                    f"attribute values that are not a number, true/false or a text of at most "
                    f"{MAX_TEXT_LENGTH} characters; not kept", f"{where}.{name}" if name.isidentifier() else where)
        return out

    def mask(self, ann: dict, where: str, size: tuple[int, int]) -> Mask:
        seg = ann.get("segmentation")
        swhere = f"{where}.segmentation"
        if isinstance(seg, dict):
            return _rle_mask(seg, swhere, size)
        if isinstance(seg, list) and seg:
            polys = self.polygons(seg, swhere, size)
            if not polys:
                raise _Skip(swhere, "no polygon with 3 points or more")
            return rasterize_coco_polygons(polys, size)
        if isinstance(seg, list) or seg is None:  # detection-only annotation
            bbox = ann.get("bbox")
            if type(bbox) is list and len(bbox) == 4 and all(type(v) in (int, float) for v in bbox):
                x, y, bw, bh = (float(v) for v in bbox)
                if bw > 0 and bh > 0:
                    self.tally.add("annotations without a segmentation imported as their bbox (a box-shaped mask)",
                                   where)
                    polys = self.polygons([[x, y, x + bw, y, x + bw, y + bh, x, y + bh]], f"{where}.bbox", size)
                    return rasterize_coco_polygons(polys, size) if polys else Mask.empty(size)
            raise _Skip(swhere, "empty, and no usable bbox [x, y, width, height]")
        raise _Skip(swhere, f"{shown(seg)} is neither polygons (a list of lists) nor RLE (an object)")

    def polygons(self, seg: list, where: str, size: tuple[int, int]) -> list[list[float]]:
        """Polygons checked (numbers, vertex count, outline) and clipped to the image's box."""
        h, w = size
        box = clip_box(h, w)
        out = []
        for j, poly in enumerate(seg):
            pw = f"{where}[{j}]"
            if type(poly) is not list:
                raise _Skip(pw, f"{shown(poly)} is not a polygon (a list of numbers x1, y1, x2, y2, ...)")
            if not all(type(v) is float or type(v) is int for v in poly):
                i = next(i for i, v in enumerate(poly) if not (type(v) is float or type(v) is int))
                raise _Skip(f"{pw}[{i}]", f"{shown(poly[i])} is not a number")
            if len(poly) > 2 * MAX_POLYGON_VERTICES:
                raise _Skip(pw, f"{len(poly) // 2} vertices, over the limit of {MAX_POLYGON_VERTICES} a polygon")
            if len(poly) < 6 or len(poly) % 2:
                self.tally.add("polygons with fewer than 3 points (or an odd count of numbers) skipped", pw)
                continue
            xy = np.asarray(poly, np.float64).reshape(-1, 2)
            outside = int(((xy[:, 0] < 0) | (xy[:, 0] > w) | (xy[:, 1] < 0) | (xy[:, 1] > h)).sum())
            if outside:
                self.outside += outside
                self.first_outside = self.first_outside or pw
                far = int(((xy[:, 0] < box[0]) | (xy[:, 0] > box[2]) | (xy[:, 1] < box[1]) | (xy[:, 1] > box[3])).sum())
                if far:
                    self.far += far
                    xy = clip_ring(xy, box)
                    if len(xy) < 3:
                        continue  # wholly outside the image
            outline = ring_outline(xy)
            if outline > MAX_RING_OUTLINE:
                raise _Skip(pw, f"an outline of {outline:.0f} pixels, over the limit of {MAX_RING_OUTLINE} a polygon")
            out.append(xy.ravel().tolist())
        return out

    def summary(self) -> list[str]:
        lines = self.tally.lines(str(self.path))
        if self.outside:
            far = (f", {self.far} of them more than one image size away, clipped to that distance first"
                   if self.far else "")
            lines.append(f"{self.path}: {self.outside} polygon vertices lie outside their image{far}; "
                         f"the masks end at the image's edge (first: {self.first_outside})")
        return lines


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
                if is_file(cand):
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


def import_coco(path: str | Path, image_root: Optional[str | Path] = None, *, progress: Progress = None) -> ImportResult:
    """Read a COCO instances file.

    ``image_root`` is the folder ``file_name``s are relative to (default: beside the
    file, its parent, or found by file name below the parent). Images missing on
    disk are imported anyway (their masks need only the size) and reported.

    Validation at the edge: the file as a whole is refused with one line naming the
    element (``FormatError``) when it is not JSON a tool could have written (NaN,
    infinities, integers beyond int64, lone surrogates, nesting over
    ``MAX_JSON_DEPTH``), when a category's name cannot be a class name, two
    categories share an id, or an image is declared over the pixel limit. One
    annotation that cannot be read (an id that is a list, RLE counts that do not
    cover the image, a polygon over ``MAX_POLYGON_VERTICES``) is skipped and said; a
    file whose every annotation fails raises. Vertices outside the image are kept
    within one image size and clipped beyond (one warning counts them), so 1e30
    never reaches pycocotools. What COCO carries that Specula cannot keep
    (keypoints, attribute values that are lists) is counted, one warning per kind.
    """
    path = Path(path)
    data = read_json(path, "COCO")
    if not isinstance(data, dict):
        raise FormatError(f"{path}: a COCO file is a JSON object with 'images' and 'annotations'; this is {shown(data)}")
    images_raw, anns_raw, cats_raw = data.get("images"), data.get("annotations", []), data.get("categories", [])
    if not isinstance(images_raw, list):
        raise FormatError(f"{path}: no 'images' list, so not a COCO instances file; pick the instances_*.json file")
    if not isinstance(anns_raw, list) or not isinstance(cats_raw, list):
        raise FormatError(f"{path}: 'annotations' and 'categories' must be lists; the file is damaged, export it again")
    reader = _CocoReader(path)
    cat_names, classes = reader.categories(cats_raw)
    finder = _ImageFinder(path, Path(image_root) if image_root is not None else None)
    by_id: dict[Any, LabelledImage] = {}
    order: list[LabelledImage] = []
    skipped: list[str] = []
    for k, im in enumerate(images_raw):
        try:
            img_id, li = reader.image(im, k, finder)
            if img_id in by_id:
                raise _Skip(element("images", k, "id"), f"{shown(img_id)} is the id of an earlier image too")
        except _Skip as exc:
            reader.warnings.append(f"{path}: {exc}; skipped")
            skipped.append(f"{path}: {exc}")
            continue
        by_id[img_id] = li
        order.append(li)
    # an image with more annotations than any image has instances: refused before any is drawn
    per_image = Counter(
        _key(a.get("image_id")) for a in anns_raw
        if isinstance(a, dict) and type(a.get("image_id")) in (int, str, float)
    )
    crowded = {i for i, n in per_image.items() if n > MAX_INSTANCES_PER_IMAGE and i in by_id}
    for img_id in crowded:
        why = f"{path}: image {by_id[img_id].path}: {too_many_instances(per_image[img_id])}; its labels were skipped"
        reader.warnings.append(why)
        skipped.append(why)
        order.remove(by_id.pop(img_id))
    failures: list[str] = []
    total = len(anns_raw)
    for k, ann in enumerate(anns_raw):
        if isinstance(ann, dict) and type(ann.get("image_id")) in (int, str, float) and _key(ann["image_id"]) in crowded:
            continue
        try:
            img, inst = reader.annotation(ann, k, by_id, cat_names)
        except _Skip as exc:
            failures.append(str(exc))
        except RLEError as exc:  # checked above; pycocotools had the last word
            failures.append(f"{element('annotations', k)}: {exc}")
        else:
            img.instances.append(inst)
        report(progress, k + 1, total)
    if failures and len(failures) == total:
        raise FormatError(
            f"{path}: none of its {total} annotations could be read (first: {failures[0]}); {_DAMAGED}"
        )
    warnings = reader.warnings + reader.summary() + [f"{path}: {f}; skipped" for f in failures]
    return ImportResult(order, classes, warnings, images_skipped=skipped, labels_skipped=len(failures))


# ------------------------------------------------------------------ export
def _bbox(mask: Mask) -> list[float]:
    x0, y0, x1, y1 = mask.bbox
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def _within_limits(polygons: list[list[float]]) -> bool:
    """Whether the importer would read these polygons back (vertex count and outline)."""
    return all(len(p) <= 2 * MAX_POLYGON_VERTICES and ring_outline(np.asarray(p)) <= MAX_RING_OUTLINE
               for p in polygons)


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
    is appended. Crowd instances are always RLE (COCO's rule); a polygon the importer
    would refuse (over ``MAX_POLYGON_VERTICES`` or ``MAX_RING_OUTLINE``) is RLE too.
    Instance attributes go into ``attributes`` (as CVAT's COCO export writes them),
    image tags into ``specula_tags`` of the image entry.
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
        entry: dict[str, Any] = {"id": image_id, "file_name": img.path, "height": int(h), "width": int(w)}
        if img.tags:  # COCO has no image labels; other tools ignore the extra field
            entry["specula_tags"] = list(img.tags)
        out_images.append(entry)
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
                if not _within_limits(seg):
                    warnings.append(
                        f"{img.path}: a '{inst.class_name}' instance needs a polygon over the import limits "
                        f"({MAX_POLYGON_VERTICES} vertices, an outline of {MAX_RING_OUTLINE} pixels); written as RLE"
                    )
                    seg = mask.to_rle()
                elif not polygons_reproduce(seg, mask):
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
            if inst.attributes:  # as CVAT's COCO export writes them (occluded and the label's own)
                ann["attributes"] = dict(inst.attributes)
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

        Raises ``RLEError`` (one line) for a segmentation that is not of that image:
        an RLE of another size or whose runs do not cover it, polygons that are not
        numbers or are over the limits; checked as ``import_coco`` checks them.
        """
        seg, size = self.segmentation, (height, width)
        reader = _CocoReader(Path("results"))
        try:
            if isinstance(seg, list):
                polys = reader.polygons(seg, "segmentation", size) if seg else []
                mask = rasterize_coco_polygons(polys, size) if polys else None
            elif isinstance(seg, dict):
                mask = _rle_mask(seg, "segmentation", size)
            else:
                raise _Skip("segmentation", f"{shown(seg)} is neither polygons nor RLE")
        except _Skip as exc:
            raise RLEError(str(exc)) from None
        return mask if mask is not None and not mask.is_empty() else None


def read_coco_results(data: Any, where: str) -> list[CocoResult]:
    """The predictions of a COCO results list, or of a COCO instances file's annotations
    (``data`` as parsed from JSON); ``FormatError`` naming ``where`` for anything else."""
    hashable = (int, float, str)
    if isinstance(data, dict):
        names = {_key(im.get("id")): Path(str(im.get("file_name", im.get("id")))).stem
                 for im in data.get("images", []) if isinstance(im, dict) and type(im.get("id")) in hashable}
        cats = {_key(c.get("id")): c.get("name") for c in data.get("categories", [])
                if isinstance(c, dict) and type(c.get("id")) in hashable}
        entries = data.get("annotations", [])
    elif isinstance(data, list):
        names, cats, entries = {}, {}, data
    else:
        raise FormatError(f"{where}: expected a COCO results list or a COCO file")
    if not isinstance(entries, list):
        raise FormatError(f"{where}: 'annotations' is not a list; not COCO results")
    out = []
    for n, e in enumerate(entries):
        if not isinstance(e, dict) or "segmentation" not in e:
            raise FormatError(f"{where}: entry {n} has no segmentation; not COCO results")
        iid, cid = e.get("image_id"), e.get("category_id")
        for field, value in (("image_id", iid), ("category_id", cid)):
            if value is not None and type(value) not in hashable:
                raise FormatError(f"{where}: entry {n}: {field} {shown(value)} is not an id")
        key = Path(str(e["file_name"])).stem if "file_name" in e else names.get(_key(iid), str(iid))
        cls = cats.get(_key(cid), e.get("category_name"))
        raw = e.get("score", 1.0)
        try:
            score = float(raw) if type(raw) in (int, float, str) else math.nan
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise FormatError(f"{where}: entry {n} has a score that is not a finite number ({shown(raw)})")
        out.append(CocoResult(key, iid, None if cls is None else str(cls), score, e["segmentation"]))
    return out
