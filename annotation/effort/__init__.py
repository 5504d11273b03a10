"""The labelling-effort benchmark: a simulated annotator that labels real data sets manually and
from proposals with real mask edits, charged from a cost table (``assets/effort_costs.toml``).

Both sides obey one rule (``annotator``'s docstring states it): work on an instance
stops at the target IoU, at the same time cap per instance, or when nothing more helps,
and keeps the most accurate mask reached; decisions follow what a person sees, never a
comparison of two simulated paths.

Plain Python and numpy/OpenCV; no Qt, no torch. Entry points: ``SimulatedAnnotator``,
``run_effort``, ``run_efforts``, ``run_loop``, ``load_dataset``; the command is
``specula bench effort``. Click correction (``clicks``): the click model is injected
from the application as a ``ClickTool`` (``specula.effort_clicks``).
"""
from annotation.effort.annotator import (
    CORRECTION_KINDS,
    MODES,
    AnnotatorParams,
    Correction,
    ImageLabelling,
    Labelled,
    ProposalMask,
    SimulatedAnnotator,
)
from annotation.effort.clicks import ClickResult, ClickTool, click_session
from annotation.effort.costs import Action, CostTable, CostTableError
from annotation.effort.proposals import (
    CocoResultsSource,
    DegradedTruthSource,
    EffortImage,
    ProposalError,
    ProposalSource,
    proposals_json,
    source_for,
)
from annotation.effort.runner import (
    EffortError,
    EffortResult,
    LabelledExample,
    LoopResult,
    Trainer,
    load_dataset,
    run_effort,
    run_efforts,
    run_loop,
    saving_group,
    truth_instances,
)

__all__ = [
    "CORRECTION_KINDS", "MODES", "Action", "AnnotatorParams", "ClickResult", "ClickTool", "CocoResultsSource", "Correction", "CostTable",
    "CostTableError", "DegradedTruthSource", "EffortError", "EffortImage", "EffortResult", "ImageLabelling",
    "Labelled", "LabelledExample", "LoopResult", "ProposalError", "ProposalMask", "ProposalSource",
    "SimulatedAnnotator", "Trainer", "click_session", "load_dataset", "proposals_json", "run_effort", "run_efforts", "run_loop",
    "saving_group", "source_for", "truth_instances",
]
