"""The store's read-only queries: instance counts (kept per image by triggers), the
interaction log, and what the images panel's filters ask. A mixin of ``ProjectStore``
(it reads ``self._db``); nothing here writes."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import numpy as np

from annotation.document import InstanceState
from annotation.schema import COUNTED_STATES

MAX_EMBEDDING_DIMS = 4096  # a stored vector longer than this is refused as corrupt


def encode_embedding(vector: np.ndarray) -> bytes:
    """A proposal's embedding as stored: float16 little-endian (half the bytes, and
    clustering needs no more precision); refused when not 1..MAX_EMBEDDING_DIMS finite values."""
    v = np.asarray(vector, dtype=np.float32).ravel()
    if not 0 < v.size <= MAX_EMBEDDING_DIMS or not np.isfinite(v).all():
        raise ValueError(f"an embedding must be 1..{MAX_EMBEDDING_DIMS} finite values, not {v.size}")
    return np.clip(v, -65000.0, 65000.0).astype("<f2").tobytes()


def decode_embedding(blob: bytes) -> np.ndarray:
    """A stored embedding back as float32; refused (ValueError) when it cannot be one."""
    if not isinstance(blob, (bytes, memoryview)) or len(blob) % 2 or not 0 < len(blob) // 2 <= MAX_EMBEDDING_DIMS:
        raise ValueError("a stored embedding is not 1..4096 float16 values")
    vec = np.frombuffer(bytes(blob), dtype="<f2").astype(np.float32)
    if not np.isfinite(vec).all():
        raise ValueError("a stored embedding holds values that are not finite")
    return vec


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

    # ------------------------------------------------------------ embeddings (clustered review)
    def embeddings(self, ids: Optional[Iterable[int]] = None) -> dict[int, np.ndarray]:
        """instance id -> embedding, for these instances (all with one when ``ids`` is None).

        A vector that is not one (wrong length, not finite) is left out: the proposal is
        then clustered by its statistics alone, instead of the review failing.
        """
        if ids is None:
            rows = self._db.execute("SELECT instance_id, vector FROM embeddings").fetchall()
        else:
            rows = self._db.execute(
                "SELECT instance_id, vector FROM embeddings WHERE instance_id IN (SELECT value FROM json_each(?))",
                (json.dumps([int(i) for i in ids]),),
            ).fetchall()
        out: dict[int, np.ndarray] = {}
        for iid, blob in rows:
            try:
                out[int(iid)] = decode_embedding(blob)
            except ValueError:
                continue
        return out

    def proposal_rows(self, class_name: Optional[str] = None) -> list[tuple[int, int, str, float]]:
        """(instance id, image id, class, score) of every waiting proposal, masks not read."""
        sql = "SELECT id, image_id, class_name, COALESCE(score, 0.0) FROM instances WHERE state = 'proposed'"
        params: tuple = ()
        if class_name is not None:
            sql += " AND class_name = ?"
            params = (class_name,)
        return [(int(a), int(b), str(c), float(d)) for a, b, c, d in self._db.execute(sql + " ORDER BY id", params)]

    def states_of(self, ids: Iterable[int]) -> dict[int, str]:
        """instance id -> state, for those of ``ids`` that exist."""
        rows = self._db.execute(
            "SELECT id, state FROM instances WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps([int(i) for i in ids]),),
        )
        return {int(i): str(s) for i, s in rows}

    def instance_meta(self, instance_id: int) -> tuple[str, str]:
        """(class, origin) of an instance, mask not read."""
        row = self._db.execute("SELECT class_name, origin FROM instances WHERE id = ?", (int(instance_id),)).fetchone()
        if row is None:
            raise KeyError(f"no instance {instance_id}")
        return str(row[0]), str(row[1])

    def images_of(self, ids: Iterable[int]) -> dict[int, int]:
        """instance id -> its image id, for those of ``ids`` that exist."""
        rows = self._db.execute(
            "SELECT id, image_id FROM instances WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps([int(i) for i in ids]),),
        )
        return {int(i): int(m) for i, m in rows}

    # ------------------------------------------------------------ outcomes per model version
    def origin_state_counts(self) -> list[tuple[str, str, int, float]]:
        """(origin, state, instances, earliest created) for every origin and state present."""
        rows = self._db.execute(
            "SELECT origin, state, COUNT(*), MIN(created) FROM instances GROUP BY origin, state ORDER BY origin, state"
        )
        return [(str(o), str(s), int(n), float(t)) for o, s, n, t in rows]

    # a mask edit, its redo: +1; its undo: -1 (the undo and redo rows name the action in "of")
    _NET_EDITS = (
        "SELECT instance_id, SUM(CASE WHEN action IN (SELECT value FROM json_each(?1)) THEN 1"
        " WHEN action = 'redo' THEN 1 ELSE -1 END) AS net FROM interactions {indexed}"
        " WHERE {which} AND (action IN (SELECT value FROM json_each(?1)) OR"
        " (action IN ('undo', 'redo') AND json_valid(details) AND"
        " json_extract(details, '$.of') IN (SELECT value FROM json_each(?1))))"
        " GROUP BY instance_id"
    )

    def net_mask_edits(self, instance_ids: Iterable[int], actions: Iterable[str]) -> dict[int, int]:
        """instance id -> its mask edits still in effect (log rows whose action is one of
        ``actions`` and their redos count one each, their undos minus one), for those of
        ``instance_ids`` with any such row."""
        sql = self._NET_EDITS.format(indexed="", which="instance_id IN (SELECT value FROM json_each(?2))")
        rows = self._db.execute(sql, (json.dumps(sorted(set(actions))), json.dumps([int(i) for i in instance_ids])))
        return {int(i): int(n) for i, n in rows}

    def edited_accepted_by_origin(self, actions: Iterable[str]) -> dict[str, int]:
        """origin -> accepted instances with a mask edit still in effect (``net_mask_edits``)."""
        # the whole log: one scan (the index by instance would make it three times slower)
        inner = self._NET_EDITS.format(indexed="NOT INDEXED", which="instance_id IS NOT NULL")
        rows = self._db.execute(
            f"SELECT i.origin, COUNT(*) FROM ({inner}) AS e JOIN instances AS i ON i.id = e.instance_id"
            " WHERE e.net > 0 AND i.state = ?2 GROUP BY i.origin",
            (json.dumps(sorted(set(actions))), InstanceState.ACCEPTED.value),
        )
        return {str(o): int(n) for o, n in rows}
