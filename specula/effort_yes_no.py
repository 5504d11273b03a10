"""The model side of ``specula bench effort --yes-no``: a project per review loop.

``annotation.effort.yes_no`` asks and counts; ``ProjectBackend`` gives it what the
product would: the pool's images linked into a Specula project (outside the repository),
proposals made and stored by ``inference.propose.propose_project`` (the code path of
``specula propose``, embeddings included) and read back with their stored embeddings,
decisions recorded as ``specula review-clusters`` records them (states and log rows in
one transaction), and retraining by the training command on that project. Images are
never marked done, so training sees only accepted masks and rejected proposals
(partial labels); the loop's registry starts with the initial model as its version 1
(``seed_loop_registry``), so every retraining fine-tunes from the version in use, the
first from the weights recovered from the shipped model's ONNX file.

Validation IoU: the model's proposals of the data set's class on held-out images, their
union against the truth's union, per image, averaged (an image with neither scores 1).
A retrained version proposes next only when its validation IoU beats the model in use
(the quality gate of issue 16, here between the shipped model and the loop's versions,
which the registry's own gate cannot compare: the shipped model is not in the loop's
registry).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from annotation.effort.proposals import EffortImage, ProposalSource
from annotation.effort.runner import EffortError
from annotation.effort.yes_no import Candidate
from specula.effort_model import EngineSource, SubprocessTrainer


def validation_iou(source: ProposalSource, images: Sequence[EffortImage], class_name: str) -> float:
    """Per-image mean IoU of ``source``'s ``class_name`` proposals on ``images`` (NaN for none)."""
    if not images:
        return float("nan")
    scores = []
    for image in images:
        pred = np.zeros(image.size, bool)
        for p in source.propose(image):
            if p.class_name == class_name:
                pred |= p.mask.to_full()
        truth = np.zeros(image.size, bool)
        for cls, m in image.truths:
            if cls == class_name:
                truth |= m.to_full()
        union = np.count_nonzero(pred | truth)
        scores.append(1.0 if union == 0 else np.count_nonzero(pred & truth) / union)
    return float(np.mean(scores))


