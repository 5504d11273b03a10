"""The layers of DESIGN.md, checked by import-linter (``lint-imports``, contracts in pyproject.toml).

``test_import_contracts_hold`` runs ``lint-imports`` on the project. The other tests copy
the packages and pyproject.toml into a temporary folder, break one contract there, and check
that ``lint-imports`` run in that folder fails and names the contract and the import. It
analyses the copy: ``lint-imports`` puts its working folder first on ``sys.path`` (ahead of
the editable install's finder), and each broken import exists only in the copy.

Whether torch, onnxruntime and Qt are imported lazily is not import-linter's business (an
import inside a function is an import to it): tests/test_layering.py checks that.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
ROOTS: list[str] = CONFIG["root_packages"]
LAYERS = "Layers of DESIGN.md"
NO_QT = "The core never imports Qt"
NO_TORCH = "annotation never imports torch or onnxruntime"


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        found = shutil.which("lint-imports")
        assert found, "lint-imports is missing: pip install -e '.[dev]' (import-linter)"
        exe = Path(found)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(cwd)  # the packages under cwd, never another checkout
    env["COLUMNS"] = "200"  # rich wraps long lines at the terminal's width
    return subprocess.run([str(exe), "--no-cache", "--no-logo"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_contracts_cover_every_package_and_the_layer_order() -> None:
    layers = next(c for c in CONFIG["contracts"] if c["type"] == "layers")
    assert layers["name"] == LAYERS
    assert layers["layers"] == ["specula", "training | desktop", "appinfo", "inference", "annotation", "assets"]
    listed = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    assert listed == set(ROOTS), "every root package sits in a layer"
    assert CONFIG["include_external_packages"] is True  # the forbidden contracts name PySide6, torch
    ours = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert ours <= set(ROOTS) | {"tests", "bench", "scripts", "packaging"}, ours - set(ROOTS)


def test_import_contracts_hold() -> None:
    out = _lint(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


# ------------------------------------------------------------------ a broken copy fails
def _copy(tmp_path: Path) -> Path:
    """The root packages' Python files and pyproject.toml under tmp_path/project."""
    dst = tmp_path / "project"
    for package in ROOTS:
        for src in (REPO / package).rglob("*.py"):
            if "__pycache__" not in src.parts:
                target = dst / src.relative_to(REPO)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target)
    shutil.copyfile(REPO / "pyproject.toml", dst / "pyproject.toml")
    return dst


def _append(path: Path, line: str) -> int:
    """Append ``line`` at the end of a module; returns its line number."""
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text += "\n"
    text += line + "  # added by the test\n"
    path.write_text(text, encoding="utf-8")
    return text.count("\n")


def _add_bridge(project: Path, imports: str) -> None:
    """A package ``bridge`` outside every layer (a new root package), so that a chain
    ``x -> bridge -> y`` has no single link a layer forbids: only the whole chain is upward."""
    (project / "bridge").mkdir()
    (project / "bridge" / "__init__.py").write_text(imports + "\n", encoding="utf-8")
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    old = "root_packages = ["
    assert text.count(old) == 1
    pyproject.write_text(text.replace(old, old + '"bridge", '), encoding="utf-8")


def _assert_broken(out: subprocess.CompletedProcess, contract: str, expected: list[str]) -> None:
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert f"{contract} BROKEN" in out.stdout, text
    broken = out.stdout.split("Broken contracts", 1)[-1]
    for line in expected:
        assert line in broken, f"{line!r} not in the report:\n{text}"


def test_direct_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    project = _copy(tmp_path)
    line = _append(project / "annotation" / "mask.py", "import desktop")
    _assert_broken(_lint(project), LAYERS, [
        "annotation is not allowed to import desktop:",
        f"- annotation.mask -> desktop (l.{line})",
    ])


def test_transitive_upward_chain_breaks_the_layers(tmp_path: Path) -> None:
    project = _copy(tmp_path)
    _add_bridge(project, "import desktop")
    line = _append(project / "annotation" / "mask.py", "import bridge")
    _assert_broken(_lint(project), LAYERS, [
        "annotation is not allowed to import desktop:",
        f"annotation.mask -> bridge (l.{line})",
        "bridge -> desktop (l.1)",
    ])


@pytest.mark.parametrize(
    ("importer", "imported"), [("desktop/app.py", "training"), ("training/cli.py", "desktop")]
)
def test_training_and_desktop_stay_independent(tmp_path: Path, importer: str, imported: str) -> None:
    project = _copy(tmp_path)
    line = _append(project / importer, f"import {imported}")
    module = importer.removesuffix(".py").replace("/", ".")
    _assert_broken(_lint(project), LAYERS, [
        f"{module.split('.')[0]} is not allowed to import {imported}:",
        f"- {module} -> {imported} (l.{line})",
    ])


def test_qt_through_a_chain_breaks_the_core_contract(tmp_path: Path) -> None:
    project = _copy(tmp_path)
    _add_bridge(project, "from PySide6 import QtCore")
    line = _append(project / "inference" / "registry.py", "import bridge")
    _assert_broken(_lint(project), NO_QT, [
        "inference is not allowed to import PySide6:",
        f"inference.registry -> bridge (l.{line})",
        "bridge -> PySide6 (l.1)",
    ])


def test_onnxruntime_in_annotation_breaks_its_contract(tmp_path: Path) -> None:
    project = _copy(tmp_path)
    line = _append(project / "annotation" / "palette.py", "import onnxruntime")
    _assert_broken(_lint(project), NO_TORCH, [
        "annotation is not allowed to import onnxruntime:",
        f"annotation.palette -> onnxruntime (l.{line})",
    ])
