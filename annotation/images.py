"""Image loading: every supported file becomes an 8-bit RGB array for display, and
its original values are kept.

Formats: JPEG, PNG, TIFF, BMP, WebP. Pillow reads every header (size limit,
orientation, mode). The common case, an 8-bit RGB JPEG, PNG, WebP or 24-bit BMP, is
decoded by OpenCV straight into the RGB array that is kept (``IMREAD_COLOR_RGB``):
Pillow would hold the pixels at 4 bytes each and copy them once more into numpy (2.3x
the image at the peak) and takes 3.5x the CPU time on a 25-megapixel JPEG; the pixels
are the same (both use libjpeg-turbo, libpng and libwebp; the tests compare them on real
files). Everything else goes through Pillow (grayscale, palette, alpha, CMYK, TIFF,
animations), and so does any file OpenCV cannot decode, so that a broken file gets
Pillow's reason. Colour images of more than 8 bits per sample (16-bit RGB(A) PNG and
TIFF, float RGB TIFF), which Pillow would cut to 8 bits, are read with OpenCV with
their own dtype so their values survive.

A quarter-resolution level for zoomed-out display is made by ``load_levels``, beside
the full decode: a JPEG is decoded a second time at 1/4 scale in the DCT domain
(libjpeg's scaled IDCT) in a second thread, other files are reduced from the full
array. The reduced decode costs about what that reduction costs (35 ms of CPU at 25
megapixels, against 57 ms for the full decode: the entropy decoding is the same), but
it needs no full array, so it runs while the full decode does and adds no time where a
second core is free.

Decisions (each one is visible in ``LoadedImage``):

- **Orientation.** The EXIF orientation tag (JPEG, PNG ``eXIf``, TIFF tag 274,
  WebP) is applied to ``rgb``, ``original`` and ``alpha`` alike, exactly as
  ``PIL.ImageOps.exif_transpose`` would; ``size`` and ``image_size`` are the
  oriented ``(height, width)``, the frame that masks live in.
- **High bit depth.** 16-bit, 32-bit integer and float images are shown with a
  percentile stretch: the 0.5th and 99.5th percentiles of the finite colour
  values (all colour channels together, so hues keep their balance; alpha
  excluded) map to 0 and 255. A few hot pixels or a 12-bit camera in a 16-bit
  container then still give a readable picture, which a full-range mapping would
  not. The range used is ``display_range``; ``original`` keeps the values.
  NaN and infinities show as 0.
- **Grayscale** is repeated into three channels; ``original`` stays ``(H, W)``.
  Bilevel (mode ``1``) images give a bool ``original``.
- **Palette** (``P``) images are expanded through their palette: ``original`` is
  the RGB (or RGBA, where the palette has transparency) array, because indices
  mean nothing without the palette.
- **Alpha** is kept separately in ``alpha`` (``(H, W)`` uint8, 255 = opaque) and
  ``rgb`` is the image composited on black, the background of the class-colour
  masks of the ``000_...`` convention; ``original`` keeps the alpha channel.
- **Other colour spaces** (CMYK, YCbCr, LAB, HSV) are converted to RGB, and that
  RGB is ``original``.
- **Size limit against decompression bombs.** An image of more than
  ``max_pixels`` pixels (default ``DEFAULT_MAX_PIXELS`` = 300 megapixels, or the
  environment variable ``SPECULA_MAX_PIXELS``) is refused from its header, before
  any pixel is decoded. Pillow's own (lower) limit is lifted to ours while we read,
  so the user has one knob; its ``DecompressionBombError`` becomes ``ImageReadError``.

Every failure is an ``ImageReadError`` whose message is one line: the file, then
the reason (not found, not an image, truncated or corrupt, unsupported, too large).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from annotation.image_display import DISPLAY_PERCENTILES, display_range, to_display  # noqa: F401
from annotation.image_integrity import _PNG_IEND, _bmp_complete, _jpeg_complete, _tiff_complete

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
DEFAULT_MAX_PIXELS = 300_000_000
MAX_PIXELS_ENV = "SPECULA_MAX_PIXELS"

_ORIENTATION_TAG = 0x0112


class ImageReadError(Exception):
    """An image file that cannot be read; the message names the file and the reason."""


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """An image ready for display, with its original values.

    Attributes:
        rgb: ``(H, W, 3)`` uint8, C-contiguous; what the canvas shows. For 8-bit
            RGB files it is the same array as ``original``.
        original: the pixel values as stored, orientation applied: ``(H, W)`` or
            ``(H, W, C)`` of the file's dtype (bool, uint8, uint16, int32, float32, ...).
        path: the file.
        size: ``(H, W)`` after orientation, the ``image_size`` of its masks.
        alpha: ``(H, W)`` uint8 opacity (255 = opaque) where the file has alpha, else None.
        display_range: ``(low, high)`` of ``original`` mapped to 0..255 for
            high-bit-depth images, else None.
        orientation: the EXIF orientation that was applied (1 = none).
        format: the file format as Pillow names it (``JPEG``, ``PNG``, ``TIFF``, ...).
        decoder: which library decoded the pixels: ``"opencv"`` or ``"pillow"``.
    """

    rgb: np.ndarray
    original: np.ndarray
    path: Path
    size: tuple[int, int]
    alpha: Optional[np.ndarray] = None
    display_range: Optional[tuple[float, float]] = None
    orientation: int = 1
    format: str = ""
    decoder: str = "pillow"

    @property
    def height(self) -> int:
        return self.size[0]

    @property
    def width(self) -> int:
        return self.size[1]


# ------------------------------------------------------------------ limits
def max_pixels_limit(max_pixels: Optional[int] = None) -> int:
    """The pixel limit in force: the argument, else ``SPECULA_MAX_PIXELS``, else the default."""
    if max_pixels is not None:
        value = int(max_pixels)
        if value <= 0:
            raise ValueError(f"max_pixels must be a positive number of pixels, got {max_pixels}")
        return value
    env = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not env:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(env))
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(
            f"{MAX_PIXELS_ENV}={env!r} is not a positive number of pixels; set it to e.g. 500000000 or unset it"
        )
    return value


def _too_large_message(width: int, height: int, limit: int) -> str:
    return (
        f"too large: {width} x {height} = {width * height} pixels is over the limit of {limit} "
        f"(a guard against decompression bombs); if you trust the file, raise the limit with "
        f"the environment variable {MAX_PIXELS_ENV} or load_image(..., max_pixels=N)"
    )


# Pillow keeps its bomb limit in a module global. While any of our reads runs, it
# is lifted to the largest limit in force among them (our own check, per call,
# is the one that decides), and restored when the last read ends.
_limit_lock = threading.Lock()
_active_limits: list[int] = []
_saved_pillow_limit: Optional[int] = None


@contextlib.contextmanager
def _pillow_limit(limit: int) -> Iterator[None]:
    global _saved_pillow_limit
    with _limit_lock:
        if not _active_limits:
            _saved_pillow_limit = Image.MAX_IMAGE_PIXELS
        _active_limits.append(limit)
        Image.MAX_IMAGE_PIXELS = max(_active_limits)
    try:
        yield
    finally:
        with _limit_lock:
            _active_limits.remove(limit)
            Image.MAX_IMAGE_PIXELS = max(_active_limits) if _active_limits else _saved_pillow_limit


@contextlib.contextmanager
def pixel_limit(max_pixels: Optional[int] = None) -> Iterator[int]:
    """For reads outside ``load_image`` (mask files, images embedded in JSON): Pillow's
    bomb guard lifted to our limit and its ``DecompressionBombWarning`` silenced, because
    the caller checks the size from the header against the yielded limit itself, and a
    refused file must give our one line with nothing printed before it.

    Raises ``ValueError`` (one line) when ``SPECULA_MAX_PIXELS`` is not a number.
    """
    import warnings

    limit = max_pixels_limit(max_pixels)
    with _pillow_limit(limit), warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield limit


# ------------------------------------------------------------------ errors
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _reason(exc: BaseException, limit: int) -> str:
    """A short reason for a failed read, for the user."""
    text = _one_line(str(exc))
    if isinstance(exc, Image.DecompressionBombError):
        return f"too large: {text}; raise the limit ({limit} pixels) with {MAX_PIXELS_ENV} or max_pixels=N"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not an image file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image file (no known image format in its content; is the extension wrong?)"
    lower = text.lower()
    if any(s in lower for s in ("not available", "not supported", "unsupported", "unknown")):
        return f"unsupported image encoding ({text})"
    if isinstance(exc, (EOFError, struct.error)) or any(
        s in lower for s in ("truncated", "broken data stream", "premature end", "not enough", "incomplete")
    ):
        return f"truncated or corrupt image data ({text})"
    if isinstance(exc, (SyntaxError, ValueError, OSError, IndexError, KeyError, TypeError)):
        return f"corrupt image data ({type(exc).__name__}: {text})"
    return f"cannot read ({type(exc).__name__}: {text})"


def _error(path: str | Path, reason: str) -> ImageReadError:
    return ImageReadError(f"{path}: {_one_line(reason)}")


# ------------------------------------------------------------------ orientation
def _png_exif(path: Path) -> Optional[bytes]:
    """The eXIf chunk of a PNG, found by walking chunk headers (no pixel decoding).

    Pillow's ``getexif`` on a PNG decodes the whole image to reach an eXIf chunk
    written after the pixel data; this reads a few bytes per chunk instead.
    """
    with open(path, "rb") as fh:
        fh.seek(8)
        while True:
            head = fh.read(8)
            if len(head) < 8:
                return None
            length, ctype = struct.unpack(">I4s", head)
            if ctype == b"eXIf":
                return fh.read(length)
            if ctype == b"IEND":
                return None
            fh.seek(length + 4, os.SEEK_CUR)  # data and CRC


def _orientation(im: Image.Image, path: Path) -> int:
    try:
        if im.format == "PNG":
            raw = im.info.get("exif") or _png_exif(path)
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw[6:] if raw.startswith(b"Exif\x00\x00") else raw)
        else:
            exif = im.getexif()
        value = int(exif.get(_ORIENTATION_TAG, 1))
    except Exception:  # a damaged EXIF block must not lose the image; show it unrotated
        return 1
    return value if 1 <= value <= 8 else 1


def _oriented_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """(height, width) after orientation."""
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate / flip ``array`` ((H, W) or (H, W, C)) as EXIF ``orientation`` says.

    The same transforms as ``PIL.ImageOps.exif_transpose``; returns a view.
    """
    a = array
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:  # transpose
        return a.swapaxes(0, 1)
    if orientation == 6:  # rotate 90 degrees clockwise
        return a.swapaxes(0, 1)[:, ::-1]
    if orientation == 7:  # transverse
        return a.swapaxes(0, 1)[::-1, ::-1]
    if orientation == 8:  # rotate 90 degrees counter-clockwise
        return a.swapaxes(0, 1)[::-1]
    return a


