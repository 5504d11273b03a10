"""Shared plain data and helpers of the import/export formats.

Every importer returns an ``ImportResult``: images with their labelled instances
(masks are ``Mask`` crops, never full-image arrays kept around), the classes the
file names (with a colour where the format has one) and warnings for everything
it skipped. One bad annotation never stops an import; a file that cannot be read
as a whole raises ``FormatError`` whose one-line message names the file, what is
wrong and what to do.

Validation at the edge: every value read from a file is checked where the format
is parsed (one reader per format), against the numbers of ``limits``, before it is
handed on: ``read_json`` refuses what no tool writes (NaN, infinities, integers
beyond int64, lone surrogates, deep nesting), ``open_image`` refuses images over the
pixel limit from their header. Damage names its element (``annotations[12].
segmentation[0][5]``, ``shapes[3].points[1]``); what a format carries but Specula
cannot keep is counted by kind (``Tally``), one warning line each, never dropped
silently.

Paths: ``LabelledImage.path`` is a POSIX path as the format names the image
(relative to the annotation file or to the image root); ``LabelledImage.file`` is
the image on disk where the importer found it, else ``None``.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Optional, Sequence

import numpy as np
from PIL import Image

from annotation.files import atomic_write_bytes
from annotation.formats.limits import (
    MAX_INSTANCES_PER_IMAGE,
    MAX_JSON_DEPTH,
    MAX_JSON_INT,
    class_name_problem,
    max_pixels,
    size_problem,
)
from annotation.images import IMAGE_EXTENSIONS, MAX_PIXELS_ENV, pixel_limit
from annotation.mask import Mask

Color = tuple[int, int, int]
Progress = Optional[Callable[[int, int], None]]

class FormatError(ValueError):
    """A file that cannot be imported as a whole; the message says which, why and what to do."""


@dataclass
class LabelledInstance:
    """One labelled region as a format carries it (the store's ``Instance`` without ids)."""

    class_name: str
    mask: Mask
    score: Optional[float] = None
    origin: str = "manual"
    iscrowd: bool = False
    state: str = "accepted"
    attributes: dict = field(default_factory=dict)  # name -> str, number or bool (CVAT attributes, labelme flags)


@dataclass
class LabelledImage:
    """An image and its instances. ``size`` is ``(height, width)``."""

    path: str
    size: tuple[int, int]
    instances: list[LabelledInstance] = field(default_factory=list)
    # where the importer found the image on disk (absolute); None when it did not
    file: Optional[Path] = None
    tags: list[str] = field(default_factory=list)  # image-level labels (CVAT tags, labelme image flags)


@dataclass
class ImportResult:
    images: list[LabelledImage]
    classes: dict[str, Optional[Color]]
    warnings: list[str]
    # images (or their files) the file names but whose labels were not read at all,
    # each "<name>: why" (also said in ``warnings``): the import finished with problems
    images_skipped: list[str] = field(default_factory=list)
    # damaged annotations / shapes / mask files skipped (each said in ``warnings``)
    labels_skipped: int = 0


class Tally:
    """What an importer read but cannot keep, counted by kind for one warning line each.

    ``add("shapes of type 'line' skipped", "a.json: shapes[3]")`` three times gives
    ``"3 shapes of type 'line' skipped (first: a.json: shapes[3])"``: nothing is
    dropped silently, and a file with 10 000 of them does not give 10 000 lines.
    """

    def __init__(self) -> None:
        self._kinds: dict[str, list] = {}  # kind -> [count, first where]

    def add(self, kind: str, where: str = "", n: int = 1) -> None:
        entry = self._kinds.setdefault(kind, [0, where])
        entry[0] += n

    def __bool__(self) -> bool:
        return bool(self._kinds)

    def lines(self, prefix: str = "") -> list[str]:
        """One line per kind, in the order first seen."""
        head = f"{prefix}: " if prefix else ""
        return [
            f"{head}{n} {kind}" + (f" (first: {first})" if first else "")
            for kind, (n, first) in self._kinds.items()
        ]


# ------------------------------------------------------------------ reading files
class _HugeInt:
    """A JSON integer with more digits than any id or size can have (kept unparsed:
    Python refuses to parse more than 4300 digits, and the walker names the element)."""

    __slots__ = ("digits",)

    def __init__(self, digits: int):
        self.digits = digits


def _parse_int(text: str) -> Any:
    return _HugeInt(len(text.lstrip("-"))) if len(text) > 20 else int(text)


def element(*parts: Any) -> str:
    """A JSON element's path as a message names it: ``annotations[12].segmentation[0][5]``."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, str) and p.isidentifier() and p.isascii():
            out += f".{p}" if out else p
        else:
            out += f"[{json.dumps(str(p))}]"
    return out or "the top level"


def _text_problem(text: str) -> Optional[str]:
    """Why a JSON string is not text (a lone surrogate from a ``\\ud800`` escape), else None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        return f"holds the lone surrogate U+{ord(bad):04X}, which is not text"
    return None


def _scalar_problem(v: Any) -> Optional[str]:
    t = type(v)
    if t is float:
        if math.isnan(v):
            return "NaN is not a finite number (JSON has no NaN)"
        if v - v != 0.0:  # inf - inf is nan
            return (f"{'-' if v < 0 else ''}Infinity is not a finite number (JSON has none; "
                    f"a number beyond 1.8e308 reads as one)")
    elif t is int:
        if v > MAX_JSON_INT or v < -MAX_JSON_INT:
            return f"the integer {v} is out of range (at most {MAX_JSON_INT})"
    elif t is str:
        if not v.isascii():
            return _text_problem(v)
    elif t is _HugeInt:
        return f"an integer of {v.digits} digits is out of range (at most {MAX_JSON_INT})"
    return None


def check_json_values(data: Any) -> Optional[tuple[str, str]]:
    """The first element of parsed JSON that no annotation file can hold, as ``(path, why)``.

    Checked once for the whole document, so that nothing after it sees them: nesting
    deeper than ``MAX_JSON_DEPTH``, NaN and infinities (Python's json accepts them,
    JSON does not), integers beyond int64, and lone surrogates in strings or keys
    (they cannot be written to SQLite, a file or a message). Iterative: a deep file
    cannot exhaust the stack here.
    """
    if type(data) is not dict and type(data) is not list:
        problem = _scalar_problem(data)
        return None if problem is None else (element(), problem)
    stack: list[tuple[Any, tuple]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if len(path) >= MAX_JSON_DEPTH:
            return element(*path), f"nested more than {MAX_JSON_DEPTH} levels deep (no annotation file is)"
        if type(node) is list and len(node) > 16:
            # a list of numbers (a polygon) in three passes of C: a NaN or an infinity
            # makes the sum non-finite; anything else (texts, lists) raises TypeError
            try:
                total = sum(node)
                if total - total == 0.0 and -MAX_JSON_INT <= min(node) and max(node) <= MAX_JSON_INT:
                    continue
            except TypeError:
                pass
        items = node.items() if type(node) is dict else enumerate(node)
        for k, v in items:
            if type(k) is str and not k.isascii():
                problem = _text_problem(k)
                if problem:
                    return element(*path, k), f"the key {problem}"
            t = type(v)
            # the common cases inline: a COCO file is millions of coordinates
            if t is float:
                if v - v == 0.0:  # inf - inf and nan - nan are nan
                    continue
            elif t is dict or t is list:
                if v:
                    stack.append((v, (*path, k)))
                continue
            elif t is int:
                if -MAX_JSON_INT <= v <= MAX_JSON_INT:
                    continue
            elif t is str:
                if v.isascii():
                    continue
            elif t is bool or v is None:
                continue
            problem = _scalar_problem(v)
            if problem:
                return element(*path, k), problem
    return None


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file, checked by ``check_json_values``, or raise a one-line ``FormatError``.

    Every way a file can fail to be JSON ends here as one line naming the file: missing,
    not UTF-8, truncated, nested too deep for the parser, an integer of thousands of
    digits, NaN or a lone surrogate (these two naming the element).
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise FormatError(f"{path}: cannot read the {what} file ({exc.strerror or exc}); check the path") from None
    except MemoryError:
        raise FormatError(f"{path}: too large to read into memory; not a {what} file this machine can import") from None
    try:
        data = json.loads(raw, parse_int=_parse_int)
    except UnicodeDecodeError:
        raise FormatError(f"{path}: not a {what} file (not UTF-8 text); pick the .json annotation file") from None
    except json.JSONDecodeError as exc:
        raise FormatError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); "
            f"the file is truncated or damaged, export it again"
        ) from None
    except RecursionError:
        raise FormatError(
            f"{path}: nested deeper than the JSON parser can follow (an annotation file needs at most "
            f"{MAX_JSON_DEPTH} levels); the file is damaged or not a {what} file"
        ) from None
    except MemoryError:
        raise FormatError(f"{path}: too large to parse in memory; not a {what} file this machine can import") from None
    except ValueError as exc:  # the parser's own limits; one line, whatever they say
        raise FormatError(f"{path}: not a readable {what} file ({' '.join(str(exc).split())})") from None
    found = check_json_values(data)
    if found is not None:
        where, why = found
        raise FormatError(f"{path}: {where}: {why}; the file is damaged, export it again")
    return data


