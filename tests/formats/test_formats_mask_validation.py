"""Mask-image importers at the edge (NaN in float TIFFs, the pixel limit of the photos,
class names), pairing a mask with its photo only by the path the user gave, and what
the import report says when something did not make it in.
"""
from __future__ import annotations

import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotation.formats import FormatError, import_into_project
from annotation.formats.class_masks import import_class_masks
from annotation.formats.color_masks import import_color_masks
from annotation.formats.common import read_json
from annotation.formats.instance_masks import import_instance_masks
from annotation.formats.limits import current_limits
from annotation.store import ProjectStore


def _mask(path: Path, box=(2, 2, 8, 8), size=(10, 12)) -> Path:
    a = np.zeros(size, np.uint8)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


def _float_tiff(path: Path, value: float) -> Path:
    a = np.zeros((10, 12), np.float32)
    a[2:6, 2:6] = 1.0
    a[3, 7] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, mode="F").save(path)
    return path


def _png_header_only(width: int, height: int, bit_depth: int = 1) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# ------------------------------------------------------------------ NaN and the pixel limit
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_float_tiff_masks_with_nan_or_inf_are_one_line(tmp_path, value):
    bad = _float_tiff(tmp_path / "masks" / "b.tif", value)
    with pytest.raises(FormatError) as err:
        import_class_masks(bad, "crack")
    msg = str(err.value)
    assert msg.startswith(f"{bad}: pixel (7, 3) is ") and "finite" in msg and "\n" not in msg
    for importer in (lambda p: import_color_masks(p), lambda p: import_instance_masks(p)):
        with pytest.raises(FormatError, match=r"pixel \(7, 3\)"):
            importer(bad)
    # among good ones: that file is skipped, and said
    _mask(tmp_path / "masks" / "a.png")
    res = import_class_masks(tmp_path / "masks", "crack")
    assert [i.path for i in res.images] == ["a.png"] and len(res.images_skipped) == 1
    assert "b.tif: pixel (7, 3)" in res.images_skipped[0]


def test_masks_obey_the_pixel_limit_of_the_photos(tmp_path, monkeypatch):
    small = _mask(tmp_path / "m" / "a.png", size=(40, 40))
    monkeypatch.setenv("SPECULA_MAX_PIXELS", "1000")
    with pytest.raises(FormatError, match=r"size 40 x 40 = 1600 pixels is over the limit of 1000.*SPECULA_MAX_PIXELS"):
        import_class_masks(small, "crack")
    monkeypatch.setenv("SPECULA_MAX_PIXELS", "1600")
    assert len(import_class_masks(small, "crack").images) == 1
    # the finding: a 182-megapixel mask was refused by Pillow's own limit (and its
    # warning printed) while the photo was allowed; now only our limit decides
    monkeypatch.delenv("SPECULA_MAX_PIXELS")
    big = tmp_path / "big" / "b.png"
    big.parent.mkdir()
    big.write_bytes(_png_header_only(14_000, 13_000))  # 182 megapixels, 1 bit: no pixels in the file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(FormatError) as err:
            import_class_masks(big, "crack")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert "limit" not in str(err.value) and "not a readable image" in str(err.value)


def test_limits_are_named_in_one_place(monkeypatch):
    monkeypatch.setenv("SPECULA_MAX_PIXELS", "12345")
    limits = current_limits()
    assert limits["max_pixels"] == 12345
    assert {"max_json_depth", "max_polygon_vertices", "max_instances_per_image", "max_class_name_length"} <= set(limits)
    assert limits["max_class_name_length"] == 100


