"""CVAT for images 1.1 XML: import regions, their attributes and image tags; export them back.

Parsing goes through defusedxml: a file that declares entities (the "billion
laughs" bomb) or reaches for external ones is refused, never expanded.

**Regions.** ``<polygon>``, ``<box>``, ``<ellipse>`` and ``<mask>`` become
instances. Pixel ``(i, j)`` is the square ``[i, i+1) x [j, j+1)``, as in CVAT and
Datumaro. Polygons are rasterised with pycocotools (Datumaro's own converter).
Boxes (rotated or not) and ellipses are rasterised exactly: a pixel belongs to the
shape when its centre lies inside it, a centre exactly on an edge counting for the
left and top edges only, so that shapes sharing an edge never share a pixel.
(pycocotools snaps vertices to a fifth of a pixel, which moves a pixel on almost
every small rotated box.) A ``<mask>`` holds run lengths over its own box
(``left``, ``top``, ``width``, ``height``), row by row, starting with background.

**Rotation.** ``rotation`` is in degrees about the shape's centre (a box's centre,
an ellipse's ``cx, cy``; for a polygon, which CVAT never writes rotated, the centre
of its bounding box), turning a point by ``x' = cx + cos(a)(x - cx) - sin(a)(y - cy)``,
``y' = cy + sin(a)(x - cx) + cos(a)(y - cy)`` in image coordinates (y down), that is
clockwise on screen. This is CVAT's own ``RotatedBoxesToPolygons`` (the transform
its server applies when it exports a rotated box to a format without rotation) and
OpenCV's ``cv2.ellipse`` angle, which CVAT's ``EllipsesToMasks`` uses; the shared
fixtures hold no rotated shape whose mask could settle it, so the convention comes
from CVAT's source.

**Attributes and tags.** A shape's ``<attribute name="...">value</attribute>``
children go into ``LabelledInstance.attributes``; a value becomes a bool or a number
only where the label spec in ``<meta>`` declares the attribute ``checkbox`` or
``number`` (a value that does not fit its declaration stays text, with a warning);
everything else stays text, so ``"0003"`` keeps its zeros. ``occluded="1"`` becomes
the bool attribute ``occluded`` (absent when 0, so a round trip adds nothing).
``z_order`` is not kept: Specula draws by the palette's order, and export writes
that order back as ``z_order``. Image ``<tag label="...">`` elements go into
``LabelledImage.tags``. Anything else Specula cannot represent (polylines, points,
skeletons, cuboids, group ids, tag attributes) is counted by kind in one warning.

**Validation at the edge.** A number that is not a finite number, a coordinate more
than one image size outside its image, a mask box larger than its image, a
rotation outside +-360 degrees, an image size over the pixel limit
(``SPECULA_MAX_PIXELS``) or a polygon over the limits of ``annotation.formats.limits``
(vertices, outline length for pycocotools), an image name with a part over 255
characters (or over 1024 in all, CVAT's own limit), a control character or lone
surrogate in any name, label or attribute, and a label, tag or attribute name the
palette's class-name rule refuses (so the project never refuses it mid-import) refuse
the whole file with one line naming the file, the element (``image 'a.jpg' (id 3),
polygon 5, points``: shapes counted from 1 by kind within their image) and what is
wrong. Coordinates merely outside the image are
clipped, counted in one warning. A shape whose well-formed numbers describe nothing
(two points, a reversed box, runs that do not fill their box) is skipped with a
warning; a file whose every shape fails raises.

**Export** writes a pixel-edge polygon for an instance that is one part without
holes, and a ``<mask>`` otherwise (holes, several parts, crowd regions), with its
attributes, ``occluded`` and the image's tags; every attribute is declared in the
label spec with an input type taken from its values (``checkbox`` for bools,
``number`` for numbers, ``text`` otherwise). Provenance rides on extra XML
attributes (``specula_origin``, ``specula_state``, ``specula_score``) that CVAT
ignores; ``source`` says ``manual`` or ``auto``. A name or value the importer would
refuse is refused here too, before anything is written.
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections import Counter
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from annotation.document import InstanceState
from annotation.files import atomic_write_bytes
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
from annotation.formats.cvat_geometry import (
    fill_convex_polygon,
    fill_ellipse,
    reaches_outside,
    rotate_points,
)
from annotation.formats.limits import (
    MAX_POLYGON_VERTICES,
    MAX_RING_OUTLINE,
    MAX_TEXT_LENGTH,
    class_name_problem,
    name_problem,
    size_problem,
)
from annotation.formats.pixel_polygons import (
    corner_rings,
    polygons_reproduce,
    rasterize_coco_polygons,
)
from annotation.images import max_pixels_limit
from annotation.mask import Mask
from annotation.palette import Palette

UNLABELLED = "unlabelled"
_STATES = {s.value for s in InstanceState}
_REGIONS = ("polygon", "box", "ellipse", "mask")
_NAME_PART_MAX = 255  # NAME_MAX of the common file systems: no such file can exist
_NAME_MAX = 1024  # the length of CVAT's own column for an image path
_ROTATION_MAX = 360.0  # CVAT writes [0, 360); a larger angle is damage, and sin/cos of 1e30 are noise
# C0 and C1 controls, DEL and lone surrogates: XML 1.0 cannot carry most of them, and
# the rest (tab, newline) turn a class name into something no file or message shows
_BAD_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CHAR_NAMES = {"\x00": "NUL", "\t": "tab", "\n": "newline", "\r": "carriage return"}
_DAMAGED = "the file is damaged or was not written by CVAT; export it again from CVAT"
_RENAME = "rename it in CVAT and export again"


class _Refused(Exception):
    """A value that refuses the whole file; the message names the element and what is wrong."""

    def __init__(self, message: str, advice: str = _DAMAGED):
        super().__init__(message)
        self.advice = advice


# ------------------------------------------------------------------ text and numbers
def _bad_text(text: str) -> Optional[str]:
    """The first character of ``text`` that XML or a one-line message cannot carry, described."""
    m = _BAD_TEXT.search(text)
    if m is None:
        return None
    ch = m.group()
    return f"U+{ord(ch):04X}" + (f" ({_CHAR_NAMES[ch]})" if ch in _CHAR_NAMES else "")


def _shown(text: str, limit: int = 60) -> str:
    """``text`` quoted for a one-line message (escapes shown, long names cut)."""
    if len(text) > limit:
        return repr(text[:limit]) + f"... ({len(text)} characters)"
    return repr(text)


def _check_text(text: str, where: str) -> str:
    bad = _bad_text(text)
    if bad is not None:
        raise _Refused(f"{where}: {_shown(text)} holds the control character {bad}, which a name, tag or "
                       f"attribute cannot carry", _RENAME)
    return text


def _check_name(name: str, where: str, what: str) -> str:
    """A class, tag or attribute name: no control character, then the palette's rule for
    class names (short printable text), so that the project never refuses it later."""
    _check_text(name, where)
    problem = class_name_problem(name) if what == "class name" else name_problem(name, what)
    if problem is not None:
        raise _Refused(f"{where}: {problem}", _RENAME)
    return name


def _check_value(text: str, where: str) -> str:
    _check_text(text, where)
    if len(text) > MAX_TEXT_LENGTH:
        raise _Refused(f"{where}: {len(text)} characters of text (at most {MAX_TEXT_LENGTH})", _RENAME)
    return text


def _check_image_name(name: str, where: str) -> None:
    """``where`` names the image already; the message adds what is wrong with its name."""
    _check_text(name, f"{where}, name")
    longest = max((len(p) for p in re.split(r"[/\\]", name)), default=0)
    if longest > _NAME_PART_MAX or len(name) > _NAME_MAX:
        raise _Refused(
            f"{where}: the name is too long ({len(name)} characters, longest part {longest}; no file system "
            f"holds a name part over {_NAME_PART_MAX} characters, and CVAT keeps at most {_NAME_MAX})",
            "rename the image in CVAT and export again",
        )


def _finite(text: Optional[str], where: str) -> float:
    if text is None:
        raise _Refused(f"{where}: missing")
    try:
        value = float(text)
    except ValueError:
        raise _Refused(f"{where}: {_shown(text)} is not a number") from None
    if not math.isfinite(value):
        raise _Refused(f"{where}: {_shown(text)} is not a finite number")
    return value


def _whole(text: Optional[str], where: str) -> int:
    value = _finite(text, where)
    if value != int(value):
        raise _Refused(f"{where}: {_shown(text or '')} is not a whole number of pixels")
    return int(value)


def _in_span(value: float, extent: int, where: str, axis: str) -> float:
    """``value`` if it lies within one image size of the image along ``axis``, else refused.

    CVAT keeps shapes on their image; a coordinate a whole image away is damage, and
    refusing it keeps pycocotools (whose cost follows the coordinates) from being fed 1e30.
    """
    if not -extent <= value <= 2 * extent:
        raise _Refused(
            f"{where}: {axis} = {value:g} lies far outside the image, which is {extent} pixels along {axis} "
            f"(allowed {-extent} .. {2 * extent}: one image size beyond each edge)"
        )
    return value


def _rotation(el: ET.Element, where: str) -> float:
    text = el.get("rotation")
    if text is None or text.strip() == "":
        return 0.0
    angle = _finite(text, f"{where}, rotation")
    if abs(angle) > _ROTATION_MAX:
        raise _Refused(f"{where}, rotation: {angle:g} is not an angle between -360 and 360 degrees")
    return angle


def _points(text: Optional[str], where: str, size: tuple[int, int]) -> np.ndarray:
    """CVAT's ``x,y;x,y;...`` as an (N, 2) float array of finite, in-span coordinates."""
    if text is None or not text.strip():
        return np.zeros((0, 2))
    out: list[tuple[float, float]] = []
    for pair in text.split(";"):
        parts = pair.split(",")
        if len(parts) != 2:
            raise _Refused(f"{where}: {_shown(pair)} is not an x,y pair")
        out.append((_finite(parts[0], where), _finite(parts[1], where)))
    if len(out) > MAX_POLYGON_VERTICES:
        raise _Refused(f"{where}: {len(out)} vertices (at most {MAX_POLYGON_VERTICES})")
    pts = np.array(out, dtype=np.float64)
    h, w = size
    for axis, values, extent in (("x", pts[:, 0], w), ("y", pts[:, 1], h)):
        for v in (values.min(), values.max()):
            _in_span(float(v), extent, where, axis)
    return pts


