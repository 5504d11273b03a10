"""Seeded mutations of real annotation files, for the importer fuzz test.

A ``Mutator`` turns one seed (a real COCO, labelme, CVAT or mask file read from
``../shared/data``) into a damaged input of a named kind: truncated, a wrong type where a
number or an object was, NaN and infinities, huge numbers, deep nesting, bad UTF-8 and
lone surrogates, control characters in names, broken images, and the XML attacks
(entity declarations, huge attributes). Everything comes from one ``random.Random``, so
a run is reproduced by its seed. No third-party fuzzing library: the damage done to
each format is the point, and it is written out here.
"""
from __future__ import annotations

import base64
import io
import json
import random
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image

DEEP = 10_000  # nesting levels of the deep-nesting inputs

# strings that end up as class names, image names or attribute values
NASTY_NAMES = [
    "glass\x00tail", "line\nbreak", "\x1b[31mred\x1b[0m", "tab\there", "carriage\rreturn", "bell\x07",
    "\u202eright-to-left", "sep\u2028line", "del\x7f", "c1\x85next", "\ud800lone", "low\udfffsurrogate",
    "", " ", "../../escape", "/abs/path.jpg", "C:\\win\\path.jpg", "a" * 5000, "😀emoji", "%s%n{0}",
]
HUGE_TOKENS = ["1e30", "-1e30", "1e308", "1e400", "-1e400", "4294967297", "-9223372036854775809",
               "18446744073709551617", "9" * 400, "1" + "0" * 5000, "-" + "9" * 5000, "1e-400", "2.5e+38"]
NAN_TOKENS = ["NaN", "Infinity", "-Infinity"]
WRONG_VALUES: list[Any] = ["x", "", "12", [], [1, 2], {}, {"a": 1}, None, True, False, 0, -1, 3.5]


@dataclass
class Seed:
    """A real file: ``importer`` it is read by, its bytes and the name it is written under."""

    importer: str
    label: str  # where it came from, for the report
    name: str
    data: bytes
    extra_args: tuple[str, ...] = ()
    weight: float = 1.0  # how often it is picked, against the other seeds of its importer


@dataclass
class FuzzInput:
    importer: str
    kind: str
    seed: str
    name: str  # file name (may hold any character but '/' and NUL)
    data: bytes
    extra_args: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ JSON
class _Raw:
    """A token written into JSON as it is (NaN, 1e400, a 5000-digit integer, 10 000 brackets)."""

    def __init__(self, text: str):
        self.text = text


