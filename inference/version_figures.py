"""The registry's side of the per-version outcomes (``annotation.versions``): what each
version's trainer measured on validation, and which version is in use."""
from __future__ import annotations

import math
from typing import Any, Optional

from annotation.document import MANUAL_ORIGIN
from inference.registry import ModelError, Registry


def validation_iou(metrics: Any) -> Optional[float]:
    """A manifest's per-image mean validation IoU, where its trainer recorded one (the
    protocol figure of a semantic model, else the plain validation figure); None otherwise
    or when it is not a finite number in [0, 1] (a manifest is a file from outside)."""
    if not isinstance(metrics, dict):
        return None
    for section, key in (("validation_protocol", "image_mean_iou"), ("validation", "mean_iou")):
        block = metrics.get(section)
        value = block.get(key) if isinstance(block, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
                and 0.0 <= value <= 1.0:
            return float(value)
    return None


def fill_from_registry(rows: list, registry: Registry) -> list:
    """Give each model version's row (``VersionOutcome``) its validation IoU and whether it
    is the version in use; a version no longer in the registry keeps None."""
    active: dict[str, Optional[str]] = {}
    for row in rows:
        if row.origin == MANUAL_ORIGIN or "@" not in row.origin:
            continue
        name, version = row.origin.rsplit("@", 1)
        try:
            info = registry.get(name, version)
        except (ModelError, OSError, ValueError):
            continue
        row.validation_iou = validation_iou(dict(info.manifest.metrics))
        if name not in active:
            try:
                active[name] = registry.active(name).version
            except (ModelError, OSError, ValueError):
                active[name] = None
        row.in_use = active[name] == version
    return rows
