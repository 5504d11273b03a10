"""The numbers every importer checks at its edge, in one place.

Annotation files come from other tools, from colleagues and from the internet; a
damaged or hostile one must give one line saying what is wrong, never a crash, a
signal or silent garbage. Each importer checks what it reads against these limits
before anything is allocated or handed to pycocotools or Pillow, and names the
limit it hit, so that the fuzz harness, the desktop and the user see the same words.

Only the pixel limit can be changed by the user (``SPECULA_MAX_PIXELS``, shared with
image loading in ``annotation.images``): a label is never larger than its image.
The others bound work and memory for one element of a file and are far beyond what
any real labelling tool writes.
"""
from __future__ import annotations

from typing import Optional

from annotation.images import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, max_pixels_limit
from annotation.palette import MAX_CLASS_NAME, class_name_problem

# JSON: containers inside containers. COCO needs 4 levels, labelme 5; a file nested
# deeper is not an annotation file (and about a thousand levels exhaust the parser).
MAX_JSON_DEPTH = 32
# JSON integers: ids and sizes are stored as SQLite / numpy int64
MAX_JSON_INT = 2**63 - 1
# vertices of one polygon ring (COCO polygon, labelme points, CVAT points)
MAX_POLYGON_VERTICES = 1_000_000
# pycocotools walks every edge of a ring at 5 samples per pixel and holds them all:
# about 40 bytes per pixel of outline, so this bounds one ring to about 200 MB
MAX_RING_OUTLINE = 5_000_000
# pycocotools scales coordinates by 5 into a C int: sides beyond this would overflow
MAX_IMAGE_SIDE = 2**26
# instances of one image in one file (COCO annotations, labelme shapes, mask files)
MAX_INSTANCES_PER_IMAGE = 10_000
# class, attribute and tag names: shown in menus, written into XML, JSON and file names
MAX_CLASS_NAME_LENGTH = MAX_CLASS_NAME
MAX_NAME_LENGTH = MAX_CLASS_NAME
# text values of attributes (a labelme description, a CVAT text attribute)
MAX_TEXT_LENGTH = 10_000
# COCO: vertices beyond one image side (at most this many pixels) outside the image
# are clipped to that box (``clip_box``): closer ones are read exactly as pycocotools
# reads them, while the outline it walks stays short
MAX_OUTSIDE_MARGIN = 2**16
# labelme: Pillow draws exactly up to about 1e7 pixels from the origin (beyond, its
# integer arithmetic overflows), at a cost that does not grow with the coordinates
# (circles aside): points beyond this are clipped to it (``drawing_box``)
PILLOW_EXACT_COORDINATE = 2**23

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_CLASS_NAME_LENGTH",
    "MAX_IMAGE_SIDE",
    "MAX_INSTANCES_PER_IMAGE",
    "MAX_JSON_DEPTH",
    "MAX_JSON_INT",
    "MAX_NAME_LENGTH",
    "MAX_OUTSIDE_MARGIN",
    "MAX_PIXELS_ENV",
    "MAX_POLYGON_VERTICES",
    "MAX_RING_OUTLINE",
    "MAX_TEXT_LENGTH",
    "PILLOW_EXACT_COORDINATE",
    "class_name_problem",
    "clip_box",
    "current_limits",
    "drawing_box",
    "max_pixels",
    "name_problem",
    "size_problem",
]


def max_pixels() -> int:
    """The pixel limit in force (``SPECULA_MAX_PIXELS``, else 300 megapixels).

    Raises ``ValueError`` (one line) when the environment variable is not a number."""
    return max_pixels_limit()


def current_limits() -> dict[str, int]:
    """Every limit by name, the pixel limit as now in force (for the desktop and the fuzz harness)."""
    return {
        "max_pixels": max_pixels(),
        "max_image_side": MAX_IMAGE_SIDE,
        "max_json_depth": MAX_JSON_DEPTH,
        "max_json_int": MAX_JSON_INT,
        "max_polygon_vertices": MAX_POLYGON_VERTICES,
        "max_ring_outline": MAX_RING_OUTLINE,
        "max_instances_per_image": MAX_INSTANCES_PER_IMAGE,
        "max_class_name_length": MAX_CLASS_NAME_LENGTH,
        "max_name_length": MAX_NAME_LENGTH,
        "max_text_length": MAX_TEXT_LENGTH,
        "max_outside_margin": MAX_OUTSIDE_MARGIN,
        "pillow_exact_coordinate": PILLOW_EXACT_COORDINATE,
    }


def size_problem(height: int, width: int) -> Optional[str]:
    """Why an image of ``height`` x ``width`` declared by a file is refused (None when it is
    not); the caller adds what to do (fix the file, or raise the limit if it is that large)."""
    if height <= 0 or width <= 0:
        return f"size {width} x {height} is not a positive number of pixels"
    if height > MAX_IMAGE_SIDE or width > MAX_IMAGE_SIDE:
        return f"size {width} x {height} has a side over {MAX_IMAGE_SIDE} pixels"
    try:
        limit = max_pixels()
    except ValueError as exc:
        return str(exc)
    if height * width > limit:
        return f"size {width} x {height} = {height * width} pixels is over the limit of {limit} ({MAX_PIXELS_ENV})"
    return None


def name_problem(name: object, what: str = "name") -> Optional[str]:
    """Why ``name`` cannot be an attribute or tag name (None when it can): the class-name rule."""
    problem = class_name_problem(name)
    return None if problem is None else problem.replace("class name", what)


def drawing_box(height: int, width: int) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)``: the box that labelme shapes are clipped to before Pillow draws them."""
    m = float(PILLOW_EXACT_COORDINATE)
    return -m, -m, width + m, height + m


def clip_box(height: int, width: int) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)``: the box that coordinates of an image are clipped to.

    The image plus one image side (at most ``MAX_OUTSIDE_MARGIN``) on every side:
    sloppy vertices a little outside are kept exactly, so a file reads here as in the
    tool that wrote it, while absurd ones (1e30) cannot overflow pycocotools' or
    Pillow's integer arithmetic nor make them walk an endless outline.
    """
    margin = float(min(max(height, width), MAX_OUTSIDE_MARGIN))
    return -margin, -margin, width + margin, height + margin
