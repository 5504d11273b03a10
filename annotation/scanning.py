"""Finding a project's images: pure pieces that need no database connection, so the
desktop can run them in a worker while the store (the one writer) adds what they found.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

from annotation.cancel import Cancel, is_cancelled
from annotation.images import IMAGE_EXTENSIONS, ImageReadError, check_image


@dataclass(frozen=True)
class ScannedImage:
    """One image file's header as read by a scan; ``error`` says why it cannot be read."""

    path: str  # project-relative, POSIX
    height: int
    width: int
    error: Optional[str] = None


@dataclass
class ScanReport:
    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the project, no longer on disk
    errors: dict[str, str] = field(default_factory=dict)  # path -> reason
    skipped: Optional[str] = None  # why no image was added (a read-only project), or None


def _is_text(name: str) -> bool:
    """A file name the project can store: valid UTF-8 (os.walk hands undecodable bytes
    over as surrogates, which SQLite, JSON and every export would choke on)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def find_image_files(root: Path, unreadable_names: Optional[list[str]] = None) -> list[str]:
    """Project-relative POSIX paths of the image files under ``root``, searched recursively.

    Folders whose name starts with ``.`` are skipped; folders are walked in sorted
    order and the files of each folder sorted, so the order is stable across runs.
    Files and folders whose names are not valid UTF-8 are left out; their names (with
    the bad bytes escaped) go to ``unreadable_names`` when given, to be reported.
    """
    root = Path(root)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        bad = [d for d in dirnames if not _is_text(d)]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and _is_text(d))
        for name in sorted(filenames):
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            rel = Path(dirpath, name).relative_to(root).as_posix()
            if _is_text(rel):
                found.append(rel)
            else:
                bad.append(name)
        if unreadable_names is not None:
            for name in bad:
                shown = Path(dirpath, name).relative_to(root).as_posix()
                unreadable_names.append(shown.encode("utf-8", "backslashreplace").decode("utf-8"))
    return found


def read_image_headers(root: Path, paths: Iterable[str], cancel: Cancel = None) -> Iterator[ScannedImage]:
    """Read the size of each image (header plus a completeness check, no pixels).

    ``paths`` are project-relative; an unreadable file yields its reason in ``error``
    and the scan goes on. ``cancel`` (a ``threading.Event`` or a callable returning
    True) is checked before each file; when set, the iteration ends.
    """
    root = Path(root)
    for rel in paths:
        if is_cancelled(cancel):
            return
        try:
            h, w = check_image(root / rel)
            yield ScannedImage(rel, h, w)
        except (ImageReadError, OSError) as exc:
            yield ScannedImage(rel, 0, 0, str(exc))
