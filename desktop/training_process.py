"""Training as a separate process (STYLE.md item 9): ``specula train PROJECT --task T
--epochs N --json`` started with ``QProcess``; its JSON lines come back as ``event``
signals, never blocking the GUI. Stop is terminate, a grace period, then kill."""
from __future__ import annotations

import json
from typing import Optional, Sequence

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from appinfo.relaunch import own_command

GRACE_MS = 3000
STDERR_KEEP = 20000


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


class TrainingProcess(QObject):
    started = Signal(list)  # the command line
    event = Signal(dict)  # each JSON line
    output = Signal(str)  # any other stdout line
    finished = Signal(bool, str)  # ok, message (the reason on failure, with stderr's tail)

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.proc: Optional[QProcess] = None
        self._buf = b""
        self.stderr = ""
        self.error_event: Optional[str] = None
        self.stopping = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.state() != QProcess.ProcessState.NotRunning

    def start(self, cmd: Sequence[str], cwd: Optional[str] = None) -> None:
        if self.running:
            raise RuntimeError("training is already running")
        self._buf, self.stderr, self.error_event, self.stopping = b"", "", None, False
        p = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        p.setProcessEnvironment(env)
        if cwd:
            p.setWorkingDirectory(cwd)
        p.readyReadStandardOutput.connect(self._stdout)
        p.readyReadStandardError.connect(self._stderr)
        p.finished.connect(self._finished)
        p.errorOccurred.connect(self._error)
        self.proc = p
        p.start(cmd[0], list(cmd[1:]))
        self.started.emit(list(cmd))

    def stop(self) -> None:
        """Terminate; kill after a grace period if it is still running (never blocks)."""
        if not self.running:
            return
        self.stopping = True
        p = self.proc
        p.terminate()
        # the process is the timer's context: if it is deleted first, the timer goes with it
        QTimer.singleShot(GRACE_MS, p, lambda: p.kill() if p.state() != QProcess.ProcessState.NotRunning else None)

    def shutdown(self) -> None:
        """Stop and wait for the end (the project is closing): terminate, then kill after
        the grace period; returns once the process is gone."""
        if not self.running:
            return
        self.stopping = True
        p = self.proc
        p.terminate()
        if not p.waitForFinished(GRACE_MS):
            p.kill()
            p.waitForFinished(GRACE_MS)

    def _stdout(self) -> None:
        self._buf += bytes(self.proc.readAllStandardOutput())
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
            self.event.emit(ev)

    def _stderr(self) -> None:
        self.stderr = (self.stderr + bytes(self.proc.readAllStandardError()).decode("utf-8", "replace"))[-STDERR_KEEP:]

    def _error(self, err) -> None:
        if err == QProcess.ProcessError.FailedToStart:
            cmd = " ".join([self.proc.program(), *self.proc.arguments()])
            self.finished.emit(False, f"Training could not start ({cmd}): {self.proc.errorString()}")
            self.proc = None

    def _finished(self, code: int, status) -> None:
        if self._buf:
            self._buf += b"\n"
            self._stdout()
        if self.stopping:
            ok, msg = False, "Training stopped"
        elif status == QProcess.ExitStatus.NormalExit and code == 0:
            ok, msg = True, "Training finished"
        else:
            tail = "\n".join(self.stderr.strip().splitlines()[-12:])
            reason = self.error_event or (tail.splitlines()[-1] if tail else "no message")
            ok, msg = False, f"Training failed (exit code {code}): {reason}" + (f"\n\n{tail}" if tail else "")
        self.finished.emit(ok, msg)
