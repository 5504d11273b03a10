"""What every pipeline returns: a mask with its class, score and the model version that made it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from annotation.mask import Mask


@dataclass
class Proposal:
    """One proposed instance.

    ``mask`` is a cropped ``Mask`` whose ``image_size`` is the ``(height, width)`` of the
    image the proposal was made for. ``score`` is in [0, 1]; its meaning depends on the
    pipeline (mean class probability over the component, detection score, class
    probability for CAM proposals). ``model``/``version`` name the registry entry.
    """

    mask: Mask
    class_name: str
    score: float
    model: str
    version: str
    # what the clustered review groups proposals by (``inference.embedding``); None when
    # the pipeline made none
    embedding: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @property
    def origin(self) -> str:
        """``"name@version"``, the ``Instance.origin`` of an accepted proposal."""
        return f"{self.model}@{self.version}"

    def copy(self) -> "Proposal":
        return Proposal(self.mask.copy(), self.class_name, self.score, self.model, self.version, self.embedding)
