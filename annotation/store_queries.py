"""The store's read-only queries: instance counts (kept per image by triggers), the
interaction log, and what the images panel's filters ask. A mixin of ``ProjectStore``
(it reads ``self._db``); nothing here writes."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from annotation.document import InstanceState
from annotation.schema import COUNTED_STATES


@dataclass
class Interaction:
    id: int
    action: str
    image_id: Optional[int]
    instance_id: Optional[int]
    class_name: Optional[str]
    started: float
    ended: float
    details: dict

    @property
    def duration(self) -> float:
        return self.ended - self.started


class ProjectQueries:
    """Queries over a project's database; ``ProjectStore`` provides ``_db``."""

    _db: sqlite3.Connection

    # ------------------------------------------------------------ counts (kept by triggers)
    _COUNT_COLS = ", ".join(f"n_{s}" for s in COUNTED_STATES)

    def instance_counts(self) -> dict[int, dict[str, int]]:
        """image id -> {state: count}, for images with instances; states with none are left out."""
        out: dict[int, dict[str, int]] = {}
        for image_id, *counts in self._db.execute(
            f"SELECT id, {self._COUNT_COLS} FROM images WHERE {' + '.join(f'n_{s}' for s in COUNTED_STATES)} > 0"
        ):
            out[image_id] = {s: n for s, n in zip(COUNTED_STATES, counts) if n}
        return out

    def image_counts(self, image_id: int) -> dict[str, int]:
        """{state: count} of one image, every state present (0 when none)."""
        row = self._db.execute(f"SELECT {self._COUNT_COLS} FROM images WHERE id=?", (image_id,)).fetchone()
        if row is None:
            raise KeyError(f"no image {image_id} in {self.root}")
        return dict(zip(COUNTED_STATES, row))

    def totals(self) -> dict[str, int]:
        """{state: count} over the whole project, every state present."""
        row = self._db.execute(
            "SELECT " + ", ".join(f"COALESCE(SUM(n_{s}), 0)" for s in COUNTED_STATES) + " FROM images"
        ).fetchone()
        return dict(zip(COUNTED_STATES, (int(n) for n in row)))

    def interactions(
        self, *, image_id: Optional[int] = None, actions: Optional[Iterable[str]] = None
    ) -> list[Interaction]:
        sql = "SELECT id, action, image_id, instance_id, class_name, started, ended, details FROM interactions"
        where, params = [], []
        if image_id is not None:
            where.append("image_id=?")
            params.append(image_id)
        if actions is not None:
            acts = list(actions)
            where.append(f"action IN ({','.join('?' * len(acts))})")
            params.extend(acts)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        return [
            Interaction(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]))
            for r in self._db.execute(sql, params).fetchall()
        ]

    # ------------------------------------------------------------ queries for the images panel's filters
    # Asked when a filter changes (every image at once) or after an action (its one image,
    # ``image_id``): never per row of a list, so that filtering thousands of images stays a
    # set lookup per row.
    def image_ids_with_class(self, class_name: str, image_id: Optional[int] = None) -> set[int]:
        """Ids of the images that hold a proposed or accepted instance of ``class_name``
        (a rejected one says the class is not there). With ``image_id``, only that image
        is looked at: the answer is ``{image_id}`` or empty."""
        # per image through the instances_by_image index, stopping at the first instance
        # found: twice as fast as a DISTINCT over every instance of a common class
        sql = ("SELECT id FROM images WHERE EXISTS (SELECT 1 FROM instances "
               "WHERE instances.image_id=images.id AND class_name=? AND state!=?)")
        params: list[Any] = [class_name, InstanceState.REJECTED.value]
        if image_id is not None:
            sql += " AND id=?"
            params.append(image_id)
        return {int(r[0]) for r in self._db.execute(sql, params)}

    def image_ids_with_proposal_score(self, lo: float, hi: float, image_id: Optional[int] = None) -> set[int]:
        """Ids of the images with at least one waiting proposal (state ``proposed``) whose
        score lies in [lo, hi], both ends included; a proposal without a score is in no
        range. With ``image_id``, only that image is looked at."""
        sql = "SELECT DISTINCT image_id FROM instances WHERE state=? AND score BETWEEN ? AND ?"
        params: list[Any] = [InstanceState.PROPOSED.value, float(lo), float(hi)]
        if image_id is not None:
            sql += " AND image_id=?"
            params.append(image_id)
        return {int(r[0]) for r in self._db.execute(sql, params)}
