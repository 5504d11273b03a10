"""The simulated annotator: real edits, honest IoU, costs from the table, the loop, and the
fairness rules of issue 12 (one stopping rule, no hindsight, charged bulk rejects, cheapest
manual polygons), each shown on a constructed case where the old rule changes the verdict."""
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
    ImageLabelling,
    ProposalMask,
    SimulatedAnnotator,
    load_dataset,
    run_effort,
    run_loop,
    saving_group,
)
from annotation.effort.costs import polygon_cost
from annotation.effort.geometry import outline_polygons
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


# ------------------------------------------------------------------ issue 12: a fair benchmark
def _square(x0: int = 40, y0: int = 30, side: int = 60) -> Mask:
    full = np.zeros(SIZE, bool)
    full[y0 : y0 + side, x0 : x0 + side] = True
    return Mask.from_full(full)


def _verdict(manual_seconds: float, assisted_seconds: float) -> str:
    return "assisted saves time" if assisted_seconds < manual_seconds else "assisted costs time"


def test_the_manual_polygon_is_the_cheapest_that_reaches_the_target(annotator: SimulatedAnnotator) -> None:
    truth = rasterize_polygon([(20, 20), (120, 22), (125, 100), (30, 95)], SIZE)
    out = annotator.draw(truth, "x")
    polygons = [a for a in out.actions if a.kind == "polygon"]
    assert len(polygons) == 1 and polygons[0].vertices == 4  # a quadrilateral: four clicks
    assert out.iou >= 0.9 and out.iou == pytest.approx(_np_iou(out.mask, truth))
    # a stricter target needs more vertices on a curved outline, never fewer
    disc = Mask.empty(SIZE)
    disc.paint_disk(80, 60, 40)
    loose = SimulatedAnnotator(annotator.costs, AnnotatorParams(target_iou=0.9)).cheapest_polygon(disc)
    strict = SimulatedAnnotator(annotator.costs, AnnotatorParams(target_iou=0.99)).cheapest_polygon(disc)
    assert loose[0].iou(disc) >= 0.9 and strict[0].iou(disc) >= 0.99
    assert loose[1] < strict[1]


def test_bias_perfect_manual_polygons_would_change_the_verdict(annotator: SimulatedAnnotator) -> None:
    """A square pane with small teeth: the old manual side traced every tooth."""
    full = _square().to_full()
    for k in range(0, 60, 6):  # 3-px teeth all round: a person does not click each of them
        full[27:30, 40 + k : 43 + k] = full[90:93, 40 + k : 43 + k] = True
        full[30 + k : 33 + k, 37:40] = full[30 + k : 33 + k, 100:103] = True
    truth = Mask.from_full(full)
    proposal = truth.subtract(rasterize_polygon([(85, 0), (160, 0), (160, 120), (85, 120)], SIZE))
    manual = annotator.draw(truth, "x")
    assisted = annotator.label_assisted([("x", truth)], [ProposalMask(proposal, "x")]).instances[0]
    assert manual.iou >= 0.9 and assisted.iou >= 0.9 and assisted.mode == "corrected"
    c = annotator.costs
    # the old manual baseline: the outline traced at 1.5 px, a vertex at every tooth corner
    old_vertices = sum(len(r) for r in outline_polygons(truth.cropped().array, 1.5))
    old_manual = c.decide + c.set_class + polygon_cost(c, old_vertices)
    assert old_vertices > 40 and [a.vertices for a in manual.actions if a.kind == "polygon"] == [4]
    assert _verdict(old_manual, assisted.seconds) == "assisted saves time"
    assert _verdict(manual.seconds, assisted.seconds) == "assisted costs time"


