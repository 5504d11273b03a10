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

Beside the pixels: a shape's ``flags`` (true/false) are the instance's attributes
and its ``description`` the attribute ``description``; the file's ``flags`` that are
true are the image's tags. Export writes them back (every tag of the export as a
flag, true or false), and attributes that are neither true/false nor the description
in an ``attributes`` object, which labelme keeps as it is.

Validation at the edge is in ``_LabelmeReader`` (see ``import_labelme``); the numbers
it checks against are in ``annotation.formats.limits``.
"""
from __future__ import annotations

import itertools
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
    Tally,
    element,
    find_image,
    image_from_base64,
    image_to_base64_png,
    image_to_binary,
    is_file,
    output_path,
    path_text_problem,
    read_json,
    report,
    shown,
    write_json,
)
from annotation.formats.limits import (
    MAX_INSTANCES_PER_IMAGE,
    MAX_POLYGON_VERTICES,
    MAX_TEXT_LENGTH,
    PILLOW_EXACT_COORDINATE,
    class_name_problem,
    drawing_box,
    name_problem,
    size_problem,
)
from annotation.formats.pixel_polygons import clip_ring
from annotation.mask import Mask
from annotation.palette import Palette

LINE_WIDTH = 10  # labelme's shape_to_mask defaults
POINT_SIZE = 5
EXPORT_VERSION = "5.5.0"  # the first labelme that reads "mask" shapes
_STATES = {s.value for s in InstanceState}


def _clip_segment(p: tuple[float, float], q: tuple[float, float], box: Sequence[float]) -> Optional[list[tuple[float, float]]]:
    """The part of segment ``p``-``q`` inside ``box`` (Liang-Barsky), or None."""
    (px, py), (qx, qy) = p, q
    dx, dy = qx - px, qy - py
    t0, t1 = 0.0, 1.0
    for pk, qk in ((-dx, px - box[0]), (dx, box[2] - px), (-dy, py - box[1]), (dy, box[3] - py)):
        if pk == 0:
            if qk < 0:
                return None
            continue
        t = qk / pk
        if pk < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
    if t0 > t1:
        return None
    return [(px + t0 * dx, py + t0 * dy), (px + t1 * dx, py + t1 * dy)]


def _disk(cx: float, cy: float, d: float, cw: int, ch: int) -> np.ndarray:
    """Pixels of a (huge) circle on a ``ch`` x ``cw`` canvas, row by row: the pixels whose
    centres lie within ``d`` of ``(cx, cy)`` (Pillow's own rule differs by a pixel here and
    there at the outline, which no circle this large is drawn to show)."""
    with np.errstate(over="ignore", invalid="ignore"):
        dy2 = (np.arange(ch, dtype=np.float64) - cy) ** 2
        half = np.sqrt(np.maximum(d * d - dy2, -1.0))  # NaN where the row misses the circle
        lo = np.ceil(cx - half)
        hi = np.floor(cx + half)
    cols = np.arange(cw, dtype=np.float64)
    inside = ~np.isnan(half)
    return inside[:, None] & (cols[None, :] >= lo[:, None]) & (cols[None, :] <= hi[:, None])


def shape_outside_box(points: Sequence[Sequence[float]], image_size: tuple[int, int]) -> int:
    """How many of a shape's points lie beyond ``limits.drawing_box``, where ``shape_mask`` clips."""
    x0, y0, x1, y1 = drawing_box(*image_size)
    return sum(1 for x, y in points if not (x0 <= x <= x1 and y0 <= y <= y1))


