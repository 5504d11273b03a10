"""Cached encoder features for the late-fusion click model (``training.clicks``).

With ``fusion="late"`` the ImageNet encoder is frozen, so the features of a crop never
change: they are computed once (in eval mode, as ``encoder.onnx`` will compute them) and
kept in memory in float16, and the training steps run only the click head over them, with
fresh previous masks and clicks every time a crop is drawn. A few crops are replaced by new
ones as training goes (``refresh``), so the head sees many more windows than the first bank.
On a CPU this turns a second per sample into a few milliseconds per sample.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from inference.pipelines.base import normalize_with
from training.encoders.efficientnet_lite import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class BankItem:
    """One crop: its encoder maps (float16 tensors ``(1, C, h, w)``), target and proposal."""

    features: tuple
    target: np.ndarray  # (S, S) bool
    proposal: Optional[np.ndarray]  # (S, S) float32 or None
    kind: str


class FeatureBank:
    """Crops drawn by ``sampler`` (``ClickSampler.crop``) with their frozen encoder maps."""

    def __init__(self, model: Any, sampler: Any, device: Any = None, encode_batch: int = 8):
        self.model, self.sampler, self.device = model, sampler, device
        self.encode_batch = int(encode_batch)
        self.items: list[BankItem] = []
        self.encoded = 0
        self.encode_seconds = 0.0

    def _encode(self, n: int) -> list[BankItem]:
        import torch

        crops = [self.sampler.crop() for _ in range(n)]
        image = np.concatenate([normalize_with(c[0], IMAGENET_MEAN, IMAGENET_STD) for c in crops])
        t0 = time.monotonic()
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            feats = self.model.encode(torch.from_numpy(image).to(self.device))
        self.model.train(was_training)
        self.encode_seconds += time.monotonic() - t0
        self.encoded += n
        return [BankItem(tuple(f[k:k + 1].to("cpu", torch.float16).clone() for f in feats), c[1], c[2], c[3])
                for k, c in enumerate(crops)]

    def fill(self, size: int, deadline: Optional[float] = None, progress: Any = None) -> None:
        """Encode crops until ``size`` are held or ``time.monotonic()`` passes ``deadline``."""
        while len(self.items) < size and (deadline is None or time.monotonic() < deadline or not self.items):
            self.items += self._encode(min(self.encode_batch, size - len(self.items)))
            if progress is not None:
                progress(len(self.items))

    def refresh(self, n: Optional[int] = None) -> None:
        """Replace ``n`` random crops (one encoder batch by default) by new ones."""
        n = min(n or self.encode_batch, len(self.items))
        new = self._encode(n)
        for k, item in zip(self.sampler.rng.choice(len(self.items), size=n, replace=False), new):
            self.items[int(k)] = item

    def batch(self, n: int) -> tuple[tuple, list]:
        """``n`` random crops: (stacked float32 features on the device, the ``Sample``s with
        fresh prompts, ``rgb`` None)."""
        import torch

        idx = self.sampler.rng.integers(len(self.items), size=n)
        chosen: Sequence[BankItem] = [self.items[int(i)] for i in idx]
        feats = tuple(torch.cat([it.features[k] for it in chosen]).to(self.device, torch.float32)
                      for k in range(len(chosen[0].features)))
        samples = [self.sampler.prompts(None, it.target, it.proposal, it.kind) for it in chosen]
        return feats, samples
