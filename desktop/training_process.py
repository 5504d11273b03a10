"""Training as a separate process (STYLE.md item 9): ``specula train PROJECT --task T
--epochs N --json``, our own executable relaunched.

The process runs in a session of its own and writes its JSON lines and its error output
into a run folder (``<project>/.specula/training/<start time>/``), which the panel reads
as they grow. So the window never blocks on it, and a run the user chose to keep when
closing the window goes on, finishes and publishes its model without the window; opening
the project again finds it (``TrainingProcess.find_running``) and shows it again. Stop is
terminate, a grace period, then kill.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence

from PySide6.QtCore import QObject, QTimer, Signal

from appinfo.relaunch import own_command

GRACE_MS = 3000
POLL_MS = 200
STDERR_KEEP = 20000
RUNS_FOLDER = Path(".specula") / "training"


def train_command(project: str, task: str, epochs: int, extra: Sequence[str] = ()) -> list[str]:
    """The command line that trains ``project`` (our own executable, frozen or not)."""
    return own_command("train", str(project), "--task", task, "--epochs", str(int(epochs)), "--json", *extra)


def parse_line(line: str) -> Optional[dict]:
    """One JSON event (a dict with ``event``), or None for any other output."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "event" in data else None


# runs this process started and then let go of (kept when their project closed): still
# our children, so they must be waited for here, or an ended one would linger as a zombie
# that looks alive to os.kill(pid, 0)
_KEPT: dict[int, subprocess.Popen] = {}


def _alive(pid: int) -> bool:
    kept = _KEPT.get(pid)
    if kept is not None:
        return kept.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now has that number: not ours
        return False
    return True


