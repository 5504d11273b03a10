"""CVAT rotation, attributes and tags: kept on import, written back on export.

The rotated boxes of the round trip are the real box of Datumaro's CVAT fixture
(with its real attributes), turned by CVAT's ``rotation`` and copied over both
fixture images; each mask is compared with an independent rasterisation: the
corners computed here with numpy, pixel centres tested with shapely (or filled
with OpenCV at a scale where its edge rule no longer matters).
"""
from __future__ import annotations

import copy
import math
import shutil
import xml.etree.ElementTree as ET  # the trusted fixture and our own export, parsed to mutate and inspect
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely

from annotation.formats.common import LabelledImage, LabelledInstance
from annotation.formats.cvat import export_cvat, import_cvat
from annotation.formats.cvat_geometry import fill_convex_polygon
from annotation.formats.project_io import export_project, import_into_project
from annotation.mask import Mask
from annotation.palette import builtin_palette
from annotation.store import ProjectStore

from formats_helpers import need_data

FIXTURE = "formats/datumaro/cvat_dataset/for_images"
ANGLES = [15, 30, 45, 60, 75, 90, 105, 120, 135, 150, 200, 250, 300, 345]  # 14 rotated boxes


def _corners(x0: float, y0: float, x1: float, y1: float, degrees: float) -> np.ndarray:
    """CVAT's rotated box (``RotatedBoxesToPolygons``), written out again here: y points down."""
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    t = np.radians(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    box = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
    return (box - (cx, cy)) @ rot.T + (cx, cy)


def _shapely_mask(corners: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pixels whose centres lie strictly inside the polygon (shapely's exact predicate)."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    return shapely.contains_xy(shapely.Polygon(corners), xx + 0.5, yy + 0.5)


def _cv2_mask(corners: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV's fill (pixel centres at integers, hence the half-pixel shift; 8 fraction bits)."""
    out = np.zeros(size, np.uint8)
    pts = np.round((corners - 0.5) * 256).astype(np.int32)
    cv2.fillPoly(out, [pts], 1, lineType=cv2.LINE_8, shift=8)
    return out.astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _fixture() -> ET.Element:
    return ET.parse(need_data(FIXTURE) / "train.xml").getroot()


def _rotated_fixture(path: Path) -> tuple[Path, dict[str, list[tuple]]]:
    """The real file with its real box turned, and 13 turned copies of it over both images.

    Returns the file and, per image, ``(angle, corners, unturned box)`` of every rotated box."""
    root = _fixture()
    images = {im.get("name"): im for im in root.iter("image")}
    real_box = images["img0.jpg"].find("box")
    x0, y0, x1, y1 = (float(real_box.get(k)) for k in ("xtl", "ytl", "xbr", "ybr"))
    expected: dict[str, list[tuple]] = {"img0.jpg": [], "img1.jpg": []}
    for k, angle in enumerate(ANGLES):
        name = "img0.jpg" if k < 7 else "img1.jpg"
        box = real_box if k == 0 else copy.deepcopy(real_box)
        dx, dy = (k % 7) * 0.37, (k % 3) * 1.5  # spread the copies so that no two masks coincide
        if name == "img1.jpg":
            dx, dy = dx + 2, dy + 2
        box.set("xtl", f"{x0 + dx:.2f}"), box.set("xbr", f"{x1 + dx:.2f}")
        box.set("ytl", f"{y0 + dy:.2f}"), box.set("ybr", f"{y1 + dy:.2f}")
        box.set("rotation", f"{angle:.2f}")
        if k:
            images[name].insert(0, box)
        bx0, by0, bx1, by1 = (float(box.get(a)) for a in ("xtl", "ytl", "xbr", "ybr"))
        expected[name].append((angle, _corners(bx0, by0, bx1, by1, angle), (bx0, by0, bx1, by1)))
    path.write_bytes(ET.tostring(root, encoding="utf-8"))
    return path, expected


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    for name in ("img0.jpg", "img1.jpg"):
        shutil.copy(need_data(FIXTURE) / "images" / name, root / name)
    store = ProjectStore.open(root)
    yield store
    store.close()


# ------------------------------------------------------------------ rotation
def test_rotated_boxes_of_a_real_file_round_trip_through_a_project(project, tmp_path):
    src, expected = _rotated_fixture(tmp_path / "rotated.xml")
    rep = import_into_project(project, "cvat", src)
    assert rep.instances_added == len(ANGLES) + 1 and rep.duplicates_skipped == 0, rep  # + the real polygon
    out = tmp_path / "export.xml"
    export_project(project, "cvat", out)
    back = {img.path: img for img in import_cvat(out).images}
    ious, unturned_ious = [], []
    for name, boxes in expected.items():
        size = back[name].size
        got = [i.mask.to_full() for i in back[name].instances if i.class_name == "label1"]
        assert len(got) == len(boxes)
        unmatched = list(range(len(got)))
        for angle, corners, unturned in boxes:
            want = _shapely_mask(corners, size)
            best = max(unmatched, key=lambda j: _iou(got[j], want))
            unmatched.remove(best)
            ious.append(_iou(got[best], want))
            assert ious[-1] >= 0.999, (name, angle, ious[-1])
            unturned_ious.append(_iou(_shapely_mask(_corners(*unturned, 0), size), want))
    assert len(ious) == len(ANGLES)
    # what the importer made before it read rotation (the unturned box) differs for all but the
    # 15 degree box, which on this 8 x 8 image happens to cover the same 8 pixels
    assert sum(u < 0.9 for u in unturned_ious) == len(ANGLES) - 1


def test_rotation_turns_clockwise_on_screen_about_the_box_centre(tmp_path):
    # a long thin box through (50, 50), turned +30 degrees: its right end goes down (y grows)
    root = ET.fromstring(
        '<annotations><version>1.1</version><image id="0" name="a.png" width="100" height="100">'
        '<box label="bar" xtl="10" ytl="48" xbr="90" ybr="52" rotation="30.00"/></image></annotations>'
    )
    p = tmp_path / "a.xml"
    p.write_bytes(ET.tostring(root))
    full = import_cvat(p).images[0].instances[0].mask.to_full()
    r = 35
    down_right = (round(50 + r * math.sin(math.radians(30))), round(50 + r * math.cos(math.radians(30))))
    up_right = (round(50 - r * math.sin(math.radians(30))), round(50 + r * math.cos(math.radians(30))))
    assert full[down_right] and not full[up_right]  # (row, column)
    assert full[50, 50]


@pytest.mark.parametrize("angle", [7.5, 33.3, 90.0, 137.25, 222.0, 301.9])
def test_rotated_box_matches_opencv_at_scale(tmp_path, angle):
    size = (300, 400)
    xtl, ytl, xbr, ybr = 80.25, 60.5, 310.75, 220.0
    p = tmp_path / "a.xml"
    p.write_text(
        f'<annotations><image id="0" name="a.png" width="{size[1]}" height="{size[0]}">'
        f'<box label="slab" xtl="{xtl}" ytl="{ytl}" xbr="{xbr}" ybr="{ybr}" rotation="{angle}"/></image></annotations>'
    )
    got = import_cvat(p).images[0].instances[0].mask.to_full()
    corners = _corners(xtl, ytl, xbr, ybr, angle)
    assert np.array_equal(got, _shapely_mask(corners, size))  # no edge runs through a pixel centre here
    # OpenCV also fills the pixels its outline touches: ours lie within its fill, short of about half a pixel
    drawn = _cv2_mask(corners, size)
    assert not (got & ~drawn).any() and _iou(got, drawn) >= 0.98


def test_rotated_ellipse_and_polygon(tmp_path):
    size = (200, 300)
    p = tmp_path / "a.xml"
    p.write_text(
        f'<annotations><image id="0" name="a.png" width="{size[1]}" height="{size[0]}">'
        '<ellipse label="e" cx="150.5" cy="100" rx="90" ry="35.5" rotation="30"/>'
        '<polygon label="p" points="20,20;80,20;80,50;20,50" rotation="90"/>'
        '</image></annotations>'
    )
    ellipse, polygon = import_cvat(p).images[0].instances
    got = ellipse.mask.to_full()
    # pixel centres tested against the ellipse turned by CVAT's rotation matrix, written out here
    yy, xx = np.mgrid[0:size[0], 0:size[1]] + 0.5
    t = np.radians(30)
    u = np.cos(t) * (xx - 150.5) + np.sin(t) * (yy - 100)
    v = -np.sin(t) * (xx - 150.5) + np.cos(t) * (yy - 100)
    assert np.array_equal(got, (u / 90) ** 2 + (v / 35.5) ** 2 <= 1)

    def drawn(angle: float) -> np.ndarray:  # CVAT's EllipsesToMasks draws with cv2.ellipse and this angle
        out = np.zeros(size, np.uint8)
        cv2.ellipse(out, (round(150 * 256), round(99.5 * 256)), (90 * 256, round(35.5 * 256)),
                    angle, 0, 360, 1, -1, cv2.LINE_8, 8)
        return out.astype(bool)

    assert _iou(got, drawn(30)) >= 0.97 and _iou(got, drawn(-30)) < 0.6
    # a polygon turns about the centre of its box (50, 35): 60 x 30 becomes 30 x 60
    assert polygon.mask.bbox == (35, 5, 65, 65) and polygon.mask.area == 30 * 60


def test_edges_through_pixel_centres_go_to_the_left_and_top_shape():
    size = (12, 12)
    # a 3 x 2 box turned 90 degrees about (4.5, 4): x in [3.5, 5.5], y in [2.5, 5.5], every edge on centres
    quarter = fill_convex_polygon(_corners(3, 3, 6, 5, 90), size)
    assert quarter.bbox == (3, 2, 5, 5) and quarter.area == 6  # half-open, like the unturned box
    # two triangles that halve a turned square share an edge but no pixel, and leave no gap
    square = _corners(2, 2, 10, 10, 37)
    a = fill_convex_polygon(square[[0, 1, 2]], size)
    b = fill_convex_polygon(square[[0, 2, 3]], size)
    whole = fill_convex_polygon(square, size)
    assert a.intersection_area(b) == 0 and (a | b) == whole


# ------------------------------------------------------------------ attributes and tags
def test_real_attributes_and_tags_survive_cvat_specula_cvat(project, tmp_path):
    root = _fixture()
    images = {im.get("name"): im for im in root.iter("image")}
    images["img0.jpg"].append(ET.Element("tag", {"label": "label2", "source": "manual"}))
    images["img1.jpg"].append(ET.Element("tag", {"label": "label1", "source": "manual"}))
    images["img1.jpg"].append(ET.Element("tag", {"label": "label2", "source": "manual"}))
    src = tmp_path / "tagged.xml"
    src.write_bytes(ET.tostring(root, encoding="utf-8"))
    first = import_cvat(src)
    box = first.images[0].instances[0]
    # typed where the real label spec declares them: checkbox -> bool, number -> number, text stays text
    assert box.attributes == {"a1": True, "a2": "v3", "a3": "0003", "a4": 2.4, "occluded": True}
    assert [i.tags for i in first.images] == [["label2"], ["label1", "label2"]]

    import_into_project(project, "cvat", src)
    stored = project.instances(project.image_by_path("img0.jpg").id)
    assert [i.attributes for i in stored if i.class_name == "label1"] == [box.attributes]
    assert project.image_by_path("img1.jpg").tags == ["label1", "label2"]
    out = tmp_path / "export.xml"
    export_project(project, "cvat", out)
    again = import_cvat(out)
    assert [[i.attributes for i in img.instances] for img in again.images] == [
        [i.attributes for i in img.instances] for img in first.images
    ]
    assert [i.tags for i in again.images] == [i.tags for i in first.images]

    written = ET.parse(out).getroot()
    spec = {a.findtext("name"): a.findtext("input_type")
            for lab in written.iter("label") if lab.findtext("name") == "label1"
            for a in lab.iter("attribute")}
    assert spec == {"a1": "checkbox", "a2": "text", "a3": "text", "a4": "number"}
    shape = written.find("image/polygon")
    assert shape.get("occluded") == "1" and "occluded" not in {a.get("name") for a in shape.iter("attribute")}
    assert {t.get("label") for t in written.iter("tag")} <= {lab.findtext("name") for lab in written.iter("label")}


def test_specula_attributes_round_trip_with_their_types(tmp_path):
    size = (20, 20)
    mask = Mask.from_full(np.pad(np.ones((5, 6), bool), ((2, 13), (3, 11))))
    attrs = {"cracked": False, "width_mm": 0.35, "count": 3, "note": "seen from the deck", "zeros": "007"}
    images = [LabelledImage("a.png", size, [LabelledInstance("crack", mask, attributes=dict(attrs))], tags=["wet"])]
    out = tmp_path / "a.xml"
    export_cvat(images, builtin_palette(), out)
    back = import_cvat(out).images[0]
    assert back.instances[0].attributes == attrs and back.tags == ["wet"]
    number = next(a for a in ET.parse(out).iter("attribute") if a.findtext("name") == "width_mm")
    assert number.findtext("input_type") == "number" and number.findtext("values").split() == ["0.35", "0.35", "0.01"]


def test_values_that_do_not_fit_their_declaration_stay_text_with_a_warning(tmp_path):
    root = _fixture()
    attrs = {a.get("name"): a for a in root.find("image/box").iter("attribute")}
    attrs["a1"].text = "maybe"
    attrs["a4"].text = "nan"
    p = tmp_path / "a.xml"
    p.write_bytes(ET.tostring(root, encoding="utf-8"))
    res = import_cvat(p)
    assert res.images[0].instances[0].attributes["a1"] == "maybe"
    assert res.images[0].instances[0].attributes["a4"] == "nan"
    lines = [w for w in res.warnings if "declared input type" in w]
    assert len(lines) == 1 and "2 attribute value(s)" in lines[0] and "'a1' = 'maybe' (declared checkbox)" in lines[0]


def test_what_cannot_be_represented_is_counted_in_one_line_by_kind(tmp_path):
    root = _fixture()
    im0 = root.find("image")
    im0.append(ET.Element("cuboid", {"label": "label1", "xtl1": "1", "ytl1": "1"}))
    im0.find("box").set("group_id", "4")
    tag = ET.SubElement(im0, "tag", {"label": "label2"})
    ET.SubElement(tag, "attribute", {"name": "a2"}).text = "v1"
    p = tmp_path / "a.xml"
    p.write_bytes(ET.tostring(root, encoding="utf-8"))
    res = import_cvat(p)
    lines = [w for w in res.warnings if "cannot represent" in w]
    assert len(lines) == 1, res.warnings
    assert lines[0].endswith("1 cuboid, 1 group ids, 1 points, 1 polyline, 2 skeleton, 1 tag attributes")
    assert res.images[0].tags == ["label2"]