def shape_mask(
    shape_type: Optional[str],
    points: Sequence[Sequence[float]],
    image_size: tuple[int, int],
    bitmap: Optional[np.ndarray] = None,
) -> Mask:
    """The mask labelme's ``shape_to_mask`` (or its ``mask`` shape) gives, as a cropped ``Mask``.

    ``points`` are labelme's ``[x, y]`` in image pixels, finite; ``bitmap`` is the
    decoded ``mask`` of a mask shape. Raises ``ValueError`` for shapes labelme refuses.
    Points within ``limits.drawing_box`` (8 million pixels of the origin) are drawn
    exactly as labelme draws them; beyond, where Pillow's integer arithmetic overflows,
    shapes are clipped to that box first, so the pixels of the image stay those of the
    shape. Circles too large for Pillow (whose ellipse walks its whole outline) are
    drawn by numpy.
    """
    h, w = image_size
    # beyond 1e300 a difference of two coordinates overflows to infinity; no pixel can tell
    xy = [(min(max(float(x), -1e300), 1e300), min(max(float(y), -1e300), 1e300)) for x, y in points]
    t = shape_type or "polygon"
    box_x0, box_y0, box_x1, box_y1 = drawing_box(h, w)
    far = any(not (box_x0 <= x <= box_x1 and box_y0 <= y <= box_y1) for x, y in xy)
    if t == "mask":
        if bitmap is None or len(xy) < 1:
            raise ValueError("mask shape without its bitmap or its points")
        # labelme: (x1, y1), (x2, y2) = points.astype(int); mask[y1:y2+1, x1:x2+1] = bitmap
        x1, y1 = int(xy[0][0]), int(xy[0][1])
        bitmap = np.asarray(bitmap, bool)
        if x1 >= w or y1 >= h or x1 + bitmap.shape[1] <= 0 or y1 + bitmap.shape[0] <= 0:
            return Mask.empty(image_size)  # wholly outside (and never an offset of 1e30 for numpy)
        return Mask.from_box_array(x1, y1, bitmap, image_size).cropped()
    pad = 2
    disk = None
    if t == "circle":
        if len(xy) != 2:
            raise ValueError(f"circle needs 2 points, has {len(xy)}")
        (cx, cy), (px, py) = xy
        d = math.hypot(cx - px, cy - py)
        box = [cx - d, cy - d, cx + d, cy + d]
        reach = (box[2], box[3])
        # Pillow walks the whole outline (a radius of 1e6 takes a minute) and overflows
        # far out: a circle that large, or centred beyond the clip box, is drawn by numpy
        if d > min(2 * max(h, w) + 64, 2**17) or not (box_x0 <= cx <= box_x1 and box_y0 <= cy <= box_y1):
            disk = (cx, cy, d)
    elif t == "rectangle":
        if len(xy) != 2:
            raise ValueError(f"rectangle needs 2 points, has {len(xy)}")
        (ax, ay), (bx, by) = xy
        # Pillow >= 10 refuses reversed corners; labelme users drag either way; an
        # axis-aligned box clamped to the clip box keeps every pixel of the image
        box = [max(min(ax, bx), box_x0), max(min(ay, by), box_y0), min(max(ax, bx), box_x1), min(max(ay, by), box_y1)]
        if box[0] > box[2] or box[1] > box[3]:
            return Mask.empty(image_size)
        reach = (box[2], box[3])
    elif t in ("line", "linestrip"):
        if (t == "line" and len(xy) != 2) or len(xy) < 2:
            raise ValueError(f"{t} needs {'2' if t == 'line' else 'at least 2'} points, has {len(xy)}")
        pad = LINE_WIDTH
    elif t == "point":
        if len(xy) != 1:
            raise ValueError(f"point needs 1 point, has {len(xy)}")
        cx, cy = xy[0]
        if far:
            return Mask.empty(image_size)
        box = [cx - POINT_SIZE, cy - POINT_SIZE, cx + POINT_SIZE, cy + POINT_SIZE]
        reach = (box[2], box[3])
    elif t == "polygon":
        if len(xy) < 3:
            raise ValueError(f"polygon needs more than 2 points, has {len(xy)}")
    else:
        raise ValueError(f"unknown shape_type {shape_type!r}")
    segments = None
    if t == "polygon":
        if far:
            xy = [(float(x), float(y)) for x, y in clip_ring(np.asarray(xy), (box_x0, box_y0, box_x1, box_y1))]
            if len(xy) < 3:
                return Mask.empty(image_size)
        reach = (max(x for x, _ in xy), max(y for _, y in xy))
    elif t in ("line", "linestrip"):
        if far:
            # a wide stroke ends square at its end points: clipped that far beyond the
            # box, no end of a clipped segment can reach back into the image
            m = 2.0 * LINE_WIDTH
            lbox = (box_x0 - m, box_y0 - m, box_x1 + m, box_y1 + m)
            ends = [np.clip(p, -1e300, 1e300) for p in xy]
            segments = [s for s in (_clip_segment(tuple(a), tuple(b), lbox) for a, b in itertools.pairwise(ends)) if s]
            if not segments:
                return Mask.empty(image_size)
            flat = [p for s in segments for p in s]
        else:
            flat = xy
        reach = (max(x for x, _ in flat), max(y for _, y in flat))
    cw = min(w, int(math.floor(reach[0])) + pad + 1)
    ch = min(h, int(math.floor(reach[1])) + pad + 1)
    if cw <= 0 or ch <= 0:
        return Mask.empty(image_size)
    if disk is not None:
        return Mask(0, 0, _disk(*disk, cw, ch), image_size).cropped()
    canvas = Image.new("L", (cw, ch), 0)
    draw = ImageDraw.Draw(canvas)
    if t in ("circle", "point"):
        draw.ellipse(box, outline=1, fill=1)
    elif t == "rectangle":
        draw.rectangle(box, outline=1, fill=1)
    elif t in ("line", "linestrip"):
        # Pillow draws a wide line segment by segment (no joints): clipped pieces draw alike
        for seg in segments or [xy]:
            draw.line(xy=seg, fill=1, width=LINE_WIDTH)
    else:
        draw.polygon(xy=xy, outline=1, fill=1)
    return Mask(0, 0, np.asarray(canvas, dtype=bool), image_size).cropped()


