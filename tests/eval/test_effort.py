"""The simulated annotator: real edits, honest IoU, costs from the table, the loop."""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from annotation.effort import (
    AnnotatorParams,
    CostTable,
    DegradedTruthSource,
    EffortImage,
    ProposalMask,
    SimulatedAnnotator,
    load_dataset,
    run_effort,
    run_loop,
    saving_group,
)
from annotation.effort.report import plot_loop
from annotation.mask import Mask, rasterize_polygon
from annotation.reroute import reroute
from annotation.resources import asset_path

SIZE = (120, 160)


def _np_iou(a: Mask, b: Mask) -> float:
    """IoU from full arrays, independent of ``Mask.iou``."""
    x, y = a.to_full(), b.to_full()
    union = np.logical_or(x, y).sum()
    return 1.0 if union == 0 else float(np.logical_and(x, y).sum()) / float(union)


def _blob() -> Mask:
    return rasterize_polygon([(20, 20), (90, 25), (100, 80), (60, 100), (25, 70)], SIZE)


def _crack() -> Mask:
    m = Mask.empty(SIZE)
    m.paint_stroke([(10, 10), (60, 40), (110, 45), (150, 100)], 1.0)
    return m.cropped()


def _holed() -> Mask:
    ring = rasterize_polygon([(30, 30), (130, 30), (130, 100), (30, 100)], SIZE)
    return ring.subtract(rasterize_polygon([(60, 50), (100, 50), (100, 80), (60, 80)], SIZE))


@pytest.fixture
def annotator() -> SimulatedAnnotator:
    return SimulatedAnnotator(CostTable.load(), AnnotatorParams())


def test_every_cost_in_the_table_is_documented() -> None:
    text = asset_path("effort_costs.toml").read_text(encoding="utf-8").splitlines()
    table = CostTable.load()
    for key in table.as_dict():
        line = next(i for i, t in enumerate(text) if re.match(rf"{key}\s*=", t))
        assert text[line - 1].startswith("#"), f"cost '{key}' has no comment saying where it comes from"


@pytest.mark.parametrize("truth", [_blob(), _crack(), _holed()], ids=["blob", "crack", "holed"])
def test_manual_labelling_reaches_the_iou_it_reports(annotator: SimulatedAnnotator, truth: Mask) -> None:
    out = annotator.label_manual([("x", truth)]).instances[0]
    assert out.iou == pytest.approx(_np_iou(out.mask, truth))
    assert out.iou >= 0.9
    assert out.seconds == pytest.approx(sum(a.seconds for a in out.actions))
    kinds = {a.kind for a in out.actions}
    assert kinds & {"polygon", "stroke"}  # it drew something


def test_a_hole_is_erased_or_rerouted(annotator: SimulatedAnnotator) -> None:
    out = annotator.label_manual([("x", _holed())]).instances[0]
    assert {"erase", "reroute"} & {a.kind for a in out.actions}
    assert not out.mask.to_full()[65, 80]  # the hole stays empty


def test_a_good_proposal_is_accepted_a_false_one_rejected(annotator: SimulatedAnnotator) -> None:
    truth = _blob()
    far = Mask.empty(SIZE)
    far.paint_disk(150, 110, 6)
    res = annotator.label_assisted([("x", truth)], [ProposalMask(truth.copy(), "x"), ProposalMask(far, "x")])
    inst = res.instances[0]
    c = annotator.costs
    assert inst.mode == "accepted"
    assert inst.seconds == pytest.approx(c.decide + c.accept)
    assert [a.kind for a in res.extra_actions] == ["decide", "reject"]


def test_a_damaged_proposal_is_corrected_by_real_edits(annotator: SimulatedAnnotator) -> None:
    truth = _blob()
    damaged = truth.subtract(rasterize_polygon([(60, 0), (160, 0), (160, 120), (60, 120)], SIZE))
    res = annotator.label_assisted([("x", truth)], [ProposalMask(damaged, "x")])
    inst = res.instances[0]
    assert damaged.iou(truth) < 0.9
    assert inst.mode in ("corrected", "redrawn")
    assert inst.iou == pytest.approx(_np_iou(inst.mask, truth)) and inst.iou >= 0.9
    manual = annotator.label_manual([("x", truth)]).instances[0]
    assert inst.seconds <= manual.seconds + annotator.costs.decide + annotator.costs.reject


def test_a_missed_instance_is_drawn_manually(annotator: SimulatedAnnotator) -> None:
    res = annotator.label_assisted([("x", _blob())], [])
    assert res.instances[0].mode == "missed" and res.instances[0].iou >= 0.9


