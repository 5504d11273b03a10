"""Colour-coded class masks: one RGB PNG per image (the ``000_...`` convention).

Mirror is green (0, 255, 0), glass red, glass-in-mirror blue, background black;
the palette maps colours to classes. Import splits each class colour into
instances by connected components. Export paints instances in palette drawing
order (higher ``order`` on top), so what is drawn last wins where masks overlap.

Inside rules: a palette rule "glass-in-mirror lies inside a mirror" means the
blue region is painted *over* the mirror, so the mirror as labelled includes it.
Import gives it back: the outer class's regions are filled with the inner class
pixels they surround or touch (only components that hold some outer colour), so
exporting and importing again returns the same mirror and the same inner glass.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from annotation.formats.common import (
    Color,
    FormatError,
    ImagePairing,
    ImportResult,
    LabelledImage,
    LabelledInstance,
    Progress,
    check_finite_pixels,
    mask_image_files,
    open_image,
    output_path,
    report,
    too_many_instances,
    usable_mask_files,
    write_png,
)
from annotation.mask import Mask
from annotation.palette import Palette, builtin_palette


def _pack(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2].astype(np.int32)


def read_rgb(path: Path) -> np.ndarray:
    """An (H, W, 3) uint8 array; transparent pixels of RGBA/LA images count as background.

    ``FormatError`` for a file over the pixel limit, damaged, or a float image with
    NaN or infinite pixels (which no colour can stand for).
    """
    with open_image(path) as im:
        try:
            if im.mode in ("F", "I"):
                check_finite_pixels(np.asarray(im), str(path))
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                a = np.asarray(im.convert("RGBA"))
                rgb = a[..., :3].copy()
                rgb[a[..., 3] == 0] = 0
                return rgb
            return np.asarray(im.convert("RGB"))
        except FormatError:
            raise
        except (ValueError, OSError) as exc:  # a mode Pillow cannot convert
            raise FormatError(f"{path}: an image of mode {im.mode} cannot be read as colours ({exc})") from None


def split_color_mask(
    rgb: np.ndarray, palette: Palette, where: str, warnings: list[str], connectivity: int = 8
) -> list[LabelledInstance]:
    """Instances of a colour-coded mask: per class colour, one per connected component."""
    codes = _pack(rgb)
    per_class: dict[str, np.ndarray] = {}
    known = np.zeros(codes.shape, bool)
    for c in palette.classes:
        sel = codes == ((c.color[0] << 16) | (c.color[1] << 8) | c.color[2])
        known |= sel
        if c.color == (0, 0, 0):
            warnings.append(f"{where}: class '{c.name}' is black, the background colour; not imported")
            continue
        if sel.any():
            per_class[c.name] = sel
    stray = ~known & (codes != 0)
    if stray.any():
        vals, counts = np.unique(codes[stray], return_counts=True)
        top = np.argsort(-counts)[:3]
        shown = ", ".join(f"#{int(vals[i]):06x} ({int(counts[i])} px)" for i in top)
        warnings.append(
            f"{where}: {int(stray.sum())} pixels have colours of no palette class ({shown}); "
            f"read as background (is the palette '{palette.name}' the right one?)"
        )
    out: list[LabelledInstance] = []
    for c in sorted(palette.classes, key=lambda c: c.order):
        sel = per_class.get(c.name)
        if sel is None:
            continue
        inner = [per_class[r.inner] for r in palette.rules if r.outer == c.name and r.inner in per_class]
        if inner:
            sel = _with_inner(sel, inner, connectivity)
        out.extend(LabelledInstance(c.name, m) for m in Mask.from_full(sel).components(connectivity))
    return out


def _with_inner(outer: np.ndarray, inners: list[np.ndarray], connectivity: int) -> np.ndarray:
    """``outer`` plus the inner-class regions that belong to it (see the module note)."""
    import cv2

    both = outer.copy()
    for a in inners:
        both |= a
    n, labels = cv2.connectedComponents(both.astype(np.uint8), connectivity=connectivity)
    has_outer = np.zeros(n, bool)
    has_outer[np.unique(labels[outer])] = True
    has_outer[0] = False
    return has_outer[labels]


def import_color_masks(
    path: str | Path,
    palette: Optional[Palette] = None,
    image_root: Optional[str | Path] = None,
    *,
    progress: Progress = None,
) -> ImportResult:
    """Read a folder (or one file) of colour-coded masks; ``palette`` defaults to mirror-glass."""
    palette = palette or builtin_palette("mirror-glass")
    path = Path(path)
    files = mask_image_files(path, "colour-coded masks")
    pairing = ImagePairing(path, Path(image_root) if image_root is not None else None)
    warnings: list[str] = []
    skipped: list[str] = []
    images: list[LabelledImage] = []
    files = usable_mask_files(files, warnings, skipped)
    if skipped and not files:
        raise FormatError(skipped[0])

    def skip(message: str) -> None:
        if len(files) == 1:
            raise FormatError(message)
        warnings.append(f"{message}; skipped")
        skipped.append(message)

    for k, f in enumerate(files):
        try:
            rgb = read_rgb(f)
        except FormatError as exc:
            skip(str(exc))
            continue
        img, _ = pairing.image_for(f.stem, f, rgb[..., 0], [])  # two candidate photos: refused
        if img.size != rgb.shape[:2]:
            # colours cannot be resampled safely (they would blend): keep the mask's grid
            skip(
                f"{f}: mask is {rgb.shape[1]}x{rgb.shape[0]} but its image {img.path} is "
                f"{img.size[1]}x{img.size[0]}; resize the mask to the image"
            )
            continue
        instances = split_color_mask(rgb, palette, str(f), warnings)
        crowded = too_many_instances(len(instances))
        if crowded:
            skip(f"{f}: {crowded} (separate regions)")
            continue
        img.instances = instances
        images.append(img)
        report(progress, k + 1, len(files))
    pairing.warn_unpaired(warnings)
    if not images:
        raise FormatError(f"{path}: none of its {len(files)} mask images could be read; see the warnings")
    classes: dict[str, Optional[Color]] = {c.name: c.color for c in palette.classes}
    return ImportResult(images, classes, warnings, images_skipped=skipped)


def export_color_masks(
    images: Sequence[LabelledImage],
    palette: Palette,
    out_dir: str | Path,
    *,
    progress: Progress = None,
) -> list[str]:
    """Write one RGB PNG per image (black where unlabelled); returns warnings.

    A class the palette lacks gets the colour ``Palette.with_class`` gives it, and
    a warning, because a reader cannot tell that colour's class without the palette.
    """
    out_dir = Path(out_dir)
    warnings: list[str] = []
    pal = palette
    for img in images:
        for inst in img.instances:
            if inst.class_name not in pal:
                pal = pal.with_class(inst.class_name)
                warnings.append(
                    f"class '{inst.class_name}' is not in palette '{palette.name}'; painted "
                    f"{pal.color_of(inst.class_name)}"
                )
    order = {c.name: (c.order, i) for i, c in enumerate(pal.classes)}
    for k, img in enumerate(images):
        h, w = img.size
        canvas = np.zeros((h, w, 3), np.uint8)
        for inst in sorted(img.instances, key=lambda i: order[i.class_name]):  # stable: list order within a class
            m = inst.mask
            x0, y0, x1, y1 = m.box
            cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
            if cx1 <= cx0 or cy1 <= cy0:
                continue
            sub = m.array[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
            canvas[cy0:cy1, cx0:cx1][sub] = pal.color_of(inst.class_name)
        write_png(output_path(out_dir, img.path, ".png"), canvas)
        report(progress, k + 1, len(images))
    return warnings