# ------------------------------------------------------------------ import
_DAMAGED = "the file is damaged or not labelme's, save it again in labelme"
_KNOWN_TYPES = ("polygon", "rectangle", "circle", "line", "linestrip", "point", "mask")


class _Skip(Exception):
    """One shape that cannot be read; the message names its element."""


def _points(raw: Any, where: str) -> list[tuple[float, float]]:
    """labelme's ``points``: a list of ``[x, y]`` numbers (finite: ``read_json`` saw to that)."""
    if type(raw) is not list:
        raise _Skip(f"{where}: {shown(raw)} is not a list of [x, y] points")
    if len(raw) > MAX_POLYGON_VERTICES:
        raise _Skip(f"{where}: {len(raw)} points, over the limit of {MAX_POLYGON_VERTICES} a shape")
    out = []
    for i, p in enumerate(raw):
        if not (type(p) is list and len(p) == 2):
            raise _Skip(f"{where}[{i}]: {shown(p)} is not a point [x, y]" +
                        (f" (it has {len(p)} numbers)" if type(p) is list else ""))
        for j, v in enumerate(p):
            if not (type(v) is float or type(v) is int):
                raise _Skip(f"{where}[{i}][{j}]: {shown(v)} is not a number")
        out.append((float(p[0]), float(p[1])))
    return out


def _rel(path: Path, base: Path) -> str:
    return PurePosixPath(os.path.relpath(path, base).replace("\\", "/")).as_posix()