class ProjectBackend:
    """One review loop (clusters, or one question per proposal): its project, its models.

    ``model`` is the initial model (in ``registry_dir``, default the user's registry plus
    the shipped models); the loop publishes into ``folder/registry`` under ``loop_model``.
    ``train=False`` never retrains (the model stays the initial one); ``gate=False`` uses
    every retrained version, better or not (004's protocol, which has no gate).
    """

    def __init__(self, folder: Path, pool: Sequence[EffortImage], validation: Sequence[EffortImage], *,
                 model: str, class_name: str, loop_model: str, registry_dir: str | Path | None = None,
                 train_cmd: str | None = None, epochs: int = 8, min_score: float = 0.5, train: bool = True,
                 gate: bool = True, progress: Callable[[str], None] | None = None):
        from annotation.store import ProjectStore

        self.folder = Path(folder)
        self.validation = list(validation)
        self.class_name = class_name
        self.min_score = min_score
        self.train = train
        self.gate = gate
        self.progress = progress
        self.last_dropped: dict[str, int] = {}  # what the last proposing run left out, by kind
        self.trainer = SubprocessTrainer(loop_model, self.folder, train_cmd, min_score, epochs)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._keys: dict[str, str] = {}  # project-relative path -> image key
        for im in pool:
            link = self.folder / im.path.name
            if not link.exists():
                link.symlink_to(im.path.resolve())
            self._keys[im.path.name] = im.key
        with ProjectStore.open(self.folder, palette=model_palette(model, registry_dir)):  # scans the images
            pass
        if train:
            seed_loop_registry(model, registry_dir, loop_model, self.trainer.registry_dir)
        self._use(model, registry_dir)
        self.validation_iou = validation_iou(self._source, self.validation, class_name)
        self.trained_iou: float | None = None

    def _use(self, model: str, registry_dir: str | Path | None) -> None:
        from inference.engine import Engine
        from inference.registry import Registry

        self.model, self.registry_dir = model, registry_dir
        self._source = EngineSource(model, self.min_score, registry_dir=registry_dir)
        registry = Registry(registry_dir) if registry_dir is not None else Registry.default()
        self._engine = Engine(registry, device="cpu")
        self.label = f"{model}@{registry.active(model).version}"

    def propose(self, iteration: int) -> list[Candidate]:
        """Propose on every image of the project (none is marked done: partial labels) and
        read the stored proposals back, with their stored embeddings."""
        from annotation.document import InstanceState
        from annotation.store import ProjectStore
        from inference.propose import propose_project

        with ProjectStore.open(self.folder, scan=False) as store:
            before = max((r.id for r in store.interactions(actions=["propose"])), default=0)
            propose_project(store, self._engine, self.model)
            # what the product itself left out (inference.propose.known_proposals: duplicates
            # of accepted masks, repeats of rejected ones), counted as the loop's own drops
            self.last_dropped = {"duplicates": 0, "repeats": 0}
            for r in store.interactions(actions=["propose"]):
                if r.id > before:
                    for key, n in (r.details.get("dropped") or {}).items():
                        self.last_dropped[key] = self.last_dropped.get(key, 0) + int(n)
            props = store.instances(states=[InstanceState.PROPOSED])
            # what a reviewer filters away by score before asking anything; deleted so that
            # they are neither asked nor taken for negatives
            low = [p.id for p in props if (p.score or 0.0) < self.min_score and p.id is not None]
            if low:
                store.delete_instance_ids(low)
            props = [p for p in props if p.id not in set(low)]
            vectors = store.embeddings([p.id for p in props])
            paths = {r.id: r.path for r in store.images()}
        return [Candidate(int(p.id), self._keys.get(paths[p.image_id], Path(paths[p.image_id]).stem), p.class_name,
                          p.mask, float(p.score or 0.0), vectors.get(p.id)) for p in props if p.id is not None]

    def record(self, accepted: Sequence[int], rejected: Sequence[int], dropped: Sequence[int], iteration: int) -> None:
        """Decisions as ``specula review-clusters`` makes them; dropped duplicates deleted."""
        from annotation.clusters import QUALITY_REVIEW
        from annotation.store import ProjectStore
        from specula.review_clusters_cli import decide_instances

        writer = "specula bench effort --yes-no"
        with ProjectStore.open(self.folder, scan=False, writer=writer) as store, store.transaction():
            if dropped:
                store.delete_instance_ids(dropped)
            details = {"review": QUALITY_REVIEW, "iteration": iteration, "via": "bench effort --yes-no"}
            decide_instances(store, [(accepted, "accept", details), (rejected, "reject", details)])

    def retrain(self, iteration: int) -> None:
        """Train on the project; the new version proposes next only if it validates better."""
        from inference.registry import Registry

        if not self.train:
            return
        if self.progress:
            self.progress(f"training {self.trainer.model} on {self.folder} (iteration {iteration})")
        self.trainer.train([], iteration)  # the project already holds the decisions
        registry = self.trainer.registry_dir
        reg = Registry(registry)
        chosen = reg.active(self.trainer.model).version  # what the training's own gate left in use
        latest = reg.latest_version(self.trainer.model)
        if latest is not None:  # score the version just trained, not an older one kept in use
            reg.activate(self.trainer.model, latest)
        try:
            new = EngineSource(self.trainer.model, self.min_score, registry_dir=registry)
        except Exception as exc:  # noqa: BLE001 - a version that cannot propose is reported, not used
            raise EffortError(f"iteration {iteration}: the trained model cannot propose: {exc}") from None
        self.trained_iou = validation_iou(new, self.validation, self.class_name)
        if self.trained_iou > self.validation_iou or not self.gate:
            # 004 always goes on with the new model (--no-gate); otherwise only a better one
            self._use(self.trainer.model, registry)
            self.validation_iou = self.trained_iou
        else:  # the next fine-tuning starts from the version the training's gate kept
            reg.activate(self.trainer.model, chosen)


def seed_loop_registry(model: str, registry_dir: str | Path | None, loop_model: str, loop_registry: Path) -> None:
    """The loop's registry starts with the initial model as ``loop_model`` version 1, so the
    first retraining fine-tunes from it and is judged against it, as "Train now" does with
    the model in use (for a shipped model, from the weights recovered from its ONNX file)."""
    from inference.registry import Registry

    reg = Registry(loop_registry)
    if reg.versions(loop_model):
        return
    src = (Registry(registry_dir) if registry_dir is not None else Registry.default()).active(model)
    files = [p for p in Path(src.path).iterdir() if p.is_file() and p.name != "manifest.json"]
    manifest = {**src.manifest.to_json(), "name": loop_model, "version": "1", "sha256": {}, "signature": ""}
    reg.publish(files, manifest)


