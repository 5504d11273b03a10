"""``specula bench effort``: the labelling-effort benchmark (manual versus assisted).

A simulated annotator (``annotation.effort``) labels a data set with ground truth
twice, through real mask edits charged from ``assets/effort_costs.toml``: from
scratch, and starting from proposals. Both sides obey one stopping rule: work on an
instance stops at the target IoU, at the same time cap per instance (--instance-cap),
or when nothing more helps, and keeps the most accurate mask reached. Decisions follow
what a person sees: a proposal is corrected when its error regions are no larger than
what it has right (IoU >= 0.5), else redrawn; a correction that stalls is abandoned
and the object redrawn, both charged; proposals left over cost a decision each, or
"Reject the rest of this image" (Shift+R) with a glance at each; the manual polygon
has the fewest vertices that reach the target.

It prints seconds per instance for both sides, the time saved, the distribution over
the groups of 003's Table 2 and the IoU reached, one row per data set and target IoU
(``--target-iou 0.9 0.75`` runs both on the same proposals), and writes ``effort.md``,
``effort_<dataset>[_iou<T>].json`` and the proposals used (``proposals_<dataset>.json``,
COCO results: ``--source coco --proposals`` repeats the run without the model) into
``--out``. ``--held-out`` keeps the images the model's manifest lists as held out from
its training and its checkpoint choice (``training.data.test_image_keys``, those of this
data set). With
``--loop`` it labels ``--k`` images, retrains through the training command, proposes on
the next ``--k``, and writes ``loop_<dataset>.md/.json/.png``.

``--clicks MODEL`` (issue "Correct with clicks") runs each target twice on the same
proposals: as before, and with the prompt tool's click correction on both sides (a
registry click model such as ``click-refine``, a model folder, or ``grabcut``); clicks
go where ``specula bench clicks`` puts them (the centre of the largest error region),
each charged ``click`` from the cost table, and a second table prints the time saved
with clicks beside the time saved without them; its headline compares assisted with
clicks against the faster of the two manual workflows (with or without clicks), so a
weak click model cannot make the baseline slow.

``--yes-no`` (issue 16, 004's chapter 3) reviews the model's proposals by yes/no
questions answered from the truth (good: IoU with the best truth instance of its class
above ``--t-iou``), once with clusters of similar proposals and once with one question
per proposal, each in its own project; it retrains on the accepted masks, proposes again,
drops duplicates of what was accepted and repeats ``--iterations`` times, and writes
``yes_no_<dataset>.md/.json`` (``annotation.effort.yes_no``, ``specula.effort_yes_no``).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from annotation.clusters import (
    DEFAULT_AGREEMENT,
    DEFAULT_REPRESENTATIVES,
    DEFAULT_TARGET_SIZE,
)
from annotation.effort import (
    AnnotatorParams,
    CostTable,
    CostTableError,
    EffortError,
    ProposalError,
    ProposalSource,
    SimulatedAnnotator,
    load_dataset,
    proposals_json,
    run_efforts,
    run_loop,
    source_for,
)
from annotation.effort.report import (
    clicks_table,
    corrections_line,
    effort_table,
    left_over_line,
    loop_table,
    write_effort_report,
    write_loop_report,
)
from annotation.effort.runner import DATASETS, DEFAULT_MIN_AREA
from annotation.effort.yes_no import (
    T_IOU,
    totals_line,
    write_yes_no_report,
    yes_no_table,
)
from specula.effort_clicks import ModelClicks
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
    p.add_argument("--target-iou", type=float, nargs="+", default=[0.9], metavar="IOU",
                   help="IoU with the truth at which an instance is done (several: one row each, same proposals)")
    p.add_argument("--instance-cap", type=float, default=AnnotatorParams.instance_cap_s, metavar="SECONDS",
                   help="time cap per instance, the same on both sides; the most accurate mask reached is kept")
    p.add_argument("--correction-cap", type=float, default=AnnotatorParams.correction_cap_s, metavar="SECONDS",
                   help="a correction of a proposal running past this is abandoned and the object redrawn")
    p.add_argument("--registry", default=None,
                   help="model registry folder for --model (default: the user's registry plus the shipped models)")
    p.add_argument("--tolerance", type=float, default=1.5, help="px a traced outline may depart from the truth")
    p.add_argument("--clicks", default=None, metavar="MODEL",
                   help="also run with click correction on both sides: a registry click model (click-refine), "
                        "a model folder, or grabcut; the table shows the time saved with and without clicks")
    p.add_argument("--max-clicks", type=int, default=AnnotatorParams.max_clicks,
                   help="most clicks per object and click session")
    p.add_argument("--costs", default=None, help="cost table TOML (default: assets/effort_costs.toml)")
    p.add_argument("--out", default="reports", help="folder for tables, JSON and plots")
    p.add_argument("--loop", action="store_true", help="label k images, retrain, propose on the next k, repeat")
    p.add_argument("--k", type=int, default=5, help="images per round of --loop")
    p.add_argument("--train-cmd", default=None,
                   help=f"training command template for --loop (default: '{SubprocessTrainer.DEFAULT_COMMAND}')")
    p.add_argument("--epochs", type=int, default=8, help="epochs of each retraining (--loop, --yes-no)")
    y = p.add_argument_group("004's yes/no review (--yes-no)")
    y.add_argument("--yes-no", action="store_true",
                   help="answer 004's yes/no questions from the truth, with clusters and one per proposal; "
                        "retrain on the accepted masks and repeat (writes yes_no_<dataset>.md/.json)")
    y.add_argument("--t-iou", type=float, default=T_IOU,
                   help="a proposal is good when its IoU with the best truth instance of its class exceeds this")
    y.add_argument("--iterations", type=int, default=3, help="review-and-retrain iterations")
    y.add_argument("--representatives", type=int, default=DEFAULT_REPRESENTATIVES, help="questions per cluster")
    y.add_argument("--agreement", type=float, default=DEFAULT_AGREEMENT,
                   help="share of a cluster's representatives that must agree, else it splits")
    y.add_argument("--cluster-size", type=int, default=DEFAULT_TARGET_SIZE, help="the most proposals in one cluster")
    y.add_argument("--no-gate", action="store_true",
                   help="propose with every retrained version, better or not (004's protocol); by default a "
                        "version proposes only when it beats the model in use on the validation images")
    y.add_argument("--val-images", type=int, default=8,
                   help="the last N images selected are held out for the validation IoU, the rest are the pool")
    p.set_defaults(handler=run_bench_effort)
    return bench


def _registry(folder: str | None):
    from inference.registry import Registry

    return Registry(folder) if folder else Registry.default()


def _source(kind: str, args: argparse.Namespace) -> ProposalSource:
    if kind == "model":
        if not args.model:
            raise ProposalError("--source model needs --model NAME")
        return EngineSource(args.model, args.min_score, registry_dir=args.registry)
    return source_for(kind, path=args.proposals, quality=args.quality, seed=args.seed, min_score=args.min_score)


def held_out_stems(keys: Sequence[str], dataset: str) -> set[str]:
    """The file stems of ``dataset``'s images among a manifest's held-out keys.

    Keys written as ``<data set>/image/<file>`` (a model trained on several sets) count
    only for their own set, so an image of another set with the same file name is never
    taken for a held-out one; bare file names count for any set.
    """
    out = set()
    for k in keys:
        parts = Path(k).parts
        if len(parts) > 1 and parts[0] in DATASETS and parts[0] != dataset:
            continue
        out.add(Path(k).stem)
    return out


def _held_out_stems(model: str | None, dataset: str, registry: str | None = None) -> set[str]:
    """File stems of ``dataset``'s validation images recorded in the active version's manifest."""
    if not model:
        raise ProposalError("--held-out needs --model NAME")
    from inference.registry import ModelError

    try:
        info = _registry(registry).active(model)
    except ModelError as exc:
        raise ProposalError(str(exc)) from None
    data = (info.manifest.training or {}).get("data") or {}
    # the test images: never seen in training nor in choosing the checkpoint (older
    # manifests, with two splits only, name their held-out images val_image_keys)
    keys = data.get("test_image_keys") or data.get("val_image_keys") or []
    if not keys:
        raise ProposalError(f"{model}@{info.version}'s manifest lists no held-out images "
                            f"(training.data.test_image_keys)")
    stems = held_out_stems(keys, dataset)
    if not stems:
        raise ProposalError(f"{model}@{info.version}'s manifest lists no held-out image of {dataset}")
    return stems


def _fail(message: str) -> int:
    print(f"specula bench effort: {message}", file=sys.stderr)
    return 2


def run_bench_effort(args: argparse.Namespace) -> int:
    """Handler of ``specula bench effort``; 0 on success, 2 on bad input."""
    if args.limit is not None and args.limit <= 0:
        return _fail("--limit must be a positive number of images")
    if not all(0.0 < t <= 1.0 for t in args.target_iou):
        return _fail("--target-iou must be in (0, 1]")
    if args.max_clicks < 1:
        return _fail("--max-clicks must be at least 1")
    if args.yes_no:
        return _run_yes_no(args)
    if args.clicks and args.loop:
        return _fail("--clicks is not supported with --loop (run the loop, then --clicks on its proposals)")
    if args.instance_cap <= 0 or args.correction_cap <= 0:
        return _fail("--instance-cap and --correction-cap must be positive numbers of seconds")
    kind = args.source or ("model" if args.model else "coco" if args.proposals else None)
    return _reported(lambda: _effort_report(args, kind))


def _reported(make_report: Callable[[], Sequence[Path]]) -> int:
    """Run a benchmark that writes its report; 0 and the files written, or 2 and why not."""
    try:
        files = make_report()
    except (EffortError, ProposalError, CostTableError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write the report: {exc}")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _effort_report(args: argparse.Namespace, kind: str | None) -> Sequence[Path]:
    """The effort benchmark (or its retraining loop): prints its tables, returns the report files."""
    costs = CostTable.load(args.costs)
    clicks = ModelClicks.open(args.clicks, args.registry) if args.clicks else None
    annotators = []
    for t in dict.fromkeys(args.target_iou):
        params = AnnotatorParams(target_iou=t, tolerance=args.tolerance, instance_cap_s=args.instance_cap,
                                 correction_cap_s=args.correction_cap, max_clicks=args.max_clicks)
        annotators.append(SimulatedAnnotator(costs, params))
        if clicks is not None:
            annotators.append(SimulatedAnnotator(costs, params, clicks=clicks))
    if not args.loop and kind is None:
        raise EffortError("say where proposals come from: --model NAME, --proposals FILE.json, "
                          "or --source degraded-truth (synthetic, for testing)")
    source = _source(kind, args) if kind is not None and (args.source or not args.loop) else None
    name = Path(args.dataset).name
    stems = _held_out_stems(args.model, name, args.registry) if args.held_out else None
    images = load_dataset(args.dataset, args.limit, args.min_area, offset=args.offset, only_stems=stems)
    if not images:
        raise EffortError(f"no images with masks in {args.dataset}")
    out = Path(args.out)
    if clicks is not None:
        unseen = clicks.unseen(name, [im.path.name for im in images])
        seen = "not recorded in its manifest" if unseen is None else f"{unseen} of {len(images)}"
        clicks.label += f"; images held out from its training: {seen}"
    if args.loop:
        if not args.model:
            raise EffortError("--loop needs --model NAME (the model the training command publishes)")
        initial = source
        trainer = SubprocessTrainer(args.model, out / f"loop_project_{name}", args.train_cmd, args.min_score,
                                    args.epochs)
        loop = run_loop(name, images, args.k, trainer, annotators[0], initial,
                        progress=lambda s: print(s, file=sys.stderr))
        print(loop_table(loop))
        files = write_loop_report(loop, out)
    else:
        assert source is not None
        kept: dict = {}
        results = run_efforts(name, images, source, annotators,
                              progress=lambda i, n: print(f"\r{i}/{n} images", end="", file=sys.stderr),
                              keep_proposals=kept)
        print(file=sys.stderr)
        summaries = [r.summary() for r in results]
        print(effort_table(summaries))
        for s in summaries:
            print(left_over_line(s))
            print(corrections_line(s))
        if clicks is not None:
            print()
            print(clicks_table(summaries))
        print(f"proposals: {source.label}; costs: {costs.source}"
              + (f"; clicks: {clicks.label}" if clicks is not None else ""))
        paths = {im.key: im.path for im in images}
        files = write_effort_report(results, out, {name: proposals_json(kept, paths)})
    return files


def _run_yes_no(args: argparse.Namespace) -> int:
    """``--yes-no``: both review loops (clusters, one question per proposal) on the pool."""
    from specula.effort_yes_no import run_yes_no_bench

    if not args.model:
        return _fail("--yes-no needs --model NAME (the model whose proposals are reviewed)")
    if args.loop or args.clicks:
        return _fail("--yes-no runs its own loop; it does not combine with --loop or --clicks")
    if not 0.0 < args.t_iou < 1.0:
        return _fail("--t-iou must be in (0, 1)")
    if args.iterations < 1 or args.representatives < 1 or args.cluster_size < 1 or args.val_images < 0:
        return _fail("--iterations, --representatives and --cluster-size must be at least 1, --val-images >= 0")
    if not 0.5 <= args.agreement <= 1.0:
        return _fail("--agreement must be between 0.5 and 1")
    if args.limit is not None and args.limit <= 0:
        return _fail("--limit must be a positive number of images")
    name = Path(args.dataset).name

    def report() -> Sequence[Path]:
        costs = CostTable.load(args.costs)
        stems = _held_out_stems(args.model, name, args.registry) if args.held_out else None
        limit = None if args.limit is None else args.limit + args.val_images
        images = load_dataset(args.dataset, limit, args.min_area, offset=args.offset, only_stems=stems)
        result, notes = run_yes_no_bench(args, images, name, costs, lambda s: print(s, file=sys.stderr))
        print(yes_no_table(result))
        print(totals_line(result))
        return write_yes_no_report(result, Path(args.out), notes)

    return _reported(report)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (until the ``specula`` command wires ``add_parsers``)."""
    parser = argparse.ArgumentParser(prog="specula")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