def test_bias_different_stopping_rules_would_change_the_verdict(annotator: SimulatedAnnotator) -> None:
    """Neither side can reach the target: the old assisted side kept its cheapest unfinished
    mask, the manual side its most accurate; now both keep the most accurate."""
    full = _square(42, 30).to_full()
    yy, xx = np.mgrid[: SIZE[0], : SIZE[1]]
    full[(yy % 3 == 1) & (xx % 3 == 1)] = False  # single-pixel holes no tool fixes: IoU stays < 0.9
    truth = Mask.from_full(full)
    proposal = Mask.from_full(full & ~((yy % 2 == 1) & (xx % 2 == 1)))  # more single-pixel holes
    assert 0.5 <= proposal.iou(truth) < 0.9
    manual = annotator.draw(truth, "x")
    assert manual.iou < 0.9  # the polygon fills the holes; nothing more helps
    assert [a.vertices for a in manual.actions if a.kind == "polygon"] == [4]
    res = annotator.label_assisted([("x", truth)], [ProposalMask(proposal, "x")], ImageLabelling([manual]))
    fair = res.instances[0]
    c = annotator.costs
    # the correction stalls at once; it is abandoned and the object drawn: both charged
    assert fair.mode == "abandoned" and fair.iou == pytest.approx(manual.iou)
    assert fair.seconds == pytest.approx(c.decide + c.reject + manual.seconds)
    # the old rule: of two unfinished paths, the cheaper one -- accepting the stalled mask
    stalled = annotator.correct(proposal, truth)
    assert stalled.ended == "stalled" and not stalled.actions
    old_assisted = min(c.decide + stalled.seconds + c.accept, c.decide + c.reject + manual.seconds)
    assert old_assisted == pytest.approx(c.decide + c.accept)
    assert _verdict(manual.seconds, old_assisted) == "assisted saves time"
    assert _verdict(manual.seconds, fair.seconds) == "assisted costs time"


def test_bias_hindsight_would_change_the_verdict(annotator: SimulatedAnnotator) -> None:
    """One pane with a perfect proposal, one whose proposal looks worth correcting (IoU
    0.86) but is riddled with small holes: correcting it costs more than drawing it. The old
    annotator knew that and redrew; a person corrects what looks nearly right."""
    good = _square(5, 5, 40)
    riddled_truth = _square(70, 40, 60)
    full = riddled_truth.to_full()
    for y in range(42, 98, 8):
        for x in range(72, 128, 8):
            full[y : y + 3, x : x + 3] = False
    riddled = Mask.from_full(full)
    assert 0.5 <= riddled.iou(riddled_truth) < 0.9
    truths = [("x", good), ("x", riddled_truth)]
    props = [ProposalMask(good.copy(), "x", 0.9), ProposalMask(riddled, "x", 0.8)]
    manual = annotator.label_manual(truths)
    fair = annotator.label_assisted(truths, props, manual)
    assert [i.mode for i in fair.instances] == ["accepted", "corrected"]
    assert all(i.iou >= 0.9 for i in fair.instances)
    c = annotator.costs
    correction = c.decide + annotator.correct(riddled, riddled_truth).seconds + c.accept
    redraw = c.decide + c.reject + manual.instances[1].seconds
    assert redraw < correction  # only hindsight knows this
    old_assisted = fair.instances[0].seconds + min(correction, redraw)
    assert fair.instances[1].seconds == pytest.approx(correction)
    assert _verdict(manual.seconds, old_assisted) == "assisted saves time"
    assert _verdict(manual.seconds, fair.seconds) == "assisted costs time"


def test_bias_free_bulk_reject_would_change_the_verdict(annotator: SimulatedAnnotator) -> None:
    """A perfect proposal and a dozen false ones: the old annotator cleared any number with
    one look and one key."""
    truth = _square()
    blobs = []
    for n in range(12):
        blob = Mask.empty(SIZE)
        blob.paint_disk(10 + 12 * n, 110, 3)
        blobs.append(ProposalMask(blob.cropped(), "x", 0.6))
    manual = annotator.label_manual([("x", truth)])
    fair = annotator.label_assisted([("x", truth)], [ProposalMask(truth.copy(), "x", 0.9)] + blobs, manual)
    c = annotator.costs
    kinds = [a.kind for a in fair.extra_actions]
    assert kinds == ["decide"] + ["glance"] * 12 + ["reject_rest"]
    assert fair.instances[0].mode == "accepted"
    old_assisted = fair.instances[0].seconds + c.decide + c.reject
    assert _verdict(manual.seconds, old_assisted) == "assisted saves time"
    assert _verdict(manual.seconds, fair.seconds) == "assisted costs time"
    # one left over is one decision; none, nothing
    one = annotator.label_assisted([("x", truth)], [ProposalMask(truth.copy(), "x")] + blobs[:1], manual)
    assert [a.kind for a in one.extra_actions] == ["decide", "reject"]
    assert annotator.clear_left_over(0) == []