_TOO_LARGE_ADVICE = "a guard against damaged files: if the image really is that large, raise the limit"


def _open_within_limit(source: Any, name: str) -> Image.Image:
    """Open an image file or buffer, refuse it by its header if it is over the pixel
    limit (``SPECULA_MAX_PIXELS``, the limit of the photos too), then decode it.

    Decoders fail in many ways on damaged data (OSError, SyntaxError, struct.error,
    IndexError, ...): every one becomes a one-line ``FormatError`` naming ``name``.
    """
    try:
        max_pixels()
    except ValueError as exc:
        raise FormatError(f"{name}: {exc}") from None
    try:
        with pixel_limit():
            im = Image.open(source)
            problem = size_problem(im.height, im.width)
            if problem:
                im.close()
                raise FormatError(f"{name}: {problem}; {_TOO_LARGE_ADVICE}")
            im.load()
            return im
    except FormatError:
        raise
    except Image.DecompressionBombError as exc:
        # Pillow's guard (at twice our limit) fired inside Image.open, before our check
        # could: the same refusal, in our words
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(found.group(1))} pixels" if found else "more pixels than allowed"
        raise FormatError(
            f"{name}: an image of {pixels} is over the limit of {max_pixels()} ({MAX_PIXELS_ENV}); {_TOO_LARGE_ADVICE}"
        ) from None
    except MemoryError:
        raise FormatError(f"{name}: the image does not fit in memory; not imported") from None
    except Exception as exc:  # noqa: BLE001 - a decoder's failure on a damaged file, said in one line
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise FormatError(f"{name}: not a readable image ({text}); replace or remove the file") from None


