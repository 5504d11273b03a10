"""Datasets from a project (masks, weak clicks, rejections) and the split by image."""
from __future__ import annotations

import numpy as np
import pytest

from training_helpers import build_project, data_root, need_set
from training.datasets import load_project, split_by_image, split_score


@pytest.fixture
def cracks_project(tmp_path):
    need_set("cracks-cfd")
    ids = sorted(p.stem for p in (data_root() / "cracks-cfd" / "image").glob("*.jpg"))[:4]
    store = build_project(tmp_path / "cfd", "cracks-cfd", ids, "crack", palette="inspection", clicks=True)
    yield store
    store.close()


def test_project_labels_masks_clicks_and_rejections(cracks_project):
    from annotation.document import Instance, InstanceState
    from annotation.mask import Mask

    store = cracks_project
    rec = store.images()[0]
    full = np.zeros(rec.size, bool)
    full[10:30, 10:40] = True
    store.add_instance(Instance(rec.id, "crack", Mask.from_full(full), InstanceState.REJECTED, origin="m@1"))
    data = load_project(store)
    assert data.classes == ["spalling", "rust", "crack"]  # palette drawing order
    assert len(data.images) == 4
    first = next(im for im in data.images if im.image_id == rec.id)
    assert len(first.negatives) == 1 and first.negatives[0][0] == "crack"
    rejected = [c for c in first.clicks if c.source == "rejected"]
    assert len(rejected) == 1 and not rejected[0].positive
    assert full[int(rejected[0].y), int(rejected[0].x)]
    weak = [c for im in data.images for c in im.clicks if c.source == "weak_click"]
    assert any(c.positive for c in weak) and any(not c.positive for c in weak)
    cmap = first.class_map(data.classes)
    assert cmap.shape == rec.size
    assert set(np.unique(cmap)) <= {0, 3}
    assert (cmap == 3).sum() == sum(m.area for _, m in first.instances)
    # the split follows the project-relative path, not where the project folder lies
    assert {im.split_key for im in data.images} == {r.path for r in store.images()}
    summary = data.summary()
    assert summary["images"] == 4 and summary["rejected"] == {"crack": 1}


def test_split_is_by_image_fixed_by_seed_and_never_leaks():
    paths = [f"img_{i:03d}.jpg" for i in range(200)]
    train, val = split_by_image(paths, 0.2, seed=7)
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(paths)
    assert 20 < len(val) < 60
    assert split_by_image(paths, 0.2, seed=7) == (train, val)  # fixed by the seed
    assert split_by_image(paths, 0.2, seed=8)[1] != val
    # adding images never moves an old image across the split
    train2, val2 = split_by_image(paths + [f"new_{i}.jpg" for i in range(50)], 0.2, seed=7)
    assert set(val) <= set(val2) and set(train) <= set(train2)
    # several items of one image (e.g. clicks) land on one side
    items = [(p, k) for p in paths[:30] for k in range(3)]
    tr, va = split_by_image(items, 0.3, seed=1, key=lambda it: it[0])
    assert {p for p, _ in tr}.isdisjoint({p for p, _ in va})


def test_split_keeps_one_image_each_side_when_few():
    for seed in range(20):
        tr, va = split_by_image(["a.jpg", "b.jpg", "c.jpg"], 0.2, seed=seed)
        assert len(tr) >= 1 and len(va) >= 1
    assert 0.0 <= split_score("x", 3) < 1.0


def test_metrics_match_annotation_metrics_on_one_image():
    metrics = pytest.importorskip("annotation.metrics")
    from training.metrics_util import ClassAccumulator

    rng = np.random.default_rng(0)
    gt = np.zeros((60, 80), bool)
    gt[10:40, 20:60] = True
    prob = np.clip(gt * 0.6 + rng.uniform(0, 0.5, gt.shape), 0, 1).astype(np.float32)
    acc = ClassAccumulator()
    acc.add(prob, prob > 0.5, gt)
    res = acc.result()
    assert res["max_fbeta"] == pytest.approx(metrics.max_fbeta(prob, gt), abs=1e-9)
    assert res["mae"] == pytest.approx(metrics.mae(prob, gt), abs=1e-6)
    assert res["iou"] == pytest.approx(metrics.iou(prob > 0.5, gt), abs=1e-9)


