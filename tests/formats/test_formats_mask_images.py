"""Mask-image formats: colour-coded, per-instance and per-class PNGs, exported and read back."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from annotation.formats.class_masks import export_class_masks, import_class_masks
from annotation.formats.color_masks import export_color_masks, import_color_masks
from annotation.formats.common import FormatError, LabelledImage, LabelledInstance
from annotation.formats.instance_masks import export_instance_masks, import_instance_masks, parse_mask_name
from annotation.mask import Mask
from annotation.palette import builtin_palette

from formats_helpers import ring_mask


def _box(size, box):
    a = np.zeros(size, bool)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = True
    return Mask.from_full(a)


def _scene(size=(40, 60)):
    return [
        LabelledInstance("mirror", _box(size, (2, 2, 30, 30))),
        LabelledInstance("glass-in-mirror", _box(size, (8, 8, 16, 20))),  # inside the mirror, painted on top
        LabelledInstance("glass", ring_mask(size, (35, 5, 58, 35), (40, 10, 50, 20))),
        LabelledInstance("glass", _box(size, (2, 34, 10, 38))),
    ]


def test_color_mask_round_trip_with_inside_rule_and_holes(tmp_path):
    palette = builtin_palette("mirror-glass")
    images = [LabelledImage("photos/a.jpg", (40, 60), _scene()), LabelledImage("b.jpg", (5, 6), [])]
    assert export_color_masks(images, palette, tmp_path / "out") == []
    png = np.asarray(Image.open(tmp_path / "out" / "photos" / "a.png"))
    assert tuple(png[10, 10]) == (0, 0, 255) and tuple(png[3, 3]) == (0, 255, 0) and tuple(png[0, 0]) == (0, 0, 0)
    assert tuple(png[15, 45]) == (0, 0, 0)  # the glass's hole is background
    assert not np.asarray(Image.open(tmp_path / "out" / "b.png")).any()
    res = import_color_masks(tmp_path / "out" / "photos", palette)
    back = res.images[0].instances
    want = sorted(_scene(), key=lambda i: (palette.get(i.class_name).order, -i.mask.area))
    assert [i.class_name for i in back] == [i.class_name for i in want]
    for a, b in zip(want, back):
        assert a.mask == b.mask, a.class_name
    assert res.classes["glass"] == (255, 0, 0)


def test_color_mask_unknown_colours_are_reported(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[1:3, 1:3] = (0, 255, 0)
    rgb[5:7, 5:7] = (7, 7, 7)  # JPEG-like noise
    Image.fromarray(rgb).save(tmp_path / "m.png")
    res = import_color_masks(tmp_path / "m.png")
    assert [i.class_name for i in res.images[0].instances] == ["mirror"]
    assert any("#070707" in w for w in res.warnings)


def test_instance_mask_round_trip_with_crowd_and_images_beside(tmp_path):
    size = (30, 40)
    (tmp_path / "images").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "images" / "2011_000003.jpg")
    insts = [
        LabelledInstance("glass-in-mirror", ring_mask(size, (2, 2, 20, 20), (5, 5, 9, 9))),
        LabelledInstance("glass", _box(size, (25, 5, 35, 25)), iscrowd=True),
        LabelledInstance("glass", _box(size, (22, 2, 24, 4))),
    ]
    export_instance_masks([LabelledImage("2011_000003.jpg", size, insts)], builtin_palette(), tmp_path / "masks")
    names = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert names == ["2011_000003_glass-in-mirror_0.png", "2011_000003_glass_2.png", "2011_000003_glass_crowd_1.png"]
    res = import_instance_masks(tmp_path / "masks")
    img = res.images[0]
    assert img.path == "2011_000003.jpg" and img.file is not None  # underscores in the stem: matched to the photo
    got = {(i.class_name, i.iscrowd, i.mask.area): i.mask for i in img.instances}
    for inst in insts:
        assert got[(inst.class_name, inst.iscrowd, inst.mask.area)] == inst.mask


def test_parse_mask_name():
    assert parse_mask_name("100_crowd_1", {}) == ("100", None, True)
    assert parse_mask_name("1001_circle_3", {}) == ("1001", "circle", False)
    assert parse_mask_name("a_b_glass_in_mirror_7", {"a_b": 1}) == ("a_b", "glass_in_mirror", False)
    assert parse_mask_name("x", {}) == ("x", None, False)


def test_class_mask_round_trip_and_errors(tmp_path):
    size = (20, 30)
    insts = [LabelledInstance("crack", _box(size, (1, 1, 5, 5))), LabelledInstance("crack", _box(size, (10, 10, 20, 12)))]
    images = [LabelledImage("x/1.jpg", size, insts), LabelledImage("x/2.jpg", size, [])]
    export_class_masks(images, builtin_palette("inspection"), tmp_path / "out", class_name="crack")
    res = import_class_masks(tmp_path / "out" / "x", "crack")
    assert [len(i.instances) for i in res.images] == [2, 0]
    assert {i.mask.bbox for i in res.images[0].instances} == {(1, 1, 5, 5), (10, 10, 20, 12)}
    export_class_masks(images, builtin_palette("inspection"), tmp_path / "per_class")
    assert (tmp_path / "per_class" / "crack" / "x" / "2.png").is_file()
    with pytest.raises(FormatError, match="no such folder"):
        import_class_masks(tmp_path / "nowhere", "crack")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "m.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(FormatError, match="not a readable image"):
        import_class_masks(tmp_path / "bad" / "m.png", "crack")
    with pytest.raises(FormatError, match="class"):
        import_class_masks(tmp_path / "out" / "x", "")
