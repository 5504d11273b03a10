"""The project store: one SQLite file (WAL mode) beside the images.

Every public method that changes the project commits one transaction before it
returns, so a killed process loses nothing that a method had returned from. Groups
of changes that belong together (an edit and its log entry, a whole import) use
``with store.transaction():`` and commit once at the end.

Masks are stored as their crop: origin, crop size and the crop's compressed COCO
RLE, so loading 300 instances of a 25-megapixel image never builds 300 full images.

Each image row carries its instance counts per state (``n_proposed``, ``n_accepted``,
``n_rejected``), kept exact by SQLite triggers inside the writer's own transaction,
so panels read counts without recounting the project after every edit.

A project on a read-only medium (or opened with ``read_only=True``) is read through
a read-only SQLite connection and every write raises ``StoreError`` with the reason
(``ProjectStore.read_only``); a read-only folder without a project opens as a
scanned in-memory store so its images can still be viewed.

Scanning is split into pure pieces (``find_image_files``, ``read_image_headers``)
that need no connection, so a GUI can run them in a worker, and one writer
(``ProjectStore.add_scanned``).
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from annotation import rle as rle_codec
from annotation.document import ImageRecord, ImageStatus, Instance, InstanceState
from annotation.lock import ProjectBusy, ProjectLock
from annotation.mask import Mask
from annotation.palette import DEFAULT_PALETTE, Palette, builtin_palette
from annotation.scanning import ScannedImage, ScanReport, find_image_files, read_image_headers
from annotation.schema import MIGRATIONS, SCHEMA_VERSION
from annotation.store_queries import Interaction, ProjectQueries, encode_embedding  # noqa: F401 - Interaction is API

DB_NAME = "specula.db"
# how long opening, and then each write, waits for another writer before saying so.
# Specula's own writers exclude each other by the project lock (annotation.lock), so a
# wait means a foreign program; the editor must not freeze for long behind it.
OPEN_BUSY_TIMEOUT_S = 2.0
BUSY_TIMEOUT_MS = 5_000
_SQLITE_HEADER = b"SQLite format 3\x00"


class StoreError(Exception):
    """A project that cannot be opened or written; the message says what to do."""


class ProjectInUse(StoreError):
    """Another writer (a Specula window, an import) holds the project; ``holder`` says who."""

    def __init__(self, root: Path, holder: str):
        super().__init__(f"{root} is open in {holder}; close it there first, or open it read-only")
        self.holder = holder


# ------------------------------------------------------------------ permissions
# Two small functions so tests can stand in for a read-only medium: the tests run as
# root, and root passes every os.access check except on a read-only file system.
def _can_read(path: Path) -> bool:
    """Whether this process may read ``path`` (a folder also needs search permission)."""
    return os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0))


def _can_write(path: Path) -> bool:
    """Whether this process may change ``path`` (for a folder: create files in it)."""
    return os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0))


# ------------------------------------------------------------------ messages
def _is_busy(exc: sqlite3.Error) -> bool:
    """Another connection holds the lock (after the busy timeout ran out)."""
    return getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def _locked_message(path: Path) -> str:
    return f"another program is writing to this project ({path}); close it and try again"


def _damaged_message(path: Path, detail: str) -> str:
    return (
        f"{path} is damaged or not a Specula database ({detail}); Specula changed nothing: "
        f"restore {DB_NAME} from a backup"
    )


def _read_only_reason(root: Path, db_path: Path, db_exists: bool, asked: Optional[bool]) -> Optional[str]:
    """Why the project cannot be written, in words for the user; None when it can."""
    if asked:
        if db_exists:
            return (f"{root} was opened read-only: labels can be viewed and exported, not changed; "
                    f"open it again without read-only to edit")
        return (f"{root} was opened read-only and holds no Specula project yet: images can be viewed, "
                f"not labelled; open it without read-only to start labelling")
    if not _can_write(root):
        if db_exists:
            return (f"the folder {root} is read-only (a DVD, a write-protected share or no permission): "
                    f"labels can be viewed and exported, not changed; copy the folder somewhere writable to edit")
        return (f"the folder {root} is read-only (a DVD, a write-protected share or no permission) and holds "
                f"no Specula project: images can be viewed, not labelled; copy the folder somewhere writable "
                f"to label it")
    if db_exists and not _can_write(db_path):
        return (f"{db_path} is read-only (no write permission on the file): labels can be viewed and exported, "
                f"not changed; make the file writable, or copy the folder somewhere writable, to edit")
    return None


def _configure(db: sqlite3.Connection) -> sqlite3.Connection:
    """Settings every connection of the store needs, on disk or in memory."""
    db.execute("PRAGMA foreign_keys=ON")
    # REPLACE deletes rows without firing delete triggers unless this is on; the
    # instance-count triggers must see every delete
    db.execute("PRAGMA recursive_triggers=ON")
    return db


def _memory_db() -> sqlite3.Connection:
    return _configure(sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False))


def _check_header(path: Path) -> None:
    """Refuse a file that is not SQLite before SQLite touches it (nothing is written)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_SQLITE_HEADER))
    except IsADirectoryError:
        raise StoreError(
            f"{path} is a folder, but Specula keeps its labels in a file of that name; rename the folder"
        ) from None
    except OSError as exc:
        raise StoreError(
            f"cannot read {path} ({exc.strerror or exc}); check the disk and ask for read access"
        ) from None
    if head and head != _SQLITE_HEADER:  # an empty file is a database SQLite has not written yet
        raise StoreError(_damaged_message(path, "it is not an SQLite file"))