def open_image(path: Path) -> Image.Image:
    """Open an image for its pixels; raises ``FormatError`` for unreadable files and for
    images over the pixel limit (checked from the header, before any pixel is decoded)."""
    return _open_within_limit(path, str(path))


def _on(a: np.ndarray) -> np.ndarray:
    """Foreground of one channel: non-zero for 0/1 masks, >= half range for 0..255 ones.

    The half-range threshold keeps anti-aliased or resampled mask edges from
    growing the mask by their faintest pixels. ``a`` holds finite values.
    """
    if a.dtype == bool:
        return a
    top = a.max() if a.size else 0
    if top <= 1:
        return a != 0
    return a >= (128 if a.dtype == np.uint8 or top <= 255 else (int(top) + 1) // 2)


def check_finite_pixels(a: np.ndarray, where: str) -> np.ndarray:
    """``a`` itself, or ``FormatError`` naming the first NaN or infinite pixel (float TIFF masks)."""
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            y, x = (int(v) for v in np.argwhere(bad)[0][:2])
            raise FormatError(
                f"{where}: pixel ({x}, {y}) is {a[y, x]}: a mask holds finite values; the file is damaged"
            )
    return a


def image_to_binary(im: Image.Image, where: str = "mask image") -> np.ndarray:
    """A mask image as an (H, W) bool array; ``FormatError`` naming ``where`` for NaN or
    infinite pixels and for modes that have no reading as a mask.

    Palette PNGs are read by colour, not index: any colour but black is foreground
    (pycococreator's masks put white at index 0 in one file and at index 1 in the
    next). Grey and 1-bit are read by value, RGB by its brightest channel, and RGBA
    by colour unless the colour is constant and the alpha channel carries the mask.
    """
    try:
        if im.mode == "P":
            return np.asarray(im.convert("RGB")).any(axis=2)
        if im.mode in ("1", "L", "I", "I;16", "F"):
            return _on(check_finite_pixels(np.asarray(im), where))
        if im.mode in ("LA", "RGBA", "PA"):
            a = np.asarray(im.convert("RGBA"))
            rgb = a[..., :3].max(axis=2)
            if rgb.min() == rgb.max():  # colour carries nothing: the alpha does
                return _on(a[..., 3])
            return _on(rgb)
        return _on(np.asarray(im.convert("RGB")).max(axis=2))
    except FormatError:
        raise
    except (ValueError, OSError) as exc:  # a mode Pillow cannot convert (I;16B, ...)
        raise FormatError(f"{where}: an image of mode {im.mode} cannot be read as a mask ({exc})") from None


def read_binary_mask(path: Path) -> np.ndarray:
    """Read a binary mask image (0/1, 0/255, palette, RGBA) as an (H, W) bool array."""
    with open_image(path) as im:
        return image_to_binary(im, str(path))


def image_from_base64(data: str, where: str) -> Image.Image:
    """Decode a base64 PNG/JPEG (labelme's ``imageData`` and ``mask``), refused by its
    header when it is over the pixel limit."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"{where}: embedded image is not valid base64 ({exc})") from None
    return _open_within_limit(io.BytesIO(raw), f"{where}: embedded image")


def image_to_base64_png(array: np.ndarray) -> str:
    """A bool (H, W) array as base64 PNG of 0/1 values (labelme's ``mask`` encoding)."""
    import base64

    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# ------------------------------------------------------------------ writing files
def write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def write_png(path: Path, array: np.ndarray, mode: Optional[str] = None) -> None:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


# ------------------------------------------------------------------ paths
def safe_relative(path: str) -> Optional[PurePosixPath]:
    """A format's image path as a relative POSIX path, or None if it escapes its root.

    Backslashes count as separators (Windows tools write them); an absolute path,
    a drive letter or a ``..`` that climbs above the start is refused, because a
    path read from an annotation file must never reach outside the folder it is
    meant for.
    """
    p = str(path).replace("\\", "/")
    if not p or p.startswith("/") or (len(p) > 1 and p[1] == ":"):
        return None
    parts: list[str] = []
    for part in p.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return PurePosixPath(*parts) if parts else None


def output_path(out_dir: Path, image_path: str, suffix: str) -> Path:
    """Where an exporter writes the file of one image: its relative folders kept, suffix swapped.

    Paths that would escape ``out_dir`` are reduced to their file name.
    """
    rel = safe_relative(image_path) or PurePosixPath(PurePosixPath(str(image_path).replace("\\", "/")).name or "image")
    return Path(out_dir, *rel.parent.parts, rel.stem + suffix)


def find_image(folder: Path, stem: str) -> Optional[Path]:
    """An image file in ``folder`` whose name is ``stem`` plus an image extension."""
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        cand = folder / (stem + ext)
        if is_file(cand):
            return cand
    return None


def mask_image_files(folder: Path, what: str) -> list[Path]:
    """The PNG/BMP/TIFF mask files of a folder (sorted), or ``FormatError`` when there are none."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise FormatError(f"{folder}: no such folder of {what}; pass the folder that holds the mask images")
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in (".png", ".bmp", ".tif", ".tiff") and not p.name.startswith(".")
    )
    if not files:
        raise FormatError(f"{folder}: holds no mask images (.png, .bmp, .tif); pass the folder of {what}")
    return files


_PHOTO_FOLDERS = ("image", "images", "img", "imgs", "JPEGImages")


def default_image_roots(mask_dir: Path) -> list[Path]:
    """Where photos may sit beside a folder of masks: its usual siblings (``image/``,
    ``images/``, ...) where there are any, else the parent and every other folder beside it."""
    parent = mask_dir.parent
    mine = mask_dir.resolve()
    # the mask folder itself may have one of those names (an export to ``imgs/``): never a photo root
    named = [parent / n for n in _PHOTO_FOLDERS if (parent / n).is_dir() and (parent / n).resolve() != mine]
    if named:
        return named
    try:
        siblings = sorted(
            d for d in parent.iterdir()
            if not d.name.startswith(".") and d.is_dir() and d.resolve() != mine
        )
    except OSError:
        siblings = []
    return [parent, *siblings]


def shown(value: Any, limit: int = 60) -> str:
    """A value read from a file, as a one-line message can show it (containers by kind,
    long texts cut, control characters escaped)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, str):
        text = value if len(value) <= limit else value[:limit]
        out = json.dumps(text)  # escapes control characters and lone surrogates
        return out if len(value) <= limit else f"{out[:-1]}...\" ({len(value)} characters)"
    return repr(value)


def path_text_problem(text: str) -> Optional[str]:
    """Why an image path (read from a file, or a file's own name) cannot name an image of a
    project (None when it can): control characters, bytes that are not UTF-8 (Python
    hands them over as lone surrogates, which SQLite cannot store), or a part longer
    than any file system allows (the OS would raise)."""
    if not text.isascii() and _text_problem(text):
        return "is not valid UTF-8 text (a name no project can store)"
    for ch in text:
        if ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0:
            return f"holds the control character U+{ord(ch):04X}"
    if len(text) > 4096 or any(len(part.encode("utf-8", "replace")) > 255 for part in text.replace("\\", "/").split("/")):
        return "is longer than a file system allows (255 bytes a name, 4096 in all)"
    return None


def is_file(path: Path) -> bool:
    """``path.is_file()`` that says False instead of raising for names no file can have."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def shown_path(path: Path) -> str:
    """A file's path for a message, with bytes that are not UTF-8 escaped (``\\xff``)."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def usable_mask_files(files: Sequence[Path], warnings: list[str], skipped: list[str]) -> list[Path]:
    """``files`` without those whose name no project can store (said, and counted as skipped)."""
    out = []
    for f in files:
        problem = path_text_problem(f.name)
        if problem:
            message = f"{shown_path(f)}: its name {problem}; rename the file"
            warnings.append(f"{message}; skipped")
            skipped.append(message)
        else:
            out.append(f)
    return out


def check_class_name(name: object, where: str) -> str:
    """``name`` if it can be a class name, else ``FormatError`` naming ``where``: class
    names go into menus, XML, JSON and file names, so control characters, lone
    surrogates and names over ``MAX_CLASS_NAME_LENGTH`` characters are refused here."""
    problem = class_name_problem(name)
    if problem:
        raise FormatError(f"{where}: {problem}; rename the class in the tool that wrote the file")
    return name  # type: ignore[return-value]


def too_many_instances(count: int) -> Optional[str]:
    """Why an image with ``count`` instances is not imported (None when it is)."""
    if count > MAX_INSTANCES_PER_IMAGE:
        return f"{count} instances, over the limit of {MAX_INSTANCES_PER_IMAGE} per image"
    return None


def report(progress: Progress, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def class_colors(images: Sequence[LabelledImage], known: Optional[dict[str, Optional[Color]]] = None) -> dict[str, Optional[Color]]:
    """The classes used by ``images`` (in first-seen order), with colours from ``known``."""
    out: dict[str, Optional[Color]] = dict(known or {})
    for img in images:
        for inst in img.instances:
            out.setdefault(inst.class_name, None)
    return out


def fit_to_size(array: np.ndarray, size: tuple[int, int], where: str, warnings: list[str]) -> np.ndarray:
    """Resize a mask to the image size (nearest neighbour), with a warning.

    OpenImages-style masks are stored at another resolution than their photo; the
    label still belongs to the photo, so it is scaled rather than dropped.
    """
    if array.shape == tuple(size):
        return array
    import cv2

    warnings.append(
        f"{where}: mask is {array.shape[1]}x{array.shape[0]} but the image is {size[1]}x{size[0]}; "
        f"resized to the image (nearest neighbour)"
    )
    return cv2.resize(array.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


class ImagePairing:
    """Pairs mask files with their photos by the relative path the user gave.

    The mask ``<mask folder>/<sub>/ID.png`` belongs to the photo ``<root>/<sub>/ID.<ext>``
    of a photo root: ``image_root`` when given, else the mask folder's usual siblings
    (``image/``, ``images/``, ...), else its parent and every folder beside it. Nothing
    is searched by name elsewhere: a stale copy (``gt_v1/ID.png`` beside ``gt/``) must
    never take the labels. Two or more candidates refuse the import, listing them,
    rather than guess; a mask with none still imports under its own name, which the
    project then matches by name.
    """

    def __init__(self, mask_path: Path, image_root: Optional[Path]):
        mask_path = Path(mask_path)
        self.mask_dir = mask_path.parent if mask_path.is_file() else mask_path
        self.roots = [Path(image_root)] if image_root is not None else default_image_roots(self.mask_dir)
        # a photo's path is given relative to its root, or, when the roots are the parent
        # and the folders beside it, relative to the parent (``photos/001.jpg``)
        named = image_root is not None or self.roots[0] != self.mask_dir.parent
        self._base = {r: (r if named else self.mask_dir.parent) for r in self.roots}
        self._listings: dict[Path, dict[str, list[Path]]] = {}
        self._found_under: dict[Path, Path] = {}
        self._stems: dict[tuple[str, ...], set[str]] = {}
        self.unpaired: list[str] = []

    def _photos_in(self, folder: Path) -> dict[str, list[Path]]:
        """The image files of one folder by stem (listed once)."""
        listing = self._listings.get(folder)
        if listing is None:
            listing = {}
            try:
                entries = sorted(folder.iterdir()) if folder.is_dir() else []
            except OSError:
                entries = []
            for f in entries:
                # a photo whose name no project can store is no candidate (it could not be matched)
                if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".") and f.is_file() \
                        and not path_text_problem(f.name):
                    listing.setdefault(f.stem, []).append(f)
            self._listings[folder] = listing
        return listing

    def _sub(self, mask_file: Path) -> tuple[str, ...]:
        try:
            return Path(mask_file).parent.relative_to(self.mask_dir).parts
        except ValueError:
            return ()

    def stems(self, mask_file: Path) -> set[str]:
        """The stems of the photos that could sit beside ``mask_file``'s photo (instance-mask names)."""
        sub = self._sub(mask_file)
        out = self._stems.get(sub)
        if out is None:
            out = set()
            for root in self.roots:
                out.update(self._photos_in(root.joinpath(*sub)))
            self._stems[sub] = out
        return out

    def candidates(self, stem: str, mask_file: Path) -> list[Path]:
        """Every photo ``<root>/<sub>/<stem>.<ext>``, the mask file itself excluded."""
        sub = self._sub(mask_file)
        me = Path(mask_file).resolve()
        out: list[Path] = []
        seen: set[Path] = set()
        for root in self.roots:
            for f in self._photos_in(root.joinpath(*sub)).get(stem, []):
                real = f.resolve()
                if real != me and real not in seen:
                    seen.add(real)
                    out.append(f)
                    self._found_under[f] = root
        return out

    def image_for(self, stem: str, mask_file: Path, mask: np.ndarray, warnings: list[str]) -> tuple[LabelledImage, np.ndarray]:
        """The ``LabelledImage`` for a mask, and the mask fitted to that image's size.

        Raises ``FormatError`` when more than one photo could be the mask's image.
        """
        from annotation.images import ImageReadError, image_size

        sub = self._sub(mask_file)
        found = self.candidates(stem, mask_file)
        if not found:
            self.unpaired.append(mask_file.name)
            return LabelledImage("/".join((*sub, mask_file.name)), mask.shape[:2], [], None), mask
        if len(found) > 1:
            shown = ", ".join(os.path.relpath(f, self.mask_dir.parent).replace(os.sep, "/") for f in found[:6])
            raise FormatError(
                f"{mask_file}: {len(found)} photos could be its image ({shown}); nothing was imported: "
                f"give the folder of the photos (image_root) or move the other copies away"
            )
        file = found[0]
        try:
            size = image_size(file)
        except ImageReadError as exc:
            warnings.append(f"{mask_file}: its image {file} cannot be read ({exc}); the mask's size is used")
            size = mask.shape[:2]
        rel = os.path.relpath(file, self._base[self._found_under[file]]).replace(os.sep, "/")
        return LabelledImage(rel, size, [], file), fit_to_size(mask, size, str(mask_file), warnings)

    def warn_unpaired(self, warnings: list[str]) -> None:
        if self.unpaired:
            shown = ", ".join(self.unpaired[:5]) + (" ..." if len(self.unpaired) > 5 else "")
            warnings.append(
                f"{len(self.unpaired)} mask(s) have no image of the same name in "
                f"{', '.join(str(r) for r in self.roots[:3])}{' ...' if len(self.roots) > 3 else ''} ({shown}); "
                f"imported with the mask's size, to be matched to project images by name"
            )
