"""labelme JSON: import every shape type as labelme rasterises it, and export.

Rasterisation follows labelme's ``shape_to_mask`` (``labelme/utils/shape.py``):
Pillow on a mode-"L" canvas with ``fill=1`` and ``outline=1``; polygon; rectangle;
circle as an ellipse whose radius is the distance between its two points; line and
linestrip as 10-pixel-wide strokes; point as a disk of radius 5; ``mask`` shapes as
labelme's base64 PNG placed at the first of its two points. Lines and points make
thin or tiny instances, so each one imported is also reported.

The canvas is anchored at the image origin and only as large as the shape
reaches: Pillow's float arithmetic is not shift-invariant (a polygon drawn in a
shifted frame can differ by a pixel), while cropping the canvas at the right and
bottom changes nothing. Shapes sharing a label and a ``group_id`` form one
instance, as in labelme's own instance export.

Export writes a polygon (through pixel centres, ``Mask.to_polygons``) where labelme
would fill it back to exactly the instance, and a ``mask`` shape (labelme >= 5.5)
otherwise: holes, several parts, or outlines Pillow would not reproduce.
"""
from __future__ import annotations

import math
import os
from pathlib import Path, PurePosixPath
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from annotation.document import InstanceState
from annotation.formats.common import (
    FormatError,
    ImportResult,
    LabelledImage,
    LabelledInstance,
    Progress,
    find_image,
    image_from_base64,
    image_to_base64_png,
    image_to_binary,
    output_path,
    read_json,
    report,
    write_json,
)
from annotation.mask import Mask
from annotation.palette import Palette

LINE_WIDTH = 10  # labelme's shape_to_mask defaults
POINT_SIZE = 5
EXPORT_VERSION = "5.5.0"  # the first labelme that reads "mask" shapes
_STATES = {s.value for s in InstanceState}