class ProjectStore(ProjectQueries):
    """A project folder and its database. Not thread-safe: one store per thread.

    ``read_only`` is None for a writable project, else the reason it cannot be
    changed, in words for the user; every write then raises ``StoreError`` with it.
    ``in_memory`` is True for a read-only folder that holds no project: its images
    are scanned into an in-memory database so they can be viewed; nothing is saved.
    """

    def __init__(
        self, root: Path, db: sqlite3.Connection, *, read_only: Optional[str] = None, in_memory: bool = False
    ):
        self.root = root
        self._db = db
        self._depth = 0
        self._palette: Optional[Palette] = None
        self.read_only: Optional[str] = read_only
        self.in_memory = in_memory
        self._internal = 0  # > 0 while the store writes to its own in-memory copy
        self._lock: Optional[ProjectLock] = None  # held while this store is the project's writer

    # ------------------------------------------------------------ open / close
    @classmethod
    def open(
        cls,
        folder: str | Path,
        *,
        palette: Optional[Palette] = None,
        create: bool = True,
        scan: bool = True,
        read_only: Optional[bool] = None,
        writer: Optional[str] = None,
    ) -> "ProjectStore":
        """Open (or create) the project in ``folder``; scans for new images unless told not to.

        ``read_only``: None decides from the permissions of the folder and of
        ``specula.db``; True opens read-only even where writing is allowed; False
        refuses (``StoreError``) a project that cannot be written. ``palette`` is
        stored when the project has none yet or a different one.

        ``writer`` names who will change the project ("the editor", "specula import"):
        the store then holds the project's lock until it is closed, and raises
        ``ProjectInUse`` (saying who holds it) when another writer has it.
        """
        root = Path(folder).expanduser().resolve()
        if not root.exists():
            raise StoreError(f"project folder {root} does not exist; check the path (a drive not mounted?)")
        if not root.is_dir():
            raise StoreError(f"{root} is a file, not a folder; pass the folder that holds the images")
        if not _can_read(root):
            raise StoreError(f"no permission to read the folder {root}; ask for read access to it")
        path = root / DB_NAME
        exists = path.exists()
        if exists and not _can_read(path):
            raise StoreError(f"no permission to read {path}; ask for read access to it")
        if not exists and not create:
            raise StoreError(
                f"{root} is not a Specula project yet; create it with `specula init {root}` (or open it in the editor)"
            )
        reason = _read_only_reason(root, path, exists, read_only)
        if reason is not None and read_only is False:
            raise StoreError(reason)
        if exists:
            _check_header(path)
        lock = None
        if writer is not None and reason is None:
            try:
                lock = ProjectLock.acquire(root, writer)
            except ProjectBusy as exc:
                raise ProjectInUse(root, exc.holder) from None
            except OSError:
                lock = None  # a folder where no lock file can be made is read-only: decided above
        try:
            store = cls._open_locked(root, path, exists, reason, palette, scan)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        store._lock = lock
        return store

    @classmethod
    def _open_locked(cls, root: Path, path: Path, exists: bool, reason: Optional[str], palette: Optional[Palette],
                     scan: bool) -> "ProjectStore":
        if reason is not None and not exists:
            store = cls(root, _memory_db(), read_only=reason, in_memory=True)
            with store._internal_writes():
                store._migrate(0)
                store.set_palette(palette or builtin_palette(DEFAULT_PALETTE))
            if scan:
                store.scan_images()
            return store
        store = cls._open_file(root, path, reason)
        try:
            if store._meta("palette") is None:
                if reason is None:
                    store.set_palette(palette or builtin_palette(DEFAULT_PALETTE))
                else:  # nothing can be stored: hold the palette in memory only
                    store._palette = palette or builtin_palette(DEFAULT_PALETTE)
            elif palette is not None and palette != store.palette:
                store.set_palette(palette)  # on a read-only project this raises the reason
        except sqlite3.OperationalError as exc:
            store.close()
            raise StoreError(_locked_message(path) if _is_busy(exc) else f"cannot write to {path} ({exc})") from None
        except BaseException:
            store.close()
            raise
        store._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if scan:
            store.scan_images()
        return store

    @classmethod
    def _open_file(cls, root: Path, path: Path, reason: Optional[str]) -> "ProjectStore":
        """Connect to ``path`` (read-only when ``reason`` says why), check it, migrate it."""
        if reason is None:
            target, uri = str(path), False
        elif not _can_write(root) and not path.with_name(DB_NAME + "-wal").exists():
            # a read-only medium: everything is in the main file, and immutable tells
            # SQLite not to look for (or create) the -shm file it could not write
            target, uri = f"{path.as_uri()}?immutable=1", True
        else:
            target, uri = f"{path.as_uri()}?mode=ro", True
        db: Optional[sqlite3.Connection] = None
        try:
            db = sqlite3.connect(target, uri=uri, timeout=OPEN_BUSY_TIMEOUT_S, isolation_level=None,
                                 check_same_thread=False)
            _configure(db)
            # read and check before anything writes (journal mode, migration), so a
            # damaged file is left exactly as it was found
            current = db.execute("PRAGMA user_version").fetchone()[0]
            integrity = db.execute("PRAGMA quick_check").fetchone()[0]
            if integrity != "ok":
                raise StoreError(_damaged_message(path, str(integrity).splitlines()[0]))
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{path} was written by a newer Specula (schema {current} > {SCHEMA_VERSION}); update Specula"
                )
            if reason is None:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
                store = cls(root, db)
                if current < SCHEMA_VERSION:
                    try:
                        store._migrate(current)
                    except sqlite3.OperationalError as exc:
                        if _is_busy(exc):
                            raise
                        raise StoreError(
                            f"could not update {path} from schema {current} to {SCHEMA_VERSION} ({exc}); "
                            f"Specula changed nothing: free disk space and try again"
                        ) from None
                return store
            if current < SCHEMA_VERSION:
                # an older project that cannot be migrated where it lies: read a migrated
                # copy in memory; the file stays as it is
                copy = _memory_db()
                db.backup(copy)
                db.close()
                db = copy
                store = cls(root, db, read_only=reason)
                with store._internal_writes():
                    store._migrate(current)
                return store
            return cls(root, db, read_only=reason)
        except StoreError:
            if db is not None:
                db.close()
            raise
        except sqlite3.OperationalError as exc:
            if db is not None:
                db.close()
            if _is_busy(exc):
                raise StoreError(_locked_message(path)) from None
            if reason is not None and path.with_name(DB_NAME + "-wal").exists():
                raise StoreError(
                    f"cannot read {path} from a read-only folder: it has unfinished changes in "
                    f"{DB_NAME}-wal ({exc}); copy the folder somewhere writable and open the copy"
                ) from None
            # I/O and permission faults, not damage: the file may well be healthy
            raise StoreError(
                f"cannot open {path} ({exc}); Specula changed nothing: check the disk and the folder's "
                f"permissions, then try again"
            ) from None
        except sqlite3.DatabaseError as exc:  # not a database, or malformed pages
            if db is not None:
                db.close()
            raise StoreError(_damaged_message(path, str(exc))) from None

    def _migrate(self, current: int) -> None:
        with self.transaction():
            for version in range(current, SCHEMA_VERSION):
                MIGRATIONS[version](self._db)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _internal_writes(self) -> Iterator[None]:
        """Let the store write to its in-memory database (setting up, scanning a folder)."""
        self._internal += 1
        try:
            yield
        finally:
            self._internal -= 1

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error:
            pass
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "ProjectStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------ transactions
    def _write_error(self, exc: sqlite3.Error, doing: str = "write to") -> StoreError:
        path = self.root / DB_NAME
        if _is_busy(exc):
            return StoreError(_locked_message(path))
        if "full" in str(exc).lower():
            return StoreError(f"could not {doing} {path}: the disk is full; free some space and try again "
                              f"(nothing was half-saved)")
        return StoreError(f"could not {doing} {path} ({exc}); check the disk and try again (nothing was half-saved)")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group changes into one commit; nests (only the outermost commits).

        On a read-only project raises ``StoreError`` with the reason before SQLite is touched.
        """
        if self.read_only is not None and not self._internal:
            raise StoreError(self.read_only)
        if self._depth == 0:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise self._write_error(exc) from None
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._rollback()
            raise
        else:
            self._depth -= 1
            if self._depth == 0:
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._rollback()
                    raise self._write_error(exc, "save to") from None

    def _rollback(self) -> None:
        """Take back the open transaction. SQLite may already have rolled it back itself
        (a full disk, an I/O error): then there is nothing left to take back."""
        self._palette = None  # a rolled-back set_palette must not linger in memory
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _write(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            with self.transaction():
                return self._db.execute(sql, params)
        except sqlite3.OperationalError as exc:
            raise self._write_error(exc) from None

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
    def known_image_paths(self) -> set[str]:
        """The project-relative paths of every image in the project (on disk or not)."""
        return {row[0] for row in self._db.execute("SELECT path FROM images")}

    def add_scanned(self, images: Sequence[ScannedImage]) -> list[ImageRecord]:
        """Add scanned images in one transaction; returns the records of those added.

        A path already in the project is left as it is (another scan may have added
        it meanwhile). On a read-only project raises ``StoreError``, except for an
        in-memory store, whose images are only a view of the folder.
        """
        images = list(images)
        if not images:
            return []
        added: list[ImageRecord] = []
        with self._internal_writes() if self.in_memory else contextlib.nullcontext():
            try:
                with self.transaction():
                    for im in images:
                        cur = self._db.execute(
                            "INSERT INTO images(path, width, height, status, error) VALUES(?,?,?,?,?) "
                            "ON CONFLICT(path) DO NOTHING",
                            (im.path, im.width, im.height, ImageStatus.NEW.value, im.error),
                        )
                        if cur.rowcount == 1:
                            added.append(ImageRecord(path=im.path, width=im.width, height=im.height,
                                                     id=int(cur.lastrowid), error=im.error))
            except sqlite3.OperationalError as exc:
                raise self._write_error(exc) from None
        return added

    def scan_images(self, progress: Optional[Callable[[int, int], None]] = None) -> ScanReport:
        """Find images under the folder (recursively) and add the new ones.

        ``find_image_files`` + ``read_image_headers`` + ``add_scanned``. Unreadable files
        are recorded with their reason; they do not stop the scan. On a read-only
        project nothing is added and ``skipped`` says why; ``missing`` is still reported.
        """
        report = ScanReport()
        bad_names: list[str] = []
        found = find_image_files(self.root, bad_names)
        for name in bad_names:
            report.errors[name] = "its name is not valid UTF-8 text; rename the file to add it"
        known = self.known_image_paths()
        report.missing = sorted(known - set(found))
        new = [p for p in found if p not in known]
        if self.read_only is not None and not self.in_memory:
            report.skipped = self.read_only
            return report
        scanned = []
        for i, image in enumerate(read_image_headers(self.root, new)):
            scanned.append(image)
            if progress:
                progress(i + 1, len(new))
        added = self.add_scanned(scanned)
        report.added = [r.path for r in added]
        report.errors.update({r.path: r.error for r in added if r.error})
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

    _IMAGE_COLS = "id, path, width, height, status, sha1, error, n_proposed, n_accepted, n_rejected, tags"

    @staticmethod
    def _image_row(row: sqlite3.Row | tuple) -> ImageRecord:
        return ImageRecord(
            id=row[0], path=row[1], width=row[2], height=row[3], status=ImageStatus(row[4]), sha1=row[5],
            error=row[6], n_proposed=row[7], n_accepted=row[8], n_rejected=row[9], tags=json.loads(row[10]),
        )

    def images(self) -> list[ImageRecord]:
        rows = self._db.execute(f"SELECT {self._IMAGE_COLS} FROM images ORDER BY path").fetchall()
        return [self._image_row(r) for r in rows]

    def image(self, image_id: int) -> ImageRecord:
        row = self._db.execute(f"SELECT {self._IMAGE_COLS} FROM images WHERE id=?", (image_id,)).fetchone()
        if row is None:
            raise KeyError(f"no image {image_id} in {self.root}")
        return self._image_row(row)

    def image_by_path(self, rel_path: str) -> Optional[ImageRecord]:
        row = self._db.execute(f"SELECT {self._IMAGE_COLS} FROM images WHERE path=?", (rel_path,)).fetchone()
        return None if row is None else self._image_row(row)

    def image_file(self, image: ImageRecord | int) -> Path:
        rec = self.image(image) if isinstance(image, int) else image
        return self.root / rec.path

    def set_image_status(self, image_id: int, status: ImageStatus) -> None:
        self._write("UPDATE images SET status=? WHERE id=?", (ImageStatus(status).value, image_id))

    def set_image_sha1(self, image_id: int, sha1: str) -> None:
        self._write("UPDATE images SET sha1=? WHERE id=?", (sha1, image_id))

    # ------------------------------------------------------------ instances
    _INST_COLS = ("id, image_id, class_name, state, origin, score, x0, y0, w, h, rle, created, modified, hidden, "
                  "iscrowd, attributes")

    def _instance_from_row(self, row: tuple, sizes: dict[int, tuple[int, int]]) -> Instance:
        (iid, image_id, cls, state, origin, score, x0, y0, w, h, rle, created, modified, hidden, crowd, attrs) = row
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
            iscrowd=bool(crowd),
            attributes=json.loads(attrs),
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
            f"INSERT INTO instances({self._INST_COLS}) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                inst.id, inst.image_id, inst.class_name, InstanceState(inst.state).value, inst.origin,
                inst.score, x0, y0, w, h, rle, inst.created, inst.modified, int(inst.hidden),
                int(bool(inst.iscrowd)), json.dumps(inst.attributes or {}),
            ),
        )
        inst.id = int(cur.lastrowid)
        if inst.embedding is not None:
            self._write("INSERT OR REPLACE INTO embeddings(instance_id, vector) VALUES(?, ?)",
                        (inst.id, encode_embedding(inst.embedding)))
        return inst.id

    def add_instances(self, instances: Iterable[Instance]) -> list[int]:
        with self.transaction():
            return [self.add_instance(i) for i in instances]

    def _spliced_columns(self, inst: Instance, changed: tuple[int, int, int, int]) -> tuple[int, int, int, int, str]:
        """The mask columns after an edit inside ``changed`` (x0, y0, x1, y1): when the stored
        crop is the mask's array box, only the runs of the changed columns are re-encoded;
        when the array moved (it grew), its whole box is stored, so the next edits splice."""
        m = inst.mask
        bx0, by0, bx1, by1 = m.box
        H, W = m.image_size
        if not (0 <= bx0 <= bx1 <= W and 0 <= by0 <= by1 <= H) or m.array.size == 0:
            return self._mask_columns(m)
        w, h = bx1 - bx0, by1 - by0
        row = self._db.execute("SELECT x0, y0, w, h, rle FROM instances WHERE id=?", (inst.id,)).fetchone()
        if row is None or tuple(row[:4]) != (bx0, by0, w, h):
            return bx0, by0, w, h, rle_codec.encode_crop(m.array)
        c0, c1 = max(changed[0], bx0) - bx0, min(changed[2], bx1) - bx0
        if c1 <= c0:
            return bx0, by0, w, h, row[4]
        return bx0, by0, w, h, rle_codec.splice_crop(row[4], h, w, c0, c1, m.array[:, c0:c1])

    def update_instance(self, inst: Instance, *, touch: bool = True,
                        changed: Optional[tuple[int, int, int, int]] = None) -> None:
        """Write the instance's class, mask, state, score and visibility. ``changed``: the
        box (x0, y0, x1, y1) outside of which the mask is as stored; then the store's cost
        follows that box, not the instance (a stroke on a 3-megapixel mask)."""
        if inst.id is None:
            raise ValueError("update_instance needs a stored instance (id is None)")
        if touch:
            inst.modified = time.time()
        if changed is None:
            x0, y0, w, h, rle = self._mask_columns(inst.mask)
        else:
            x0, y0, w, h, rle = self._spliced_columns(inst, changed)
        cur = self._write(
            "UPDATE instances SET class_name=?, state=?, origin=?, score=?, x0=?, y0=?, w=?, h=?, rle=?, "
            "modified=?, hidden=?, iscrowd=?, attributes=? WHERE id=?",
            (
                inst.class_name, InstanceState(inst.state).value, inst.origin, inst.score,
                x0, y0, w, h, rle, inst.modified, int(inst.hidden), int(bool(inst.iscrowd)),
                json.dumps(inst.attributes or {}), inst.id,
            ),
        )
        if cur.rowcount != 1:
            raise KeyError(f"no instance {inst.id} to update")

    def set_state(self, instance_id: int, state: InstanceState) -> None:
        self.set_states([instance_id], state)

    def set_states(self, ids: Iterable[int], state: InstanceState | str) -> int:
        """Set the state (and the modified time) of these instances in one statement.

        Masks are not read or written, so a decision on any number of instances costs
        one UPDATE. Returns how many instances were found.
        """
        cur = self._write(
            "UPDATE instances SET state=?, modified=? WHERE id IN (SELECT value FROM json_each(?))",
            (InstanceState(state).value, time.time(), json.dumps([int(i) for i in ids])),
        )
        return cur.rowcount

    def set_class(self, ids: Iterable[int], class_name: str) -> int:
        """Give these instances another class in one statement (masks untouched)."""
        cur = self._write(
            "UPDATE instances SET class_name=?, modified=? WHERE id IN (SELECT value FROM json_each(?))",
            (class_name, time.time(), json.dumps([int(i) for i in ids])),
        )
        return cur.rowcount

    def set_attributes(self, instance_id: int, attributes: dict) -> None:
        """Replace an instance's attributes (a JSON object: name -> str, number or bool)."""
        self._write("UPDATE instances SET attributes=?, modified=? WHERE id=?",
                    (json.dumps(attributes), time.time(), instance_id))

    def set_image_tags(self, image_id: int, tags: Sequence[str]) -> None:
        """Replace an image's tags (image-level labels, in the order given, without repeats)."""
        self._write("UPDATE images SET tags=? WHERE id=?", (json.dumps(list(dict.fromkeys(tags))), image_id))

    def set_hidden(self, instance_id: int, hidden: bool) -> None:
        """Show or hide an instance: a view setting the expert chose, kept across restarts."""
        self._write("UPDATE instances SET hidden=? WHERE id=?", (int(bool(hidden)), instance_id))

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
