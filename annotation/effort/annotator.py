"""The simulated annotator: labels ground-truth instances manually or from proposals.

Every gesture is a real edit of a ``Mask`` through the operations the tools use
(``rasterize_polygon`` for the polygon tool, ``Mask.paint_stroke`` for brush and
eraser, ``annotation.reroute.reroute`` -- the desktop tool's own function -- for the
boundary reroute, ``Mask.union`` for merge), and every gesture, including one that did
not help and was undone, is charged from the ``CostTable``.

The annotator knows the truth (it is a simulation, like 004's simulated yes/no
answers), but uses it only the way a person uses their eyes: to see the object and how
large the visible error regions are, and to answer "is it good enough yet?" (IoU >=
``target_iou``) and "did that gesture help?". It never runs two ways of labelling an
instance and keeps the cheaper: every choice follows a rule stated below.

**The stopping rule, the same on both sides.** Work on an instance stops when the mask
reaches ``target_iou``, when the time spent on the instance reaches ``instance_cap_s``
(a gesture in progress is finished, no new one is started), or when nothing more helps
(the correction stalls); the instance keeps the MOST ACCURATE mask reached, and is
charged all the time spent. Manual and assisted labelling obey the same rule and the
same cap. The caps are parameters, not measurements: 300 s per instance is about four
times COCO's 79 s per polygon instance, and a proposal's correction is given up past
120 s, about four times the 31 s 003 measured for refining a proposal (Fig. 6).

Manual, per truth instance (also the redraw of the assisted side):
  1. ``decide`` + ``set_class``;
  2. a thin instance (``is_thin``: mean width within the largest brush stroke, ``2
     brush_max_radius + 1`` px, which a person sees) is painted with brush strokes
     along its skeleton, the brush set to its mean width, longest branch first, until
     it is good enough or every branch is painted; any other is
     drawn with the CHEAPEST polygon that reaches the target: the truth's outline
     simplified (``approxPolyDP``) at tolerances from 64 px down to 0.5 px, the first
     (coarsest, fewest vertices) whose rasterisation reaches ``target_iou`` (a person
     places vertices at corners, not along every pixel); if none does (holes, specks),
     the outline traced at ``tolerance`` (relaxed to fit ``vertex_budget``);
  3. corrections until the stopping rule ends the work.

Correction loop (both sides): the error regions (truth not covered, covered but not
truth) are split into connected components and fixed largest first: thin ones with
brush or eraser strokes along their skeleton, thick ones with a boundary reroute (the
path starts on the mask's boundary, follows the stretch of the component's outline the
old boundary does not, ``geometry.reroute_trace``, and ends on the boundary again,
charged like a polygon with that path's vertices). A thick component away from the
boundary is drawn with the polygon tool (missing) or erased (surplus). As for the
manual polygon, vertices go at corners: the path or outline is simplified with the
coarsest tolerance (32 px down to ``tolerance``) whose edit does the job as well as the
finest tracing does (reaches the target if that does, else 90 % of its gain). When the
tool's reroute refuses the path, changes mostly pixels outside the component or does not help,
the person undoes it and uses strokes: the reroute, the undo and the strokes are all
charged. A gesture that does not raise IoU is undone (charged: the gesture and
``undo``) and that component skipped. After ``stall_steps`` such gestures in a row, or
``max_corrections`` gestures, or when no component is left to try, the correction has
stalled.

Assisted, per image, proposals in the review queue's order (best score first):
  * a proposal with IoU < ``reject_iou`` with every truth and not mostly inside one is
    false; otherwise it is on the truth it overlaps most (the object it visibly covers);
  * an object's first proposal is looked at (``decide``) together with the other
    proposals on it; those lying mostly (``inside_fraction``) inside the object and not
    mere specks (``merge_min_fraction`` of the first one's area) are merged into it
    (``decide`` + ``merge`` each) when the merged mask is worth correcting; the rest are
    left over;
  * the (merged) mask is accepted when it reaches the target; it is CORRECTED when it
    is good enough to correct by what a person sees -- its error regions together no
    larger than what it has right, IoU >= ``correct_min_iou`` -- and REDRAWN otherwise
    (``reject``, then drawn as manually);
  * a correction that stalls below the target, or runs past ``correction_cap_s``, is
    ABANDONED: the mask is rejected and the instance redrawn, and both the correction
    and the redraw are charged (the more accurate mask is kept);
  * truths without a proposal are found and drawn as manually (``missed``);
  * the proposals left over (false ones, fragments, duplicates) cost a decision each
    (``decide`` + ``reject``), or, when two or more are left and none of them is a true
    one (which is visible once every object is labelled), the review panel's "Reject the
    rest of this image" (Shift+R) clears them: one look at the image (``decide``), a
    ``glance`` at each remaining proposal, one key press (``reject``).

With a click tool (``SimulatedAnnotator(..., clicks=ClickTool)``, issue "Correct with
clicks"; ``annotation.effort.clicks``), both sides have the prompt tool, and the policy
is fixed, the same for every object, never chosen by comparing simulated outcomes:
  * drawing (manual, redraw, missed): ``decide`` + ``set_class``, then clicks from
    nothing (the first at the object's centre); if they stop below the target, the click
    result is corrected with brush / reroute when that looks like less work than drawing
    (``worth_fixing``: an estimate by eye from the visible error regions and the object's
    outline, never a simulation of both ways), else the object is drawn with the polygon
    or the brush as above and corrected; every click made is charged either way;
  * a proposal worth correcting (IoU >= ``correct_min_iou``, as without clicks): clicks
    first, fed the proposal as the previous mask; if they stop below the target, brush /
    reroute from the click result when ``worth_fixing``, else it is abandoned at once;
    the correction (clicks and strokes) is abandoned past ``correction_cap_s`` or when it
    stalls, and the object redrawn (with clicks), all charged;
  * clicks stop at the target, after ``click_stall`` clicks in a row without visible
    progress (undone, or a gain under ``click_min_gain``), after ``max_clicks``, or at
    the time budget. The truth answers "good enough yet?", and, as a person's eyes do,
    where the largest error is (the click rule) and whether a click helped.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np

from annotation.effort.clicks import ClickTool, click_session
from annotation.effort.costs import Action, CostTable, polygon_cost, stroke_cost
from annotation.effort.geometry import outline_polygons, path_length, reroute_trace, simplify_path, stroke_plan
from annotation.mask import Mask, rasterize_polygon
from annotation.reroute import near_boundary, reroute

# how the thick error regions were corrected (keys of ``Labelled.corrections``)
CORRECTION_KINDS = (
    "reroute",  # the tool's reroute along the traced path, kept
    "reroute_none",  # the tool refused the path (ends not on the boundary): strokes instead
    "reroute_wrong_side",  # the tool changed mostly pixels outside the region: undone, strokes instead
    "reroute_no_gain",  # the reroute did not raise IoU: undone, strokes instead
    "polygon_detached",  # missing piece away from the boundary: polygon tool
    "erase_hole",  # surplus piece away from the boundary (or all along it): eraser
    "undone",  # a gesture that did not raise IoU, undone (any kind)
    "click",  # a click of the prompt tool (kept or undone)
    "click_undone",  # a click that did not raise IoU, undone
)
# how an instance ended (``Labelled.mode``)
MODES = ("manual", "accepted", "corrected", "abandoned", "redrawn", "missed")
SNAP_RADIUS = 4.0  # px: how far from the boundary the traced path may start and end
# tolerances (px) tried, coarsest first, for the coarsest reroute trace or detached polygon
# that does a correction's job as well as the finest tracing (``AnnotatorParams.tolerance``)
COARSER_TRACES = (32.0, 16.0, 8.0, 4.0, 2.0)
# polygon simplification tolerances (px) for the cheapest polygon (listed finest first, tried coarsest first)
POLYGON_TOLERANCES = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0)


@dataclass(frozen=True)
class AnnotatorParams:
    """How the simulated annotator works (pixels, IoU, counts, seconds)."""

    target_iou: float = 0.9
    tolerance: float = 1.5  # px a traced reroute path or detached piece may depart from the truth
    vertex_budget: int = 150  # most polygon vertices per instance
    max_corrections: int = 200  # most gestures per correction: a safety; the time caps bind first
    stall_steps: int = 3  # gestures in a row that did not help: the correction has stalled
    instance_cap_s: float = 300.0  # the same time cap per instance on both sides (~4 x COCO's 79 s)
    correction_cap_s: float = 120.0  # a proposal's correction past this is abandoned (~4 x 003's 31 s)
    correct_min_iou: float = 0.5  # correct a proposal whose errors are no larger than what it has right
    brush_max_radius: int = 8  # thicker error regions are fixed with a reroute; thinner truths are painted
    min_error_area: int = 2  # error components smaller than this are ignored
    reject_iou: float = 0.1  # proposals below this with every truth are false
    inside_fraction: float = 0.5  # ... unless this much of them lies inside a truth
    merge_min_fraction: float = 0.01  # fragments smaller than this part of the first proposal are not worth a merge
    max_clicks: int = 20  # most clicks per click session (the NoC protocol's 20)
    click_stall: int = 2  # clicks in a row without visible progress: back to brush / reroute / drawing
    click_min_gain: float = 0.01  # IoU gain a click must bring to count as progress

    def __post_init__(self) -> None:
        if not 0.0 < self.target_iou <= 1.0:
            raise ValueError(f"target IoU must be in (0, 1], got {self.target_iou}")
        if self.instance_cap_s <= 0 or self.correction_cap_s <= 0 or self.stall_steps < 1:
            raise ValueError("the time caps must be positive and stall_steps at least 1")


@dataclass
class Labelled:
    """One truth instance as the annotator left it.

    ``seconds`` is the time charged to this instance; ``actions`` the gestures;
    ``mode`` one of ``MODES``: ``manual``, ``accepted`` (proposal taken as is),
    ``corrected``, ``abandoned`` (correction given up, then redrawn: both charged),
    ``redrawn`` (proposal rejected at sight, drawn from scratch) or ``missed`` (no
    proposal, drawn manually). ``capped``: the instance cap ended the work.
    """

    gt_index: int
    class_name: str
    mask: Mask
    iou: float
    seconds: float
    mode: str
    actions: list[Action] = field(default_factory=list)
    corrections: dict[str, int] = field(default_factory=dict)  # CORRECTION_KINDS -> count
    capped: bool = False


@dataclass
class ImageLabelling:
    """All instances of one image plus the actions not tied to a truth (rejections)."""

    instances: list[Labelled]
    extra_actions: list[Action] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(i.seconds for i in self.instances) + sum(a.seconds for a in self.extra_actions)


@dataclass(frozen=True)
class ProposalMask:
    """A proposal handed to the annotator: mask, class and score."""

    mask: Mask
    class_name: str
    score: float = 1.0


@dataclass
class Correction:
    """What a correction did: the mask, the gestures, how thick regions were fixed, and
    why it ended (``reached``, ``stalled`` or ``capped``)."""

    mask: Mask
    actions: list[Action]
    tally: dict[str, int]
    ended: str

    @property
    def seconds(self) -> float:
        return _seconds(self.actions)


def _seconds(actions: Sequence[Action]) -> float:
    return float(sum(a.seconds for a in actions))


def _box_around(masks: Sequence[Mask], pad: int) -> tuple[int, int, int, int]:
    h, w = masks[0].image_size
    boxes = [m.bbox for m in masks if not m.is_empty()]
    if not boxes:
        return (0, 0, 0, 0)
    x0 = max(0, min(b[0] for b in boxes) - pad)
    y0 = max(0, min(b[1] for b in boxes) - pad)
    x1 = min(w, max(b[2] for b in boxes) + pad)
    y1 = min(h, max(b[3] for b in boxes) + pad)
    return x0, y0, x1, y1


def _components(region: np.ndarray, min_area: int) -> list[tuple[int, np.ndarray, tuple[int, int]]]:
    """(area, component bool array, (x, y) offset in the region) of each component, largest first."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
    out = []
    for i in range(1, n):
        area = int(stats[i, cv2.CC_STAT_AREA])
        if area < min_area:
            continue
        x, y, w, h = (int(v) for v in stats[i, :4])
        out.append((area, labels[y : y + h, x : x + w] == i, (x, y)))
    out.sort(key=lambda t: -t[0])
    return out


