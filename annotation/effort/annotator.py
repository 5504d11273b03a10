"""The simulated annotator: labels ground-truth instances manually or from proposals.

Every gesture is a real edit of a ``Mask`` through the operations the tools use
(``rasterize_polygon`` for the polygon tool, ``Mask.paint_stroke`` for brush and
eraser, ``annotation.reroute.reroute`` -- the desktop tool's own function -- for the
boundary reroute, ``Mask.union`` for merge), and
every gesture is charged from the ``CostTable``. The annotator knows the truth (it is
a simulation, like 004's simulated yes/no answers), and behaves as follows.

Manual, per ground-truth instance:
  1. ``decide`` + ``set_class``;
  2. polygon: the outer outline traced with a vertex wherever it departs from the
     truth by more than ``tolerance`` px (``approxPolyDP``); if that needs more than
     ``vertex_budget`` vertices the tolerance is relaxed until it fits;
     or, for thin instances (half-width <= ``brush_max_radius``), brush strokes along
     the skeleton; the annotator uses whichever reaches the target more cheaply;
  3. corrections (``correct``) until IoU >= ``target_iou`` or ``max_corrections``.

Correction loop: the error regions (truth not covered, covered but not truth) are
split into connected components and fixed largest first: thin ones with brush or
eraser strokes along their skeleton, thick ones with a boundary reroute: the path
starts on the mask's boundary, follows the stretch of the component's outline that the
old boundary does not (``geometry.reroute_trace``) and ends on the boundary again; it
is charged like a polygon with the vertices of that path (``approxPolyDP`` at
``tolerance``). A thick component that does not touch the boundary (a hole, a detached
piece) is drawn with the polygon tool (missing) or erased (surplus); when the tool's
reroute refuses the path, changes mostly pixels outside the component ("wrong side")
or does not raise IoU, that component gets brush or eraser strokes instead. Each of
these outcomes is counted in ``Labelled.corrections``. An edit that does not raise IoU
is undone and that component skipped.

Assisted, per image: each proposal costs ``decide``. A proposal with IoU < ``reject_iou``
with every truth and not mostly inside one is rejected. Otherwise it belongs to the
truth it overlaps most; further proposals on that truth are merged into the first.
The result is accepted as is when IoU >= ``target_iou``, else corrected and accepted;
when rejecting and drawing from scratch is cheaper (or reaches the target where
correcting does not) the annotator does that instead (an oracle choice: a person
estimates it, the simulation knows it). Truths without a proposal are drawn manually.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np

from annotation.effort.costs import Action, CostTable, polygon_cost, stroke_cost
from annotation.effort.geometry import outline_polygons, path_length, reroute_trace, simplify_path, stroke_plan
from annotation.mask import Mask, rasterize_polygon
from annotation.reroute import near_boundary, reroute

# how the thick error regions were corrected (keys of ``Labelled.corrections``)
CORRECTION_KINDS = (
    "reroute",  # the tool's reroute along the traced path, kept
    "reroute_none",  # the tool refused the path (ends not on the boundary): strokes instead
    "reroute_wrong_side",  # the tool changed mostly pixels outside the region: strokes instead
    "reroute_no_gain",  # the reroute did not raise IoU: strokes instead
    "polygon_detached",  # missing piece away from the boundary: polygon tool
    "erase_hole",  # surplus piece away from the boundary (or all along it): eraser
)
SNAP_RADIUS = 4.0  # px: how far from the boundary the traced path may start and end


@dataclass(frozen=True)
class AnnotatorParams:
    """How the simulated annotator works (pixels, IoU, counts)."""

    target_iou: float = 0.9
    tolerance: float = 1.5  # px a traced outline may depart from the truth
    vertex_budget: int = 150  # most polygon vertices per instance
    max_corrections: int = 40  # most corrective gestures per instance
    brush_max_radius: int = 8  # thicker error regions are fixed with a reroute
    min_error_area: int = 2  # error components smaller than this are ignored
    reject_iou: float = 0.1  # proposals below this with every truth are false
    inside_fraction: float = 0.5  # ... unless this much of them lies inside a truth


@dataclass
class Labelled:
    """One truth instance as the annotator left it.

    ``seconds`` is the time charged to this instance; ``actions`` the gestures;
    ``mode``: ``manual``, ``accepted`` (proposal taken as is), ``corrected``,
    ``redrawn`` (proposal rejected, drawn from scratch) or ``missed`` (no proposal,
    drawn manually).
    """

    gt_index: int
    class_name: str
    mask: Mask
    iou: float
    seconds: float
    mode: str
    actions: list[Action] = field(default_factory=list)
    corrections: dict[str, int] = field(default_factory=dict)  # CORRECTION_KINDS -> count


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


class SimulatedAnnotator:
    """Labels truth instances with real mask edits, charging each gesture from a cost table."""

    def __init__(self, costs: CostTable, params: AnnotatorParams = AnnotatorParams()):
        self.costs = costs
        self.params = params

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

    def _fix_component(
        self, mask: Mask, comp: np.ndarray, offset: tuple[int, int], add: bool, box: tuple[int, int, int, int],
        truth: Optional[Mask] = None, tally: Optional[Counter] = None,
    ) -> tuple[Mask, list[Action]]:
        """One correction of one error component; returns the edited copy and the gestures.

        With ``truth`` given, a reroute that does not raise IoU is replaced by strokes.
        """
        p, c = self.params, self.costs
        tally = tally if tally is not None else Counter()
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
                out, actions = mask, []
                for ring in outline_polygons(comp, p.tolerance):
                    if len(ring) < 3:
                        continue
                    out = out.union(rasterize_polygon(ring + [ox, oy], mask.image_size))
                    actions.append(Action("polygon", polygon_cost(c, len(ring)), vertices=len(ring)))
                return out, actions
            tally["erase_hole"] += 1
            return self._strokes(mask, comp, ox, oy, add)
        path = simplify_path(trace.astype(np.float64), p.tolerance) + [box[0], box[1]]
        res = None
        if near_boundary(mask, *path[0], SNAP_RADIUS) and near_boundary(mask, *path[-1], SNAP_RADIUS):
            res = reroute(mask, path, snap_radius=SNAP_RADIUS)
        if res is None or not res.changed:
            tally["reroute_none"] += 1
            return self._strokes(mask, comp, ox, oy, add)
        if not self._right_side(res, comp, ox, oy, add):
            tally["reroute_wrong_side"] += 1
            return self._strokes(mask, comp, ox, oy, add)
        out = mask.copy()
        out.write_box(res.box, res.after)
        if truth is not None and out.iou(truth) <= mask.iou(truth):
            tally["reroute_no_gain"] += 1
            return self._strokes(mask, comp, ox, oy, add)
        tally["reroute"] += 1
        vertices = len(path)
        return out, [Action("reroute", polygon_cost(c, vertices), vertices=vertices, length=path_length(path))]

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

    def correct(self, start: Mask, truth: Mask) -> tuple[Mask, list[Action]]:
        """Brush strokes, eraser strokes and reroutes until IoU >= target or the budget is spent."""
        mask, actions, _ = self.correct_counted(start, truth)
        return mask, actions

    def correct_counted(self, start: Mask, truth: Mask) -> tuple[Mask, list[Action], dict[str, int]]:
        """``correct``, plus how the thick regions were fixed (``CORRECTION_KINDS`` -> count)."""
        p = self.params
        mask = start.cropped()
        actions: list[Action] = []
        tally: Counter = Counter()
        if truth.is_empty():
            return mask, actions, {}
        current = mask.iou(truth)
        skipped: set[tuple[bool, int, int, int]] = set()
        gestures = 0
        while current < p.target_iou and gestures < p.max_corrections:
            box = _box_around([mask, truth], pad=p.brush_max_radius + 3)
            cur, gt = mask.read_box(box), truth.read_box(box)
            candidates = [(a, comp, off, True) for a, comp, off in _components(gt & ~cur, p.min_error_area)]
            candidates += [(a, comp, off, False) for a, comp, off in _components(cur & ~gt, p.min_error_area)]
            candidates.sort(key=lambda t: -t[0])
            progressed = False
            for area, comp, off, add in candidates:
                key = (add, box[0] + off[0], box[1] + off[1], area)
                if key in skipped:
                    continue
                edited, acts = self._fix_component(mask, comp, off, add, box, truth, tally)
                new_iou = edited.iou(truth)
                if new_iou <= current or not acts:
                    skipped.add(key)  # the gesture did not help: undo it, try the next region
                    continue
                mask, current = edited.cropped(), new_iou
                actions.extend(acts)
                gestures += len(acts)
                progressed = True
                break
            if not progressed:
                break
        return mask, actions, dict(tally)

    # ------------------------------------------------------------ manual
    def _draw_polygon(self, truth: Mask) -> tuple[Mask, list[Action]]:
        p = self.params
        crop = truth.cropped()
        tol = p.tolerance
        rings = outline_polygons(crop.array, tol)
        while sum(len(r) for r in rings) > p.vertex_budget and tol < 64:
            tol *= 1.5
            rings = outline_polygons(crop.array, tol)
        mask = Mask.empty(truth.image_size)
        actions = []
        for ring in rings:
            pts = ring + [crop.x0, crop.y0]
            mask = mask.union(rasterize_polygon(pts, truth.image_size))
            actions.append(Action("polygon", polygon_cost(self.costs, len(ring)), vertices=len(ring)))
        return mask, actions

    def _draw_brush(self, truth: Mask) -> tuple[Mask, list[Action]]:
        crop = truth.cropped()
        mask = Mask.empty(truth.image_size)
        actions = []
        for points, radius in stroke_plan(crop.array):
            pts = points + [crop.x0, crop.y0]
            mask.paint_stroke(pts, radius, value=True)
            length = path_length(pts)
            actions.append(Action("stroke", stroke_cost(self.costs, length), length=length))
        return mask.cropped(), actions

    def draw(self, truth: Mask, class_name: str, gt_index: int = -1, mode: str = "manual") -> Labelled:
        """Label one truth instance from scratch (the manual baseline)."""
        c, p = self.costs, self.params
        head = [Action("decide", c.decide), Action("set_class", c.set_class)]
        options = []
        crop = truth.cropped()
        strategies = [self._draw_polygon]
        half_width = cv2.distanceTransform(np.pad(crop.array.astype(np.uint8), 1), cv2.DIST_L2, 3).max()
        if half_width <= p.brush_max_radius + 1:
            strategies.append(self._draw_brush)
        for strategy in strategies:
            mask, acts = strategy(truth)
            mask, fixes, tally = self.correct_counted(mask, truth)
            acts = head + acts + fixes
            final = mask.iou(truth)
            options.append((final >= p.target_iou, sum(a.seconds for a in acts), final, mask, acts, tally))
        reached, seconds, final, mask, acts, tally = min(
            options, key=lambda o: (not o[0], o[1] if o[0] else -o[2])
        )
        return Labelled(gt_index, class_name, mask, final, seconds, mode, acts, tally)

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
        """Label one image starting from ``proposals``; ``manual`` (if given) is reused for redraws."""
        c, p = self.costs, self.params
        if manual is None:
            manual = self.label_manual(truths)
        extra: list[Action] = []
        false_count = 0
        assigned: dict[int, list[ProposalMask]] = {}
        for prop in proposals:
            if prop.mask.is_empty():
                continue
            inter = [prop.mask.intersection_area(m) for _, m in truths]
            ious = [prop.mask.iou(m) for _, m in truths]
            best = int(np.argmax(inter)) if truths else -1
            inside = inter[best] / max(1, prop.mask.area) if truths else 0.0
            if not truths or (max(ious) < p.reject_iou and inside < p.inside_fraction):
                false_count += 1
                continue
            assigned.setdefault(best, []).append(prop)
        out: list[Labelled] = []
        for i, (cls, truth) in enumerate(truths):
            props = assigned.get(i)
            if not props:
                drawn = manual.instances[i]
                out.append(Labelled(i, cls, drawn.mask, drawn.iou, drawn.seconds, "missed", list(drawn.actions),
                                    dict(drawn.corrections)))
                continue
            props = sorted(props, key=lambda q: -q.mask.intersection_area(truth))
            # a truth covered by several fragments: merge them all, or start from the
            # largest and leave the fragments to "reject the rest"; the cheaper wins
            candidates = [self._from_proposals(i, cls, truth, props, merge=True)]
            if len(props) > 1:
                candidates.append(self._from_proposals(i, cls, truth, props, merge=False))
            drawn = manual.instances[i]
            redraw_acts = [Action("decide", c.decide), Action("reject", c.reject)] + list(drawn.actions)
            candidates.append((Labelled(i, cls, drawn.mask, drawn.iou, sum(a.seconds for a in redraw_acts), "redrawn",
                                        redraw_acts, dict(drawn.corrections)), len(props) - 1))
            best, left_over = min(candidates, key=lambda lc: (lc[0].iou < p.target_iou, lc[0].seconds))
            false_count += left_over
            out.append(best)
        return ImageLabelling(out, extra + self._clear_false(false_count))

    def _from_proposals(
        self, i: int, cls: str, truth: Mask, props: Sequence[ProposalMask], merge: bool
    ) -> tuple[Labelled, int]:
        """Accept or correct a truth's proposals; returns the result and how many were left over."""
        c, p = self.costs, self.params
        used = list(props) if merge else list(props[:1])
        acts = [Action("decide", c.decide) for _ in used]
        start = used[0].mask
        for other in used[1:]:
            start = start.union(other.mask)
            acts.append(Action("merge", c.merge))
        if used[0].class_name != cls:
            acts.append(Action("set_class", c.set_class))
        start_iou = start.iou(truth)
        if start_iou >= p.target_iou:
            acts.append(Action("accept", c.accept))
            done = Labelled(i, cls, start.cropped(), start_iou, sum(a.seconds for a in acts), "accepted", acts)
            return done, len(props) - len(used)
        fixed, fixes, tally = self.correct_counted(start, truth)
        acts = acts + fixes + [Action("accept", c.accept)]
        done = Labelled(i, cls, fixed, fixed.iou(truth), sum(a.seconds for a in acts), "corrected", acts, tally)
        return done, len(props) - len(used)

    def _clear_false(self, count: int) -> list[Action]:
        """Actions for ``count`` false proposals on an image.

        One by one when there is one; when there are several, the expert deals with the
        true ones and clears the rest with one key (the review panel's "Reject the rest",
        Shift+R): one look at what is left, one key press.
        """
        c = self.costs
        if count == 1:
            return [Action("decide", c.decide), Action("reject", c.reject)]
        if count > 1:
            return [Action("decide", c.decide), Action("reject_rest", c.reject)]
        return []
