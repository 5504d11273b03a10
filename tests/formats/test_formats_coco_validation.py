"""COCO import, validation at the edge: the fuzzing findings, each reproduced on a small
file in ``tmp_path`` (mutated from a real one where that was the finding), each one line.

Every refusal is one ``FormatError`` line that starts with the file and names the
element; every skip is a warning naming the element; nothing is ever a traceback, a
signal or an instance made of uninitialised memory.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotation import rle as rle_codec
from annotation.formats import export_project, import_into_project
from annotation.formats.coco import (
    CocoResult,
    compressed_rle_problem,
    export_coco,
    import_coco,
)
from annotation.formats.common import FormatError, LabelledImage, LabelledInstance
from annotation.formats.limits import MAX_INSTANCES_PER_IMAGE, MAX_RING_OUTLINE
from annotation.mask import Mask
from annotation.palette import builtin_palette
from annotation.rle import RLEError
from annotation.store import ProjectStore

from formats_helpers import REPO, need_data

PYCOCOCREATOR = "formats/pycococreator/example_data"


def _coco(anns, images=None, categories=None) -> dict:
    return {
        "images": images if images is not None else [{"id": 1, "file_name": "a.jpg", "height": 100, "width": 100}],
        "categories": categories if categories is not None else [{"id": 1, "name": "glass"}],
        "annotations": anns,
    }


def _ann(seg, **kw) -> dict:
    return {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": seg, **kw}


def _write(tmp_path: Path, data, name: str = "c.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def _refused(path: Path, *needles: str) -> str:
    """Check that importing ``path`` is refused with one line holding every needle; the line."""
    with pytest.raises(FormatError) as err:
        import_coco(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# ------------------------------------------------------------------ 1. numbers: finite, clipped, sizes
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_coordinates_refuse_the_file_naming_the_number(tmp_path, literal):
    text = json.dumps(_coco([_ann([[10, 10, 50, 10, 50, 50]])])).replace("50, 50]", f"50, {literal}]")
    p = _write(tmp_path, text)
    assert _refused(p, "annotations[0].segmentation[0][5]", "not a finite number")


def _import_in_subprocess(path: Path, memory_gb: float = 2.0) -> subprocess.CompletedProcess:
    """Import ``path`` in a child capped at ``memory_gb`` (the finding: SIGSEGV under a 4 GB cap)."""
    code = (
        "import resource, sys;"
        f"resource.setrlimit(resource.RLIMIT_AS, ({int(memory_gb * 2**30)}, {int(memory_gb * 2**30)}));"
        "from annotation.formats.coco import import_coco;"
        f"r = import_coco({str(path)!r});"
        "print(sum(i.mask.area for im in r.images for i in im.instances));"
        "print('\\n'.join(r.warnings))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO), timeout=120)


def test_huge_coordinates_are_clipped_with_one_warning_and_bounded_memory(tmp_path):
    # 1e7 took 0.8 GB in pycocotools and 4e7 3.2 GB; 1e30 died with signal 11
    anns = [
        _ann([[10, 10, 100, 10, 100, 1e30]], id=1),
        _ann([[10, 10, 100, 10, 100, 4e7]], id=2),
        _ann([[-1e300, 20, 90, 20, 90, 30]], id=3),
    ]
    p = _write(tmp_path, _coco(anns))
    done = _import_in_subprocess(p)
    assert done.returncode == 0, done.stderr[-2000:]
    res = import_coco(p)
    masks = [i.mask for i in res.images[0].instances]
    # the triangle's far vertex is straight below (100, 10): inside the image it is the
    # box x in [10, 100), y in [10, 100) above its nearly vertical long edge
    want = np.zeros((100, 100), bool)
    want[10:, 10:] = True
    assert masks[0].to_full()[10:, 11:].all() and masks[0].area <= want.sum()
    assert masks[1] == masks[0]
    assert masks[2].bbox == (0, 20, 90, 30)
    lines = [w for w in res.warnings if "outside their image" in w]
    assert len(lines) == 1, res.warnings
    assert "3 polygon vertices lie outside their image, 3 of them more than one image size away" in lines[0]
    assert "annotations[0].segmentation[0]" in lines[0]


def test_vertices_a_little_outside_read_exactly_as_pycocotools_reads_them(tmp_path):
    rng = np.random.default_rng(3)
    polys = [rng.uniform(-60, 160, 12).round(2).tolist() for _ in range(20)]  # within one image size
    refs = [rle_codec.decode_full(rle_codec.polygon_rle([q], 100, 100)) for q in polys]
    p = _write(tmp_path, _coco([_ann([q], id=k) for k, (q, ref) in enumerate(zip(polys, refs)) if ref.any()]))
    res = import_coco(p)
    want = [ref for ref in refs if ref.any()]
    assert len(want) >= 15 and len(res.images[0].instances) == len(want)
    for inst, ref in zip(res.images[0].instances, want):
        assert np.array_equal(inst.mask.to_full(), ref)


def test_image_size_over_the_pixel_limit_is_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    monkeypatch.delenv("SPECULA_MAX_PIXELS", raising=False)
    images = [{"id": 1, "file_name": "a.jpg", "height": 100000, "width": 100000}]
    p = _write(tmp_path, _coco([_ann({"size": [100000, 100000], "counts": "0"})], images=images))
    assert _refused(p, "images[0] (a.jpg)", "100000 x 100000", "over the limit of 300000000", "SPECULA_MAX_PIXELS")
    # the limit is the one of the photos: lowering it refuses smaller declared images too
    monkeypatch.setenv("SPECULA_MAX_PIXELS", "5000")
    assert _refused(_write(tmp_path, _coco([_ann([[1, 1, 5, 1, 5, 5]])]), "d.json"), "images[0] (a.jpg)", "10000 pixels")


def test_polygon_over_the_outline_limit_is_skipped_naming_it(tmp_path):
    # a zigzag across a large image: within the image, but pycocotools would hold
    # gigabytes for its outline
    side = 2_000
    zig = []
    for k in range(MAX_RING_OUTLINE // side + 2):
        zig += [k * 0.5, 0.0 if k % 2 == 0 else float(side)]
    images = [{"id": 1, "file_name": "a.jpg", "height": side, "width": side}]
    good = _ann([[1, 1, 6, 1, 6, 6]], id=2)
    p = _write(tmp_path, _coco([_ann([zig]), good], images=images))
    res = import_coco(p)
    assert len(res.images[0].instances) == 1 and res.labels_skipped == 1
    assert any("annotations[0].segmentation[0]: an outline of" in w and "over the limit" in w for w in res.warnings)


# ------------------------------------------------------------------ 2. RLE counts must cover the image
@pytest.mark.parametrize(
    "counts, needle",
    [
        ("????", "counts sum to"),  # the finding: imported with exit 0 as a random instance
        ("", "counts are empty"),
        ("0" + "W" * 3, "counts end inside a number"),  # 'W' = 0x27: "more follows"
        ("0\x7f", "outside COCO's compressed RLE alphabet"),
        ("ééé", "outside COCO's compressed RLE alphabet"),
        ("PPPPPPPP0", "too long for any run"),
        ("0@", "negative"),  # '@' = 0x10: the sign bit of a one-character number, a run of -16
    ],
)
def test_compressed_rle_that_does_not_cover_the_image_is_refused(tmp_path, counts, needle):
    p = _write(tmp_path, _coco([_ann({"size": [100, 100], "counts": counts}, iscrowd=1)]))
    assert _refused(p, "annotations[0].segmentation.counts", needle)


def test_compressed_rle_check_agrees_with_pycocotools_on_real_encodings():
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        a = rng.random((h, w)) < rng.uniform(0, 1)
        counts = Mask.from_full(a).to_rle()["counts"]
        assert compressed_rle_problem(counts, h, w) is None
        assert compressed_rle_problem(counts, h, w + 1) is not None


def test_rle_of_another_size_and_bad_uncompressed_counts_are_skipped(tmp_path):
    good = _ann([[1, 1, 6, 1, 6, 6]], id=9)
    bad = [
        _ann({"size": [100, 120], "counts": [0, 12000]}),
        _ann({"size": [100, 100], "counts": [-5, 10005]}),
        _ann({"size": [100, 100], "counts": [5000.5, 4999.5]}),
        _ann({"size": [100, 100], "counts": [5, 5]}),
        _ann({"size": "100x100", "counts": [10000]}),
        _ann({"size": [100, 100], "counts": {"a": 1}}),
    ]
    res = import_coco(_write(tmp_path, _coco(bad + [good])))
    assert len(res.images[0].instances) == 1 and res.labels_skipped == len(bad)
    text = "\n".join(res.warnings)
    for needle in ("annotations[0].segmentation.size: RLE size 100x120", "annotations[1].segmentation.counts[0]: -5",
                   "annotations[2].segmentation.counts[0]: 5000.5", "annotations[3].segmentation.counts: counts sum to 10",
                   "annotations[4].segmentation.size", "annotations[5].segmentation.counts"):
        assert needle in text, text


def test_coco_results_mask_checks_rle_as_the_importer_does():
    with pytest.raises(RLEError, match="counts sum to"):
        CocoResult("a", 1, "glass", 0.9, {"size": [100, 100], "counts": "????"}).mask(100, 100)
    with pytest.raises(RLEError, match="not a number"):
        CocoResult("a", 1, "glass", 0.9, [[1, 2, "x", 4, 5, 6]]).mask(10, 10)
    assert CocoResult("a", 1, "glass", 0.9, [[1, 1, 1e30, 1, 1, 1e30]]).mask(10, 10).area > 0
    assert CocoResult("a", 1, "glass", 0.9, []).mask(10, 10) is None


# ------------------------------------------------------------------ 3. one line, never a traceback
@pytest.mark.parametrize("field", ["image_id", "category_id", "id"])
def test_unhashable_ids_are_one_line(tmp_path, field):
    ann = _ann([[1, 1, 6, 1, 6, 6]], **{field: [1]})
    if field == "id":  # the annotation's own id is only a label: the image entry's id is the hazard
        images = [{"id": [1], "file_name": "a.jpg", "height": 100, "width": 100}]
        res = import_coco(_write(tmp_path, _coco([], images=images)))
        assert res.images == [] and res.images_skipped and "images[0].id: a list is not an id" in res.warnings[0]
        p = _write(tmp_path, _coco([ann], categories=[{"id": {"x": 1}, "name": "glass"}]))
        assert _refused(p, "categories[0].id: an object is not an id")
        return
    assert _refused(_write(tmp_path, _coco([ann])), f"annotations[0].{field}: a list is not an id")


def test_deep_nesting_huge_integers_surrogates_and_bad_utf8_are_one_line(tmp_path):
    assert _refused(_write(tmp_path, "[" * 100_000 + "]" * 100_000), "nested deeper than the JSON parser can follow")
    nested = _coco([_ann([[1, 1, 6, 1, 6, 6]], attributes={"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]})])
    assert _refused(_write(tmp_path, nested), "annotations[0].attributes.a", "nested more than 32 levels")
    huge = json.dumps(_coco([_ann([[1, 1, 6, 1, 6, 6]])])).replace('"image_id": 1', '"image_id": ' + "9" * 5000)
    assert _refused(_write(tmp_path, huge), "annotations[0].image_id: an integer of 5000 digits is out of range")
    big = json.dumps(_coco([_ann([[1, 1, 6, 1, 6, 6]])])).replace('"image_id": 1', '"image_id": ' + "9" * 25)
    assert _refused(_write(tmp_path, big), "annotations[0].image_id")
    surrogate = json.dumps(_coco([_ann([[1, 1, 6, 1, 6, 6]])], categories=[{"id": 1, "name": "glass\ud800"}]))
    assert _refused(_write(tmp_path, surrogate), "categories[0].name", "lone surrogate U+D800")
    (tmp_path / "bin.json").write_bytes(b'{"images": [\xff\xfe]}')
    assert _refused(tmp_path / "bin.json", "not UTF-8")


# ------------------------------------------------------------------ 4. class names
@pytest.mark.parametrize(
    "name, needle",
    [("gla\x00ss", "U+0000"), ("glass\n", "U+000A"), ("a\tb", "U+0009"), ("x" * 101, "101 characters"), ("", "empty")],
)
def test_category_names_that_cannot_be_class_names_refuse_the_file(tmp_path, name, needle):
    p = _write(tmp_path, _coco([_ann([[1, 1, 6, 1, 6, 6]])], categories=[{"id": 1, "name": name}]))
    assert _refused(p, "categories[0].name", needle)


def test_two_categories_with_one_id_refuse_the_file(tmp_path):
    cats = [{"id": 1, "name": "glass"}, {"id": 1, "name": "mirror"}]
    assert _refused(_write(tmp_path, _coco([_ann([[1, 1, 6, 1, 6, 6]])], categories=cats)), "categories[1].id", "category 0")


def test_images_over_the_instance_limit_are_skipped(tmp_path):
    anns = [_ann([[1, 1, 6, 1, 6, 6]], id=k) for k in range(MAX_INSTANCES_PER_IMAGE + 1)]
    images = [{"id": 1, "file_name": "a.jpg", "height": 10, "width": 10},
              {"id": 2, "file_name": "b.jpg", "height": 10, "width": 10}]
    anns.append(_ann([[1, 1, 6, 1, 6, 6]], id=-1, image_id=2))
    res = import_coco(_write(tmp_path, _coco(anns, images=images)))
    assert [i.path for i in res.images] == ["b.jpg"] and len(res.images[0].instances) == 1
    assert len(res.images_skipped) == 1 and "over the limit of 10000 per image" in res.images_skipped[0]


# ------------------------------------------------------------------ 5. iscrowd through a project
@pytest.fixture
def blueberry_project(tmp_path):
    src = need_data(PYCOCOCREATOR)
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(src / "images" / "100.jpg", root / "100.jpg")
    store = ProjectStore.open(root)
    yield store, src / "annotations" / "coco_example.json"
    store.close()


def test_crowd_rle_from_pycococreator_survives_a_project_round_trip(blueberry_project, tmp_path):
    store, coco = blueberry_project
    original = json.loads(coco.read_text())
    rep = import_into_project(store, "coco", coco)
    assert rep.instances_added == 3 and not rep.finished_with_problems, rep
    crowd = [i for i in store.instances() if i.iscrowd]
    assert len(crowd) == 1
    out = tmp_path / "out.json"
    export_project(store, "coco", out, polygons=True)
    anns = json.loads(out.read_text())["annotations"]
    assert sorted(a["iscrowd"] for a in anns) == sorted(a["iscrowd"] for a in original["annotations"]) == [0, 0, 1]
    exported_crowd = next(a for a in anns if a["iscrowd"] == 1)
    assert isinstance(exported_crowd["segmentation"], dict)  # COCO's rule: crowd is RLE
    orig_crowd = next(a for a in original["annotations"] if a["iscrowd"] == 1)
    assert Mask.from_full(rle_codec.decode_full(exported_crowd["segmentation"])) == \
        Mask.from_full(rle_codec.decode_full(orig_crowd["segmentation"]))


# ------------------------------------------------------------------ 6. attributes, tags, what is not kept
def test_attributes_and_tags_round_trip_and_keypoints_are_counted(tmp_path):
    size = (20, 30)
    box = np.zeros(size, bool)
    box[2:8, 3:9] = True
    attrs = {"occluded": False, "colour": "green", "n": 3, "ratio": 0.5}
    img = LabelledImage("a.jpg", size, [LabelledInstance("glass", Mask.from_full(box), attributes=attrs)],
                        tags=["night", "blurred"])
    out = tmp_path / "c.json"
    assert export_coco([img], builtin_palette(), out) == []
    data = json.loads(out.read_text())
    assert data["annotations"][0]["attributes"] == attrs
    back = import_coco(out).images[0]
    assert back.instances[0].attributes == attrs and back.tags == ["night", "blurred"]
    # CVAT's COCO export writes attributes; values Specula cannot keep are counted, once per kind
    ann = data["annotations"][0]
    data["annotations"] = [
        dict(ann, id=k, attributes={"occluded": True, "pts": [1, 2], "bad\nname": 1}, keypoints=[1, 2, 2])
        for k in range(1, 4)
    ]
    out.write_text(json.dumps(data))
    res = import_coco(out)
    assert [i.attributes for i in res.images[0].instances] == [{"occluded": True}] * 3
    text = "\n".join(res.warnings)
    assert "3 annotations with keypoints: the keypoints are not kept" in text
    assert "3 attribute values that are not a number" in text and "3 attributes whose name cannot be a name" in text


def test_bbox_only_and_short_polygons_are_counted_in_one_line_each(tmp_path):
    anns = [_ann([], id=k, bbox=[2, 3, 4, 2]) for k in range(3)] + [_ann([[1, 1, 2, 2], [1, 1, 6, 1, 6, 6]], id=7)]
    res = import_coco(_write(tmp_path, _coco(anns)))
    assert [i.mask.bbox for i in res.images[0].instances][:3] == [(2, 3, 6, 5)] * 3
    text = "\n".join(res.warnings)
    assert text.count("imported as their bbox") == 1 and "3 annotations without a segmentation" in text
    assert "1 polygons with fewer than 3 points" in text


def test_damaged_specula_fields_and_iscrowd(tmp_path):
    anns = [
        _ann([[1, 1, 6, 1, 6, 6]], id=1, iscrowd=2),
        _ann([[1, 1, 6, 1, 6, 6]], id=2, score="high"),
        _ann([[1, 1, 6, 1, 6, 6]], id=3, specula_origin=["x"], specula_state="weird"),
        _ann([[1, 1, 6, 1, 6, 6]], id=4, iscrowd=True),
    ]
    res = import_coco(_write(tmp_path, _coco(anns)))
    insts = res.images[0].instances
    assert [(i.origin, i.state, i.iscrowd) for i in insts] == [("manual", "accepted", False), ("manual", "accepted", True)]
    text = "\n".join(res.warnings)
    assert "annotations[0].iscrowd: 2 is not 0 or 1" in text and "annotations[1].score" in text
    assert "specula_origin values" in text and "unknown specula_state" in text


# ------------------------------------------------------------------ what the user sees
def test_specula_import_prints_one_line_and_exits_2(tmp_path):
    """The command line, in a process of its own: nothing but ``specula: <message>`` on
    stderr (no traceback, no Pillow warning before it), exit status 2."""
    import base64
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    project = tmp_path / "proj"
    project.mkdir()
    Image.new("RGB", (12, 10)).save(project / "a.png")
    files = {
        "labelme": _write(tmp_path, {"shapes": [], "imagePath": "a.png",
                                     "imageData": base64.b64encode(bomb).decode("ascii")}, "bomb.json"),
        "coco": _write(tmp_path, json.dumps(_coco([_ann([[1, 1, 6, 1, 6, 6]])])).replace("6, 6]]", "6, NaN]]"),
                       "nan.json"),
    }
    run = [sys.executable, "-c", "import sys; from specula.cli import main; sys.exit(main())"]
    assert subprocess.run([*run, "init", str(project)], capture_output=True, cwd=str(REPO)).returncode == 0
    for fmt, path in files.items():
        done = subprocess.run([*run, "import", str(project), "--from", fmt, str(path)],
                              capture_output=True, text=True, cwd=str(REPO), timeout=120)
        assert done.returncode == 2, (fmt, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"specula: {path}: "), (fmt, done.stderr)
    assert "an image of 3600000000 pixels is over the limit" in subprocess.run(
        [*run, "import", str(project), "--from", "labelme", str(files["labelme"])],
        capture_output=True, text=True, cwd=str(REPO)).stderr
