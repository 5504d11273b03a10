"""Metrics against numbers worked out by hand, and COCO AP against pycocotools run directly."""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest

from annotation import metrics
from annotation.mask import Mask


def _grid(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in r] for r in rows])


PRED = _grid(["##..",
              "##..",
              "....",
              "...."])
GT = _grid(["###.",
            "#...",
            "##..",
            "...."])
# |P| = 4, |G| = 6, |P & G| = 3, |P | G| = 7


def test_iou_by_hand() -> None:
    assert metrics.iou(PRED, GT) == pytest.approx(3 / 7)
    assert metrics.iou(Mask.from_full(PRED), Mask.from_full(GT)) == pytest.approx(3 / 7)
    assert metrics.iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0


def test_mae_by_hand() -> None:
    # hard masks: 4 wrong pixels (1 false positive, 3 misses) of 16
    assert metrics.mae(PRED, GT) == pytest.approx(4 / 16)
    prob = np.array([[0.5, 0.25], [1.0, 0.0]])
    gt = np.array([[True, False], [True, True]])
    assert metrics.mae(prob, gt) == pytest.approx((0.5 + 0.25 + 0.0 + 1.0) / 4)


def test_fbeta_of_a_hard_mask_by_hand() -> None:
    p, r = 3 / 4, 3 / 6
    expected = 1.3 * p * r / (0.3 * p + r)  # 0.67241...
    assert metrics.max_fbeta(PRED, GT) == pytest.approx(expected)
    assert expected == pytest.approx(0.6724138, abs=1e-6)


def test_max_fbeta_of_a_probability_map_by_hand() -> None:
    # four pixels: truth 1, 1, 0, 0; probabilities 0.9, 0.4, 0.6, 0.1
    prob = np.array([[0.9, 0.4], [0.6, 0.1]])
    gt = np.array([[True, True], [False, False]])
    # thresholds keep: {0.9} -> P 1, R .5; {0.9, .6} -> P .5, R .5; {.9, .6, .4} -> P 2/3, R 1;
    # all -> P .5, R 1
    f = lambda p, r: 1.3 * p * r / (0.3 * p + r)  # noqa: E731
    expected = max(f(1, 0.5), f(0.5, 0.5), f(2 / 3, 1), f(0.5, 1))
    assert metrics.max_fbeta(prob, gt) == pytest.approx(expected)
    assert expected == pytest.approx(0.8125)  # f(1, 0.5): precision weighs more with beta^2 = 0.3


def test_dataset_scores_average_curves_and_images() -> None:
    a_pred, a_gt = PRED, GT
    b_pred = np.zeros((4, 4), bool)
    b_gt = np.zeros((4, 4), bool)
    b_gt[3, 3] = True
    s = metrics.binary_scores([(a_pred, a_gt), (b_pred, b_gt)])
    assert s.images == 2 and s.images_with_class == 2
    assert s.iou == pytest.approx((3 / 7 + 0.0) / 2)
    assert s.mae == pytest.approx((4 / 16 + 1 / 16) / 2)
    # mean precision (3/4 + 0) / 2, mean recall (1/2 + 0) / 2
    p, r = 3 / 8, 1 / 4
    assert s.max_fbeta == pytest.approx(1.3 * p * r / (0.3 * p + r))
    assert s.mean_image_max_fbeta == pytest.approx((metrics.max_fbeta(a_pred, a_gt) + 0.0) / 2)
    assert s.pooled_iou == pytest.approx(3 / (7 + 1))


def test_images_whose_truth_lacks_the_class_add_only_to_mae_and_false_positives() -> None:
    empty = np.zeros((4, 4), bool)
    speck = empty.copy()
    speck[0, 3] = True
    with_empty = metrics.binary_scores([(PRED, GT), (empty, empty), (speck, empty)])
    alone = metrics.binary_scores([(PRED, GT)])
    assert with_empty.iou == pytest.approx(alone.iou) == pytest.approx(3 / 7)  # no "perfect" empty images
    assert with_empty.max_fbeta == pytest.approx(alone.max_fbeta)
    assert with_empty.images == 3 and with_empty.images_with_class == 1
    assert with_empty.images_with_false_positives == 1
    assert with_empty.mae == pytest.approx((4 / 16 + 0 + 1 / 16) / 3)
    assert with_empty.pooled_iou == pytest.approx(3 / (7 + 1))  # the speck counts in the pooled figure
    none = metrics.binary_scores([(speck, empty)])
    assert none.iou is None and none.max_fbeta is None and none.images_with_false_positives == 1


