"""One binary mask image per instance (the ``001_...`` / OpenImages / pycococreator convention).

File names are ``<image stem>_<class>_<n>.png``, with ``crowd`` among the parts
for a crowd region: ``1001_circle_3.png``, ``100_crowd_1.png`` (no class: the
caller's default), ``88e5..._m04yx4_6b1e....png`` (OpenImages: class id, box id).
The image stem is the longest stem of a photo found beside the masks that the
name starts with; with no photos, the name's first part. Masks stored at another
resolution than their photo (OpenImages) are resized to it.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
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
    fit_to_size,
    mask_image_files,
    output_path,
    read_binary_mask,
    report,
    usable_mask_files,
    write_png,
)
from annotation.formats.limits import MAX_INSTANCES_PER_IMAGE
from annotation.mask import Mask
from annotation.palette import Palette

DEFAULT_CLASS = "object"


def parse_mask_name(stem: str, image_stems: set[str] | dict) -> tuple[str, Optional[str], bool]:
    """Split a mask file stem into ``(image stem, class or None, crowd)``."""
    parts = stem.split("_")
    image = parts[0]
    for cut in range(len(parts), 0, -1):  # longest known image stem first
        cand = "_".join(parts[:cut])
        if cand in image_stems:
            image = cand
            break
    rest = stem[len(image) :].lstrip("_")
    tokens = rest.split("_") if rest else []
    if tokens:
        tokens = tokens[:-1]  # the instance number / id
    crowd = "crowd" in tokens
    tokens = [t for t in tokens if t != "crowd"]
    return image, ("_".join(tokens) or None), crowd


def import_instance_masks(
    path: str | Path,
    image_root: Optional[str | Path] = None,
    class_name: Optional[str] = None,
    *,
    progress: Progress = None,
) -> ImportResult:
    """Read a folder of per-instance binary masks; ``class_name`` names masks whose file name has none.

    A mask file that cannot be read (damaged, over the pixel limit, NaN in a float
    TIFF) or whose name gives a class that cannot be a class name is skipped and
    said; a class name given by the caller that cannot be one raises ``FormatError``.
    """
    if class_name:
        check_class_name(class_name, "the class given for the masks")
    path = Path(path)
    files = mask_image_files(path, "per-instance masks")
    pairing = ImagePairing(path, Path(image_root) if image_root is not None else None)
    warnings: list[str] = []
    skipped_files = 0
    crowded: dict[str, int] = {}
    by_stem: dict[str, LabelledImage] = {}
    bad_names: list[str] = []
    files = usable_mask_files(files, warnings, bad_names)
    if bad_names and not files:
        raise FormatError(bad_names[0])
    classes: dict[str, None] = {}
    for k, f in enumerate(files):
        image_stem, cls, crowd = parse_mask_name(f.stem, pairing.stems(f))
        cls = cls or class_name or DEFAULT_CLASS
        try:
            check_class_name(cls, f"{f}: the class in its name")
            arr = read_binary_mask(f)
        except FormatError as exc:
            if len(files) == 1:
                raise
            warnings.append(f"{exc}; skipped")
            skipped_files += 1
            continue
        img = by_stem.get(image_stem)
        if img is None:
            img, arr = pairing.image_for(image_stem, f, arr, warnings)  # two candidate photos: refused
            if img.file is None:  # name it after the image, not after this one mask
                img.path = PurePosixPath(img.path).with_name(image_stem + f.suffix).as_posix()
            by_stem[image_stem] = img
        elif arr.shape != img.size:
            arr = fit_to_size(arr, img.size, str(f), warnings)
        if len(img.instances) >= MAX_INSTANCES_PER_IMAGE:
            crowded[image_stem] = crowded.get(image_stem, 0) + 1
            continue
        mask = Mask.from_full(arr)
        if mask.is_empty():
            warnings.append(f"{f}: the mask is empty; skipped")
            continue
        img.instances.append(LabelledInstance(cls, mask, iscrowd=crowd))
        classes[cls] = None
        report(progress, k + 1, len(files))
    for stem, extra in crowded.items():
        warnings.append(
            f"{path}: image {stem} has {MAX_INSTANCES_PER_IMAGE + extra} mask files, over the limit of "
            f"{MAX_INSTANCES_PER_IMAGE} instances per image; the last {extra} were skipped"
        )
    pairing.warn_unpaired(warnings)
    return ImportResult(list(by_stem.values()), dict(classes), warnings,
                        labels_skipped=skipped_files + len(bad_names) + sum(crowded.values()))


def _name_part(name: str) -> str:
    # keep names readable and parseable: separators and reserved characters go
    bad = '<>:"/\\|?* '
    clean = "".join("-" if ch in bad or ord(ch) < 32 else ch for ch in name).strip(".")
    return clean or "class"


def export_instance_masks(
    images: Sequence[LabelledImage],
    palette: Palette,
    out_dir: str | Path,
    *,
    progress: Progress = None,
) -> list[str]:
    """Write ``<image stem>_<class>[_crowd]_<n>.png`` (0/255, image-sized) per instance; returns warnings.

    ``n`` counts per image from 0. Provenance (score, origin) has no place in this
    format and is not written.
    """
    out_dir = Path(out_dir)
    warnings: list[str] = []
    renamed: set[str] = set()
    for k, img in enumerate(images):
        h, w = img.size
        base = output_path(out_dir, img.path, "")
        for n, inst in enumerate(img.instances):
            part = _name_part(inst.class_name)
            if part != inst.class_name and inst.class_name not in renamed:
                renamed.add(inst.class_name)
                warnings.append(f"class '{inst.class_name}' is written as '{part}' in file names")
            full = np.zeros((h, w), np.uint8)
            m = inst.mask
            x0, y0, x1, y1 = m.box
            cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
            if cx1 > cx0 and cy1 > cy0:
                full[cy0:cy1, cx0:cx1][m.array[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]] = 255
            crowd = "_crowd" if inst.iscrowd else ""
            write_png(base.with_name(f"{base.name}_{part}{crowd}_{n}.png"), full)
        report(progress, k + 1, len(images))
    return warnings