# ------------------------------------------------------------------ mask runs
def _parse_runs(rle: str, where: str) -> list[int]:
    """CVAT run lengths as Python ints (no int64 overflow), refused unless whole and non-negative."""
    out: list[int] = []
    for part in rle.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            n = int(part)
        except ValueError:
            raise _Refused(f"{where}: {_shown(part)} is not a whole number") from None
        if n < 0:
            raise _Refused(f"{where}: a negative run length ({n})")
        out.append(n)
    return out


def _runs_to_array(counts: list[int], width: int, height: int) -> np.ndarray:
    if width <= 0 or height <= 0:
        raise ValueError(f"mask box {width}x{height} is empty")
    total = sum(counts)  # checked before anything of that size is allocated
    if total != width * height:
        raise ValueError(f"mask runs cover {total} pixels but its box is {width}x{height} = {width * height}")
    values = (np.arange(len(counts)) % 2).astype(bool)
    return np.repeat(values, np.array(counts, dtype=np.int64)).reshape(height, width)


def decode_cvat_rle(rle: str, width: int, height: int) -> np.ndarray:
    """CVAT mask runs (comma-separated, row-major over the box, background first) as (h, w) bool.

    Raises ``ValueError`` for runs that are not whole non-negative numbers or do not
    cover the box exactly, before allocating anything of the box's size.
    """
    try:
        counts = _parse_runs(rle, "mask 'rle'")
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    return _runs_to_array(counts, width, height)


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