def test_per_image_scores_of_maps_and_a_class_index_truth() -> None:
    """What a trainer hands over: (K, H, W) maps with a background channel and a class-index map."""
    rng = np.random.default_rng(3)
    target = np.zeros((6, 8), np.int64)
    target[1:4, 1:5] = 1  # mirror; no glass in the truth
    probs = rng.uniform(0, 1, (3, 6, 8))
    probs /= probs.sum(0, keepdims=True)
    out = metrics.per_image_scores(probs, target, [None, "mirror", "glass"])
    assert set(out) == {"mirror", "glass"}
    m = out["mirror"]
    assert m.has_class and m.iou == pytest.approx(metrics.iou(probs[1] >= 0.5, target == 1))
    assert m.max_fbeta == pytest.approx(metrics.max_fbeta(probs[1], target == 1))
    assert m.mae == pytest.approx(metrics.mae(probs[1], target == 1))
    g = out["glass"]
    assert not g.has_class and g.iou is None and g.false_positive == bool((probs[2] >= 0.5).any())
    acc = metrics.ScoreAccumulator(["mirror", "glass"])
    acc.add(out)
    res = acc.result()
    assert res["per_class"]["glass"]["iou"] is None
    assert res["mean_iou"] == pytest.approx(m.iou)  # the mean is over classes that have images
    with pytest.raises(ValueError):
        metrics.per_image_scores(probs, target, ["mirror", "glass"])


def test_opposite_mask_scores_show_confusion() -> None:
    size = (4, 4)
    mirror_gt = PRED.copy()
    glass_gt = np.zeros(size, bool)
    glass_gt[3] = True
    # a model that calls the mirror glass
    preds = [{"glass": mirror_gt.astype(float)}]
    gts = [{"mirror": mirror_gt, "glass": glass_gt}]
    out = metrics.class_scores(preds, gts, ["mirror", "glass"], [size], [("glass", "mirror"), ("mirror", "glass")])
    assert out["glass"].iou == 0.0
    assert out["glass->mirror"].iou == 1.0  # the glass prediction is exactly the mirror
    assert out["mirror->glass"].iou == 0.0
    assert out["mirror"].mae == pytest.approx(4 / 16)


def _coco_direct(gt_file, results) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats[:3]]


def _ours(gt_file, results) -> dict:
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
    cats = {c["id"]: c["name"] for c in gt.dataset["categories"]}
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt.dataset["images"]}
    truth: dict = {k: [] for k in sizes}
    for a in gt.dataset["annotations"]:
        truth[a["image_id"]].append(metrics.CocoInstance(cats[a["category_id"]], gt.annToRLE(a), 1.0,
                                                         bool(a.get("iscrowd", 0))))
    pred: dict = {k: [] for k in sizes}
    for r in results:
        pred[r["image_id"]].append(metrics.CocoInstance(cats[r["category_id"]], r["segmentation"], r["score"]))
    return metrics.coco_mask_ap(truth, pred, sizes, [cats[c] for c in sorted(cats)], per_class=False)


def _as_results(gt_file, shift: int = 0) -> list[dict]:
    from pycocotools import mask as cm
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
    out = []
    for n, a in enumerate(gt.dataset["annotations"]):
        if a.get("iscrowd", 0):
            continue
        m = gt.annToMask(a)
        if shift:
            m = np.roll(m, shift * (1 + n % 2), axis=1)
        rle = cm.encode(np.asfortranarray(m.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": rle,
                    "score": 0.9 - 0.1 * (n % 3)})
    return out


def test_coco_ap_truth_against_itself_is_one(need) -> None:
    gt_file = need("formats", "datumaro", "coco_dataset", "coco_instances", "annotations", "instances_val.json")
    results = _as_results(gt_file)
    ours = _ours(gt_file, results)
    assert ours["AP"] == pytest.approx(1.0)
    assert [ours["AP"], ours["AP50"], ours["AP75"]] == pytest.approx(_coco_direct(gt_file, results))


@pytest.mark.parametrize("shift", [1, 3, 8])
def test_coco_ap_of_a_perturbed_prediction_matches_cocoeval(shift: int, need) -> None:
    gt_file = need("formats", "sahi-coco", "terrain2_coco.json")
    results = _as_results(gt_file, shift)
    ours = _ours(gt_file, results)
    direct = _coco_direct(gt_file, results)
    assert [ours["AP"], ours["AP50"], ours["AP75"]] == pytest.approx(direct)
    assert ours["AP"] < 1.0


def test_coco_ap_with_no_predictions_is_zero() -> None:
    m = Mask.from_full(PRED)
    out = metrics.coco_mask_ap({"a": [metrics.CocoInstance("x", m)]}, {}, {"a": (4, 4)})
    assert out["AP"] == 0.0 and out["n_pred"] == 0
