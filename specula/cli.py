"""The ``specula`` command.

``specula [PROJECT]`` opens the desktop (or, with no display, runs the headless
main job on the project); ``specula SUBCOMMAND ...`` runs a job without Qt.
Nothing heavy is imported before a subcommand is chosen: the label-only commands
(import, export, stats) never load Qt or torch.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Optional, Sequence

from appinfo import __version__

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_BAD_INPUT = 2


class CommandError(Exception):
    """Bad input to a command: ``main`` prints the message as one line and exits 2."""


def fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    """Print a one-line reason on stderr and return the exit code."""
    print(f"specula: {message}", file=sys.stderr)
    return code


# (module, function) pairs that add subcommands; each module keeps its own heavy
# imports inside its handlers
_PARSER_PLUGINS: list[tuple[str, str]] = [
    ("specula.project_cli", "add_parsers"),
    ("inference.cli", "add_parsers"),
    ("training.cli", "add_parsers"),
    ("specula.eval_cli", "add_parsers"),
    ("specula.bench_cli", "add_parsers"),
    ("specula.selftest", "add_parsers"),
]


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="specula",
        description="Model-assisted segmentation labelling. `specula [PROJECT]` opens the editor.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and the models' versions")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module, func in _PARSER_PLUGINS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # a part of the application that is not installed (never ours half-written)
            if exc.name and exc.name.split(".")[0] in module.split(".")[0]:
                continue
            raise
        getattr(mod, func)(sub)
    return parser


def version_text() -> str:
    lines = [f"specula {__version__}"]
    try:
        from inference.registry import Registry

        for info in Registry.default().list():
            lines.append(f"  model {info.name} {info.version} ({info.task})")
    except Exception as exc:  # the version must print even with a broken registry
        lines.append(f"  models: unavailable ({exc})")
    return "\n".join(lines)


def _has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    if os.environ.get("QT_QPA_PLATFORM", "") in ("offscreen", "minimal"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--self-test":
        argv[0] = "self-test"
    if argv and argv[0] in ("--version", "-V"):
        print(version_text())
        return EXIT_OK
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices) if parser._subparsers else set()  # type: ignore[union-attr]
    if argv and argv[0] in commands or argv[:1] in (["-h"], ["--help"]):
        args = parser.parse_args(argv)
        # subcommand modules set either `handler` or `func` on their parsers
        handler: Optional[Callable[[argparse.Namespace], int]] = getattr(args, "handler", None) or getattr(
            args, "func", None
        )
        if handler is None:
            parser.print_help()
            return EXIT_BAD_INPUT
        try:
            return int(handler(args) or 0)
        except CommandError as exc:
            return fail(str(exc))
        except KeyboardInterrupt:
            return fail("interrupted", 130)
    # no subcommand: open the editor on an optional project folder
    opener = argparse.ArgumentParser(prog="specula", add_help=False)
    opener.add_argument("project", nargs="?")
    opener.add_argument("--headless", action="store_true")
    opener.add_argument("--sample", action="store_true", help="open the sample project")
    opts, rest = opener.parse_known_args(argv)
    if opts.sample:
        from specula.sample import sample_project_dir

        opts.project = str(sample_project_dir())
    if opts.project and not os.path.isdir(opts.project):
        return fail(f"'{opts.project}' is neither a command nor a project folder (try `specula --help`)")
    if opts.headless or not _has_display():
        if not opts.project:
            return fail("no display: give a project folder to run the headless job on, or a command (specula --help)")
        from specula.headless import run_headless

        return run_headless(opts.project)
    from desktop.app import run

    return run(opts.project, rest)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
