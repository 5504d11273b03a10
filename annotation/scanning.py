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


def find_image_files(root: Path) -> list[str]:
    """Project-relative POSIX paths of the image files under ``root``, searched recursively.

    Folders whose name starts with ``.`` are skipped; folders are walked in sorted
    order and the files of each folder sorted, so the order is stable across runs.
    """
    root = Path(root)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(dirpath, name).relative_to(root).as_posix())
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
