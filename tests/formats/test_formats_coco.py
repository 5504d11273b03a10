"""COCO: exact round trips (RLE and pixel-edge polygons), provenance, crowd, damaged files."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from annotation import rle as rle_codec
from annotation.formats.coco import export_coco, import_coco
from annotation.formats.common import FormatError, LabelledImage, LabelledInstance
from annotation.formats.pixel_polygons import coco_polygons, polygons_reproduce
from annotation.mask import Mask
from annotation.palette import builtin_palette

from formats_helpers import blob_masks, ring_mask


@settings(max_examples=150, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 16), st.integers(1, 16))), st.integers(0, 3), st.integers(0, 3))
def test_pixel_edge_polygons_rasterise_back_exactly_in_pycocotools(a, dx, dy):
    full = np.zeros((a.shape[0] + dy + 1, a.shape[1] + dx + 2), bool)
    full[dy : dy + a.shape[0], dx : dx + a.shape[1]] = a
    m = Mask.from_full(full)
    polys = coco_polygons(m)
    assert polygons_reproduce(polys, m)
    assert all(len(p) >= 8 and len(p) % 2 == 0 for p in polys)


def _images(size=(64, 96)):
    holed = ring_mask(size, (4, 4, 40, 40), (10, 10, 30, 20))
    # an island inside the hole of another part: polygon export must keep all three levels
    nested = ring_mask(size, (50, 4, 90, 50), (55, 9, 85, 45)).union(Mask.from_full(_box(size, (60, 15, 70, 30))))
    insts = [
        LabelledInstance("mirror", holed, score=0.91, origin="sam@1.2", state="proposed"),
        LabelledInstance("glass", nested),
        LabelledInstance("glass", Mask.from_full(_box(size, (5, 50, 30, 60))), iscrowd=True),
    ] + [LabelledInstance("crack", m) for m in blob_masks(size, seed=5)]
    return [LabelledImage("a/b.jpg", size, insts), LabelledImage("c.jpg", (10, 12), [])]


def _box(size, box):
    a = np.zeros(size, bool)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = True
    return a


@pytest.mark.parametrize("polygons", [False, True])
def test_coco_round_trip_keeps_masks_holes_and_provenance(tmp_path, polygons):
    images = _images()
    out = tmp_path / "instances.json"
    warnings = export_coco(images, builtin_palette(), out, polygons=polygons)
    assert warnings == ["class 'crack' is not in palette 'mirror-glass'; written as an extra category"]
    data = json.loads(out.read_text())
    anns = data["annotations"]
    assert [c["name"] for c in data["categories"]][:3] == ["mirror", "glass", "glass-in-mirror"]
    assert isinstance(anns[2]["segmentation"], dict)  # crowd stays RLE
    assert isinstance(anns[0]["segmentation"], list if polygons else dict)
    assert anns[0]["score"] == 0.91 and anns[0]["specula_origin"] == "sam@1.2"
    assert anns[0]["specula_state"] == "proposed" and anns[1]["specula_state"] == "accepted"
    assert anns[0]["bbox"] == [4.0, 4.0, 36.0, 36.0] and anns[0]["area"] == images[0].instances[0].mask.area
    res = import_coco(out)
    assert [i.path for i in res.images] == ["a/b.jpg", "c.jpg"]
    assert res.classes["mirror"] == (0, 255, 0) and res.classes["crack"] is None
    for a, b in zip(images[0].instances, res.images[0].instances):
        assert a.mask == b.mask
        assert (a.class_name, a.score, a.origin, a.state, a.iscrowd) == (
            b.class_name, b.score, b.origin, b.state, b.iscrowd
        )
    # pycocotools itself (COCO's reference) agrees with our reading of the polygons
    if polygons:
        seg = anns[1]["segmentation"]
        ref = Mask.from_rle(rle_codec.polygon_rle(seg, 64, 96))
        assert ref == images[0].instances[1].mask


def test_coco_missing_images_are_warnings(tmp_path):
    out = tmp_path / "ann" / "x.json"
    export_coco(_images(), builtin_palette(), out)
    res = import_coco(out)
    # one line for all of them, counted
    assert [w for w in res.warnings if "not found on disk" in w] == [
        f"{out}: 2 images not found on disk; their annotations are imported anyway (first: a/b.jpg)"
    ]
    assert len(res.images[0].instances) == 6


def _coco(anns, images=None):
    return {
        "images": images if images is not None else [{"id": 1, "file_name": "a.jpg", "height": 10, "width": 10}],
        "categories": [{"id": 1, "name": "glass"}],
        "annotations": anns,
    }


GOOD = {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 6, 1, 6, 6, 1, 6]], "iscrowd": 0}
WRONG_SIZE_RLE = {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 1,
                  "segmentation": {"size": [10, 12], "counts": [0, 120]}}
BAD_SUM_RLE = {"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 1, "segmentation": {"size": [10, 10], "counts": [5, 5]}}


def test_coco_damaged_files_raise_one_line_format_errors(tmp_path):
    p = tmp_path / "c.json"
    cases = [
        (json.dumps(_coco([GOOD]))[:-20], "not valid JSON"),
        (json.dumps([1, 2]), "JSON object"),
        (json.dumps({"images": {"id": 1}, "annotations": []}), "no 'images' list"),
        (json.dumps({"images": [], "annotations": {"a": 1}}), "must be lists"),
        (json.dumps(_coco([WRONG_SIZE_RLE])), r"annotations\[0\].segmentation.size: RLE size 10x12"),
        (json.dumps(_coco([BAD_SUM_RLE])), r"annotations\[0\].segmentation.counts: counts sum to 10, expected 100"),
        (json.dumps(_coco([{"id": 4, "image_id": 1, "category_id": 1, "segmentation": "x"}])),
         r"annotations\[0\].segmentation: \"x\" is neither polygons"),
    ]
    for text, message in cases:
        p.write_text(text)
        with pytest.raises(FormatError, match=message) as err:
            import_coco(p)
        assert str(p) in str(err.value) and "\n" not in str(err.value)
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(FormatError):
        import_coco(p)


def test_coco_bad_annotations_among_good_are_warnings(tmp_path):
    p = tmp_path / "c.json"
    unknown_cat = dict(GOOD, id=5, category_id=9)
    short_poly = dict(GOOD, id=6, segmentation=[[1, 1, 2, 2], [1, 1, 6, 1, 6, 6]])
    p.write_text(json.dumps(_coco([GOOD, WRONG_SIZE_RLE, BAD_SUM_RLE, unknown_cat, short_poly])))
    res = import_coco(p)
    assert len(res.images[0].instances) == 2
    text = "\n".join(res.warnings)
    for needle in ("annotations[1].segmentation.size: RLE size", "annotations[2].segmentation.counts: counts sum to",
                   "annotations[3].category_id: 9 names no category",
                   "1 polygons with fewer than 3 points (or an odd count of numbers) skipped "
                   "(first: annotations[4].segmentation[0])"):
        assert needle in text, text
    assert res.labels_skipped == 3


def test_coco_bbox_only_annotation_becomes_a_box(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps(_coco([dict(GOOD, segmentation=[], bbox=[2, 3, 4, 2])])))
    res = import_coco(p)
    assert res.images[0].instances[0].mask.bbox == (2, 3, 6, 5)
    assert any("1 annotations without a segmentation imported as their bbox" in w for w in res.warnings)
