"""Which model answers the prompt tool (a SAM pair the user registered, then a click model,
the user's own before the shipped one, GrabCut last), and refining a given mask with each:
the SAM pair gets the last answer's low-resolution logits back as ``mask_input``, so a
second click refines instead of starting over."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from annotation.mask import Mask
from inference.engine import Engine
from inference.pipelines.prompt import (LOW_RES, GrabCutPromptSession, SamPromptSession, logits_to_low_res,
                                        mask_to_low_res)
from inference.pipelines.prompt_choice import ClickRefinePromptSession, choose_prompt_model, describe
from inference.registry import Registry
from click_models import disk_click_onnx
from inference_testmodels import manifest


# ------------------------------------------------------------------ models of known answers
def disk_click_model(folder: Path, name: str = "my-clicks", version: str = "1", size: int = 64) -> Path:
    """A click model folder: logits = 20 previous + 20 positive disks - 40 negative disks - 10."""
    disk_click_onnx(folder / "model.onnx")
    man = manifest(name, version, task="clicks", classes=["object"], input_size=[size, size])
    (folder / "manifest.json").write_text(json.dumps(man), encoding="utf-8")
    return folder


def sam_pair(folder: Path, low_res_output: bool = True) -> Path:
    """A SAM-interface pair whose decoder answers a disk of radius 20 px around the last
    point, united with ``mask_input`` when ``has_mask_input``; with ``low_res_output`` it
    also outputs ``low_res_masks`` (segment-anything's export does)."""
    torch = pytest.importorskip("torch")
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 16, stride=16)

        def forward(self, image):  # type: ignore[no-untyped-def]
            return self.conv(image)

    class Decoder(nn.Module):
        def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input,  # type: ignore[no-untyped-def]
                    orig_im_size):
            h = orig_im_size[0].to(torch.int64)
            w = orig_im_size[1].to(torch.int64)
            scale = 1024.0 / torch.maximum(orig_im_size[0], orig_im_size[1])
            g = torch.arange(LOW_RES).to(torch.float32) * 4.0 + 1.5  # low-res pixel centres, 1024 frame
            p = point_coords[0, -2]  # the last point before segment-anything's padding point
            d2 = (g[None, :] - p[0]) ** 2 + (g[:, None] - p[1]) ** 2
            low = ((20.0 * scale) ** 2 - d2) / 40.0
            unused = image_embeddings.mean() + point_labels.sum()
            low = torch.where(has_mask_input[0] > 0, torch.maximum(low, mask_input[0, 0]), low) + 0.0 * unused
            ys = torch.arange(h).to(torch.float32)
            xs = torch.arange(w).to(torch.float32)
            vi = torch.clamp(((ys + 0.5) * scale / 4.0).to(torch.int64), max=LOW_RES - 1)
            ui = torch.clamp(((xs + 0.5) * scale / 4.0).to(torch.int64), max=LOW_RES - 1)
            masks = low[vi][:, ui][None, None]
            iou = torch.ones(1, 1) + 0.0 * unused
            if low_res_output:
                return masks, iou, low[None, None]
            return masks, iou

    folder.mkdir(parents=True)
    torch.onnx.export(Encoder(), (torch.zeros(1, 3, 1024, 1024),), str(folder / "encoder.onnx"), opset_version=17,
                      dynamo=False, input_names=["image"], output_names=["image_embeddings"])
    dummy = (torch.zeros(1, 4, 64, 64), torch.zeros(1, 2, 2), torch.zeros(1, 2), torch.zeros(1, 1, 256, 256),
             torch.zeros(1), torch.tensor([200.0, 300.0]))
    outputs = ["masks", "iou_predictions"] + (["low_res_masks"] if low_res_output else [])
    torch.onnx.export(
        Decoder(), dummy, str(folder / "decoder.onnx"), opset_version=17, dynamo=False,
        input_names=["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"],
        output_names=outputs,
        dynamic_axes={"point_coords": {1: "n"}, "point_labels": {1: "n"}, "masks": {2: "h", 3: "w"}},
    )
    return folder


def _publish_sam(registry: Registry, tmp: Path, low_res_output: bool = True, name: str = "sam") -> None:
    registry.publish(sam_pair(tmp / f"sam-{low_res_output}", low_res_output),
                     manifest(name, "1", task="prompt", classes=[]))


def _noise(h: int = 200, w: int = 300) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------ the choice
def test_choice_sam_first_then_own_click_model_then_shipped_then_grabcut(tmp_path: Path) -> None:
    shipped = tmp_path / "shipped"
    reg = Registry(tmp_path / "user", [shipped])
    engine = Engine(reg, device="cpu")
    assert choose_prompt_model(reg) is None and describe(None) == "grabcut@opencv"
    assert isinstance(engine.prompt_session(), GrabCutPromptSession)

    disk_click_model(shipped / "click-refine" / "1", "click-refine", "1")
    assert describe(choose_prompt_model(reg)) == "click-refine@1"
    s = engine.prompt_session()  # chosen again at every call: no restart needed
    assert isinstance(s, ClickRefinePromptSession) and (s.model, s.version) == ("click-refine", "1")
    assert engine.prompt_session() is s  # loaded once

    reg.publish(disk_click_model(tmp_path / "mine", "my-clicks", "3"), manifest("my-clicks", "3", task="clicks"))
    assert describe(choose_prompt_model(reg)) == "my-clicks@3"  # the user's own before the shipped one

    _publish_sam(reg, tmp_path)
    assert describe(choose_prompt_model(reg)) == "sam@1"  # a SAM pair the user registered wins
    assert isinstance(engine.prompt_session(), SamPromptSession)
    assert isinstance(engine.prompt_session("click-refine"), ClickRefinePromptSession)


