"""Image loading: formats, orientation, bit depths, alpha, size limit, errors, folder scan."""
from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from annotation import images
from annotation.images import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    LoadedImage,
    apply_orientation,
    check_image,
    image_sha1,
    image_size,
    load_image,
)
from annotation.store import ProjectStore

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data"))


def _data(name: str) -> Path:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real data set '{name}' is missing (looked in {DATA}; set SPECULA_DATA)")
    return path


def _pattern(h: int = 24, w: int = 36) -> np.ndarray:
    """An asymmetric RGB image, so any flip or rotation shows."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 7 % 256, yy * 11 % 256, (xx + 3 * yy) % 256], axis=2).astype(np.uint8)


def _save(path: Path, array: np.ndarray, **kw) -> Path:
    Image.fromarray(array).save(path, **kw)
    return path


def _assert_display(img: LoadedImage) -> None:
    assert img.rgb.dtype == np.uint8
    assert img.rgb.ndim == 3 and img.rgb.shape[2] == 3
    assert img.rgb.flags["C_CONTIGUOUS"]
    assert img.rgb.shape[:2] == img.size == img.original.shape[:2]


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` with a token of pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )
    return path


# ------------------------------------------------------------------ formats
@pytest.mark.parametrize(
    "name, kw, exact",
    [
        ("a.png", {}, True),
        ("a.tif", {}, True),
        ("a.tiff", {"compression": "tiff_lzw"}, True),
        ("a.bmp", {}, True),
        ("a.webp", {"lossless": True}, True),
        ("a.jpg", {"quality": 95}, False),
        ("a.jpeg", {"quality": 95}, False),
    ],
)
def test_each_format_loads_rgb(tmp_path, name, kw, exact):
    src = _pattern()
    path = _save(tmp_path / name, src, **kw)
    img = load_image(path)
    _assert_display(img)
    assert img.size == (24, 36)
    assert img.path == path
    assert img.alpha is None and img.display_range is None
    if exact:
        np.testing.assert_array_equal(img.rgb, src)
        np.testing.assert_array_equal(img.original, src)
    else:
        assert np.abs(img.rgb.astype(int) - src).mean() < 6
    assert image_size(path) == check_image(path) == (24, 36)
    assert name.endswith(images.IMAGE_EXTENSIONS)


def test_8bit_rgb_is_one_array_not_two(tmp_path):
    img = load_image(_save(tmp_path / "a.png", _pattern()))
    assert img.rgb is img.original


# ------------------------------------------------------------------ orientation
@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_orientation_matches_pillow_exif_transpose(orientation):
    src = _pattern(5, 8)
    im = Image.fromarray(src)
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, format="PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    np.testing.assert_array_equal(apply_orientation(src, orientation), expected)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp"])
def test_exif_orientation_applied_on_load_and_size(tmp_path, orientation, ext):
    src = _pattern(16, 40)
    im = Image.fromarray(src)
    exif = im.getexif()
    exif[0x0112] = orientation
    kw = {"quality": 98} if ext == ".jpg" else {"lossless": True} if ext == ".webp" else {}
    path = tmp_path / f"o{orientation}{ext}"
    im.save(path, exif=exif, **kw)
    with Image.open(path) as reopened:
        expected = np.asarray(ImageOps.exif_transpose(reopened).convert("RGB"))
    img = load_image(path)
    _assert_display(img)
    assert img.orientation == orientation
    np.testing.assert_array_equal(img.rgb, expected)
    turned = orientation in (5, 6, 7, 8)
    assert img.size == ((40, 16) if turned else (16, 40))
    assert image_size(path) == img.size == check_image(path)


def test_tiff_orientation_tag_applied(tmp_path):
    src = _pattern(10, 30)
    path = _save(tmp_path / "o.tif", src, tiffinfo={274: 6})
    img = load_image(path)
    assert img.size == (30, 10) == image_size(path)
    np.testing.assert_array_equal(img.original, np.rot90(src, k=-1))


def _tiff16_rgb(path: Path, arr: np.ndarray, orientation: int = 1) -> Path:
    """A minimal uncompressed little-endian TIFF of (H, W, 3) uint16 with an orientation tag."""
    arr = np.ascontiguousarray(arr, dtype="<u2")
    h, w, c = arr.shape
    data = arr.tobytes()
    entries = [(256, 4, w), (257, 4, h), (258, 3, None), (259, 3, 1), (262, 3, 2), (273, 4, None),
               (274, 3, orientation), (277, 3, c), (278, 4, h), (279, 4, len(data)), (284, 3, 1)]
    bps_at = 8 + 2 + 12 * len(entries) + 4
    data_at = bps_at + 2 * c
    out = bytearray(b"II*\x00" + struct.pack("<IH", 8, len(entries)))
    for tag, kind, value in entries:
        if tag == 258:
            out += struct.pack("<HHII", tag, kind, c, bps_at)
        elif tag == 273:
            out += struct.pack("<HHII", tag, kind, 1, data_at)
        elif kind == 3:
            out += struct.pack("<HHIHH", tag, kind, 1, value, 0)
        else:
            out += struct.pack("<HHII", tag, kind, 1, value)
    path.write_bytes(bytes(out) + struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16) + data)
    return path


def _with_png_exif(path: Path, orientation: int, before_pixels: bool = True) -> Path:
    data = path.read_bytes()
    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()
    payload = payload[6:] if payload.startswith(b"Exif\x00\x00") else payload
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    at = (data.index(b"IDAT") if before_pixels else data.rindex(b"IEND")) - 4
    path.write_bytes(data[:at] + chunk + data[at:])
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_of_16bit_colour_files(tmp_path, orientation):
    rgb = np.zeros((6, 9, 3), np.uint16)
    rgb[..., 0] = np.arange(9, dtype=np.uint16) * 1000
    rgb[..., 1] = (np.arange(6, dtype=np.uint16) * 3000)[:, None]
    rgb[..., 2] = 123
    expected = apply_orientation(rgb, orientation)
    tif = _tiff16_rgb(tmp_path / "a.tif", rgb, orientation)
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), rgb[..., ::-1])
    _with_png_exif(png, orientation)
    for path in (tif, png):
        img = load_image(path)
        assert img.original.dtype == np.uint16
        np.testing.assert_array_equal(img.original, expected, err_msg=str(path))
        assert img.size == image_size(path) == expected.shape[:2]


def test_png_exif_after_pixel_data_is_found_without_decoding(tmp_path):
    path = _with_png_exif(_save(tmp_path / "a.png", _pattern(10, 30)), 8, before_pixels=False)
    assert image_size(path) == (30, 10)
    assert load_image(path).size == (30, 10)


# ------------------------------------------------------------------ bit depths
def test_16bit_grayscale_png_keeps_values_and_uses_percentile_stretch(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.integers(1000, 5001, size=(100, 120)).astype(np.uint16)
    values[0, 0] = 65535  # one hot pixel must not make the picture dark
    path = tmp_path / "g16.png"
    cv2.imwrite(str(path), values)
    img = load_image(path)
    _assert_display(img)
    assert img.original.dtype == np.uint16
    np.testing.assert_array_equal(img.original, values)
    lo, hi = img.display_range
    np.testing.assert_allclose((lo, hi), np.percentile(values, images.DISPLAY_PERCENTILES))
    assert 1000 <= lo < 1100 and 4900 < hi <= 5000
    gray = img.rgb[..., 0]
    assert (img.rgb[..., 0] == img.rgb[..., 1]).all() and (img.rgb[..., 1] == img.rgb[..., 2]).all()
    assert 100 < np.median(gray) < 155  # mid-range values show mid-gray
    assert gray[0, 0] == 255 and gray.min() == 0
    expected = np.clip(np.rint((values.astype(np.float64) - lo) * 255.0 / (hi - lo)), 0, 255)
    assert np.abs(gray.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_rgb_keeps_values_and_channel_order(tmp_path, ext):
    rgb = np.zeros((20, 30, 3), np.uint16)
    rgb[..., 0] = 60000  # red
    rgb[..., 1] = np.arange(30, dtype=np.uint16) * 100
    rgb[..., 2] = 7
    path = tmp_path / f"c16{ext}"
    cv2.imwrite(str(path), rgb[..., ::-1])  # OpenCV writes BGR
    img = load_image(path)
    _assert_display(img)
    assert img.original.dtype == np.uint16
    np.testing.assert_array_equal(img.original, rgb)
    assert (img.rgb[..., 0] == 255).all()  # red stays red


def test_16bit_rgba_png_keeps_alpha(tmp_path):
    bgra = np.zeros((8, 9, 4), np.uint16)
    bgra[..., 2] = 50000
    bgra[..., 3] = 65535
    bgra[:, :4, 3] = 0
    path = tmp_path / "c16a.png"
    cv2.imwrite(str(path), bgra)
    img = load_image(path)
    assert img.original.shape == (8, 9, 4) and img.original.dtype == np.uint16
    assert (img.alpha[:, :4] == 0).all() and (img.alpha[:, 4:] == 255).all()
    assert (img.rgb[:, :4] == 0).all()


def test_float_tiff_with_nan(tmp_path):
    values = np.linspace(-1.0, 3.0, 20 * 25, dtype=np.float32).reshape(20, 25)
    values[3, 4] = np.nan
    path = _save(tmp_path / "f.tif", values)
    img = load_image(path)
    _assert_display(img)
    assert img.original.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(img.original), np.isnan(values))
    assert img.rgb[3, 4, 0] == 0
    lo, hi = img.display_range
    assert -1.0 <= lo < hi <= 3.0


def test_constant_16bit_image_does_not_divide_by_zero(tmp_path):
    path = tmp_path / "k.png"
    cv2.imwrite(str(path), np.full((5, 6), 65535, np.uint16))
    img = load_image(path)
    assert (img.rgb == 255).all()


def test_grayscale_and_bilevel(tmp_path):
    gray = _pattern()[..., 0]
    img = load_image(_save(tmp_path / "l.png", gray))
    assert img.original.shape == gray.shape and img.original.dtype == np.uint8
    np.testing.assert_array_equal(img.rgb, np.repeat(gray[..., None], 3, axis=2))

    bits = gray > 100
    img = load_image(_save(tmp_path / "b.png", bits))
    assert img.original.dtype == bool
    np.testing.assert_array_equal(img.original, bits)
    np.testing.assert_array_equal(img.rgb[..., 1], bits.astype(np.uint8) * 255)


def test_palette_image_expands_to_rgb(tmp_path):
    index = np.zeros((6, 7), np.uint8)
    index[2:4, 2:5] = 1
    index[5, :] = 2
    im = Image.fromarray(index, mode="P")
    im.putpalette([0, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    path = tmp_path / "p.png"
    im.save(path)
    img = load_image(path)
    assert img.original.shape == (6, 7, 3)
    assert tuple(img.rgb[3, 3]) == (0, 255, 0)
    assert tuple(img.rgb[5, 0]) == (0, 0, 255)
    assert tuple(img.rgb[0, 0]) == (0, 0, 0)
    assert img.alpha is None

    im.save(tmp_path / "pt.png", transparency=1)
    img = load_image(tmp_path / "pt.png")
    assert img.original.shape == (6, 7, 4)
    assert img.alpha[3, 3] == 0 and img.alpha[0, 0] == 255
    assert tuple(img.rgb[3, 3]) == (0, 0, 0)  # transparent green composited on black


def test_alpha_kept_separately_and_composited_on_black(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 128
    rgba[1, 1, 3] = 0
    img = load_image(_save(tmp_path / "a.png", rgba))
    np.testing.assert_array_equal(img.original, rgba)
    np.testing.assert_array_equal(img.alpha, rgba[..., 3])
    assert tuple(img.rgb[0, 0]) == (100, 50, 25)
    assert tuple(img.rgb[1, 1]) == (0, 0, 0)
    assert tuple(img.rgb[2, 2]) == (200, 100, 50)

    la = np.stack([np.full((3, 3), 90, np.uint8), np.full((3, 3), 255, np.uint8)], axis=2)
    la[0, 0, 1] = 0
    img = load_image(_save(tmp_path / "la.png", la, format="PNG"))
    assert img.original.shape == (3, 3, 2)
    assert tuple(img.rgb[1, 1]) == (90, 90, 90) and tuple(img.rgb[0, 0]) == (0, 0, 0)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(_pattern()).convert("CMYK").save(path, quality=95)
    img = load_image(path)
    _assert_display(img)
    assert img.original.shape == (24, 36, 3)


# ------------------------------------------------------------------ size limit
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_size_limit_from_header_default_is_above_pillows(tmp_path, monkeypatch):
    monkeypatch.delenv(images.MAX_PIXELS_ENV, raising=False)
    path = _png_header_only(tmp_path / "big.png", 20_000, 10_000)  # 200 megapixels
    # Pillow alone refuses it (its limit is about 179 megapixels) ...
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    # ... our default (300 megapixels) lets its header be read
    assert image_size(path) == (10_000, 20_000)
    assert Image.MAX_IMAGE_PIXELS == int(1024 * 1024 * 1024 // 4 // 3), "Pillow's global limit not restored"
    with pytest.raises(ImageReadError) as err:
        image_size(path, max_pixels=100_000_000)
    msg = str(err.value)
    assert str(path) in msg and "too large" in msg and images.MAX_PIXELS_ENV in msg and "max_pixels" in msg
    assert "\n" not in msg

    huge = _png_header_only(tmp_path / "huge.png", 20_000, 20_000)  # 400 megapixels
    for call in (image_size, check_image, load_image):
        with pytest.raises(ImageReadError, match="too large"):
            call(huge)
    assert DEFAULT_MAX_PIXELS == 300_000_000


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_size_limit_raisable_by_env_and_parameter(tmp_path, monkeypatch):
    path = _save(tmp_path / "a.png", _pattern(30, 30))  # 900 pixels
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "500")
    with pytest.raises(ImageReadError, match="too large"):
        load_image(path)
    with pytest.raises(ImageReadError, match="too large"):
        image_size(path)
    assert load_image(path, max_pixels=900).size == (30, 30)  # parameter beats env
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "1000")
    assert load_image(path).size == (30, 30)
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "lots")
    with pytest.raises(ImageReadError, match=images.MAX_PIXELS_ENV):
        load_image(path)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_limit_between_one_and_two_times_pillows_threshold(tmp_path):
    # 900 pixels with a limit of 600: Pillow (lifted to 600) only warns, our check refuses
    path = _save(tmp_path / "a.png", _pattern(30, 30))
    with pytest.raises(ImageReadError, match="too large"):
        load_image(path, max_pixels=600)
    # 900 pixels with a limit of 100: Pillow's own DecompressionBombError, turned into ours
    with pytest.raises(ImageReadError, match="too large"):
        load_image(path, max_pixels=100)


# ------------------------------------------------------------------ errors
def _jpeg_bytes(h: int = 64, w: int = 80) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_truncated_jpeg(tmp_path):
    data = _jpeg_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert image_size(path) == (64, 80)  # the header is intact
    for call in (load_image, check_image):
        with pytest.raises(ImageReadError) as err:
            call(path)
        msg = str(err.value)
        assert msg.startswith(str(path)) and "truncated" in msg and "\n" not in msg


def test_jpeg_with_data_after_end_marker_is_complete(tmp_path):
    path = tmp_path / "motion.jpg"
    path.write_bytes(_jpeg_bytes() + b"ftypmp42" + bytes(range(256)) * 20)
    assert check_image(path) == (64, 80)
    assert load_image(path).size == (64, 80)
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(_jpeg_bytes()[:-300] + b"\x00" * 300)  # cut, then zero-filled
    with pytest.raises(ImageReadError, match="truncated"):
        check_image(padded)


@pytest.mark.parametrize("ext", [".png", ".tif", ".webp", ".bmp"])
def test_truncated_png_tiff_webp_bmp(tmp_path, ext):
    src = np.random.default_rng(2).integers(0, 255, (60, 70, 3), dtype=np.uint8)
    full = _save(tmp_path / f"full{ext}", src, **({"lossless": True} if ext == ".webp" else {}))
    data = full.read_bytes()
    path = tmp_path / f"cut{ext}"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageReadError, match="truncated|corrupt") as err:
        check_image(path)
    assert str(path) in str(err.value)
    with pytest.raises(ImageReadError, match="truncated|corrupt"):
        load_image(path)


def test_not_an_image_missing_empty_and_folder(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("these are my notes, not a picture\n")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for path, reason in [
        (text, "not an image"),
        (empty, "not an image"),
        (tmp_path / "missing.jpg", "file not found"),
    ]:
        for call in (load_image, image_size, check_image):
            with pytest.raises(ImageReadError) as err:
                call(path)
            msg = str(err.value)
            assert msg.startswith(f"{path}: ") and reason in msg and "\n" not in msg
    folder = tmp_path / "dir.png"
    folder.mkdir()
    with pytest.raises(ImageReadError, match="folder"):
        load_image(folder)


def test_image_sha1_streams_the_file_bytes(tmp_path):
    path = tmp_path / "a.bin.png"
    payload = os.urandom(3 * 1024 * 1024 + 17)
    path.write_bytes(payload)
    expected = hashlib.sha1(payload).hexdigest()
    assert image_sha1(path) == expected
    assert image_sha1(path, chunk_size=4096) == expected
    with pytest.raises(ImageReadError, match="file not found"):
        image_sha1(tmp_path / "nope.png")


# ------------------------------------------------------------------ folder scan
def test_folder_with_broken_files_still_opens(tmp_path):
    root = tmp_path / "project"
    (root / "sub" / "deeper").mkdir(parents=True)
    _save(root / "good.jpg", _pattern())
    _save(root / "sub" / "good.png", _pattern(10, 12))
    _save(root / "sub" / "deeper" / "turned.jpg", _pattern(10, 12), exif=_exif(6))
    data = _jpeg_bytes()
    (root / "sub" / "cut.jpg").write_bytes(data[: len(data) // 2])
    (root / "notes.png").write_text("not an image at all")
    (root / "readme.txt").write_text("ignored: not an image extension")

    store = ProjectStore.open(root, scan=False)
    report = store.scan_images()
    assert sorted(report.added) == ["good.jpg", "notes.png", "sub/cut.jpg", "sub/deeper/turned.jpg", "sub/good.png"]
    assert set(report.errors) == {"notes.png", "sub/cut.jpg"}
    assert "not an image" in report.errors["notes.png"]
    assert "truncated" in report.errors["sub/cut.jpg"]
    records = {r.path: r for r in store.images()}
    assert records["good.jpg"].size == (24, 36) and records["good.jpg"].error is None
    assert records["sub/deeper/turned.jpg"].size == (12, 10)
    assert records["notes.png"].error == report.errors["notes.png"]
    # the good images load; the project reopens with the broken ones still listed
    assert load_image(store.image_file(records["sub/good.png"])).size == (10, 12)
    store.close()
    with ProjectStore.open(root) as again:
        errors = {r.path: r.error for r in again.images() if r.error}
    assert set(errors) == {"notes.png", "sub/cut.jpg"}


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


# ------------------------------------------------------------------ real data
def test_real_jpegs_and_masks_load():
    folder = _data("glass-gdd")
    jpgs = sorted((folder / "image").glob("*.jpg"))[:3]
    assert jpgs
    for path in jpgs:
        img = load_image(path)
        _assert_display(img)
        assert img.size == image_size(path) == check_image(path)
        mask_path = folder / "mask" / (path.stem + ".png")
        if mask_path.exists():
            mask = load_image(mask_path)
            assert mask.size == img.size


def test_real_palette_and_gray_pngs_load():
    folder = _data("formats/sahi-coco")
    pal = load_image(folder / "terrain2.png")
    gray = load_image(folder / "terrain2_gray.png")
    assert pal.size == gray.size == (682, 1024)
    assert pal.original.ndim == 3 and gray.original.ndim == 2
    _assert_display(pal)
    _assert_display(gray)


# ------------------------------------------------------------------ OpenCV decoding
def _pillow_decode(path: Path) -> np.ndarray:
    """What ``load_image`` gave before OpenCV decoded the common files: Pillow, EXIF
    orientation applied, RGB."""
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def _with_jpeg_exif(src: Path, dst: Path, orientation: int) -> Path:
    """``src``'s JPEG bytes with an EXIF segment carrying ``orientation`` put right after
    the start-of-image marker: the same coded pixels, no re-encoding."""
    payload = _exif(orientation).tobytes()
    if not payload.startswith(b"Exif\x00\x00"):
        payload = b"Exif\x00\x00" + payload
    data = src.read_bytes()
    assert data[:2] == b"\xff\xd8"
    dst.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:])
    return dst


def _real_jpegs(n_per_set: int = 4) -> list[Path]:
    found = []
    for name in ("glass-gdd", "mirror-msd", "cracks-cfd", "cracks-deepcrack"):
        folder = DATA / name / "image"
        found += sorted(folder.glob("*.jpg"))[:n_per_set]
    if not found:
        pytest.skip(f"no real JPEGs under {DATA} (set SPECULA_DATA)")
    return found


def test_real_jpegs_decode_with_opencv_to_pillows_pixels():
    for path in _real_jpegs():
        img = load_image(path)
        _assert_display(img)
        expected = _pillow_decode(path)
        with Image.open(path) as im:
            mode = im.mode
        if mode == "RGB":
            assert img.decoder == "opencv", path
            assert img.rgb is img.original and img.rgb.flags["OWNDATA"], "decoded into the kept array, no copy"
        np.testing.assert_array_equal(img.rgb, expected, err_msg=str(path))


def test_real_rgb_pngs_decode_with_opencv_to_pillows_pixels():
    paths = [_data("formats/labelme-examples/tutorial/apc2016_obj3/img.png"), _data("formats/sahi-coco/terrain4.png")]
    for path in paths:
        img = load_image(path)
        assert img.decoder == "opencv"
        np.testing.assert_array_equal(img.rgb, _pillow_decode(path), err_msg=str(path))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_real_jpeg_with_orientation_tag_equals_pillows_exif_transpose(tmp_path, orientation):
    src = _data("glass-gdd") / "image" / "1000.jpg"
    path = _with_jpeg_exif(src, tmp_path / f"o{orientation}.jpg", orientation)
    img = load_image(path)
    assert img.decoder == "opencv" and img.orientation == orientation
    np.testing.assert_array_equal(img.rgb, _pillow_decode(path))
    assert img.size == image_size(path) == check_image(path)
    assert img.rgb.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("fmt, kw", [("webp", {"quality": 80}), ("webp", {"lossless": True}), ("bmp", {})])
def test_real_photo_as_webp_and_bmp_decodes_to_pillows_pixels(tmp_path, fmt, kw):
    src = _data("glass-gdd") / "image" / "1003.jpg"
    path = tmp_path / f"a.{fmt}"
    Image.open(src).save(path, **kw)
    img = load_image(path)
    assert img.decoder == "opencv"
    np.testing.assert_array_equal(img.rgb, _pillow_decode(path))


def test_what_opencv_would_change_stays_with_pillow(tmp_path):
    gray = _save(tmp_path / "g.jpg", _pattern()[..., 0])
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(_pattern()).convert("CMYK").save(cmyk)
    bgrx = _save(tmp_path / "x.bmp", np.dstack([_pattern(), np.full((24, 36), 255, np.uint8)]))  # 32-bit BMP
    frames = [Image.fromarray(_pattern()), Image.fromarray(255 - _pattern())]
    anim = tmp_path / "anim.png"
    frames[0].save(anim, save_all=True, append_images=frames[1:])
    for path in (gray, cmyk, bgrx, anim):
        img = load_image(path)
        assert img.decoder == "pillow", path
        np.testing.assert_array_equal(img.rgb, _pillow_decode(path), err_msg=str(path))


def test_a_header_opencv_refuses_falls_back_to_pillow(tmp_path, monkeypatch):
    """``cv2.imread`` into an array returns that array untouched, saying nothing, when its
    decoder refuses the header: the picture must still be the file's, from Pillow."""
    path = _save(tmp_path / "a.png", _pattern())
    monkeypatch.setattr(cv2, "imread", lambda filename, dst, flags: dst)
    img = load_image(path)
    assert img.decoder == "pillow"
    np.testing.assert_array_equal(img.rgb, _pattern())