# ------------------------------------------------------------------ header
def _stored_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) of the pixels as stored, before any orientation.

    Pillow reports a TIFF's size already turned by its orientation tag (and turns
    the pixels on load); other formats it reports as stored.
    """
    if im.format == "TIFF":
        tags = getattr(im, "tag_v2", {})
        w, h = tags.get(256), tags.get(257)
        if isinstance(w, int) and isinstance(h, int):
            return w, h
    return im.size


def _open_checked(path: Path, limit: int) -> Image.Image:
    """Open the file (header only) and refuse it if it is over the pixel limit."""
    im = Image.open(path)
    w, h = _stored_size(im)
    if w * h > limit:
        im.close()
        raise _error(path, _too_large_message(w, h, limit))
    return im


def image_size(path: str | Path, max_pixels: Optional[int] = None) -> tuple[int, int]:
    """(height, width) after EXIF orientation, read from the header only.

    Raises ``ImageReadError`` for an unreadable file or one over the pixel limit.
    """
    path = Path(path)
    try:
        limit = max_pixels_limit(max_pixels)
    except ValueError as exc:
        raise _error(path, str(exc)) from None
    try:
        with _pillow_limit(limit), _open_checked(path, limit) as im:
            w, h = _stored_size(im)
            orient = _orientation(im, path)
    except ImageReadError:
        raise
    except Exception as exc:
        raise _error(path, _reason(exc, limit)) from None
    return _oriented_size(w, h, orient)


def check_image(path: str | Path, max_pixels: Optional[int] = None) -> tuple[int, int]:
    """``image_size`` plus a cheap test that the file is complete (for folder scans).

    Catches the common damage of a copy or download cut short without decoding
    pixels: a JPEG without its end-of-image marker, a PNG without ``IEND``, a TIFF
    whose strips or tiles point past the end of the file, an uncompressed BMP whose
    rows do, a WebP shorter than its RIFF header says. Returns (height, width) after orientation.
    """
    path = Path(path)
    size = image_size(path, max_pixels)
    try:
        file_size = path.stat().st_size
        with _pillow_limit(max_pixels_limit(max_pixels)), Image.open(path) as im:  # header only
            fmt = im.format
            complete = True
            if fmt == "TIFF":
                complete = _tiff_complete(im, file_size)
        if fmt in ("JPEG", "MPO"):
            with open(path, "rb") as fh:
                fh.seek(max(0, file_size - 64))
                tail = fh.read()
            if not tail.rstrip(b"\x00").endswith(b"\xff\xd9"):
                complete = _jpeg_complete(path.read_bytes())
        elif fmt == "PNG":
            with open(path, "rb") as fh:
                fh.seek(max(0, file_size - len(_PNG_IEND)))
                complete = fh.read() == _PNG_IEND or _PNG_IEND in path.read_bytes()
        elif fmt == "BMP":
            complete = _bmp_complete(path, file_size)
        elif fmt == "WEBP":
            with open(path, "rb") as fh:
                header = fh.read(8)
            complete = len(header) == 8 and struct.unpack("<I", header[4:8])[0] + 8 <= file_size
    except Exception as exc:
        raise _error(path, _reason(exc, max_pixels_limit(max_pixels))) from None
    if not complete:
        raise _error(path, f"truncated: the {fmt} data ends before the image does (file of {file_size} bytes)")
    return size


# ------------------------------------------------------------------ hashing
def image_sha1(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-1 hex digest of the file's bytes, read in chunks (memory stays flat)."""
    h = hashlib.sha1()
    try:
        with open(path, "rb") as fh:
            while True:
                chunk = fh.read(chunk_size)
                if not chunk:
                    break
                h.update(chunk)
    except OSError as exc:
        raise _error(path, _reason(exc, DEFAULT_MAX_PIXELS)) from None
    return h.hexdigest()


