"""Heavy libraries stay lazy, and the label-only paths load neither Qt nor torch.

Which package may import which (the layers of DESIGN.md, no Qt in the core, no torch in
annotation) is checked by import-linter's contracts in pyproject.toml, run by
tests/test_import_contracts.py. import-linter counts an import inside a function as an
import like any other, so whether torch, onnxruntime and Qt are imported only inside
functions (lazily) is checked here.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# modules that may only be imported inside functions (lazy), never at module level
LAZY_ONLY = {
    "inference": {"torch", "torchvision"},
    # training's networks are torch modules by nature; its entry points must stay
    # light so that `specula --help` and the field bundle work without torch
    "training/cli.py": {"torch", "torchvision", "onnx"},
    "training/__init__.py": {"torch", "torchvision", "onnx"},
    "desktop": {"torch", "torchvision", "onnxruntime"},
    "specula": {"torch", "torchvision", "onnxruntime", "PySide6"},
    # the About text reports Qt, ONNX Runtime and torch; the CLI imports appinfo for the
    # version alone
    "appinfo": {"torch", "torchvision", "onnxruntime", "PySide6"},
}


def _module_level_imports(tree: ast.Module) -> list[tuple[str, int]]:
    """(top-level module, line) for each import that runs when the module is imported."""
    out = []
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.If, ast.Try, ast.ExceptHandler, ast.With)):
            # module-level conditionals still run at import (TYPE_CHECKING excepted)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            stack.extend(ast.iter_child_nodes(node))
            continue
        if isinstance(node, ast.Import):
            out += [(a.name.split(".")[0], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module.split(".")[0], node.lineno))
    return out


def _sources(package: str) -> list[Path]:
    if package.endswith(".py"):
        return [REPO / package] if (REPO / package).exists() else []
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(LAZY_ONLY))
def test_heavy_libraries_imported_lazily(package: str) -> None:
    bad = []
    for path in _sources(package):
        for mod, line in _module_level_imports(ast.parse(path.read_text())):
            if mod in LAZY_ONLY[package]:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {mod} at module level")
    assert not bad, "\n".join(bad)


def test_annotation_runs_without_qt_or_torch() -> None:
    """Import every annotation module in a fresh interpreter and check what got loaded."""
    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts)
        for p in _sources("annotation")
        if p.name != "__main__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m.replace('.__init__', ''))\n"
        "bad = [m for m in ('PySide6', 'torch', 'torchvision') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"annotation pulled in {out.stdout.strip()}"


def test_label_commands_never_load_qt_or_torch(tmp_path: Path) -> None:
    """`specula stats` (a label-only command) runs without importing Qt or torch."""
    (tmp_path / "p").mkdir()
    code = (
        "import sys\n"
        "from specula.cli import main\n"
        f"rc = main(['stats', {str(tmp_path / 'p')!r}])\n"
        "print('LOADED', [m for m in ('PySide6', 'torch') if m in sys.modules])\n"
        "sys.exit(rc)\n"
    )
    # stats on a folder that is not a project yet must fail cleanly, not create one
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert "LOADED []" in out.stdout
    assert out.returncode == 2 and "not a Specula project" in out.stderr