def model_palette(model: str, registry_dir: str | Path | None = None):
    """A palette of the model's classes (background left out): what the loop's project
    trains, so a crack model is not retrained with the default palette's glass classes."""
    from annotation.palette import ClassDef, Palette
    from inference.registry import Registry

    registry = Registry(registry_dir) if registry_dir is not None else Registry.default()
    manifest = registry.active(model).manifest
    background = manifest.background_class
    names = [str(c) for i, c in enumerate(manifest.classes)
             if not (c == background or i == background or str(c) == "background")]
    if not names:
        raise EffortError(f"model {model} names no class besides the background")
    palette = Palette(f"{model} classes", (ClassDef(names[0], (230, 80, 60), "1", 0),))
    for name in names[1:]:
        palette = palette.with_class(name)
    return palette


_MARKER = ".specula-bench-yes-no"  # a loop project this benchmark made (and may remake)


def loop_folder(out: Path, dataset: str, mode: str) -> Path:
    """A fresh project folder for one loop under ``out``; an older one of this benchmark is
    replaced, any other folder of that name is refused (never delete what we did not make)."""
    import shutil

    folder = Path(out) / f"yes_no_project_{dataset}_{mode}"
    if folder.exists():
        if not (folder / _MARKER).is_file():
            raise EffortError(f"{folder} exists and was not made by this benchmark; move it or choose another --out")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / _MARKER).write_text("made by specula bench effort --yes-no; deleted by its next run\n", encoding="utf-8")
    return folder


def run_yes_no_bench(args, images: Sequence[EffortImage], name: str, costs, progress: Callable[[str], None],
                     train: bool = True):
    """``specula bench effort --yes-no``: both review loops on ``images`` (the pool first,
    then ``args.val_images`` held-out validation images); returns the result and the notes."""
    from annotation.effort.runner import DATASETS
    from annotation.effort.yes_no import MODES, YesNoParams, run_yes_no

    n_val = max(0, int(args.val_images))
    if len(images) <= n_val:
        raise EffortError(f"{len(images)} images: too few for {n_val} validation images and a pool")
    pool, validation = list(images[: len(images) - n_val]), list(images[len(images) - n_val:])
    class_name = DATASETS.get(name, images[0].truths[0][0] if images[0].truths else "object")
    params = YesNoParams(t_iou=args.t_iou, representatives=args.representatives, agreement=args.agreement,
                         target_size=args.cluster_size)
    backends = {}
    for mode in MODES:
        backends[mode] = ProjectBackend(
            loop_folder(Path(args.out), name, mode), pool, validation, model=args.model, class_name=class_name,
            loop_model=f"{args.model}-yes-no-{mode}", registry_dir=args.registry, train_cmd=args.train_cmd,
            epochs=args.epochs, min_score=args.min_score, train=train, gate=not getattr(args, "no_gate", False),
            progress=progress)
    result = run_yes_no(name, pool, backends, args.iterations, params, costs.verify,
                        validation_images=len(validation), costs=costs.source, progress=progress)
    notes = [f"initial model {args.model}; retraining: "
             + (f"`{args.train_cmd}`" if args.train_cmd else f"the default training command, {args.epochs} epochs")
             + ("; every retrained version proposes next (--no-gate, 004's protocol)"
                if getattr(args, "no_gate", False)
                else "; a retrained version proposes next only when its validation IoU beats the model in use"),
             f"pool: {pool[0].path.name} .. {pool[-1].path.name}; validation: "
             + (f"{validation[0].path.name} .. {validation[-1].path.name}" if validation else "none"),
             (f"proposals below score {args.min_score} are not asked about; a proposal with IoU > "
             f"{params.duplicate_iou} against an accepted mask of its image is a duplicate, one with IoU > "
             f"{params.repeat_iou} against a rejected one a repeat; neither is asked"),
             (f"clusters: about {params.target_size} proposals each, {params.representatives} representatives, "
             f"agreement {params.agreement}; wall time {result.wall_seconds:.0f} s")]
    return result, notes
