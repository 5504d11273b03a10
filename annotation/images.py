"""Image loading (placeholder API; see the full implementation)."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


class ImageReadError(Exception):
    """An image file that cannot be read; the message names the file and the reason."""


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) after EXIF orientation, read from the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orient = im.getexif().get(0x0112, 1)
    except Exception as exc:
        raise ImageReadError(f"{path}: {exc}") from None
    if orient in (5, 6, 7, 8):
        w, h = h, w
    return h, w