# ------------------------------------------------------------------ shapes
def _region(el: ET.Element, where: str, size: tuple[int, int]) -> tuple[Mask, bool]:
    """A region element's mask and whether it reached outside the image (and was clipped).

    Raises ``_Refused`` for values that refuse the file, ``ValueError`` for a shape
    that describes nothing (skipped with a warning).
    """
    h, w = size
    if el.tag == "polygon":
        pts = _points(el.get("points"), f"{where}, points", size)
        if len(pts) < 3:
            raise ValueError(f"polygon with {len(pts)} points (needs 3)")
        angle = _rotation(el, where)
        if angle:
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            pts = rotate_points(pts, angle, (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2)
        # pycocotools walks the outline at 5 samples per pixel of its longer axis and holds them all
        steps = np.abs(np.diff(np.vstack([pts, pts[:1]]), axis=0)).max(axis=1).sum()
        if steps > MAX_RING_OUTLINE:
            raise _Refused(f"{where}, points: an outline of {steps:.0f} pixels (at most {MAX_RING_OUTLINE})")
        mask = rasterize_coco_polygons([pts.ravel().tolist()], size)
        return mask, reaches_outside(pts[:, 0], pts[:, 1], size)
    if el.tag == "box":
        x0, x1 = (_in_span(_finite(el.get(k), f"{where}, {k}"), w, f"{where}, {k}", "x") for k in ("xtl", "xbr"))
        y0, y1 = (_in_span(_finite(el.get(k), f"{where}, {k}"), h, f"{where}, {k}", "y") for k in ("ytl", "ybr"))
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is empty or reversed")
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        angle = _rotation(el, where)
        if angle:
            corners = rotate_points(corners, angle, (x0 + x1) / 2, (y0 + y1) / 2)
        return fill_convex_polygon(corners, size), reaches_outside(corners[:, 0], corners[:, 1], size)
    if el.tag == "ellipse":
        cx = _in_span(_finite(el.get("cx"), f"{where}, cx"), w, f"{where}, cx", "x")
        cy = _in_span(_finite(el.get("cy"), f"{where}, cy"), h, f"{where}, cy", "y")
        rx, ry = (_finite(el.get(k), f"{where}, {k}") for k in ("rx", "ry"))
        reach = 2 * max(w, h)
        for name, r in (("rx", rx), ("ry", ry)):
            if r > reach:
                raise _Refused(f"{where}, {name}: {r:g} is far larger than the {w} x {h} image (allowed up to {reach})")
        if not (rx > 0 and ry > 0):
            raise ValueError(f"ellipse radii ({rx:g}, {ry:g}) are not positive")
        angle = _rotation(el, where)
        a = math.radians(angle)
        ex, ey = math.hypot(rx * math.cos(a), ry * math.sin(a)), math.hypot(rx * math.sin(a), ry * math.cos(a))
        outside = reaches_outside(np.array([cx - ex, cx + ex]), np.array([cy - ey, cy + ey]), size)
        return fill_ellipse(cx, cy, rx, ry, angle, size), outside
    # mask: the box first, so that nothing larger than the image is ever decoded
    left = int(_in_span(_whole(el.get("left"), f"{where}, left"), w, f"{where}, left", "x"))
    top = int(_in_span(_whole(el.get("top"), f"{where}, top"), h, f"{where}, top", "y"))
    bw, bh = _whole(el.get("width"), f"{where}, width"), _whole(el.get("height"), f"{where}, height")
    if bw > w or bh > h:
        raise _Refused(f"{where}, width and height: the mask box {bw} x {bh} is larger than its {w} x {h} image")
    counts = _parse_runs(el.get("rle") or "", f"{where}, rle")
    arr = _runs_to_array(counts, bw, bh)
    outside = left < 0 or top < 0 or left + bw > w or top + bh > h
    return Mask.from_box_array(left, top, arr, size).cropped(), outside


def _label_specs(root: ET.Element) -> tuple[dict[str, Optional[Color]], dict[str, dict[str, str]]]:
    """Label colours (regions only) and attribute input types per label, from ``<meta>``."""
    colors: dict[str, Optional[Color]] = {}
    specs: dict[str, dict[str, str]] = {}
    for label in root.iterfind("./meta//labels/label"):
        name = label.findtext("name")
        if not name:
            continue
        region = label.findtext("type") not in ("skeleton", "points") and label.find("parent") is None
        if region:  # a class of the project, once a shape uses it
            _check_name(name, "<meta> label", "class name")
        else:
            _check_text(name, "<meta> label")
        types: dict[str, str] = {}
        for attr in label.iterfind("attributes/attribute"):
            attr_name = attr.findtext("name")
            if attr_name:
                _check_name(attr_name, f"<meta> label {name!r}, attribute", "attribute name")
                types[attr_name] = (attr.findtext("input_type") or "").strip().lower()
        specs.setdefault(name, {}).update(types)
        if region:
            colors[name] = _hex_color(label.findtext("color"))
    return colors, specs


def _hex_color(text: Optional[str]) -> Optional[Color]:
    if text and len(text) == 7 and text.startswith("#"):
        try:
            return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)
        except ValueError:
            return None
    return None