class _LabelmeReader:
    """Reads labelme files: every value checked where it is read (``FormatError`` for a
    file, a warning for one shape), what labelme carries that Specula cannot keep counted."""

    def __init__(self, base: Path, allowed: Sequence[Path]):
        self.base = base
        # image files may be opened only inside these (the folder imported from, the
        # image root, the project): an imagePath read from a file must not reach further
        self.allowed = [Path(os.path.realpath(p)) for p in (base, *allowed)]
        self.tally = Tally()
        self.thin = 0
        self.failures: list[str] = []

    def inside(self, path: Path) -> bool:
        real = Path(os.path.realpath(path))
        return any(real == root or root in real.parents for root in self.allowed)

    def refuse(self, json_path: Path, where: str, why: str, advice: str = _DAMAGED) -> FormatError:
        return FormatError(f"{json_path}: {where}: {why}; {advice}")

    def location(self, json_path: Path, data: dict, warnings: list[str]) -> tuple[str, Optional[Path]]:
        """The image's path relative to the import root and its file, if found (and allowed).

        labelme writes ``imagePath`` relative to the JSON. It can be stale (names a
        ``.png`` that is a ``.jpg``) or name the JSON itself when the image is only
        embedded; then a photo with the JSON's stem beside it is used, and said. A
        path outside the folder imported from and the project is never opened.
        """
        folder = json_path.parent
        raw = data.get("imagePath")
        if raw is not None and type(raw) is not str:
            raise self.refuse(json_path, "imagePath", f"{shown(raw)} is not a path")
        declared = raw.replace("\\", "/") if raw else ""
        problem = path_text_problem(declared) if declared else None
        if problem:
            raise self.refuse(json_path, "imagePath", f"{shown(declared)} {problem}")
        cand = Path(os.path.normpath(folder / declared)) if declared else None
        if cand is not None and not self.inside(cand):
            warnings.append(f"{json_path}: imagePath '{declared}' points outside the folder imported from and the "
                            f"project; not opened")
            cand = None
        if cand is not None and is_file(cand) and cand.suffix.lower() != ".json":
            return _rel(cand, self.base), cand
        for stem in ([PurePosixPath(declared).stem] if declared else []) + [json_path.stem]:
            alt = find_image(folder, stem)
            if alt is not None:
                if declared:
                    warnings.append(f"{json_path}: imagePath '{declared}' is not there; using {alt.name} beside it")
                return _rel(alt, self.base), alt
        if data.get("imageData"):
            warnings.append(f"{json_path}: the image exists only inside the JSON (imageData); no file on disk")
        elif cand is not None or not declared:
            warnings.append(f"{json_path}: image '{declared}' not found; labels imported with the declared size")
        name = declared if declared and not declared.lower().endswith(".json") else json_path.stem + ".png"
        return _rel(Path(os.path.normpath(folder / name)), self.base), None

    def size(self, json_path: Path, data: dict, file: Optional[Path]) -> tuple[int, int]:
        """``(height, width)``: declared, else of the embedded image, else of the file."""
        h, w = data.get("imageHeight"), data.get("imageWidth")
        for key, value in (("imageHeight", h), ("imageWidth", w)):
            if value is not None and not (type(value) is int or (type(value) is float and value.is_integer())):
                raise self.refuse(json_path, key, f"{shown(value)} is not a whole number of pixels")
        if h is not None and w is not None:
            h, w = int(h), int(w)
            problem = size_problem(h, w)
            if problem:
                raise self.refuse(json_path, "imageHeight/imageWidth", problem,
                                  "fix the size in the file, or raise the limit if the image really is that large")
            return h, w
        image_data = data.get("imageData")
        if image_data:
            if type(image_data) is not str:
                raise self.refuse(json_path, "imageData", f"{shown(image_data)} is not base64 text")
            with image_from_base64(image_data, f"{json_path}: imageData") as im:
                return im.height, im.width
        if file is not None:
            from annotation.images import ImageReadError, image_size

            try:
                return image_size(file)
            except ImageReadError as exc:
                raise FormatError(f"{json_path}: no imageHeight/imageWidth, and its image cannot be read ({exc})") from None
        raise FormatError(f"{json_path}: no imageHeight/imageWidth, no embedded image and no image file; "
                          f"cannot size the labels")

    def tags(self, raw: Any, json_path: Path) -> list[str]:
        """labelme's image-level ``flags``: the names whose value is true."""
        if raw is None:
            return []
        if type(raw) is not dict:
            self.tally.add("image 'flags' that are not an object; not kept", f"{json_path}: flags")
            return []
        out = []
        for name, value in raw.items():
            if type(value) is not bool or name_problem(name, "flag name"):
                self.tally.add("image flags that are not a name with true/false; not kept", f"{json_path}: flags")
            elif value:
                out.append(name)
        return out

    def attributes(self, s: dict, where: str) -> dict:
        """A shape's ``flags`` (true/false), ``description`` and our own ``attributes``."""
        out: dict[str, Any] = {}
        flags = s.get("flags")
        if type(flags) is dict:
            for name, value in flags.items():
                if type(value) is bool and not name_problem(name, "flag name"):
                    out[name] = value
                else:
                    self.tally.add("shape flags that are not a name with true/false; not kept", f"{where}.flags")
        elif flags is not None:
            self.tally.add("shape 'flags' that are not an object; not kept", f"{where}.flags")
        extra = s.get("attributes")  # Specula's export puts attributes that are not flags here
        if type(extra) is dict:
            for name, value in extra.items():
                if name_problem(name, "attribute name") or not (
                    type(value) in (bool, int, float) or (type(value) is str and len(value) <= MAX_TEXT_LENGTH)
                ):
                    self.tally.add("shape attributes that are not a name with a number, true/false or a short "
                                   "text; not kept", f"{where}.attributes")
                else:
                    out[name] = value
        elif extra is not None:
            self.tally.add("shape 'attributes' that are not an object; not kept", f"{where}.attributes")
        description = s.get("description")
        if type(description) is str and description:
            if len(description) <= MAX_TEXT_LENGTH:
                out["description"] = description
            else:
                self.tally.add(f"descriptions over {MAX_TEXT_LENGTH} characters; not kept", f"{where}.description")
        elif description not in (None, ""):
            self.tally.add("descriptions that are not text; not kept", f"{where}.description")
        return out

    def shape(self, s: Any, k: int, json_path: Path, size: tuple[int, int]) -> Optional[tuple[LabelledInstance, Any]]:
        """One shape as an instance and its group key; None when skipped (said or counted)."""
        where = element("shapes", k)
        if type(s) is not dict:
            raise _Skip(f"{where}: {shown(s)} is not a shape object")
        label = s.get("label")
        problem = class_name_problem(label)
        if problem:  # a class name no menu, file or message can carry: the file, not the shape
            raise self.refuse(json_path, f"{where}.label", problem, "rename the label in labelme")
        t = s.get("shape_type")
        if t is None:
            t = "polygon"
        if type(t) is not str:
            raise _Skip(f"{where}.shape_type: {shown(t)} is not a shape type")
        if t not in _KNOWN_TYPES:
            self.tally.add(f"shapes of type {shown(t)} skipped (Specula does not know how labelme would draw them)",
                           f"{json_path}: {where}")
            return None
        gid = s.get("group_id")
        if gid is not None and type(gid) not in (int, str):
            raise _Skip(f"{where}.group_id: {shown(gid)} is not a group id (an integer or a text)")
        points = _points(s.get("points"), f"{where}.points")
        bitmap = None
        if t == "mask":
            if type(s.get("mask")) is not str or not s["mask"]:
                raise _Skip(f"{where}.mask: a mask shape without its base64 'mask'")
            try:
                with image_from_base64(s["mask"], f"{where}.mask") as im:
                    bitmap = image_to_binary(im, f"{where}.mask") if im.mode not in ("1", "L", "P") \
                        else np.asarray(im).astype(bool)
            except FormatError as exc:
                raise _Skip(str(exc)) from None
        far = shape_outside_box(points, size)
        if far:
            self.tally.add(f"shape points more than {PILLOW_EXACT_COORDINATE} pixels outside their image; "
                           f"the shapes were clipped to that distance", f"{json_path}: {where}", far)
        try:
            mask = shape_mask(t, points, size, bitmap)
        except ValueError as exc:
            raise _Skip(f"{where}: {exc}") from None
        if mask.is_empty():
            raise _Skip(f"{where} ('{label}') covers no pixel of the image")
        if t in ("line", "linestrip", "point"):
            self.thin += 1
        state = s.get("specula_state", "accepted")
        origin = s.get("specula_origin")
        if origin is not None and (type(origin) is not str or not origin or name_problem(origin, "origin")):
            self.tally.add("specula_origin values that are not a short name; read as manual", f"{where}.specula_origin")
            origin = None
        score = s.get("score")
        inst = LabelledInstance(
            class_name=label,
            mask=mask,
            score=float(score) if type(score) in (int, float) else None,
            origin=origin or "manual",
            state=state if state in _STATES else "accepted",
            attributes=self.attributes(s, where),
        )
        return inst, gid

    def read(self, json_path: Path) -> tuple[LabelledImage, list[str]]:
        data = read_json(json_path, "labelme")
        if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
            raise FormatError(f"{json_path}: no 'shapes' list, so not a labelme file; pick labelme's per-image .json files")
        shapes = data["shapes"]
        if len(shapes) > MAX_INSTANCES_PER_IMAGE:
            raise self.refuse(json_path, "shapes", f"{len(shapes)} shapes, over the limit of "
                              f"{MAX_INSTANCES_PER_IMAGE} instances per image")
        warnings: list[str] = []
        rel, file = self.location(json_path, data, warnings)
        size = self.size(json_path, data, file)
        img = LabelledImage(rel, size, [], file, tags=self.tags(data.get("flags"), json_path))
        groups: dict[tuple[str, Any], LabelledInstance] = {}
        for k, s in enumerate(shapes):
            try:
                got = self.shape(s, k, json_path, size)
            except _Skip as exc:
                warnings.append(f"{json_path}: {exc}; skipped")
                self.failures.append(f"{json_path}: {exc}")
                continue
            if got is None:
                continue
            inst, gid = got
            if gid is None:
                img.instances.append(inst)
                continue
            key = (inst.class_name, gid)
            if key in groups:
                groups[key].mask = groups[key].mask.union(inst.mask)
                groups[key].attributes = {**inst.attributes, **groups[key].attributes}
            else:
                groups[key] = inst
                img.instances.append(inst)
        return img, warnings

    def summary(self, prefix: str) -> list[str]:
        lines = self.tally.lines(prefix)
        if self.thin:
            lines.append(
                f"{prefix}: {self.thin} line/linestrip/point shape(s) imported as labelme rasterises them "
                f"({LINE_WIDTH}-pixel strokes, {POINT_SIZE}-pixel-radius disks)"
            )
        return lines


