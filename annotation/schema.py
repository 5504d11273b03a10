"""The project database's schema: its migrations, one per version, each all-or-nothing.

``MIGRATIONS[i]`` migrates schema version ``i`` to ``i + 1``; the store runs the ones a
database needs inside one transaction and then sets ``PRAGMA user_version``.
"""
from __future__ import annotations

import sqlite3
from typing import Callable

from annotation.document import InstanceState

SCHEMA_VERSION = 6
# the states counted per image, in the order of the image columns n_<state>
COUNTED_STATES = tuple(s.value for s in InstanceState)


def _run_script(db: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT the surrounding transaction; a migration must be
    # all-or-nothing, so run statement by statement inside it
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _migrate_1(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'new',
            sha1 TEXT,
            error TEXT
        );
        CREATE TABLE instances (
            -- AUTOINCREMENT: an id is never reused after a delete, so the log's
            -- instance_id always means one instance
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            class_name TEXT NOT NULL,
            state TEXT NOT NULL,
            origin TEXT NOT NULL,
            score REAL,
            x0 INTEGER NOT NULL, y0 INTEGER NOT NULL,
            w INTEGER NOT NULL, h INTEGER NOT NULL,
            rle TEXT NOT NULL,
            created REAL NOT NULL,
            modified REAL NOT NULL
        );
        CREATE INDEX instances_by_image ON instances(image_id);
        CREATE TABLE interactions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            action TEXT NOT NULL,
            image_id INTEGER,
            instance_id INTEGER,
            class_name TEXT,
            started REAL NOT NULL,
            ended REAL NOT NULL,
            details TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX interactions_by_image ON interactions(image_id);
        """
    )


def _migrate_2(db: sqlite3.Connection) -> None:
    # per-instance visibility survives a restart; hidden is a view setting the
    # expert chose, not a label, so exports ignore it
    db.execute("ALTER TABLE instances ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0")


def _bump_counts(row: str, sign: str) -> str:
    """The UPDATE that adds (``+``) or removes (``-``) ``row``'s instance from its image's counts."""
    sets = ", ".join(f"n_{s} = n_{s} {sign} ({row}.state = '{s}')" for s in COUNTED_STATES)
    return f"UPDATE images SET {sets} WHERE id = {row}.image_id;"


def _migrate_3(db: sqlite3.Connection) -> None:
    # instance counts per image, cached on the image row: the desktop read them by a
    # GROUP BY over the whole project after every edit. Triggers (not the store's
    # methods) keep them, so every writer -- another process, a raw SQL fix, a
    # rolled-back transaction -- keeps them exact without knowing about them.
    for s in COUNTED_STATES:
        db.execute(f"ALTER TABLE images ADD COLUMN n_{s} INTEGER NOT NULL DEFAULT 0")
        db.execute(
            f"UPDATE images SET n_{s} = "
            f"(SELECT COUNT(*) FROM instances WHERE instances.image_id = images.id AND instances.state = '{s}')"
        )
    # trigger bodies hold semicolons, so each is one execute(), not _run_script
    db.execute(f"CREATE TRIGGER instances_count_insert AFTER INSERT ON instances BEGIN {_bump_counts('NEW', '+')} END")
    db.execute(f"CREATE TRIGGER instances_count_delete AFTER DELETE ON instances BEGIN {_bump_counts('OLD', '-')} END")
    db.execute(
        "CREATE TRIGGER instances_count_update AFTER UPDATE OF state, image_id ON instances "
        "WHEN OLD.state IS NOT NEW.state OR OLD.image_id IS NOT NEW.image_id "
        f"BEGIN {_bump_counts('OLD', '-')} {_bump_counts('NEW', '+')} END"
    )


def _migrate_4(db: sqlite3.Connection) -> None:
    # what the formats carry beside the pixels, kept instead of dropped: COCO's iscrowd,
    # per-instance attributes (CVAT attributes and occluded, labelme flags: a JSON object
    # of name -> value) and per-image tags (CVAT tags, labelme image flags: a JSON list)
    db.execute("ALTER TABLE instances ADD COLUMN iscrowd INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE instances ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}'")
    db.execute("ALTER TABLE images ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'")


def _migrate_5(db: sqlite3.Connection) -> None:
    # each proposal's embedding (inference/embedding.py), float16 little-endian, what the
    # clustered review groups proposals by; a table of its own so that reading instances
    # never drags vectors along. The trigger (not a foreign key) removes it with its
    # instance, whatever the connection's foreign_keys setting.
    db.execute(
        "CREATE TABLE embeddings (instance_id INTEGER PRIMARY KEY, vector BLOB NOT NULL)"
    )
    db.execute(
        "CREATE TRIGGER embeddings_follow_delete AFTER DELETE ON instances "
        "BEGIN DELETE FROM embeddings WHERE instance_id = OLD.id; END"
    )


def _migrate_6(db: sqlite3.Connection) -> None:
    # the log by instance: accepting a proposal asks whether its mask was edited (edits
    # net of their undos, ``annotation.versions``), a 10 ms scan of a synthetic 200 000-row log
    # without this index, 0.6 ms with it
    db.execute("CREATE INDEX interactions_by_instance ON interactions(instance_id)")


# index i migrates schema version i to i + 1
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migrate_1, _migrate_2, _migrate_3, _migrate_4, _migrate_5, _migrate_6,
]
