"""004's yes/no review, simulated (``specula bench effort --yes-no``).

004 (chapter 3) collects segmentations without drawing: the model's predictions are
clustered by their embeddings, a few representatives of each cluster are shown with the
question "does this mask have an IoU with the truth above ``t_iou``?", the answer goes to
the whole cluster (split while its representatives disagree), accepted clusters are kept,
the model is retrained on them, it proposes again on the pool, predictions that duplicate
an accepted mask are removed, and the questions start over (its Table 3.1: per
iteration, questions asked, segmentations collected, model performance).

Here the ground truth answers: a proposal is *good* when its IoU with the best-matching
truth instance of its class exceeds ``t_iou`` (0.8, as in 004). Each iteration is run
twice over, in two independent loops with their own models: with clusters
(``annotation.clusters.ClusterReview``) and with one question per proposal (004's own
simulation, which skipped the clusters). With clusters, a bad mask can be accepted with
its cluster: the rows count such *wrong* masks apart from the *good* ones.

Plain Python and numpy: the proposals, the decisions and the retraining come from a
``YesNoBackend`` (``specula.effort_yes_no`` proposes through the product's engine into a
project and trains on it); this module only asks and counts.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from annotation.clusters import (
    DEFAULT_AGREEMENT,
    DEFAULT_REPRESENTATIVES,
    DEFAULT_TARGET_SIZE,
    ClusterReview,
)
from annotation.effort.proposals import EffortImage
from annotation.effort.report import _markdown
from annotation.mask import Mask

MODES = ("clusters", "per-proposal")
T_IOU = 0.8  # 004: "We accepted any segmentation with IOU greater than 0.8"


@dataclass(frozen=True)
class YesNoParams:
    """How questions are asked and which proposals are not asked again."""

    t_iou: float = T_IOU
    representatives: int = DEFAULT_REPRESENTATIVES
    agreement: float = DEFAULT_AGREEMENT
    target_size: int = DEFAULT_TARGET_SIZE
    # a new proposal overlapping an accepted mask of its image and class this much is the
    # same object found again (004 "removing duplicates with the previous iteration")
    duplicate_iou: float = 0.5
    # a proposal (nearly) identical to one rejected before would get the same answer:
    # nobody is asked the same question twice
    repeat_iou: float = 0.95


@dataclass(frozen=True)
class Candidate:
    """One stored proposal put to the reviewer: its instance id, image key and embedding."""

    id: int
    image: str
    class_name: str
    mask: Mask
    score: float
    embedding: np.ndarray | None = None


class YesNoBackend(Protocol):
    """One loop's model and project: proposes, records decisions, retrains.

    ``label`` names the model proposing now; ``validation_iou`` is that model's per-image
    mean IoU on the held-out images; ``trained_iou`` the last retrained version's (None
    before any), which the backend uses only when it beats the model in use.
    """

    label: str
    validation_iou: float
    trained_iou: float | None

    def propose(self, iteration: int) -> list[Candidate]: ...

    def record(self, accepted: Sequence[int], rejected: Sequence[int], dropped: Sequence[int],
               iteration: int) -> None: ...

    def retrain(self, iteration: int) -> None: ...


def truth_iou(mask: Mask, class_name: str, truths: Sequence[tuple[str, Mask]]) -> float:
    """IoU with the best-matching truth instance of the same class (0 when there is none)."""
    return max((mask.iou(t) for c, t in truths if c == class_name), default=0.0)


def _overlaps(mask: Mask, cls: str, kept: Sequence[tuple[str, Mask]], threshold: float) -> bool:
    return any(c == cls and mask.iou(m) > threshold for c, m in kept)


def deduplicate(candidates: Sequence[Candidate], accepted: dict[str, list[tuple[str, Mask]]],
                rejected: dict[str, list[tuple[str, Mask]]], params: YesNoParams
                ) -> tuple[list[Candidate], list[int], list[int]]:
    """(to ask, duplicates of an accepted mask, repeats of a rejected one)."""
    ask, dup, rep = [], [], []
    for c in candidates:
        if _overlaps(c.mask, c.class_name, accepted.get(c.image, ()), params.duplicate_iou):
            dup.append(c.id)
        elif _overlaps(c.mask, c.class_name, rejected.get(c.image, ()), params.repeat_iou):
            rep.append(c.id)
        else:
            ask.append(c)
    return ask, dup, rep


@dataclass
class Review:
    """The answers of one iteration: questions asked, proposals accepted and rejected."""

    questions: int = 0
    accepted: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)


def ask_each(candidates: Sequence[Candidate], good: set[int]) -> Review:
    """One question per proposal (004's simulation): the answer is the truth."""
    out = Review(questions=len(candidates))
    for c in candidates:
        (out.accepted if c.id in good else out.rejected).append(c.id)
    return out


def cluster_items(candidates: Sequence[Candidate]) -> list[tuple[int, str, np.ndarray]]:
    """``ClusterReview`` items, in id order (the same proposals give the same clusters).

    A proposal stored without an embedding gets a vector of the class's usual length
    holding only its score, so it is still asked (with its own kind) instead of failing
    the review."""
    items = sorted(candidates, key=lambda c: c.id)
    lengths: dict[str, int] = {}
    for c in items:
        if c.embedding is not None:
            lengths.setdefault(c.class_name, int(np.asarray(c.embedding).size))
    out = []
    for c in items:
        vec = c.embedding
        if vec is None or np.asarray(vec).size != lengths.get(c.class_name, 1):
            vec = np.zeros(lengths.get(c.class_name, 1), np.float32)
            vec[0] = c.score
        out.append((c.id, c.class_name, np.asarray(vec, np.float32)))
    return out


def ask_clusters(candidates: Sequence[Candidate], good: set[int], params: YesNoParams) -> Review:
    """004's review: representatives of each cluster asked, clusters split while they
    disagree; what the answers decide for the rest is accepted or rejected unseen."""
    review = ClusterReview(cluster_items(candidates), target_size=params.target_size,
                           representatives=params.representatives, agreement=params.agreement)
    while (cluster := review.current()) is not None:
        pending = review.pending(cluster)
        if not pending:  # every representative answered yet members undecided: cannot happen, but never loop
            review.decide(cluster.id, False)
            continue
        review.answer(pending[0], pending[0] in good)
    out = Review(questions=review.questions)
    for iid, yes in sorted(review.decided.items()):
        (out.accepted if yes else out.rejected).append(iid)
    return out


@dataclass
class IterationRow:
    """One iteration of one loop, as 004's Table 3.1 counts it and more."""

    mode: str
    iteration: int
    proposals: int = 0  # made by the model on the pool
    duplicates: int = 0  # dropped: the same object as an accepted mask
    repeats: int = 0  # dropped: the same mask as a rejected one
    asked_about: int = 0  # proposals put to the reviewer (directly or through their cluster)
    questions: int = 0
    accepted: int = 0
    good: int = 0  # accepted and truly above t_iou
    wrong: int = 0  # accepted with IoU <= t_iou (a cluster's answer carried them)
    good_rejected: int = 0  # good proposals rejected with their cluster
    good_available: int = 0  # good proposals among those asked about
    truths_covered: int = 0  # truth instances with a good accepted mask, all iterations so far
    masks_per_question: float = 0.0  # accepted / questions
    seconds_per_mask: float = 0.0  # questions x verify cost / accepted
    review_seconds: float = 0.0
    validation_iou: float = 0.0  # the model in use after this iteration's retraining
    trained_iou: float | None = None  # the version trained in this iteration
    model: str = ""


@dataclass
class YesNoResult:
    dataset: str
    pool_images: int
    validation_images: int
    truth_instances: int
    params: dict
    verify_seconds: float
    costs: str
    rows: list[IterationRow] = field(default_factory=list)
    wall_seconds: float = 0.0

    def totals(self, mode: str) -> dict:
        rows = [r for r in self.rows if r.mode == mode and r.iteration > 0]
        q, a = sum(r.questions for r in rows), sum(r.accepted for r in rows)
        return {"questions": q, "accepted": a, "good": sum(r.good for r in rows), "wrong": sum(r.wrong for r in rows),
                "truths_covered": rows[-1].truths_covered if rows else 0,
                "seconds_per_mask": q * self.verify_seconds / a if a else 0.0}


def run_yes_no(
    dataset: str, pool: Sequence[EffortImage], backends: dict[str, YesNoBackend], iterations: int,
    params: YesNoParams, verify_seconds: float, *, validation_images: int = 0, costs: str = "",
    progress: Callable[[str], None] | None = None,
) -> YesNoResult:
    """Run ``iterations`` rounds of ask, accept, retrain, re-propose for each mode's backend."""
    if iterations < 1:
        raise ValueError("--iterations must be at least 1")
    unknown = set(backends) - set(MODES)
    if unknown:
        raise ValueError(f"unknown review modes {sorted(unknown)} (known: {', '.join(MODES)})")
    t0 = time.perf_counter()
    truths = {im.key: im.truths for im in pool}
    result = YesNoResult(dataset, len(pool), validation_images, sum(len(t) for t in truths.values()),
                         asdict(params), verify_seconds, costs)
    for mode, backend in backends.items():
        result.rows.append(IterationRow(mode, 0, validation_iou=backend.validation_iou, model=backend.label))
        accepted: dict[str, list[tuple[str, Mask]]] = {}
        rejected: dict[str, list[tuple[str, Mask]]] = {}
        covered: set[tuple[str, int]] = set()
        for k in range(1, iterations + 1):
            row = IterationRow(mode, k, model=backend.label)
            candidates = backend.propose(k)
            # a backend that proposes through the product gets duplicates and repeats left
            # out at storing already (inference.propose.known_proposals); it says how many
            before = dict(getattr(backend, "last_dropped", None) or {})
            ask, dup, rep = deduplicate(candidates, accepted, rejected, params)
            row.duplicates = len(dup) + int(before.get("duplicates", 0))
            row.repeats = len(rep) + int(before.get("repeats", 0))
            row.proposals = len(candidates) + int(before.get("duplicates", 0)) + int(before.get("repeats", 0))
            row.asked_about = len(ask)
            ious = {c.id: truth_iou(c.mask, c.class_name, truths.get(c.image, ())) for c in ask}
            good = {i for i, v in ious.items() if v > params.t_iou}
            review = ask_clusters(ask, good, params) if mode == "clusters" else ask_each(ask, good)
            backend.record(review.accepted, review.rejected, dup + rep, k)
            by_id = {c.id: c for c in ask}
            for iid in review.accepted:
                c = by_id[iid]
                accepted.setdefault(c.image, []).append((c.class_name, c.mask))
                if iid in good:
                    hits = [n for n, (cls, t) in enumerate(truths.get(c.image, ()))
                            if cls == c.class_name and c.mask.iou(t) > params.t_iou]
                    covered.update((c.image, n) for n in hits)
            for iid in review.rejected:
                c = by_id[iid]
                rejected.setdefault(c.image, []).append((c.class_name, c.mask))
            row.questions, row.accepted = review.questions, len(review.accepted)
            row.good = len(good & set(review.accepted))
            row.wrong = row.accepted - row.good
            row.good_available = len(good)
            row.good_rejected = len(good & set(review.rejected))
            row.truths_covered = len(covered)
            row.review_seconds = row.questions * verify_seconds
            row.masks_per_question = row.accepted / row.questions if row.questions else 0.0
            row.seconds_per_mask = row.review_seconds / row.accepted if row.accepted else 0.0
            backend.retrain(k)
            row.validation_iou, row.trained_iou = backend.validation_iou, backend.trained_iou
            row.model = backend.label
            result.rows.append(row)
            if progress:
                progress(f"{mode} iteration {k}: {row.questions} questions, {row.accepted} accepted "
                         f"({row.good} good, {row.wrong} wrong), validation IoU {row.validation_iou:.3f}")
    result.wall_seconds = time.perf_counter() - t0
    return result


# ------------------------------------------------------------------ reports
def yes_no_table(result: YesNoResult) -> str:
    """004's Table 3.1 for our data, both modes, with the figures it lacks."""
    head = ["review", "iteration", "proposals", "duplicates / repeats dropped", "questions asked", "masks accepted",
            "good / wrong", "good rejected", "masks per question", "s per accepted mask", "validation IoU",
            "model proposing next"]
    rows = []
    for r in result.rows:
        if r.iteration == 0:
            rows.append([r.mode, "0", "-", "-", "-", "-", "-", "-", "-", "-", f"{r.validation_iou:.3f}", r.model])
            continue
        trained = "" if r.trained_iou is None else f" (new version {r.trained_iou:.3f})"
        rows.append([r.mode, str(r.iteration), str(r.proposals), f"{r.duplicates} / {r.repeats}", str(r.questions),
                     str(r.accepted), f"{r.good} / {r.wrong}", str(r.good_rejected), f"{r.masks_per_question:.2f}",
                     f"{r.seconds_per_mask:.1f}" if r.accepted else "-", f"{r.validation_iou:.3f}{trained}", r.model])
    return _markdown(head, rows)


def totals_line(result: YesNoResult) -> str:
    parts = []
    for mode in dict.fromkeys(r.mode for r in result.rows):
        t = result.totals(mode)
        parts.append(f"{mode}: {t['questions']} questions, {t['accepted']} accepted ({t['good']} good, "
                     f"{t['wrong']} wrong), {t['truths_covered']} of {result.truth_instances} truth instances "
                     f"collected, {t['seconds_per_mask']:.1f} s per accepted mask")
    return "; ".join(parts)


def write_yes_no_report(result: YesNoResult, out: Path, notes: Sequence[str] = ()) -> list[Path]:
    """``yes_no_<dataset>.md`` and ``.json``; returns the files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = out / f"yes_no_{result.dataset}.md"
    lines = [f"# Yes/no review on {result.dataset} (004, chapter 3)", "", yes_no_table(result), "",
             f"- {totals_line(result)}",
             (f"- pool {result.pool_images} images ({result.truth_instances} truth instances), validation "
              f"{result.validation_images} images; t_iou {result.params['t_iou']}; a question costs "
              f"{result.verify_seconds:.1f} s (`verify`, {result.costs})")]
    lines += [f"- {n}" for n in notes]
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    js = out / f"yes_no_{result.dataset}.json"
    payload = {k: v for k, v in asdict(result).items() if k != "rows"}
    payload["rows"] = [asdict(r) for r in result.rows]
    payload["totals"] = {m: result.totals(m) for m in dict.fromkeys(r.mode for r in result.rows)}
    payload["notes"] = list(notes)
    js.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return [md, js]