def _validation_set(rng):
    """Three images, classes mirror and glass: glass only in the first truth, a glass false
    positive on the third, mirror everywhere; softmax-like maps with a background channel."""
    targets, probs = [], []
    for n in range(3):
        t = np.zeros((30, 40), np.uint8)
        t[5:20, 5 + n : 25] = 1
        if n == 0:
            t[22:28, 10:30] = 2
        p = rng.uniform(0, 0.4, (3, 30, 40))
        p[0] += 0.4  # background: no class reaches 0.5 where it is not boosted
        p[1][t == 1] += 0.5 + 0.1 * n
        p[2][t == 2] += 0.7
        if n == 2:
            p[2, 0:4, 30:38] += 1.5
        p = p / p.sum(0, keepdims=True)
        targets.append(t)
        probs.append(np.round(p * 255) / 255)  # what an 8-bit map on disk holds, so eval reads the same values
    return probs, targets


def test_validation_reports_what_specula_eval_reports(tmp_path):
    """The manifest's validation figures are ``specula eval``'s on the same maps (one definition)."""
    import argparse
    import json

    import cv2

    from specula import eval_cli
    from training.metrics_util import SegmentationMetrics

    probs, targets = _validation_set(np.random.default_rng(5))
    classes = ["mirror", "glass"]
    val = SegmentationMetrics(classes)
    for p, t in zip(probs, targets):
        val.add(p, t)
    res = val.result()
    assert res["per_class"]["glass"]["images_with_class"] == 1
    assert res["per_class"]["glass"]["images_with_false_positives"] == 1
    for k, name in enumerate(classes, start=1):
        pred_dir, gt_dir = tmp_path / f"pred_{name}", tmp_path / f"gt_{name}"
        pred_dir.mkdir()
        gt_dir.mkdir()
        for n, (p, t) in enumerate(zip(probs, targets)):
            cv2.imwrite(str(pred_dir / f"{n}.png"), np.round(p[k] * 255).astype(np.uint8))
            cv2.imwrite(str(gt_dir / f"{n}.png"), (t == k).astype(np.uint8) * 255)
        out = tmp_path / f"{name}.json"
        parser = argparse.ArgumentParser(prog="specula")
        eval_cli.add_parsers(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["eval", str(pred_dir), str(gt_dir), "--protocol", "binary", "--classes", name,
                                  "--json", str(out)])
        assert args.handler(args) == 0
        got = json.loads(out.read_text())["classes"][name]
        want = res["per_class"][name]
        for key in ("iou", "max_fbeta", "mae", "images_with_class", "images_with_false_positives", "pooled_iou"):
            assert got[key] == pytest.approx(want[key], abs=1e-9), key
    assert res["mean_iou"] == pytest.approx(np.mean([res["per_class"][c]["iou"] for c in classes]))


def test_validation_hard_prediction_is_the_map_at_one_half_not_the_argmax():
    from training.metrics_util import SegmentationMetrics

    # three channels: background 0.4, mirror 0.45, glass 0.15: the argmax says mirror,
    # but no class reaches 0.5, so the product proposes nothing here
    probs = np.zeros((3, 2, 2))
    probs[0], probs[1], probs[2] = 0.4, 0.45, 0.15
    target = np.ones((2, 2), np.uint8)
    m = SegmentationMetrics(["mirror", "glass"])
    m.add(probs, target)
    assert m.result()["per_class"]["mirror"]["iou"] == 0.0


def test_undone_weak_clicks_are_not_training_labels(tmp_path):
    """The desktop logs weak_click_undone {log_id} on undo; that click must not train."""
    from annotation.store import ProjectStore
    from training.datasets import load_project

    import numpy as np
    from PIL import Image

    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    store = ProjectStore.open(tmp_path)
    image_id = store.images()[0].id
    kept = store.log("weak_click", image_id=image_id, class_name="crack", x=5.0, y=6.0, positive=True)
    gone = store.log("weak_click", image_id=image_id, class_name="crack", x=20.0, y=21.0, positive=False)
    store.log("weak_click_undone", image_id=image_id, class_name="crack", log_id=gone)
    data = load_project(store)
    clicks = [c for im in data.images for c in im.clicks]
    assert [(c.x, c.y, c.positive) for c in clicks] == [(5.0, 6.0, True)]
    assert kept != gone
    store.close()