def test_a_proposal_not_worth_correcting_is_redrawn_at_sight(annotator: SimulatedAnnotator) -> None:
    truth = _square()
    sliver = rasterize_polygon([(40, 30), (60, 30), (60, 90), (40, 90)], SIZE)  # a third of the pane
    assert sliver.iou(truth) < annotator.params.correct_min_iou
    manual = annotator.label_manual([("x", truth)])
    inst = annotator.label_assisted([("x", truth)], [ProposalMask(sliver, "x")], manual).instances[0]
    c = annotator.costs
    assert inst.mode == "redrawn" and not {"stroke", "erase", "reroute"} & {a.kind for a in inst.actions[:3]}
    assert inst.seconds == pytest.approx(c.decide + c.reject + manual.instances[0].seconds)


def test_fragments_inside_the_object_are_merged(annotator: SimulatedAnnotator) -> None:
    truth = _square()
    left = rasterize_polygon([(40, 30), (69, 30), (69, 89), (40, 89)], SIZE)
    right = rasterize_polygon([(70, 30), (99, 30), (99, 89), (70, 89)], SIZE)
    res = annotator.label_assisted([("x", truth)], [ProposalMask(left, "x", 0.9), ProposalMask(right, "x", 0.8)])
    inst = res.instances[0]
    assert inst.mode == "accepted" and inst.iou == pytest.approx(1.0)
    assert [a.kind for a in inst.actions] == ["decide", "decide", "merge", "accept"]
    assert res.extra_actions == []


def test_the_same_time_cap_ends_both_sides(annotator: SimulatedAnnotator) -> None:
    """With a cap too short to finish, both sides stop there and keep the most accurate mask."""
    capped = SimulatedAnnotator(annotator.costs, AnnotatorParams(instance_cap_s=12.0, correction_cap_s=12.0))
    truth = _crack()
    manual = capped.draw(truth, "x")
    assert manual.capped and manual.iou < 0.9
    # no gesture starts after the cap: the last one began before it
    assert sum(a.seconds for a in manual.actions[:-1]) < 12.0
    wide = truth.dilate(1)
    inst = capped.label_assisted([("x", truth)], [ProposalMask(wide, "x")], ImageLabelling([manual])).instances[0]
    assert inst.capped and inst.iou < 0.9
    assert sum(a.seconds for a in inst.actions[:-2]) < 12.0  # the last gesture, then accept or reject
    assert inst.iou == pytest.approx(_np_iou(inst.mask, truth))


def test_gestures_that_did_not_help_are_charged(annotator: SimulatedAnnotator) -> None:
    """An undone gesture costs the gesture and the undo, on both sides alike."""
    truth = _holed()
    res = annotator.correct(truth.union(_square(60, 50, 40)), truth)
    charged = sum(a.seconds for a in res.actions)
    assert charged == pytest.approx(res.seconds)
    undone = res.tally.get("undone", 0) + res.tally.get("reroute_no_gain", 0) + res.tally.get("reroute_wrong_side", 0)
    assert sum(a.kind == "undo" for a in res.actions) == undone


def test_held_out_keys_count_only_for_their_own_data_set() -> None:
    from specula.bench_cli import held_out_stems

    keys = ["cracks-cfd/image/003.jpg", "cracks-deepcrack/image/11123.jpg", "cracks-deepcrack/image/003.jpg", "7.jpg"]
    assert held_out_stems(keys, "cracks-cfd") == {"003", "7"}
    assert held_out_stems(keys, "cracks-deepcrack") == {"11123", "003", "7"}

