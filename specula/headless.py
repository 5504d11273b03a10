"""The headless main job: what ``specula PROJECT`` does on a machine with no display.

Open (and scan) the project, propose with the model the registry chooses for its
palette (``Registry.model_for_palette``), print its statistics, export COCO to
``<project>/exports/coco.json``. The helpers here (proposing over a project, COCO
export) are shared with the self-test.
No Qt, no torch at import; onnxruntime only once a proposal runs.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional

EXPORT_RELATIVE = Path("exports") / "coco.json"

Progress = Optional[Callable[[int, int], None]]


def say(text: str) -> None:
    print(text, flush=True)


# ------------------------------------------------------------------ proposing
def propose_store(store: Any, info: Any, registry: Any, *, progress: Progress = None) -> dict:
    """Propose with ``info`` on every image of the project (``inference.propose.propose_project``).

    Each image's earlier proposals are replaced (a second run does not pile them up);
    accepted and rejected instances stay. Returns ``{"images": n, "proposals": n,
    "errors": {path: reason}, "device": text, "messages": [...]}``; ``ModelError`` when
    the model cannot load.
    """
    from inference.engine import Engine
    from inference.propose import propose_project

    engine = Engine(registry)
    try:
        summary = propose_project(
            store, engine, info.name, version=info.version,
            progress=(lambda done, total, _path: progress(done, total)) if progress else None,
        )
        return {
            "images": summary.images, "proposals": summary.proposals, "errors": dict(summary.skipped),
            "device": engine.device_report, "messages": list(summary.messages), "seconds": summary.seconds,
        }
    finally:
        engine.close()


# ------------------------------------------------------------------ export
def export_coco(store: Any, out_path: Path, states: tuple[str, ...] = ("accepted", "proposed")) -> list[str]:
    """Write the project's instances in ``states`` as COCO (RLE) to ``out_path``; returns warnings."""
    from annotation.formats.project_io import export_project

    out_path.parent.mkdir(parents=True, exist_ok=True)
    report = export_project(store, "coco", str(out_path), states=states, polygons=False, progress=None)
    return list(report.warnings)


# ------------------------------------------------------------------ the job
def run_headless(project: str | Path) -> int:
    """Open, propose, report, export; 0 on success, 1 when a step failed (the message says which)."""
    from annotation.resources import user_data_dir
    from annotation.stats import format_stats, project_stats
    from annotation.store import ProjectStore, StoreError
    from inference.registry import ModelError, Registry
    from specula.progress import TerminalProgress

    say(f"specula: no display, running the headless job on {project}")
    try:
        store = ProjectStore.open(project, create=True, scan=False, writer="the headless job")
    except StoreError as exc:
        print(f"specula: {exc}", file=sys.stderr)
        return 1
    try:
        with TerminalProgress("scan", "image") as progress:
            scan = store.scan_images(progress=progress)
        say(f"opened {store.root}: {len(store.images())} images ({len(scan.added)} new, "
            f"{len(scan.missing)} missing, {len(scan.errors)} unreadable), palette '{store.palette.name}'")
        if scan.skipped:
            say(f"  no scan for new images: {scan.skipped}")
        for path, reason in list(scan.errors.items())[:20]:
            say(f"  unreadable: {path}: {reason}")

        registry = Registry.default()
        info, why = registry.model_for_palette(store.palette)
        if store.read_only:
            say(f"no proposals: {store.read_only}")
        elif info is None:
            say(f"no proposals: {why}; add a model with `specula models import` or train one "
                f"(registry: {user_data_dir() / 'models'})")
        else:
            say(f"proposing with {info.name} {info.version} ({info.task})")
            try:
                with TerminalProgress("propose", "image") as progress:
                    result = propose_store(store, info, registry, progress=progress)
            except ModelError as exc:
                say(f"no proposals: the model could not run: {exc}")
            else:
                say(f"  {result['proposals']} proposals on {result['images']} images in {result['seconds']:.1f} s; "
                    f"{result['device']}")
                for text in result["messages"]:
                    say(f"  {text}")
                for path, reason in list(result["errors"].items())[:20]:
                    say(f"  not proposed: {path}: {reason}")

        say("")
        say(format_stats(project_stats(store)))
        say("")
        out = store.root / EXPORT_RELATIVE
        try:
            warnings = export_coco(store, out)
        except OSError as exc:
            print(f"specula: export failed: cannot write {out} ({exc.strerror or exc}); free some disk space "
                  "or make the project folder writable", file=sys.stderr)
            return 1
        for w in warnings[:50]:
            say(f"  warning: {w}")
        say(f"exported accepted and proposed instances as COCO: {out}")
        return 0
    finally:
        store.close()
