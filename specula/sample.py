"""The sample project: shipped read-only in assets, opened from a copy in the user's data folder."""
from __future__ import annotations

import shutil
from pathlib import Path

from annotation.resources import asset_path, user_data_dir


def sample_project_dir(name: str = "sample_project") -> Path:
    """A writable copy of ``assets/<name>`` (made on first use; the user's edits are kept)."""
    src = asset_path(name)
    dst = user_data_dir() / name
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.py", "specula.db*"))
    return dst