# ------------------------------------------------------------------ decoding
def _rawmode(im: Image.Image) -> str:
    try:
        args = im.tile[0].args if hasattr(im.tile[0], "args") else im.tile[0][3]
    except (IndexError, AttributeError):
        return ""
    if isinstance(args, tuple):
        args = args[0] if args else ""
    return args if isinstance(args, str) else ""


def _needs_opencv(im: Image.Image) -> bool:
    """Colour images of more than 8 bits per sample, which Pillow reduces to 8 bits."""
    if im.mode not in ("RGB", "RGBA", "LA"):
        return False
    if "16" in _rawmode(im):
        return True
    bits = getattr(im, "tag_v2", {}).get(258) if im.format == "TIFF" else None
    if bits is not None:
        bits = bits if isinstance(bits, tuple) else (bits,)
        return any(int(b) > 8 for b in bits)
    return False


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _probe_file(fmt: str) -> bytes:
    """A 1 x 2 16-bit RGB file of ``fmt`` whose orientation tag says "mirror" (2)."""
    pixels = np.array([[[1, 1, 1], [2, 2, 2]]], "<u2")
    if fmt == "TIFF":
        entries = [(256, 4, 2), (257, 4, 1), (258, 3, 3), (259, 3, 1), (262, 3, 2), (273, 4, 0),
                   (274, 3, 2), (277, 3, 3), (278, 4, 1), (279, 4, pixels.nbytes), (284, 3, 1)]
        bps_at = 8 + 2 + 12 * len(entries) + 4
        data_at = bps_at + 6
        out = bytearray(b"II*\x00" + struct.pack("<IH", 8, len(entries)))
        for tag, kind, value in entries:
            count = 3 if tag == 258 else 1
            value = bps_at if tag == 258 else data_at if tag == 273 else value
            packed = struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack("<I", value)
            out += struct.pack("<HHI", tag, kind, count) + packed
        return bytes(out + struct.pack("<IHHH", 0, 16, 16, 16) + pixels.tobytes())
    import cv2

    png = cv2.imencode(".png", pixels)[1].tobytes()
    exif = Image.Exif()
    exif[_ORIENTATION_TAG] = 2
    payload = exif.tobytes()
    payload = payload[6:] if payload.startswith(b"Exif\x00\x00") else payload  # eXIf holds bare TIFF data
    at = png.index(b"IDAT") - 4
    return png[:at] + _png_chunk(b"eXIf", payload) + png[at:]


