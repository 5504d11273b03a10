"""CVAT import, validation at the edge: the fuzzing findings on mutated real files, each one line.

Every file here is Datumaro's real CVAT fixture (``cvat_dataset/for_images/train.xml``)
with one value changed, written into ``tmp_path``.
"""
from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET  # the trusted fixture, parsed only to mutate it
from pathlib import Path

import numpy as np
import pytest

from annotation.formats.common import FormatError, LabelledImage, LabelledInstance
from annotation.formats.cvat import export_cvat, import_cvat
from annotation.formats.project_io import import_into_project
from annotation.mask import Mask
from annotation.palette import builtin_palette
from annotation.store import ProjectStore
from specula.cli import main

from formats_helpers import need_data

FIXTURE = "formats/datumaro/cvat_dataset/for_images"


def _fixture() -> ET.Element:
    return ET.parse(need_data(FIXTURE) / "train.xml").getroot()


def _write(root: ET.Element, path: Path) -> Path:
    path.write_bytes(ET.tostring(root, encoding="utf-8"))
    return path


def _image(root: ET.Element, name: str) -> ET.Element:
    return next(im for im in root.iter("image") if im.get("name") == name)


def _refused(path: Path, *needles: str) -> str:
    """Import ``path``, expect one ``FormatError`` line naming the file and each needle."""
    with pytest.raises(FormatError) as err:
        import_cvat(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# ------------------------------------------------------------------ non-finite and huge numbers
@pytest.mark.parametrize(
    "attr, value, needles",
    [
        ("points", "nan,2;3,4;6,5", ["image 'img1.jpg' (id 1), polygon 1, points: 'nan' is not a finite number"]),
        ("points", "1,2;3,4;1e30,5", ["polygon 1, points: x = 1e+30 lies far outside the image", "-10 .. 20"]),
        ("points", "1,2;3;6,5", ["polygon 1, points: '3' is not an x,y pair"]),
    ],
)
def test_polygon_with_bad_points_is_refused_naming_it(tmp_path, attr, value, needles):
    root = _fixture()
    _image(root, "img1.jpg").find("polygon").set(attr, value)
    assert _refused(_write(root, tmp_path / "a.xml"), *needles)


@pytest.mark.parametrize(
    "value, needle",
    [
        ("1e30", "image 'img0.jpg' (id 0), box 1, xbr: x = 1e+30 lies far outside the image"),
        ("inf", "image 'img0.jpg' (id 0), box 1, xbr: 'inf' is not a finite number"),
        ("-Infinity", "box 1, xbr: '-Infinity' is not a finite number"),
        ("4px", "box 1, xbr: '4px' is not a number"),
    ],
)
def test_box_with_a_huge_or_infinite_corner_is_refused(tmp_path, value, needle):
    root = _fixture()
    _image(root, "img0.jpg").find("box").set("xbr", value)
    assert _refused(_write(root, tmp_path / "a.xml"), needle, "export it again from CVAT")


@pytest.mark.parametrize("value, needle", [("1e30", "not an angle"), ("nan", "not a finite number")])
def test_box_with_an_absurd_rotation_is_refused(tmp_path, value, needle):
    root = _fixture()
    _image(root, "img0.jpg").find("box").set("rotation", value)
    assert _refused(_write(root, tmp_path / "a.xml"), "box 1, rotation", needle)


def test_image_over_the_pixel_limit_is_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    import annotation.formats.cvat as cvat

    def must_not_run(*args, **kwargs):
        raise AssertionError("rasterised a shape of an image over the pixel limit")

    monkeypatch.setattr(cvat, "rasterize_coco_polygons", must_not_run)
    monkeypatch.setattr(cvat, "fill_convex_polygon", must_not_run)
    root = _fixture()
    im = _image(root, "img0.jpg")
    im.set("width", "100000")
    im.set("height", "100000")
    msg = _refused(_write(root, tmp_path / "a.xml"), "image 'img0.jpg' (id 0)", "100000 x 100000", "SPECULA_MAX_PIXELS")
    assert "over the limit of 300000000" in msg
    # the limit is the one in force: a smaller one refuses the real 10 x 10 image too
    monkeypatch.undo()
    monkeypatch.setenv("SPECULA_MAX_PIXELS", "99")
    assert _refused(need_data(FIXTURE) / "train.xml",
             "image 'img1.jpg' (id 1): size 10 x 10 = 100 pixels is over the limit of 99")


@pytest.mark.parametrize(
    "size, needle",
    [(("inf", "8"), "width: 'inf' is not a finite number"), (("8.5", "8"), "width: '8.5' is not a whole number")],
)
def test_image_with_a_size_that_is_not_a_whole_number_is_refused(tmp_path, size, needle):
    root = _fixture()
    im = _image(root, "img0.jpg")
    im.set("width", size[0])
    im.set("height", size[1])
    assert _refused(_write(root, tmp_path / "a.xml"), f"image 'img0.jpg' (id 0), {needle}")


def _brush(root: ET.Element, **attrs: str) -> None:
    """A CVAT brush mask on img0.jpg (8 x 8), after the real box."""
    base = {"label": "label1", "source": "manual", "occluded": "0", "z_order": "0",
            "left": "1", "top": "2", "width": "3", "height": "2", "rle": "1, 2, 3"}
    base.update(attrs)
    _image(root, "img0.jpg").append(ET.Element("mask", base))


@pytest.mark.parametrize(
    "attrs, needle",
    [
        ({"left": "inf"}, "mask 1, left: 'inf' is not a finite number"),
        ({"top": "1e30"}, "mask 1, top: y = 1e+30 lies far outside the image"),
        ({"width": "1e30"}, "mask 1, width and height: the mask box 1000000000000000019884624838656 x 2 is larger"),
        ({"width": "100000", "height": "100000", "rle": "0, 10000000000"},
         "mask 1, width and height: the mask box 100000 x 100000 is larger than its 8 x 8 image"),
        ({"height": "nan"}, "mask 1, height: 'nan' is not a finite number"),
        ({"left": "1.5"}, "mask 1, left: '1.5' is not a whole number of pixels"),
        ({"rle": "1, x, 3"}, "mask 1, rle: 'x' is not a whole number"),
        ({"rle": "1, -2, 7"}, "mask 1, rle: a negative run length (-2)"),
    ],
)
def test_brush_mask_with_bad_box_or_runs_is_refused_before_decoding(tmp_path, attrs, needle):
    root = _fixture()
    _brush(root, **attrs)
    assert _refused(_write(root, tmp_path / "a.xml"), f"image 'img0.jpg' (id 0), {needle}")


def test_brush_mask_runs_must_fill_their_box_and_huge_runs_do_not_overflow(tmp_path):
    root = _fixture()
    _brush(root, rle="0, 99999999999999999999999999")  # beyond int64: summed as Python ints
    _brush(root, rle="1, 2, 3")  # 6 pixels in a 3 x 2 box: good
    res = import_cvat(_write(root, tmp_path / "a.xml"))
    masks = [i for i in res.images[0].instances if i.class_name == "label1"]
    assert len(masks) == 2  # the real box and the good brush
    assert masks[1].mask.bbox == (2, 2, 4, 3) and masks[1].mask.area == 2  # 1 off, 2 on, 3 off, row by row
    assert any("mask 1: mask runs cover 99999999999999999999999999 pixels but its box is 3x2 = 6; skipped" in w
               for w in res.warnings), res.warnings


# ------------------------------------------------------------------ names
def test_image_name_over_255_characters_is_refused_naming_it(tmp_path):
    root = _fixture()
    long_name = "x" * 300 + ".jpg"
    _image(root, "img0.jpg").set("name", long_name)
    msg = _refused(_write(root, tmp_path / "a.xml"), "(304 characters) (id 0): the name is too long", "255")
    assert long_name not in msg and "'xxxxxxxx" in msg  # named, cut to stay readable
    # a long path of short folders is a real name, not damage
    root = _fixture()
    deep = "/".join(["folder"] * 40) + "/img0.jpg"
    _image(root, "img0.jpg").set("name", deep)
    assert import_cvat(_write(root, tmp_path / "b.xml")).images[0].path == deep


@pytest.mark.parametrize(
    "where, mutate, needle",
    [
        ("shape label", lambda r: _image(r, "img0.jpg").find("box").set("label", "label\t1"),
         "image 'img0.jpg' (id 0), box 1, label: 'label\\t1' holds the control character U+0009 (tab)"),
        ("meta label", lambda r: r.find("meta/task/labels/label/name").__setattr__("text", "label\n1"),
         "<meta> label: 'label\\n1' holds the control character U+000A (newline)"),
        ("attribute value", lambda r: _image(r, "img0.jpg").find("box/attribute").__setattr__("text", "tr\x85ue"),
         "box 1, attribute 'a1' value: 'tr\\x85ue' holds the control character U+0085"),
        ("attribute name", lambda r: _image(r, "img0.jpg").find("box/attribute").set("name", "a\x9b1"),
         "box 1, attribute name: 'a\\x9b1' holds the control character U+009B"),
        ("tag", lambda r: _image(r, "img1.jpg").append(ET.Element("tag", {"label": "la\tbel2"})),
         "image 'img1.jpg' (id 1), tag 1, label: 'la\\tbel2' holds the control character U+0009 (tab)"),
        ("image name", lambda r: _image(r, "img1.jpg").set("name", "img\n1.jpg"),
         "image 'img\\n1.jpg' (id 1), name: 'img\\n1.jpg' holds the control character U+000A (newline)"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else "",
)
def test_control_characters_in_names_and_attributes_are_refused(tmp_path, where, mutate, needle):
    root = _fixture()
    mutate(root)
    assert _refused(_write(root, tmp_path / "a.xml"), needle, "rename it in CVAT")


@pytest.mark.parametrize(
    "label, needle",
    [("x" * 150, "class name of 150 characters (at most 100)"), ("traffic\u00a0sign", "U+00A0"), ("  ", "empty")],
    ids=["long", "no-break space", "blank"],
)
def test_labels_the_palette_would_refuse_are_refused_at_import(project, tmp_path, label, needle):
    # refused here, in one line, rather than by the palette in the middle of the project's transaction
    root = _fixture()
    _image(root, "img0.jpg").find("box").set("label", label)
    bad = _write(root, tmp_path / "a.xml")
    assert _refused(bad, "image 'img0.jpg' (id 0), box 1, label: ", needle)
    with pytest.raises(FormatError):
        import_into_project(project, "cvat", bad)
    assert project.instances() == [] and label not in project.palette


def test_polygon_outlines_too_long_for_pycocotools_and_huge_texts_are_refused(tmp_path):
    root = _fixture()
    im = _image(root, "img1.jpg")
    im.set("width", "10000")
    im.set("height", "10000")
    im.find("polygon").set("points", ";".join(["0,0;19000,19000"] * 200))  # in span, but 7.6 M pixels of outline
    assert _refused(_write(root, tmp_path / "a.xml"),
             "image 'img1.jpg' (id 1), polygon 1, points: an outline of 7600000 pixels")
    root = _fixture()
    _image(root, "img0.jpg").find("box/attribute").text = "t" * 20_000
    assert _refused(_write(root, tmp_path / "b.xml"), "box 1, attribute 'a1' value: 20000 characters of text (at most 10000)")


def test_skipped_images_and_shapes_are_counted_for_the_exit_code(tmp_path):
    root = _fixture()
    ET.SubElement(root, "image", {"id": "2", "name": "img2.jpg"})  # no size
    reversed_box = {"label": "label2", "xtl": "3", "ytl": "1", "xbr": "1", "ybr": "4"}
    _image(root, "img0.jpg").append(ET.Element("box", reversed_box))
    res = import_cvat(_write(root, tmp_path / "a.xml"))
    assert res.labels_skipped == 1 and len(res.images_skipped) == 1
    assert "lacks a name, width or height" in res.images_skipped[0]
    assert any("box 2: box (3, 1, 1, 4) is empty or reversed; skipped" in w for w in res.warnings)


@pytest.mark.parametrize("ref", ["&#0;", "&#xD800;", "&#xFFFF;"])
def test_nul_and_surrogate_references_are_one_line_refusals(tmp_path, ref):
    text = (need_data(FIXTURE) / "train.xml").read_text().replace('label="label1"', f'label="label{ref}1"', 1)
    p = tmp_path / "a.xml"
    p.write_text(text)
    assert _refused(p, "not well-formed XML")


@pytest.mark.parametrize("bad", ["gl\x00ass", "gl\ud800ass", "gl\nass"], ids=["nul", "surrogate", "newline"])
def test_export_refuses_a_class_name_no_xml_can_carry_and_writes_nothing(tmp_path, bad):
    out = tmp_path / "out.xml"
    mask = Mask.from_full(np.eye(8, dtype=bool))
    with pytest.raises(FormatError) as err:
        export_cvat([LabelledImage("a.png", (8, 8), [LabelledInstance(bad, mask)])], builtin_palette(), out)
    assert "class name" in str(err.value) and "not written" in str(err.value) and "\n" not in str(err.value)
    assert not out.exists()
    tagged = LabelledImage("a.png", (8, 8), [LabelledInstance("glass", mask, attributes={"note": bad})])
    with pytest.raises(FormatError, match="attribute 'note' value"):
        export_cvat([tagged], builtin_palette(), out)
    assert not out.exists()


# ------------------------------------------------------------------ clipping
def test_shapes_reaching_outside_the_image_are_clipped_and_counted_in_one_line(tmp_path):
    root = _fixture()
    im = _image(root, "img1.jpg")  # 10 x 10
    im.find("polygon").set("points", "-3,1;6,1;6,14")
    im.append(ET.Element("box", {"label": "label2", "xtl": "7", "ytl": "-2", "xbr": "13", "ybr": "4"}))
    im.append(ET.Element("ellipse", {"label": "label2", "cx": "1", "cy": "9", "rx": "3", "ry": "2"}))
    res = import_cvat(_write(root, tmp_path / "a.xml"))
    clipped = [w for w in res.warnings if "clipped" in w]
    assert len(clipped) == 1 and "3 shape(s) reach outside their image" in clipped[0], res.warnings
    assert "first: image 'img1.jpg' (id 1), polygon 1" in clipped[0]
    poly, box, ellipse = res.images[1].instances
    assert box.mask.bbox == (7, 0, 10, 4) and box.mask.area == 12
    assert poly.mask.bbox[0] == 0 and poly.mask.bbox[3] == 10
    assert ellipse.mask.bbox[3] == 10
    assert not any("clipped" in w for w in import_cvat(need_data(FIXTURE) / "train.xml").warnings)


# ------------------------------------------------------------------ the project and the command line
@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    for name in ("img0.jpg", "img1.jpg"):
        shutil.copy(need_data(FIXTURE) / "images" / name, root / name)
    store = ProjectStore.open(root)
    yield store
    store.close()


def test_a_refused_file_leaves_the_project_unchanged(project, tmp_path):
    root = _fixture()
    _image(root, "img1.jpg").append(ET.Element("tag", {"label": "label2"}))  # would be stored first
    _image(root, "img1.jpg").find("polygon").set("points", "1,2;3,4;inf,5")
    palette_before = list(project.palette.names)
    with pytest.raises(FormatError, match="polygon 1, points"):
        import_into_project(project, "cvat", _write(root, tmp_path / "a.xml"))
    assert project.instances() == []
    assert all(r.tags == [] for r in project.images())
    assert list(project.palette.names) == palette_before


def test_specula_import_prints_one_line_and_exits_2(project, tmp_path, capsys):
    root = _fixture()
    _image(root, "img0.jpg").find("box").set("xbr", "1e30")
    bad = _write(root, tmp_path / "bad.xml")
    project_root = str(project.root)
    project.close()
    assert main(["import", project_root, "--from", "cvat", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"specula: {bad}: image 'img0.jpg' (id 0), box 1, xbr"), err
    assert "Traceback" not in "\n".join(err)
    store = ProjectStore.open(Path(project_root))
    try:
        assert store.instances() == []
    finally:
        store.close()


def test_messages_are_true_about_images_the_project_matches(project, tmp_path):
    # a CVAT export comes without its images: the project matches them by name, and only
    # an image it lacks is reported, by the project, as not found
    root = _fixture()
    extra = ET.SubElement(root, "image", {"id": "2", "name": "img2.jpg", "width": "8", "height": "8"})
    extra.append(ET.Element("box", {"label": "label2", "xtl": "1", "ytl": "1", "xbr": "3", "ybr": "3"}))
    res = import_cvat(_write(root, tmp_path / "a.xml"))
    assert [i.file for i in res.images] == [None, None, None]
    assert not any("not found" in w or "on disk" in w for w in res.warnings), res.warnings
    rep = import_into_project(project, "cvat", tmp_path / "a.xml")
    assert rep.images_matched == 2 and rep.images_not_found == ["img2.jpg"]
    assert not any("not found" in w or "on disk" in w for w in rep.warnings), rep.warnings
    # beside the file, the importer says where it found them
    assert all(i.file is not None for i in import_cvat(need_data(FIXTURE) / "train.xml").images)
