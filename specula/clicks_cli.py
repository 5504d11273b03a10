"""``specula bench clicks``: clicks to reach an IoU, for the click model and for GrabCut.

The standard measure of interactive segmentation (RITM, Sofiiuk et al. 2022): every
object of a data set's test images (8-connected components of at least ``--min-area``
pixels, as ``specula bench effort`` counts them) is clicked on by a simulated user,
the first click at the object's centre and each next one at the centre of the largest
error region of the last answer (positive in a missed region, negative in a wrong
one), the last answer fed back as the previous mask, up to ``--max-clicks``. Printed,
for the click model and for GrabCut (the prompt tool's fallback) in the same run:

- NoC@85 / NoC@90: mean clicks until the IoU reaches 85 / 90 % (an object never
  reaching it counts ``--max-clicks``, as the literature does);
- IoU@1 / @3 / @5: mean IoU after 1, 3 and 5 clicks;
- the share of objects never reaching 90 %, and milliseconds per click, wall-clock
  and CPU time of the process (on a machine shared with other work the CPU time is the
  steadier figure; ratio GrabCut / model: how many times faster the model answers).

The test images are those the model's manifest lists as held out
(``training.data.test_image_keys``: for the shipped ``click-refine``, the test images of
the shipped semantic models, which neither model saw), or those of
``--test-keys-from MODEL``; ``--all-images`` takes every image (not a held-out figure).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from specula.cli import CommandError

COLUMNS = ("objects", "NoC@85", "NoC@90", "IoU@1", "IoU@3", "IoU@5", "failed@90", "ms_per_click", "cpu_ms_per_click")


def add_parsers(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``clicks`` under ``specula bench`` (made by ``specula.bench_cli``; made here if absent)."""
    bench = subparsers.choices.get("bench") if hasattr(subparsers, "choices") else None
    if bench is None:
        bench = subparsers.add_parser("bench", help="benchmarks that print figures")
        sub = bench.add_subparsers(dest="bench_command", required=True)
    else:
        sub = next(a for a in bench._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.add_parser("clicks", help="clicks to reach 85 / 90 %% IoU: click model versus GrabCut",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True,
                   help="a data set under the shared data folder (glass-gdd, cracks-deepcrack, cracks-cfd, ...) "
                        "or a folder with image/ and mask/")
    p.add_argument("--model", default="click-refine", help="registry click model (task clicks)")
    p.add_argument("--version", default=None, help="model version (default: the active one)")
    p.add_argument("--registry", default=None, help="registry folder (default: the user's plus the shipped models)")
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--test-keys-from", default=None, metavar="MODEL",
                   help="take the held-out images from this model's manifest instead of the click model's")
    p.add_argument("--all-images", action="store_true", help="every image of the data set (not held out)")
    p.add_argument("--limit", type=int, default=None, help="only the first N test images (sorted by name)")
    p.add_argument("--min-area", type=int, default=50, help="smaller truth components are not objects")
    p.add_argument("--no-grabcut", action="store_true", help="skip the GrabCut baseline")
    p.add_argument("--grabcut-max-side", type=int, default=None,
                   help="GrabCut on at most this many pixels per side (default: full resolution, as the tool)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the figures and every object's IoU curve")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: its own choice)")
    p.set_defaults(handler=run_bench_clicks)
    return p


def _registry(folder: Optional[str]):
    from inference.registry import Registry

    return Registry(folder) if folder else Registry.default()


def _test_keys(info, other: Optional[str], registry) -> list[str]:
    from inference.registry import ModelError

    source = info
    if other:
        try:
            source = registry.active(other)
        except ModelError as exc:
            raise CommandError(str(exc)) from None
    keys = list(((source.manifest.training or {}).get("data") or {}).get("test_image_keys") or [])
    if not keys:
        raise CommandError(f"{source.name}@{source.version}'s manifest lists no held-out images "
                           f"(training.data.test_image_keys); name a model that does with --test-keys-from, "
                           f"or use --all-images")
    return keys


def _check_unseen(info, keys: Sequence[str], dataset: str) -> None:
    """Refuse to score a model on images it trained on (its manifest says which it held out)."""
    data = (info.manifest.training or {}).get("data") or {}
    held = set(data.get("test_image_keys") or []) | set(data.get("excluded_image_keys") or [])
    if not held:
        return  # a model trained on a project: its images are the project's, not the data set's
    seen = [k for k in keys if k not in held and Path(k).parts[0] == dataset]
    if seen:
        raise CommandError(f"{info.name}@{info.version} trained on {len(seen)} of these images (e.g. {seen[0]}); "
                           f"its scores on them would not be held-out figures")


def _session(info, threads: Optional[int]):
    from inference.pipelines.clicks import ClickSession
    from inference.runtime import OnnxRuntime

    return ClickSession.from_info(info, _ThreadedRuntime(threads) if threads else OnnxRuntime("cpu"))


