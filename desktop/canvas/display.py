"""Brightness, contrast and gamma for viewing: a 256-entry table per setting.

A setting changes only what the canvas shows. The pixels that models, tools and exports
read (``ProjectContext.current_rgb``, the image file) are never touched, so the table is
applied while painting (``TiledImageItem.set_lut``) and nothing here imports Qt: the
arithmetic is tested on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

BRIGHTNESS_STEP = 0.05  # of full scale per key press
CONTRAST_STEP = 1.15  # factor per key press
GAMMA_STEP = 1.15  # factor per key press
BRIGHTNESS_RANGE = (-0.75, 0.75)
FACTOR_RANGE = (0.2, 5.0)  # contrast and gamma: past these the photo is black, white or flat


def _snap(value: float, neutral: float) -> float:
    """Round away the drift of repeated steps, so that up-then-down is neutral again
    (and the table is dropped) instead of 0.99999."""
    value = round(value, 4)
    return neutral if abs(value - neutral) < 1e-3 else value


@dataclass(frozen=True)
class DisplayAdjust:
    """How the photo is shown. ``brightness`` is added to the output in fractions of full
    scale (0 neutral), ``contrast`` is the slope about mid-grey (1 neutral), ``gamma`` > 1
    lifts the shadows (output = input ** (1 / gamma); 1 neutral)."""

    brightness: float = 0.0
    contrast: float = 1.0
    gamma: float = 1.0

    @property
    def is_neutral(self) -> bool:
        return self.brightness == 0.0 and self.contrast == 1.0 and self.gamma == 1.0

    def lut(self) -> Optional[np.ndarray]:
        """(256,) uint8: shown value of each stored value, the same for R, G and B; None
        when neutral (the painter then draws the stored pixels as they are)."""
        if self.is_neutral:
            return None
        x = np.arange(256, dtype=np.float64) / 255.0
        y = x ** (1.0 / self.gamma)
        y = (y - 0.5) * self.contrast + 0.5 + self.brightness
        return np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8)

    def stepped(self, what: str, steps: int) -> DisplayAdjust:
        """``steps`` key presses of ``what`` ("brightness", "contrast" or "gamma"), clamped."""
        if what == "brightness":
            lo, hi = BRIGHTNESS_RANGE
            return replace(self, brightness=_snap(min(hi, max(lo, self.brightness + steps * BRIGHTNESS_STEP)), 0.0))
        if what not in ("contrast", "gamma"):
            raise ValueError(f"unknown display setting {what!r}")
        step = CONTRAST_STEP if what == "contrast" else GAMMA_STEP
        lo, hi = FACTOR_RANGE
        value = min(hi, max(lo, getattr(self, what) * step ** steps))
        return replace(self, **{what: _snap(value, 1.0)})

    def describe(self) -> str:
        """One line for the status bar."""
        if self.is_neutral:
            return "Display as stored (brightness, contrast and gamma neutral)"
        return (f"Display (view only, this image): brightness {self.brightness * 100:+.0f} %, "
                f"contrast {self.contrast * 100:.0f} %, gamma {self.gamma:.2f}")


NEUTRAL = DisplayAdjust()
