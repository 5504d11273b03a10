"""Attributes of instances (severity, crack width, structural element, "uncertain", a
note), as a palette defines them: CVAT's attributes and X-AnyLabeling's flags.

A palette file lists them::

    [[attributes]]
    name = "severity"; type = "choice"; choices = ["low", "medium", "high"]; classes = ["crack", "spalling"]
    [[attributes]]
    name = "crack width (mm)"; type = "number"; min = 0; max = 50; classes = ["crack"]
    [[attributes]]
    name = "uncertain"; type = "bool"

``classes`` limits an attribute to some classes (all when absent). Values are stored per
instance as a JSON object; values that formats bring but the palette does not define
(CVAT ``occluded``, a labelme flag) are kept as they come.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

TYPES = ("bool", "number", "text", "choice")
MAX_TEXT = 10_000


class AttributeError_(ValueError):
    """A value or a definition that does not fit; the message says which and why."""


@dataclass(frozen=True)
class AttributeDef:
    name: str
    type: str = "text"
    choices: tuple[str, ...] = ()
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    classes: tuple[str, ...] = ()  # empty: every class
    default: Any = None

    def applies_to(self, class_name: str) -> bool:
        return not self.classes or class_name in self.classes

    def coerce(self, value: Any) -> Any:
        """``value`` as this attribute stores it; ``AttributeError_`` when it does not fit."""
        if value is None:
            return None
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.strip().lower() in ("true", "1", "yes")
            raise AttributeError_(f"{self.name}: {value!r} is not true or false")
        if self.type == "number":
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise AttributeError_(f"{self.name}: {value!r} is not a number") from None
            if not math.isfinite(v):
                raise AttributeError_(f"{self.name}: {value!r} is not a finite number")
            if (self.minimum is not None and v < self.minimum) or (self.maximum is not None and v > self.maximum):
                raise AttributeError_(f"{self.name}: {v:g} is outside {self.minimum}..{self.maximum}")
            return int(v) if v.is_integer() and not isinstance(value, float) else v
        text = str(value)
        if len(text) > MAX_TEXT or any(not (ch.isprintable() or ch in " \n") for ch in text):
            raise AttributeError_(f"{self.name}: the text is too long or holds control characters")
        if self.type == "choice" and text not in self.choices:
            raise AttributeError_(f"{self.name}: {text!r} is not one of {', '.join(self.choices)}")
        return text

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.choices:
            d["choices"] = list(self.choices)
        if self.minimum is not None:
            d["min"] = self.minimum
        if self.maximum is not None:
            d["max"] = self.maximum
        if self.classes:
            d["classes"] = list(self.classes)
        if self.default is not None:
            d["default"] = self.default
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "AttributeDef":
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not d["name"].strip():
            raise AttributeError_("an attribute needs a name")
        kind = d.get("type", "text")
        if kind not in TYPES:
            raise AttributeError_(f"attribute '{d['name']}': unknown type {kind!r} (known: {', '.join(TYPES)})")
        choices = tuple(str(c) for c in d.get("choices", ()))
        if kind == "choice" and not choices:
            raise AttributeError_(f"attribute '{d['name']}': a choice needs its choices")

        def num(key: str) -> Optional[float]:
            v = d.get(key)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
                raise AttributeError_(f"attribute '{d['name']}': {key} must be a number")
            return float(v)

        a = cls(d["name"], kind, choices, num("min"), num("max"), tuple(str(c) for c in d.get("classes", ())))
        default = d.get("default")
        return a if default is None else cls(a.name, a.type, a.choices, a.minimum, a.maximum, a.classes,
                                             a.coerce(default))
