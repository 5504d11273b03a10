"""``specula init``, ``specula import``, ``specula export`` and ``specula stats``: projects and
labels in and out, no Qt, no torch."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from specula.cli import EXIT_OK, CommandError, fail
from specula.progress import TerminalProgress

IMPORT_FORMATS = ("coco", "labelme", "cvat", "color-masks", "instance-masks", "class-masks")
EXPORT_FORMATS = ("coco", "labelme", "cvat", "color-masks")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="make a folder of images a Specula project (database, palette, scan)")
    p.add_argument("folder", help="the folder of images (searched recursively)")
    p.add_argument("--palette", help="a shipped palette (mirror-glass, inspection) or a palette file; "
                                     "default mirror-glass for a new project")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("import", help="import labels into a project (they become accepted)")
    p.add_argument("project")
    p.add_argument("--from", dest="fmt", required=True, choices=IMPORT_FORMATS)
    p.add_argument("path", help="annotation file or folder")
    p.add_argument("--palette", help="palette for the project: a shipped name (mirror-glass, inspection) or a file")
    p.add_argument("--class", dest="class_name", help="class of binary class masks (class-masks)")
    p.set_defaults(handler=cmd_import)

    p = sub.add_parser("export", help="export a project's labels")
    p.add_argument("project")
    p.add_argument("--to", dest="fmt", required=True, choices=EXPORT_FORMATS)
    p.add_argument("path", help="output file (coco, cvat) or folder (labelme, color-masks)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--polygons", action="store_true", help="COCO: polygons instead of RLE (holes kept)")
    g.add_argument("--rle", action="store_true", help="COCO: RLE masks (the default)")
    p.add_argument("--states", choices=("accepted", "proposed", "all"), default="accepted")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("stats", help="images, instances per class, class co-occurrence, duplicates")
    p.add_argument("project")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=cmd_stats)


def _open_store(project: str, palette_arg: str | None = None, create: bool = True):
    from annotation.palette import PaletteError, resolve_palette
    from annotation.store import ProjectStore, StoreError

    try:
        palette = resolve_palette(palette_arg) if palette_arg else None
        return ProjectStore.open(project, palette=palette, create=create)
    except (StoreError, PaletteError) as exc:
        raise CommandError(str(exc)) from None


def cmd_init(args: argparse.Namespace) -> int:
    """Create the project (or report the one there is) and scan its images; one summary line."""
    from annotation.palette import PaletteError, resolve_palette
    from annotation.store import DB_NAME, ProjectStore, StoreError

    try:
        palette = resolve_palette(args.palette) if args.palette else None
    except PaletteError as exc:
        return fail(str(exc))
    existed = (Path(args.folder) / DB_NAME).is_file()
    try:
        # an existing project keeps its palette: it is compared below, never replaced here
        store = ProjectStore.open(args.folder, palette=None if existed else palette, scan=False)
    except StoreError as exc:
        return fail(str(exc))
    try:
        if store.in_memory:
            return fail(f"cannot create a project in {store.root}: {store.read_only}")
        current = store.palette
        if existed and palette is not None and palette != current:
            return fail(
                f"{store.root} is already a Specula project with palette '{current.name}' "
                f"({', '.join(current.names)}); --palette {args.palette} would change it: leave --palette out "
                f"to keep the project's palette"
            )
        with TerminalProgress("scan", "image") as progress:
            report = store.scan_images(progress=progress)
        images = len(store.known_image_paths())
    finally:
        store.close()
    for path, reason in list(report.errors.items())[:20]:
        print(f"warning: unreadable: {path}: {reason}", file=sys.stderr)
    details = [f"{len(report.added)} new"]
    if report.errors:
        details.append(f"{len(report.errors)} unreadable")
    if report.missing:
        details.append(f"{len(report.missing)} missing")
    line = (
        f"{'project' if existed else 'created project'} {store.root}: {images} images ({', '.join(details)}), "
        f"palette '{current.name}' ({', '.join(current.names)})"
    )
    if report.skipped:
        line += f"; not scanned: {report.skipped}"
    print(line)
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from annotation.formats import FormatError
    from annotation.formats.project_io import import_into_project

    if args.fmt == "class-masks" and not args.class_name:
        return fail("class-masks needs --class NAME (the class the white pixels belong to)")
    if not Path(args.path).exists():
        return fail(f"{args.path} does not exist")
    store = _open_store(args.project, args.palette)
    try:
        with TerminalProgress(f"import {args.fmt}", "image") as progress:
            report = import_into_project(store, args.fmt, args.path, class_name=args.class_name, progress=progress)
    except FormatError as exc:
        return fail(str(exc))
    finally:
        store.close()
    _print_warnings(report.warnings)
    print(
        f"imported {report.instances_added} instances into {report.images_matched} "
        f"images of {store.root}"
        + (f"; {len(report.images_added)} images added" if report.images_added else "")
        + (f"; {report.duplicates_skipped} duplicates skipped" if report.duplicates_skipped else "")
        + (f"; classes added: {', '.join(report.classes_added)}" if report.classes_added else "")
    )
    if report.images_not_found:
        print(
            f"{len(report.images_not_found)} images named in {args.path} are not in the project folder "
            f"(first: {report.images_not_found[0]}); copy them under {store.root} and import again",
            file=sys.stderr,
        )
    return EXIT_OK


def _print_warnings(warnings: list[str], limit: int = 20) -> None:
    for w in warnings[:limit]:
        print(f"warning: {w}", file=sys.stderr)
    if len(warnings) > limit:
        print(f"... and {len(warnings) - limit} more warnings", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    from annotation.formats import FormatError
    from annotation.formats.project_io import export_project

    states = ("accepted", "proposed") if args.states == "all" else (args.states,)
    store = _open_store(args.project, create=False)
    try:
        with TerminalProgress(f"export {args.fmt}", "image") as progress:
            report = export_project(store, args.fmt, args.path, states=states, polygons=args.polygons, progress=progress)
    except (FormatError, OSError) as exc:
        return fail(f"export failed: {exc}")
    finally:
        store.close()
    _print_warnings(report.warnings)
    print(f"exported {report.instances} instances of {report.images} images to {args.path}")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    import json

    from annotation.stats import format_stats, project_stats

    store = _open_store(args.project, create=False)
    try:
        stats = project_stats(store)
    finally:
        store.close()
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return EXIT_OK
