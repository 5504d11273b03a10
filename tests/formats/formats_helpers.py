"""Helpers for the format tests: where the real data sets are, and small mask builders."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from annotation.mask import Mask

REPO = Path(__file__).resolve().parents[2]


def data_root() -> Path:
    env = os.environ.get("SPECULA_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def need_data(rel: str) -> Path:
    """The path of a shared data set, or skip the test naming the missing set."""
    p = data_root() / rel
    if not p.exists():
        pytest.skip(f"real data set missing: {rel} (looked under {data_root()}; set SPECULA_DATA)")
    return p


def ring_mask(size: tuple[int, int], box: tuple[int, int, int, int], hole: tuple[int, int, int, int]) -> Mask:
    """A filled box with a rectangular hole: the simplest mask with a hole."""
    a = np.zeros(size, bool)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = True
    hx0, hy0, hx1, hy1 = hole
    a[hy0:hy1, hx0:hx1] = False
    return Mask.from_full(a)


def blob_masks(size: tuple[int, int], seed: int, count: int = 3) -> list[Mask]:
    """Random irregular masks (noise, opened), some with holes, islands and several parts."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        a = rng.random(size) < rng.uniform(0.3, 0.7)
        a = cv2.morphologyEx(a.astype(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)).astype(bool)
        m = Mask.from_full(a)
        if not m.is_empty():
            out.append(m)
    return out
