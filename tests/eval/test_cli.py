"""``specula eval`` and ``specula bench effort``: tables, JSON, exit codes."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from annotation import metrics
from annotation.document import Instance, InstanceState
from annotation.mask import Mask
from annotation.store import ProjectStore
from specula import bench_cli, eval_cli


def _run(module, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="specula")
    module.add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def _masks(tmp_path: Path) -> tuple[Path, Path, list[np.ndarray], list[np.ndarray]]:
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    rng = np.random.default_rng(0)
    gts, preds = [], []
    for n in range(3):
        g = np.zeros((40, 50), np.uint8)
        g[5 + n : 25, 10 : 30 + n] = 255
        p = np.clip(g.astype(float) / 255 * 0.8 + rng.uniform(0, 0.3, g.shape), 0, 1)
        p8 = np.round(p * 255).astype(np.uint8)
        cv2.imwrite(str(gt_dir / f"{n}.png"), g)
        cv2.imwrite(str(pred_dir / f"{n}.png"), p8)
        gts.append(g > 127)
        preds.append(p8)
    return pred_dir, gt_dir, preds, gts


def test_eval_binary_folders_matches_the_metrics(tmp_path: Path, capsys) -> None:
    pred_dir, gt_dir, preds, gts = _masks(tmp_path)
    out = tmp_path / "scores.json"
    rc = _run(eval_cli, ["eval", str(pred_dir), str(gt_dir), "--protocol", "binary", "--classes", "glass",
                         "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "glass" in text and "IoU" in text
    got = json.loads(out.read_text())["classes"]["glass"]
    want = metrics.binary_scores(zip(preds, gts))
    assert got["iou"] == pytest.approx(want.iou)
    assert got["max_fbeta"] == pytest.approx(want.max_fbeta)
    assert got["mae"] == pytest.approx(want.mae)
    assert got["images"] == 3 and got["images_with_class"] == 3


def test_eval_mirror_glass_reports_opposite_masks(tmp_path: Path, capsys) -> None:
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    gt = np.zeros((30, 40, 3), np.uint8)
    gt[2:12, 2:20] = (0, 255, 0)  # mirror (RGB)
    gt[15:28, 5:35] = (255, 0, 0)  # glass
    pred = np.zeros_like(gt)
    pred[2:12, 2:20] = (255, 0, 0)  # the mirror called glass
    cv2.imwrite(str(gt_dir / "a.png"), gt[..., ::-1])
    cv2.imwrite(str(pred_dir / "a.png"), pred[..., ::-1])
    out = tmp_path / "s.json"
    assert _run(eval_cli, ["eval", str(pred_dir), str(gt_dir), "--json", str(out)]) == 0
    classes = json.loads(out.read_text())["classes"]
    assert classes["glass->mirror"]["iou"] == pytest.approx(1.0)
    assert classes["mirror"]["iou"] == pytest.approx(0.0)
    assert "opposite mask" in capsys.readouterr().out


def test_eval_projects_coco_protocol(tmp_path: Path) -> None:
    size = (30, 40)
    truth = Mask.empty(size)
    truth.paint_disk(20, 15, 8)
    shifted = Mask.empty(size)
    shifted.paint_disk(22, 15, 8)
    folders = {}
    for name, state, mask, score in (("gt", InstanceState.ACCEPTED, truth, None),
                                     ("pred", InstanceState.PROPOSED, shifted, 0.8)):
        folder = tmp_path / name
        folder.mkdir()
        cv2.imwrite(str(folder / "img.png"), np.zeros((*size, 3), np.uint8))
        with ProjectStore.open(folder) as store:
            image_id = store.images()[0].id
            store.ensure_class("glass")
            store.add_instance(Instance(image_id, "glass", mask.cropped(), state, score=score))
        folders[name] = folder
    out = tmp_path / "coco.json"
    assert _run(eval_cli, ["eval", str(folders["pred"]), str(folders["gt"]), "--protocol", "coco",
                           "--json", str(out)]) == 0
    coco = json.loads(out.read_text())["coco"]
    expected = 1.0 if shifted.iou(truth) >= 0.75 else 0.0
    assert coco["AP50"] == pytest.approx(1.0) and coco["AP75"] == pytest.approx(expected)


def test_eval_bad_input_exits_2(tmp_path: Path, capsys) -> None:
    assert _run(eval_cli, ["eval", str(tmp_path / "nope"), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("specula eval:") and "\n" not in err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert _run(eval_cli, ["eval", str(bad), str(bad)]) == 2


def test_bench_effort_writes_the_table(need, tmp_path: Path, capsys) -> None:
    need("cracks-cfd", "mask")
    out = tmp_path / "reports"
    rc = _run(bench_cli, ["bench", "effort", "--dataset", "cracks-cfd", "--limit", "2", "--source",
                          "degraded-truth", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "manual s/inst" in text and "synthetic" in text
    summary = json.loads((out / "effort_cracks-cfd.json").read_text())["summary"]
    assert summary["images"] == 2 and summary["instances"] > 0
    assert (out / "effort.md").exists()


def test_bench_effort_targets_side_by_side_and_repeatable_from_the_proposals_file(need, tmp_path: Path,
                                                                                   capsys) -> None:
    need("cracks-cfd", "mask")
    out = tmp_path / "reports"
    base = ["bench", "effort", "--dataset", "cracks-cfd", "--limit", "2"]
    assert _run(bench_cli, base + ["--source", "degraded-truth", "--target-iou", "0.9", "0.75", "--out", str(out)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| cracks-cfd")]
    assert [r.split("|")[2].strip() for r in rows] == ["0.90", "0.75"]
    strict = json.loads((out / "effort_cracks-cfd_iou0.90.json").read_text())["summary"]
    loose = json.loads((out / "effort_cracks-cfd_iou0.75.json").read_text())["summary"]
    assert strict["target_iou"] == 0.9 and loose["target_iou"] == 0.75
    assert loose["manual_seconds"] <= strict["manual_seconds"]  # a lower target never costs more by hand
    saved = out / "proposals_cracks-cfd.json"
    again = tmp_path / "again"
    assert _run(bench_cli, base + ["--proposals", str(saved), "--min-score", "0", "--out", str(again)]) == 0
    repeat = json.loads((again / "effort_cracks-cfd.json").read_text())["summary"]
    assert repeat["assisted_seconds"] == pytest.approx(strict["assisted_seconds"])
    assert repeat["proposals_total"] == strict["proposals_total"]


def test_bench_effort_held_out_images_come_from_the_models_manifest(need) -> None:
    need("cracks-cfd", "mask")
    registry = Path(__file__).resolve().parents[2] / "assets" / "models"
    if not (registry / "cracks-semantic").is_dir():
        pytest.skip("no shipped cracks-semantic model")
    from inference.registry import Registry

    keys = Registry(registry).active("cracks-semantic").manifest.training["data"]["test_image_keys"]
    stems = bench_cli._held_out_stems("cracks-semantic", "cracks-cfd", str(registry))
    assert stems == {Path(k).stem for k in keys if k.startswith("cracks-cfd/")}
    with pytest.raises(bench_cli.ProposalError):
        bench_cli._held_out_stems("cracks-semantic", "glass-gdd", str(registry))


def test_bench_effort_bad_input_exits_2(tmp_path: Path, capsys) -> None:
    assert _run(bench_cli, ["bench", "effort", "--dataset", str(tmp_path / "none"), "--source",
                            "degraded-truth"]) == 2
    assert _run(bench_cli, ["bench", "effort", "--dataset", "x", "--limit", "0"]) == 2
    assert _run(bench_cli, ["bench", "effort", "--dataset", "cracks-cfd", "--source", "coco"]) == 2
    errs = capsys.readouterr().err.strip().splitlines()
    assert len(errs) == 3 and all(e.startswith("specula bench effort:") for e in errs)


# ------------------------------------------------------------------ issue 12: the two defects
def _grey_folder(folder: Path, masks: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for n, m in enumerate(masks):
        cv2.imwrite(str(folder / f"{n}.png"), m.astype(np.uint8) * 255 if m.dtype == bool else m)
    return folder


def test_eval_refuses_a_truth_folder_whose_class_it_cannot_tell(tmp_path: Path, capsys) -> None:
    """A grey truth folder not named after a known data set used to be scored as some class silently."""
    g = np.zeros((20, 30), bool)
    g[4:12, 5:20] = True
    truth = _grey_folder(tmp_path / "my-truth", [g, g])
    pred = _grey_folder(tmp_path / "glass-gdd", [g, np.zeros_like(g)])  # a name that looks like a data set
    assert _run(eval_cli, ["eval", str(pred), str(truth)]) == 2
    err = capsys.readouterr().err
    assert "--classes" in err and "my-truth" in err
    assert _run(eval_cli, ["eval", str(pred), str(truth), "--protocol", "binary"]) == 2
    assert "--classes" in capsys.readouterr().err
    out = tmp_path / "s.json"
    assert _run(eval_cli, ["eval", str(pred), str(truth), "--classes", "mirror", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())["classes"]
    assert list(scores) == ["mirror"] and scores["mirror"]["iou"] == pytest.approx(0.5)


def test_eval_knows_the_class_of_a_shared_data_set_folder(tmp_path: Path) -> None:
    g = np.zeros((20, 30), bool)
    g[4:12, 5:20] = True
    dataset = tmp_path / "glass-gdd"
    _grey_folder(dataset / "mask", [g])
    (dataset / "image").mkdir()
    pred = _grey_folder(tmp_path / "p", [g])
    for gt in (dataset, dataset / "mask"):
        out = tmp_path / "s.json"
        assert _run(eval_cli, ["eval", str(pred), str(gt), "--json", str(out)]) == 0
        assert list(json.loads(out.read_text())["classes"]) == ["glass"]


def test_eval_classes_accepts_a_comma_list(tmp_path: Path) -> None:
    g = np.zeros((20, 30), bool)
    g[4:12, 5:20] = True
    truth = _grey_folder(tmp_path / "t", [g])
    pred = _grey_folder(tmp_path / "p", [g])
    out = tmp_path / "s.json"
    assert _run(eval_cli, ["eval", str(pred), str(truth), "--protocol", "binary", "--classes", "crack",
                           "--json", str(out)]) == 0
    assert list(json.loads(out.read_text())["classes"]) == ["crack"]
    assert eval_cli.parse_classes(["mirror,glass", "glass-in-mirror"]) == ["mirror", "glass", "glass-in-mirror"]


def test_eval_images_without_the_class_in_truth_do_not_score_perfect(tmp_path: Path) -> None:
    """An image with neither truth nor prediction of a class used to count as IoU 1, F 1."""
    g = np.zeros((20, 30), bool)
    g[4:12, 5:20] = True
    half = g.copy()
    half[:, 12:] = False
    empty = np.zeros_like(g)
    blob = empty.copy()
    blob[15:18, 2:6] = True  # a false positive on an image whose truth lacks the class
    truth = _grey_folder(tmp_path / "t", [g, empty, empty])
    pred = _grey_folder(tmp_path / "p", [half, empty, blob])
    out = tmp_path / "s.json"
    assert _run(eval_cli, ["eval", str(pred), str(truth), "--classes", "glass", "--json", str(out)]) == 0
    s = json.loads(out.read_text())["classes"]["glass"]
    only = metrics.binary_scores([(half, g)])
    assert s["iou"] == pytest.approx(only.iou) and s["iou"] < 0.6  # not pulled up by the empty images
    assert s["max_fbeta"] == pytest.approx(only.max_fbeta)
    assert s["images"] == 3 and s["images_with_class"] == 1 and s["images_with_false_positives"] == 1
    wrong = (np.count_nonzero(g & ~half) + 0 + np.count_nonzero(blob)) / (3 * g.size)
    assert s["mae"] == pytest.approx(wrong)  # MAE over all images shows the false positive
