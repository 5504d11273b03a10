"""CAM + AdvCAM (TorchScript) and instance (ONNX exported from torch) pipelines through the registry."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from inference.engine import Engine  # noqa: E402
from inference.registry import ModelError, Registry  # noqa: E402
from inference_testmodels import manifest  # noqa: E402


class TwoPartClassifier(nn.Module):
    """Class 'object' is evidenced by red; the evidence saturates on the bright (most
    discriminative) part and is weak on the dim part, so plain Grad-CAM only sees the
    bright part. Returns (logits (1, 2), features (1, 2, H, W)) at full resolution."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a1 = torch.clamp(x[:, 0:1] - 0.3, 0.0, 0.3)
        a2 = torch.relu(x[:, 1:2] - 0.5)
        feats = torch.cat([a1, a2], 1)
        pooled = feats.mean(dim=(2, 3))
        logits = pooled * 50.0 - 1.0
        return logits, feats


def _two_part_image() -> np.ndarray:
    img = np.full((64, 64, 3), 25, np.uint8)
    img[16:32, 12:52] = (255, 0, 0)  # bright, discriminative half
    img[32:48, 12:52] = (82, 0, 0)  # dim half of the same object
    return img


def _publish_cam(reg: Registry, tmp_path: Path, version: str = "1", **extra: object) -> None:
    folder = tmp_path / f"cam{version}"
    folder.mkdir()
    torch.jit.script(TwoPartClassifier()).save(str(folder / "model.pt"))
    reg.publish(folder, manifest("cls", version, task="cam", classes=["object", "other"], **extra))


def test_advcam_grows_the_activated_area(registry: Registry, tmp_path: Path) -> None:
    _publish_cam(registry, tmp_path)
    engine = Engine(registry, device="cpu")
    img = _two_part_image()
    params = {"closing": 1, "min_area": 10}
    plain = engine.propose(img, model="cls", params={**params, "iterations": 0})
    adv = engine.propose(img, model="cls", params={**params, "iterations": 2})
    assert [p.class_name for p in plain] == ["object"] and [p.class_name for p in adv] == ["object"]
    bright = np.zeros((64, 64), bool)
    bright[16:32, 12:52] = True
    whole = bright.copy()
    whole[32:48, 12:52] = True
    plain_m, adv_m = plain[0].mask.to_full(), adv[0].mask.to_full()
    assert (plain_m & ~bright).sum() < 0.1 * bright.sum()  # Grad-CAM: the discriminative part
    assert adv_m.sum() > 1.6 * plain_m.sum()  # AdvCAM spreads to the dim part
    assert (adv_m & whole).sum() > 0.9 * whole.sum()
    assert (adv_m & ~whole).sum() < 0.1 * whole.sum()
    assert 0.5 < adv[0].score < 1.0 and adv[0].version == "1"
    # nothing of class 'other' (green) in the image: no proposal for it
    assert engine.propose(np.full((64, 64, 3), 25, np.uint8), model="cls") == []


def test_cam_postprocessing_params(registry: Registry, tmp_path: Path) -> None:
    _publish_cam(registry, tmp_path)
    engine = Engine(registry, device="cpu")
    img = _two_part_image()
    img[2:5, 2:5] = (255, 0, 0)  # a speck: removed by min_area
    props = engine.propose(img, model="cls", params={"iterations": 1, "min_area": 20})
    assert len(props) == 1
    props = engine.propose(img, model="cls", params={"iterations": 1, "min_area": 1, "closing": 0})
    assert len(props) == 2


def test_cam_model_that_is_not_torchscript_is_refused(registry: Registry, tmp_path: Path) -> None:
    _publish_cam(registry, tmp_path)
    engine = Engine(registry, device="cpu")
    engine.propose(_two_part_image(), model="cls")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.pt").write_bytes(b"PK\x03\x04 not a zip")
    registry.publish(bad, manifest("cls", "2", task="cam", classes=["object", "other"]))
    props = engine.propose(_two_part_image(), model="cls")
    assert props[0].version == "1" and engine.current_version("cls") == "1"
    assert any("cls@2" in m and "TorchScript" in m for m in engine.messages)


class TinyMaskRCNN(nn.Module):
    """Mask R-CNN-style outputs: a red detection (score ~1) and a green one (score ~0.5)."""

    def forward(self, image: torch.Tensor):  # type: ignore[no-untyped-def]
        red = torch.sigmoid(20.0 * (image[:, 0:1] - 0.5))
        green = torch.sigmoid(20.0 * (image[:, 1:2] - 0.5))
        masks = torch.cat([red, green], 0)
        scores = torch.stack([red.max(), green.max() * 0.5])
        labels = torch.tensor([1, 2], dtype=torch.int64)
        boxes = torch.zeros(2, 4) + 0.0 * scores[:, None]
        return boxes, labels, scores, masks


def test_instance_end_to_end(registry: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "inst"
    folder.mkdir()
    torch.onnx.export(TinyMaskRCNN(), (torch.zeros(1, 3, 32, 32),), str(folder / "model.onnx"), opset_version=17,
                      dynamo=False, input_names=["image"], output_names=["boxes", "labels", "scores", "masks"],
                      dynamic_axes={"image": {2: "h", 3: "w"}, "masks": {2: "h", 3: "w"}})
    registry.publish(folder, manifest("inst", "1", task="instance", classes=["background", "red", "green"],
                                      background_class="background"))
    img = np.full((50, 70, 3), 60, np.uint8)
    img[5:20, 5:25] = (255, 0, 0)
    img[30:45, 40:60] = (0, 255, 0)
    engine = Engine(registry, device="cpu")
    props = engine.propose(img, model="inst")
    assert [(p.class_name, p.mask.bbox) for p in props] == [("red", (5, 5, 25, 20))]
    props = engine.propose(img, model="inst", params={"score_threshold": 0.4})
    assert [p.class_name for p in props] == ["red", "green"]
    assert props[1].mask.bbox == (40, 30, 60, 45) and abs(props[1].score - 0.5) < 0.01


def test_semantic_from_torchscript_when_no_onnx(registry: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "ts"
    folder.mkdir()
    conv = nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([20.0, -10.0, -10.0]).view(1, 3, 1, 1)
        conv.bias[:] = -5.0
    torch.jit.script(conv).save(str(folder / "model.pt"))
    registry.publish(folder, manifest("ts", "1"))
    from inference_testmodels import scene

    assert len(Engine(registry, device="cpu").propose(scene(), model="ts")) == 2
    with pytest.raises(ModelError):
        registry.publish(folder, manifest("ts", "2", task="instance"))  # needs model.onnx