def mean_width(mask: Mask) -> float:
    """The mean width of a mask in pixels, ``2 area / boundary pixels``: what a person
    judges by eye (a line ``w`` px wide and ``L`` long has ``w L`` pixels, ``2 L`` on its
    boundary); cheap on a large pane, unlike a skeleton."""
    crop = mask.cropped().array
    if not crop.any():
        return 0.0
    inner = cv2.erode(np.pad(crop.astype(np.uint8), 1), np.ones((3, 3), np.uint8))[1:-1, 1:-1].astype(bool)
    boundary = int(np.count_nonzero(crop & ~inner))
    return 2.0 * int(np.count_nonzero(crop)) / max(1, boundary)


def is_thin(mask: Mask, brush_max_radius: float) -> bool:
    """Whether a person would paint ``mask`` with the brush: its mean width is within what
    the largest brush stroke paints (``2 r + 1`` px) and no part of it is more than twice
    that wide (a crack with a wide spot is still a crack; a pane is not). Pin-holes
    smaller than a brush dab do not count (a speckled pane is a pane); the larger holes
    a crack network encloses do (it is a network of lines, not a blob)."""
    reach = 2 * brush_max_radius + 1
    crop = mask.cropped().array
    if not crop.any():
        return False
    cropped = mask.cropped()
    holes = cropped.fill_holes().read_box(cropped.box) & ~crop
    if holes.any():
        _, labels, stats, _ = cv2.connectedComponentsWithStats(holes.astype(np.uint8), connectivity=4)
        small = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < reach * reach) + 1
        crop = crop | np.isin(labels, small)
    solid = Mask(0, 0, crop, crop.shape)
    half = float(cv2.distanceTransform(np.pad(crop.astype(np.uint8), 1), cv2.DIST_L2, 3).max())
    return half <= reach and mean_width(solid) <= reach


