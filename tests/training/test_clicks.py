"""The click-refinement trainer on real masks: it trains and publishes a model the pipeline
loads, a small model trained here learns to follow a click into a missed region of a
real glass pane, and the ONNX export reproduces PyTorch."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from click_models import without_right_third
from training_helpers import build_project, data_root, need_set

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.training]


def read_mask(set_name: str, stem: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(data_root() / set_name / "mask" / f"{stem}.png").convert("L")) > 127


def test_sampler_builds_consistent_samples_from_real_masks():
    from training.clicks import ClickImage, ClickSampler, SamplerSettings, batch_arrays, objects_of
    from annotation.mask import Mask

    need_set("cracks-deepcrack")
    paths = sorted((data_root() / "cracks-deepcrack" / "image").glob("*.jpg"))[:3]
    images = []
    for p in paths:
        full = read_mask("cracks-deepcrack", p.stem)
        images.append(ClickImage(p, full.shape, objects_of([Mask.from_full(full)]), "cracks", p.name,
                                 proposal=Mask.from_full(full).dilate(2)))
    sampler = ClickSampler(images, SamplerSettings(size=96), seed=0)
    kinds = set()
    for _ in range(40):
        s = sampler.sample()
        kinds.add(s.kind.split("/")[-1])
        assert s.rgb.shape == (96, 96, 3) and s.target.shape == (96, 96) and s.target.any()
        t = s.target
        for x, y in s.positive:  # positive clicks lie on the object, negative ones off it
            assert t[int(round(y)), int(round(x))]
        for x, y in s.negative:
            assert not t[int(round(y)), int(round(x))]
        assert s.positive or s.negative
    assert kinds == {"empty", "degraded", "proposal"}
    image, aux, target = batch_arrays([sampler.sample() for _ in range(3)], 5.0)
    assert image.shape == aux.shape == (3, 3, 96, 96) and target.shape == (3, 1, 96, 96)
    assert aux[:, 1].max() == 1.0  # every sample has a positive disk or a previous mask
    assert set(np.unique(aux[:, 1:])) <= {0.0, 1.0}


def test_click_trainer_runs_on_real_masks_and_the_published_model_refines(tmp_path):
    """``specula train --task clicks`` on a small CrackForest project: a few steps, the
    export checked against PyTorch, published; the pipeline loads it from the registry."""
    from inference.pipelines.clicks import ClickSession
    from inference.registry import Registry
    from training.cli import main as train_main
    from training.datasets import read_rgb

    need_set("cracks-cfd")
    ids = sorted(p.stem for p in (data_root() / "cracks-cfd" / "image").glob("*.jpg"))[:4]
    store = build_project(tmp_path / "cfd", "cracks-cfd", ids, "crack", palette="inspection")
    store.close()
    reg = tmp_path / "registry"
    code = train_main([str(tmp_path / "cfd"), "--task", "clicks", "--max-steps", "3", "--input-size", "64",
                       "--batch-size", "2", "--registry", str(reg), "--name", "cfd-clicks", "--device", "cpu",
                       "--json", "--val-fraction", "0.25"])
    assert code == 0
    info = Registry(reg).get("cfd-clicks", "1")
    man = info.manifest
    assert man.task == "clicks" and info.has("encoder.onnx") and info.has("decoder.onnx")
    assert man.input_size == (64, 64)
    assert man.training["onnx_check"]["max_abs_diff"] < 1e-3 * max(1.0, man.training["onnx_check"]["logit_scale"])
    assert man.training["steps"] == 3 and man.training["fusion"] == "late"
    assert {"NoC@85", "NoC@90", "IoU@1"} <= set(man.metrics["validation"])
    session = ClickSession.from_info(info)
    image = sorted((tmp_path / "cfd").glob("*.jpg"))[0]
    rgb = read_rgb(image)
    session.set_image(rgb)
    truth = read_mask("cracks-cfd", image.stem)
    ys, xs = np.nonzero(truth)
    first = session.predict([[float(xs[0]), float(ys[0])]])
    assert first.image_size == rgb.shape[:2]
    again = session.predict([[float(xs[0]), float(ys[0])]], [[0.0, 0.0]], previous_mask=first)
    assert again.image_size == rgb.shape[:2] and session.last.logits.shape == (64, 64)


def gdd_pane() -> tuple[Path, np.ndarray]:
    """A GDD photo with one large pane (the first, by name, of 15-60 % of the photo)."""
    import cv2

    need_set("glass-gdd")
    for p in sorted((data_root() / "glass-gdd" / "image").glob("*.jpg")):
        full = read_mask("glass-gdd", p.stem)
        n, _, stats, _ = cv2.connectedComponentsWithStats(full.astype(np.uint8), connectivity=8)
        if n == 2 and 0.15 < stats[1, cv2.CC_STAT_AREA] / full.size < 0.6:
            return p, full
    pytest.skip("no GDD photo with one large pane")


def test_a_small_model_trained_here_follows_a_click_into_a_missed_region(tmp_path):
    """On a real GDD photo: the previous mask misses a third of the pane; one positive
    click inside the missed part; the refined mask covers most of it (the previous mask
    covered none) and agrees better with the truth."""
    from annotation.mask import Mask
    from inference.pipelines.clicks import ClickSession, next_click
    from training.clicks import ClickData, ClickImage, train_clicks
    from training.common import TrainOptions

    path, full = gdd_pane()
    truth = Mask.from_full(full)
    image = ClickImage(path, full.shape, [truth], "glass-gdd", path.name)
    reg = tmp_path / "registry"
    # 200 head steps of 4 crops at 64 px over cached encoder features: about 20 s of one CPU core
    opts = TrainOptions(project=tmp_path, task="clicks", device="cpu", max_steps=200, batch_size=4,
                        input_size=(64, 64), registry=reg, name="pane-clicks", lr=3e-3, seed=0, num_threads=1,
                        extra={"val_minutes": 1e9, "score_test": False, "bank_size": 96})
    train_clicks(opts, data=ClickData([image], [image]))
    from inference.registry import Registry

    session = ClickSession.from_info(Registry(reg).get("pane-clicks", "1"))
    from training.datasets import read_rgb

    session.set_image(read_rgb(path))
    # the previous mask: the truth without its right third
    truth, previous, missed, cut = without_right_third(full)
    click = next_click(previous, truth)
    assert click.positive and click.x >= cut
    refined = session.predict([[click.x, click.y]], previous_mask=previous)
    covered = refined.intersection_area(missed) / missed.area
    assert previous.intersection_area(missed) == 0
    assert covered > 0.5, f"the click's region was covered at {covered:.2f}"
    assert refined.iou(truth) > previous.iou(truth)


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_onnx_export_matches_pytorch_and_a_changed_network_is_caught(tmp_path, fusion):
    from training.clicks import check_click_onnx, export_click_onnx
    from training.export import ExportError
    from training.models import ClickNet

    torch.manual_seed(0)
    net = ClickNet(fusion, pretrained=False).eval()
    with torch.no_grad():  # the zero-initialised click convolution would hide a wrong wiring
        for p in net.parameters():
            if not p.any():
                p.normal_(0, 0.1)
    files = export_click_onnx(net, tmp_path, 64)
    assert [f.name for f in files] == (["model.onnx"] if fusion == "early" else ["encoder.onnx", "decoder.onnx"])
    rng = np.random.default_rng(0)
    inputs = [(rng.normal(size=(1, 3, 96, 64)).astype(np.float32),  # dynamic height and width
               (rng.random((1, 3, 96, 64)) > 0.7).astype(np.float32)) for _ in range(2)]
    check = check_click_onnx(net, tmp_path, inputs)
    assert check["max_abs_diff"] < 1e-3 * check["logit_scale"]
    with torch.no_grad():
        net.classifier.bias += 1.0
    with pytest.raises(ExportError):
        check_click_onnx(net, tmp_path, inputs)


def test_default_click_model_excludes_the_semantic_test_images():
    """The shipped click model's manifest: trained without the semantic models' test images."""
    repo = Path(__file__).resolve().parents[2]
    folder = repo / "assets" / "models" / "click-refine"
    versions = sorted(p for p in folder.glob("*") if (p / "manifest.json").is_file()) if folder.is_dir() else []
    if not versions:
        pytest.skip("no shipped click model")
    man = json.loads((versions[-1] / "manifest.json").read_text(encoding="utf-8"))
    data = man["training"]["data"]
    semantic_test = set()
    for name in ("mirror-glass-semantic", "cracks-semantic"):
        for m in sorted((repo / "assets" / "models" / name).glob("*/manifest.json"))[-1:]:
            semantic_test |= set(json.loads(m.read_text(encoding="utf-8"))["training"]["data"]["test_image_keys"])
    assert semantic_test and semantic_test <= set(data["excluded_image_keys"])
    assert {k for k in data["test_image_keys"]} <= semantic_test
    assert man["task"] == "clicks" and {"glass-gdd", "cracks-deepcrack", "cracks-cfd"} <= set(man["metrics"]["test"])
