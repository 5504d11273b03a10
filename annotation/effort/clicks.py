"""Click correction for the simulated annotator: the prompt tool (P) driven by RITM's click rule.

``annotation`` never imports ``inference`` (DESIGN.md's layers), so the click model comes
in from the application as a ``ClickTool``: ``specula.effort_clicks.ModelClicks`` wraps
``inference.pipelines.clicks.ClickSession`` (our click-refinement model) and that
module's ``next_click`` (the click rule of ``specula bench clicks``: the centre of the
largest error region, positive in a missed region, negative in a wrong one).

One click session (``click_session``) on one object:

* the clicks go where ``ClickTool.next_click`` puts them, each answered by
  ``ClickTool.predict(positive, negative, previous)`` with the mask kept so far fed back
  as the previous mask (the prompt tool's behaviour, and RITM's protocol); each click is
  charged ``click`` from the cost table;
* a click whose answer is no better than the mask before it (the person sees it) is
  undone (``undo`` charged) and its error region left alone: the next click goes to the
  largest error region not tried yet;
* clicking stops when the mask is good enough (IoU >= ``target_iou``: the one use of the
  truth as a *judgement*), when ``click_stall`` clicks in a row brought no visible
  progress (undone, or a gain under ``click_min_gain``), when at the rate of the last
  click the clicks needed would cost more than finishing another way looks like it costs
  (``other_way_s``: the annotator's estimate by eye of drawing the object or fixing the
  proposal by hand), after ``max_clicks`` clicks, or when the time budget is spent; the
  result is kept with Enter (``keep``, charged as ``accept``).

The truth is otherwise used only as a person's eyes use the photo: where the largest
error is (the click rule) and whether a click helped. Which tool to use is never chosen
by comparing simulated outcomes: the annotator's policy (``annotator``'s docstring)
always tries clicks first when it has a click tool, then falls back to brush / reroute
or to drawing, paying for every click it made.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional, Protocol

import cv2
import numpy as np

from annotation.effort.costs import Action, CostTable
from annotation.mask import Mask


class ClickTool(Protocol):
    """The click model and the click rule, injected from the application layer.

    ``label`` names it in reports. ``set_image(rgb, key)`` selects the image (``(H, W, 3)``
    uint8 RGB; ``key`` lets a tool keep its cache when the same image comes again).
    ``predict(positive, negative, previous)``: ``(P, 2)`` and ``(Q, 2)`` float ``(x, y)``
    image pixels and the mask to refine (None: from nothing) -> the refined ``Mask``.
    ``next_click(mask, truth)``: ``(x, y, positive)`` at the centre of the largest error
    region of ``mask`` (None: no mask yet), or None when the mask has no error.
    """

    label: str

    def set_image(self, rgb: np.ndarray, key: str) -> None: ...

    def predict(self, positive: np.ndarray, negative: np.ndarray, previous: Optional[Mask]) -> Mask: ...

    def next_click(self, mask: Optional[Mask], truth: Mask) -> Optional[tuple[float, float, bool]]: ...


@dataclass
class ClickResult:
    """What a click session did: the mask kept, the actions charged, a tally (``click``,
    ``click_undone``) and why it ended (``reached``, ``stalled``, ``capped`` or ``none``
    when no click was made)."""

    mask: Mask
    actions: list[Action]
    tally: dict[str, int]
    ended: str

    @property
    def seconds(self) -> float:
        return float(sum(a.seconds for a in self.actions))


def _points(xy: list[tuple[float, float]]) -> np.ndarray:
    return np.asarray(xy, np.float64).reshape(-1, 2)


def hide_region(view: Optional[Mask], truth: Mask, x: float, y: float) -> Mask:
    """``view`` with the error region under ``(x, y)`` made right (set to the truth there),
    so the click rule looks past a region whose click was undone. Only used to place the
    next click; the mask being edited is untouched."""
    size = truth.image_size
    base = view if view is not None else Mask.empty(size)
    box = (0, 0, size[1], size[0])
    boxes = [b for b in (truth.bbox, base.bbox if not base.is_empty() else None) if b is not None]
    if boxes:
        box = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
    t, v = truth.read_box(box), base.read_box(box)
    err = (t ^ v).astype(np.uint8)
    cx, cy = int(round(x)) - box[0], int(round(y)) - box[1]
    if not (0 <= cy < err.shape[0] and 0 <= cx < err.shape[1]) or not err[cy, cx]:
        return base
    _, labels = cv2.connectedComponents(err, connectivity=8)
    region = labels == labels[cy, cx]
    out = v.copy()
    out[region] = t[region]
    return Mask.from_box_array(box[0], box[1], out, size).cropped()


def click_session(tool: ClickTool, start: Optional[Mask], truth: Mask, costs: CostTable, target_iou: float,
                  budget: float, max_clicks: int = 20, click_stall: int = 2, click_min_gain: float = 0.01,
                  other_way_s: Optional[float] = None) -> ClickResult:
    """Clicks on one object from ``start`` (a proposal, or None: from nothing) within
    ``budget`` seconds; see the module docstring for the rule. The mask returned is the
    most accurate kept (a click that did not help is undone). ``other_way_s``: what
    finishing another way looks like it costs; clicking stops when, at the rate of the
    last kept click, the clicks still needed would take the clicks past it."""
    size = truth.image_size
    mask = start.cropped() if start is not None and not start.is_empty() else None
    current = mask.iou(truth) if mask is not None else 0.0
    actions: list[Action] = []
    tally: Counter = Counter()
    pos: list[tuple[float, float]] = []
    neg: list[tuple[float, float]] = []
    view = mask  # what the click rule looks at: the mask, less the regions given up on
    misses = clicks = 0
    ended = "none"
    while True:
        if current >= target_iou:
            ended = "reached"
            break
        if sum(a.seconds for a in actions) >= budget:
            ended = "capped"
            break
        if clicks >= max_clicks or misses >= click_stall:
            ended = "stalled"
            break
        click = tool.next_click(view, truth)
        if click is None:
            ended = "stalled" if clicks else "none"
            break
        x, y, positive = float(click[0]), float(click[1]), bool(click[2])
        if mask is None and not positive and not pos:
            ended = "stalled" if clicks else "none"
            break  # nothing on the object yet: a negative click alone says nothing
        clicks += 1
        (pos if positive else neg).append((x, y))
        answer = tool.predict(_points(pos), _points(neg), mask)
        actions.append(Action("click", costs.click))
        tally["click"] += 1
        new = answer.iou(truth) if not answer.is_empty() else 0.0
        if new <= current:
            # the person sees it did not help: undo, and look elsewhere next time
            (pos if positive else neg).pop()
            actions.append(Action("undo", costs.undo))
            tally["click_undone"] += 1
            view = hide_region(view, truth, x, y)
            misses += 1
            continue
        gain = new - current
        misses = misses + 1 if gain < click_min_gain else 0
        mask, current = answer.cropped(), new
        view = mask
        if other_way_s is not None and current < target_iou:
            needed = int(np.ceil((target_iou - current) / gain))
            if costs.click * (clicks + needed) > other_way_s:
                ended = "stalled"  # too slow at this rate: the other way looks cheaper
                break
    if clicks:
        actions.append(Action("keep", costs.accept))  # Enter keeps the result
    return ClickResult(mask if mask is not None else Mask.empty(size), actions, dict(tally), ended)
