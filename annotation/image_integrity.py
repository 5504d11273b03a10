"""Cheap tests that an image file is complete (a truncated upload, an interrupted copy),
used by ``annotation.images.check_image`` when a folder is scanned."""
from __future__ import annotations

import struct
from pathlib import Path

from PIL import Image

# ------------------------------------------------------------------ completeness
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _jpeg_complete(data: bytes) -> bool:
    """True when the main image's entropy-coded data ends with an EOI marker."""
    if data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return True
    # trailing data after EOI (motion photos, padding): find the main scan, skipping
    # the segments before it (an EXIF thumbnail carries an EOI of its own), then EOI
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan
            return data.find(b"\xff\xd9", pos) >= 0
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        pos += 2 + length
    return False


def _tiff_complete(im: Image.Image, file_size: int) -> bool:
    """True when every strip or tile of the first page lies inside the file."""
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return True
    for off_tag, count_tag in ((273, 279), (324, 325)):  # strips, tiles
        offsets, counts = tags.get(off_tag), tags.get(count_tag)
        if offsets is None or counts is None:
            continue
        offsets = offsets if isinstance(offsets, tuple) else (offsets,)
        counts = counts if isinstance(counts, tuple) else (counts,)
        if any(int(o) + int(c) > file_size for o, c in zip(offsets, counts)):
            return False
    return True


def _bmp_complete(path: Path, file_size: int) -> bool:
    """True unless an uncompressed BMP's rows run past the end of the file."""
    with open(path, "rb") as fh:
        head = fh.read(34)
    if len(head) < 34 or struct.unpack("<I", head[14:18])[0] < 40:  # old OS/2 headers: not checked
        return True
    offset = struct.unpack("<I", head[10:14])[0]
    width, height = struct.unpack("<ii", head[18:26])
    bits, compression = struct.unpack("<H", head[28:30])[0], struct.unpack("<I", head[30:34])[0]
    if compression not in (0, 3):  # RLE-compressed sizes are not known from the header
        return True
    stride = ((width * bits + 31) // 32) * 4
    return offset + stride * abs(height) <= file_size
