"""labelme import, validation at the edge, and what labelme carries beside the pixels
(shape flags, descriptions, image flags), on the real examples and on small files in
``tmp_path`` mutated from them.
"""
from __future__ import annotations

import base64
import json
import shutil
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotation.formats import export_project, import_into_project
from annotation.formats.common import FormatError
from annotation.formats.labelme import export_labelme, import_labelme, shape_mask
from annotation.palette import builtin_palette
from annotation.store import ProjectStore

from formats_helpers import need_data
from test_formats_labelme import reference_shape_to_mask

EXAMPLES = "formats/labelme-examples"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds no pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _primitives() -> dict:
    return json.loads((need_data(EXAMPLES) / "primitives" / "primitives.json").read_text())


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _refused(path: Path, *needles: str) -> str:
    """Check that importing ``path`` is refused with one line holding every needle; the line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(FormatError) as err:
            import_labelme(path)
    # Pillow's two-line DecompressionBombWarning must not come before our line: the limit is ours
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# ------------------------------------------------------------------ one line, never a traceback
def test_unhashable_group_id_skips_that_shape_naming_it(tmp_path):
    data = _primitives()
    data["shapes"][3]["group_id"] = [1, 2]
    data["imagePath"] = str(need_data(EXAMPLES) / "primitives" / "primitives.jpg")
    res = import_labelme(_write(tmp_path / "p.json", data))
    assert len(res.images[0].instances) == len(data["shapes"]) - 1 and res.labels_skipped == 1
    assert any("shapes[3].group_id: a list is not a group id" in w for w in res.warnings)


def test_embedded_images_over_the_pixel_limit_are_one_line_without_pillows_warning(tmp_path, monkeypatch):
    monkeypatch.delenv("SPECULA_MAX_PIXELS", raising=False)
    bomb = _b64(_png_header_only(60000, 60000))
    data = {"shapes": [], "imagePath": "x.jpg", "imageData": bomb}
    assert _refused(_write(tmp_path / "a.json", data), "imageData: embedded image: an image of 3600000000 pixels",
             "over the limit of 300000000", "SPECULA_MAX_PIXELS")
    # under twice the limit Pillow only warns (silenced); our check refuses it with its size
    monkeypatch.setenv("SPECULA_MAX_PIXELS", "2000000000")
    assert _refused(_write(tmp_path / "a.json", data), "imageData: embedded image: size 60000 x 60000",
             "over the limit of 2000000000")
    monkeypatch.delenv("SPECULA_MAX_PIXELS")
    # a mask shape's bitmap: that shape is skipped, said, and nothing is printed by Pillow
    shape = {"label": "glass", "shape_type": "mask", "points": [[0, 0], [5, 5]], "mask": bomb}
    good = {"label": "glass", "shape_type": "polygon", "points": [[1, 1], [8, 1], [8, 8]]}
    data = {"shapes": [shape, good], "imagePath": "x.jpg", "imageHeight": 10, "imageWidth": 10}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = import_labelme(_write(tmp_path / "b.json", data))
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert len(res.images[0].instances) == 1
    assert any("shapes[0].mask: embedded image: an image of 3600000000 pixels" in w for w in res.warnings), \
        res.warnings


@pytest.mark.parametrize(
    "fields, needles",
    [
        ({"imageHeight": 60000, "imageWidth": 60000}, ["imageHeight/imageWidth", "60000 x 60000"]),
        ({"imageHeight": 10**12, "imageWidth": 1}, ["imageHeight/imageWidth", "a side over"]),
        ({"imageHeight": -3, "imageWidth": 10}, ["not a positive number"]),
        ({"imageHeight": "10", "imageWidth": 10}, ["imageHeight: \"10\" is not a whole number"]),
        ({"imageHeight": 10.5, "imageWidth": 10}, ["imageHeight: 10.5 is not a whole number"]),
    ],
)
def test_declared_sizes_are_checked_before_anything_is_drawn(tmp_path, fields, needles):
    shape = {"label": "glass", "shape_type": "polygon", "points": [[1, 1], [59999, 1], [59999, 59999]]}
    assert _refused(_write(tmp_path / "a.json", {"shapes": [shape], "imagePath": "x.jpg", **fields}), *needles)


@pytest.mark.parametrize(
    "label, needles",
    [("gla\x00ss", ["shapes[0].label", "U+0000"]), ("glass\n", ["U+000A"]), ("x" * 101, ["101 characters"]),
     ("", ["cannot be empty"]), (7, ["must be text"])],
)
def test_labels_that_cannot_be_class_names_refuse_the_file(tmp_path, label, needles):
    shape = {"label": label, "shape_type": "polygon", "points": [[1, 1], [8, 1], [8, 8]]}
    assert _refused(_write(tmp_path / "a.json", {"shapes": [shape], "imageHeight": 10, "imageWidth": 10}), *needles)


def test_json_level_damage_is_one_line(tmp_path):
    shape = '{"label": "glass\\udc80", "points": [[1, 1], [8, 1], [8, 8]]}'
    p = _write(tmp_path / "s.json", '{"shapes": [' + shape + '], "imageHeight": 10, "imageWidth": 10}')
    assert _refused(p, "shapes[0].label", "lone surrogate U+DC80")
    p = _write(tmp_path / "n.json", '{"shapes": [{"label": "a", "points": [[1, NaN], [8, 1], [8, 8]]}], '
                                    '"imageHeight": 10, "imageWidth": 10}')
    assert _refused(p, "shapes[0].points[0][1]: NaN is not a finite number")
    p = _write(tmp_path / "d.json", '{"shapes": ' + "[" * 50_000 + "]" * 50_000 + "}")
    assert _refused(p, "nested deeper than the JSON parser can follow")
    p = _write(tmp_path / "i.json", '{"shapes": [], "imageHeight": ' + "1" * 4400 + ', "imageWidth": 10}')
    assert _refused(p, "imageHeight: an integer of 4400 digits")


def test_damaged_shapes_are_skipped_naming_the_element(tmp_path):
    good = {"label": "a", "points": [[1, 1], [8, 1], [8, 8]]}
    bad = [
        {"label": "a", "points": [[1, 1], [2, "x"], [8, 8]]},
        {"label": "a", "points": [[1, 1], [8, 1], [8, 8]], "shape_type": ["polygon"]},
        "not a shape",
    ]
    res = import_labelme(_write(tmp_path / "x.json", {"shapes": [good, *bad], "imageHeight": 10, "imageWidth": 10}))
    assert len(res.images[0].instances) == 1 and res.labels_skipped == 3
    text = "\n".join(res.warnings)
    for needle in ("shapes[1].points[1][1]: \"x\" is not a number",
                   "shapes[2].shape_type: a list is not a shape type", "shapes[3]: \"not a shape\" is not a shape"):
        assert needle in text, text


# ------------------------------------------------------------------ coordinates far outside
def test_huge_coordinates_are_clipped_quickly_and_counted(tmp_path):
    shapes = [
        {"label": "a", "shape_type": "polygon", "points": [[10, 10], [100, 10], [100, 1e30]]},
        {"label": "b", "shape_type": "circle", "points": [[50, 50], [50, 1e7]]},  # Pillow: a minute, then garbage
        {"label": "c", "shape_type": "linestrip", "points": [[10, 10], [1e12, 10], [1e12, 50], [10, 50]]},
        {"label": "d", "shape_type": "rectangle", "points": [[-1e300, 20], [30, 1e300]]},
        {"label": "e", "shape_type": "point", "points": [[1e30, 5]]},
    ]
    t = time.perf_counter()
    res = import_labelme(_write(tmp_path / "x.json", {"shapes": shapes, "imageHeight": 100, "imageWidth": 100}))
    assert time.perf_counter() - t < 10
    by = {i.class_name: i.mask.to_full() for i in res.images[0].instances}
    # inside the image they are what labelme draws with the far points brought to 1e6,
    # where Pillow is still exact and the geometry inside the image the same
    near = {
        "a": {"shape_type": "polygon", "points": [[10, 10], [100, 10], [100, 1e6]]},
        "c": {"shape_type": "linestrip", "points": [[10, 10], [1e6, 10], [1e6, 50], [10, 50]]},
        "d": {"shape_type": "rectangle", "points": [[-1e6, 20], [30, 1e6]]},
    }
    for label, shape in near.items():
        assert np.array_equal(by[label], reference_shape_to_mask((100, 100), shape)), label
    assert by["a"].sum() == 90 * 90 and by["d"].sum() == 31 * 80
    assert by["b"].all()  # the whole image lies inside that circle
    assert "e" not in by and any("shapes[4] ('e') covers no pixel" in w for w in res.warnings)
    line = [w for w in res.warnings if "pixels outside their image" in w]
    assert len(line) == 1 and ": 7 shape points more than 8388608 pixels outside" in line[0], line


def test_points_within_one_image_size_are_drawn_exactly_as_labelme():
    size = (40, 50)
    rng = np.random.default_rng(11)
    for k in range(100):
        pts = rng.uniform(-45, 95, (int(rng.integers(3, 7)), 2)).tolist()
        for t in ("polygon", "linestrip"):
            want = reference_shape_to_mask(size, {"points": pts, "shape_type": t})
            assert np.array_equal(shape_mask(t, pts, size).to_full(), want), (k, t)


def test_points_millions_of_pixels_outside_are_still_drawn_exactly_as_labelme():
    # Pillow is exact that far out, so nothing is clipped there: clipping would move
    # its rounding at the new vertices by a pixel
    size = (30, 40)
    rng = np.random.default_rng(5)
    for k in range(60):
        pts = (rng.uniform(-1, 2, (int(rng.integers(3, 6)), 2)) * rng.choice([40, 5e3, 1e6])).tolist()
        for t in ("polygon", "linestrip"):
            want = reference_shape_to_mask(size, {"points": pts, "shape_type": t})
            assert np.array_equal(shape_mask(t, pts, size).to_full(), want), (k, t)


# ------------------------------------------------------------------ image files outside
def test_imagepath_outside_the_folder_and_the_project_is_never_opened(tmp_path, monkeypatch):
    Image.new("RGB", (12, 10)).save(tmp_path / "outside.png")
    folder = tmp_path / "proj" / "labels"
    shape = {"label": "glass", "points": [[1, 1], [6, 1], [6, 6]]}
    p = _write(folder / "a.json", {"shapes": [shape], "imagePath": "../../outside.png"})
    from annotation import images

    opened = []
    real = images.image_size
    monkeypatch.setattr(images, "image_size", lambda path, *a, **k: opened.append(Path(path)) or real(path, *a, **k))
    with pytest.raises(FormatError, match="no imageHeight/imageWidth, no embedded image and no image file"):
        import_labelme(p, allowed_roots=[tmp_path / "proj"])
    assert opened == []
    # with the sizes given the labels import, but the outside file is not taken for their image
    _write(p, {"shapes": [shape], "imagePath": "../../outside.png", "imageHeight": 10, "imageWidth": 12})
    res = import_labelme(p, allowed_roots=[tmp_path / "proj"])
    assert res.images[0].file is None and opened == []
    assert any("points outside the folder imported from and the project; not opened" in w for w in res.warnings)
    # inside the project (though outside the folder imported from) it is found
    Image.new("RGB", (12, 10)).save(tmp_path / "proj" / "inside.png")
    _write(p, {"shapes": [shape], "imagePath": "../inside.png"})
    res = import_labelme(p, allowed_roots=[tmp_path / "proj"])
    assert res.images[0].file == tmp_path / "proj" / "inside.png" and res.images[0].size == (10, 12)


# ------------------------------------------------------------------ flags, descriptions, tags
def test_every_labelme_example_round_trips_with_its_flags(tmp_path):
    root = need_data(EXAMPLES)
    first = import_labelme(root)
    assert len(first.images) == 18
    by_path = {i.path: i for i in first.images}
    assert by_path["classification/data_annotated/0001.jpg"].tags == ["cat"]
    assert by_path["classification/data_annotated/0002.jpg"].tags == ["dog"]
    assert export_labelme(first.images, builtin_palette(), tmp_path / "out") == []
    again = import_labelme(tmp_path / "out")
    assert [(i.path.rsplit("/", 1)[-1], i.size, i.tags) for i in sorted(again.images, key=lambda i: i.path)] == \
        [(i.path.rsplit("/", 1)[-1], i.size, i.tags) for i in sorted(first.images, key=lambda i: i.path)]
    for a, b in zip(sorted(first.images, key=lambda i: i.path), sorted(again.images, key=lambda i: i.path)):
        assert [(x.class_name, x.attributes) for x in a.instances] == [(y.class_name, y.attributes) for y in b.instances]
        assert all(x.mask == y.mask for x, y in zip(a.instances, b.instances)), a.path
    # the image flags written back: every tag known to the export, true or false
    for name in ("0001", "0002"):
        original = json.loads((root / "classification" / "data_annotated" / f"{name}.json").read_text())["flags"]
        written = json.loads((tmp_path / "out" / "classification" / "data_annotated" / f"{name}.json").read_text())
        assert written["flags"] == {k: v for k, v in original.items() if k in ("cat", "dog")}


def test_shape_flags_and_descriptions_are_attributes_both_ways(tmp_path):
    data = _primitives()
    data["imagePath"] = str(need_data(EXAMPLES) / "primitives" / "primitives.jpg")
    data["flags"] = {"outdoor": True, "blurred": False, "odd": "yes"}
    data["shapes"][0]["flags"] = {"occluded": True, "truncated": False, "score": 3}
    data["shapes"][1]["description"] = "seen from the left"
    data["shapes"][2]["shape_type"] = "cuboid"
    data["shapes"][3]["shape_type"] = "cuboid"
    res = import_labelme(_write(tmp_path / "in" / "p.json", data))
    img = res.images[0]
    assert img.tags == ["outdoor"]
    assert img.instances[0].attributes == {"occluded": True, "truncated": False}
    assert img.instances[1].attributes == {"description": "seen from the left"}
    text = "\n".join(res.warnings)
    assert "2 shapes of type \"cuboid\" skipped" in text
    assert "1 shape flags that are not a name with true/false; not kept" in text
    assert "1 image flags that are not a name with true/false; not kept" in text
    img.instances[2].attributes = {"colour": "green", "n": 2}
    export_labelme([img], builtin_palette(), tmp_path / "out")
    written = json.loads(next((tmp_path / "out").rglob("*.json")).read_text())
    assert written["flags"] == {"outdoor": True}
    assert written["shapes"][0]["flags"] == {"occluded": True, "truncated": False}
    assert written["shapes"][1]["description"] == "seen from the left"
    back = import_labelme(next((tmp_path / "out").rglob("*.json"))).images[0]
    assert [i.attributes for i in back.instances] == [i.attributes for i in img.instances]


def test_labelme_tags_and_attributes_through_a_project(tmp_path):
    src = need_data(EXAMPLES) / "classification" / "data_annotated"
    root = tmp_path / "proj"
    root.mkdir()
    for name in ("0001.jpg", "0002.jpg"):
        shutil.copy(src / name, root / name)
    store = ProjectStore.open(root)
    try:
        rep = import_into_project(store, "labelme", src)
        assert rep.images_matched == 2 and not rep.finished_with_problems, rep
        assert {r.path: r.tags for r in store.images()} == {"0001.jpg": ["cat"], "0002.jpg": ["dog"]}
        export_project(store, "labelme", tmp_path / "out")
        flags = {p.stem: json.loads(p.read_text())["flags"] for p in (tmp_path / "out").rglob("*.json")}
        assert flags == {"0001": {"cat": True, "dog": False}, "0002": {"cat": False, "dog": True}}
    finally:
        store.close()
