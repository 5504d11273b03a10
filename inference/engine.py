"""The proposal engine: the registry's active models, loaded once, with a per-image result cache.

``Engine.propose`` is synchronous and thread-agnostic (the desktop calls it from a
worker). On every call it compares the registry's ``generation()``; when a new version
of a model was published or activated it loads that version, and if the new version
fails to load (corrupt file, wrong input shape, unknown task) the previous one keeps
serving and the reason goes to ``messages`` (and ``on_message``).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Mapping, Optional

import numpy as np

from inference.pipelines import PIPELINES, Pipeline, Runtimes, build_pipeline
from inference.pipelines.prompt import GrabCutPromptSession, PromptSession, pixels_key
from inference.pipelines.prompt_choice import PROMPT_TASKS, choose_prompt_model, open_prompt_session
from inference.embedding import attach_embeddings
from inference.proposal import Proposal
from inference.registry import ModelError, ModelInfo, Registry
from inference.runtime import OnnxRuntime, TorchRuntime

Progress = Optional[Callable[[int, int], None]]


def _freeze(params: Optional[Mapping[str, Any]]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in (params or {}).items()))


class Engine:
    """Turns images into proposals with the registry's models.

    Args:
        registry: where the models live.
        device: ``auto``, ``cpu`` or ``cuda``; CUDA that does not work falls back to the
            CPU, and ``device_report`` says why.
        cache_items: how many per-image results to keep.
    """

    def __init__(self, registry: Registry, device: str = "auto", cache_items: int = 64):
        self.registry = registry
        self.runtimes = Runtimes(OnnxRuntime(device), TorchRuntime(device))
        self.messages: list[str] = []
        self.on_message: Optional[Callable[[str], None]] = None
        self._serving: dict[str, Pipeline] = {}  # model name -> pipeline of the version in use
        self._pinned: dict[tuple[str, str, tuple], Pipeline] = {}  # explicitly requested versions
        self._failed: dict[tuple[str, str], tuple] = {}  # (name, version) -> stamp that failed
        self._reported: set[str] = set()
        self._seen: dict[str, int] = {}  # model name -> registry generation last checked
        self._default: Optional[str] = None
        self._results: OrderedDict[tuple, list[Proposal]] = OrderedDict()
        self._cache_items = cache_items
        self._prompt_choice: Optional[tuple[int, Optional[ModelInfo]]] = None  # (registry generation, choice)
        self._prompt: dict[tuple[str, str], PromptSession] = {}
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- reporting
    @property
    def device_short(self) -> str:
        """Where inference runs, in a few words (the reason only when CUDA was asked for)."""
        return self.runtimes.onnx.report.short

    @property
    def device_report(self) -> str:
        """One line for the user: where inference runs and, if CUDA was refused, why."""
        text = str(self.runtimes.onnx.report)
        if self.runtimes.torch.reason:
            text += f"; {self.runtimes.torch.reason}"
        return text

    def _say(self, text: str) -> None:
        self.messages.append(text)
        if self.on_message is not None:
            self.on_message(text)

    def current_version(self, name: str) -> Optional[str]:
        """The version of ``name`` serving proposals now (None before its first use)."""
        p = self._serving.get(name)
        return p.info.version if p else None

    # ---------------------------------------------------------------- loading
    def _report_problems(self, name: Optional[str]) -> None:
        for folder, why in self.registry.problems.items():
            if why in self._reported:
                continue
            if name is None or f"/{name}/" in folder.replace("\\", "/") + "/":
                self._reported.add(why)
                self._say(f"model version refused: {why}")

    def pipeline(self, model: Optional[str] = None, version: Optional[str] = None) -> Pipeline:
        """The loaded pipeline for ``model`` (default model when None) at ``version`` (active when None).

        Raises ``ModelError`` when the model is unknown, or when the version asked for (or,
        with nothing serving yet, the active version) cannot be loaded.
        """
        with self._lock:
            if version is not None:
                info = self.registry.get(model or self.registry.active().name, version)
                key = (info.name, info.version, info.stamp())
                if key not in self._pinned:
                    self._pinned[key] = build_pipeline(info, self.runtimes)
                return self._pinned[key]
            gen = self.registry.generation()
            name = model or self._default
            if name is not None and self._seen.get(name) == gen and name in self._serving:
                return self._serving[name]  # nothing published or activated since the last call
            info = self.registry.active(model)
            self._report_problems(info.name)
            self._seen[info.name] = gen
            if model is None:
                self._default = info.name
            serving = self._serving.get(info.name)
            if serving is not None and serving.info.version == info.version and serving.info.stamp() == info.stamp():
                return serving
            if serving is not None and self._failed.get((info.name, info.version)) == info.stamp():
                return serving  # already refused this exact version; keep serving quietly
            try:
                fresh = build_pipeline(info, self.runtimes)
            except ModelError as exc:
                self._failed[(info.name, info.version)] = info.stamp()
                if serving is None:
                    raise
                self._say(f"{info.name}@{info.version} could not be loaded, still using "
                          f"{info.name}@{serving.info.version}: {exc}")
                return serving
            self._serving[info.name] = fresh
            if serving is not None:
                self._say(f"now proposing with {info.name}@{info.version} (was {serving.info.version})")
            return fresh

    def check(self, info: ModelInfo) -> None:
        """Load ``info`` once without serving it (``ModelError`` with the reason if it fails)."""
        if info.task in PIPELINES:
            build_pipeline(info, self.runtimes)
        else:
            open_prompt_session(info, self.runtimes).close()  # a SAM pair or a click model

    # ---------------------------------------------------------------- proposing
    def propose(
        self,
        image_rgb: np.ndarray,
        model: Optional[str] = None,
        version: Optional[str] = None,
        params: Optional[Mapping[str, Any]] = None,
        cancel: object = None,
        progress: Progress = None,
        image_key: Optional[str] = None,
    ) -> list[Proposal]:
        """Proposals for one ``(H, W, 3)`` uint8 RGB image.

        Args:
            model, version: registry entry; None = the default model, its active version.
            params: pipeline parameters (e.g. ``{"threshold": 0.3}``, ``{"iterations": 4}``).
            cancel: ``threading.Event`` or callable; when set, ``inference.tiling.Cancelled`` is raised.
            progress: called with (steps done, steps total).
            image_key: the image's SHA-1 when known (saves hashing the pixels for the cache).

        Returns:
            Proposals (fresh copies; the caller may edit their masks), best score first.
        """
        return self.start_propose(image_rgb, model, version, params, cancel, progress, image_key)()

    def start_propose(
        self,
        image_rgb: np.ndarray,
        model: Optional[str] = None,
        version: Optional[str] = None,
        params: Optional[Mapping[str, Any]] = None,
        cancel: object = None,
        progress: Progress = None,
        image_key: Optional[str] = None,
    ) -> Callable[[], list[Proposal]]:
        """``propose`` in two steps: the network pass now, in the caller's thread, and the
        rest (post-processing into proposals) in the returned function, which may run in
        another thread while the caller starts the next image's network pass (ONNX Runtime
        releases the GIL during ``run``; the post-processing is mostly OpenCV and numpy,
        which release it too). Arguments and result are ``propose``'s.
        """
        pipe = self.pipeline(model, version)
        key = (image_key or pixels_key(image_rgb), pipe.info.name, pipe.info.version, _freeze(params))
        with self._lock:
            hit = self._results.get(key)
            if hit is not None:
                self._results.move_to_end(key)
                return lambda: [p.copy() for p in hit]
        finish = pipe.propose_steps(image_rgb, params, cancel, progress)

        def finished() -> list[Proposal]:
            result = finish()
            # every proposal gets an embedding (clustered review): a pipeline without
            # model features gets the proposal's own statistics
            bare = [p for p in result if p.embedding is None]
            if bare:
                attach_embeddings(bare, image_rgb)
            with self._lock:
                self._results[key] = result
                while len(self._results) > self._cache_items:
                    self._results.popitem(last=False)
            return [p.copy() for p in result]

        return finished

    # ---------------------------------------------------------------- prompting
    def prompt_session(self, model: Optional[str] = None, version: Optional[str] = None) -> PromptSession:
        """A prompt session: the named model, else the registry's choice
        (``inference.pipelines.prompt_choice``: a SAM-family pair the user registered, then
        the user's or the shipped click-refinement model), else GrabCut.

        A model that fails to load falls back to GrabCut with a message (said once), so the
        click tool always works. Sessions are cached per model version; the choice is made
        again whenever the registry changed, so a newly published click model is used at the next click.
        """
        if model is None and version is None:
            # the choice reads every manifest: made again only when the registry changed
            # (a few stat calls per click, as for proposals)
            gen = self.registry.generation()
            if self._prompt_choice is None or self._prompt_choice[0] != gen:
                self._prompt_choice = (gen, choose_prompt_model(self.registry))
            info = self._prompt_choice[1]
        else:
            info = self.registry.get(model or "", version)
            if info.task not in PROMPT_TASKS:
                raise ModelError(f"{model} is not a prompt model (task {info.task})")
        with self._lock:
            if info is None:
                return self._grabcut()
            key = (info.name, info.version)
            if key not in self._prompt:
                if self._failed.get(key) == info.stamp():
                    return self._grabcut()  # already refused this exact version; said so then
                try:
                    self._prompt[key] = open_prompt_session(info, self.runtimes)
                except ModelError as exc:
                    self._failed[key] = info.stamp()
                    self._say(f"{info.name}@{info.version} could not be loaded, using GrabCut: {exc}")
                    return self._grabcut()
            return self._prompt[key]

    def _grabcut(self) -> PromptSession:
        key = ("grabcut", "opencv")
        if key not in self._prompt:
            self._prompt[key] = GrabCutPromptSession()
        return self._prompt[key]

    def close(self) -> None:
        for s in self._prompt.values():
            s.close()
        self._prompt.clear()
