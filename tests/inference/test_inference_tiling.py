"""Tiles stitched without seams: a translation-equivariant model gives the same map tiled or not."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.engine import Engine
from inference.registry import Registry
from inference.tiling import Cancelled, _window_1d, tile_starts, tiled_apply
from inference_testmodels import conv_stack, manifest


def test_tile_starts_cover_the_image() -> None:
    assert tile_starts(100, 128, 32) == [0]
    s = tile_starts(1000, 256, 64)
    assert s[0] == 0 and s[-1] == 1000 - 256
    assert all(b - a <= 256 - 64 for a, b in zip(s, s[1:]))


def test_windows_cross_fade_to_one() -> None:
    a = _window_1d(64, 32, True, False)
    b = _window_1d(64, 32, False, True)
    # tiles at 0 and 32 overlap on [32, 64)
    np.testing.assert_allclose(a[32:] + b[:32], 1.0, atol=1e-6)
    assert a[-8:].max() == 0 and b[:8].max() == 0


def _blur(tile: np.ndarray) -> np.ndarray:
    """Translation-equivariant (5x5 box filter, reach 2 px) on channel 0 of an RGB tile."""
    f = tile[..., 0].astype(np.float32) / 255.0
    return cv2.blur(f, (5, 5), borderType=cv2.BORDER_CONSTANT)[None]


def test_tiled_numpy_filter_equals_untiled() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (230, 301, 3), dtype=np.uint8)
    whole = _blur(img)
    tiled = tiled_apply(img, _blur, 64, 32)
    np.testing.assert_allclose(tiled[:, 4:-4, 4:-4], whole[:, 4:-4, 4:-4], atol=1e-5)


def test_tiled_cancel_and_progress() -> None:
    img = np.zeros((200, 200, 3), np.uint8)
    seen: list[tuple[int, int]] = []
    tiled_apply(img, _blur, 64, 16, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] == len(seen) > 1
    with pytest.raises(Cancelled):
        tiled_apply(img, _blur, 64, 16, cancel=lambda: True)


def test_tiled_onnx_conv_net_equals_untiled(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ws = [rng.normal(0, 0.5, (4, 3, 3, 3)), rng.normal(0, 0.5, (4, 4, 3, 3)), rng.normal(0, 0.5, (2, 4, 3, 3))]
    bs = [rng.normal(0, 0.1, 4), rng.normal(0, 0.1, 4), rng.normal(0, 0.1, 2)]
    path = conv_stack(tmp_path / "w" / "model.onnx", ws, bs, final="Sigmoid")  # reach 3 px < overlap/4
    reg = Registry(tmp_path / "reg")
    reg.publish(path.parent, manifest("conv", "1", classes=["a", "b"], output_activation="none"))
    reg.publish(path.parent, manifest("conv", "2", classes=["a", "b"], output_activation="none",
                                      tiling={"tile": 64, "overlap": 16}))
    engine = Engine(reg, device="cpu")
    img = rng.integers(0, 255, (150, 211, 3), dtype=np.uint8)
    whole = engine.pipeline("conv", "1").probability_maps(img)  # type: ignore[attr-defined]
    steps: list[int] = []
    tiled = engine.pipeline("conv", "2").probability_maps(img, progress=lambda d, t: steps.append(t))  # type: ignore[attr-defined]
    assert steps and steps[0] > 1  # really tiled
    np.testing.assert_allclose(tiled[:, 8:-8, 8:-8], whole[:, 8:-8, 8:-8], atol=1e-4)