def test_a_broken_click_model_falls_back_to_grabcut_with_one_message(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "user")
    folder = disk_click_model(tmp_path / "bad", "bad-clicks", "1")
    (folder / "model.onnx").write_bytes(b"not an onnx file")
    reg.publish(folder, manifest("bad-clicks", "1", task="clicks"))
    engine = Engine(reg, device="cpu")
    assert isinstance(engine.prompt_session(), GrabCutPromptSession)
    assert isinstance(engine.prompt_session(), GrabCutPromptSession)
    said = [m for m in engine.messages if "bad-clicks@1" in m]
    assert len(said) == 1 and "GrabCut" in said[0]


# ------------------------------------------------------------------ refining a given mask
def test_click_model_refines_the_given_mask_then_its_own_answers(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "user")
    reg.publish(disk_click_model(tmp_path / "m"), manifest("my-clicks", "1", task="clicks"))
    s = Engine(reg, device="cpu").prompt_session()
    img = _noise()
    s.set_image(img)
    given = np.zeros((200, 300), bool)
    given[60:140, 80:160] = True
    prev = Mask.from_full(given)
    # a positive click just right of the given mask: the mask grows there, the rest stays
    m1 = s.predict(np.array([[175.0, 100.0]]), np.array([1]), previous=prev)
    assert m1.to_full()[100, 175] and not prev.to_full()[100, 175]
    assert (m1.to_full() & given).sum() >= 0.97 * given.sum()
    # a second click (negative, inside) refines the first answer: the grown part stays
    m2 = s.predict(np.array([[175.0, 100.0], [100.0, 80.0]]), np.array([1, 0]), previous=prev)
    assert m2.to_full()[100, 175] and not m2.to_full()[80, 100]
    # Mask images are compared exactly elsewhere; the session's own state must not leak:
    # a new start from the same mask with another first click forgets the last answers
    m3 = s.predict(np.array([[100.0, 80.0]]), np.array([0]), previous=prev)
    assert not m3.to_full()[100, 175] and not m3.to_full()[80, 100]


def test_mask_to_low_res_follows_segment_anythings_frame() -> None:
    full = np.zeros((200, 300), bool)
    full[:, :150] = True  # the left half
    low = mask_to_low_res(Mask.from_full(full))
    assert low.shape == (1, 1, LOW_RES, LOW_RES) and low.dtype == np.float32
    # the longest side (300) spans the 256 grid; the image covers 171 rows, the rest is padding
    assert (low[0, 0, :170, :126] > 0).all() and (low[0, 0, :170, 130:] < 0).all()
    assert (low[0, 0, 172:] < 0).all()
    back = logits_to_low_res(np.where(full, 5.0, -5.0).astype(np.float32))
    assert ((back > 0) == (low > 0)).mean() > 0.99


@pytest.mark.parametrize("low_res_output", [True, False])
def test_sam_second_click_refines_through_mask_input(tmp_path: Path, low_res_output: bool) -> None:
    reg = Registry(tmp_path / "user")
    _publish_sam(reg, tmp_path, low_res_output)
    s = Engine(reg, device="cpu").prompt_session()
    assert isinstance(s, SamPromptSession)
    s.set_image(_noise(), key="noise")
    a, b = (100.0, 80.0), (220.0, 150.0)
    m1 = s.predict(np.array([a]), np.array([1]))
    assert m1.to_full()[80, 100] and not m1.to_full()[150, 220] and not s.fed_back
    # the second click extends the first: the first answer goes back in as mask_input
    m2 = s.predict(np.array([a, b]), np.array([1, 1]))
    assert s.fed_back and m2.to_full()[80, 100] and m2.to_full()[150, 220]
    # a fresh start (one click) does not feed anything back
    m3 = s.predict(np.array([b]), np.array([1]))
    assert not s.fed_back and not m3.to_full()[80, 100] and m3.to_full()[150, 220]
    # a mask to refine enters as mask_input too
    given = np.zeros((200, 300), bool)
    given[20:60, 200:280] = True
    m4 = s.predict(np.array([b]), np.array([1]), previous=Mask.from_full(given))
    assert s.fed_back and m4.to_full()[150, 220] and m4.to_full()[40, 240]
    assert m4.iou(Mask.from_full(given | m3.to_full())) > 0.9


def test_grabcut_starts_from_the_given_mask() -> None:
    h, w = 120, 160
    yy, xx = np.mgrid[:h, :w]
    img = np.full((h, w, 3), (40, 90, 40), np.uint8)
    disk = (xx - 80) ** 2 + (yy - 60) ** 2 <= 30**2
    img[disk] = (230, 60, 50)
    half = disk & (xx < 80)
    s = GrabCutPromptSession()
    s.set_image(img)
    truth = Mask.from_full(disk)
    out = s.predict(np.array([[100.0, 60.0]]), np.array([1]), previous=Mask.from_full(half))
    assert out.iou(truth) > Mask.from_full(half).iou(truth) and out.iou(truth) > 0.8
