"""Proposals into a project: the one function that stores them, and a run over many images.

``store_proposals`` is the only way proposals enter a project: it replaces one image's
``proposed`` instances by new ones and logs the run, in one transaction. The desktop
(this image, the whole project, undo and redo of a run), ``specula propose`` and the
headless job all go through it, always on the connection of the process that owns the
project; workers only compute (``image_proposals``) and hand their results over.
"""
from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

from annotation.document import ImageRecord, Instance, InstanceState, model_origin
from annotation.store import ProjectStore
from inference.engine import Engine
from inference.proposal import Proposal
from annotation.cancel import is_cancelled
from inference.tiling import Cancelled


def instances_from_proposals(image_id: int, proposals: Iterable[Proposal]) -> list[Instance]:
    """The engine's proposals as (not yet stored) ``proposed`` instances of one image."""
    return [
        Instance(image_id, p.class_name, p.mask, InstanceState.PROPOSED, model_origin(p.model, p.version),
                 float(p.score), embedding=p.embedding)
        for p in proposals
    ]


def store_proposals(
    store: ProjectStore,
    image_id: int,
    instances: Sequence[Instance],
    *,
    action: str = "propose",
    started: Optional[float] = None,
    sha1: Optional[str] = None,
    **details: Any,
) -> list[int]:
    """Replace the image's proposals by ``instances`` and log it: one transaction.

    Accepted and rejected instances stay. An instance whose ``id`` is set keeps it (the
    undo of a run brings the earlier proposals back under their own ids). ``action`` and
    ``details`` make the log row (``propose`` with model, version and count; ``undo`` /
    ``redo`` of a run). ``sha1`` records the image's hash when it was not known yet.
    Returns the stored ids, in order.
    """
    with store.transaction():
        if sha1 is not None:
            store.set_image_sha1(image_id, sha1)
        store.delete_instances(image_id, [InstanceState.PROPOSED])
        for inst in instances:
            inst.image_id = image_id
        ids = store.add_instances(instances)
        store.log(action, image_id=image_id, started=started, **details)
    return ids


DUPLICATE_IOU = 0.5  # a proposal over an accepted mask of its class is that mask again (004's de-duplication)
REPEAT_IOU = 0.95  # a proposal (nearly) equal to a rejected one would get the same "no"


def known_proposals(store: ProjectStore, image_id: int, instances: Sequence[Instance]) -> tuple[list[int], dict]:
    """Which new proposals are worth asking about: the indices of ``instances`` to keep,
    and what was dropped (``{"duplicates": n, "repeats": m}``).

    A proposal with IoU above ``DUPLICATE_IOU`` against an accepted instance of its class
    duplicates what the expert already has; one above ``REPEAT_IOU`` against a rejected
    one repeats a question already answered. Re-proposing after a retraining (004's
    iterations) would otherwise bring both back to review.
    """
    known = store.instances(image_id, [InstanceState.ACCEPTED, InstanceState.REJECTED])
    if not known:
        return list(range(len(instances))), {}
    keep: list[int] = []
    dropped = {"duplicates": 0, "repeats": 0}
    for k, inst in enumerate(instances):
        verdict = None
        for old in known:
            if old.class_name != inst.class_name:
                continue
            iou = inst.mask.iou(old.mask)
            if old.state is InstanceState.ACCEPTED and iou > DUPLICATE_IOU:
                verdict = "duplicates"
                break
            if old.state is InstanceState.REJECTED and iou > REPEAT_IOU:
                verdict = "repeats"
                break
        if verdict is None:
            keep.append(k)
        else:
            dropped[verdict] += 1
    return keep, {k: v for k, v in dropped.items() if v}


@dataclass
class ImageProposals:
    """One image's result of a run, ready for ``store_proposals``."""

    image_id: int
    path: str
    instances: list[Instance]
    model: str
    version: str
    started: float
    sha1: Optional[str] = None  # set when the image's hash was computed by this run
    dropped: dict = field(default_factory=dict)  # what ``drop_known`` left out

    def drop_known(self, store: ProjectStore) -> list[int]:
        """Leave out proposals that duplicate an accepted mask or repeat a rejected one
        (``known_proposals``); returns the indices kept (for what goes with each proposal)."""
        keep, dropped = known_proposals(store, self.image_id, self.instances)
        self.instances = [self.instances[k] for k in keep]
        for key, n in dropped.items():
            self.dropped[key] = self.dropped.get(key, 0) + n
        return keep

    def store(self, store: ProjectStore, params: Optional[Mapping[str, Any]] = None) -> list[int]:
        self.drop_known(store)
        extra = {"dropped": dict(self.dropped)} if self.dropped else {}
        return store_proposals(store, self.image_id, self.instances, started=self.started, sha1=self.sha1,
                               model=self.model, version=self.version, proposals=len(self.instances),
                               params=dict(params or {}), **extra)


@dataclass
class ProposeSummary:
    """What a run did. ``skipped`` maps an image's project-relative path to the reason it
    was skipped (unreadable file, model error on that image)."""

    model: str = ""
    version: str = ""
    images: int = 0
    proposals: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    cancelled: bool = False
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (f"{self.proposals} proposals on {self.images} images with {self.model}@{self.version} "
                f"in {self.seconds:.1f} s")
        if self.skipped:
            text += f"; {len(self.skipped)} skipped"
        if self.cancelled:
            text += "; cancelled"
        return text


