"""``specula bench effort``: the labelling-effort benchmark (manual versus assisted).

A simulated annotator (``annotation.effort``) labels a data set with ground truth
twice, through real mask edits charged from ``assets/effort_costs.toml``: from
scratch, and starting from proposals. It prints seconds per instance for both, the
time saved, the distribution over the groups of 003's Table 2 and the IoU reached,
and writes ``effort.md`` and ``effort_<dataset>.json`` into ``--out``. With
``--loop`` it labels ``--k`` images, retrains through the training command, proposes
on the next ``--k``, and writes ``loop_<dataset>.md/.json/.png``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from annotation.effort import (
    AnnotatorParams,
    CostTable,
    CostTableError,
    EffortError,
    ProposalError,
    ProposalSource,
    SimulatedAnnotator,
    load_dataset,
    run_effort,
    run_loop,
    source_for,
)
from annotation.effort.report import corrections_line, effort_table, loop_table, write_effort_report, write_loop_report
from annotation.effort.runner import DATASETS, DEFAULT_MIN_AREA
from specula.effort_model import EngineSource, SubprocessTrainer


def add_parsers(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``bench`` (with its ``effort`` command) to the ``specula`` parser's subparsers."""
    bench = subparsers.add_parser("bench", help="benchmarks that print figures")
    sub = bench.add_subparsers(dest="bench_command", required=True)
    p = sub.add_parser("effort", help="labelling effort, manual versus assisted (simulated annotator)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True,
                   help=f"a data set under the shared data folder ({', '.join(DATASETS)}) or a folder with image/ and mask/")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images (sorted by name)")
    p.add_argument("--offset", type=int, default=0, help="skip the first N images")
    p.add_argument("--source", choices=("model", "coco", "degraded-truth"), default=None,
                   help="proposals: a registry model, a COCO results file, or the SYNTHETIC damaged truth "
                        "(default: model when --model is given, coco when --proposals is, else an error)")
    p.add_argument("--model", default=None, help="registry model name for --source model (e.g. cracks-semantic)")
    p.add_argument("--held-out", action="store_true",
                   help="with --model: only the images the model's manifest lists as held out from its training")
    p.add_argument("--proposals", default=None, help="COCO results JSON for --source coco")
    p.add_argument("--quality", type=float, default=0.6, help="damage level of --source degraded-truth (0..1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-score", type=float, default=0.5, help="drop proposals scored below this")
    p.add_argument("--min-area", type=int, default=DEFAULT_MIN_AREA,
                   help="truth components smaller than this many pixels are not instances")
    p.add_argument("--target-iou", type=float, default=0.9)
    p.add_argument("--tolerance", type=float, default=1.5, help="px a traced outline may depart from the truth")
    p.add_argument("--costs", default=None, help="cost table TOML (default: assets/effort_costs.toml)")
    p.add_argument("--out", default="reports", help="folder for tables, JSON and plots")
    p.add_argument("--loop", action="store_true", help="label k images, retrain, propose on the next k, repeat")
    p.add_argument("--k", type=int, default=5, help="images per round of --loop")
    p.add_argument("--train-cmd", default=None,
                   help=f"training command template for --loop (default: '{SubprocessTrainer.DEFAULT_COMMAND}')")
    p.set_defaults(handler=run_bench_effort)
    return bench


def _source(kind: str, args: argparse.Namespace) -> ProposalSource:
    if kind == "model":
        if not args.model:
            raise ProposalError("--source model needs --model NAME")
        return EngineSource(args.model, args.min_score)
    return source_for(kind, path=args.proposals, quality=args.quality, seed=args.seed, min_score=args.min_score)


def _held_out_stems(model: Optional[str]) -> set[str]:
    """File stems of the validation images recorded in the active version's manifest."""
    if not model:
        raise ProposalError("--held-out needs --model NAME")
    from inference.registry import ModelError, Registry

    try:
        info = Registry.default().active(model)
    except ModelError as exc:
        raise ProposalError(str(exc)) from None
    keys = ((info.manifest.training or {}).get("data") or {}).get("val_image_keys") or []
    if not keys:
        raise ProposalError(f"{model}@{info.version}'s manifest lists no held-out images (training.data.val_image_keys)")
    return {Path(k).stem for k in keys}


def _fail(message: str) -> int:
    print(f"specula bench effort: {message}", file=sys.stderr)
    return 2


def run_bench_effort(args: argparse.Namespace) -> int:
    """Handler of ``specula bench effort``; 0 on success, 2 on bad input."""
    if args.limit is not None and args.limit <= 0:
        return _fail("--limit must be a positive number of images")
    if not 0.0 < args.target_iou <= 1.0:
        return _fail("--target-iou must be in (0, 1]")
    kind = args.source or ("model" if args.model else "coco" if args.proposals else None)
    try:
        costs = CostTable.load(args.costs)
        params = AnnotatorParams(target_iou=args.target_iou, tolerance=args.tolerance)
        annotator = SimulatedAnnotator(costs, params)
        if not args.loop and kind is None:
            return _fail("say where proposals come from: --model NAME, --proposals FILE.json, "
                         "or --source degraded-truth (synthetic, for testing)")
        source = _source(kind, args) if kind is not None and (args.source or not args.loop) else None
        stems = _held_out_stems(args.model) if args.held_out else None
        images = load_dataset(args.dataset, args.limit, args.min_area, offset=args.offset, only_stems=stems)
        if not images:
            return _fail(f"no images with masks in {args.dataset}")
        name = Path(args.dataset).name
        out = Path(args.out)
        if args.loop:
            if not args.model:
                return _fail("--loop needs --model NAME (the model the training command publishes)")
            initial = source
            trainer = SubprocessTrainer(args.model, out / f"loop_project_{name}", args.train_cmd, args.min_score)
            loop = run_loop(name, images, args.k, trainer, annotator, initial,
                            progress=lambda s: print(s, file=sys.stderr))
            print(loop_table(loop))
            files = write_loop_report(loop, out)
        else:
            assert source is not None
            result = run_effort(name, images, source, annotator,
                                progress=lambda i, n: print(f"\r{i}/{n} images", end="", file=sys.stderr))
            print(file=sys.stderr)
            print(effort_table([result.summary()]))
            print(corrections_line(result.summary()))
            print(f"proposals: {source.label}; costs: {costs.source}")
            files = write_effort_report([result], out)
    except (EffortError, ProposalError, CostTableError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write the report: {exc}")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Stand-alone entry (until the ``specula`` command wires ``add_parsers``)."""
    parser = argparse.ArgumentParser(prog="specula")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