def _typed(value: str, input_type: Optional[str]) -> tuple[Any, bool]:
    """An attribute value as its declared type; ``(value, False)`` when it does not fit it."""
    if input_type == "checkbox":
        low = value.strip().lower()
        return (low == "true", True) if low in ("true", "false") else (value, False)
    if input_type == "number":
        try:
            number = float(value)
        except ValueError:
            return value, False
        if not math.isfinite(number):
            return value, False
        try:
            return int(value.strip()), True  # "2" stays an int, "2.0" a float: the text decides
        except ValueError:
            return number, True
    return value, True


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
class _Reader:
    """One file's import: the counters its warnings are made of."""

    def __init__(self, path: Path, specs: dict[str, dict[str, str]]):
        self.path = path
        self.specs = specs
        self.unrepresented: Counter[str] = Counter()
        self.failures: list[str] = []
        self.clipped: list[str] = []
        self.mistyped: list[str] = []
        self.unlabelled: list[str] = []
        self.failures_of_images: list[str] = []
        self.total_shapes = 0

    def image(self, im: ET.Element) -> Optional[LabelledImage]:
        name = im.get("name", "")
        image_id = im.get("id")
        where = f"image {_shown(name)}" + (f" (id {image_id})" if image_id is not None else "")
        if not name or im.get("width") is None or im.get("height") is None:
            self.failures_of_images.append(f"<image id={image_id!r} name={name!r}> lacks a name, width or height")
            return None
        _check_image_name(name, where)
        w, h = _whole(im.get("width"), f"{where}, width"), _whole(im.get("height"), f"{where}, height")
        problem = size_problem(h, w)  # the pixel limit (SPECULA_MAX_PIXELS) of photos and every format
        if problem is not None:
            raise _Refused(f"{where}: {problem}", "" if w > 0 and h > 0 else _DAMAGED)
        img = LabelledImage(name.replace("\\", "/"), (h, w), [], None)
        ordinal: Counter[str] = Counter()
        for el in im:
            ordinal[el.tag] += 1
            shape_where = f"{where}, {el.tag} {ordinal[el.tag]}"
            if el.tag == "tag":
                self._tag(el, shape_where, img)
            elif el.tag in _REGIONS:
                self._shape(el, shape_where, img)
            else:
                self.unrepresented[el.tag] += 1
        return img

    def _tag(self, el: ET.Element, where: str, img: LabelledImage) -> None:
        label = el.get("label") or ""
        if not label:
            self.unrepresented["tags without a label"] += 1
            return
        img.tags.append(_check_name(label, f"{where}, label", "tag"))
        if el.find("attribute") is not None:
            self.unrepresented["tag attributes"] += len(el.findall("attribute"))

    def _shape(self, el: ET.Element, where: str, img: LabelledImage) -> None:
        self.total_shapes += 1
        label = el.get("label") or ""
        if label:
            _check_name(label, f"{where}, label", "class name")
        attributes = self._attributes(el, label, where)
        try:
            mask, outside = _region(el, where, img.size)
            if mask.is_empty():
                raise ValueError("covers no pixel of the image")
        except ValueError as exc:
            self.failures.append(f"{where}: {exc}")
            return
        if outside:
            self.clipped.append(where)
        if el.get("group_id") not in (None, "", "0"):
            self.unrepresented["group ids"] += 1
        if not label:
            label = UNLABELLED
            self.unlabelled.append(where)
        source = el.get("source", "manual")
        origin = el.get("specula_origin") or ("manual" if source == "manual" else f"cvat-{source}")
        _check_text(origin, f"{where}, specula_origin")
        state = el.get("specula_state", "accepted")
        score_text = el.get("specula_score")
        score = _finite(score_text, f"{where}, specula_score") if score_text else None
        img.instances.append(LabelledInstance(
            label, mask, score=score, origin=origin, state=state if state in _STATES else "accepted",
            attributes=attributes,
        ))

    def _attributes(self, el: ET.Element, label: str, where: str) -> dict:
        out: dict = {}
        declared = self.specs.get(label, {})
        for a in el.findall("attribute"):
            name = a.get("name") or ""
            if not name:
                self.unrepresented["attributes without a name"] += 1
                continue
            _check_name(name, f"{where}, attribute name", "attribute name")
            text = _check_value(a.text or "", f"{where}, attribute {name!r} value")
            value, fits = _typed(text, declared.get(name))
            if not fits:
                self.mistyped.append(f"{where}, attribute {name!r} = {text!r} (declared {declared.get(name)})")
            out[name] = value
        # occluded="0" adds nothing, so a Specula round trip does not grow every dict
        if (el.get("occluded") or "0").strip() == "1":
            out["occluded"] = True
        return out

    def warnings(self) -> list[str]:
        out = [f"{self.path}: {m}; skipped" for m in self.failures_of_images]
        if self.clipped:
            out.append(f"{self.path}: {len(self.clipped)} shape(s) reach outside their image and were clipped "
                       f"to it (first: {self.clipped[0]})")
        if self.unlabelled:
            out.append(f"{self.path}: {len(self.unlabelled)} shape(s) have no label and were imported as "
                       f"'{UNLABELLED}' (first: {self.unlabelled[0]})")
        if self.mistyped:
            out.append(f"{self.path}: {len(self.mistyped)} attribute value(s) do not fit their declared input "
                       f"type and were kept as text (first: {self.mistyped[0]})")
        if self.unrepresented:
            kinds = ", ".join(f"{n} {t}" for t, n in sorted(self.unrepresented.items()))
            out.append(f"{self.path}: skipped shapes and details Specula cannot represent: {kinds}")
        out.extend(f"{self.path}: {f}; skipped" for f in self.failures)
        return out


