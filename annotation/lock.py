"""One writer per project: an advisory lock on ``specula.lock`` in the project folder.

The editor and the commands that change a project (import, propose, init) take the lock
for as long as they hold the project open. A second Specula window opening the same
project finds it taken and opens the project read-only, saying who holds it; a command
says so and exits. The operating system releases the lock when its holder ends, killed
or not, so a crash never leaves a project locked. The file's text (who, process, host,
since when) is only for the message.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Optional

LOCK_NAME = "specula.lock"


class ProjectBusy(Exception):
    """The project is held by another writer; ``holder`` says who, in words."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


def _describe(info: dict) -> str:
    who = info.get("who") or "another Specula"
    since = info.get("since")
    when = time.strftime("%H:%M", time.localtime(since)) if isinstance(since, (int, float)) else "a while"
    host = info.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"{who} (process {info.get('pid', '?')}{where}, since {when})"


class ProjectLock:
    """The lock of one project folder, held until ``release`` (or the process ends)."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: Optional[int] = fd

    @classmethod
    def acquire(cls, root: Path, who: str) -> "ProjectLock":
        """Take the lock of the project in ``root``; ``ProjectBusy`` when someone has it.

        ``who`` names the holder for others' messages ("the editor", "specula import").
        """
        path = Path(root) / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if not _try_lock(fd):
                try:
                    info = json.loads(os.pread(fd, 4096, 0) or b"{}")
                except (OSError, ValueError):
                    info = {}
                raise ProjectBusy(_describe(info if isinstance(info, dict) else {}))
            text = json.dumps({"who": who, "pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
            os.ftruncate(fd, 0)
            os.pwrite(fd, text.encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)  # closing the descriptor lets go of the lock
            self._fd = None

    def __del__(self) -> None:
        self.release()


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows: lock the file's first byte instead
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
