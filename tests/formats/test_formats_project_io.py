"""Project glue: matching images, refusing paths outside the project, one transaction, every format round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from annotation.document import Instance, InstanceState
from annotation.formats import FORMATS, FormatError, export_project, import_into_project
from annotation.formats.coco import export_coco
from annotation.formats.common import LabelledImage, LabelledInstance
from annotation.mask import Mask
from annotation.store import ProjectStore

from formats_helpers import REPO, blob_masks, ring_mask


def _box(size, box):
    a = np.zeros(size, bool)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = True
    return Mask.from_full(a)


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    (root / "imgs").mkdir(parents=True)
    for name, (h, w) in {"imgs/a.png": (30, 40), "imgs/b.png": (20, 20), "c.jpg": (16, 24)}.items():
        Image.new("RGB", (w, h), (90, 90, 90)).save(root / name)
    store = ProjectStore.open(root)
    yield store
    store.close()


def test_import_matches_adds_and_refuses_paths_outside(project, tmp_path):
    root = project.root
    Image.new("RGB", (10, 10)).save(root / "late.png")  # on disk, not yet in the project
    Image.new("RGB", (10, 10)).save(tmp_path / "outside.png")  # beside the project: must not be reached
    m = lambda size: _box(size, (1, 1, 6, 6))  # noqa: E731
    images = [
        LabelledImage("imgs/a.png", (30, 40), [LabelledInstance("mirror", m((30, 40)), score=0.4, origin="x@1")]),
        LabelledImage("somewhere/else/b.png", (20, 20), [LabelledInstance("crack", m((20, 20)))]),  # by file name
        LabelledImage("late.png", (10, 10), [LabelledInstance("glass", m((10, 10)))]),  # added
        LabelledImage("../outside.png", (10, 10), [LabelledInstance("glass", m((10, 10)))]),
        LabelledImage(str(tmp_path / "outside.png"), (10, 10), [LabelledInstance("glass", m((10, 10)))]),
        LabelledImage("gone.png", (10, 10), [LabelledInstance("glass", m((10, 10)))]),
        LabelledImage("c.jpg", (99, 99), [LabelledInstance("glass", m((99, 99)))]),  # wrong size
    ]
    coco = tmp_path / "in.json"
    export_coco(images, project.palette, coco)
    calls = []
    rep = import_into_project(project, "coco", coco, progress=lambda d, t: calls.append((d, t)))
    assert rep.images_matched == 3 and rep.images_added == ["late.png"]
    assert rep.images_not_found == ["gone.png"]
    assert rep.instances_added == 3 and rep.classes_added == ["crack"]
    text = "\n".join(rep.warnings)
    assert text.count("outside the project folder") == 2
    assert "99x99" in text
    # what did not make it in, for `specula import` to exit 1: the two paths outside, the wrong size, gone.png
    assert len(rep.images_skipped) == 3 and rep.problems == 4 and rep.finished_with_problems
    assert sum("outside the project folder" in s for s in rep.images_skipped) == 2
    assert project.image_by_path("outside.png") is None
    assert all(not p.path.startswith("..") and not p.path.startswith("/") for p in project.images())
    assert "crack" in project.palette
    a = project.instances(project.image_by_path("imgs/a.png").id)
    assert a[0].state is InstanceState.ACCEPTED and a[0].origin == "x@1" and a[0].score == 0.4
    assert calls and calls[-1][0] == calls[-1][1]
    again = import_into_project(project, "coco", coco)
    assert again.instances_added == 0 and again.duplicates_skipped == 3
    clean = tmp_path / "clean.json"
    export_coco(images[:3], project.palette, clean)
    assert not import_into_project(project, "coco", clean).finished_with_problems


def test_import_is_one_transaction(project, tmp_path, monkeypatch):
    size = (30, 40)
    images = [
        LabelledImage("imgs/a.png", size, [LabelledInstance("glass", _box(size, (1, 1, 5, 5)))]),
        LabelledImage("late.png", (10, 10), [LabelledInstance("glass", _box((10, 10), (1, 1, 5, 5)))]),
    ]
    Image.new("RGB", (10, 10)).save(project.root / "late.png")
    coco = tmp_path / "in.json"
    export_coco(images, project.palette, coco)
    real = project.add_instances
    calls = {"n": 0}

    def failing(instances):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(instances)

    monkeypatch.setattr(project, "add_instances", failing)
    with pytest.raises(RuntimeError):
        import_into_project(project, "coco", coco)
    assert project.instances() == []
    assert project.image_by_path("late.png") is None


def test_format_errors_before_anything_is_written(project, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(FormatError, match="not valid JSON"):
        import_into_project(project, "coco", bad)
    with pytest.raises(FormatError, match="unknown format 'yolo'"):
        import_into_project(project, "yolo", bad)
    with pytest.raises(FormatError, match="class_name"):
        import_into_project(project, "class-masks", tmp_path)
    assert project.instances() == []


def _fill(store):
    a = store.image_by_path("imgs/a.png")
    b = store.image_by_path("imgs/b.png")
    insts = [
        Instance(a.id, "mirror", _box((30, 40), (1, 1, 25, 25)), origin="net@3", score=0.8),
        Instance(a.id, "glass-in-mirror", _box((30, 40), (5, 5, 12, 12))),
        Instance(a.id, "glass", ring_mask((30, 40), (27, 2, 39, 28), (30, 6, 35, 12))),
        Instance(a.id, "glass", _box((30, 40), (2, 27, 9, 29)), state=InstanceState.PROPOSED),
    ] + [Instance(b.id, "glass", blob_masks((20, 20), seed=2, count=1)[0])]
    store.add_instances(insts)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_round_trips_through_a_project(project, tmp_path, fmt):
    _fill(project)
    out = tmp_path / ("export.json" if fmt == "coco" else "export.xml" if fmt == "cvat" else "export")
    rep = export_project(project, fmt, out)
    assert rep.images == 3 and rep.instances == 4  # the proposal stays out
    # a second project over the same photos, empty
    fresh_root = tmp_path / "fresh"
    (fresh_root / "imgs").mkdir(parents=True)
    for rel in ("imgs/a.png", "imgs/b.png", "c.jpg"):
        (fresh_root / rel).write_bytes((project.root / rel).read_bytes())
    fresh = ProjectStore.open(fresh_root)
    src = out
    if fmt == "class-masks":
        src = out / "glass" / "imgs"
    elif fmt in ("color-masks", "instance-masks"):
        src = out / "imgs"
    rep_in = import_into_project(fresh, fmt, src, class_name="glass" if fmt == "class-masks" else None)
    assert not rep_in.images_not_found, rep_in
    accepted = project.instances(states=["accepted"])
    got = fresh.instances()
    if fmt in ("class-masks", "color-masks"):
        # semantic formats keep each class's pixels, not where one instance ends
        for image_id in {i.image_id for i in accepted}:
            path = project.image(image_id).path
            fresh_id = fresh.image_by_path(path).id
            mine = [i for i in accepted if i.image_id == image_id]
            for cls in {i.class_name for i in mine if fmt == "color-masks" or i.class_name == "glass"}:
                a = Mask.merge([i.mask for i in mine if i.class_name == cls])
                b = [i.mask for i in got if i.image_id == fresh_id and i.class_name == cls]
                assert b and Mask.merge(b) == a, (fmt, path, cls)
    else:
        want = {(i.class_name, i.mask.area): i.mask for i in accepted}
        assert len(got) == len(want), (fmt, [(i.class_name, i.mask.area) for i in got])
        for inst in got:
            assert want[(inst.class_name, inst.mask.area)] == inst.mask, (fmt, inst.class_name)
    if fmt in ("coco", "labelme", "cvat"):
        mirror = [i for i in got if i.class_name == "mirror"][0]
        assert (mirror.origin, mirror.score) == ("net@3", 0.8)
    fresh.close()


def test_polygon_coco_export_from_project(project, tmp_path):
    _fill(project)
    export_project(project, "coco", tmp_path / "p.json", polygons=True, states=("accepted", "proposed"))
    data = json.loads((tmp_path / "p.json").read_text())
    assert len(data["annotations"]) == 5
    assert all(isinstance(a["segmentation"], list) for a in data["annotations"])
    assert {a["specula_state"] for a in data["annotations"]} == {"accepted", "proposed"}


def test_formats_import_neither_qt_nor_torch():
    import subprocess
    import sys

    code = (
        "import sys, annotation.formats, annotation.formats.project_io;"
        "bad = [m for m in ('PySide6', 'torch', 'onnxruntime') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    assert done.returncode == 0, done.stdout + done.stderr


def test_labelme_file_inside_project_is_added_by_its_own_path(project, tmp_path):
    # another project image has the same file name: the exact file must win over a name match
    (project.root / "other").mkdir()
    Image.new("RGB", (12, 10)).save(project.root / "other" / "a.png")
    shape = {"label": "glass", "points": [[1, 1], [6, 1], [6, 6]], "shape_type": "polygon"}
    (project.root / "other" / "a.json").write_text(
        json.dumps({"shapes": [shape], "imagePath": "a.png", "imageHeight": 10, "imageWidth": 12})
    )
    (project.root / "other" / "evil.json").write_text(
        json.dumps({"shapes": [shape], "imagePath": "../../outside.png", "imageHeight": 10, "imageWidth": 12})
    )
    rep = import_into_project(project, "labelme", project.root / "other")
    assert rep.images_added == ["other/a.png"] and rep.instances_added == 1
    assert any("outside the project folder" in w for w in rep.warnings)
    assert project.instances(project.image_by_path("imgs/a.png").id) == []


def test_imported_labels_mark_their_images_done(project):
    """Imported labels are someone's finished work: "images 5 (new 5), labelled 5" was
    the old report; the images that got accepted labels are done."""
    from annotation.document import ImageStatus

    before = {r.path: r.status for r in project.images()}
    assert all(s is ImageStatus.NEW for s in before.values())
    gt = project.root / "labels"
    gt.mkdir()
    rec = project.images()[0]
    mask = np.zeros(rec.size, np.uint8)
    mask[2:6, 2:6] = 255
    Image.fromarray(mask).save(gt / (rec.path.rsplit("/", 1)[-1].rsplit(".", 1)[0] + ".png"))
    rep = import_into_project(project, "class-masks", gt, class_name="glass")
    assert rep.instances_added == 1
    after = {r.path: r.status for r in project.images()}
    assert after[rec.path] is ImageStatus.DONE
    assert all(after[p] is ImageStatus.NEW for p in after if p != rec.path)


@pytest.mark.parametrize("fmt,out_name", [("coco", "p.json"), ("labelme", "lm"), ("cvat", "p.xml")])
def test_proposals_exported_and_imported_stay_proposals(project, tmp_path, fmt, out_name):
    """Proposals made on another machine come back for review, not as ground truth:
    state, score and origin travel through the file; --as accepted overrides."""
    import shutil

    a = project.image_by_path("imgs/a.png")
    prop = Instance(a.id, "glass", _box(a.size, (2, 2, 12, 12)), InstanceState.PROPOSED, "m@3", 0.77)
    done = Instance(a.id, "mirror", _box(a.size, (20, 5, 30, 15)))
    project.add_instances([prop, done])
    out = tmp_path / out_name
    export_project(project, fmt, out, states=("accepted", "proposed"))
    other_root = tmp_path / "other"
    shutil.copytree(project.root / "imgs", other_root / "imgs")
    for keep, expect in ((True, InstanceState.PROPOSED), (False, InstanceState.ACCEPTED)):
        db = other_root / "specula.db"
        for p in other_root.glob("specula.*"):
            p.unlink()
        with ProjectStore.open(other_root) as other:
            src = out if fmt != "labelme" else out / "imgs"
            rep = import_into_project(other, fmt, src, keep_states=keep)
            assert rep.instances_added == 2, rep.warnings
            got = {i.class_name: i for i in other.instances()}
            assert got["glass"].state is expect and got["mirror"].state is InstanceState.ACCEPTED
            assert got["glass"].origin == "m@3" and got["glass"].score == pytest.approx(0.77)
            assert got["glass"].mask == prop.mask
        assert db.exists()