def import_cvat(path: str | Path, image_root: Optional[str | Path] = None, *, progress: Progress = None) -> ImportResult:
    """Read a CVAT for images 1.1 XML file (see the module note for what is kept and refused).

    Polylines, points, skeletons and cuboids are not regions to segment and are
    counted in one warning; video tracks are skipped with a warning. A shape with an
    empty label is imported as class ``unlabelled``. ``LabelledImage.file`` is set
    where the image lies beside the file (or under ``images/``, or ``image_root``);
    a project matches the others by path and name, and reports those it lacks.
    Raises ``FormatError`` (one line) for a file that cannot be imported.
    """
    path = Path(path)
    root = _parse(path)
    if root.tag != "annotations":
        raise FormatError(f"{path}: root element <{root.tag}> is not <annotations>; this is not a CVAT XML file")
    warnings: list[str] = []
    version = root.findtext("version")
    if version and version.strip() != "1.1":
        warnings.append(f"{path}: CVAT format version {version.strip()}; read as 1.1")
    image_els = root.findall("image")
    tracks = root.findall("track")
    if not image_els and tracks:
        raise FormatError(f"{path}: CVAT for video (tracks), not for images; export the task as 'CVAT for images 1.1'")
    if tracks:
        warnings.append(f"{path}: {len(tracks)} video track(s) ignored; only per-image shapes are imported")
    try:
        max_pixels_limit()  # a bad SPECULA_MAX_PIXELS is said once, not per image
    except ValueError as exc:
        raise FormatError(f"{path}: not imported: {exc}") from None
    roots = [Path(image_root)] if image_root is not None else [path.parent, path.parent / "images"]
    images: list[LabelledImage] = []
    try:
        classes, specs = _label_specs(root)
        reader = _Reader(path, specs)
        for k, im in enumerate(image_els):
            img = reader.image(im)
            if img is not None:
                img.file = _on_disk(img.path, roots)
                for inst in img.instances:
                    classes.setdefault(inst.class_name, None)
                images.append(img)
            report(progress, k + 1, len(image_els))
    except _Refused as exc:
        raise FormatError(f"{path}: {exc}" + (f"; {exc.advice}" if exc.advice else "")) from None
    if reader.failures and len(reader.failures) == reader.total_shapes:
        raise FormatError(
            f"{path}: none of its {reader.total_shapes} shapes could be read (first: {reader.failures[0]}); "
            f"the file is damaged, export it again from CVAT"
        )
    return ImportResult(
        images, classes, warnings + reader.warnings(),
        images_skipped=list(reader.failures_of_images), labels_skipped=len(reader.failures),
    )


