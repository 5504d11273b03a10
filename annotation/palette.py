"""Palettes: the classes of a project, their colours, keys, drawing order and rules.

A palette file is JSON or TOML::

    name = "mirror-glass"
    [[classes]]
    name = "mirror"; color = [0, 255, 0]; key = "1"
    [[rules]]
    kind = "inside"; inner = "glass-in-mirror"; outer = "mirror"

The shipped ones live in ``assets/palettes``.
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from annotation.attributes import AttributeDef, AttributeError_
from annotation.document import Instance
from annotation.resources import asset_path


class PaletteError(ValueError):
    """A palette file that cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class ClassDef:
    name: str
    color: tuple[int, int, int]
    key: Optional[str] = None
    order: int = 0  # drawing order: higher is drawn on top


@dataclass(frozen=True)
class InsideRule:
    """Every ``inner`` instance must lie inside the union of ``outer`` instances."""

    inner: str
    outer: str
    tolerance: float = 0.0  # fraction of the inner area allowed outside

    def describe(self) -> str:
        return f"{self.inner} lies inside a {self.outer}"


@dataclass(frozen=True)
class RuleViolation:
    rule: InsideRule
    instance_id: Optional[int]
    image_id: int
    outside_fraction: float

    def message(self) -> str:
        pct = 100.0 * self.outside_fraction
        return (
            f"instance {self.instance_id} ({self.rule.inner}) breaks the rule "
            f"'{self.rule.describe()}': {pct:.1f}% of it lies outside any {self.rule.outer}"
        )


MAX_CLASS_NAME = 100


def class_name_problem(name: object) -> Optional[str]:
    """Why ``name`` cannot be a class name (None when it can): class names travel into
    XML, JSON, file names and menus, so they are short printable text."""
    if not isinstance(name, str):
        return f"a class name must be text, not {type(name).__name__}"
    if not name.strip():
        return "a class name cannot be empty"
    if len(name) > MAX_CLASS_NAME:
        return f"class name of {len(name)} characters (at most {MAX_CLASS_NAME})"
    for ch in name:
        if ch.isprintable() or ch == " ":
            continue
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return f"class name {name.encode('utf-8', 'backslashreplace').decode('ascii', 'replace')!r} holds a lone surrogate"
        return f"class name {name!r} holds the control character U+{ord(ch):04X}"
    return None


@dataclass(frozen=True)
class Palette:
    name: str
    classes: tuple[ClassDef, ...]
    rules: tuple[InsideRule, ...] = ()
    # CVAT-style "remove underlying pixels": new masks do not take pixels from
    # accepted masks of other classes
    exclusive: bool = False
    attributes: tuple[AttributeDef, ...] = ()  # what each instance may carry besides its class
    tags: tuple[str, ...] = ()  # image-level labels offered (others may be typed)

    def __post_init__(self) -> None:
        names = [c.name for c in self.classes]
        for n in names:
            problem = class_name_problem(n)
            if problem:
                raise PaletteError(f"palette '{self.name}': {problem}")
        if len(set(names)) != len(names):
            raise PaletteError(f"palette '{self.name}' names a class twice: {names}")
        for r in self.rules:
            for n in (r.inner, r.outer):
                if n not in names:
                    raise PaletteError(f"palette '{self.name}': rule names unknown class '{n}'")
        seen = set()
        for a in self.attributes:
            if a.name in seen:
                raise PaletteError(f"palette '{self.name}' defines the attribute '{a.name}' twice")
            seen.add(a.name)
            for n in a.classes:
                if n not in names:
                    raise PaletteError(f"palette '{self.name}': attribute '{a.name}' names unknown class '{n}'")

    def attributes_of(self, class_name: str) -> list[AttributeDef]:
        """The attributes an instance of ``class_name`` can carry, in the palette's order."""
        return [a for a in self.attributes if a.applies_to(class_name)]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def get(self, name: str) -> ClassDef:
        for c in self.classes:
            if c.name == name:
                return c
        raise KeyError(f"class '{name}' is not in palette '{self.name}' ({', '.join(self.names)})")

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.classes)

    def color_of(self, name: str) -> tuple[int, int, int]:
        return self.get(name).color

    def key_of(self, name: str) -> Optional[str]:
        """The digit key of a class: its own ``key``, else its position (1-9) when that
        digit is not another class's key."""
        c = self.get(name)
        if c.key:
            return c.key
        own = {k.key for k in self.classes if k.key}
        pos = str(self.names.index(name) + 1)
        return pos if len(pos) == 1 and pos != "0" and pos not in own else None

    def class_for_key(self, key: str) -> Optional[str]:
        """The class a digit key chooses (see ``key_of``)."""
        return next((n for n in self.names if self.key_of(n) == key), None)

    def class_for_color(self, rgb: Sequence[int]) -> Optional[str]:
        rgb = tuple(int(v) for v in rgb[:3])
        for c in self.classes:
            if c.color == rgb:
                return c.name
        return None

    def parent_class(self, name: str) -> Optional[str]:
        """The class an instance of ``name`` must lie inside, if a rule says so."""
        for r in self.rules:
            if r.inner == name:
                return r.outer
        return None

    def with_class(self, name: str, color: Optional[tuple[int, int, int]] = None) -> "Palette":
        """This palette plus one class (used when an import brings a class it lacks): with
        the colour of the qualitative palette farthest from the classes already there (or
        the one given), and the next free digit key."""
        if name in self:
            return self
        color = color or distinct_color([c.color for c in self.classes])
        used = {c.key for c in self.classes}
        key = next((k for k in "123456789" if k not in used), None)
        cls = ClassDef(name, color, key, len(self.classes))
        return Palette(self.name, self.classes + (cls,), self.rules, self.exclusive, self.attributes, self.tags)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "exclusive": self.exclusive,
            "classes": [
                {"name": c.name, "color": list(c.color), "key": c.key, "order": c.order}
                for c in self.classes
            ],
            "rules": [
                {"kind": "inside", "inner": r.inner, "outer": r.outer, "tolerance": r.tolerance}
                for r in self.rules
            ],
            "attributes": [a.to_dict() for a in self.attributes],
            "tags": list(self.tags),
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "<palette>") -> "Palette":
        try:
            classes = []
            for i, c in enumerate(data["classes"]):
                color = tuple(int(v) for v in c["color"])
                if len(color) != 3 or not all(0 <= v <= 255 for v in color):
                    raise PaletteError(f"{source}: class '{c.get('name')}' needs an [r, g, b] colour 0-255")
                key = c.get("key")
                classes.append(ClassDef(str(c["name"]), color, None if key is None else str(key), int(c.get("order", i))))
            rules = []
            for r in data.get("rules", []):
                if r.get("kind", "inside") != "inside":
                    raise PaletteError(f"{source}: unknown rule kind '{r.get('kind')}' (known: inside)")
                rules.append(InsideRule(str(r["inner"]), str(r["outer"]), float(r.get("tolerance", 0.0))))
            try:
                attributes = tuple(AttributeDef.from_dict(a) for a in data.get("attributes", []))
            except AttributeError_ as exc:
                raise PaletteError(f"{source}: {exc}") from None
            tags = tuple(str(t) for t in data.get("tags", []))
            return cls(str(data.get("name", Path(source).stem)), tuple(classes), tuple(rules),
                       bool(data.get("exclusive", False)), attributes, tags)
        except PaletteError as exc:
            # checks made by Palette itself (duplicate names, rules naming unknown
            # classes) do not know the file: name it here
            if str(exc).startswith(source):
                raise
            raise PaletteError(f"{source}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise PaletteError(f"{source}: not a valid palette ({exc!r}); see assets/palettes for examples") from None


# Kelly's 22 colours of maximum contrast (1965), without white and black, which read as
# "nothing" over photos: a qualitative palette made to tell categories apart
QUALITATIVE = (
    (243, 195, 0), (135, 86, 146), (243, 132, 0), (161, 202, 241), (190, 0, 50), (194, 178, 128),
    (132, 132, 130), (0, 136, 86), (230, 143, 172), (0, 103, 165), (249, 150, 121), (96, 78, 151),
    (246, 166, 0), (179, 68, 108), (220, 211, 0), (136, 45, 23), (141, 182, 0), (101, 69, 34),
    (226, 88, 34),
)


def _lab(rgb: Sequence[int]) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.array([[rgb]], np.uint8), cv2.COLOR_RGB2LAB)[0, 0].astype(float)


