"""004's yes/no review, simulated (``specula bench effort --yes-no``): questions answered
from the truth, with clusters and with one question per proposal; duplicates of accepted
masks dropped; the counts add up; on real GDD photos with the shipped model."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from annotation.effort.yes_no import (
    Candidate,
    YesNoParams,
    ask_clusters,
    ask_each,
    deduplicate,
    truth_iou,
    write_yes_no_report,
)
from annotation.mask import Mask, rasterize_polygon

SIZE = (100, 120)


def _square(x: int, y: int, s: int) -> Mask:
    return rasterize_polygon([(x, y), (x + s, y), (x + s, y + s), (x, y + s)], SIZE)


def test_truth_iou_takes_the_best_instance_of_the_same_class_only() -> None:
    a, b = _square(10, 10, 30), _square(60, 50, 30)
    truths = [("glass", a), ("mirror", b)]
    assert truth_iou(a, "glass", truths) == pytest.approx(1.0)
    assert truth_iou(b, "glass", truths) == 0.0  # the mirror truth does not count for a glass mask
    assert 0.0 < truth_iou(_square(12, 12, 30), "glass", truths) < 1.0


def test_duplicates_of_accepted_and_repeats_of_rejected_masks_are_not_asked() -> None:
    acc, rej = _square(10, 10, 30), _square(60, 50, 30)
    cands = [Candidate(1, "im", "glass", _square(11, 11, 30), 0.9),  # IoU ~0.88 with the accepted: duplicate
             Candidate(2, "im", "glass", rej.copy(), 0.8),  # identical to a rejected one: repeat
             Candidate(3, "im", "glass", _square(58, 48, 30), 0.8),  # near the rejected one but changed: asked
             Candidate(4, "im", "mirror", acc.copy(), 0.7),  # same pixels, other class: asked
             Candidate(5, "other", "glass", acc.copy(), 0.7)]  # same pixels, other image: asked
    ask, dup, rep = deduplicate(cands, {"im": [("glass", acc)]}, {"im": [("glass", rej)]}, YesNoParams())
    assert dup == [1] and rep == [2]
    assert [c.id for c in ask] == [3, 4, 5]


def _grouped_candidates(n: int = 24) -> tuple[list[Candidate], set[int]]:
    """Two tight groups of embeddings: the first all good, the second all bad."""
    rng = np.random.default_rng(0)
    cands, good = [], set()
    for k in range(n):
        centre = 0.0 if k < n // 2 else 8.0
        cands.append(Candidate(10 + k, f"im{k}", "glass", _square(10, 10, 20), 0.9, rng.normal(centre, 0.2, 6)))
        if k < n // 2:
            good.add(10 + k)
    return cands, good


def test_clusters_ask_fewer_questions_and_accept_what_one_question_each_accepts() -> None:
    cands, good = _grouped_candidates()
    each = ask_each(cands, good)
    assert each.questions == 24 and sorted(each.accepted) == sorted(good)
    clustered = ask_clusters(cands, good, YesNoParams(target_size=12, representatives=3))
    assert clustered.questions == 6  # three representatives for each of the two clusters
    assert sorted(clustered.accepted) == sorted(good)
    assert sorted(clustered.accepted + clustered.rejected) == sorted(c.id for c in cands)


def test_a_wrong_mask_in_a_good_cluster_is_accepted_unseen_and_counted_wrong() -> None:
    from annotation.clusters import ClusterReview
    from annotation.effort.yes_no import cluster_items

    cands, good = _grouped_candidates()
    params = YesNoParams(target_size=12, representatives=3)
    first = ClusterReview(cluster_items(cands), target_size=12, representatives=3).current()
    assert first is not None and set(first.members) <= good
    hidden = next(m for m in first.members if m not in first.representatives)
    good.discard(hidden)  # a bad mask the representatives do not show
    out = ask_clusters(cands, good, params)
    accepted = set(out.accepted)
    assert hidden in accepted  # the cluster's yes carried it
    assert accepted - good == {hidden}
    assert len(accepted) == len(good & accepted) + 1


@pytest.mark.slow
def test_real_glass_review_asks_fewer_questions_with_clusters_and_collects_true_good_masks(
        tmp_path: Path, need: Callable[..., Path]) -> None:
    """The shipped glass model on 16 held-out GDD photos (4 more for validation), no
    retraining: clusters ask fewer questions than one per proposal, every accepted mask
    counted good really has IoU > t_iou with the truth file, the counts add up, the
    project holds the decisions, and a second iteration asks nothing already accepted."""
    from annotation.document import InstanceState
    from annotation.effort import CostTable, load_dataset
    from annotation.store import ProjectStore
    from specula.bench_cli import _held_out_stems
    from specula.effort_yes_no import run_yes_no_bench

    gdd = need("glass-gdd", "mask")
    args = argparse.Namespace(val_images=4, t_iou=0.8, representatives=3, agreement=0.8, cluster_size=12,
                              out=str(tmp_path), model="mirror-glass-semantic", registry=None, train_cmd=None,
                              epochs=1, min_score=0.5, iterations=2)
    images = load_dataset("glass-gdd", 20, only_stems=_held_out_stems(args.model, "glass-gdd"))
    result, notes = run_yes_no_bench(args, images, "glass-gdd", CostTable.load(), lambda s: None, train=False)

    rows = {(r.mode, r.iteration): r for r in result.rows}
    clusters, each = rows["clusters", 1], rows["per-proposal", 1]
    assert each.questions == each.asked_about == each.proposals > 10
    assert clusters.proposals == each.proposals  # the same model on the same images
    assert clusters.questions < each.questions
    for r in result.rows:
        if r.iteration:
            assert r.accepted == r.good + r.wrong
            assert r.good + r.good_rejected == r.good_available
    assert each.wrong == 0 and each.good == each.good_available  # one question each: the truth decides
    assert each.seconds_per_mask == pytest.approx(each.questions * 1.6 / each.accepted)

    # the good masks, checked against the truth PNG with plain numpy
    folder = tmp_path / "yes_no_project_glass-gdd_per-proposal"
    with ProjectStore.open(folder, scan=False) as store:
        accepted = store.instances(states=[InstanceState.ACCEPTED])
        logged = store.interactions(actions=["accept", "reject"])
        paths = {r.id: r.path for r in store.images()}
        assert not any(store.image(i).status == "done" for i in paths)  # partial labels: nothing marked done
    assert len(accepted) == each.good
    assert len([x for x in logged if x.action == "accept"]) == each.good
    for inst in accepted[:4]:
        truth = cv2.imread(str(gdd / (Path(paths[inst.image_id]).stem + ".png")), cv2.IMREAD_GRAYSCALE) > 127
        pred = inst.mask.to_full()
        n, labels = cv2.connectedComponents(truth.astype(np.uint8), connectivity=8)
        best = max(np.count_nonzero(pred & (labels == k)) / np.count_nonzero(pred | (labels == k))
                   for k in range(1, n))
        assert best > 0.8

    # no retraining: the same proposals again, those accepted are duplicates, the rest repeats
    second = rows["per-proposal", 2]
    assert second.duplicates == each.accepted and second.questions == 0
    assert rows["clusters", 2].duplicates == clusters.accepted

    files = write_yes_no_report(result, tmp_path / "report", notes)
    assert "| clusters" in files[0].read_text(encoding="utf-8")


@pytest.mark.parametrize("extra, message", [
    ([], "--yes-no needs --model"),
    (["--model", "mirror-glass-semantic", "--t-iou", "1.5"], "--t-iou must be in (0, 1)"),
    (["--model", "mirror-glass-semantic", "--agreement", "0.3"], "--agreement must be between 0.5 and 1"),
    (["--model", "mirror-glass-semantic", "--loop"], "does not combine with --loop"),
])
def test_bench_yes_no_bad_input_exits_2(extra: list[str], message: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    from specula import bench_cli

    rc = bench_cli.main(["bench", "effort", "--dataset", "glass-gdd", "--yes-no", "--out", str(tmp_path), *extra])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_loop_registry_starts_with_the_initial_model_as_version_one(tmp_path):
    """Retraining in the loop fine-tunes from (and is judged against) the model it started
    with, as "Train now" does: the loop's registry holds that model as its version 1."""
    from inference.engine import Engine
    from inference.registry import Registry
    from specula.effort_yes_no import seed_loop_registry

    loop = tmp_path / "registry"
    seed_loop_registry("mirror-glass-semantic", None, "glass-loop", loop)
    reg = Registry(loop)
    info = reg.active("glass-loop")
    assert info.version == "1" and info.has("model.onnx") and not info.read_only
    assert info.manifest.input_size == (384, 384) and info.manifest.classes[0] == "background"
    # the copy loads and proposes (its record was re-signed by the loop's registry)
    rgb = np.full((96, 128, 3), 120, np.uint8)
    assert isinstance(Engine(reg, device="cpu").propose(rgb, model="glass-loop", image_key="k"), list)
    seed_loop_registry("mirror-glass-semantic", None, "glass-loop", loop)  # a second call adds nothing
    assert reg.versions("glass-loop") == ["1"]
