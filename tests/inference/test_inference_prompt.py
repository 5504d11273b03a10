"""Prompt sessions: GrabCut fallback (no model) and a tiny SAM-interface encoder/decoder pair."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.engine import Engine
from inference.pipelines.prompt import GrabCutPromptSession, ResizeLongestSide, SamPromptSession
from inference.registry import Registry
from inference_testmodels import manifest


def _disk_image(h: int = 120, w: int = 160) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    img = np.full((h, w, 3), (40, 90, 40), np.uint8)
    img[(xx - 60) ** 2 + (yy - 50) ** 2 <= 25**2] = (230, 60, 50)
    return img


def test_grabcut_fallback_when_no_prompt_model(registry: Registry) -> None:
    session = Engine(registry, device="cpu").prompt_session()
    assert isinstance(session, GrabCutPromptSession) and session.supports_box
    img = _disk_image()
    session.set_image(img)
    truth = np.zeros(img.shape[:2], bool)
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    truth[(xx - 60) ** 2 + (yy - 50) ** 2 <= 25**2] = True
    from annotation.mask import Mask

    m = session.predict(box=(30, 20, 92, 82))
    assert m.iou(Mask.from_full(truth)) > 0.85
    m2 = session.predict(points=np.array([[60, 50], [140, 100]]), labels=np.array([1, 0]))
    assert m2.iou(Mask.from_full(truth)) > 0.85
    with pytest.raises(ValueError):
        session.predict(points=np.array([[5, 5]]), labels=np.array([0]))


def test_resize_longest_side_coords() -> None:
    t = ResizeLongestSide(1024)
    assert t.new_size(200, 300) == (683, 1024)
    np.testing.assert_allclose(t.apply_coords(np.array([[150, 100]]), (200, 300)), [[512, 341.5]])


def _export_sam_pair(folder: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 16, stride=16)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.conv(image)

    class Decoder(nn.Module):
        """Logits of a disk of radius 20 px (original pixels) around the first prompt point."""

        def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size):  # type: ignore[no-untyped-def]
            h = orig_im_size[0].to(torch.int64)
            w = orig_im_size[1].to(torch.int64)
            scale = 1024.0 / torch.maximum(orig_im_size[0], orig_im_size[1])
            ys = torch.arange(h).to(torch.float32)[:, None]
            xs = torch.arange(w).to(torch.float32)[None, :]
            p = point_coords[0, 0] / scale
            d2 = (xs - p[0]) ** 2 + (ys - p[1]) ** 2
            unused = image_embeddings.mean() + point_labels.sum() + mask_input.sum() + has_mask_input.sum()
            logits = (400.0 - d2 + 0.0 * unused)[None, None]
            iou = torch.ones(1, 1) + 0.0 * unused
            return logits, iou

    folder.mkdir(parents=True)
    torch.onnx.export(Encoder(), (torch.zeros(1, 3, 1024, 1024),), str(folder / "encoder.onnx"), opset_version=17,
                      dynamo=False, input_names=["image"], output_names=["image_embeddings"])
    dummy = (torch.zeros(1, 4, 64, 64), torch.zeros(1, 2, 2), torch.zeros(1, 2), torch.zeros(1, 1, 256, 256),
             torch.zeros(1), torch.tensor([200.0, 300.0]))
    torch.onnx.export(
        Decoder(), dummy, str(folder / "decoder.onnx"), opset_version=17, dynamo=False,
        input_names=["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"],
        output_names=["masks", "iou_predictions"],
        dynamic_axes={"point_coords": {1: "n"}, "point_labels": {1: "n"}, "masks": {2: "h", 3: "w"}},
    )


def test_sam_interface_pair_end_to_end(registry: Registry, tmp_path: Path, specula_home: Path) -> None:
    _export_sam_pair(tmp_path / "sam")
    registry.publish(tmp_path / "sam", manifest("sam", "1", task="prompt", classes=[]))
    engine = Engine(registry, device="cpu")
    session = engine.prompt_session()
    assert isinstance(session, SamPromptSession) and (session.model, session.version) == ("sam", "1")
    img = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    session.set_image(img, key="abc")
    m = session.predict(np.array([[100.0, 80.0]]), np.array([1]))
    assert m.image_size == (200, 300)
    assert abs(m.area - np.pi * 400) < 0.1 * np.pi * 400
    ys, xs = np.nonzero(m.to_full())
    assert abs(xs.mean() - 100) < 1.0 and abs(ys.mean() - 80) < 1.0
    assert session.predict(box=(90, 70, 130, 110)).bbox[:2] == (71, 51)  # disk around the first box corner
    cached = specula_home / "cache" / "embeddings" / "abc-sam-1.npy"
    assert cached.is_file() and session.encoder_runs == 1
    session.set_image(img, key="abc")
    assert session.encoder_runs == 1  # memory
    fresh = Engine(registry, device="cpu").prompt_session()
    fresh.set_image(img, key="abc")
    assert fresh.encoder_runs == 0  # disk  # type: ignore[attr-defined]
    # precompute in the background for the next images
    paths = []
    for i in range(2):
        p = tmp_path / f"next{i}.png"
        Image.fromarray(np.roll(img, i * 7, axis=1)).save(p)
        paths.append(p)
    keys = [f.result(timeout=60) for f in session.precompute(paths)]
    assert all((specula_home / "cache" / "embeddings" / f"{k}-sam-1.npy").is_file() for k in keys)
    session.close()