class TrainingProcess(QObject):
    """One training run at a time. ``event`` per JSON line, ``output`` per other line,
    ``finished(ok, message)`` once (with the reason and the error output's tail on failure)."""

    started = Signal(list)  # the command line
    event = Signal(dict)  # each JSON line
    output = Signal(str)  # any other stdout line
    finished = Signal(bool, str)

    def __init__(self, runs_dir: Optional[Path] = None, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.runs_dir = Path(runs_dir) if runs_dir is not None else None
        self.folder: Optional[Path] = None
        self._popen: Optional[subprocess.Popen] = None  # when this window started it
        self.pid: Optional[int] = None
        self._offset = 0
        self._buf = b""
        self.stderr = ""
        self.error_event: Optional[str] = None
        self.published = False
        self.stopping = False
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)

    # ------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        return self.pid is not None

    def _run_folder(self) -> Path:
        base = self.runs_dir if self.runs_dir is not None else Path.cwd() / RUNS_FOLDER
        folder = base / time.strftime("%Y%m%d-%H%M%S")
        n = 1
        while folder.exists():
            n += 1
            folder = base / f"{time.strftime('%Y%m%d-%H%M%S')}-{n}"
        folder.mkdir(parents=True)
        return folder

    # ------------------------------------------------------------ start, attach
    def start(self, cmd: Sequence[str], cwd: Optional[str] = None) -> None:
        if self.running:
            raise RuntimeError("training is already running")
        self._reset()
        self.folder = folder = self._run_folder()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        extra = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        try:
            with open(folder / "events.jsonl", "wb") as out, open(folder / "stderr.log", "wb") as err:
                self._popen = subprocess.Popen(list(cmd), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                               cwd=cwd, env=env, **extra)
        except OSError as exc:
            self.finished.emit(False, f"Training could not start ({' '.join(cmd)}): {exc.strerror or exc}")
            return
        self.pid = self._popen.pid
        (folder / "run.json").write_text(json.dumps({"pid": self.pid, "cmd": list(cmd), "started": time.time()}))
        self._timer.start()
        self.started.emit(list(cmd))

    @classmethod
    def find_running(cls, runs_dir: Path) -> Optional[Path]:
        """The folder of a run in ``runs_dir`` whose process still runs (a run kept when the
        window closed), or None."""
        if not runs_dir.is_dir():
            return None
        for folder in sorted(runs_dir.iterdir(), reverse=True):
            try:
                info = json.loads((folder / "run.json").read_text())
            except (OSError, ValueError):
                continue
            if isinstance(info, dict) and isinstance(info.get("pid"), int) and not (folder / "ended").exists() \
                    and _alive(info["pid"]):
                return folder
        return None

    def attach(self, folder: Path) -> bool:
        """Show a run this window did not start (it went on while the project was closed)."""
        if self.running:
            return False
        try:
            info = json.loads((folder / "run.json").read_text())
        except (OSError, ValueError):
            return False
        self._reset()
        self.folder, self.pid = folder, int(info["pid"])
        self._timer.start()
        self.started.emit(list(info.get("cmd", [])))
        self._poll()
        return True

    def _reset(self) -> None:
        self._offset, self._buf, self.stderr, self.error_event = 0, b"", "", None
        self.published = self.stopping = False
        self._popen = None

    # ------------------------------------------------------------ stop
    def _signal(self, sig: int) -> None:
        if self.pid is None:
            return
        try:
            if os.name == "posix":
                os.killpg(self.pid, sig)  # the run and anything it started
            else:
                os.kill(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self) -> None:
        """Terminate; kill after a grace period if it is still running (never blocks)."""
        if not self.running:
            return
        self.stopping = True
        self._signal(signal.SIGTERM)
        pid = self.pid
        QTimer.singleShot(GRACE_MS, self, lambda: self._signal(signal.SIGKILL) if self.pid == pid else None)

    def shutdown(self) -> None:
        """Stop and wait for the end (the project is closing): terminate, then kill after
        the grace period; returns once the process is gone."""
        if not self.running:
            return
        self.stopping = True
        self._signal(signal.SIGTERM)
        end = time.monotonic() + GRACE_MS / 1000
        while time.monotonic() < end and self._exit_code() is None:
            time.sleep(0.05)
        if self._exit_code() is None:
            self._signal(signal.SIGKILL)
            time.sleep(0.1)
        self._poll()

    def detach(self) -> None:
        """Let the run go on without this window (it still publishes its model)."""
        self._timer.stop()
        if self._popen is not None:
            _KEPT[self._popen.pid] = self._popen
        self.pid = None
        self._popen = None

    # ------------------------------------------------------------ reading
    def _exit_code(self) -> Optional[int]:
        """The exit code once the run ended (-1 when it is not our child and ended), else None."""
        if self._popen is not None:
            return self._popen.poll()
        if self.pid is not None and not _alive(self.pid):
            return -1
        return None

    def _poll(self) -> None:
        code = self._exit_code()
        self._read()
        if code is not None:
            self._end(code)

    def _read(self) -> None:
        if self.folder is None:
            return
        try:
            with open(self.folder / "events.jsonl", "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return
        self._offset += len(chunk)
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for raw in lines:
            text = raw.decode("utf-8", "replace")
            ev = parse_line(text)
            if ev is None:
                if text.strip():
                    self.output.emit(text)
                continue
            if ev.get("event") == "error":
                self.error_event = str(ev.get("message", ""))
            if ev.get("event") == "published":
                self.published = True
            self.event.emit(ev)

    def _end(self, code: int) -> None:
        self._timer.stop()
        if self._buf:
            self._buf += b"\n"
            self._read()
        try:
            self.stderr = (self.folder / "stderr.log").read_bytes()[-STDERR_KEEP:].decode("utf-8", "replace")
            (self.folder / "ended").write_text(str(code))
        except OSError:
            pass
        self.pid, self._popen = None, None
        if self.stopping:
            ok, msg = False, "Training stopped"
        elif code == 0 or (code == -1 and self.published):
            ok, msg = True, "Training finished"
        elif code == -1 and not self.error_event:
            ok, msg = False, "Training ended without publishing a model (it ran without this window)"
        else:
            tail = "\n".join(self.stderr.strip().splitlines()[-12:])
            reason = self.error_event or (tail.splitlines()[-1] if tail else "no message")
            shown = "unknown" if code == -1 else str(code)
            ok, msg = False, f"Training failed (exit code {shown}): {reason}" + (f"\n\n{tail}" if tail else "")
        self.finished.emit(ok, msg)


def runs_dir_of(project_root: Path) -> Path:
    """Where a project's training runs write their output."""
    return Path(project_root) / RUNS_FOLDER

