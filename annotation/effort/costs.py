"""The cost table: seconds per annotation action, read from ``assets/effort_costs.toml``.

Every number in that file carries a comment saying where it comes from and whether it
is an assumption. ``Action`` records one simulated action with its cost, so a report
can be audited action by action.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

try:  # Python 3.11+
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as _toml  # type: ignore[no-redef]

from annotation.resources import asset_path

COSTS_FILE = "effort_costs.toml"


class CostTableError(ValueError):
    """A cost table that cannot be read; the message names the file and the key."""


@dataclass(frozen=True)
class CostTable:
    """Seconds per action (see ``assets/effort_costs.toml`` for the sources)."""

    decide: float = 2.0
    accept: float = 0.5
    reject: float = 0.5
    vertex: float = 1.5
    polygon_overhead: float = 1.0
    stroke: float = 1.5
    stroke_per_100px: float = 1.0
    merge: float = 1.0
    set_class: float = 0.5
    undo: float = 0.5
    glance: float = 0.5
    click: float = 2.0
    # one yes/no question on a shown mask (004's review): Papadopoulos et al. 2016, 1.6 s
    verify: float = 1.6
    source: str = "<defaults>"
    reference: dict = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, path: Optional[str | Path] = None) -> "CostTable":
        """Read a TOML table (default: the shipped ``assets/effort_costs.toml``).

        Raises ``CostTableError`` for a missing file, bad TOML, an unknown key or a
        negative or non-numeric cost.
        """
        p = Path(path) if path is not None else asset_path(COSTS_FILE)
        try:
            data = _toml.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CostTableError(f"{p}: cost table not found") from None
        except (_toml.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CostTableError(f"{p}: not valid TOML ({exc})") from None
        costs = data.get("costs", {})
        known = {f.name for f in fields(cls)} - {"source", "reference"}
        values: dict[str, float] = {}
        for key, value in costs.items():
            if key not in known:
                raise CostTableError(f"{p}: unknown cost '{key}' (known: {', '.join(sorted(known))})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise CostTableError(f"{p}: cost '{key}' must be a number of seconds >= 0, got {value!r}")
            values[key] = float(value)
        return cls(**values, source=str(p), reference=dict(data.get("reference", {})))

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("source", "reference")}


@dataclass(frozen=True)
class Action:
    """One simulated action: its kind, its cost in seconds and what it did.

    Kinds: ``decide``, ``accept``, ``reject``, ``polygon`` (``vertices`` placed),
    ``stroke`` / ``erase`` (``length`` px of path), ``reroute`` (``vertices`` traced),
    ``merge``, ``set_class``, ``undo``, ``glance`` (one remaining proposal checked before
    "Reject the rest"), ``reject_rest`` (the Shift+R key press), ``click`` (one click of
    the prompt tool, ``annotation.effort.clicks``), ``keep`` (Enter after clicks, charged
    as ``accept``). ``verify`` is not an action of the annotator: it prices one yes/no
    question of the clustered review (``annotation.effort.yes_no``).
    """

    kind: str
    seconds: float
    vertices: int = 0
    length: float = 0.0


def polygon_cost(table: CostTable, vertices: int) -> float:
    return table.polygon_overhead + table.vertex * vertices


def stroke_cost(table: CostTable, length: float) -> float:
    return table.stroke + table.stroke_per_100px * length / 100.0
