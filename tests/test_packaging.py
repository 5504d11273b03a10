"""The field bundle holds no torch: proved three ways, none of which builds the bundle.

1. ``test_field_analysis_holds_no_torch`` (slow, needs PyInstaller): runs the real
   PyInstaller Analysis of ``packaging/field.spec`` (stopped before anything is copied,
   ``SPECULA_ANALYSIS_ONLY``) and checks every module, binary and data file that would go
   into the bundle, after the spec's filters: no torch/torchvision/functorch/triton/
   training module, no libtorch/libc10/cuDNN library; onnxruntime's providers, the Qt
   platform plugins and the assets are in; no Qt module we do not use.
2. ``test_field_code_reaches_torch_only_lazily`` (fast, static): walks the imports of our
   own packages from the field entry point (specula.cli, its subcommand modules minus
   training, the desktop, the headless job). It proves that no chain of module-level
   imports inside OUR code reaches torch/torchvision/training, and lists the only places
   torch is imported at all (inside functions, in inference's torch runtime/pipelines).
   It does not look inside third-party packages (the Analysis test covers those).
3. ``test_self_test_passes_with_torch_blocked`` (runtime): runs ``specula self-test`` from
   source with torch, torchvision and training made unimportable, as in the field bundle.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "packaging"))
import bundle_config  # noqa: E402

OURS = ("specula", "appinfo", "annotation", "inference", "desktop", "assets", "training")
FIELD_ROOTS = (
    "specula.cli", "specula.__main__", "specula.project_cli", "specula.selftest", "specula.headless",
    "appinfo.about", "specula.sample", "appinfo.relaunch", "inference.cli", "specula.eval_cli",
    "specula.bench_cli", "desktop.app",
)
HEAVY = ("torch", "torchvision", "training")


# ------------------------------------------------------------------ static import graph
def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(name: str) -> list[tuple[str, bool, int]]:
    """(imported module, at module level?, line) for every import statement in ``name``."""
    path = _module_file(name)
    if path is None:
        return []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner_lazy = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # never runs
            if isinstance(child, ast.Import):
                out.extend((a.name, not lazy, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - child.level + 1])
                    mod = f"{base}.{child.module}" if child.module else base
                else:
                    mod = child.module or ""
                out.append((mod, not lazy, child.lineno))
                # `from pkg import sub` imports pkg.sub when sub is a module
                out.extend((f"{mod}.{a.name}", not lazy, child.lineno) for a in child.names if _module_file(f"{mod}.{a.name}"))
            visit(child, inner_lazy)

    visit(tree, False)
    return out


def _with_parents(mod: str) -> list[str]:
    parts = mod.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _eager_closure(roots: tuple[str, ...]) -> tuple[set[str], dict[str, str]]:
    """Our modules loaded at import time from ``roots``, and the external top-level modules they import."""
    seen: set[str] = set()
    external: dict[str, str] = {}
    todo = [m for r in roots for m in _with_parents(r) if _module_file(m)]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        for imp, eager, line in _imports(mod):
            if not eager:
                continue
            top = imp.split(".")[0]
            if top in OURS:
                todo.extend(m for m in _with_parents(imp) if _module_file(m) and m not in seen)
                if top == "training":
                    external.setdefault("training", f"{mod}:{line}")
            else:
                external.setdefault(top, f"{mod}:{line}")
    return seen, external


def test_field_code_reaches_torch_only_lazily() -> None:
    present = tuple(r for r in FIELD_ROOTS if _module_file(r))
    assert "specula.cli" in present and "specula.selftest" in present
    modules, external = _eager_closure(present)
    assert not {m for m in modules if m.split(".")[0] == "training"}, "the field code imports training at load time"
    reached = {k: v for k, v in external.items() if k in HEAVY}
    assert not reached, f"module-level imports reach {reached}"
    # every import of torch in the field packages is inside a function (lazy), and the
    # command plugins never name training except as a string (skipped when absent)
    eager_torch = []
    for package in ("specula", "annotation", "inference", "desktop"):
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            eager_torch += [f"{name}:{ln} {imp}" for imp, eager, ln in _imports(name) if eager and imp.split(".")[0] in HEAVY]
    assert not eager_torch, eager_torch


def test_cli_skips_the_training_command_when_training_is_absent() -> None:
    code = (
        "import sys; sys.modules.update(dict.fromkeys(['torch', 'torchvision', 'training', 'training.cli']))\n"
        "from specula.cli import build_parser\n"
        "p = build_parser(); cmds = set(p._subparsers._group_actions[0].choices)\n"
        "print(sorted(cmds)); assert 'self-test' in cmds and 'train' not in cmds\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_self_test_passes_with_torch_blocked(tmp_path: Path) -> None:
    """What the field bundle runs, from source: torch, torchvision and training unimportable."""
    code = (
        "import sys; sys.modules.update(dict.fromkeys(['torch', 'torchvision', 'training']))\n"
        "from specula.cli import main\n"
        "rc = main(['self-test'])\n"
        "assert not [m for m in ('torch', 'torchvision') if sys.modules.get(m) is not None]\n"
        "sys.exit(rc)\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", SPECULA_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok     torch: not installed" in out.stdout
    assert "ok     propose: " in out.stdout and "ok     reimport: " in out.stdout


# ------------------------------------------------------------------ spec data, no build
def test_version_comes_from_the_one_module() -> None:
    from appinfo import __version__

    assert bundle_config.read_version() == __version__
    for kind in bundle_config.KINDS:
        spec = (REPO / "packaging" / f"{kind}.spec").read_text()
        assert "read_version()" in spec and "__version__ =" not in spec


def test_spec_filters() -> None:
    keep = bundle_config.keep_entry
    site = "/venv/lib/python3.11/site-packages"
    assert not keep("field", "torch/lib/libtorch_cpu.so", f"{site}/torch/lib/libtorch_cpu.so")
    assert not keep("field", "nvidia/cudnn/lib/libcudnn.so.9", f"{site}/nvidia/cudnn/lib/libcudnn.so.9")
    assert not keep("field", "libcublasLt.so.13", f"{site}/nvidia/cu13/lib/libcublasLt.so.13")
    assert keep("workstation", "nvidia/cudnn/lib/libcudnn.so.9", f"{site}/nvidia/cudnn/lib/libcudnn.so.9")
    cuda_provider = "onnxruntime/capi/libonnxruntime_providers_cuda.so"
    assert keep("field", cuda_provider, f"{site}/{cuda_provider}")
    assert not keep("field", cuda_provider, f"{site}/{cuda_provider}", cpu_only=True)
    assert not keep("field", "onnxruntime/capi/libonnxruntime_providers_tensorrt.so", "")
    assert keep("field", "PySide6/Qt/plugins/platforms/libqxcb.so", "")
    assert keep("field", "PySide6/Qt/plugins/platforms/libqoffscreen.so", "")
    assert not keep("field", "PySide6/Qt/plugins/platforms/libqvnc.so", "")
    assert not keep("field", "PySide6/Qt/plugins/sqldrivers/libqsqlite.so", "")
    assert not keep("field", "PySide6/Qt/lib/libQt6Qml.so.6", "")
    assert keep("field", "PySide6/Qt/lib/libQt6Widgets.so.6", "")
    assert keep("field", "PySide6/Qt/translations/qtbase_de.qm", "")
    assert not keep("field", "PySide6/Qt/translations/qtdeclarative_de.qm", "")
    assert not keep("field", "assets/sample_project/specula.db", "")
    assert keep("field", "assets/sample_project/hallway.jpg", "")
    forbidden = bundle_config.forbidden_in_field
    assert forbidden(["torch", "torch._C", "torchvision.ops", "training.cli", "functorch", "torch/lib/libc10.so",
                      "nvidia/cudnn/lib/libcudnn.so.9"]) == ["torch", "torch._C", "torchvision.ops", "training.cli",
                                                             "functorch", "torch/lib/libc10.so",
                                                             "nvidia/cudnn/lib/libcudnn.so.9"]
    assert forbidden(["torchlike", "inference.runtime", "onnxruntime/capi/libonnxruntime_providers_cuda.so"]) == []


# ------------------------------------------------------------------ the real Analysis
@pytest.mark.slow
def test_field_analysis_holds_no_torch(tmp_path: Path) -> None:
    pytest.importorskip("PyInstaller", reason="PyInstaller is not installed (pip install pyinstaller)")
    report = tmp_path / "analysis.json"
    env = dict(os.environ, SPECULA_ANALYSIS_ONLY=str(report))
    cmd = [
        sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
        "--distpath", str(tmp_path / "dist"), "--workpath", str(tmp_path / "build"),
        str(REPO / "packaging" / "field.spec"),
    ]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    data = json.loads(report.read_text())
    assert not (tmp_path / "dist" / "specula").exists(), "the analysis-only run must not build"
    everything = data["modules"] + data["binaries"] + data["datas"]
    assert bundle_config.forbidden_in_field(everything) == []
    modules = set(data["modules"])
    for needed in ("specula.cli", "specula.selftest", "specula.headless", "appinfo.about", "annotation.store",
                   "inference.engine", "desktop.app", "onnxruntime", "pycocotools.mask", "shapely",
                   "PIL.Image", "numpy", "PySide6.QtWidgets"):
        assert needed in modules, f"{needed} is missing from the field bundle"
    assert any(m.startswith("cv2.cv2") for m in modules), "OpenCV is missing from the field bundle"
    qt_modules = {m.split(".")[1] for m in modules if m.startswith("PySide6.Qt")}
    assert qt_modules <= {"QtCore", "QtGui", "QtWidgets"}, qt_modules
    binaries = data["binaries"]
    assert any(b.endswith("libonnxruntime_providers_cuda.so") for b in binaries)
    assert any(b.endswith("platforms/libqoffscreen.so") for b in binaries)
    assert any(b.endswith("platforms/libqxcb.so") for b in binaries)
    assert not [b for b in binaries if "libQt6Qml" in b or "libQt6Quick" in b or "WebEngine" in b]
    datas = data["datas"]
    assert any(d.startswith("assets/palettes/") for d in datas)
    assert any(d.startswith("assets/sample_project/") for d in datas)
    assert any(d.startswith("assets/sample_inspection/") for d in datas)
    assert "specula_bundle.txt" in datas