def distinct_color(taken: Sequence[tuple[int, int, int]]) -> tuple[int, int, int]:
    """The colour of ``QUALITATIVE`` farthest (in CIELAB) from every colour in ``taken``."""
    if not taken:
        return QUALITATIVE[0]
    taken_lab = [_lab(c) for c in taken]
    return max(QUALITATIVE, key=lambda c: min(float(np.linalg.norm(_lab(c) - t)) for t in taken_lab))


def load_palette(path: str | Path) -> Palette:
    """Load a palette from a JSON or TOML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PaletteError(f"cannot read palette file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PaletteError(f"palette file {path} is not UTF-8 text: {exc}") from None
    is_toml = path.suffix.lower() == ".toml"
    try:
        data = tomllib.loads(text) if is_toml else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PaletteError(f"palette file {path} is not valid {'TOML' if is_toml else 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise PaletteError(f"palette file {path} must hold a table with 'classes', not a {type(data).__name__}")
    return Palette.from_dict(data, str(path))


SHIPPED_PALETTES = ("mirror-glass", "inspection")
DEFAULT_PALETTE = "mirror-glass"


def builtin_palette(name: str = DEFAULT_PALETTE) -> Palette:
    """One of the palettes shipped in ``assets/palettes`` by name."""
    if name not in SHIPPED_PALETTES:
        raise PaletteError(f"no shipped palette '{name}' (shipped: {', '.join(SHIPPED_PALETTES)})")
    return load_palette(asset_path("palettes", f"{name}.toml"))


def resolve_palette(name_or_path: str) -> Palette:
    """A shipped palette's name, or the path of a palette file."""
    if name_or_path in SHIPPED_PALETTES:
        return builtin_palette(name_or_path)
    return load_palette(name_or_path)


def rule_violations(
    palette: Palette, instances: Iterable[Instance], *, include_proposed: bool = False
) -> list[RuleViolation]:
    """List instances that break the palette's rules (e.g. glass-in-mirror outside a mirror).

    Instances are grouped by image; rejected ones are ignored; proposals only when asked.
    Each inner instance is compared with the outer instances whose boxes meet its own
    (``annotation.rules.violations``), never with a full-image union.
    """
    # imported here: annotation.rules builds on this module's dataclasses
    from annotation.rules import violations

    return violations(palette, instances, include_proposed=include_proposed)