@functools.lru_cache(maxsize=None)
def _opencv_orients(fmt: str) -> bool:
    """Whether OpenCV's decoder of ``fmt`` applies the orientation tag by itself.

    OpenCV's TIFF decoder turns the pixels, its PNG decoder (with IMREAD_UNCHANGED)
    does not, and versions differ: ask the installed one once, with a tiny file.
    """
    import cv2

    decoded = cv2.imdecode(np.frombuffer(_probe_file(fmt), np.uint8), cv2.IMREAD_UNCHANGED)
    return decoded is not None and int(decoded.reshape(-1)[0]) == 2


def _read_opencv(path: Path) -> np.ndarray:
    """The first page of the file with its own dtype, channels in RGB(A) order."""
    import cv2

    data = np.fromfile(path, dtype=np.uint8)  # np.fromfile: non-ASCII paths work on Windows too
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise OSError("OpenCV could not decode the high-bit-depth data (truncated or unsupported)")
    if arr.ndim == 3 and arr.shape[2] >= 3:
        arr = np.concatenate([arr[:, :, 2::-1], arr[:, :, 3:]], axis=2)
    return arr


# ------------------------------------------------------------------ 8-bit RGB through OpenCV
# Pillow's names of the formats whose 8-bit RGB files OpenCV decodes to Pillow's pixels
_OPENCV_RGB8_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP")
_REDUCED_FACTORS = (2, 4, 8)  # the scales libjpeg's IDCT can reduce by


