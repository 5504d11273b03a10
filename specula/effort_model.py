"""The model side of the effort benchmark: proposals from the registry and retraining.

``annotation.effort`` never imports ``inference`` or ``training`` (DESIGN.md's layers);
these two classes connect it to them and live here, in the application package.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

from annotation.effort.annotator import ProposalMask
from annotation.effort.proposals import EffortImage, ProposalError, ProposalSource
from annotation.effort.runner import EffortError, LabelledExample


class EngineSource:
    """Proposals of a registry model through ``inference.Engine`` (imported lazily)."""

    def __init__(self, model: str, min_score: float = 0.5, registry_dir: Optional[str | Path] = None,
                 class_map: Optional[dict[str, str]] = None):
        try:
            from inference.engine import Engine
            from inference.registry import Registry
        except ImportError as exc:
            raise ProposalError(
                f"the inference package cannot propose ({exc}); use --proposals FILE.json "
                f"or --source degraded-truth (synthetic)"
            ) from None
        try:
            registry = Registry(registry_dir) if registry_dir is not None else Registry.default()
            self._engine = Engine(registry)
        except Exception as exc:  # a broken registry is the user's to fix: say what happened
            raise ProposalError(f"cannot open the model registry: {exc}") from None
        if model not in registry.names():
            known = ", ".join(registry.names()) or "none"
            raise ProposalError(f"model '{model}' is not in the registry (known: {known}); "
                                f"use --proposals FILE.json or --source degraded-truth (synthetic)")
        self.model = model
        self.min_score = min_score
        self.class_map = dict(class_map or {})
        self.label = f"model {model}"

    def propose(self, image: EffortImage) -> list[ProposalMask]:
        from annotation.images import load_image

        rgb = load_image(image.path).rgb
        out = []
        for prop in self._engine.propose(rgb, model=self.model):
            score = float(getattr(prop, "score", 1.0) or 1.0)
            if score < self.min_score:
                continue
            cls = self.class_map.get(prop.class_name, prop.class_name)
            version = getattr(prop, "version", None)
            if version and "@" not in self.label:
                self.label = f"model {self.model}@{version}"
            out.append(ProposalMask(prop.mask, cls, score))
        return out



class SubprocessTrainer:
    """Retrains through the training CLI in a subprocess, then proposes with the new version.

    The labelled examples are written into a Specula project (``project_dir``, outside
    the repository; images are linked, not copied) as accepted instances; then
    ``command`` runs, a template with ``{python}``, ``{project}``, ``{model}``,
    ``{registry}`` and ``{epochs}`` (default: ``specula train {project} --task semantic
    --name {model} --registry {registry} --epochs {epochs} --json``). It publishes into
    a registry of the benchmark's own (``project_dir/registry``), so a benchmark never
    changes the user's active model; the new version is used through ``EngineSource``.
    """

    DEFAULT_COMMAND = (
        "{python} -m specula train {project} --task semantic --name {model} --registry {registry} "
        "--epochs {epochs} --json"
    )

    def __init__(self, model: str, project_dir: Path, command: Optional[str] = None, min_score: float = 0.5,
                 epochs: int = 8):
        self.model = model
        self.project_dir = Path(project_dir)
        self.registry_dir = self.project_dir / "registry"
        self.command = command or self.DEFAULT_COMMAND
        self.min_score = min_score
        self.epochs = epochs

    def _write_project(self, examples: Sequence[LabelledExample]) -> None:
        from annotation.document import ImageStatus, Instance, InstanceState
        from annotation.store import ProjectStore

        self.project_dir.mkdir(parents=True, exist_ok=True)
        for ex in examples:
            link = self.project_dir / ex.path.name
            if not link.exists():
                try:
                    link.symlink_to(ex.path.resolve())
                except OSError as exc:
                    raise EffortError(f"cannot link {ex.path} into {self.project_dir}: {exc}") from None
        with ProjectStore.open(self.project_dir) as store:
            for ex in examples:
                rec = store.image_by_path(ex.path.name)
                if rec is None or rec.id is None:
                    continue
                if store.instances(rec.id):
                    continue
                for cls in {c for c, _ in ex.instances}:
                    store.ensure_class(cls)
                store.add_instances(Instance(rec.id, c, m, InstanceState.ACCEPTED) for c, m in ex.instances)
                # the simulated annotator labelled every object of the image: all else is background
                store.set_image_status(rec.id, ImageStatus.DONE)

    def train(self, examples: Sequence[LabelledExample], round_index: int) -> ProposalSource:
        self._write_project(examples)
        if self.command == self.DEFAULT_COMMAND:
            from appinfo.relaunch import own_command  # the bundle relaunches itself

            argv = own_command("train", str(self.project_dir), "--task", "semantic", "--name", self.model,
                               "--registry", str(self.registry_dir), "--epochs", str(self.epochs), "--json")
        else:
            argv = shlex.split(self.command.format(python=shlex.quote(sys.executable),
                                                   project=shlex.quote(str(self.project_dir)),
                                                   model=shlex.quote(self.model),
                                                   registry=shlex.quote(str(self.registry_dir)),
                                                   epochs=self.epochs))
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise EffortError(f"training failed in round {round_index} (exit {proc.returncode}): {tail[0]}")
        try:
            return EngineSource(self.model, self.min_score, registry_dir=self.registry_dir)
        except ProposalError as exc:
            raise EffortError(str(exc)) from None
