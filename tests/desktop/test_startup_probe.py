"""The start-up probe the packaging benchmark uses: SPECULA_STARTUP_PROBE=1 makes
``desktop.app.run`` print ``startup_ms=<ms>`` once the window is painted, then exit 0."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from desktop_helpers import REPO


def test_startup_probe_prints_and_exits(tmp_path, project):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", SPECULA_STARTUP_PROBE="1",
               SPECULA_HOME=str(tmp_path / "home"), SPECULA_T0=f"{time.time():.3f}")
    code = "import sys; from desktop.app import run; sys.exit(run(sys.argv[1]))"
    r = subprocess.run([sys.executable, "-c", code, str(project)], capture_output=True, text=True, env=env,
                       timeout=120, cwd=str(REPO))
    assert r.returncode == 0, r.stderr
    m = re.search(r"^startup_ms=(\d+)$", r.stdout, re.M)
    assert m, r.stdout
    assert 0 < int(m.group(1)) < 120000