class _ThreadedRuntime:
    """ONNX Runtime sessions on the CPU with a fixed number of threads (a per-click time
    that does not depend on how many cores the benchmark happened to get)."""

    def __init__(self, threads: int):
        self.threads = int(threads)

    def session(self, path: Any) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = self.threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def table(rows: dict[str, dict[str, float]], max_clicks: int) -> str:
    """A Markdown table of the figures, one row per method."""
    head = "| method | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, s in rows.items():
        cells = []
        for c in COLUMNS:
            v = s.get(c)
            cells.append("" if v is None else f"{int(v)}" if c == "objects" else
                         f"{100 * v:.0f} %" if c == "failed@90" else f"{v:.1f}" if c.endswith("per_click") else
                         f"{v:.2f}" if c.startswith("NoC") else f"{v:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n(NoC: at most {max_clicks} clicks; an object not reached counts {max_clicks})"


def run_bench_clicks(args: argparse.Namespace) -> int:
    """Handler of ``specula bench clicks``; 0 on success, 2 on bad input."""
    from annotation.effort.runner import EffortError, load_dataset
    from inference.pipelines.clicks import GrabCutClickSession, evaluate, summarize
    from inference.registry import ModelError
    from specula.bench_cli import held_out_stems
    from annotation.images import load_image

    if args.max_clicks < 1:
        raise CommandError("--max-clicks must be at least 1")
    registry = _registry(args.registry)
    try:
        info = registry.get(args.model, args.version)
    except ModelError as exc:
        raise CommandError(str(exc)) from None
    if info.task != "clicks":
        raise CommandError(f"{info.name}@{info.version} is a {info.task} model; bench clicks needs a clicks model")
    name = Path(args.dataset).name
    stems = None
    if not args.all_images:
        keys = _test_keys(info, args.test_keys_from, registry)
        stems = held_out_stems(keys, name)
        if not stems:
            raise CommandError(f"the held-out list names no image of {name}")
        _check_unseen(info, [k for k in keys if Path(k).stem in stems], name)
    try:
        images = load_dataset(args.dataset, args.limit, args.min_area, only_stems=stems)
    except EffortError as exc:
        raise CommandError(str(exc)) from None
    if not images:
        raise CommandError(f"no images with masks in {args.dataset}")
    try:
        methods: dict[str, Any] = {f"{info.name}@{info.version}": _session(info, args.threads)}
    except ModelError as exc:
        raise CommandError(str(exc)) from None
    if not args.no_grabcut:
        methods["grabcut"] = GrabCutClickSession(max_side=args.grabcut_max_side)
    items = _Items(images, lambda path: load_image(path).rgb)
    results: dict[str, dict[str, float]] = {}
    curves: dict[str, list[list[float]]] = {}
    n_obj = sum(len(im.truths) for im in images)
    for label, session in methods.items():
        print(f"{label}: {len(images)} images, {n_obj} objects", file=sys.stderr)
        trajs = evaluate(session, items, max_clicks=args.max_clicks,
                         progress=lambda i, n: print(f"\r  {i}/{n} images", end="", file=sys.stderr))
        print(file=sys.stderr)
        results[label] = summarize(trajs, args.max_clicks)
        curves[label] = [[round(v, 4) for v in t.ious] for t in trajs]
    print(f"{name}: {len(images)} test images, {n_obj} objects")
    print(table(results, args.max_clicks))
    if len(results) == 2:
        (m, s_m), (g, s_g) = results.items()
        print(f"GrabCut / model: NoC@90 {s_g['NoC@90'] / max(s_m['NoC@90'], 1e-9):.2f}x, "
              f"ms per click {s_g['ms_per_click'] / max(s_m['ms_per_click'], 1e-9):.2f}x, "
              f"CPU ms per click {s_g['cpu_ms_per_click'] / max(s_m['cpu_ms_per_click'], 1e-9):.2f}x")
    if args.json:
        out = {"dataset": name, "model": f"{info.name}@{info.version}", "max_clicks": args.max_clicks,
               "images": [str(im.path) for im in images], "summary": results, "iou_curves": curves}
        try:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {args.json}: {exc}") from None
        print(f"wrote {args.json}")
    return 0


class _Items:
    """``(rgb, truth masks)`` per image, decoded when iterated (each method reads them again)."""

    def __init__(self, images: Sequence[Any], reader: Any):
        self.images, self.reader = images, reader

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self):
        for im in self.images:
            yield self.reader(im.path), [m for _, m in im.truths]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Stand-alone entry: ``python -m specula.clicks_cli --dataset ...``."""
    parser = argparse.ArgumentParser(prog="specula")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", "clicks", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.handler(args)
    except CommandError as exc:
        print(f"specula: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