def _apply(mask: Mask, path) -> Mask:
    res = reroute(mask, path)
    assert res is not None
    out = mask.copy()
    out.write_box(res.box, res.after)
    return out


def test_reroute_pushes_out_and_pulls_in() -> None:
    """The simulator's reroute is the desktop tool's (``annotation.reroute``)."""
    square = rasterize_polygon([(10, 10), (50, 10), (50, 50), (10, 50)], SIZE)
    bump = [(50, 20), (70, 20), (70, 40), (50, 40)]
    grown = _apply(square, bump)
    assert grown.area > square.area and grown.to_full()[30, 65]
    notch = [(10, 20), (30, 20), (30, 40), (10, 40)]
    cut = _apply(square, notch)
    assert cut.area < square.area and not cut.to_full()[30, 20]
    assert square.to_full()[30, 20]  # the input is not changed


def test_thick_errors_are_fixed_with_the_tools_reroute(annotator: SimulatedAnnotator) -> None:
    truth = rasterize_polygon([(20, 30), (100, 30), (100, 110), (20, 110)], SIZE)
    bump = rasterize_polygon([(40, 30), (80, 30), (80, 5), (40, 5)], SIZE)  # 25 px too far out
    notch = rasterize_polygon([(100, 50), (75, 50), (75, 80), (100, 80)], SIZE)  # 25 px short
    start = truth.union(bump).subtract(notch)
    fixed, actions, counts = annotator.correct_counted(start, truth)
    assert fixed.iou(truth) >= 0.9 and fixed.iou(truth) == pytest.approx(_np_iou(fixed, truth))
    assert counts.get("reroute", 0) >= 2 and "reroute" in {a.kind for a in actions}
    assert not any(k.startswith("reroute_") for k in counts)  # no fallback needed here


def test_groups_of_table_2() -> None:
    assert saving_group(97) == "saved > 95 %"
    assert saving_group(80) == "75-95 %"
    assert saving_group(50) == "50-75 %"
    assert saving_group(10) == "< 50 %" and saving_group(-30) == "< 50 %"


def test_on_real_cracks_the_reported_iou_is_the_real_one(need, annotator: SimulatedAnnotator) -> None:
    need("cracks-cfd", "mask")
    images = load_dataset("cracks-cfd", limit=2)
    assert images and all(im.truths for im in images)
    result = run_effort("cracks-cfd", images, DegradedTruthSource(0.5, seed=1), annotator)
    for im, eff in zip(images, result.images):
        for labelling in (eff.manual, eff.assisted):
            for inst in labelling.instances:
                truth = im.truths[inst.gt_index][1]
                assert inst.iou == pytest.approx(_np_iou(inst.mask, truth), abs=1e-9)
    s = result.summary()
    assert s["instances"] == sum(len(im.truths) for im in images)
    assert sum(s["groups"].values()) == s["instances"]
    assert "synthetic" in s["proposals"]


def test_truth_instances_ignore_tiny_components(need) -> None:
    need("cracks-deepcrack", "mask")
    images = load_dataset("cracks-deepcrack", limit=3, min_area=50)
    for im in images:
        assert all(m.area >= 50 for _, m in im.truths)


class _StubTrainer:
    """A fast stand-in for training (tests only): proposals improve with each round."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def train(self, examples, round_index: int) -> DegradedTruthSource:
        self.calls.append(len(examples))
        assert all(len(ex.instances) > 0 for ex in examples)
        return DegradedTruthSource(quality=min(1.0, 0.3 + 0.35 * (round_index + 1)), seed=round_index)


def test_the_loop_retrains_between_rounds(annotator: SimulatedAnnotator, tmp_path) -> None:
    images = []
    for n in range(6):
        blob = rasterize_polygon([(20 + n, 20), (90, 25 + n), (100, 80), (60, 100 - n), (25, 70)], SIZE)
        images.append(EffortImage(tmp_path / f"im{n}.png", SIZE, (("x", blob), ("x", _crack()))))
    trainer = _StubTrainer()
    loop = run_loop("toy", images, 2, trainer, annotator)
    assert trainer.calls == [2, 4]
    assert [r.labelled_before for r in loop.rows] == [0, 2, 4]
    assert loop.rows[0].saved_percent == pytest.approx(0.0)  # no model yet: all by hand
    assert loop.rows[-1].assisted_s_per_image < loop.rows[0].assisted_s_per_image
    png = plot_loop(loop, tmp_path / "loop.png")
    img = cv2.imread(str(png))
    assert img is not None and img.shape[2] == 3
