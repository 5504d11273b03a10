"""The project store: one SQLite file (WAL mode) beside the images.

Every public method that changes the project commits one transaction before it
returns, so a killed process loses nothing that a method had returned from. Groups
of changes that belong together (an edit and its log entry, a whole import) use
``with store.transaction():`` and commit once at the end.

Masks are stored as their crop: origin, crop size and the crop's compressed COCO
RLE, so loading 300 instances of a 25-megapixel image never builds 300 full images.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from annotation import rle as rle_codec
from annotation.document import ImageRecord, ImageStatus, Instance, InstanceState
from annotation.images import IMAGE_EXTENSIONS, ImageReadError, check_image
from annotation.mask import Mask
from annotation.palette import DEFAULT_PALETTE, Palette, builtin_palette

DB_NAME = "specula.db"
SCHEMA_VERSION = 2


class StoreError(Exception):
    """A project that cannot be opened or written; the message says what to do."""


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


# index i migrates schema version i to i + 1
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_1, _migrate_2]


@dataclass
class ScanReport:
    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # path -> reason


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


class ProjectStore:
    """A project folder and its database. Not thread-safe: one store per thread."""

    def __init__(self, root: Path, db: sqlite3.Connection):
        self.root = root
        self._db = db
        self._depth = 0
        self._palette: Optional[Palette] = None

    # ------------------------------------------------------------ open / close
    @classmethod
    def open(
        cls, folder: str | Path, *, palette: Optional[Palette] = None, create: bool = True, scan: bool = True
    ) -> "ProjectStore":
        """Open (or create) the project in ``folder``; scans for new images unless told not to."""
        root = Path(folder).expanduser().resolve()
        if not root.is_dir():
            raise StoreError(f"project folder {root} does not exist; pass a folder of images")
        path = root / DB_NAME
        if not path.exists() and not create:
            raise StoreError(f"{root} is not a Specula project (no {DB_NAME}); open it in Specula first")
        db = None
        try:
            db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            db.execute("PRAGMA foreign_keys=ON")
            current = db.execute("PRAGMA user_version").fetchone()[0]
            integrity = db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            if db is not None:  # let go of the file, so the user can move it away as told
                db.close()
            raise StoreError(
                f"{path} is not a readable Specula database ({exc}); restore it from a backup "
                f"or move it away to start the project afresh"
            ) from None
        if integrity != "ok":
            db.close()
            raise StoreError(f"{path} is damaged ({integrity}); restore it from a backup")
        if current > SCHEMA_VERSION:
            db.close()
            raise StoreError(
                f"{path} was written by a newer Specula (schema {current} > {SCHEMA_VERSION}); update Specula"
            )
        store = cls(root, db)
        if current < SCHEMA_VERSION:
            store._migrate(current)
        if store._meta("palette") is None:
            store.set_palette(palette or builtin_palette(DEFAULT_PALETTE))
        elif palette is not None:
            store.set_palette(palette)
        if scan:
            store.scan_images()
        return store

    def _migrate(self, current: int) -> None:
        with self.transaction():
            for version in range(current, SCHEMA_VERSION):
                MIGRATIONS[version](self._db)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error:
            pass

    def __enter__(self) -> "ProjectStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------ transactions
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group changes into one commit; nests (only the outermost commits)."""
        if self._depth == 0:
            self._db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("ROLLBACK")
                self._palette = None  # a rolled-back set_palette must not linger in memory
            raise
        else:
            self._depth -= 1
            if self._depth == 0:
                try:
                    self._db.execute("COMMIT")
                except sqlite3.OperationalError as exc:
                    self._db.execute("ROLLBACK")
                    self._palette = None
                    raise StoreError(
                        f"could not save to {self.root / DB_NAME} ({exc}); free disk space and retry: "
                        f"the edit is still on screen"
                    ) from None

    def _write(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            with self.transaction():
                return self._db.execute(sql, params)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"could not write to {self.root / DB_NAME}: {exc}") from None

    # ------------------------------------------------------------ meta / palette
    def _meta(self, key: str) -> Optional[str]:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self._write("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def get_meta(self, key: str, default: Optional[str] = None) -> Optional[str]:
        v = self._meta(key)
        return default if v is None else v

    @property
    def palette(self) -> Palette:
        if self._palette is None:
            self._palette = Palette.from_dict(json.loads(self._meta("palette") or "{}"), "project palette")
        return self._palette

    def set_palette(self, palette: Palette) -> None:
        self.set_meta("palette", json.dumps(palette.to_dict()))
        self._palette = palette

    def ensure_class(self, name: str, color: Optional[tuple[int, int, int]] = None) -> None:
        """Add a class to the palette if missing (imports may bring new ones)."""
        if name not in self.palette:
            self.set_palette(self.palette.with_class(name, color))

    # ------------------------------------------------------------ images
    def scan_images(self, progress: Optional[Callable[[int, int], None]] = None) -> ScanReport:
        """Find images under the folder (recursively) and add the new ones.

        Unreadable files are recorded with their reason; they do not stop the scan.
        """
        report = ScanReport()
        known = {r.path: r for r in self.images()}
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    found.append(Path(dirpath, name).relative_to(self.root).as_posix())
        new = [p for p in found if p not in known]
        with self.transaction():
            for i, rel in enumerate(new):
                try:
                    h, w = check_image(self.root / rel)
                    err = None
                except ImageReadError as exc:
                    h, w, err = 0, 0, str(exc)
                    report.errors[rel] = err
                self._db.execute(
                    "INSERT INTO images(path, width, height, status, error) VALUES(?,?,?,?,?)",
                    (rel, w, h, ImageStatus.NEW.value, err),
                )
                report.added.append(rel)
                if progress:
                    progress(i + 1, len(new))
        report.missing = sorted(set(known) - set(found))
        return report

    def add_image(self, rel_path: str, height: int, width: int) -> int:
        """Register an image by path (used by importers for images not on disk yet)."""
        row = self._db.execute("SELECT id FROM images WHERE path=?", (rel_path,)).fetchone()
        if row:
            return int(row[0])
        cur = self._write(
            "INSERT INTO images(path, width, height, status) VALUES(?,?,?,?)",
            (rel_path, width, height, ImageStatus.NEW.value),
        )
        return int(cur.lastrowid)

    @staticmethod
    def _image_row(row: sqlite3.Row | tuple) -> ImageRecord:
        return ImageRecord(
            id=row[0], path=row[1], width=row[2], height=row[3], status=ImageStatus(row[4]), sha1=row[5], error=row[6]
        )

    def images(self) -> list[ImageRecord]:
        rows = self._db.execute("SELECT id, path, width, height, status, sha1, error FROM images ORDER BY path").fetchall()
        return [self._image_row(r) for r in rows]

    def image(self, image_id: int) -> ImageRecord:
        row = self._db.execute(
            "SELECT id, path, width, height, status, sha1, error FROM images WHERE id=?", (image_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no image {image_id} in {self.root}")
        return self._image_row(row)

    def image_by_path(self, rel_path: str) -> Optional[ImageRecord]:
        row = self._db.execute(
            "SELECT id, path, width, height, status, sha1, error FROM images WHERE path=?", (rel_path,)
        ).fetchone()
        return None if row is None else self._image_row(row)

    def image_file(self, image: ImageRecord | int) -> Path:
        rec = self.image(image) if isinstance(image, int) else image
        return self.root / rec.path

    def set_image_status(self, image_id: int, status: ImageStatus) -> None:
        self._write("UPDATE images SET status=? WHERE id=?", (ImageStatus(status).value, image_id))

    def set_image_sha1(self, image_id: int, sha1: str) -> None:
        self._write("UPDATE images SET sha1=? WHERE id=?", (sha1, image_id))

    def set_image_size(self, image_id: int, height: int, width: int, error: Optional[str] = None) -> None:
        self._write("UPDATE images SET height=?, width=?, error=? WHERE id=?", (height, width, error, image_id))

    def instance_counts(self) -> dict[int, dict[str, int]]:
        """image id -> {state: count}."""
        out: dict[int, dict[str, int]] = {}
        for image_id, state, n in self._db.execute(
            "SELECT image_id, state, COUNT(*) FROM instances GROUP BY image_id, state"
        ):
            out.setdefault(image_id, {})[state] = n
        return out

    # ------------------------------------------------------------ instances
    _INST_COLS = "id, image_id, class_name, state, origin, score, x0, y0, w, h, rle, created, modified, hidden"

    def _instance_from_row(self, row: tuple, sizes: dict[int, tuple[int, int]]) -> Instance:
        (iid, image_id, cls, state, origin, score, x0, y0, w, h, rle, created, modified, hidden) = row
        size = sizes.get(image_id)
        if size is None:
            img = self.image(image_id)
            size = sizes[image_id] = (img.height, img.width)
        arr = rle_codec.decode_crop(rle, h, w)
        return Instance(
            image_id=image_id,
            class_name=cls,
            mask=Mask(x0, y0, arr, size),
            state=InstanceState(state),
            origin=origin,
            score=score,
            id=iid,
            created=created,
            modified=modified,
            hidden=bool(hidden),
        )

    def instances(
        self, image_id: Optional[int] = None, states: Optional[Iterable[InstanceState | str]] = None
    ) -> list[Instance]:
        sql = f"SELECT {self._INST_COLS} FROM instances"
        where, params = [], []
        if image_id is not None:
            where.append("image_id=?")
            params.append(image_id)
        if states is not None:
            st = [InstanceState(s).value for s in states]
            where.append(f"state IN ({','.join('?' * len(st))})")
            params.extend(st)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        sizes: dict[int, tuple[int, int]] = {}
        return [self._instance_from_row(r, sizes) for r in self._db.execute(sql, params).fetchall()]

    def instance(self, instance_id: int) -> Instance:
        row = self._db.execute(f"SELECT {self._INST_COLS} FROM instances WHERE id=?", (instance_id,)).fetchone()
        if row is None:
            raise KeyError(f"no instance {instance_id}")
        return self._instance_from_row(row, {})

    @staticmethod
    def _mask_columns(mask: Mask) -> tuple[int, int, int, int, str]:
        m = mask.cropped()
        h, w = m.array.shape
        return m.x0, m.y0, w, h, rle_codec.encode_crop(m.array)

    def add_instance(self, inst: Instance) -> int:
        """Store a new instance (or re-store a deleted one with its old id, for undo)."""
        x0, y0, w, h, rle = self._mask_columns(inst.mask)
        cur = self._write(
            f"INSERT INTO instances({self._INST_COLS}) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                inst.id, inst.image_id, inst.class_name, InstanceState(inst.state).value, inst.origin,
                inst.score, x0, y0, w, h, rle, inst.created, inst.modified, int(inst.hidden),
            ),
        )
        inst.id = int(cur.lastrowid)
        return inst.id

    def add_instances(self, instances: Iterable[Instance]) -> list[int]:
        with self.transaction():
            return [self.add_instance(i) for i in instances]

    def update_instance(self, inst: Instance, *, touch: bool = True) -> None:
        """Write the instance's class, mask, state, score and visibility."""
        if inst.id is None:
            raise ValueError("update_instance needs a stored instance (id is None)")
        if touch:
            inst.modified = time.time()
        x0, y0, w, h, rle = self._mask_columns(inst.mask)
        cur = self._write(
            "UPDATE instances SET class_name=?, state=?, origin=?, score=?, x0=?, y0=?, w=?, h=?, rle=?, "
            "modified=?, hidden=? WHERE id=?",
            (
                inst.class_name, InstanceState(inst.state).value, inst.origin, inst.score,
                x0, y0, w, h, rle, inst.modified, int(inst.hidden), inst.id,
            ),
        )
        if cur.rowcount != 1:
            raise KeyError(f"no instance {inst.id} to update")

    def set_state(self, instance_id: int, state: InstanceState) -> None:
        self._write(
            "UPDATE instances SET state=?, modified=? WHERE id=?", (InstanceState(state).value, time.time(), instance_id)
        )

    def delete_instance(self, instance_id: int) -> None:
        self._write("DELETE FROM instances WHERE id=?", (instance_id,))

    def delete_instances(self, image_id: int, states: Iterable[InstanceState | str],
                         keep: Iterable[int] = ()) -> int:
        """Delete the image's instances in ``states``, except the ids in ``keep``."""
        st = [InstanceState(s).value for s in states]
        cur = self._write(
            f"DELETE FROM instances WHERE image_id=? AND state IN ({','.join('?' * len(st))}) "
            "AND id NOT IN (SELECT value FROM json_each(?))",
            (image_id, *st, json.dumps([int(i) for i in keep])),
        )
        return cur.rowcount

    def delete_instance_ids(self, ids: Iterable[int]) -> int:
        """Delete these instances in one statement (any number of ids)."""
        cur = self._write("DELETE FROM instances WHERE id IN (SELECT value FROM json_each(?))",
                          (json.dumps([int(i) for i in ids]),))
        return cur.rowcount

    # ------------------------------------------------------------ interaction log
    def log(
        self,
        action: str,
        *,
        image_id: Optional[int] = None,
        instance_id: Optional[int] = None,
        class_name: Optional[str] = None,
        started: Optional[float] = None,
        ended: Optional[float] = None,
        **details: Any,
    ) -> int:
        """Record one action of the expert (accept, reject, modify, draw, weak_click, ...)."""
        ended = time.time() if ended is None else ended
        started = ended if started is None else started
        cur = self._write(
            "INSERT INTO interactions(action, image_id, instance_id, class_name, started, ended, details) "
            "VALUES(?,?,?,?,?,?,?)",
            (action, image_id, instance_id, class_name, started, ended, json.dumps(details, default=str)),
        )
        return int(cur.lastrowid)

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