def test_read_json_turns_every_failure_into_one_line(tmp_path):
    cases = {
        b"": "not valid JSON",
        b"\xff\xfe\x00\x00garbage": "not UTF-8",
        b'{"a": [1, 2': "not valid JSON at line 1",
        b"[" * 200_000 + b"]" * 200_000: "nested deeper",
        b'{"a": ' + b"7" * 5000 + b"}": "a: an integer of 5000 digits",
        b'{"a": {"b": [1, -Infinity]}}': "a.b[1]: -Infinity is not a finite number",
        b'{"k\\udfff": 1}': "the key holds the lone surrogate U+DFFF",
        b'{"a b": [9223372036854775808]}': '["a b"][0]: the integer 9223372036854775808 is out of range',
    }
    for k, (raw, needle) in enumerate(cases.items()):
        p = tmp_path / f"{k}.json"
        p.write_bytes(raw)
        with pytest.raises(FormatError) as err:
            read_json(p, "test")
        assert str(err.value).startswith(f"{p}: ") and needle in str(err.value) and "\n" not in str(err.value)
    for k, raw in enumerate((b"5", b'"x"', b"null", b"NaN", b'"\\ud800"')):
        p = tmp_path / f"scalar{k}.json"
        p.write_bytes(raw)
        if k < 3:
            assert read_json(p, "test") == json.loads(raw)
        else:
            with pytest.raises(FormatError, match="the top level"):
                read_json(p, "test")
    p = tmp_path / "ok.json"
    p.write_text(json.dumps({"a": [1.5, -2, "é", None, True, {"b": 9223372036854775807}]}))
    assert read_json(p, "test")["a"][5]["b"] == 2**63 - 1


# ------------------------------------------------------------------ class names
def test_class_names_of_mask_importers_are_checked(tmp_path):
    m = _mask(tmp_path / "m" / "1.png")
    for bad in ("cr\nack", "x" * 101):
        with pytest.raises(FormatError, match="the class of the masks"):
            import_class_masks(m, bad)
        with pytest.raises(FormatError, match="the class given for the masks"):
            import_instance_masks(m, class_name=bad)
    _mask(tmp_path / "inst" / "1_cr\tack_0.png")
    _mask(tmp_path / "inst" / "1_crack_1.png")
    res = import_instance_masks(tmp_path / "inst")
    assert [i.class_name for i in res.images[0].instances] == ["crack"] and res.labels_skipped == 1
    assert any("1_cr\tack_0.png: its name holds the control character U+0009" in w for w in res.warnings)
    # a class part that is printable but too long for a class name: the class is refused
    _mask(tmp_path / "inst" / ("1_" + "x" * 120 + "_2.png"))
    res = import_instance_masks(tmp_path / "inst")
    assert res.labels_skipped == 2 and any("the class in its name" in w and "120 characters" in w for w in res.warnings)


# ------------------------------------------------------------------ pairing by the path given
@pytest.fixture
def gt_project(tmp_path):
    root = tmp_path / "proj"
    (root / "photos").mkdir(parents=True)
    Image.new("RGB", (12, 10), (80, 80, 80)).save(root / "photos" / "001.jpg")
    _mask(root / "gt" / "001.png", box=(2, 2, 8, 8))
    store = ProjectStore.open(root)
    yield store
    store.close()


def test_masks_pair_with_the_photo_and_never_with_an_older_copy(gt_project):
    store = gt_project
    root = store.root
    _mask(root / "gt_v1" / "001.png", box=(0, 0, 3, 3))  # an older ground truth beside it
    before = (store.instances(), store.palette)
    with pytest.raises(FormatError) as err:
        import_into_project(store, "class-masks", root / "gt", class_name="crack")
    msg = str(err.value)
    assert "2 photos could be its image" in msg and "photos/001.jpg" in msg and "gt_v1/001.png" in msg
    assert "\n" not in msg and (store.instances(), store.palette) == before  # the project is unchanged
    # the photo folder given: no doubt left
    rep = import_into_project(store, "class-masks", root / "gt", class_name="crack", image_root=root / "photos")
    assert rep.instances_added == 1 and not rep.finished_with_problems
    (inst,) = store.instances()
    assert store.image(inst.image_id).path == "photos/001.jpg" and inst.mask.bbox == (2, 2, 8, 8)


