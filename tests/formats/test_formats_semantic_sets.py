"""Every GDD and MSD ground-truth mask: class masks -> COCO (RLE and polygons) -> back, exactly."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from annotation.formats.class_masks import import_class_masks
from annotation.formats.coco import export_coco, import_coco
from annotation.palette import builtin_palette

from formats_helpers import need_data

# pycocotools' decode trips numpy 2's __array__(copy=...) deprecation once per call;
# it is pycocotools' to fix and says nothing about these tests
@pytest.fixture(autouse=True)
def _quiet_pycocotools():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        yield


def _roundtrip_all(mask_dir, class_name, tmp_path):
    palette = builtin_palette("mirror-glass")
    first = import_class_masks(mask_dir, class_name)
    assert not [w for w in first.warnings if "no image" in w]  # every mask found its photo
    files = sorted(mask_dir.glob("*.png"))
    assert len(first.images) == len(files)
    results = {}
    for polygons in (False, True):
        out = tmp_path / f"coco_{polygons}.json"
        warnings = export_coco(first.images, palette, out, polygons=polygons)
        assert not [w for w in warnings if "written as RLE" in w]  # every instance survived as polygons
        back = import_coco(out, image_root=mask_dir.parent / "image")
        assert not [w for w in back.warnings if "not found" in w]
        assert [i.path for i in back.images] == [i.path for i in first.images]
        results[polygons] = back
    holes = 0
    for k, img in enumerate(first.images):
        # the import itself is faithful: the union of the instances is the PNG's foreground
        png = np.asarray(Image.open(files[k]).convert("L")) >= 128
        union = np.zeros(img.size, bool)
        for inst in img.instances:
            union |= inst.mask.to_full()
        assert np.array_equal(union, png), files[k].name
        for polygons, back in results.items():
            got = back.images[k].instances
            assert len(got) == len(img.instances), (files[k].name, polygons)
            for a, b in zip(img.instances, got):
                assert b.class_name == class_name
                iou = a.mask.iou(b.mask)
                # RLE must be exact; pixel-edge polygons are exact too (the brief asks >= 0.99)
                assert iou == 1.0 if not polygons else iou >= 0.99, (files[k].name, polygons, iou)
                assert a.mask == b.mask, (files[k].name, polygons)
        holes += sum(1 for inst in img.instances if any(p.holes for p in inst.mask.to_polygons()))
    return len(first.images), sum(len(i.instances) for i in first.images), holes


def test_every_gdd_mask_survives_coco_rle_and_polygons(tmp_path):
    mask_dir = need_data("glass-gdd/mask")
    n_images, n_instances, holes = _roundtrip_all(mask_dir, "glass", tmp_path)
    assert n_images == 400
    assert n_instances >= 400
    assert holes > 0  # the set has instances with holes, and they came back intact (equality above)


def test_every_msd_mask_survives_coco_rle_and_polygons(tmp_path):
    mask_dir = need_data("mirror-msd/mask")
    n_images, n_instances, _ = _roundtrip_all(mask_dir, "mirror", tmp_path)
    assert n_images == len(list(mask_dir.glob("*.png")))


@pytest.mark.parametrize("stem", ["1", "1000", "1003"])
def test_single_gdd_mask_file_imports_alone(stem, tmp_path):
    mask = need_data(f"glass-gdd/mask/{stem}.png")
    res = import_class_masks(mask, "glass")
    assert len(res.images) == 1
    img = res.images[0]
    assert img.path == f"{stem}.jpg" and img.file is not None
    png = np.asarray(Image.open(mask).convert("L")) >= 128
    assert sum(i.mask.area for i in img.instances) == int(png.sum())