def _on_disk(name: str, roots: Sequence[Path]) -> Optional[Path]:
    """The image file beside the CVAT file, if it is there. Not finding it is no warning:
    CVAT exports usually come without images, and the project matches them by name."""
    rel = safe_relative(name)
    if rel is None:
        return None
    return next((r.joinpath(*rel.parts) for r in roots if r.joinpath(*rel.parts).is_file()), None)


# ------------------------------------------------------------------ export
def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _value_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)  # shortest text that reads back as the same float
    return v if isinstance(v, str) else str(v)


def _input_type(values: list) -> str:
    if all(isinstance(v, bool) for v in values):
        return "checkbox"
    if all(_is_number(v) for v in values):
        return "number"
    return "text"


def _number_step(values: list) -> str:
    """The coarsest step of the form 10^-k that every value sits on (CVAT's number spec wants one)."""
    places = 0
    for v in values:
        try:
            exponent = Decimal(_value_text(v)).as_tuple().exponent
        except InvalidOperation:
            continue
        if isinstance(exponent, int):
            places = max(places, -exponent)
    return "1" if places == 0 else format(Decimal(1).scaleb(-places), "f")


def _attribute_spec(parent: ET.Element, name: str, values: list) -> None:
    kind = _input_type(values)
    attr = ET.SubElement(parent, "attribute")
    ET.SubElement(attr, "name").text = name
    ET.SubElement(attr, "mutable").text = "False"
    ET.SubElement(attr, "input_type").text = kind
    if kind == "checkbox":
        default, spec = "false", "false"
    elif kind == "number":
        lo, hi = min(values), max(values)
        default, spec = _value_text(lo), "\n".join([_value_text(lo), _value_text(hi), _number_step(values)])
    else:
        default, spec = "", ""
    ET.SubElement(attr, "default_value").text = default
    ET.SubElement(attr, "values").text = spec