def read_labelme_file(json_path: Path, base: Path, allowed: Sequence[Path] = ()) -> tuple[LabelledImage, list[str]]:
    """One labelme JSON as a ``LabelledImage`` (plus warnings); ``FormatError`` if not labelme."""
    reader = _LabelmeReader(Path(base), allowed)
    img, warnings = reader.read(Path(json_path))
    return img, warnings + reader.summary(str(json_path))


def import_labelme(
    path: str | Path,
    image_root: Optional[str | Path] = None,
    *,
    progress: Progress = None,
    allowed_roots: Sequence[str | Path] = (),
) -> ImportResult:
    """Read one labelme JSON or every labelme JSON below a folder.

    Image paths are given relative to ``image_root`` (default: the folder, or the
    file's folder). In a folder, a JSON that cannot be imported (not labelme, a COCO
    export beside them, damaged) is skipped with a warning; a single file raises.

    Validation at the edge: a file is refused with one line naming the element for
    what a tool could not have written (NaN, huge integers, lone surrogates, deep
    nesting: ``read_json``), a label that cannot be a class name, a declared or
    embedded image over the pixel limit, more shapes than ``MAX_INSTANCES_PER_IMAGE``.
    One shape that cannot be read (points that are not numbers, a group_id that is
    a list, a broken mask bitmap) is skipped and said. Shape flags (true/false)
    become instance attributes and the description the attribute ``description``;
    the file's flags that are true become image tags. Shape types labelme cannot
    draw and values Specula cannot keep are counted, one warning per kind.
    ``imagePath`` is opened only inside the folder imported from, ``image_root`` and
    ``allowed_roots`` (the project).
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
    reader = _LabelmeReader(base, [path if path.is_dir() else path.parent, *map(Path, allowed_roots)])
    images: list[LabelledImage] = []
    warnings: list[str] = []
    skipped: list[str] = []
    classes: dict[str, None] = {}
    for k, f in enumerate(files):
        try:
            img, w = reader.read(f)
        except FormatError as exc:
            if len(files) == 1:
                raise
            warnings.append(f"{exc}; skipped")
            skipped.append(str(exc))
            continue
        images.append(img)
        warnings.extend(w)
        for inst in img.instances:
            classes.setdefault(inst.class_name, None)
        report(progress, k + 1, len(files))
    if not images:
        raise FormatError(f"{path}: none of its {len(files)} .json files is a readable labelme file; see the warnings")
    warnings.extend(reader.summary(str(path)))
    # a JSON beside labelme's that is not labelme at all (a COCO export) is no skipped image
    skipped = [s for s in skipped if "so not a labelme file" not in s]
    return ImportResult(images, dict(classes), warnings, images_skipped=skipped, labels_skipped=len(reader.failures))


# ------------------------------------------------------------------ export
def labelme_shape(inst: LabelledInstance) -> dict:
    """The labelme shape for an instance: a polygon if labelme fills it back exactly, else a mask."""
    m = inst.mask.cropped()
    flags, description, extra = _split_attributes(inst.attributes)
    shape: dict[str, Any] = {"label": inst.class_name, "group_id": None, "description": description, "flags": flags}
    if extra:  # labelme keeps keys it does not know (``other_data``): a round trip keeps them
        shape["attributes"] = extra
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


def _split_attributes(attributes: dict) -> tuple[dict, str, dict]:
    """An instance's attributes as labelme carries them: true/false ones as shape ``flags``,
    ``description`` (a text) as the description, the rest (numbers, texts) apart."""
    flags = {k: v for k, v in attributes.items() if type(v) is bool}
    description = attributes.get("description")
    description = description if type(description) is str else ""
    extra = {k: v for k, v in attributes.items() if k not in flags and not (k == "description" and description)}
    return flags, description, extra


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
    Image tags become the file's ``flags`` (every tag of the export, true or false);
    true/false attributes the shape's ``flags``, ``description`` its description, and
    other attributes an ``attributes`` object labelme keeps untouched.
    """
    out_dir = Path(out_dir)
    warnings: list[str] = []
    # labelme's image flags are a fixed list of names, each true or false on every image
    known_tags = list(dict.fromkeys(t for img in images for t in img.tags))
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
            "flags": {t: t in img.tags for t in known_tags},
            "shapes": shapes,
            "imagePath": image_path,
            "imageData": None,
            "imageHeight": int(h),
            "imageWidth": int(w),
        }
        write_json(target, data)
        report(progress, k + 1, len(images))
    return warnings
