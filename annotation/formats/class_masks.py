"""Binary masks per class: one image per photo, foreground = the class (GDD, MSD, crack sets).

Import splits the foreground into one instance per connected component (8-connected,
the rule of ``Mask.components``), because semantic ground truth does not say where
one instance ends: touching regions become one instance. Export writes 0/255 PNGs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from annotation.formats.common import (
    FormatError,
    ImagePairing,
    ImportResult,
    LabelledImage,
    LabelledInstance,
    Progress,
    check_class_name,
    class_colors,
    mask_image_files,
    output_path,
    read_binary_mask,
    report,
    too_many_instances,
    usable_mask_files,
    write_png,
)
from annotation.mask import Mask
from annotation.palette import Palette


def instances_from_binary(array: np.ndarray, class_name: str, connectivity: int = 8) -> list[LabelledInstance]:
    """One instance per connected component of a full-image bool array, largest first."""
    return [LabelledInstance(class_name, m) for m in Mask.from_full(array).components(connectivity)]


def import_class_masks(
    path: str | Path,
    class_name: str,
    image_root: Optional[str | Path] = None,
    *,
    progress: Progress = None,
) -> ImportResult:
    """Read a folder (or one file) of binary masks of ``class_name``.

    Each mask ``ID.png`` is paired with the photo ``ID.*`` by ``ImagePairing``: under
    ``image_root`` (default: a sibling ``image/`` or ``images/`` folder). Values 0/1,
    0/255, palette and RGBA masks are all understood. A mask file that cannot be read
    (damaged, over the pixel limit, NaN in a float TIFF, too many regions) is skipped
    and said; a single such file raises ``FormatError``.
    """
    if not class_name:
        raise FormatError("binary class masks carry no class name; say which class they hold (class_name)")
    check_class_name(class_name, "the class of the masks")
    path = Path(path)
    files = mask_image_files(path, "binary class masks")
    pairing = ImagePairing(path, Path(image_root) if image_root is not None else None)
    warnings: list[str] = []
    skipped: list[str] = []
    images: list[LabelledImage] = []
    files = usable_mask_files(files, warnings, skipped)
    if skipped and not files:
        raise FormatError(skipped[0])
    for k, f in enumerate(files):
        try:
            arr = read_binary_mask(f)
        except FormatError as exc:
            if len(files) == 1:
                raise
            warnings.append(f"{exc}; skipped")
            skipped.append(str(exc))
            continue
        img, arr = pairing.image_for(f.stem, f, arr, warnings)  # two candidate photos: refused
        instances = instances_from_binary(arr, class_name)
        crowded = too_many_instances(len(instances))
        if crowded:
            message = f"{f}: {crowded} (separate regions); skipped"
            if len(files) == 1:
                raise FormatError(message)
            warnings.append(message)
            skipped.append(f"{f}: {crowded}")
            continue
        img.instances = instances
        images.append(img)
        report(progress, k + 1, len(files))
    pairing.warn_unpaired(warnings)
    if not images:
        raise FormatError(f"{path}: none of its {len(files)} mask images could be read; see the warnings")
    return ImportResult(images, {class_name: None}, warnings, images_skipped=skipped)


def export_class_masks(
    images: Sequence[LabelledImage],
    palette: Palette,
    out_dir: str | Path,
    *,
    class_name: Optional[str] = None,
    progress: Progress = None,
) -> list[str]:
    """Write 0/255 PNG masks; returns warnings.

    With ``class_name``: one ``<out_dir>/<image path>.png`` per image holding that
    class. Without: one subfolder per class (palette order, then classes the palette
    lacks), each with a mask for every image, empty ones included, because an
    empty ground truth is a label too.
    """
    out_dir = Path(out_dir)
    warnings: list[str] = []
    if class_name is not None:
        targets = {class_name: out_dir}
    else:
        used = class_colors(images)
        names = [n for n in palette.names if n in used] + [n for n in used if n not in palette]
        targets = {n: out_dir / _folder_name(n) for n in names}
    for k, img in enumerate(images):
        h, w = img.size
        for name, folder in targets.items():
            full = np.zeros((h, w), np.uint8)
            for inst in img.instances:
                if inst.class_name != name:
                    continue
                m = inst.mask
                x0, y0, x1, y1 = m.box
                cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
                if cx1 > cx0 and cy1 > cy0:
                    sub = m.array[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
                    full[cy0:cy1, cx0:cx1][sub] = 255
            write_png(output_path(folder, img.path, ".png"), full)
        report(progress, k + 1, len(images))
    return warnings


def _folder_name(name: str) -> str:
    # a class name becomes a folder: path separators and reserved characters go
    bad = '<>:"/\\|?*'
    clean = "".join("-" if ch in bad or ord(ch) < 32 else ch for ch in name).strip(" .")
    return clean or "class"
