"""Labelling-effort benchmark, as a script: ``python bench/effort.py --dataset cracks-cfd --limit 20 ...``.

The same as ``specula bench effort`` (the options are those of that command); the
simulated annotator lives in ``annotation.effort`` so the application, the tests and
this script share one implementation.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from specula.bench_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", "effort", *sys.argv[1:]]))