def _shape_element(inst: LabelledInstance, z_order: int) -> ET.Element:
    m = inst.mask.cropped()
    occluded = inst.attributes.get("occluded")
    attrs = {
        "label": inst.class_name,
        "source": "manual" if inst.origin == "manual" else "auto",
        "occluded": "1" if occluded is True else "0",
        "z_order": str(z_order),
        "specula_origin": inst.origin,
        "specula_state": str(getattr(inst.state, "value", inst.state)),
    }
    if inst.score is not None:
        attrs["specula_score"] = repr(float(inst.score))
    el: Optional[ET.Element] = None
    rings = corner_rings(m.array) if not inst.iscrowd else []
    if len(rings) == 1 and not rings[0][1]:
        ring = rings[0][0] + (m.x0, m.y0)
        flat = [float(v) for v in ring.ravel()]
        if polygons_reproduce([flat], m):
            attrs["points"] = ";".join(f"{_fmt(x)},{_fmt(y)}" for x, y in ring)
            el = ET.Element("polygon", attrs)
    if el is None:
        x0, y0, x1, y1 = m.bbox
        attrs.update(rle=encode_cvat_rle(m.array), left=str(x0), top=str(y0), width=str(x1 - x0), height=str(y1 - y0))
        el = ET.Element("mask", attrs)
    for name, value in inst.attributes.items():
        if name == "occluded" and isinstance(value, bool):
            continue  # carried by the XML attribute above
        ET.SubElement(el, "attribute", {"name": name}).text = _value_text(value)
    return el


