"""Terminal progress for long jobs: a tqdm bar on stderr, fed by (done, total) calls."""
from __future__ import annotations



class TerminalProgress:
    """Callable ``progress(done, total)`` that drives one tqdm bar; use as a context manager."""

    def __init__(self, description: str, unit: str = "it"):
        self.description = description
        self.unit = unit
        self._bar = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self._bar is not None and done < self._bar.n:  # a job's next phase starts over
            self._bar.close()
            self._bar = None
        if self._bar is None:
            # disable=None: no bar when stderr is not a terminal (logs stay readable)
            self._bar = tqdm(
                total=total, desc=self.description, unit=self.unit, leave=True, dynamic_ncols=True, disable=None
            )
        if total != self._bar.total:
            self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def __enter__(self) -> "TerminalProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


