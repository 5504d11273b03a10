"""Plain data of a project: instances, images and their states (no Qt, no I/O)."""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from annotation.mask import Mask


class InstanceState(str, enum.Enum):
    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class ImageStatus(str, enum.Enum):
    NEW = "new"
    IN_PROGRESS = "in_progress"
    DONE = "done"


MANUAL_ORIGIN = "manual"


@dataclass
class Instance:
    """One labelled region of one image.

    ``origin`` is ``"manual"`` for a mask a person drew, otherwise ``"name@version"``
    of the model that proposed it (kept after acceptance, so provenance survives
    export). ``id`` is assigned by the store (``None`` until stored).
    """

    image_id: int
    class_name: str
    mask: Mask
    state: InstanceState = InstanceState.ACCEPTED
    origin: str = MANUAL_ORIGIN
    score: Optional[float] = None
    id: Optional[int] = None
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)
    hidden: bool = False
    iscrowd: bool = False  # COCO's crowd region (one mask over many objects)
    attributes: dict = field(default_factory=dict)  # name -> value (str, number or bool)
    # a proposal's embedding (float32 vector) as the model made it, stored beside the
    # instance; None when not known or not loaded (``ProjectStore.embeddings`` reads them)
    embedding: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @property
    def is_proposal(self) -> bool:
        return self.state is InstanceState.PROPOSED

    @property
    def model_name(self) -> Optional[str]:
        return None if self.origin == MANUAL_ORIGIN else self.origin.split("@", 1)[0]

    @property
    def model_version(self) -> Optional[str]:
        if self.origin == MANUAL_ORIGIN or "@" not in self.origin:
            return None
        return self.origin.split("@", 1)[1]


def model_origin(name: str, version: str) -> str:
    return f"{name}@{version}"


@dataclass
class ImageRecord:
    """An image of the project. ``path`` is relative to the project folder, POSIX style."""

    path: str
    width: int
    height: int
    status: ImageStatus = ImageStatus.NEW
    id: Optional[int] = None
    sha1: Optional[str] = None
    error: Optional[str] = None  # why the image could not be read, if it could not
    # instances of the image per state, as the store last read them (kept by the store's triggers)
    n_proposed: int = 0
    n_accepted: int = 0
    n_rejected: int = 0
    tags: list = field(default_factory=list)  # image-level labels (CVAT tags, labelme flags)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width), the order of numpy shapes and ``Mask.image_size``."""
        return self.height, self.width
