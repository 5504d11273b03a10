"""Every key of the application, in one table, and the user's own choices (QSettings).

``KEYS`` maps an action's objectName to its group (how the help overlay and the keys
dialog sort it) and its default key sequences. ``keys_for(name)`` is what an action
gets: the user's keys when they changed them in Help › Keys…, else the defaults.
"""
from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtGui import QKeySequence

from desktop import settings

GROUPS = ("File", "Image", "Tools", "Edit", "Classes", "Review", "View", "Help")

KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "file.open": ("File", ("Ctrl+O",)),
    "file.close": ("File", ("Ctrl+W",)),
    "file.save": ("File", ("Ctrl+S",)),
    "file.quit": ("File", ("Ctrl+Q",)),
    "image.next": ("Image", ("D", "PgDown")),
    "image.previous": ("Image", ("Shift+D", "PgUp")),
    "image.next_pending": ("Image", ("Shift+N",)),
    "image.done": ("Image", ("Ctrl+Return",)),
    "image.find": ("Image", ("Ctrl+F",)),
    "tool.select": ("Tools", ("V",)),
    "tool.polygon": ("Tools", ("W",)),
    "tool.brush": ("Tools", ("B",)),
    "tool.eraser": ("Tools", ("E",)),
    "tool.smartbrush": ("Tools", ("Shift+B",)),
    "tool.reroute": ("Tools", ("T",)),
    "tool.prompt": ("Tools", ("P",)),
    "tool.weak_click": ("Tools", ("K",)),
    "brush.bigger": ("Tools", ("]",)),
    "brush.smaller": ("Tools", ("[",)),
    "edit.undo": ("Edit", ("Ctrl+Z",)),
    "edit.redo": ("Edit", ("Ctrl+Shift+Z", "Ctrl+Y")),
    "mask.dilate": ("Edit", ("+", "=")),
    "mask.erode": ("Edit", ("-",)),
    "mask.fill_holes": ("Edit", ("F",)),
    "mask.remove_small": ("Edit", ("Shift+K",)),
    "mask.split": ("Edit", ("S",)),
    "mask.merge": ("Edit", ("M",)),
    "mask.delete": ("Edit", ("Delete",)),
    "mask.accept": ("Edit", ("Y",)),
    "mask.hide": ("Edit", ("Ctrl+H",)),
    **{f"class.{i}": ("Classes", (str(i),)) for i in range(1, 10)},
    "review.accept": ("Review", ("A",)),
    "review.reject": ("Review", ("R",)),
    "review.reject_rest": ("Review", ("Shift+R",)),
    "review.next": ("Review", ("N", "Tab")),
    "review.by_clusters": ("Review", ("Ctrl+Shift+R",)),
    "action.propose_image": ("Review", ("Ctrl+P",)),
    "action.propose_project": ("Review", ("Ctrl+Shift+P",)),
    "action.cancel_job": ("Review", ()),
    "action.train": ("Review", ()),
    "view.fit": ("View", ("0", "Ctrl+0")),
    "view.zoom_in": ("View", ("Ctrl++",)),
    "view.zoom_out": ("View", ("Ctrl+-",)),
    "view.color_by_instance": ("View", ("C",)),
    "view.brighter": ("View", ("Alt+Up",)),
    "view.darker": ("View", ("Alt+Down",)),
    "view.more_contrast": ("View", ("Alt+Right",)),
    "view.less_contrast": ("View", ("Alt+Left",)),
    "view.gamma_up": ("View", ("Alt+Shift+Up",)),
    "view.gamma_down": ("View", ("Alt+Shift+Down",)),
    "view.reset_display": ("View", ("Alt+0",)),
    "help.show": ("Help", ("F1", "?")),
    "help.keys": ("Help", ()),
    "help.about": ("Help", ()),
}


def _key(name: str) -> str:
    return f"keys/{name}"


def keys_for(name: str) -> list[QKeySequence]:
    """The key sequences of an action: the user's when set (an empty list is a choice:
    no key), else the defaults of ``KEYS``."""
    st = settings.settings()
    if st.contains(_key(name)):
        value = st.value(_key(name), "")
        text = value if isinstance(value, str) else ", ".join(value or [])
        return [QKeySequence(k.strip()) for k in text.split(",") if k.strip()]
    return [QKeySequence(k) for k in KEYS.get(name, ("", ()))[1]]


def set_keys(name: str, keys: list[str]) -> None:
    """Store the user's keys for an action (``[]``: none); ``reset`` goes back to the default."""
    settings.settings().setValue(_key(name), ", ".join(keys))


def reset(name: str) -> None:
    st: QSettings = settings.settings()
    st.remove(_key(name))


def conflicts(assigned: dict[str, list[str]]) -> dict[str, list[str]]:
    """Key sequences given to more than one action: {sequence: [action names]}."""
    seen: dict[str, list[str]] = {}
    for name, keys in assigned.items():
        for k in keys:
            seen.setdefault(QKeySequence(k).toString(), []).append(name)
    return {k: names for k, names in seen.items() if k and len(names) > 1}


def group_of(name: str) -> str:
    return KEYS.get(name, ("Other", ()))[0]