def test_without_a_stale_copy_the_photo_beside_is_found(gt_project):
    store = gt_project
    rep = import_into_project(store, "class-masks", store.root / "gt", class_name="crack")
    assert rep.instances_added == 1
    assert store.image(store.instances()[0].image_id).path == "photos/001.jpg"


def test_a_named_photo_folder_wins_over_other_folders(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (12, 10)).save(tmp_path / "images" / "001.jpg")
    _mask(tmp_path / "gt" / "001.png")
    _mask(tmp_path / "gt_v1" / "001.png")
    res = import_class_masks(tmp_path / "gt", "crack")
    assert res.images[0].file == tmp_path / "images" / "001.jpg"


# ------------------------------------------------------------------ the report says what did not make it in
def test_report_counts_what_did_not_make_it_in(gt_project, tmp_path):
    store = gt_project
    root = store.root
    (root / "gt" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    rep = import_into_project(store, "class-masks", root / "gt", class_name="crack")
    assert rep.instances_added == 1 and rep.finished_with_problems and rep.problems == 1
    assert len(rep.images_skipped) == 1 and "002.png" in rep.images_skipped[0]
    # damaged labels skipped count too; a clean import is no problem
    coco = tmp_path / "c.json"
    good = {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 6, 1, 6, 6]]}
    data = {"images": [{"id": 1, "file_name": "photos/001.jpg", "height": 10, "width": 12}],
            "categories": [{"id": 1, "name": "glass"}], "annotations": [good]}
    coco.write_text(json.dumps(data))
    assert not import_into_project(store, "coco", coco).finished_with_problems
    data["annotations"].append(dict(good, id=2, image_id=[1]))
    data["images"].append({"id": 2, "file_name": "gone.jpg", "height": 10, "width": 12})
    coco.write_text(json.dumps(data))
    rep = import_into_project(store, "coco", coco)
    assert rep.labels_skipped == 1 and rep.images_not_found == ["gone.jpg"] and rep.problems == 2


def test_a_refused_file_leaves_the_project_unchanged(gt_project, tmp_path):
    store = gt_project
    import_into_project(store, "class-masks", store.root / "gt", class_name="crack")
    before = ([(i.id, i.mask) for i in store.instances()], store.palette, [(r.path, r.tags) for r in store.images()])
    coco = tmp_path / "c.json"
    coco.write_text('{"images": [{"id": 1, "file_name": "photos/001.jpg", "height": 10, "width": 12}], '
                    '"categories": [{"id": 1, "name": "new class"}], "annotations": ['
                    '{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 6, 1, 6, 6]]}, '
                    '{"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 6, NaN, 6, 6]]}]}')
    with pytest.raises(FormatError, match=r"annotations\[1\].segmentation\[0\]\[3\]"):
        import_into_project(store, "coco", coco)
    after = ([(i.id, i.mask) for i in store.instances()], store.palette, [(r.path, r.tags) for r in store.images()])
    assert after == before and "new class" not in store.palette


def test_mask_files_whose_names_are_not_utf8_are_skipped_and_said(tmp_path):
    # found by the fuzz harness: such a name reached SQLite as a lone surrogate
    import os

    folder = tmp_path / "gt"
    _mask(folder / "1.png")
    bad = Path(os.fsdecode(bytes(folder) + b"/\xff2.png"))
    _mask(bad)
    for importer in (lambda: import_class_masks(folder, "crack"), lambda: import_color_masks(folder)):
        res = importer()
        assert [i.path for i in res.images] == ["1.png"] and len(res.images_skipped) == 1
        assert "\\xff2.png: its name is not valid UTF-8" in res.images_skipped[0]
        res.images_skipped[0].encode("utf-8")  # the message itself can be printed and stored
    res = import_instance_masks(folder)
    assert [i.path for i in res.images] == ["1.png"] and res.labels_skipped == 1
    with pytest.raises(FormatError, match="not valid UTF-8"):
        import_class_masks(bad, "crack")
