"""Third-party fixtures: Datumaro's COCO and CVAT files, pycococreator's per-instance masks."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET  # trusted fixture, read only to count independently

import numpy as np

from annotation.formats.coco import import_coco
from annotation.formats.cvat import import_cvat
from annotation.formats.instance_masks import import_instance_masks

from formats_helpers import need_data


def test_datumaro_coco_instances_import_with_the_right_counts():
    root = need_data("formats/datumaro/coco_dataset")
    files = sorted(root.glob("*/annotations/instances_*.json"))
    assert files
    for f in files:
        data = json.loads(f.read_text())
        res = import_coco(f)
        assert len(res.images) == len(data["images"])
        assert sum(len(i.instances) for i in res.images) == len(data["annotations"])
        assert set(res.classes) == {c["name"] for c in data["categories"]}
        assert all(i.file is not None for i in res.images), res.warnings  # found under images/<subset>/
        cats = {c["id"]: c["name"] for c in data["categories"]}
        got = [(inst.class_name, inst.iscrowd, inst.mask.area) for img in res.images for inst in img.instances]
        want = [(cats[a["category_id"]], bool(a["iscrowd"])) for a in data["annotations"]]
        assert [g[:2] for g in got] == want
        for (_, crowd, area), a in zip(got, data["annotations"]):
            if crowd:  # uncompressed RLE: exact
                assert area == sum(a["segmentation"]["counts"][1::2])
            assert area > 0


def test_datumaro_coco_uncompressed_rle_decodes_column_major():
    f = need_data("formats/datumaro/coco_dataset/coco_instances/annotations/instances_val.json")
    img = import_coco(f).images[0]
    crowd = [i for i in img.instances if i.iscrowd][0]
    full = crowd.mask.to_full()
    # counts [0, 20, 30] on a 10x5 image: the first two columns are set
    assert full[:, :2].all() and not full[:, 2:].any()


def test_datumaro_cvat_for_images_import_with_the_right_counts():
    f = need_data("formats/datumaro/cvat_dataset/for_images/train.xml")
    root = ET.parse(f).getroot()
    images = root.findall("image")
    regions = [el for im in images for el in im if el.tag in ("box", "polygon", "mask")]
    res = import_cvat(f)
    assert len(res.images) == len(images)
    assert sum(len(i.instances) for i in res.images) == len(regions)
    assert [i.path for i in res.images] == [im.get("name") for im in images]
    assert all(i.file is not None for i in res.images)
    box = res.images[0].instances[0]
    assert box.class_name == "label1" and box.mask.bbox == (0, 2, 4, 4)
    assert any("skipped shapes" in w for w in res.warnings)


def test_pycococreator_instance_masks_match_their_coco_file():
    root = need_data("formats/pycococreator/example_data")
    coco = import_coco(root / "annotations" / "coco_example.json").images[0]
    masks = import_instance_masks(root / "annotations", class_name="blueberry").images[0]
    assert masks.path == "100.jpg" and masks.size == coco.size
    assert len(masks.instances) == len(coco.instances) == 3
    for c in coco.instances:
        ious = [c.mask.iou(m.mask) for m in masks.instances]
        best = masks.instances[int(np.argmax(ious))]
        assert best.iscrowd == c.iscrowd and best.class_name == "blueberry"
        if c.iscrowd:
            assert best.mask == c.mask  # RLE made from that very PNG
        else:
            assert max(ious) >= 0.95  # pycococreator simplified the outline (tolerance 2 px)


def test_pycococreator_shapes_masks_name_their_class():
    root = need_data("formats/pycococreator/examples/shapes/train")
    res = import_instance_masks(root / "annotations")
    got = {i.path: sorted(x.class_name for x in i.instances) for i in res.images}
    assert got == {
        "shapes_train2018/1000.jpeg": ["square"],
        "shapes_train2018/1001.jpeg": ["circle", "circle", "square", "square"],
    }
    for img in res.images:
        for inst in img.instances:  # RGBA masks, 0/255 in every colour channel
            assert 0 < inst.mask.area < 128 * 128 // 2
