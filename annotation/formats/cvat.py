"""CVAT for images 1.1 XML: import ``<polygon>``, ``<mask>`` and ``<box>``; export polygons and masks.

Parsing goes through defusedxml: a file that declares entities (the "billion
laughs" bomb) or reaches for external ones is refused, never expanded.

Geometry follows CVAT and Datumaro: pixel ``(i, j)`` is the square
``[i, i+1) x [j, j+1)``, and polygons and boxes are rasterised with pycocotools
(Datumaro's own converter). A ``<mask>`` holds run lengths over its own box
(``left``, ``top``, ``width``, ``height``), row by row, starting with background.
Export writes a pixel-edge polygon for an instance that is one part without
holes, and a ``<mask>`` otherwise (holes, several parts, crowd regions).
Provenance rides on extra XML attributes (``specula_origin``, ``specula_state``,
``specula_score``) that CVAT ignores; ``source`` says ``manual`` or ``auto``.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from annotation.document import InstanceState
from annotation.formats.common import (
    Color,
    FormatError,
    ImportResult,
    LabelledImage,
    LabelledInstance,
    Progress,
    class_colors,
    report,
    safe_relative,
)
from annotation.files import atomic_write_bytes
from annotation.formats.pixel_polygons import corner_rings, polygons_reproduce, rasterize_coco_polygons
from annotation.mask import Mask
from annotation.palette import Palette

UNLABELLED = "unlabelled"
_STATES = {s.value for s in InstanceState}
_SKIPPED_KINDS = ("polyline", "points", "skeleton", "cuboid", "ellipse", "tag")


# ------------------------------------------------------------------ decoding helpers
def decode_cvat_rle(rle: str, width: int, height: int) -> np.ndarray:
    """CVAT mask runs (comma-separated, row-major over the box, background first) as (h, w) bool."""
    try:
        counts = np.array([int(v) for v in rle.replace(" ", "").split(",") if v != ""], dtype=np.int64)
    except ValueError:
        raise ValueError("mask 'rle' is not a comma-separated list of integers") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"mask box {width}x{height} is empty")
    if (counts < 0).any():
        raise ValueError("mask 'rle' has negative run lengths")
    total = int(counts.sum())
    if total != width * height:
        raise ValueError(f"mask runs cover {total} pixels but its box is {width}x{height} = {width * height}")
    values = (np.arange(len(counts)) % 2).astype(bool)
    return np.repeat(values, counts).reshape(height, width)


def encode_cvat_rle(array: np.ndarray) -> str:
    """Inverse of ``decode_cvat_rle``: runs of a (h, w) bool array, row-major, background first."""
    flat = np.asarray(array, bool).ravel()
    if flat.size == 0:
        return "0"
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs.insert(0, 0)
    return ", ".join(str(int(r)) for r in runs)


def _points(text: Optional[str]) -> list[float]:
    if not text:
        raise ValueError("no points")
    out: list[float] = []
    for pair in text.split(";"):
        x, y = pair.split(",")
        out += [float(x), float(y)]
    return out


def _hex_color(text: Optional[str]) -> Optional[Color]:
    if text and len(text) == 7 and text.startswith("#"):
        try:
            return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)
        except ValueError:
            return None
    return None


def _parse(path: Path) -> ET.Element:
    import defusedxml
    import defusedxml.ElementTree as DET

    try:
        return DET.parse(str(path), forbid_dtd=False, forbid_entities=True, forbid_external=True).getroot()
    except defusedxml.DefusedXmlException as exc:
        raise FormatError(
            f"{path}: refused: the XML declares entities or external references ({type(exc).__name__}), "
            f"which CVAT never writes; export the annotations from CVAT again"
        ) from None
    except ET.ParseError as exc:
        raise FormatError(f"{path}: not well-formed XML ({exc}); the file is truncated or damaged, export it again") from None
    except OSError as exc:
        raise FormatError(f"{path}: cannot read the CVAT file ({exc.strerror or exc}); check the path") from None


# ------------------------------------------------------------------ import
def _shape_mask(el: ET.Element, size: tuple[int, int]) -> Mask:
    h, w = size
    if el.tag == "polygon":
        pts = _points(el.get("points"))
        if len(pts) < 6:
            raise ValueError(f"polygon with {len(pts) // 2} points (needs 3)")
        return rasterize_coco_polygons([pts], size)
    if el.tag == "box":
        x0, y0, x1, y1 = (float(el.get(k, "nan")) for k in ("xtl", "ytl", "xbr", "ybr"))
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"box ({x0}, {y0}, {x1}, {y1}) is empty or reversed")
        return rasterize_coco_polygons([[x0, y0, x1, y0, x1, y1, x0, y1]], size)
    # mask
    left, top = int(float(el.get("left", "0"))), int(float(el.get("top", "0")))
    bw, bh = int(float(el.get("width", "0"))), int(float(el.get("height", "0")))
    arr = decode_cvat_rle(el.get("rle", ""), bw, bh)
    return Mask.from_box_array(left, top, arr, size).cropped()


def _label_colors(root: ET.Element) -> dict[str, Optional[Color]]:
    out: dict[str, Optional[Color]] = {}
    for label in root.iterfind("./meta//labels/label"):
        name = label.findtext("name")
        if name and label.findtext("type") not in ("skeleton", "points") and label.find("parent") is None:
            out[name] = _hex_color(label.findtext("color"))
    return out


def import_cvat(path: str | Path, image_root: Optional[str | Path] = None, *, progress: Progress = None) -> ImportResult:
    """Read a CVAT for images 1.1 XML file.

    Polylines, points, skeletons, cuboids, ellipses and tags are not regions to
    segment and are skipped with a count; so are video tracks. A shape with an
    empty label is imported as class ``unlabelled``. A shape that cannot be read
    is skipped with a warning; a file whose every shape fails raises.
    """
    path = Path(path)
    root = _parse(path)
    if root.tag != "annotations":
        raise FormatError(f"{path}: root element <{root.tag}> is not <annotations>; this is not a CVAT XML file")
    version = root.findtext("version")
    warnings: list[str] = []
    if version and version.strip() != "1.1":
        warnings.append(f"{path}: CVAT format version {version.strip()}; read as 1.1")
    classes = _label_colors(root)
    image_els = root.findall("image")
    tracks = root.findall("track")
    if not image_els and tracks:
        raise FormatError(f"{path}: CVAT for video (tracks), not for images; export the task as 'CVAT for images 1.1'")
    if tracks:
        warnings.append(f"{path}: {len(tracks)} video track(s) ignored; only per-image shapes are imported")
    roots = [Path(image_root)] if image_root is not None else [path.parent, path.parent / "images"]
    images: list[LabelledImage] = []
    skipped: Counter[str] = Counter()
    failures: list[str] = []
    total_shapes = 0
    for k, im in enumerate(image_els):
        name = im.get("name", "")
        try:
            h, w = int(im.get("height", "")), int(im.get("width", ""))
            if h <= 0 or w <= 0 or not name:
                raise ValueError
        except ValueError:
            warnings.append(f"{path}: <image id={im.get('id')!r} name={name!r}> lacks a name, width or height; skipped")
            continue
        rel = safe_relative(name)
        file = None
        if rel is not None:
            file = next((r.joinpath(*rel.parts) for r in roots if r.joinpath(*rel.parts).is_file()), None)
        if file is None:
            warnings.append(f"{path}: image {name} not found on disk; its shapes are imported anyway")
        img = LabelledImage(name.replace("\\", "/"), (h, w), [], file)
        for el in im:
            if el.tag not in ("polygon", "mask", "box"):
                skipped[el.tag] += 1
                continue
            total_shapes += 1
            label = el.get("label") or ""
            where = f"<image name={name!r}> <{el.tag} label={label!r}>"
            try:
                mask = _shape_mask(el, (h, w))
                if mask.is_empty():
                    raise ValueError("covers no pixel of the image")
            except (ValueError, TypeError) as exc:
                failures.append(f"{where}: {exc}")
                continue
            if not label:
                label = UNLABELLED
                warnings.append(f"{path}: {where} has no label; imported as '{UNLABELLED}'")
            classes.setdefault(label, None)
            source = el.get("source", "manual")
            origin = el.get("specula_origin") or ("manual" if source == "manual" else f"cvat-{source}")
            state = el.get("specula_state", "accepted")
            try:
                score = float(el.get("specula_score")) if el.get("specula_score") else None
            except ValueError:
                score = None
            img.instances.append(
                LabelledInstance(label, mask, score=score, origin=origin, state=state if state in _STATES else "accepted")
            )
        images.append(img)
        report(progress, k + 1, len(image_els))
    if skipped:
        kinds = ", ".join(f"{n} {t}" for t, n in sorted(skipped.items()))
        warnings.append(f"{path}: skipped shapes that are not regions: {kinds}")
    if failures and len(failures) == total_shapes:
        raise FormatError(
            f"{path}: none of its {total_shapes} shapes could be read (first: {failures[0]}); "
            f"the file is damaged, export it again from CVAT"
        )
    warnings.extend(f"{path}: {f}; skipped" for f in failures)
    return ImportResult(images, classes, warnings)


# ------------------------------------------------------------------ export
def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def _shape_element(inst: LabelledInstance, z_order: int) -> ET.Element:
    m = inst.mask.cropped()
    attrs = {
        "label": inst.class_name,
        "source": "manual" if inst.origin == "manual" else "auto",
        "occluded": "0",
        "z_order": str(z_order),
        "specula_origin": inst.origin,
        "specula_state": str(getattr(inst.state, "value", inst.state)),
    }
    if inst.score is not None:
        attrs["specula_score"] = repr(float(inst.score))
    rings = corner_rings(m.array) if not inst.iscrowd else []
    if len(rings) == 1 and not rings[0][1]:
        ring = rings[0][0] + (m.x0, m.y0)
        flat = [float(v) for v in ring.ravel()]
        if polygons_reproduce([flat], m):
            attrs["points"] = ";".join(f"{_fmt(x)},{_fmt(y)}" for x, y in ring)
            return ET.Element("polygon", attrs)
    x0, y0, x1, y1 = m.bbox
    attrs.update(
        rle=encode_cvat_rle(m.array),
        left=str(x0),
        top=str(y0),
        width=str(x1 - x0),
        height=str(y1 - y0),
    )
    return ET.Element("mask", attrs)


def export_cvat(
    images: Sequence[LabelledImage],
    palette: Palette,
    out_path: str | Path,
    *,
    progress: Progress = None,
) -> list[str]:
    """Write a CVAT for images 1.1 XML file; returns warnings.

    Labels (with colours) come from the palette, plus any class it lacks; z-order
    follows the palette's drawing order.
    """
    out_path = Path(out_path)
    warnings: list[str] = []
    colors: dict[str, Optional[Color]] = {c.name: c.color for c in palette.classes}
    order = {c.name: c.order for c in palette.classes}
    for name in class_colors(images):
        if name not in colors:
            warnings.append(f"class '{name}' is not in palette '{palette.name}'; written as an extra label")
            colors[name] = None
            order[name] = max(order.values(), default=-1) + 1
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "name").text = "specula export"
    ET.SubElement(task, "size").text = str(len(images))
    ET.SubElement(task, "mode").text = "annotation"
    labels = ET.SubElement(task, "labels")
    for name, color in colors.items():
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        if color is not None:
            ET.SubElement(label, "color").text = "#%02x%02x%02x" % color
        ET.SubElement(label, "type").text = "any"
        ET.SubElement(label, "attributes")
    for k, img in enumerate(images):
        h, w = img.size
        el = ET.SubElement(root, "image", {"id": str(k), "name": img.path, "width": str(w), "height": str(h)})
        for inst in img.instances:
            if inst.mask.is_empty():
                warnings.append(f"{img.path}: an empty '{inst.class_name}' instance was not written")
                continue
            el.append(_shape_element(inst, order[inst.class_name]))
        report(progress, k + 1, len(images))
    ET.indent(root, space="  ")
    data = ('<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")).encode("utf-8")
    atomic_write_bytes(out_path, data)
    return warnings
