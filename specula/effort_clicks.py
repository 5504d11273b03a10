"""The click model side of the effort benchmark (``specula bench effort --clicks``).

``annotation.effort`` never imports ``inference`` (DESIGN.md's layers): this adapter puts
``inference.pipelines.clicks`` -- a ``ClickSession`` (our click-refinement model) or
``GrabCutClickSession``, and ``next_click``, the click rule of ``specula bench clicks``
(RITM's: the centre of the largest error region) -- behind the ``ClickTool`` protocol of
``annotation.effort.clicks``, and is injected into the simulated annotator.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from annotation.effort.proposals import ProposalError
from annotation.mask import Mask

DEFAULT_CLICK_MODEL = "click-refine"


class ModelClicks:
    """A click session and the click rule as an ``annotation.effort.clicks.ClickTool``.

    Answers are memoised per image (the same clicks on the same previous mask, seen
    through the same crop window, give the same answer: several annotators -- two target
    IoUs, manual and assisted -- often make the same first clicks), so the benchmark's
    wall time stays close to one run's and its figures are those of a run without memo.
    """

    def __init__(self, session: Any, label: str, memo_items: int = 512):
        from inference.pipelines.clicks import next_click

        self.session = session
        self.label = label
        self._rule = next_click
        self._key: Optional[str] = None
        self._memo: OrderedDict[tuple, tuple[Mask, Any]] = OrderedDict()
        self._memo_items = int(memo_items)
        self.predictions = 0  # model calls made (memo misses)
        # images its trainer held out ("<data set>/image/<file>"); None: not recorded
        self.held_out: Optional[set[str]] = None

    def _record_held_out(self, manifest: Any) -> "ModelClicks":
        data = (getattr(manifest, "training", None) or {}).get("data") or {}
        keys = data.get("excluded_image_keys")
        if keys is None and (data.get("test_image_keys") or data.get("val_image_keys")):
            keys = list(data.get("test_image_keys") or []) + list(data.get("val_image_keys") or [])
        self.held_out = set(keys) if keys is not None else None
        return self

    def unseen(self, dataset: str, files: list[str]) -> Optional[int]:
        """How many of ``files`` (names in ``dataset/image``) the click model's trainer held
        out; None when its manifest does not say (GrabCut: no training, all unseen)."""
        if self.held_out is None:
            return None
        if not self.held_out and self.label.startswith("grabcut"):
            return len(files)
        return sum(f"{dataset}/image/{f}" in self.held_out for f in files)

    @classmethod
    def open(cls, name: str, registry_dir: Optional[str | Path] = None) -> "ModelClicks":
        """``grabcut`` (OpenCV GrabCut, worked at most 512 px a side), a model folder with a
        ``manifest.json``, or a registry model name (e.g. ``click-refine``)."""
        try:
            from inference.pipelines.clicks import ClickSession, GrabCutClickSession
            from inference.registry import ModelError, Registry
        except ImportError as exc:
            raise ProposalError(f"the inference package cannot run a click model ({exc})") from None
        if name == "grabcut":
            tool = cls(GrabCutClickSession(max_side=512), "grabcut (OpenCV, 512 px)")
            tool.held_out = set()
            return tool
        folder = Path(name)
        try:
            if (folder / "manifest.json").is_file():
                from inference.registry import Manifest

                session = ClickSession.from_folder(folder)
                return cls(session, f"click model {session.name}@{session.version} ({folder})")._record_held_out(
                    Manifest.read(folder / "manifest.json"))
            registry = Registry(registry_dir) if registry_dir is not None else Registry.default()
            if name not in registry.names():
                known = ", ".join(registry.names()) or "none"
                raise ProposalError(f"click model '{name}' is not in the registry (known: {known}); "
                                    f"give a model folder or 'grabcut'")
            info = registry.active(name)
            return cls(ClickSession.from_info(info), f"click model {info.name}@{info.version}")._record_held_out(
                info.manifest)
        except ModelError as exc:
            raise ProposalError(f"cannot load the click model {name}: {exc}") from None

    def set_image(self, rgb: np.ndarray, key: str) -> None:
        if key == self._key:  # the same image again (another annotator): keep the encoder cache,
            if hasattr(self.session, "_window"):  # but start as a fresh set_image would
                self.session._window = None
            return
        self.session.set_image(rgb)
        self._key = key
        self._memo.clear()

    def predict(self, positive: np.ndarray, negative: np.ndarray, previous: Optional[Mask]) -> Mask:
        digest = b""
        if previous is not None and not previous.is_empty():
            m = previous.cropped()
            digest = hashlib.blake2b(np.packbits(m.array).tobytes() + repr(m.box).encode(), digest_size=16).digest()
        # the session keeps its crop window between clicks when it still fits, so the same
        # prompts can get another answer from another window: the window is part of the key
        window = repr(getattr(self.session, "_window", None))
        key = (np.asarray(positive, np.float64).tobytes(), np.asarray(negative, np.float64).tobytes(), digest, window)
        hit = self._memo.get(key)
        if hit is not None:
            self._memo.move_to_end(key)
            if hasattr(self.session, "_window"):
                self.session._window = hit[1]  # where the call would have left the session
            return hit[0].copy()
        mask = self.session.predict(positive if len(positive) else None, negative if len(negative) else None,
                                    previous_mask=previous if previous is not None and not previous.is_empty()
                                    else None)
        self.predictions += 1
        self._memo[key] = (mask.copy(), getattr(self.session, "_window", None))
        while len(self._memo) > self._memo_items:
            self._memo.popitem(last=False)
        return mask

    def next_click(self, mask: Optional[Mask], truth: Mask) -> Optional[tuple[float, float, bool]]:
        click = self._rule(mask if mask is not None and not mask.is_empty() else None, truth)
        return None if click is None else (click.x, click.y, click.positive)
