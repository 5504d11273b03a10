"""Proposing for a whole project: each image's old proposals replaced by the engine's new ones."""
from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from annotation.document import Instance, InstanceState, model_origin
from annotation.store import ProjectStore
from inference.engine import Engine
from inference.tiling import Cancelled, is_cancelled


@dataclass
class ProposeSummary:
    """What ``propose_project`` did.

    ``skipped`` maps an image's project-relative path to the reason it was skipped
    (unreadable file, model error on that image).
    """

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
    """Run the engine on the project's images (those matching ``images_glob``, a pattern on
    the project-relative POSIX path, e.g. ``"span3/*.jpg"``).

    Per image, in one transaction: the image's ``proposed`` instances are deleted, the new
    proposals stored with ``origin = name@version`` and their scores, and a ``propose``
    interaction logged. Accepted and rejected instances are left alone. Unreadable images
    are skipped with their reason. ``progress(done, total, path)`` is called after each
    image; ``cancel`` (Event or callable) stops between images.

    Raises ``ModelError`` when no model can be loaded at all.
    """
    from annotation.images import ImageReadError, image_sha1, load_image

    say = on_message or (lambda text: None)
    summary = ProposeSummary()
    start = time.perf_counter()
    pipe = engine.pipeline(model, version)  # fail early, before touching any image
    summary.model, summary.version = pipe.info.name, pipe.info.version
    records = [r for r in store.images() if images_glob is None or fnmatch.fnmatch(r.path, images_glob)]
    for i, rec in enumerate(records):
        if is_cancelled(cancel):
            summary.cancelled = True
            break
        path = store.image_file(rec)
        try:
            loaded = load_image(path)
            sha1 = rec.sha1 or image_sha1(path)
        except (ImageReadError, OSError) as exc:
            summary.skipped[rec.path] = str(exc)
            say(f"skipped {rec.path}: {exc}")
            if progress:
                progress(i + 1, len(records), rec.path)
            continue
        t0 = time.time()
        try:
            proposals = engine.propose(loaded.rgb, model, version, params, cancel=cancel, image_key=sha1)
        except Cancelled:
            summary.cancelled = True
            break
        except ValueError as exc:  # an image the model cannot take (e.g. wrong size); others go on
            summary.skipped[rec.path] = str(exc)
            say(f"skipped {rec.path}: {exc}")
            continue
        if proposals:
            name, ver = proposals[0].model, proposals[0].version
        else:
            info = engine.pipeline(model, version).info
            name, ver = info.name, info.version
        with store.transaction():
            if rec.sha1 is None:
                store.set_image_sha1(rec.id, sha1)  # type: ignore[arg-type]
            store.delete_instances(rec.id, [InstanceState.PROPOSED])  # type: ignore[arg-type]
            store.add_instances(
                Instance(
                    image_id=rec.id,  # type: ignore[arg-type]
                    class_name=p.class_name,
                    mask=p.mask,
                    state=InstanceState.PROPOSED,
                    origin=model_origin(p.model, p.version),
                    score=p.score,
                )
                for p in proposals
            )
            store.log(
                "propose", image_id=rec.id, started=t0, model=name, version=ver, proposals=len(proposals),
                params=dict(params or {}),
            )
        summary.images += 1
        summary.proposals += len(proposals)
        summary.model, summary.version = name, ver
        if progress:
            progress(i + 1, len(records), rec.path)
    for text in engine.messages:
        if text not in summary.messages:
            summary.messages.append(text)
    summary.seconds = time.perf_counter() - start
    return summary
