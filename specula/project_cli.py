"""``specula init``, ``specula import``, ``specula export`` and ``specula stats``: projects and
labels in and out, no Qt, no torch."""
from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

from specula.cli import EXIT_BAD_INPUT, EXIT_FAIL, EXIT_OK, CommandError, fail, printable
from specula.progress import TerminalProgress

# "specula-proposals": a project's proposals as COCO RLE with their state, score and origin,
# read back as proposals (shards made on a cluster's copy of a project come home for review)
PROPOSALS = "specula-proposals"
IMPORT_FORMATS = ("coco", "labelme", "cvat", "color-masks", "instance-masks", "class-masks", PROPOSALS)
EXPORT_FORMATS = ("coco", "labelme", "cvat", "color-masks", PROPOSALS)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="make a folder of images a Specula project (database, palette, scan)")
    p.add_argument("folder", help="the folder of images (searched recursively)")
    p.add_argument("--palette", help="a shipped palette (mirror-glass, inspection) or a palette file; "
                                     "default mirror-glass for a new project")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("import", help="import labels into a project (proposals a Specula export marked as such "
                                      "stay proposals; the rest become accepted)")
    p.add_argument("project")
    p.add_argument("--from", dest="fmt", required=True, choices=IMPORT_FORMATS)
    p.add_argument("path", help="annotation file or folder")
    p.add_argument("--palette", help="palette for the project: a shipped name (mirror-glass, inspection) or a file")
    p.add_argument("--class", dest="class_name", help="class of binary class masks (class-masks)")
    p.add_argument("--as", dest="as_state", choices=("kept", "accepted"), default="kept",
                   help="kept (default): instances keep the state a Specula export wrote (proposals made on "
                        "another machine come back for review); accepted: everything becomes ground truth")
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
    p.add_argument("--versions", action="store_true",
                   help="per model version: proposals accepted as proposed, edited, rejected, waiting, "
                        "and the version's validation IoU")
    p.set_defaults(handler=cmd_stats)


def _open_store(project: str, create: bool = True, writer: str | None = None) -> Any:
    """The project's store, opened without scanning (the callers scan where it suits them)."""
    from annotation.store import ProjectStore, StoreError

    try:
        return ProjectStore.open(project, create=create, scan=False, writer=writer)
    except StoreError as exc:
        raise CommandError(str(exc)) from None


def _scan_for_reading(store: Any) -> None:
    """Add images put into the folder since the last scan, for a command that only reads.

    Scanning writes; when another program holds the project's write lock, the command
    still answers from the project as it is (readers never wait in WAL mode) and says so.
    """
    from annotation.store import StoreError

    if store.read_only is not None:
        return
    try:
        store.scan_images()
    except StoreError as exc:
        print(f"warning: images added to the folder since the last scan are left out: {printable(str(exc))}",
              file=sys.stderr)


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
        store = ProjectStore.open(args.folder, palette=None if existed else palette, scan=False,
                                  writer="specula init")
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
    """Import labels; exit 0 when all of the file landed, 1 when part did not (images not
    found or skipped, damaged labels), 2 when nothing did.

    A failed import changes nothing: the scan, a new ``--palette`` and the labels are one
    transaction, and a folder that was not a project before is left without a database.
    """
    from annotation.store import DB_NAME

    if args.fmt == "class-masks" and not args.class_name:
        return fail("class-masks needs --class NAME (the class the white pixels belong to)")
    if not Path(args.path).exists():
        return fail(f"{args.path} does not exist")
    database = Path(args.project).expanduser() / DB_NAME
    was_project = database.exists()
    code = EXIT_BAD_INPUT
    try:
        code = _import(args)
        return code
    finally:
        # exit 2, an exception or an interrupt: the project this import created goes again
        if code == EXIT_BAD_INPUT and not was_project:
            _remove_database(database)