class SimulatedAnnotator:
    """Labels truth instances with real mask edits, charging each gesture from a cost table."""

    def __init__(self, costs: CostTable, params: AnnotatorParams = AnnotatorParams(),
                 clicks: Optional[ClickTool] = None):
        self.costs = costs
        self.params = params
        self.clicks = clicks  # the prompt tool's click model (None: no click correction)
        self._draw_estimates: dict = {}

    def set_image(self, rgb: np.ndarray, key: str) -> None:
        """Show the click tool the image about to be labelled (nothing without one)."""
        if self.clicks is not None:
            self.clicks.set_image(rgb, key)

    def _click(self, start: Optional[Mask], truth: Mask, budget: float) -> Correction:
        """A click session (``annotation.effort.clicks``) as a ``Correction``; clicking also
        stops when, at the rate the last click gained, finishing with clicks would cost
        more than the other way looks like (drawing the object, or fixing ``start`` by
        hand: ``draw_estimate``, ``fix_estimate``)."""
        assert self.clicks is not None
        p = self.params
        other = self.draw_estimate(truth)
        if start is not None and not start.is_empty():
            other = min(other, self.fix_estimate(start, truth))
        res = click_session(self.clicks, start, truth, self.costs, p.target_iou, budget, p.max_clicks,
                            p.click_stall, p.click_min_gain, other)
        return Correction(res.mask, res.actions, res.tally, res.ended)

    def worth_fixing(self, mask: Mask, truth: Mask) -> bool:
        """After clicks stall: fix what they left with brush / reroute, or draw the object?

        A judgement by eye, not a simulation of either way: the mask must be worth
        correcting (IoU >= ``correct_min_iou``), and the gestures its visible error regions
        need -- largest first, until what is left would be good enough: one brush or eraser
        stroke along a thin region (``stroke`` + its length), a reroute of a thick one
        (a polygon of its outline traced at 4 px) -- must cost less than drawing the object
        (its cheapest polygon, or for a thin object a stroke per skeleton branch).
        """
        if mask.is_empty() or mask.iou(truth) < self.params.correct_min_iou:
            return False
        return self.fix_estimate(mask, truth) < self.draw_estimate(truth)

    def fix_estimate(self, mask: Mask, truth: Mask) -> float:
        """Seconds the visible error regions of ``mask`` look like to fix by hand (by eye:
        largest first until the rest would be good enough; ``worth_fixing``)."""
        p, c = self.params, self.costs
        box = _box_around([mask, truth], pad=2)
        cur, gt = mask.read_box(box), truth.read_box(box)
        inter, union = int(np.count_nonzero(cur & gt)), int(np.count_nonzero(cur | gt))
        comps = [(a, comp, True) for a, comp, _ in _components(gt & ~cur, p.min_error_area)]
        comps += [(a, comp, False) for a, comp, _ in _components(cur & ~gt, p.min_error_area)]
        comps.sort(key=lambda t: -t[0])
        fix = 0.0
        for area, comp, add in comps:
            if union and inter / union >= p.target_iou:
                break
            half = float(cv2.distanceTransform(np.pad(comp.astype(np.uint8), 1), cv2.DIST_L2, 3).max())
            if half <= p.brush_max_radius + 1:
                fix += stroke_cost(c, area / max(1.0, 2.0 * half))
            else:  # a reroute: the region's outline, traced coarsely
                fix += polygon_cost(c, max(3, sum(len(r) for r in outline_polygons(comp, 4.0))))
            inter, union = (inter + area, union) if add else (inter, union - area)
        return fix

    def draw_estimate(self, truth: Mask) -> float:
        """Seconds the object looks like to draw: its cheapest polygon, or for a thin one a
        brush stroke per skeleton branch (what a person judges from its shape)."""
        key = (id(truth), truth.bbox, truth.area)
        if key not in self._draw_estimates:
            c = self.costs
            if is_thin(truth, self.params.brush_max_radius):
                est = sum(stroke_cost(c, path_length(pts)) for pts, _ in stroke_plan(truth.cropped().array))
            else:
                est = polygon_cost(c, self.cheapest_polygon(truth)[1])
            if len(self._draw_estimates) > 4096:
                self._draw_estimates.clear()
            self._draw_estimates[key] = (truth, est)  # the mask is held so its id stays its own
        return self._draw_estimates[key][1]

    def refine(self, start: Mask, truth: Mask, budget: float) -> Correction:
        """Correct a mask worth correcting: clicks first when there is a click tool, then
        brush / reroute from where they left it, within ``budget`` seconds in all."""
        if self.clicks is None or start.iou(truth) >= self.params.target_iou:
            return self.correct(start, truth, budget)
        clicked = self._click(start, truth, budget)
        if clicked.ended == "reached" or not self.worth_fixing(clicked.mask, truth):
            # reached, or the errors left look like more work than drawing the object:
            # a stall, so the caller abandons it and redraws (clicks charged)
            return Correction(clicked.mask, clicked.actions, clicked.tally,
                              "reached" if clicked.ended == "reached" else "stalled")
        fix = self.correct(clicked.mask, truth, budget - clicked.seconds)
        tally = Counter(clicked.tally) + Counter(fix.tally)
        return Correction(fix.mask, clicked.actions + fix.actions, dict(tally), fix.ended)

    # ------------------------------------------------------------ gestures
    def _strokes(
        self, mask: Mask, comp: np.ndarray, ox: int, oy: int, add: bool
    ) -> tuple[Mask, list[Action]]:
        """Brush (``add``) or eraser strokes along the component's skeleton."""
        c = self.costs
        out = mask.copy()
        actions = []
        for points, radius in stroke_plan(comp, max_strokes=4):
            pts = points + [ox, oy]
            out.paint_stroke(pts, radius, value=add)
            length = path_length(pts)
            actions.append(Action("stroke" if add else "erase", stroke_cost(c, length), length=length))
        return out, actions

    def _undo(self) -> Action:
        return Action("undo", self.costs.undo)

    def _fix_component(
        self, mask: Mask, comp: np.ndarray, offset: tuple[int, int], add: bool, box: tuple[int, int, int, int],
        truth: Mask, tally: Counter,
    ) -> tuple[Mask, list[Action]]:
        """One correction of one error component; returns the edited copy and every
        gesture made, including a reroute that was undone before the strokes replaced it."""
        p, c = self.params, self.costs
        ox, oy = box[0] + offset[0], box[1] + offset[1]
        dt = cv2.distanceTransform(np.pad(comp.astype(np.uint8), 1), cv2.DIST_L2, 3)
        if float(dt.max()) <= p.brush_max_radius + 1:
            return self._strokes(mask, comp, ox, oy, add)
        # thick: a boundary reroute traced along the stretch of the true boundary
        cur = mask.read_box(box)
        error = np.zeros(cur.shape, bool)
        error[offset[1] : offset[1] + comp.shape[0], offset[0] : offset[0] + comp.shape[1]] = comp
        trace = reroute_trace(cur, error, add)
        if trace is None:
            if add:
                tally["polygon_detached"] += 1
                return self._detached_polygon(mask, comp, ox, oy, truth)
            tally["erase_hole"] += 1
            return self._strokes(mask, comp, ox, oy, add)
        fine = self._reroute_at(mask, trace, box, p.tolerance)
        traced = Action("reroute", polygon_cost(c, len(fine[0])), vertices=len(fine[0]), length=path_length(fine[0]))
        res = fine[1]
        if res is None or not res.changed:
            # the person traced the path and nothing changed: strokes instead
            tally["reroute_none"] += 1
            out, strokes = self._strokes(mask, comp, ox, oy, add)
            return out, [traced] + strokes
        if not self._right_side(res, comp, ox, oy, add):
            tally["reroute_wrong_side"] += 1
            out, strokes = self._strokes(mask, comp, ox, oy, add)
            return out, [traced, self._undo()] + strokes
        out = mask.copy()
        out.write_box(res.box, res.after)
        before, after = mask.iou(truth), out.iou(truth)
        if after <= before:
            tally["reroute_no_gain"] += 1
            out, strokes = self._strokes(mask, comp, ox, oy, add)
            return out, [traced, self._undo()] + strokes
        tally["reroute"] += 1
        # a person places vertices at corners: the coarsest trace that does the job as well
        goal = self._goal(before, after)
        for tol in COARSER_TRACES:
            if tol <= p.tolerance:
                break
            path, coarse = self._reroute_at(mask, trace, box, tol)
            if coarse is None or not coarse.changed or not self._right_side(coarse, comp, ox, oy, add):
                continue
            edited = mask.copy()
            edited.write_box(coarse.box, coarse.after)
            if edited.iou(truth) >= goal:
                return edited, [Action("reroute", polygon_cost(c, len(path)), vertices=len(path),
                                       length=path_length(path))]
        return out, [traced]

    def _goal(self, before: float, finest: float) -> float:
        """What a gesture must reach to do its job as well as the finest tracing: the
        target when the finest reaches it, else 90 % of the finest's gain."""
        if finest >= self.params.target_iou:
            return self.params.target_iou
        return before + 0.97 * (finest - before)

    @staticmethod
    def _reroute_at(mask: Mask, trace: np.ndarray, box: tuple[int, int, int, int], tolerance: float):
        """The traced path simplified at ``tolerance`` (image coordinates) and the tool's
        result on it (``None`` when its ends are not on the boundary)."""
        path = simplify_path(trace.astype(np.float64), tolerance) + [box[0], box[1]]
        res = None
        if near_boundary(mask, *path[0], SNAP_RADIUS) and near_boundary(mask, *path[-1], SNAP_RADIUS):
            res = reroute(mask, path, snap_radius=SNAP_RADIUS)
        return path, res

    def _detached_polygon(self, mask: Mask, comp: np.ndarray, ox: int, oy: int,
                          truth: Mask) -> tuple[Mask, list[Action]]:
        """A missing piece away from the boundary drawn with the polygon tool: the coarsest
        outline that does the job as well as tracing it at ``tolerance``."""
        p, c = self.params, self.costs

        def drawn(tol: float) -> tuple[Mask, list[Action]]:
            out, actions = mask, []
            for ring in outline_polygons(comp, tol):
                if len(ring) < 3:
                    continue
                out = out.union(rasterize_polygon(ring + [ox, oy], mask.image_size))
                actions.append(Action("polygon", polygon_cost(c, len(ring)), vertices=len(ring)))
            return out, actions

        fine, fine_actions = drawn(p.tolerance)
        before, after = mask.iou(truth), fine.iou(truth)
        if after <= before:
            return fine, fine_actions
        goal = self._goal(before, after)
        for tol in COARSER_TRACES:
            if tol <= p.tolerance:
                break
            out, actions = drawn(tol)
            if actions and out.iou(truth) >= goal:
                return out, actions
        return fine, fine_actions

    @staticmethod
    def _right_side(res, comp: np.ndarray, ox: int, oy: int, add: bool) -> bool:
        """Whether the reroute changed the region meant: the expected direction, mostly
        within 2 px of the component."""
        if (res.added if add else res.removed) == 0:
            return False
        near = cv2.dilate(np.pad(comp.astype(np.uint8), 2), np.ones((5, 5), np.uint8)).astype(bool)
        bx0, by0, bx1, by1 = res.box
        local = np.zeros(res.after.shape, bool)
        # the component's neighbourhood (origin ox - 2, oy - 2) clipped to the result's box
        x0, y0 = max(bx0, ox - 2), max(by0, oy - 2)
        x1, y1 = min(bx1, ox - 2 + near.shape[1]), min(by1, oy - 2 + near.shape[0])
        if x1 > x0 and y1 > y0:
            local[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0] = near[y0 - oy + 2 : y1 - oy + 2, x0 - ox + 2 : x1 - ox + 2]
        changed = res.after ^ res.before
        return 2 * int(np.count_nonzero(changed & local)) >= int(np.count_nonzero(changed))

    def correct(self, start: Mask, truth: Mask, budget: Optional[float] = None) -> Correction:
        """Brush strokes, eraser strokes and reroutes until the mask reaches the target,
        the correction stalls, or ``budget`` seconds are spent (default: the instance cap).

        The mask only ever changes to a more accurate one (a gesture that does not help is
        undone), so the mask returned is the most accurate reached.
        """
        p = self.params
        budget = p.instance_cap_s if budget is None else budget
        mask = start.cropped()
        actions: list[Action] = []
        tally: Counter = Counter()
        current = mask.iou(truth)
        if current >= p.target_iou or truth.is_empty():
            return Correction(mask, actions, {}, "reached")
        skipped: set[tuple[bool, int, int, int]] = set()
        gestures = misses = 0
        ended = "stalled"
        while True:
            if current >= p.target_iou:
                ended = "reached"
                break
            if _seconds(actions) >= budget:
                ended = "capped"
                break
            if gestures >= p.max_corrections or misses >= p.stall_steps:
                break
            box = _box_around([mask, truth], pad=p.brush_max_radius + 3)
            cur, gt = mask.read_box(box), truth.read_box(box)
            candidates = [(a, comp, off, True) for a, comp, off in _components(gt & ~cur, p.min_error_area)]
            candidates += [(a, comp, off, False) for a, comp, off in _components(cur & ~gt, p.min_error_area)]
            candidates.sort(key=lambda t: -t[0])
            todo = [(a, comp, off, add) for a, comp, off, add in candidates
                    if (add, box[0] + off[0], box[1] + off[1], a) not in skipped]
            if not todo:
                break  # nothing visible left to fix: stalled below the target
            area, comp, off, add = todo[0]
            edited, acts = self._fix_component(mask, comp, off, add, box, truth, tally)
            if not acts:
                skipped.add((add, box[0] + off[0], box[1] + off[1], area))
                continue
            gestures += len(acts)
            new_iou = edited.iou(truth)
            if new_iou <= current:
                # the person sees it did not help: undo, leave that region, count a miss
                actions.extend(acts + [self._undo()])
                tally["undone"] += 1
                skipped.add((add, box[0] + off[0], box[1] + off[1], area))
                misses += 1
                continue
            actions.extend(acts)
            mask, current = edited.cropped(), new_iou
            misses = 0
        return Correction(mask, actions, dict(tally), ended)

    def correct_counted(self, start: Mask, truth: Mask) -> tuple[Mask, list[Action], dict[str, int]]:
        """``correct`` within the instance cap, as ``(mask, actions, tally)``."""
        res = self.correct(start, truth)
        return res.mask, res.actions, res.tally

    # ------------------------------------------------------------ manual
    def cheapest_polygon(self, truth: Mask) -> tuple[Mask, int]:
        """The polygon a person draws: the fewest vertices whose rasterisation reaches the
        target (the truth's outline simplified with decreasing tolerance, coarsest first);
        if none does, the outline traced at ``tolerance``. Returns the mask and its vertices."""
        p = self.params
        crop = truth.cropped()
        # coarsest first: the first outline that reaches the target has the fewest vertices
        for tol in reversed(POLYGON_TOLERANCES):
            rings = [r for r in outline_polygons(crop.array, tol) if len(r) >= 3]
            vertices = sum(len(r) for r in rings)
            if not rings or vertices > p.vertex_budget:
                continue
            mask = self._polygon_mask(rings, crop)
            if mask.iou(truth) >= p.target_iou:
                return mask, vertices
        # no polygon reaches it (holes, specks): the outline traced at the ordinary
        # tolerance, relaxed until it fits the budget; the corrections do the rest
        tol = p.tolerance
        rings = [r for r in outline_polygons(crop.array, tol) if len(r) >= 3]
        while sum(len(r) for r in rings) > p.vertex_budget and tol < POLYGON_TOLERANCES[-1]:
            tol *= 1.5
            rings = [r for r in outline_polygons(crop.array, tol) if len(r) >= 3]
        return self._polygon_mask(rings, crop), sum(len(r) for r in rings)

    @staticmethod
    def _polygon_mask(rings: Sequence[np.ndarray], crop: Mask) -> Mask:
        mask = Mask.empty(crop.image_size)
        for ring in rings:
            mask = mask.union(rasterize_polygon(ring + [crop.x0, crop.y0], crop.image_size))
        return mask

    def _draw_polygon(self, truth: Mask) -> tuple[Mask, list[Action]]:
        mask, vertices = self.cheapest_polygon(truth)
        if vertices == 0:
            return mask, []
        return mask, [Action("polygon", polygon_cost(self.costs, vertices), vertices=vertices)]

    def _draw_brush(self, truth: Mask, budget: float) -> tuple[Mask, list[Action]]:
        """Strokes along the skeleton, longest branch first, until good enough (or the budget).

        The brush is set once, to the instance's mean width (``mean_width``, what a person
        matches by eye): a stroke of radius ``r`` paints about ``2r + 1`` px.
        """
        crop = truth.cropped()
        radius = min(float(self.params.brush_max_radius), max(0.0, (mean_width(truth) - 1.0) / 2.0))
        mask = Mask.empty(truth.image_size)
        actions: list[Action] = []
        for points, _ in stroke_plan(crop.array):
            if mask.iou(truth) >= self.params.target_iou or _seconds(actions) >= budget:
                break
            pts = points + [crop.x0, crop.y0]
            mask.paint_stroke(pts, radius, value=True)
            length = path_length(pts)
            actions.append(Action("stroke", stroke_cost(self.costs, length), length=length))
        return mask.cropped(), actions

    def draw(self, truth: Mask, class_name: str, gt_index: int = -1, mode: str = "manual",
             budget: Optional[float] = None) -> Labelled:
        """Label one truth instance from scratch (the manual baseline) within ``budget``
        seconds (default: the instance cap)."""
        c, p = self.costs, self.params
        budget = p.instance_cap_s if budget is None else budget
        acts = [Action("decide", c.decide), Action("set_class", c.set_class)]
        if self.clicks is not None:
            return self._draw_with_clicks(truth, class_name, gt_index, mode, budget, acts)
        mask, drawn = self._draw_by_hand(truth, budget - _seconds(acts))
        acts += drawn
        fix = self.correct(mask, truth, budget - _seconds(acts))
        acts += fix.actions
        final = fix.mask.iou(truth)
        capped = final < p.target_iou and _seconds(acts) >= budget
        return Labelled(gt_index, class_name, fix.mask, final, _seconds(acts), mode, acts, fix.tally, capped)

    def _draw_by_hand(self, truth: Mask, budget: float) -> tuple[Mask, list[Action]]:
        """The manual way to draw one object: the brush for a thin one, else the polygon."""
        if is_thin(truth, self.params.brush_max_radius):
            return self._draw_brush(truth, budget)
        return self._draw_polygon(truth)

    def _draw_with_clicks(self, truth: Mask, class_name: str, gt_index: int, mode: str, budget: float,
                          acts: list[Action]) -> Labelled:
        """Clicks from nothing, then brush / reroute on their result when it is worth
        correcting, else the polygon or the brush as without clicks (clicks charged)."""
        p = self.params
        clicked = self._click(None, truth, budget - _seconds(acts))
        acts = acts + clicked.actions
        tally = Counter(clicked.tally)
        best, best_iou = clicked.mask, clicked.mask.iou(truth)
        if clicked.ended != "reached" and _seconds(acts) < budget:
            if self.worth_fixing(clicked.mask, truth):
                fix = self.correct(clicked.mask, truth, budget - _seconds(acts))
            else:
                mask, drawn = self._draw_by_hand(truth, budget - _seconds(acts))
                acts += drawn
                fix = self.correct(mask, truth, budget - _seconds(acts))
            acts += fix.actions
            tally += Counter(fix.tally)
            fixed_iou = fix.mask.iou(truth)
            if fixed_iou > best_iou:  # the most accurate mask reached is kept
                best, best_iou = fix.mask, fixed_iou
        capped = best_iou < p.target_iou and _seconds(acts) >= budget
        return Labelled(gt_index, class_name, best, best_iou, _seconds(acts), mode, acts, dict(tally), capped)

    def label_manual(self, truths: Sequence[tuple[str, Mask]]) -> ImageLabelling:
        """Label every truth ``(class, mask)`` of one image from scratch."""
        return ImageLabelling([self.draw(m, cls, i) for i, (cls, m) in enumerate(truths)])

    # ------------------------------------------------------------ assisted
    def label_assisted(
        self,
        truths: Sequence[tuple[str, Mask]],
        proposals: Sequence[ProposalMask],
        manual: Optional[ImageLabelling] = None,
    ) -> ImageLabelling:
        """Label one image starting from ``proposals``; ``manual`` (if given) is reused for
        redraws that have the whole cap (drawing is deterministic, so it is the same)."""
        p = self.params
        if manual is None:
            manual = self.label_manual(truths)
        queue = sorted((q for q in proposals if not q.mask.is_empty()), key=lambda q: -q.score)
        left_over: list[ProposalMask] = []
        on_truth: dict[int, list[ProposalMask]] = {}
        for prop in queue:
            if not truths:
                left_over.append(prop)
                continue
            inter = [prop.mask.intersection_area(m) for _, m in truths]
            best = int(np.argmax(inter))
            inside = inter[best] / max(1, prop.mask.area)
            if max(prop.mask.iou(m) for _, m in truths) < p.reject_iou and inside < p.inside_fraction:
                left_over.append(prop)
                continue
            on_truth.setdefault(best, []).append(prop)
        out: list[Labelled] = []
        for i, (cls, truth) in enumerate(truths):
            props = on_truth.get(i)
            if not props:
                drawn = manual.instances[i]
                out.append(Labelled(i, cls, drawn.mask, drawn.iou, drawn.seconds, "missed", list(drawn.actions),
                                    dict(drawn.corrections), drawn.capped))
                continue
            done, unused = self._from_proposals(i, cls, truth, props, manual.instances[i])
            out.append(done)
            left_over.extend(unused)
        return ImageLabelling(out, self.clear_left_over(len(left_over)))

    def _from_proposals(
        self, i: int, cls: str, truth: Mask, props: Sequence[ProposalMask], manual: Labelled
    ) -> tuple[Labelled, list[ProposalMask]]:
        """Accept, correct or redraw one object from its proposals (queue order, the first
        is the one the person reaches first); returns the result and the unused proposals."""
        c, p = self.costs, self.params
        base, others = props[0], list(props[1:])
        # fragments that visibly lie on the object and visibly matter (a speck is left over)
        inside = [q for q in others if q.mask.intersection_area(truth) >= p.inside_fraction * q.mask.area
                  and q.mask.area >= p.merge_min_fraction * base.mask.area]
        merged = base.mask
        for q in inside:
            merged = merged.union(q.mask)
        acts = [Action("decide", c.decide)]
        if merged.iou(truth) >= p.correct_min_iou:
            start = merged
            for _ in inside:  # each fragment is looked at, selected and merged
                acts += [Action("decide", c.decide), Action("merge", c.merge)]
            unused = [q for q in others if not any(q is r for r in inside)]
        else:
            start, unused = base.mask, others
        if base.class_name != cls:
            acts.append(Action("set_class", c.set_class))
        start_iou = start.iou(truth)
        if start_iou >= p.target_iou:
            acts.append(Action("accept", c.accept))
            return Labelled(i, cls, start.cropped(), start_iou, _seconds(acts), "accepted", acts), unused
        if start_iou < p.correct_min_iou:
            # not worth correcting at sight: reject it and draw the object
            acts.append(Action("reject", c.reject))
            redraw = self._redraw(truth, cls, i, manual, p.instance_cap_s - _seconds(acts))
            acts += redraw.actions
            return Labelled(i, cls, redraw.mask, redraw.iou, _seconds(acts), "redrawn", acts, dict(redraw.corrections),
                            redraw.capped), unused
        fix = self.refine(start, truth, min(p.correction_cap_s, p.instance_cap_s - _seconds(acts)))
        acts += fix.actions
        fixed_iou = fix.mask.iou(truth)
        left = p.instance_cap_s - _seconds(acts)
        if fix.ended == "reached" or left <= 0:
            acts.append(Action("accept", c.accept))
            capped = fix.ended != "reached"
            return Labelled(i, cls, fix.mask, fixed_iou, _seconds(acts), "corrected", acts, fix.tally, capped), unused
        # stalled, or past the correction cap: give it up and draw the object; both are charged
        acts.append(Action("reject", c.reject))
        redraw = self._redraw(truth, cls, i, manual, p.instance_cap_s - _seconds(acts))
        acts += redraw.actions
        tally = Counter(fix.tally) + Counter(redraw.corrections)
        if fixed_iou > redraw.iou:  # the most accurate mask reached is kept (undo back to it)
            return Labelled(i, cls, fix.mask, fixed_iou, _seconds(acts), "abandoned", acts, dict(tally),
                            redraw.capped), unused
        return Labelled(i, cls, redraw.mask, redraw.iou, _seconds(acts), "abandoned", acts, dict(tally),
                        redraw.capped), unused

    def _redraw(self, truth: Mask, cls: str, i: int, manual: Labelled, budget: float) -> Labelled:
        """Draw the object as the manual side does, within what is left of the cap."""
        if not manual.capped and manual.seconds <= budget:
            return manual  # the same deterministic drawing, which fits in the time left
        return self.draw(truth, cls, i, budget=max(0.0, budget))

    def clear_left_over(self, count: int) -> list[Action]:
        """Actions for ``count`` proposals left once every object is labelled (none is a
        true one): one decision each, or with two or more the review panel's "Reject the
        rest of this image" (Shift+R): one look at the image, a glance at each, one key."""
        c = self.costs
        if count == 1:
            return [Action("decide", c.decide), Action("reject", c.reject)]
        if count > 1:
            return [Action("decide", c.decide)] + [Action("glance", c.glance)] * count + [
                Action("reject_rest", c.reject)]
        return []