def _dump_with_raw(doc: Any) -> bytes:
    raws: list[str] = []

    def swap(node: Any) -> Any:
        if isinstance(node, _Raw):
            raws.append(node.text)
            return f"\x00RAW{len(raws) - 1}\x00"
        if isinstance(node, dict):
            return {k: swap(v) for k, v in node.items()}
        if isinstance(node, list):
            return [swap(v) for v in node]
        return node

    # ensure_ascii keeps lone surrogates as \ud800 escapes: valid JSON that decodes to them
    text = json.dumps(swap(doc), ensure_ascii=True)
    text = re.sub(r'"\\u0000RAW(\d+)\\u0000"', lambda m: raws[int(m.group(1))], text)
    return text.encode("utf-8")


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every node's path (keys and indexes) in a parsed JSON document, the root excluded."""
    out: list[tuple] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append(prefix + (k,))
            out.extend(_paths(v, prefix + (k,)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append(prefix + (i,))
            out.extend(_paths(v, prefix + (i,)))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    parent = _get(doc, path[:-1])
    parent[path[-1]] = value
    return doc


def _deep(rng: random.Random, levels: int = DEEP) -> _Raw:
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    return _Raw(opener * levels + "1" + closer * levels)


# ------------------------------------------------------------------ images
def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_claiming(width: int, height: int, mode: str = "L") -> bytes:
    """A PNG whose header says ``width`` x ``height`` but whose data is a few bytes."""
    depth, colour = {"L": (8, 0), "RGB": (8, 2), "1": (1, 0)}[mode]
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _encode(im: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def float_tiff(size: tuple[int, int], rng: random.Random) -> bytes:
    """A 32-bit float TIFF of ``size`` (w, h): a real-looking blob plus NaN and infinities."""
    w, h = size
    a = np.zeros((h, w), np.float32)
    a[h // 4: h // 2, w // 4: w // 2] = 1.0
    picks = rng.sample([np.nan, np.inf, -np.inf, 1e30, -0.0], 3)
    flat = a.reshape(-1)
    for v in picks:
        idx = rng.randrange(flat.size)
        flat[idx: idx + max(1, flat.size // 50)] = v
    if rng.random() < 0.3:
        a[:] = np.nan
    return _encode(Image.fromarray(a, mode="F"), "TIFF")


def broken_images(rng: random.Random, like: Optional[bytes] = None,
                  size: tuple[int, int] = (64, 48)) -> tuple[str, bytes, str]:
    """(kind, bytes, extension) of one broken or unusual image."""
    w, h = size
    arr = np.zeros((h, w), np.uint8)
    arr[h // 4: h // 2, w // 4: w // 2] = 255
    choices: list[tuple[str, Callable[[], bytes], str]] = [
        ("truncated-png", lambda: (lambda b: b[: rng.randrange(8, max(9, len(b)))])(
            _encode(Image.fromarray(arr), "PNG")), ".png"),
        ("truncated-jpeg", lambda: (lambda b: b[: rng.randrange(2, max(3, len(b)))])(
            _encode(Image.fromarray(arr).convert("RGB"), "JPEG")), ".jpg"),
        ("png-claims-60000x60000", lambda: png_claiming(60000, 60000, rng.choice(["L", "RGB", "1"])), ".png"),
        ("png-claims-12000x12000", lambda: png_claiming(12000, 12000, "L"), ".png"),
        ("png-claims-1x200000", lambda: png_claiming(1, 200000, "L"), ".png"),
        ("float-tiff-nan", lambda: float_tiff(size, rng), ".tif"),
        ("16-bit-png", lambda: _encode(Image.fromarray(arr.astype(np.uint16) * 257), "PNG"), ".png"),
        ("int32-tiff", lambda: _encode(Image.fromarray(arr.astype(np.int32) * -70000), "TIFF"), ".tif"),
        ("cmyk-jpeg", lambda: _encode(Image.fromarray(arr).convert("CMYK"), "JPEG"), ".jpg"),
        ("1x1-png", lambda: _encode(Image.new("L", (1, 1), 255), "PNG"), ".png"),
        ("empty-file", lambda: b"", ".png"),
        ("text-as-png", lambda: b'{"not": "an image"}', ".png"),
        ("bit-flipped", lambda: _flip_bits(like or _encode(Image.fromarray(arr), "PNG"), rng), ".png"),
        ("gif-animated", lambda: _animated_gif(arr), ".gif"),
    ]
    kind, make, ext = rng.choice(choices)
    return kind, make(), ext


def _flip_bits(data: bytes, rng: random.Random, flips: int = 8) -> bytes:
    b = bytearray(data)
    for _ in range(flips):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def _animated_gif(arr: np.ndarray) -> bytes:
    frames = [Image.fromarray(arr), Image.fromarray(255 - arr)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


# ------------------------------------------------------------------ the mutator
class Mutator:
    """Seeded mutations per importer. ``make(importer)`` returns one ``FuzzInput``."""

    JSON_KINDS = ("truncate", "wrong-type", "nan-inf", "huge-number", "deep-nesting", "bad-utf8",
                  "surrogate", "control-chars", "rle-counts", "broken-embedded-image", "unchanged")
    XML_KINDS = ("truncate", "huge-attribute", "entity-declaration", "external-entity", "deep-nesting",
                 "bad-utf8", "control-chars", "wrong-type", "nan-inf", "mask-rle", "unchanged")
    IMAGE_KINDS = ("truncate", "broken-image", "huge-header", "float-tiff-nan", "bit-flip", "control-chars-name",
                   "bad-utf8-name", "wrong-size", "unusual-mode", "unchanged")

    def __init__(self, seeds: list[Seed], seed: int = 0):
        self.rng = random.Random(seed)
        self.seeds: dict[str, list[Seed]] = {}
        for s in seeds:
            self.seeds.setdefault(s.importer, []).append(s)

    def kinds(self, importer: str) -> tuple[str, ...]:
        if importer == "coco":
            return tuple(k for k in self.JSON_KINDS if k != "broken-embedded-image")
        if importer == "labelme":
            return tuple(k for k in self.JSON_KINDS if k != "rle-counts")
        if importer == "cvat":
            return self.XML_KINDS
        return self.IMAGE_KINDS

    def make(self, importer: str, kind: Optional[str] = None) -> FuzzInput:
        pool = self.seeds[importer]
        seed = self.rng.choices(pool, weights=[s.weight for s in pool])[0]
        kind = kind or self.rng.choice(self.kinds(importer))
        fi = FuzzInput(importer, kind, seed.label, seed.name, seed.data, seed.extra_args)
        if kind == "unchanged":
            return fi
        if kind == "truncate":
            cut = self.rng.randrange(0, max(1, len(seed.data)))
            fi.data = seed.data[:cut]
            fi.notes.append(f"cut at {cut} of {len(seed.data)}")
            return fi
        if importer in ("coco", "labelme"):
            self._json(fi, importer)
        elif importer == "cvat":
            self._xml(fi)
        else:
            self._image(fi)
        if (fi.name, fi.data) == (seed.name, seed.data):  # nothing to aim at in this seed
            fi.data = seed.data[: self.rng.randrange(0, max(1, len(seed.data)))]
            fi.kind += "(truncated)"
        return fi

    # -------------------------------------------------------------- JSON kinds
    def _json(self, fi: FuzzInput, importer: str) -> None:
        rng = self.rng
        kind = fi.kind
        if kind == "bad-utf8":
            b = bytearray(fi.data)
            quotes = [m.start() for m in re.finditer(rb'"', fi.data)] or [0]
            for _ in range(rng.randint(1, 4)):
                at = rng.choice(quotes) + 1
                b[at:at] = rng.choice([b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                                       b"\xe2\x82", b"\xfe\xff"])
            fi.data = bytes(b)
            return
        doc = json.loads(fi.data)
        paths = _paths(doc)
        if kind == "deep-nesting":
            target = rng.choice(paths) if paths and rng.random() < 0.8 else ()
            fi.notes.append(f"at {target!r:.80}")
            fi.data = _dump_with_raw(_set(doc, target, _deep(rng)))
            return
        if kind == "rle-counts" and importer == "coco":
            self._rle(doc, fi)
            fi.data = _dump_with_raw(doc)
            return
        if kind == "broken-embedded-image" and importer == "labelme":
            self._embedded(doc, fi)
            fi.data = _dump_with_raw(doc)
            return
        numbers = [p for p in paths if isinstance(_get(doc, p), (int, float)) and not isinstance(_get(doc, p), bool)]
        strings = [p for p in paths if isinstance(_get(doc, p), str)]
        names = [p for p in strings if p[-1] in ("name", "label", "file_name", "imagePath", "supercategory",
                                                  "specula_origin", "shape_type", "flags")]
        n = rng.randint(1, 5)
        for _ in range(n):
            if kind == "wrong-type" and paths:
                target = rng.choice(paths)
                old = _get(doc, target)
                new = rng.choice([v for v in WRONG_VALUES if type(v) is not type(old)])
                _set(doc, target, json.loads(json.dumps(new)))
                fi.notes.append(f"{target!r:.60} -> {new!r:.20}")
                paths = _paths(doc)  # the old node's children are gone
            elif kind == "nan-inf" and numbers:
                target = rng.choice(numbers)
                _set(doc, target, _Raw(rng.choice(NAN_TOKENS)))
                fi.notes.append(f"{target!r:.60}")
            elif kind == "huge-number" and numbers:
                target = rng.choice(numbers)
                _set(doc, target, _Raw(rng.choice(HUGE_TOKENS)))
                fi.notes.append(f"{target!r:.60}")
            elif kind in ("control-chars", "surrogate") and (names or strings):
                target = rng.choice(names if names and rng.random() < 0.8 else strings)
                pool = [s for s in NASTY_NAMES if any("\ud800" <= c <= "\udfff" for c in s)] \
                    if kind == "surrogate" else NASTY_NAMES
                new = rng.choice(pool)
                _set(doc, target, new)
                fi.notes.append(f"{target!r:.60} -> {new!r:.20}")
            else:  # a kind with nothing to aim at in this seed: truncate instead
                fi.data = fi.data[: rng.randrange(0, max(1, len(fi.data)))]
                fi.kind += "(truncated)"
                return
        fi.data = _dump_with_raw(doc)

    def _rle(self, doc: dict, fi: FuzzInput) -> None:
        """COCO segmentations as RLE whose counts do not fit the image (short, long, negative, junk)."""
        rng = self.rng
        anns = [a for a in doc.get("annotations", []) if isinstance(a, dict)]
        images = {im.get("id"): im for im in doc.get("images", []) if isinstance(im, dict)}
        if not anns:
            fi.data = fi.data[: len(fi.data) // 2]
            fi.kind += "(truncated)"
            return
        from pycocotools import mask as cocomask

        for ann in rng.sample(anns, min(len(anns), rng.randint(1, 3))):
            im = images.get(ann.get("image_id"), {})
            h, w = int(im.get("height", 10)), int(im.get("width", 10))
            full = np.zeros((h, w), np.uint8, order="F")
            full[h // 4: h // 2, w // 4: w // 2] = 1
            good = cocomask.encode(full)
            counts = good["counts"].decode("ascii")
            variant = rng.choice(["short-compressed", "long-compressed", "junk-compressed", "short-list", "long-list",
                                  "negative-list", "huge-list", "float-list", "size-mismatch", "empty-counts",
                                  "huge-size"])
            if variant == "short-compressed":
                seg = {"size": [h, w], "counts": counts[: max(1, len(counts) // 2)]}
            elif variant == "long-compressed":
                seg = {"size": [h, w], "counts": counts + counts}
            elif variant == "junk-compressed":
                seg = {"size": [h, w], "counts": "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randint(1, 60)))}
            elif variant == "short-list":
                seg = {"size": [h, w], "counts": [h * w // 3, 10]}
            elif variant == "long-list":
                seg = {"size": [h, w], "counts": [h * w, h * w]}
            elif variant == "negative-list":
                seg = {"size": [h, w], "counts": [5, -3, h * w]}
            elif variant == "huge-list":
                seg = {"size": [h, w], "counts": [0, 2**40]}
            elif variant == "float-list":
                seg = {"size": [h, w], "counts": [1.5, h * w - 1.5]}
            elif variant == "size-mismatch":
                seg = {"size": [h + 1, w], "counts": counts}
            elif variant == "empty-counts":
                seg = {"size": [h, w], "counts": rng.choice(["", []])}
            else:
                seg = {"size": [60000, 60000], "counts": [0, 3_600_000_000]}
                im["height"], im["width"] = 60000, 60000
            ann["segmentation"] = seg
            ann["iscrowd"] = rng.choice([0, 1])
            fi.notes.append(variant)

    def _embedded(self, doc: dict, fi: FuzzInput) -> None:
        """labelme's imageData (and mask shapes) as broken images."""
        rng = self.rng
        kind, data, _ext = broken_images(rng)
        fi.notes.append(kind)
        if rng.random() < 0.5 or not isinstance(doc.get("shapes"), list) or not doc["shapes"]:
            doc["imageData"] = base64.b64encode(data).decode("ascii")
            if rng.random() < 0.5:
                doc.pop("imageHeight", None)
                doc.pop("imageWidth", None)
        else:
            shape = rng.choice([s for s in doc["shapes"] if isinstance(s, dict)] or [{}])
            shape["shape_type"] = "mask"
            shape["mask"] = base64.b64encode(data).decode("ascii")
            pts = shape.get("points") or [[0, 0], [10, 10]]
            shape["points"] = pts[:2] if len(pts) >= 2 else [[0, 0], [10, 10]]

    # -------------------------------------------------------------- XML kinds
    def _xml(self, fi: FuzzInput) -> None:
        rng = self.rng
        text = fi.data.decode("utf-8")
        kind = fi.kind
        attrs = list(re.finditer(r'(\w+)="([^"]*)"', text))
        body = text.split("?>", 1)[1] if text.startswith("<?xml") else text
        if kind == "entity-declaration":
            laughs = '<!ENTITY a "ha">' + "".join(
                f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
            doctype = f"<!DOCTYPE annotations [{laughs}]>"
            body = body.replace("<name>", "<name>&j;", 1) if rng.random() < 0.7 else body
            fi.data = ('<?xml version="1.0" encoding="utf-8"?>\n' + doctype + body).encode()
            return
        if kind == "external-entity":
            decl = rng.choice([
                '<!DOCTYPE annotations [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
                '<!DOCTYPE annotations [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>',
                '<!DOCTYPE annotations SYSTEM "http://127.0.0.1:9/cvat.dtd">',
            ])
            body = body.replace("<name>", "<name>&x;", 1)
            fi.data = ('<?xml version="1.0"?>\n' + decl + body).encode()
            return
        if kind == "deep-nesting":
            fi.data = text.replace("</annotations>", "<x>" * DEEP + "</x>" * DEEP + "</annotations>", 1).encode()
            return
        if kind == "bad-utf8":
            b = bytearray(fi.data)
            quotes = [m.start() for m in re.finditer(rb'"', fi.data)] or [0]
            for _ in range(rng.randint(1, 3)):
                at = rng.choice(quotes) + 1
                b[at:at] = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf"])
            fi.data = bytes(b)
            return
        if kind == "control-chars":
            names = list(re.finditer(r"<name>([^<]*)</name>", text)) + [m for m in attrs if m.group(1) in (
                "label", "name")]
            if names:
                m = rng.choice(names)
                raw = rng.choice(["\x1b[31m", "&#x1b;", "&#0;", "\u202e", "\u2028", "&#x85;", "\t\n", "&#xd800;",
                                  "a" * 100_000])
                start, end = m.span(1)
                text = text[:start] + raw + text[end:]
                fi.notes.append(repr(raw[:20]))
            fi.data = text.encode("utf-8", "surrogatepass")
            return
        if kind == "mask-rle":
            fi.data = self._cvat_mask(text).encode()
            return
        if not attrs:
            fi.data = fi.data[: len(fi.data) // 2]
            return
        pieces = []
        last = 0
        targets = rng.sample(attrs, min(len(attrs), rng.randint(1, 4)))
        for m in sorted(targets, key=lambda m: m.start()):
            name = m.group(1)
            if kind == "huge-attribute":
                value = rng.choice(["9" * 5000, "1e30", "1e400", "-1e30", "4294967297", "x" * 2_000_000,
                                    ";".join(f"{rng.random() * 1e6},{rng.random() * 1e6}" for _ in range(20000))])
            elif kind == "nan-inf":
                value = rng.choice(["nan", "inf", "-inf", "NaN,NaN;1,1;2,2", "inf,0;0,inf;1,1"])
            else:  # wrong-type
                value = rng.choice(["", "abc", "1,2", "1;2", ",,,", "-5", "0", "[1]", "true", "1.5.3", " 7 "])
            pieces.append(text[last:m.start(2)])
            pieces.append(value)
            last = m.end(2)
            fi.notes.append(f"{name}={value[:20]!r}")
        pieces.append(text[last:])
        fi.data = "".join(pieces).encode()

    def _cvat_mask(self, text: str) -> str:
        """Add (or damage) a <mask> whose runs do not cover its box, or whose box is absurd."""
        rng = self.rng
        variant = rng.choice(["short", "long", "negative", "huge-box", "negative-origin", "zero-box", "junk"])
        left, top, w, h = 2, 3, 20, 10
        rle = {"short": "5, 10", "long": "150, 150", "negative": "10, -5, 195", "junk": "a, b, c",
               "zero-box": "0"}.get(variant, "50, 100, 50")
        if variant == "huge-box":
            w, h = 60000, 60000
            rle = f"0, {w * h}"
        if variant == "negative-origin":
            left, top = -100000, -5
        if variant == "zero-box":
            w = h = 0
        mask = (f'<mask label="{self._first_label(text)}" source="manual" occluded="0" rle="{rle}" '
                f'left="{left}" top="{top}" width="{w}" height="{h}" z_order="0"></mask>')
        self_closing = re.search(r"<image [^>]*/>", text)
        if self_closing:
            tag = self_closing.group(0)[:-2] + ">" + mask + "</image>"
            return text.replace(self_closing.group(0), tag, 1)
        return re.sub(r"(<image [^>]*>)", lambda m: m.group(1) + mask, text, count=1)

    @staticmethod
    def _first_label(text: str) -> str:
        m = re.search(r"<label>\s*<name>([^<]*)</name>", text)
        return m.group(1) if m else "glass"

    # -------------------------------------------------------------- image kinds
    def _image(self, fi: FuzzInput) -> None:
        rng = self.rng
        kind = fi.kind
        stem, _, ext = fi.name.rpartition(".")
        try:
            with Image.open(io.BytesIO(fi.data)) as im:
                size = im.size
                im.load()
                arr = np.asarray(im)
                mode = im.mode
        except Exception:  # noqa: BLE001 - a seed the fuzzer could not read: use a plain size
            size, arr, mode = (64, 48), np.zeros((48, 64), np.uint8), "L"
        if kind == "broken-image":
            what, fi.data, new_ext = broken_images(rng, fi.data, size)
            fi.name = stem + new_ext
            fi.notes.append(what)
        elif kind == "huge-header":
            w, h = rng.choice([(60000, 60000), (size[0], 60000), (12000, 12000), (1, 200000)])
            fi.data = png_claiming(w, h, rng.choice(["L", "RGB", "1"]))
            fi.name = stem + ".png"
            fi.notes.append(f"{w}x{h}")
        elif kind == "float-tiff-nan":
            fi.data = float_tiff(size, rng)
            fi.name = stem + ".tif"
        elif kind == "bit-flip":
            fi.data = _flip_bits(fi.data, rng, rng.randint(1, 16))
        elif kind == "control-chars-name":
            bad = rng.choice(["\x1b[31m", "\n", "\r", "\t", "\x7f", "\u202e", "\u2028", "\x01", " "])
            # instance masks read the class from the name: <image>_<class>_<n>
            parts = stem.split("_")
            if len(parts) >= 2:
                parts[1 if len(parts) > 2 else -1] = f"cls{bad}x"
                stem = "_".join(parts)
            else:
                stem = f"{stem}_{bad}"
            fi.name = f"{stem}.{ext}"
            fi.notes.append(repr(bad))
        elif kind == "bad-utf8-name":
            # a file name that is not UTF-8: Python sees it as lone surrogates (surrogateescape)
            raw = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])
            fi.name = stem + raw.decode("utf-8", "surrogateescape") + "_x_1." + ext
        elif kind == "wrong-size":
            w, h = size
            nw, nh = rng.choice([(w + 1, h), (w // 2 or 1, h // 2 or 1), (w * 3, h * 3), (1, 1), (w, 1)])
            im2 = Image.fromarray(arr).resize((nw, nh), Image.NEAREST) if arr.ndim in (2, 3) else Image.new("L", (nw, nh))
            fi.data = _encode(im2, "PNG")
            fi.name = stem + ".png"
            fi.notes.append(f"{nw}x{nh} for {w}x{h}")
        elif kind == "unusual-mode":
            base = Image.fromarray(arr) if arr.ndim in (2, 3) else Image.new("L", size)
            # no "LAB": Pillow's L -> LAB conversion leaves bytes uninitialised, so one seed
            # would not make the same file twice
            target = rng.choice(["1", "LA", "RGBA", "P", "I", "I;16", "F", "CMYK", "YCbCr"])
            try:
                im2 = base.convert(target if target not in ("I;16",) else "I")
                if target == "I;16":
                    im2 = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
            except (ValueError, OSError):
                im2 = base
            fmt = "TIFF" if im2.mode in ("F", "CMYK", "YCbCr", "HSV", "LAB", "I", "LA") and rng.random() < 0.7 \
                else "PNG"
            try:
                fi.data = _encode(im2, fmt)
            except (OSError, ValueError, KeyError):
                try:
                    fi.data, fmt = _encode(im2, "TIFF"), "TIFF"
                except (OSError, ValueError, KeyError):  # a mode no format here writes: grey instead
                    im2 = base.convert("L")
                    fi.data, fmt = _encode(im2, "PNG"), "PNG"
            fi.name = stem + (".tif" if fmt == "TIFF" else ".png")
            fi.notes.append(f"{mode}->{im2.mode} {fmt}")
