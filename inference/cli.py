"""The ``propose`` and ``models`` subcommands (wired into ``specula`` by ``add_parsers``).

Every handler returns an exit code: 0 done, 1 done with images skipped or cancelled,
2 bad input (one line on stderr saying what and what to do).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

from inference.registry import ModelError, Registry


def _fail(text: str) -> int:
    print(f"specula: {text}", file=sys.stderr)
    return 2


def _registry(args: argparse.Namespace) -> Registry:
    if getattr(args, "registry", None):
        return Registry(Path(args.registry))
    return Registry.default()


def parse_model_spec(spec: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """``"NAME@VERSION"`` -> (name, version); ``"NAME"`` -> (name, None); None -> (None, None)."""
    if not spec:
        return None, None
    name, _, version = spec.partition("@")
    if not name or (_ and not version):
        raise ValueError(f"--model {spec!r}: write NAME or NAME@VERSION")
    return name, version or None


def cmd_propose(args: argparse.Namespace) -> int:
    """``specula propose PROJECT [--model NAME[@VERSION]] [--images GLOB] [--device auto|cpu|cuda]``."""
    from annotation.store import ProjectStore, StoreError
    from inference.engine import Engine
    from inference.propose import propose_project

    try:
        name, version = parse_model_spec(args.model)
    except ValueError as exc:
        return _fail(str(exc))
    try:
        store = ProjectStore.open(args.project, create=False, writer="specula propose")
    except StoreError as exc:
        return _fail(str(exc))
    if store.read_only:
        store.close()
        return _fail(f"cannot store proposals: {store.read_only}")
    registry = _registry(args)
    if name is None:
        # the same rule as the editor and the headless job: the model made for this palette
        info, why = registry.model_for_palette(store.palette)
        if info is None:
            store.close()
            return _fail(f"{why}; name one with --model NAME, or train or import one for this palette")
        name, version = info.name, info.version
    bar: Any = None
    try:
        engine = Engine(registry, device=args.device)
        print(engine.device_short, file=sys.stderr)
        engine.on_message = lambda text: print(text, file=sys.stderr)

        started = time.monotonic()

        def progress(done: int, total: int, path: str) -> None:
            nonlocal bar
            if args.json:  # one line per image for the desktop or a script: rate, time left
                elapsed = max(1e-9, time.monotonic() - started)
                rate = done / elapsed
                print(json.dumps({"event": "progress", "done": done, "total": total, "path": path,
                                  "images_per_second": round(rate, 3),
                                  "eta_s": round((total - done) / rate, 1) if rate > 0 else None}), flush=True)
                return
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="image", file=sys.stderr, desc="propose")
            bar.set_postfix_str(path[-40:], refresh=False)
            bar.update(done - bar.n)

        params = parse_params(getattr(args, "param", None) or [])
        engine.pipeline(name, version).params(params)  # a typo is refused before any image is read
        workers = int(getattr(args, "workers", 0) or 0)
        if workers < 0:
            return _fail(f"--workers {workers}: give a number of worker processes, 1 or more")
        if workers > 0 or getattr(args, "cluster", None):
            import fnmatch

            from inference.batch import propose_with_workers

            pinned = version or engine.pipeline(name, version).info.version  # every worker loads this one
            images = [r for r in store.images() if args.images is None or fnmatch.fnmatch(r.path, args.images)]
            summary = propose_with_workers(
                store, registry, name, pinned, workers=max(1, workers), cluster=args.cluster,
                backend="ray" if args.cluster else "local", images=images, device=args.device,
                resume=not args.again, progress=progress, params=params,
            )
            for text in summary.messages:
                print(text, file=sys.stderr)
        else:
            summary = propose_project(
                store, engine, name, args.images, progress=progress, version=version, params=params,
                on_message=lambda text: print(text, file=sys.stderr),
            )
    except (ModelError, ValueError) as exc:  # ValueError: a --param the pipeline does not take
        return _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - narrowed below: only a batch run's own start errors are one line
        from inference.batch import BatchError

        if isinstance(exc, BatchError):
            return _fail(str(exc))
        raise
    except KeyboardInterrupt:
        print("specula: cancelled", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
        store.close()
    if args.json:
        print(json.dumps({"event": "done", "model": summary.model, "version": summary.version,
                          "images": summary.images, "proposals": summary.proposals, "skipped": summary.skipped,
                          "cancelled": summary.cancelled, "seconds": round(summary.seconds, 2),
                          "messages": summary.messages}), flush=True)
    else:
        print(summary)
    return 1 if (summary.skipped or summary.cancelled) else 0


def metrics_summary(metrics: Any) -> str:
    """A manifest's figures in one short line: per class IoU and max F-beta of the part the
    manifest reports on (test, else validation), e.g. ``test: glass IoU 0.85 F 0.91``."""
    if not isinstance(metrics, dict):
        return ""
    for part in ("test", "validation"):
        block = metrics.get(part)
        if isinstance(block, dict) and isinstance(block.get("per_class"), dict):
            cells = []
            for cls, v in block["per_class"].items():
                if not isinstance(v, dict) or v.get("iou") is None:
                    continue
                f = v.get("max_fbeta")
                cells.append(f"{cls} IoU {v['iou']:.3f}" + (f" F {f:.3f}" if isinstance(f, (int, float)) else ""))
            if cells:
                return f"{part}: " + ", ".join(cells)
    return ", ".join(f"{k} {v:.3g}" for k, v in metrics.items() if isinstance(v, (int, float)))


def cmd_models(args: argparse.Namespace) -> int:
    """``specula models list|activate NAME VERSION|rollback NAME|import PATH [--name N]``."""
    reg = _registry(args)
    try:
        if args.models_command == "list":
            infos = reg.list()
            actives: dict[str, str] = {}
            for n in sorted({i.name for i in infos}):
                actives[n] = reg.active(n).version
            for i in infos:
                mark = "*" if actives.get(i.name) == i.version else " "
                where = " (shipped)" if i.read_only else ""
                metrics = metrics_summary(i.manifest.metrics)
                print(f"{mark} {i.name}@{i.version}  {i.task}  [{', '.join(i.manifest.classes)}]"
                      f"{'  ' + metrics if metrics else ''}{where}")
            if not infos:
                print(f"no models in {reg.root}")
            for why in reg.problems.values():
                print(f"! {why}", file=sys.stderr)
            return 0
        if args.models_command == "activate":
            info = reg.activate(args.name, args.version)
            print(f"active: {info.name}@{info.version}")
            return 0
        if args.models_command == "rollback":
            info = reg.rollback(args.name)
            print(f"active: {info.name}@{info.version}")
            return 0
        if args.models_command == "import":
            classes = [c for c in args.classes.split(",") if c] if args.classes else None
            info = reg.import_model(args.path, args.name, task=args.task, classes=classes, trust=args.trust)
            print(f"imported {info.name}@{info.version} ({info.task}) into {info.path}")
            return 0
    except ModelError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc}; check the path and free disk space")
    return _fail("models needs a command: list, activate, rollback or import")


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``["threshold=0.3", "random_walk=true"]`` -> ``{"threshold": 0.3, "random_walk": True}``
    (a value that is not JSON stays a string)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param {pair!r}: write KEY=VALUE, e.g. threshold=0.3")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def add_parsers(subparsers: Any) -> None:
    """Add ``propose`` and ``models`` to an ``argparse`` subparsers object; handlers in ``func``."""
    p = subparsers.add_parser("propose", help="propose masks for a project's images with a model")
    p.add_argument("project", help="project folder")
    p.add_argument("--model", help="NAME or NAME@VERSION (default: the model the registry chooses for the "
                                    "project's palette: your own before shipped ones, then the newest)")
    p.add_argument("--images", help="glob on project-relative paths, e.g. 'span3/*.jpg'")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--workers", type=int, default=0,
                   help="N local worker processes, this process the only writer; images already proposed with "
                        "the same model version are skipped, so a stopped run resumes")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run the workers on a Ray cluster (ray.init(address=ADDRESS); 'auto' for the local one); "
                        "needs pip install 'specula[cluster]'")
    p.add_argument("--json", action="store_true",
                   help="progress as JSON lines on stdout (done, total, images per second, seconds left), "
                        "then a summary line")
    p.add_argument("--again", action="store_true",
                   help="with --workers/--cluster: propose again on images already proposed with this version")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a pipeline parameter for this run, e.g. threshold=0.3 or random_walk=true "
                        "(JSON values; repeat for more); unknown keys are refused")
    p.add_argument("--registry", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_propose)

    m = subparsers.add_parser("models", help="list, activate, roll back and import models")
    m.add_argument("--registry", help=argparse.SUPPRESS)
    msub = m.add_subparsers(dest="models_command")
    msub.add_parser("list", help="list model versions (* = active)")
    a = msub.add_parser("activate", help="use VERSION of NAME")
    a.add_argument("name")
    a.add_argument("version")
    r = msub.add_parser("rollback", help="go back to the previously active version of NAME")
    r.add_argument("name")
    i = msub.add_parser("import", help="import a model folder (with manifest.json) or an .onnx file")
    i.add_argument("path")
    i.add_argument("--name", help="model name (needed for a bare .onnx file)")
    i.add_argument("--task", choices=("semantic", "cam", "instance", "prompt"), help="for a bare .onnx file")
    i.add_argument("--classes", help="comma-separated class names, for a bare .onnx file")
    i.add_argument("--trust", action="store_true",
                   help="import a folder's TorchScript model.pt, which runs its own code when loaded")
    m.set_defaults(func=cmd_models)
