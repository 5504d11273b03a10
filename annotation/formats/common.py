"""Shared plain data and helpers of the import/export formats.

Every importer returns an ``ImportResult``: images with their labelled instances
(masks are ``Mask`` crops, never full-image arrays kept around), the classes the
file names (with a colour where the format has one) and warnings for everything
it skipped. One bad annotation never stops an import; a file that cannot be read
as a whole raises ``FormatError`` whose one-line message names the file, what is
wrong and what to do.

Paths: ``LabelledImage.path`` is a POSIX path as the format names the image
(relative to the annotation file or to the image root); ``LabelledImage.file`` is
the image on disk where the importer found it, else ``None``.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
from PIL import Image

from annotation.files import atomic_write_bytes
from annotation.images import IMAGE_EXTENSIONS
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


@dataclass
class LabelledImage:
    """An image and its instances. ``size`` is ``(height, width)``."""

    path: str
    size: tuple[int, int]
    instances: list[LabelledInstance] = field(default_factory=list)
    # where the importer found the image on disk (absolute); None when it did not
    file: Optional[Path] = None


@dataclass
class ImportResult:
    images: list[LabelledImage]
    classes: dict[str, Optional[Color]]
    warnings: list[str]


# ------------------------------------------------------------------ reading files
def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file or raise a one-line ``FormatError`` (truncated, not UTF-8, missing)."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise FormatError(f"{path}: cannot read the {what} file ({exc.strerror or exc}); check the path") from None
    try:
        return json.loads(text)
    except UnicodeDecodeError:
        raise FormatError(f"{path}: not a {what} file (not UTF-8 text); pick the .json annotation file") from None
    except json.JSONDecodeError as exc:
        raise FormatError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); "
            f"the file is truncated or damaged, export it again"
        ) from None


def open_image(path: Path) -> Image.Image:
    """Open an image for its pixels; raises ``FormatError`` for unreadable files."""
    # Pillow's own decompression-bomb guard stays on: a tiny PNG that claims
    # billions of pixels is refused rather than allocated
    try:
        im = Image.open(path)
        im.load()
        return im
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise FormatError(f"{path}: not a readable image ({exc}); replace or remove the file") from None


def _on(a: np.ndarray) -> np.ndarray:
    """Foreground of one channel: non-zero for 0/1 masks, >= half range for 0..255 ones.

    The half-range threshold keeps anti-aliased or resampled mask edges from
    growing the mask by their faintest pixels.
    """
    if a.dtype == bool:
        return a
    top = a.max() if a.size else 0
    if top <= 1:
        return a != 0
    return a >= (128 if a.dtype == np.uint8 or top <= 255 else (int(top) + 1) // 2)


def image_to_binary(im: Image.Image) -> np.ndarray:
    """A mask image as an (H, W) bool array.

    Palette PNGs are read by colour, not index: any colour but black is foreground
    (pycococreator's masks put white at index 0 in one file and at index 1 in the
    next). Grey and 1-bit are read by value, RGB by its brightest channel, and RGBA
    by colour unless the colour is constant and the alpha channel carries the mask.
    """
    if im.mode == "P":
        return np.asarray(im.convert("RGB")).any(axis=2)
    if im.mode in ("1", "L", "I", "I;16", "F"):
        return _on(np.asarray(im))
    if im.mode in ("LA", "RGBA", "PA"):
        a = np.asarray(im.convert("RGBA"))
        rgb = a[..., :3].max(axis=2)
        if rgb.min() == rgb.max():  # colour carries nothing: the alpha does
            return _on(a[..., 3])
        return _on(rgb)
    return _on(np.asarray(im.convert("RGB")).max(axis=2))


def read_binary_mask(path: Path) -> np.ndarray:
    """Read a binary mask image (0/1, 0/255, palette, RGBA) as an (H, W) bool array."""
    with open_image(path) as im:
        return image_to_binary(im)


def image_from_base64(data: str, where: str) -> Image.Image:
    """Decode a base64 PNG/JPEG (labelme's ``imageData`` and ``mask``)."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(data, validate=False)
        im = Image.open(io.BytesIO(raw))
        im.load()
        return im
    except (binascii.Error, OSError, ValueError, SyntaxError) as exc:
        raise FormatError(f"{where}: embedded image is not valid base64 PNG/JPEG ({exc})") from None


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
        if cand.is_file():
            return cand
    return None


def index_images(
    roots: Iterable[Path], exclude: Optional[Path] = None, limit: int = 200_000
) -> dict[str, tuple[Path, str]]:
    """Image files under ``roots`` by stem: ``stem -> (file, path relative to its root)``.

    Used to pair a mask file ``ID.png`` with its photo ``ID.jpg`` in a sibling
    folder; the first file found for a stem wins. ``exclude`` (the mask folder
    itself) is skipped so that masks are never taken for photos.
    """
    out: dict[str, tuple[Path, str]] = {}
    seen = 0
    ex = exclude.resolve() if exclude is not None else None
    for root in roots:
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            if ex is not None and Path(dirpath).resolve() == ex:
                dirnames[:] = []
                continue
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    full = Path(dirpath, name)
                    out.setdefault(Path(name).stem, (full, full.relative_to(root).as_posix()))
                    seen += 1
                    if seen >= limit:
                        return out
    return out


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


def default_image_roots(mask_dir: Path) -> list[Path]:
    """Where photos usually sit beside a folder of masks: its siblings (``image/``, ``images/``, ...)."""
    parent = mask_dir.parent
    named = [parent / n for n in ("image", "images", "img", "imgs", "JPEGImages")]
    found = [p for p in named if p.is_dir()]
    return found or [parent]


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
    """Pairs mask files with their photos by file stem (``mask/ID.png`` <-> ``image/ID.jpg``).

    ``image_root`` defaults to the mask folder's usual siblings (``image/``,
    ``images/``, ...), else its parent. Unpaired masks still import: their image
    path is then the mask's own name, which the project matches by stem.
    """

    def __init__(self, mask_dir: Path, image_root: Optional[Path]):
        mask_dir = Path(mask_dir)
        if mask_dir.is_file():
            mask_dir = mask_dir.parent
        roots = [Path(image_root)] if image_root is not None else default_image_roots(mask_dir)
        self.index = index_images(roots, exclude=mask_dir)
        self.unpaired: list[str] = []

    def image_for(self, stem: str, mask_file: Path, mask: np.ndarray, warnings: list[str]) -> tuple[LabelledImage, np.ndarray]:
        """The ``LabelledImage`` for a mask, and the mask fitted to that image's size."""
        from annotation.images import ImageReadError, image_size

        hit = self.index.get(stem)
        if hit is None:
            self.unpaired.append(mask_file.name)
            return LabelledImage(mask_file.name, mask.shape[:2], [], None), mask
        file, rel = hit
        try:
            size = image_size(file)
        except ImageReadError as exc:
            warnings.append(f"{mask_file}: its image {file} cannot be read ({exc}); the mask's size is used")
            size = mask.shape[:2]
        return LabelledImage(rel, size, [], file), fit_to_size(mask, size, str(mask_file), warnings)

    def warn_unpaired(self, warnings: list[str]) -> None:
        if self.unpaired:
            shown = ", ".join(self.unpaired[:5]) + (" ..." if len(self.unpaired) > 5 else "")
            warnings.append(
                f"{len(self.unpaired)} mask(s) have no image of the same name beside them ({shown}); "
                f"imported with the mask's size, to be matched to project images by name"
            )
