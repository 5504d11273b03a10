"""Pipelines: a dict from manifest ``task`` to the backend class that runs it.

``prompt`` models are not proposal pipelines: they answer clicks, through
``SamPromptSession`` (or ``GrabCutPromptSession`` when no prompt model is registered).
"""
from __future__ import annotations

from inference.pipelines.base import Pipeline, Runtimes
from inference.pipelines.cam import CamPipeline
from inference.pipelines.instance import InstancePipeline
from inference.pipelines.irnet import IRNetPipeline
from inference.pipelines.prompt import GrabCutPromptSession, PromptSession, SamPromptSession
from inference.pipelines.semantic import SemanticPipeline
from inference.registry import ModelError, ModelInfo, check_files

PIPELINES: dict[str, type[Pipeline]] = {
    SemanticPipeline.task: SemanticPipeline,
    CamPipeline.task: CamPipeline,
    InstancePipeline.task: InstancePipeline,
    IRNetPipeline.task: IRNetPipeline,
}
PROMPT_SESSIONS: dict[str, type[PromptSession]] = {"prompt": SamPromptSession}


def build_pipeline(info: ModelInfo, runtimes: Runtimes) -> Pipeline:
    """Load ``info``'s weights into its task's backend; ``ModelError`` when that is impossible."""
    backend = PIPELINES.get(info.task)
    if backend is None:
        if info.task in PROMPT_SESSIONS:
            raise ModelError(f"{info.name}@{info.version} is a prompt model: it answers clicks, use a prompt session")
        raise ModelError(f"{info.path}: no pipeline runs task {info.task!r}")
    check_files(info)
    return backend(info, runtimes)


__all__ = [
    "PIPELINES", "PROMPT_SESSIONS", "Pipeline", "Runtimes", "build_pipeline", "SemanticPipeline", "CamPipeline",
    "InstancePipeline", "IRNetPipeline", "PromptSession", "SamPromptSession", "GrabCutPromptSession",
]