def _check_exportable(images: Sequence[LabelledImage], colors: dict[str, Optional[Color]], out_path: Path) -> None:
    """Refuse, before writing, any text the importer would refuse (a NUL in a class name
    would otherwise make an XML file that nothing can parse)."""
    try:
        for name in colors:
            _check_name(name, "class name", "class name")
        for img in images:
            _check_image_name(img.path, "image path")
            for tag in img.tags:
                _check_name(tag, f"image {_shown(img.path)}, tag", "tag")
            for inst in img.instances:
                _check_text(inst.origin, f"image {_shown(img.path)}, origin")
                for key, value in inst.attributes.items():
                    _check_name(str(key), f"image {_shown(img.path)}, attribute name", "attribute name")
                    _check_value(_value_text(value), f"image {_shown(img.path)}, attribute {key!r} value")
    except _Refused as exc:
        raise FormatError(f"{out_path}: not written: {exc}; rename it in the project and export again") from None


def export_cvat(
    images: Sequence[LabelledImage],
    palette: Palette,
    out_path: str | Path,
    *,
    progress: Progress = None,
) -> list[str]:
    """Write a CVAT for images 1.1 XML file; returns warnings.

    Labels (with colours) come from the palette, plus any class it lacks and any
    tag; z-order follows the palette's drawing order. Each label declares the
    attributes its instances carry. Raises ``FormatError`` before writing anything
    when a name or value holds a character the importer would refuse.
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
    for img in images:
        for tag in img.tags:
            colors.setdefault(tag, None)  # CVAT wants every tag's label declared
    _check_exportable(images, colors, out_path)
    declared: dict[str, dict[str, list]] = {}
    for img in images:
        for inst in img.instances:
            for key, value in inst.attributes.items():
                if key == "occluded" and isinstance(value, bool):
                    continue
                declared.setdefault(inst.class_name, {}).setdefault(key, []).append(value)
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
        specs = ET.SubElement(label, "attributes")
        for attr_name, values in declared.get(name, {}).items():
            _attribute_spec(specs, attr_name, values)
    for k, img in enumerate(images):
        h, w = img.size
        el = ET.SubElement(root, "image", {"id": str(k), "name": img.path, "width": str(w), "height": str(h)})
        for inst in img.instances:
            if inst.mask.is_empty():
                warnings.append(f"{img.path}: an empty '{inst.class_name}' instance was not written")
                continue
            el.append(_shape_element(inst, order[inst.class_name]))
        for tag in img.tags:
            ET.SubElement(el, "tag", {"label": tag, "source": "manual"})
        report(progress, k + 1, len(images))
    ET.indent(root, space="  ")
    data = ('<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")).encode("utf-8")
    atomic_write_bytes(out_path, data)
    return warnings