def image_proposals(
    root: Any,
    records: Sequence[ImageRecord],
    engine: Engine,
    model: Optional[str] = None,
    version: Optional[str] = None,
    params: Optional[Mapping[str, Any]] = None,
    *,
    summary: Optional[ProposeSummary] = None,
    progress: Optional[Callable[[int, int, str], None]] = None,
    cancel: object = None,
    on_message: Optional[Callable[[str], None]] = None,
    overlap: bool = True,
) -> Iterator[ImageProposals]:
    """Run the engine on ``records`` (images under the folder ``root``), yielding each
    image's proposals in the order of ``records``; touches no database, so it may run in
    any thread or process.

    Unreadable images and images the model cannot take are skipped (recorded in
    ``summary.skipped``); ``cancel`` (Event or callable) stops between images and inside
    tiled inference (the images before the one it stops are still yielded);
    ``progress(done, total, path)`` follows every image. Raises ``ModelError`` when the
    model cannot load at all, before any image is read.

    ``overlap``: post-process image k in a worker thread while image k + 1 is read and
    goes through the network (``Engine.start_propose``), and while the caller stores
    image k - 1's result; results, skips and progress keep the order of ``records``.
    """
    from concurrent.futures import Future, ThreadPoolExecutor
    from pathlib import Path

    from annotation.images import ImageReadError, image_sha1, load_image

    say = on_message or (lambda text: None)
    summary = summary if summary is not None else ProposeSummary()
    start = time.perf_counter()
    pipe = engine.pipeline(model, version)  # fail early, before touching any image
    summary.model, summary.version = pipe.info.name, pipe.info.version
    total = len(records)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="specula-postprocess") if overlap else None
    # images begun but not handed over yet, in order: (index, record, started, sha1, the
    # finishing step: a Future with overlap, a function without, or the reason it was skipped)
    waiting: list[tuple[int, ImageRecord, float, Optional[str], Any]] = []

    def settle(item: tuple[int, ImageRecord, float, Optional[str], Any]) -> Iterator[ImageProposals]:
        i, rec, t0, sha1, finish = item
        try:
            if isinstance(finish, Exception):
                raise finish
            proposals = finish.result() if isinstance(finish, Future) else finish()
        except (ImageReadError, OSError, ValueError) as exc:
            # an unreadable file, or an image the model cannot take: the others go on
            summary.skipped[rec.path] = str(exc)
            say(f"skipped {rec.path}: {exc}")
        else:
            name, ver = summary.model, summary.version
            if proposals:
                name, ver = proposals[0].model, proposals[0].version
            summary.model, summary.version = name, ver
            summary.images += 1
            summary.proposals += len(proposals)
            yield ImageProposals(rec.id, rec.path, instances_from_proposals(rec.id, proposals), name, ver,  # type: ignore[arg-type]
                                 t0, sha1)
        if progress:
            progress(i + 1, total, rec.path)

    try:
        for i, rec in enumerate(records):
            if is_cancelled(cancel):
                summary.cancelled = True
                break
            path = Path(root) / rec.path
            t0 = time.time()
            sha1: Optional[str] = None
            try:
                loaded = load_image(path)
                sha1 = None if rec.sha1 else image_sha1(path)
                finish = engine.start_propose(loaded.rgb, model, version, params, cancel=cancel,
                                              image_key=rec.sha1 or sha1)
            except Cancelled:
                summary.cancelled = True
                break
            except (ImageReadError, OSError, ValueError) as exc:
                waiting.append((i, rec, t0, sha1, exc))  # said in its turn, after the images before it
                if pool is None:
                    yield from settle(waiting.pop())
                continue
            # this image's post-processing starts before the ones waiting are handed over
            # (the caller stores them meanwhile)
            step = pool.submit(finish) if pool is not None else finish
            for item in waiting:
                yield from settle(item)
            waiting = [(i, rec, t0, sha1, step)]
            if pool is None:
                yield from settle(waiting.pop())
        for item in waiting:
            yield from settle(item)
        waiting = []
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        for text in engine.messages:
            if text not in summary.messages:
                summary.messages.append(text)
        summary.seconds = time.perf_counter() - start


def propose_project(
    store: ProjectStore,
    engine: Engine,
    model: Optional[str] = None,
    images_glob: Optional[str] = None,
    progress: Optional[Callable[[int, int, str], None]] = None,
    cancel: object = None,
    *,
    version: Optional[str] = None,
    params: Optional[Mapping[str, Any]] = None,
    on_message: Optional[Callable[[str], None]] = None,
) -> ProposeSummary:
    """Propose on the project's images (those matching ``images_glob``, a pattern on the
    project-relative POSIX path, e.g. ``"span3/*.jpg"``) and store each image's result
    with ``store_proposals`` as soon as it is ready (a killed run keeps every finished
    image). Raises ``ModelError`` when no model can be loaded at all."""
    summary = ProposeSummary()
    records = [r for r in store.images() if images_glob is None or fnmatch.fnmatch(r.path, images_glob)]
    for result in image_proposals(store.root, records, engine, model, version, params, summary=summary,
                                  progress=progress, cancel=cancel, on_message=on_message):
        result.store(store, params)
        summary.proposals -= sum(result.dropped.values())
    return summary