def _remove_database(database: Path) -> None:
    """Delete a database this command created, with its WAL and shared-memory files."""
    for path in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _import(args: argparse.Namespace) -> int:
    from annotation.formats import FormatError
    from annotation.formats.project_io import import_into_project
    from annotation.palette import PaletteError, resolve_palette
    from annotation.store import DB_NAME, StoreError

    try:
        palette = resolve_palette(args.palette) if args.palette else None
    except PaletteError as exc:
        return fail(str(exc))
    store = _open_store(args.project, writer="specula import")
    try:
        if store.read_only is not None:
            return fail(f"cannot import: {store.read_only}")
        with store.transaction():
            store.scan_images()
            if palette is not None and palette != store.palette:
                store.set_palette(palette)
            with TerminalProgress(f"import {args.fmt}", "image") as progress:
                fmt = "coco" if args.fmt == PROPOSALS else args.fmt
                report = import_into_project(store, fmt, args.path, class_name=args.class_name,
                                             progress=progress, keep_states=args.as_state == "kept")
    except FormatError as exc:
        return fail(str(exc))
    except StoreError as exc:
        return fail(_store_failure(store.root, str(exc)))
    except sqlite3.Error as exc:  # SQLite's own error where the store did not word it
        return fail(_store_failure(store.root, f"could not write to {store.root / DB_NAME} ({exc})"))
    finally:
        store.close()
    _print_warnings(report.warnings)
    print(printable(
        f"imported {report.instances_added} instances into {report.images_matched} "
        f"images of {store.root}"
        + (f"; {len(report.images_added)} images added" if report.images_added else "")
        + (f"; {report.duplicates_skipped} duplicates skipped" if report.duplicates_skipped else "")
        + (f"; classes added: {', '.join(report.classes_added)}" if report.classes_added else "")
    ))
    if report.finished_with_problems:
        # the README's "finished with problems": part of the file did not land
        return fail(_import_problems(report, args.path, store.root), EXIT_FAIL)
    return EXIT_OK


def _import_problems(report: Any, path: str, root: Path) -> str:
    """One line saying what of the file was not imported, and what to do about it."""
    parts = []
    if report.images_not_found:
        parts.append(f"{len(report.images_not_found)} images named in {path} are not in the project folder "
                     f"(first: {report.images_not_found[0]}): copy them under {root} and import again")
    if report.images_skipped:
        parts.append(f"{len(report.images_skipped)} images skipped (first: {report.images_skipped[0]})")
    if report.labels_skipped:
        parts.append(f"{report.labels_skipped} damaged labels skipped")
    return "not everything was imported: " + "; ".join(parts) + (
        " (the warnings above say why)" if report.images_skipped or report.labels_skipped else "")


# below this many free bytes an I/O error while writing is taken for a full disk: SQLite
# reports a full disk as "disk I/O error" when the WAL or its index cannot grow
_NEARLY_FULL = 1 << 20


def _store_failure(root: Path, text: str) -> str:
    """The one line for a store that could not write; a full disk said as such."""
    if "full" not in text.lower():
        try:
            free = shutil.disk_usage(root).free
        except OSError:
            free = None
        if free is not None and free < _NEARLY_FULL:
            return (f"could not import into {root}: the disk is full ({free // 1024} KiB free); free some space "
                    f"and import again (the project is unchanged)")
    return text


def _print_warnings(warnings: list[str], limit: int = 20) -> None:
    for w in warnings[:limit]:
        print(f"warning: {printable(w)}", file=sys.stderr)
    if len(warnings) > limit:
        print(f"... and {len(warnings) - limit} more warnings", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    from annotation.formats import FormatError
    from annotation.formats.project_io import export_project

    states = ("accepted", "proposed") if args.states == "all" else (args.states,)
    fmt, polygons = args.fmt, args.polygons
    if fmt == PROPOSALS:  # the proposals only, exact (RLE), with their provenance
        fmt, states, polygons = "coco", ("proposed",), False
    store = _open_store(args.project, create=False)
    try:
        _scan_for_reading(store)
        with TerminalProgress(f"export {args.fmt}", "image") as progress:
            report = export_project(store, fmt, args.path, states=states, polygons=polygons, progress=progress)
    except (FormatError, OSError) as exc:
        return fail(f"export failed: {exc}")
    finally:
        store.close()
    _print_warnings(report.warnings)
    print(printable(f"exported {report.instances} instances of {report.images} images to {args.path}"))
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    import json

    from annotation.stats import format_stats, project_stats

    store = _open_store(args.project, create=False)
    try:
        if args.versions:
            return _print_versions(store, args.json)
        _scan_for_reading(store)
        stats = project_stats(store)
    finally:
        store.close()
    print(json.dumps(stats, indent=2) if args.json else _printable_lines(format_stats(stats)))
    return EXIT_OK


def _print_versions(store: Any, as_json: bool) -> int:
    """``specula stats --versions``: what became of each model version's proposals."""
    import json
    from dataclasses import asdict

    from annotation.versions import format_outcomes, version_outcomes
    from inference.registry import Registry
    from inference.version_figures import fill_from_registry

    rows = fill_from_registry(version_outcomes(store), Registry.default())
    if as_json:
        print(json.dumps([{**asdict(r), "accepted": r.accepted, "acceptance": r.acceptance} for r in rows], indent=2))
    elif not rows:
        print("no instances yet: propose with `specula propose`, or draw in the editor")
    else:
        print(_printable_lines(format_outcomes(rows)))
    return EXIT_OK


def _printable_lines(text: str) -> str:
    """Each line of ``text`` made printable (class names in a table come from imported files)."""
    return "\n".join(printable(line) for line in text.split("\n"))
