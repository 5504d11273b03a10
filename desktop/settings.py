"""Persistent user settings (QSettings, INI format in the user scope).

Tests point the INI user path at a temporary folder with
``QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, tmp)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import QSettings

MAX_RECENT = 10


def settings() -> QSettings:
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "Specula", "Specula")


def recent_projects() -> list[str]:
    v = settings().value("recent_projects", [])
    if isinstance(v, str):
        v = [v]
    return [str(p) for p in (v or []) if p]


def add_recent_project(path: str | Path) -> None:
    p = str(Path(path).resolve())
    items = [p] + [q for q in recent_projects() if q != p]
    settings().setValue("recent_projects", items[:MAX_RECENT])


def _key(project: str | Path) -> str:
    return "last_image/" + str(Path(project).resolve()).replace("/", "|").replace("\\", "|")


def last_image(project: str | Path) -> Optional[str]:
    v = settings().value(_key(project))
    return None if v in (None, "") else str(v)


def set_last_image(project: str | Path, rel_path: str) -> None:
    settings().setValue(_key(project), rel_path)
