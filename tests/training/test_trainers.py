"""Each task trains a few steps on a small real project, publishes, and the engine proposes with it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training_helpers import REPO, build_project, cfd_project_with_cam, data_root, need_set

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.training, pytest.mark.slow]


def propose_with_engine(registry_root: Path, name: str, image_path: Path, params=None):
    from inference.engine import Engine
    from inference.registry import Registry
    from training.datasets import read_rgb

    rgb = read_rgb(image_path)
    engine = Engine(Registry(registry_root), device="cpu")
    try:
        proposals = engine.propose(rgb, model=name, params=params)
    finally:
        engine.close()
    assert isinstance(proposals, list)
    for p in proposals:
        assert p.mask.image_size == rgb.shape[:2]
    return proposals


def test_semantic_trains_publishes_and_proposes(gdd_project, tmp_path):
    from inference.registry import Registry
    from training.common import TrainOptions
    from training.semantic import train_semantic

    reg = tmp_path / "registry"
    out = train_semantic(TrainOptions(project=gdd_project.root, task="semantic", epochs=1, max_steps=2,
                                      input_size=(96, 96), registry=reg, batch_size=2, name="gdd-sem"))
    info = Registry(reg).get("gdd-sem", "1")
    man = info.manifest
    assert man.task == "semantic" and man.classes[0] == "background" and "glass" in man.classes
    assert info.has("model.onnx")
    assert man.training["onnx_check"]["max_abs_diff"] < 1e-3
    glass = man.metrics["validation"]["per_class"]["glass"]
    assert {"iou", "max_fbeta", "mae"} <= set(glass)
    assert man.training["data"]["images"] >= 1 and man.training["data"]["instances"]["glass"] >= 1
    assert any("EfficientNet-Lite0" in s for s in man.sources)
    image = gdd_project.image_file(gdd_project.images()[0])
    propose_with_engine(reg, "gdd-sem", image, {"threshold": 0.3})
    assert out["info"].version == "1"


def test_cam_trains_publishes_and_proposes(tmp_path):
    from inference.registry import Registry

    store, reg = cfd_project_with_cam(tmp_path)
    info = Registry(reg).get("cfd-cam", "1")
    assert info.task == "cam" and info.has("model.pt") and list(info.manifest.classes) == ["crack"]
    metrics = info.manifest.metrics
    assert "f_measure" in metrics["validation_classification"]
    # scored through the CAM pipeline itself (the product's path), plain CAM and AdvCAM
    scored = metrics["validation_cam_proposals"]["crack"]
    assert set(scored) == {"0", "2"}
    for figures in scored.values():
        assert figures["images"] == 2 and 0.0 <= figures["iou"] <= 1.0 and 0.0 <= figures["coverage"] <= 1.0
    # the pipeline only makes CAMs for classes it believes present: force it to, to exercise AdvCAM
    proposals = propose_with_engine(reg, "cfd-cam", store.image_file(store.images()[0]),
                                    {"class_threshold": 0.0, "iterations": 1})
    assert all(p.class_name == "crack" for p in proposals)
    store.close()


def test_instance_trains_publishes_and_proposes(tmp_path):
    from inference.registry import Registry
    from training.common import TrainOptions
    from training.instance import train_instance

    need_set("mirror-msd")
    ids = sorted(p.stem for p in (data_root() / "mirror-msd" / "image").glob("*.jpg"))[:3]
    store = build_project(tmp_path / "msd", "mirror-msd", ids, "mirror")
    reg = tmp_path / "registry"
    train_instance(TrainOptions(project=store.root, task="instance", epochs=1, max_steps=1, input_size=(128, 128),
                                registry=reg, name="msd-inst", num_threads=2))
    info = Registry(reg).get("msd-inst", "1")
    man = info.manifest
    assert man.task == "instance" and list(man.classes) == ["background", "mirror"]
    assert "mask_ap" in man.metrics["validation"]
    assert man.training["config"]["rpn_nms_thresh"] == 0.8 and man.training["config"]["anchor_sizes"][0] == 16
    # untrained detections score low: lower the pipeline threshold so masks really come back
    propose_with_engine(reg, "msd-inst", store.image_file(store.images()[0]), {"score_threshold": 0.0})
    store.close()


def test_instance_at_the_default_512_px_trains_an_epoch_and_proposes(tmp_path):
    """The size users run (the trainer once passed at 128 px and failed at its default 512):
    one epoch on five real photos, exported, checked against PyTorch and proposing."""
    from inference.registry import Registry
    from training.common import TrainOptions
    from training.instance import train_instance

    need_set("mirror-msd")
    ids = sorted(p.stem for p in (data_root() / "mirror-msd" / "image").glob("*.jpg"))[:5]
    store = build_project(tmp_path / "msd", "mirror-msd", ids, "mirror")
    reg = tmp_path / "registry"
    train_instance(TrainOptions(project=store.root, task="instance", epochs=1, registry=reg, name="msd-512",
                                num_threads=2))
    man = Registry(reg).get("msd-512", "1").manifest
    assert man.training["config"]["image_size"] == 512
    assert man.training["onnx_check"]["inputs_checked"] >= 1  # ONNX agreed with PyTorch, else no publish
    assert man.training["ranks"][0]["samples"] >= 4  # one epoch over the four training photos
    proposals = propose_with_engine(reg, "msd-512", store.image_file(store.images()[0]), {"score_threshold": 0.0})
    assert all(p.class_name == "mirror" for p in proposals)
    store.close()


def test_cli_speaks_json_lines_and_init_takes_only_state_dicts(gdd_project, tmp_path):
    reg = tmp_path / "registry"
    cmd = [sys.executable, "-m", "training", str(gdd_project.root), "--task", "semantic", "--max-steps", "1",
           "--epochs", "1", "--input-size", "64", "--batch-size", "2", "--registry", str(reg), "--name", "cli-sem"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    events = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in events]
    assert "epoch" in kinds and kinds[-1] == "published"
    epoch = next(e for e in events if e["event"] == "epoch")
    assert isinstance(epoch["loss"], float) and "mean_iou" in epoch["val"]
    assert events[-1]["name"] == "cli-sem" and events[-1]["version"] == "1"

    # --init: a state dict is loaded and recorded; a pickled object is refused with a message
    from training.common import apply_init
    from training.models import SemanticNet

    model = SemanticNet(2, pretrained=False)
    sd_file = tmp_path / "init.pt"
    torch.save({k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}, sd_file)
    record = apply_init(SemanticNet(2, pretrained=False), sd_file)
    assert record["loaded"] > 100 and record["skipped"] == 0
    evil = tmp_path / "evil.pt"
    torch.save({"weights": Path("x")}, evil)  # an arbitrary object needs unpickling: refused
    with pytest.raises(RuntimeError, match="state dict"):
        apply_init(model, evil)

    bad = subprocess.run(cmd[:-4] + ["--init", str(evil), "--registry", str(reg), "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1
    assert json.loads(bad.stdout.strip().splitlines()[-1])["event"] == "error"


def test_training_imports_no_torch_at_import_time():
    code = "import sys, training, training.cli, training.datasets; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
