"""labelme JSON: every shipped example rasterises as labelme's shape_to_mask would; export round trip."""
from __future__ import annotations

import base64
import io
import json
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from annotation.formats.common import FormatError, LabelledImage, LabelledInstance
from annotation.formats.labelme import export_labelme, import_labelme, shape_mask
from annotation.mask import Mask
from annotation.palette import builtin_palette

from formats_helpers import blob_masks, need_data, ring_mask


def reference_shape_to_mask(img_shape, shape):
    """labelme's documented semantics, drawn on the full image with Pillow (independent of the importer)."""
    points, shape_type = shape["points"], shape.get("shape_type") or "polygon"
    if shape_type == "mask":
        raw = base64.b64decode(shape["mask"])
        bitmap = np.asarray(Image.open(io.BytesIO(raw))).astype(bool)
        out = np.zeros(img_shape, bool)
        (x1, y1), (x2, y2) = np.asarray(points).astype(int)
        out[y1 : y2 + 1, x1 : x2 + 1] = bitmap
        return out
    canvas = Image.fromarray(np.zeros(img_shape, np.uint8))
    draw = ImageDraw.Draw(canvas)
    xy = [tuple(p) for p in points]
    if shape_type == "circle":
        (cx, cy), (px, py) = xy
        d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
    elif shape_type == "rectangle":
        (ax, ay), (bx, by) = xy
        draw.rectangle([min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)], outline=1, fill=1)
    elif shape_type in ("line", "linestrip"):
        draw.line(xy=xy, fill=1, width=10)
    elif shape_type == "point":
        cx, cy = xy[0]
        draw.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], outline=1, fill=1)
    else:
        draw.polygon(xy=xy, outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


def reference_instances(data):
    """Shapes grouped as labelme's instance export does: same (label, group_id) is one instance."""
    shape = (data["imageHeight"], data["imageWidth"])
    out, groups = [], {}
    for s in data["shapes"]:
        m = reference_shape_to_mask(shape, s)
        gid = s.get("group_id")
        if gid is None:
            out.append((s["label"], m))
        elif (s["label"], gid) in groups:
            i = groups[(s["label"], gid)]
            out[i] = (out[i][0], out[i][1] | m)
        else:
            groups[(s["label"], gid)] = len(out)
            out.append((s["label"], m))
    return out


def _examples():
    root = need_data("formats/labelme-examples")
    files = []
    for p in sorted(root.rglob("*.json")):
        data = json.loads(p.read_text())
        if isinstance(data, dict) and "shapes" in data:
            files.append(p)
    return root, files


def test_every_labelme_example_matches_shape_to_mask():
    root, files = _examples()
    assert len(files) == 18
    res = import_labelme(root)
    assert len(res.images) == 18
    by_json = {}
    for img in res.images:
        by_json.setdefault(img.path.rsplit(".", 1)[0], img)
    shape_types = set()
    for f in files:
        data = json.loads(f.read_text())
        shape_types |= {s.get("shape_type") for s in data["shapes"]}
        img = by_json[f.relative_to(root).with_suffix("").as_posix()]
        assert img.size == (data["imageHeight"], data["imageWidth"])
        assert img.file is not None and img.file.is_file(), f
        want = reference_instances(data)
        assert len(img.instances) == len(want), f
        for inst, (label, ref) in zip(img.instances, want):
            assert inst.class_name == label
            assert np.array_equal(inst.mask.to_full(), ref), (f, label)
    assert {"polygon", "rectangle", "circle", "line", "linestrip", "point", "mask"} <= shape_types


def test_labelme_embedded_image_and_self_referencing_imagepath():
    p = need_data("formats/labelme-examples/tutorial/apc2016_obj3.json")
    res = import_labelme(p)
    img = res.images[0]
    assert img.file is not None and img.file.name == "apc2016_obj3.jpg"
    assert img.size == (907, 1210)
    assert any("apc2016_obj3.jpg" in w for w in res.warnings)


def test_labelme_imagepath_that_names_a_png_which_is_a_jpg():
    p = need_data("formats/sahi-coco/terrain1.json")
    res = import_labelme(p)
    img = res.images[0]
    assert img.path == "terrain1.jpg" and img.file.name == "terrain1.jpg"
    assert any("terrain1.png" in w for w in res.warnings)
    data = json.loads(p.read_text())
    assert len(img.instances) == len(data["shapes"])


def test_labelme_folder_skips_non_labelme_json_with_warning():
    root = need_data("formats/sahi-coco")
    res = import_labelme(root)
    assert {i.path for i in res.images} == {"terrain1.jpg", "terrain2.png", "terrain3.png"}
    assert any("terrain_all_coco.json" in w and "not a labelme" in w for w in res.warnings)


def test_labelme_round_trip_polygons_masks_holes_and_provenance(tmp_path):
    size = (60, 80)
    insts = [
        LabelledInstance("glass", ring_mask(size, (5, 5, 30, 30), (10, 10, 20, 20)), score=0.75, origin="m@1"),
        LabelledInstance("mirror", Mask.from_polygon([(40, 5), (75, 10), (60, 40)], size)),
        LabelledInstance("mirror", Mask.from_full(np.eye(60, 80, dtype=bool))),  # thin diagonal line
    ]
    insts += [LabelledInstance("glass", m, state="proposed") for m in blob_masks(size, seed=3)]
    img = LabelledImage("sub/a.jpg", size, insts)
    assert export_labelme([img], builtin_palette(), tmp_path) == []
    data = json.loads((tmp_path / "sub" / "a.json").read_text())
    kinds = [s["shape_type"] for s in data["shapes"]]
    assert kinds[0] == "mask" and kinds[1] == "polygon"
    # what labelme itself would read back
    for s, inst in zip(data["shapes"], insts):
        assert np.array_equal(reference_shape_to_mask(size, s), inst.mask.to_full())
    back = import_labelme(tmp_path / "sub" / "a.json").images[0]
    assert back.size == size
    assert [i.class_name for i in back.instances] == [i.class_name for i in insts]
    for a, b in zip(insts, back.instances):
        assert a.mask == b.mask
        assert (a.score, a.origin, a.state) == (b.score, b.origin, b.state)


def test_shape_mask_is_exact_at_image_edges():
    # shapes reaching past the image are clipped exactly as on labelme's full canvas
    size = (40, 50)
    rng = np.random.default_rng(7)
    for k in range(200):
        pts = rng.uniform(-15, 65, (int(rng.integers(3, 7)), 2)).tolist()
        for t in ("polygon", "linestrip"):
            want = reference_shape_to_mask(size, {"points": pts, "shape_type": t})
            assert np.array_equal(shape_mask(t, pts, size).to_full(), want), (k, t)
        c = pts[:2]
        want = reference_shape_to_mask(size, {"points": c, "shape_type": "circle"})
        assert np.array_equal(shape_mask("circle", c, size).to_full(), want)


def test_bad_shapes_are_warnings_and_bad_files_are_format_errors(tmp_path):
    good = {"label": "a", "points": [[1, 1], [8, 1], [8, 8]], "shape_type": "polygon"}
    bad = [
        {"label": "a", "points": [[1, 1], [2, 2]], "shape_type": "polygon"},
        {"label": "a", "points": "nope", "shape_type": "polygon"},
        {"label": "a", "points": [[1, 1]], "shape_type": "hexagon"},
        {"label": "a", "points": [[1, 1], [5, 5]], "shape_type": "mask", "mask": "!!notbase64png"},
    ]
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"shapes": [good] + bad, "imagePath": "x.jpg", "imageHeight": 10, "imageWidth": 10}))
    res = import_labelme(p)
    assert len(res.images[0].instances) == 1
    assert sum("skipped" in w for w in res.warnings) == len(bad)
    p.write_text('{"shapes": [{"label": "a", "points": [[1, 1], [8')
    with pytest.raises(FormatError, match="not valid JSON"):
        import_labelme(p)
    p.write_text(json.dumps({"shapes": {"not": "a list"}}))
    with pytest.raises(FormatError, match="not a labelme"):
        import_labelme(p)
    p.write_text(json.dumps({"shapes": [], "imagePath": "gone.jpg"}))
    with pytest.raises(FormatError, match="cannot size"):
        import_labelme(p)