def test_corrupt_data_opencv_cannot_decode_gets_pillows_reason(tmp_path):
    src = _data("glass-gdd") / "image" / "1000.jpg"
    data = bytearray(src.read_bytes())
    data[200:210] = b"\xff" * 10  # a broken table in the header segments
    path = tmp_path / "broken.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError) as err:
        load_image(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "corrupt" in msg and "\n" not in msg


def _peak_growth_of_load(path: Path) -> float:
    """Peak resident-set growth of ``load_image(path)`` in a fresh interpreter, in bytes,
    over the decoded image's bytes."""
    import subprocess
    import sys

    code = (
        "import sys, gc\n"
        "from pathlib import Path\n"
        "import numpy as np, cv2, PIL.Image\n"
        "from annotation.images import load_image\n"
        "def status(key):\n"
        "    for line in Path('/proc/self/status').read_text().splitlines():\n"
        "        if line.startswith(key): return int(line.split()[1]) * 1024\n"
        "load_image(sys.argv[1] + '.small.jpg')\n"  # imports and first-use allocations
        "gc.collect(); base = status('VmRSS')\n"
        "Path('/proc/self/clear_refs').write_text('5')\n"
        "img = load_image(sys.argv[1])\n"
        "print((status('VmHWM') - base) / img.rgb.nbytes)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip())


def test_decoding_a_large_jpeg_holds_one_image_at_the_peak(tmp_path):
    """Pillow held the pixels at 4 bytes each and copied them into numpy (2.3x the image
    at the peak); ``cv2.imdecode`` returns a copy of its own buffer (2x)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("the peak resident set cannot be reset here (Linux /proc/self/clear_refs)")
    src = cv2.imread(str(_data("glass-gdd") / "image" / "1000.jpg"))
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), cv2.resize(src, (4000, 3000), interpolation=cv2.INTER_CUBIC))
    cv2.imwrite(str(path) + ".small.jpg", src[:64, :64])
    assert _peak_growth_of_load(path) < 1.3


# ------------------------------------------------------------------ zoomed-out level
def test_preview_level_is_the_mean_of_whole_blocks():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)
    low = images.preview_level(rgb, 4)
    assert low.shape == (9, 12, 3) and low.flags["C_CONTIGUOUS"]
    blocks = rgb[:36, :48].reshape(9, 4, 12, 4, 3).astype(float).mean(axis=(1, 3))
    assert np.abs(low.astype(float) - blocks).max() <= 0.5 + 1e-9
    assert images.preview_level(rgb[:2], 4).shape == (1, 12, 3)  # a side shorter than the factor


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_reduced_decode_of_a_real_jpeg_matches_its_full_decode(tmp_path, orientation):
    src = _data("glass-gdd") / "image" / "1000.jpg"
    path = _with_jpeg_exif(src, tmp_path / f"o{orientation}.jpg", orientation)
    full = load_image(path).rgb
    low = images.decode_reduced(path, 4)
    H, W = full.shape[:2]
    assert low.shape == (-(-H // 4), -(-W // 4), 3) and low.flags["C_CONTIGUOUS"]
    # the DCT-domain reduction and the block mean of the full decode are the same picture
    diff = np.abs(low[: H // 4, : W // 4].astype(int) - images.preview_level(full, 4))
    assert diff.mean() < 2.0


def test_reduced_decode_only_for_rgb_jpegs(tmp_path):
    assert images.decode_reduced(_save(tmp_path / "a.png", _pattern()), 4) is None
    assert images.decode_reduced(_save(tmp_path / "g.jpg", _pattern()[..., 0]), 4) is None
    assert images.decode_reduced(_save(tmp_path / "c.jpg", _pattern()), 3) is None  # libjpeg scales by 1/2, 1/4, 1/8
    assert images.decode_reduced(tmp_path / "missing.jpg", 4) is None


def test_load_levels_gives_the_image_and_its_level(tmp_path):
    jpg = _data("glass-gdd") / "image" / "1000.jpg"
    img, low = images.load_levels(jpg, 4, min_side=1024)
    np.testing.assert_array_equal(img.rgb, load_image(jpg).rgb)
    assert low.shape == (256, 320, 3)
    np.testing.assert_array_equal(low, images.decode_reduced(jpg, 4))  # the DCT-domain level
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), cv2.imread(str(jpg))[:, :1030])
    img, low = images.load_levels(png, 4, min_side=1024)
    np.testing.assert_array_equal(low, images.preview_level(img.rgb, 4))  # made from the full decode
    assert images.load_levels(png, 4, min_side=1030)[1] is None  # small enough to draw without a level
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpg.read_bytes()[:50_000])
    with pytest.raises(ImageReadError, match="truncated"):
        images.load_levels(cut, 4, min_side=16)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_levels_keep_the_pixel_limit_checked_from_the_header(tmp_path, monkeypatch):
    jpg = _data("glass-gdd") / "image" / "1000.jpg"
    with pytest.raises(ImageReadError, match="too large"):
        images.load_levels(jpg, 4, min_side=16, max_pixels=1280 * 1024 - 1)
    assert images.decode_reduced(jpg, 4, max_pixels=1280 * 1024 - 1) is None
    monkeypatch.delenv(images.MAX_PIXELS_ENV, raising=False)
    huge = _png_header_only(tmp_path / "huge.png", 20_000, 20_000)  # 400 megapixels, a token of data
    with pytest.raises(ImageReadError, match="too large"):
        images.load_levels(huge, 4, min_side=16)