def _colour_flags() -> tuple[int, bool]:
    """OpenCV's read flags for 8-bit colour with the orientation left to us (one rule for
    every decoder: the header's, as Pillow reads it), and whether the result is BGR (an
    OpenCV without ``IMREAD_COLOR_RGB``, before 4.11) and must be swapped in place."""
    import cv2

    rgb = getattr(cv2, "IMREAD_COLOR_RGB", None)
    if rgb is None:
        return cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION, True
    return rgb | cv2.IMREAD_IGNORE_ORIENTATION, False


def _decodes_with_opencv(im: Image.Image) -> bool:
    """An 8-bit RGB still image of a format whose OpenCV decoder gives Pillow's pixels."""
    if im.format not in _OPENCV_RGB8_FORMATS or im.mode != "RGB" or "16" in _rawmode(im):
        return False
    if im.format == "BMP":
        return _rawmode(im) == "BGR"  # 24 bits only: 16- and 32-bit BMPs are unpacked differently
    if im.format in ("PNG", "WEBP") and getattr(im, "n_frames", 1) != 1:
        return False  # an animation: the frame Pillow shows is the one to keep
    return True


def _reaches_end(fmt: str, path: Path) -> bool:
    """Whether the file's bytes reach the end of the image (the tests of ``check_image``).

    A file cut short is left to Pillow: its error names the damage, where libjpeg would
    fill the missing rows with grey and print a warning of its own on stderr.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        fh.seek(max(0, size - 64))
        tail = fh.read()
    if fmt in ("JPEG", "MPO"):
        return tail.rstrip(b"\x00").endswith(b"\xff\xd9") or _jpeg_complete(path.read_bytes())
    if fmt == "PNG":
        return tail.endswith(_PNG_IEND) or _PNG_IEND in path.read_bytes()
    if fmt == "WEBP":
        return len(head) == 8 and struct.unpack("<I", head[4:8])[0] + 8 <= size
    if fmt == "BMP":
        return _bmp_complete(path, size)
    return True


# two pixels of the array handed to imread, set before decoding (see _read_rgb8)
_UNTOUCHED = np.array([[0x5A, 0xC3, 0x0F], [0xA5, 0x3C, 0xF0]], np.uint8)


def _read_rgb8(path: Path, fmt: str, stored: tuple[int, int], reduce: int = 1) -> Optional[np.ndarray]:
    """The pixels as stored (orientation not applied), ``(H, W, 3)`` uint8 RGB, decoded by
    OpenCV; with ``reduce`` 2, 4 or 8 a JPEG decoded at that fraction of its size
    (``ceil(H / reduce)`` rows). None when the file is cut short or OpenCV cannot decode
    it: the caller falls back to Pillow.

    ``stored``: (width, height) from the header, already checked against the pixel limit.

    The pixels are decoded into an array allocated here (``cv2.imread``'s ``dst``):
    ``cv2.imdecode`` and the plain ``cv2.imread`` return a copy of OpenCV's own buffer,
    2x the image at the peak and 1.7x the CPU time on a 25-megapixel JPEG.
    """
    import cv2

    if not _reaches_end(fmt, path):
        return None
    flags, bgr = _colour_flags()
    if reduce != 1:
        reduced = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[reduce]
        # IMREAD_REDUCED_COLOR_n holds the IMREAD_COLOR (BGR) bit, which OpenCV refuses
        # beside IMREAD_COLOR_RGB: keep only the scale bits
        flags |= reduced if bgr else reduced & ~cv2.IMREAD_COLOR
    w, h = stored
    shape = (-(-h // reduce), -(-w // reduce), 3)
    try:
        if os.name == "nt" and not str(path).isascii():
            # OpenCV opens files by narrow-character path on Windows: read the bytes
            # ourselves (np.fromfile) and pay for imdecode's copy
            arr = cv2.imdecode(np.fromfile(path, dtype=np.uint8), flags)
        else:
            out = np.empty(shape, np.uint8)
            # imread leaves ``out`` as it was, and returns it, when the decoder refuses the
            # header; a decode writes every pixel. Two pixels set beforehand tell: a decode
            # that happens to write these very values costs a Pillow decode, never a wrong picture
            marks = _UNTOUCHED[: shape[1]]
            out[-1, -len(marks):] = marks
            arr = cv2.imread(os.fspath(path), out, flags)
            if arr is not None and arr.shape == shape and np.array_equal(arr[-1, -len(marks):], marks):
                arr = None
    except cv2.error:  # a size other than the header's, or over OpenCV's own pixel limit
        return None
    if arr is None or arr.dtype != np.uint8 or arr.shape != shape:
        return None
    if bgr:
        cv2.cvtColor(arr, cv2.COLOR_BGR2RGB, dst=arr)
    return arr


_CONVERT_TO = {"P": None, "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
               "RGBX": "RGB", "RGBa": "RGBA", "La": "LA"}


def _pillow_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in _CONVERT_TO:
        target = _CONVERT_TO[mode]
        if target is None:  # palette: RGBA only where the palette has transparency
            target = "RGBA" if "transparency" in im.info or (im.palette and im.palette.mode == "RGBA") else "RGB"
        im = im.convert(target)
    arr = np.asarray(im)
    if arr.dtype.byteorder not in ("=", "|"):  # big-endian 16-bit (I;16B): native order
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def load_image(path: str | Path, max_pixels: Optional[int] = None) -> LoadedImage:
    """Read an image file for display, orientation applied, original values kept.

    Args:
        path: the file.
        max_pixels: refuse images with more pixels than this (None: the
            ``SPECULA_MAX_PIXELS`` environment variable, else 300 megapixels).

    Raises:
        ImageReadError: one line naming the file and the reason.
    """
    path = Path(path)
    try:
        limit = max_pixels_limit(max_pixels)
    except ValueError as exc:
        raise _error(path, str(exc)) from None
    try:
        with _pillow_limit(limit), _open_checked(path, limit) as im:
            high_bit_colour = _needs_opencv(im)  # before anything that may decode
            orientation = _orientation(im, path)
            fmt = im.format or ""
            size = _oriented_size(*_stored_size(im), orientation)
            decoder = "opencv"
            raw = None
            if high_bit_colour:
                raw = _read_opencv(path)
                turned_by_decoder = _opencv_orients(fmt)
            elif _decodes_with_opencv(im):
                raw = _read_rgb8(path, fmt, im.size)
                turned_by_decoder = False
            if raw is None:
                decoder = "pillow"
                im.seek(0)
                im.load()
                raw = _pillow_array(im)
                # Pillow turns TIFF pixels on load, and then drops the tag
                turned_by_decoder = fmt == "TIFF" and im.tag_v2.get(_ORIENTATION_TAG, 1) != orientation
    except ImageReadError:
        raise
    except Exception as exc:
        raise _error(path, _reason(exc, limit)) from None
    if not turned_by_decoder:
        raw = apply_orientation(raw, orientation)
    original = np.ascontiguousarray(raw)
    if original.shape[:2] != size:
        raise _error(path, f"corrupt: header says {size[1]} x {size[0]} pixels, data has "
                           f"{original.shape[1]} x {original.shape[0]}")
    try:
        rgb, alpha, rng = to_display(original)
    except ValueError as exc:
        raise _error(path, f"unsupported: {exc}") from None
    if original.dtype == np.uint8 and original.ndim == 3 and original.shape[2] == 3:
        rgb = original  # 8-bit RGB: one array, not two
    return LoadedImage(
        rgb=rgb,
        original=original,
        path=path,
        size=(int(original.shape[0]), int(original.shape[1])),
        alpha=alpha,
        display_range=rng,
        orientation=orientation,
        format=fmt,
        decoder=decoder,
    )


# ------------------------------------------------------------------ zoomed-out level
def preview_level(rgb: np.ndarray, factor: int = 4) -> np.ndarray:
    """``rgb`` reduced ``factor`` times in each direction for zoomed-out display.

    Returns ``(H // factor, W // factor, 3)`` uint8, C-contiguous: pixel ``(i, j)`` is the
    mean of the whole block ``rgb[f*i : f*i+f, f*j : f*j+f]`` (the last rows and columns
    that do not fill a block are left out), so it covers exactly the part of the photo a
    display scaled by ``factor`` puts under it, and the whole-block resize is OpenCV's
    fast one. A side shorter than ``factor`` becomes one pixel, the mean of all of it.
    """
    import cv2

    H, W = rgb.shape[:2]
    h, w = max(1, H // factor), max(1, W // factor)
    blocks = rgb[: (H // factor) * factor or H, : (W // factor) * factor or W]
    return np.ascontiguousarray(cv2.resize(blocks, (w, h), interpolation=cv2.INTER_AREA))


def decode_reduced(path: str | Path, factor: int = 4, max_pixels: Optional[int] = None) -> Optional[np.ndarray]:
    """An 8-bit RGB JPEG decoded at 1/``factor`` of its size in the DCT domain
    (libjpeg's scaled IDCT), orientation applied; it needs no full decode, so it can run
    beside one.

    Returns ``(ceil(H / factor), ceil(W / factor), 3)`` uint8 RGB, C-contiguous, ``(H, W)``
    the oriented size; None for anything else (another format, another mode, a factor
    other than 2, 4 or 8, a file over the pixel limit or that cannot be read): the full
    decode then serves, through ``preview_level``, and reports what is wrong.
    """
    path = Path(path)
    if factor not in _REDUCED_FACTORS:
        return None
    try:
        limit = max_pixels_limit(max_pixels)
        with _pillow_limit(limit), _open_checked(path, limit) as im:
            if im.format not in ("JPEG", "MPO") or not _decodes_with_opencv(im):
                return None
            orientation = _orientation(im, path)
            raw = _read_rgb8(path, im.format, im.size, reduce=factor)
    except Exception:  # noqa: BLE001 - only a shortcut: the full decode reports the failure
        return None
    if raw is None:
        return None
    return np.ascontiguousarray(apply_orientation(raw, orientation))


def load_levels(path: str | Path, factor: int = 4, min_side: int = 0,
                max_pixels: Optional[int] = None) -> tuple[LoadedImage, Optional[np.ndarray]]:
    """``load_image`` and the image's 1/``factor`` level for zoomed-out display, made
    together so that a viewer gets both from one worker.

    The level of an 8-bit RGB JPEG is ``decode_reduced``'s, decoded in a second thread
    while the full image decodes (both release the GIL), so it adds no time where a
    second core is free; any other image's is ``preview_level`` of the full one. The
    level is ``(ceil(H / f), ceil(W / f), 3)`` or ``(H // f, W // f, 3)`` uint8 RGB, and
    None when the image's longer side is at most ``min_side`` pixels.

    Raises:
        ImageReadError: as ``load_image``.
    """
    path = Path(path)
    try:
        big = max(image_size(path, max_pixels)) > min_side
    except ImageReadError:
        big = False  # load_image below raises the reason
    reduced: list[Optional[np.ndarray]] = []
    worker: Optional[threading.Thread] = None
    if big and factor in _REDUCED_FACTORS:
        worker = threading.Thread(target=lambda: reduced.append(decode_reduced(path, factor, max_pixels)),
                                  name="specula-reduced-decode", daemon=True)
        worker.start()
    try:
        img = load_image(path, max_pixels)
    finally:
        if worker is not None:
            worker.join()
    if max(img.size) <= min_side:
        return img, None
    low = reduced[0] if reduced else None
    ceil_size = (-(-img.height // factor), -(-img.width // factor))
    # the reduced decode stands for the full one only when both are OpenCV's of the same
    # JPEG (a CMYK or grayscale JPEG goes through Pillow, whose colours the level must match)
    if low is None or img.decoder != "opencv" or img.format not in ("JPEG", "MPO") or low.shape[:2] != ceil_size:
        low = preview_level(img.rgb, factor)
    return img, low