def _as_points(points: Any) -> list[tuple[float, float]]:
    if not isinstance(points, list):
        raise ValueError("'points' is not a list")
    out = []
    for p in points:
        if not (isinstance(p, (list, tuple)) and len(p) == 2):
            raise ValueError(f"point {p!r:.40} is not [x, y]")
        x, y = float(p[0]), float(p[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError("a point is not a finite number")
        out.append((x, y))
    return out


def shape_mask(
    shape_type: Optional[str],
    points: Sequence[Sequence[float]],
    image_size: tuple[int, int],
    bitmap: Optional[np.ndarray] = None,
) -> Mask:
    """The mask labelme's ``shape_to_mask`` (or its ``mask`` shape) gives, as a cropped ``Mask``.

    ``points`` are labelme's ``[x, y]`` in image pixels; ``bitmap`` is the decoded
    ``mask`` of a mask shape. Raises ``ValueError`` for shapes labelme refuses.
    """
    h, w = image_size
    xy = [(float(x), float(y)) for x, y in points]
    t = shape_type or "polygon"
    if t == "mask":
        if bitmap is None or len(xy) < 1:
            raise ValueError("mask shape without its bitmap or its points")
        # labelme: (x1, y1), (x2, y2) = points.astype(int); mask[y1:y2+1, x1:x2+1] = bitmap
        x1, y1 = int(xy[0][0]), int(xy[0][1])
        return Mask.from_box_array(x1, y1, np.asarray(bitmap, bool), image_size).cropped()
    pad = 2
    if t == "circle":
        if len(xy) != 2:
            raise ValueError(f"circle needs 2 points, has {len(xy)}")
        (cx, cy), (px, py) = xy
        d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        box = [cx - d, cy - d, cx + d, cy + d]
        reach = (box[2], box[3])
    elif t == "rectangle":
        if len(xy) != 2:
            raise ValueError(f"rectangle needs 2 points, has {len(xy)}")
        (ax, ay), (bx, by) = xy
        # Pillow >= 10 refuses reversed corners; labelme users drag either way
        box = [min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)]
        reach = (box[2], box[3])
    elif t in ("line", "linestrip"):
        if (t == "line" and len(xy) != 2) or len(xy) < 2:
            raise ValueError(f"{t} needs {'2' if t == 'line' else 'at least 2'} points, has {len(xy)}")
        reach = (max(x for x, _ in xy), max(y for _, y in xy))
        pad = LINE_WIDTH
    elif t == "point":
        if len(xy) != 1:
            raise ValueError(f"point needs 1 point, has {len(xy)}")
        cx, cy = xy[0]
        box = [cx - POINT_SIZE, cy - POINT_SIZE, cx + POINT_SIZE, cy + POINT_SIZE]
        reach = (box[2], box[3])
    elif t == "polygon":
        if len(xy) < 3:
            raise ValueError(f"polygon needs more than 2 points, has {len(xy)}")
        reach = (max(x for x, _ in xy), max(y for _, y in xy))
    else:
        raise ValueError(f"unknown shape_type {shape_type!r}")
    cw = min(w, int(math.floor(reach[0])) + pad + 1)
    ch = min(h, int(math.floor(reach[1])) + pad + 1)
    if cw <= 0 or ch <= 0:
        return Mask.empty(image_size)
    canvas = Image.new("L", (cw, ch), 0)
    draw = ImageDraw.Draw(canvas)
    if t in ("circle", "point"):
        draw.ellipse(box, outline=1, fill=1)
    elif t == "rectangle":
        draw.rectangle(box, outline=1, fill=1)
    elif t in ("line", "linestrip"):
        draw.line(xy=xy, fill=1, width=LINE_WIDTH)
    else:
        draw.polygon(xy=xy, outline=1, fill=1)
    return Mask(0, 0, np.asarray(canvas, dtype=bool), image_size).cropped()


# ------------------------------------------------------------------ import
def _score(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _image_location(
    json_path: Path, data: dict, base: Path, warnings: list[str]
) -> tuple[str, Optional[Path]]:
    """The image's path relative to ``base`` (the import root) and its file, if found.

    labelme writes ``imagePath`` relative to the JSON. It can be stale (names a
    ``.png`` that is a ``.jpg``) or name the JSON itself when the image is only
    embedded; then a photo with the JSON's stem beside it is used, and said.
    """
    folder = json_path.parent
    raw = data.get("imagePath")
    declared = str(raw).replace("\\", "/") if isinstance(raw, str) and raw else ""
    cand = Path(os.path.normpath(folder / declared)) if declared else None
    if cand is not None and cand.is_file() and cand.suffix.lower() != ".json":
        return _rel(cand, base), cand
    for stem in ([PurePosixPath(declared).stem] if declared else []) + [json_path.stem]:
        alt = find_image(folder, stem)
        if alt is not None:
            if declared:
                warnings.append(f"{json_path}: imagePath '{declared}' is not there; using {alt.name} beside it")
            return _rel(alt, base), alt
    if data.get("imageData"):
        warnings.append(f"{json_path}: the image exists only inside the JSON (imageData); no file on disk")
    else:
        warnings.append(f"{json_path}: image '{declared}' not found; labels imported with the declared size")
    name = declared if declared and not declared.lower().endswith(".json") else json_path.stem + ".png"
    return _rel(Path(os.path.normpath(folder / name)), base), None


def _rel(path: Path, base: Path) -> str:
    return PurePosixPath(os.path.relpath(path, base).replace("\\", "/")).as_posix()


def _image_size(json_path: Path, data: dict, file: Optional[Path]) -> tuple[int, int]:
    h, w = data.get("imageHeight"), data.get("imageWidth")
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        return h, w
    if data.get("imageData"):
        with image_from_base64(str(data["imageData"]), str(json_path)) as im:
            return im.height, im.width
    if file is not None:
        from annotation.images import ImageReadError, image_size

        try:
            return image_size(file)
        except ImageReadError:
            pass
    raise FormatError(f"{json_path}: no imageHeight/imageWidth, no embedded image and no image file; cannot size the labels")


def read_labelme_file(json_path: Path, base: Path) -> tuple[LabelledImage, list[str]]:
    """One labelme JSON as a ``LabelledImage`` (plus warnings); ``FormatError`` if not labelme."""
    data = read_json(json_path, "labelme")
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise FormatError(f"{json_path}: no 'shapes' list, so not a labelme file; pick labelme's per-image .json files")
    warnings: list[str] = []
    rel, file = _image_location(json_path, data, base, warnings)
    size = _image_size(json_path, data, file)
    img = LabelledImage(rel, size, [], file)
    groups: dict[tuple[str, Any], LabelledInstance] = {}
    thin = 0
    for k, s in enumerate(data["shapes"]):
        where = f"{json_path}: shape {k}"
        try:
            if not isinstance(s, dict):
                raise ValueError("not an object")
            label = s.get("label")
            if not isinstance(label, str) or not label:
                raise ValueError("no label")
            t = s.get("shape_type") or "polygon"
            bitmap = None
            if t == "mask":
                if not isinstance(s.get("mask"), str) or not s["mask"]:
                    raise ValueError("mask shape without its base64 'mask'")
                with image_from_base64(s["mask"], where) as im:
                    bitmap = image_to_binary(im) if im.mode not in ("1", "L", "P") else np.asarray(im).astype(bool)
            mask = shape_mask(t, _as_points(s.get("points")), size, bitmap)
        except (ValueError, TypeError, FormatError) as exc:
            warnings.append(f"{where}: {exc}; skipped")
            continue
        if mask.is_empty():
            warnings.append(f"{where} ('{label}') covers no pixel of the image; skipped")
            continue
        if t in ("line", "linestrip", "point"):
            thin += 1
        state = s.get("specula_state", "accepted")
        origin = s.get("specula_origin")
        inst = LabelledInstance(
            class_name=label,
            mask=mask,
            score=_score(s.get("score")),
            origin=origin if isinstance(origin, str) and origin else "manual",
            state=state if state in _STATES else "accepted",
        )
        gid = s.get("group_id")
        if gid is None:
            img.instances.append(inst)
            continue
        key = (label, gid)
        if key in groups:
            groups[key].mask = groups[key].mask.union(mask)
        else:
            groups[key] = inst
            img.instances.append(inst)
    if thin:
        warnings.append(
            f"{json_path}: {thin} line/linestrip/point shape(s) imported as labelme rasterises them "
            f"({LINE_WIDTH}-pixel strokes, {POINT_SIZE}-pixel-radius disks)"
        )
    return img, warnings


def import_labelme(path: str | Path, image_root: Optional[str | Path] = None, *, progress: Progress = None) -> ImportResult:
    """Read one labelme JSON or every labelme JSON below a folder.

    Image paths are given relative to ``image_root`` (default: the folder, or the
    file's folder). In a folder, a JSON that is not labelme (a COCO export beside
    them, say) is skipped with a warning; a single file that is not raises.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if not any(part.startswith(".") for part in p.relative_to(path).parts))
        base = Path(image_root) if image_root is not None else path
        if not files:
            raise FormatError(f"{path}: holds no .json files; pass labelme's annotation folder or one .json file")
    else:
        files = [path]
        base = Path(image_root) if image_root is not None else path.parent
    images: list[LabelledImage] = []
    warnings: list[str] = []
    classes: dict[str, None] = {}
    for k, f in enumerate(files):
        try:
            img, w = read_labelme_file(f, base)
        except FormatError as exc:
            if len(files) == 1:
                raise
            warnings.append(f"{exc}; skipped")
            continue
        images.append(img)
        warnings.extend(w)
        for inst in img.instances:
            classes.setdefault(inst.class_name, None)
        report(progress, k + 1, len(files))
    if not images:
        raise FormatError(f"{path}: none of its {len(files)} .json files is a readable labelme file; see the warnings")
    return ImportResult(images, dict(classes), warnings)


# ------------------------------------------------------------------ export
def labelme_shape(inst: LabelledInstance) -> dict:
    """The labelme shape for an instance: a polygon if labelme fills it back exactly, else a mask."""
    m = inst.mask.cropped()
    shape: dict[str, Any] = {"label": inst.class_name, "group_id": None, "description": "", "flags": {}}
    polys = m.to_polygons()
    if len(polys) == 1 and not polys[0].holes and len(polys[0].exterior) >= 3:
        pts = [[float(x), float(y)] for x, y in np.asarray(polys[0].exterior).reshape(-1, 2)]
        if shape_mask("polygon", pts, m.image_size) == m:
            shape.update(points=pts, shape_type="polygon", mask=None)
            return _provenance(shape, inst)
    x0, y0, x1, y1 = m.bbox
    shape.update(
        points=[[float(x0), float(y0)], [float(x1 - 1), float(y1 - 1)]],
        shape_type="mask",
        mask=image_to_base64_png(m.array),
    )
    return _provenance(shape, inst)


def _provenance(shape: dict, inst: LabelledInstance) -> dict:
    # labelme keeps unknown shape keys (``other_data``), so provenance survives a round trip
    shape["specula_origin"] = inst.origin
    shape["specula_state"] = str(getattr(inst.state, "value", inst.state))
    if inst.score is not None:
        shape["score"] = float(inst.score)
    return shape


def export_labelme(
    images: Sequence[LabelledImage],
    palette: Palette,
    out_dir: str | Path,
    *,
    image_root: Optional[str | Path] = None,
    progress: Progress = None,
) -> list[str]:
    """Write one labelme JSON per image, at ``<out_dir>/<image path>.json``; returns warnings.

    ``imagePath`` is relative to the JSON, pointing at ``LabelledImage.file`` or
    ``image_root / path``; with neither, the bare file name (the JSON is then meant
    to be put beside the image). ``palette`` is unused: labelme has no colours.
    """
    out_dir = Path(out_dir)
    warnings: list[str] = []
    for k, img in enumerate(images):
        target = output_path(out_dir, img.path, ".json")
        file = img.file or (Path(image_root) / img.path if image_root is not None else None)
        if file is not None:
            image_path = os.path.relpath(Path(file).resolve(), target.parent.resolve()).replace("\\", "/")
        else:
            image_path = PurePosixPath(img.path.replace("\\", "/")).name
        shapes = []
        for inst in img.instances:
            if inst.mask.is_empty():
                warnings.append(f"{img.path}: an empty '{inst.class_name}' instance was not written")
                continue
            shapes.append(labelme_shape(inst))
        h, w = img.size
        data = {
            "version": EXPORT_VERSION,
            "flags": {},
            "shapes": shapes,
            "imagePath": image_path,
            "imageData": None,
            "imageHeight": int(h),
            "imageWidth": int(w),
        }
        write_json(target, data)
        report(progress, k + 1, len(images))
    return warnings
