"""The Python floor (``requires-python``) holds: checked statically by vermin, and quickstart
refuses an older interpreter up front.

vermin reads the code with the running interpreter's parser and reports the newest Python
its features need (``tomllib``: 3.11, ``itertools.batched``: 3.12, ...). ``--pessimistic``
turns a file this interpreter cannot parse (a 3.12 f-string, say) into "not Python 3 at
all" instead of skipping it, and ``--eval-annotations`` counts annotations as evaluated,
so that ``X | Y`` or ``list[int]`` in them are counted too.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the installed packages (pyproject's setuptools list) and the code run on the same interpreter
SCANNED = ("specula", "appinfo", "annotation", "inference", "training", "desktop", "assets",
           "packaging", "bench", "scripts", "tests")


def _floor() -> tuple[int, int]:
    spec = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)", spec.strip())
    assert match, f"requires-python should be a plain floor like '>=3.11', not {spec!r}"
    return int(match[1]), int(match[2])


def _vermin(paths: list[str], floor: tuple[int, int], cwd: Path) -> tuple[int, str, str]:
    """(exit code, minimum Python 3 it reports -- a version, or '!3' for 'not Python 3' --, output)."""
    vermin = Path(sys.executable).with_name("vermin")
    cmd = [str(vermin)] if vermin.exists() else [sys.executable, "-m", "vermin"]
    cmd += [
        "--no-config-file", "--no-tips", "--eval-annotations", "--pessimistic",
        "--violations", f"--target={floor[0]}.{floor[1]}-", "--format", "parsable",
        # vermin reads every ``.decode(...)`` as Python 2's str.decode (a py2-only feature):
        # here it is always bytes.decode, and only the Python 3 minimum matters
        "--exclude", "str.decode",
        *paths,
    ]
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    # the last line is the verdict, ':::PY2:PY3:' (e.g. ':::!2:3.11:')
    verdicts = [line for line in out.stdout.splitlines() if line.startswith(":::")]
    assert verdicts, f"no verdict from vermin:\n{text}"
    return out.returncode, verdicts[-1].split(":")[4], text


def _within(found: str, floor: tuple[int, int]) -> bool:
    match = re.fullmatch(r"(\d+)\.(\d+)", found)
    return bool(match) and (int(match[1]), int(match[2])) <= floor


def test_code_needs_no_python_newer_than_the_floor() -> None:
    floor = _floor()
    rc, found, text = _vermin([p for p in SCANNED if (REPO / p).is_dir()], floor, REPO)
    assert rc == 0 and _within(found, floor), (
        f"vermin says the code needs Python {found}, above requires-python >={floor[0]}.{floor[1]}:\n{text}"
    )


@pytest.mark.parametrize(
    "source",
    [
        "import itertools\npairs = list(itertools.batched([1, 2, 3], 2))\n",  # 3.12 library
        'd = {"k": 1}\ns = f"{d["k"]}"\n',  # a 3.12 f-string: no parse on 3.11
    ],
    ids=["itertools-batched", "pep701-fstring"],
)
def test_the_check_catches_newer_code(tmp_path: Path, source: str) -> None:
    """The check is not vacuous: code that needs 3.12 fails it."""
    (tmp_path / "newer.py").write_text(source, encoding="utf-8")
    rc, found, text = _vermin(["newer.py"], (3, 11), tmp_path)
    assert not (rc == 0 and _within(found, (3, 11))), text


@pytest.mark.skipif(os.name == "nt", reason="quickstart is a bash script")
def test_quickstart_refuses_an_older_python(tmp_path: Path) -> None:
    """One line naming what it found, what it needs and how to pick another; nothing installed."""
    floor = _floor()
    need, older = f"{floor[0]}.{floor[1]}", f"{floor[0]}.{floor[1] - 1}"
    text = (REPO / "quickstart").read_text(encoding="utf-8")
    assert f"NEED={need} " in text, "quickstart's NEED must equal requires-python"
    (tmp_path / "quickstart").write_text(text, encoding="utf-8")  # it works in its own folder
    old = tmp_path / f"python{older}"
    old.write_text(f"#!/bin/sh\necho {older}\n", encoding="utf-8")  # answers the version query only
    old.chmod(0o755)
    env = dict(os.environ, PYTHON=str(old))
    out = subprocess.run(["bash", str(tmp_path / "quickstart"), "--install-only"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr == (
        f"quickstart: {old} is Python {older}; Specula needs Python {need} or newer "
        f"(pick another with: PYTHON=python{need} ./quickstart)\n"
    )
    assert not (tmp_path / ".venv").exists()
