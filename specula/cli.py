"""The ``specula`` command.

``specula [PROJECT]`` opens the desktop (or, with no display, runs the headless
main job on the project); ``specula SUBCOMMAND ...`` runs a job without Qt.
Nothing heavy is imported before a subcommand is chosen: the label-only commands
(import, export, stats) never load Qt or torch.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from typing import Callable, Optional, Sequence

from appinfo import __version__

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_BAD_INPUT = 2
# output went into a pipe whose reader had gone (`specula stats P | head`): 128 + SIGPIPE,
# what a shell reports for any tool that the closed pipe stopped, so `set -o pipefail`
# scripts see that the output was cut short
EXIT_BROKEN_PIPE = 141

# characters that would break a message's one line or drive the terminal (names read
# from annotation files can hold any of them), and lone surrogates, which cannot be encoded
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class CommandError(Exception):
    """Bad input to a command: ``main`` prints the message as one line and exits 2."""


def printable(text: str) -> str:
    """``text`` as one printable line: control characters and lone surrogates escaped (``\\x1b``)."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                            else f"\\u{ord(m.group()):04x}", str(text))


def fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    """Print a one-line reason on stderr and return the exit code."""
    print(f"specula: {printable(message)}", file=sys.stderr)
    return code


# (module, function) pairs that add subcommands; each module keeps its own heavy
# imports inside its handlers
_PARSER_PLUGINS: list[tuple[str, str]] = [
    ("specula.project_cli", "add_parsers"),
    ("inference.cli", "add_parsers"),
    ("training.cli", "add_parsers"),
    ("specula.eval_cli", "add_parsers"),
    ("specula.bench_cli", "add_parsers"),
    ("specula.clicks_cli", "add_parsers"),
    ("specula.review_clusters_cli", "add_parsers"),
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
    try:  # the one place a command says why a GPU is not used (the others say only where they run)
        from inference.runtime import choose_providers

        lines.append(f"  {choose_providers('auto')}")
    except Exception as exc:  # noqa: BLE001 - no ONNX Runtime: say so, the version still prints
        lines.append(f"  inference: unavailable ({exc})")
    return "\n".join(lines)


def _has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    if os.environ.get("QT_QPA_PLATFORM", "") in ("offscreen", "minimal"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``specula`` command line; returns the exit code (see the README)."""
    try:
        with warnings.catch_warnings():  # restores the hook for callers in the same process
            warnings.showwarning = _show_warning
            code = _run(list(sys.argv[1:] if argv is None else argv))
        # flush here, inside the try: a reader that went away while the output sat in the
        # buffer must end as quietly as one that went away during a print (a windowed
        # bundle has no stdout at all)
        if sys.stdout is not None:
            sys.stdout.flush()
        return code
    except BrokenPipeError:
        # stdout is unusable; point it at devnull so the interpreter's own flush at exit
        # does not fail again with "Exception ignored ... BrokenPipeError"
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # a stdout without a descriptor (captured in tests)
            pass
        finally:
            os.close(devnull)
        return EXIT_BROKEN_PIPE


def _show_warning(message: Warning | str, category: type, filename: str, lineno: int, file: object = None,
                  line: Optional[str] = None) -> None:
    """A library's Python warning as one ``warning:`` line, like the command's own warnings
    (not the interpreter's two lines naming a file inside site-packages)."""
    print(f"warning: {printable(str(message))}", file=sys.stderr)


def _wants_help(argv: Sequence[str]) -> bool:
    """``-h``/``--help`` anywhere before a ``--`` (``specula FOLDER --help`` must not open FOLDER)."""
    for arg in argv:
        if arg == "--":
            return False
        if arg in ("-h", "--help"):
            return True
    return False


def _run(argv: list[str]) -> int:
    if argv and argv[0] == "--self-test":
        argv[0] = "self-test"
    if argv and argv[0] in ("--version", "-V"):
        print(version_text())
        return EXIT_OK
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices) if parser._subparsers else set()  # type: ignore[union-attr]
    if not (argv and argv[0] in commands) and _wants_help(argv):
        # no subcommand to explain: the help of the whole command, whatever else was given
        parser.print_help()
        return EXIT_OK
    if argv and argv[0] in commands:
        args = parser.parse_args(argv)
        args.argv = list(argv)  # what was asked, for a command that starts itself again (train --gpus)
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
