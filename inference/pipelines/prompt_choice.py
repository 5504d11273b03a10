"""Which backend answers the prompt tool, and the click model behind the prompt interface.

The rule (DESIGN.md, "the prompt pipeline's default is our own click-refinement model"):

1. a SAM-family encoder/decoder pair (task ``prompt``) the user registered: the user
   went out of their way to bring one, so it wins;
2. a click-refinement model (task ``clicks``): the user's own (trained or imported)
   before the shipped one (``assets/models/click-refine``), each at its active version;
3. GrabCut (no weights) when neither is there or the chosen one cannot be loaded.

Every backend answers ``PromptSession.predict(points, labels, box, previous)``:
``previous`` is a ``Mask`` of the image to refine (the selected instance or proposal),
or None to start from the clicks / box alone.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from annotation.mask import Mask
from inference.pipelines.clicks import TASK as CLICKS_TASK
from inference.pipelines.clicks import ClickSession
from inference.pipelines.prompt import PromptSession, SamPromptSession
from inference.registry import ModelError, ModelInfo, Registry, check_files

SAM_TASK = "prompt"
PROMPT_TASKS = (SAM_TASK, CLICKS_TASK)


def choose_prompt_model(registry: Registry) -> Optional[ModelInfo]:
    """The model the prompt tool uses (module docstring's rule), or None for GrabCut."""
    infos = registry.list()
    for task in PROMPT_TASKS:
        names = sorted({i.name for i in infos if i.task == task})
        if not names:
            continue
        active = []
        for name in names:
            try:
                active.append(registry.active(name))
            except ModelError:
                continue
        active = [i for i in active if i.task == task]
        if active:
            # the user's own (not read-only) before shipped ones, then by name
            return sorted(active, key=lambda i: (i.read_only, i.name))[0]
    return None


def describe(info: Optional[ModelInfo]) -> str:
    """``name@version`` of a prompt model, ``grabcut@opencv`` for None."""
    return "grabcut@opencv" if info is None else f"{info.name}@{info.version}"


class ClickRefinePromptSession(PromptSession):
    """The prompt tool's calls over a ``ClickSession`` (``inference.pipelines.clicks``),
    starting from a given mask when there is one (``previous``).

    Each call gets all the clicks so far: when a call extends the previous call's clicks
    (same box, same starting mask), the previous answer is the mask refined (RITM's
    iterative feedback); otherwise the given ``previous`` (or nothing) is.
    """

    supports_points = True
    supports_box = True

    def __init__(self, info: ModelInfo, runtimes: Any = None):
        self.session = ClickSession.from_info(info, getattr(runtimes, "onnx", runtimes))
        self.model, self.version = info.name, info.version
        self._last: Optional[tuple[np.ndarray, np.ndarray, Optional[tuple[float, ...]], Optional[Mask], Mask]] = None

    def set_image(self, rgb: np.ndarray, key: Optional[str] = None) -> None:
        self.session.set_image(rgb, key)
        self._last = None

    def predict(self, points: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None,
                box: Optional[Sequence[float]] = None, previous: Optional[Mask] = None) -> Mask:
        """``points`` ``(N, 2)`` xy image pixels, ``labels`` ``(N,)`` 1 object / 0 background,
        ``box`` xyxy, ``previous`` the mask to refine (``Mask`` of this image) or None."""
        pts = np.zeros((0, 2)) if points is None else np.asarray(points, np.float64).reshape(-1, 2)
        lab = np.ones(len(pts)) if labels is None else np.asarray(labels, np.float64).reshape(-1)
        if len(lab) != len(pts):
            raise ValueError(f"{len(pts)} points but {len(lab)} labels")
        bx = None if box is None else tuple(float(v) for v in box)
        start = previous
        if self._last is not None:
            lp, ll, lb, lprev, lmask = self._last
            n = len(lp)
            if (lb == bx and lprev is previous and len(pts) > n and np.array_equal(pts[:n], lp)
                    and np.array_equal(lab[:n], ll)):
                start = lmask
        mask = self.session.predict(pts[lab == 1], pts[lab == 0], previous_mask=start, box=bx)
        self._last = (pts, lab, bx, previous, mask)
        return mask

    def close(self) -> None:
        self.session.close()


# the backend of each prompt task (a dict of builders, not a ladder of ifs)
PROMPT_BACKENDS: dict[str, Callable[[ModelInfo, Any], PromptSession]] = {
    SAM_TASK: SamPromptSession,
    CLICKS_TASK: ClickRefinePromptSession,
}


def open_prompt_session(info: ModelInfo, runtimes: Any) -> PromptSession:
    """Load ``info`` (task ``prompt`` or ``clicks``) as a prompt session; ``ModelError`` if impossible."""
    backend = PROMPT_BACKENDS.get(info.task)
    if backend is None:
        raise ModelError(f"{info.name}@{info.version} is a {info.task} model, not a prompt or click model")
    check_files(info)
    return backend(info, runtimes)
