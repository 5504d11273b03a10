"""What goes into the bundles, proved without building one.

The field bundle holds no torch: proved three ways, none of which builds the bundle.

1. ``test_field_analysis_holds_no_torch`` (slow, needs PyInstaller): runs the real
   PyInstaller Analysis of ``packaging/field.spec`` (stopped before anything is copied,
   ``SPECULA_ANALYSIS_ONLY``) and checks every module, binary and data file that would go
   into the bundle, after the spec's filters: no torch/torchvision/functorch/triton/
   training module, no libtorch/libc10/cuDNN library, no CUDA provider (the add-on's);
   the Qt platform plugins and the assets are in; no Qt module we do not use, none of the
   modules and libraries trimmed for size.
2. ``test_field_code_reaches_torch_only_lazily`` (fast, static): walks the imports of our
   own packages from the field entry point (specula.cli, its subcommand modules minus
   training, the desktop, the headless job). It proves that no chain of module-level
   imports inside OUR code reaches torch/torchvision/training, and lists the only places
   torch is imported at all (inside functions, in inference's torch runtime/pipelines).
   It does not look inside third-party packages (the Analysis test covers those).
3. ``test_self_test_passes_with_torch_blocked`` (runtime): runs ``specula self-test`` from
   source with torch, torchvision and training made unimportable, as in the field bundle.

Then the parts of the size work and the GPU paths that run without a build: the ICU data
trim (Qt still collates, case-maps and draws text the same), the ELF reader and the pruning
of libraries only dropped binaries needed, the X11 plugin check, the CUDA add-on's loader
(which onnxruntime is imported, what is reported missing), the add-on's folder as built
from this venv, and scripts/gpu_check.sh on a machine without a GPU.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "packaging"))
import bundle_check  # noqa: E402
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
    # the CUDA provider is the add-on's, never the field bundle's; the workstation (torch
    # brings CUDA) keeps it
    cuda_provider = "onnxruntime/capi/libonnxruntime_providers_cuda.so"
    assert not keep("field", cuda_provider, f"{site}/{cuda_provider}")
    assert keep("workstation", cuda_provider, f"{site}/{cuda_provider}")
    assert not keep("field", "onnxruntime/capi/libonnxruntime_providers_tensorrt.so", "")
    assert keep("field", "onnxruntime/capi/libonnxruntime_providers_shared.so", "")
    assert keep("field", "PySide6/Qt/plugins/platforms/libqxcb.so", "")
    assert keep("field", "PySide6/Qt/plugins/platforms/libqoffscreen.so", "")
    assert not keep("field", "PySide6/Qt/plugins/platforms/libqvnc.so", "")
    assert not keep("field", "PySide6/Qt/plugins/sqldrivers/libqsqlite.so", "")
    assert not keep("field", "PySide6/Qt/lib/libQt6Qml.so.6", "")
    assert keep("field", "PySide6/Qt/lib/libQt6Widgets.so.6", "")
    # no QTranslator is ever installed: no translation ships
    assert not keep("field", "PySide6/Qt/translations/qtbase_de.qm", "")
    assert not keep("workstation", "PySide6/Qt/translations/qtdeclarative_de.qm", "")
    # the GTK theme needs a GTK that cannot be bundled; the portal theme stays
    assert not keep("field", "PySide6/Qt/plugins/platformthemes/libqgtk3.so", "")
    assert keep("field", "PySide6/Qt/plugins/platformthemes/libqxdgdesktopportal.so", "")
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
    # CUDA comes only with the add-on; what only dropped binaries needed is gone with them
    assert not [b for b in binaries if "libonnxruntime_providers_cuda" in b or "tensorrt" in b]
    assert not [b for b in binaries if b.rsplit("/", 1)[-1].startswith(("libgio-2.0", "libcairo.", "libpango-1.0",
                                                                        "libqgtk3"))]
    for module in ("ssl", "_ssl", "_hashlib", "PIL._avif", "PIL._imagingft", "readline"):
        assert module not in modules, f"{module} should be left out of the field bundle"
    assert "_pydecimal" in modules or "decimal" not in modules  # decimal's fallback comes along
    assert any(b.endswith("onnxruntime/capi/libonnxruntime_providers_shared.so") for b in binaries)
    assert any(b.endswith("platforms/libqoffscreen.so") for b in binaries)
    assert any(b.endswith("platforms/libqxcb.so") for b in binaries)
    assert not [b for b in binaries if "libQt6Qml" in b or "libQt6Quick" in b or "WebEngine" in b]
    datas = data["datas"]
    assert any(d.startswith("assets/palettes/") for d in datas)
    assert any(d.startswith("assets/sample_project/") for d in datas)
    assert any(d.startswith("assets/sample_inspection/") for d in datas)
    assert "specula_bundle.txt" in datas
    assert not [d for d in datas if "/translations/" in d]
    assert "cuda_addon" in modules, "the entry point's add-on loader is missing"


def test_field_only_excludes_stay_out_of_the_field_bundle_only() -> None:
    for module in ("ssl", "_hashlib", "_decimal", "readline", "PIL._avif", "PIL._imagingft"):
        assert module in bundle_config.EXCLUDES["field"]
        assert module not in bundle_config.EXCLUDES["workstation"]
    assert bundle_config.FIELD_MAX_BYTES == 400_000_000


# ------------------------------------------------------------------ ICU data
def test_icu_items_kept() -> None:
    kept = bundle_config.icu_item_kept
    # the core, the root locale and English, collation's base table, the break rules
    for item in ("root.res", "en.res", "pool.res", "res_index.res", "cnvalias.icu", "unames.icu", "nfkc.nrm",
                 "likelySubtags.res", "supplementalData.res", "zoneinfo64.res", "coll/root.res", "coll/ucadata.icu",
                 "coll/res_index.res", "brkitr/line.brk", "brkitr/root.res", "zone/en.res", "zone/tzdbNames.res"):
        assert kept(item), item
    # other locales, word-break dictionaries, legacy converters, transliteration
    for item in ("de.res", "zh_Hant_TW.res", "coll/zh.res", "coll/sv.res", "brkitr/cjdict.dict",
                 "brkitr/thaidict.dict", "ibm-1390_P110-2003.cnv", "gb18030.cnv", "translit/root.res",
                 "curr/fr_CA.res", "unit/ja.res"):
        assert not kept(item), item


_QT_ICU_PROBE = textwrap.dedent('''
    import hashlib
    from PySide6 import QtCore, QtGui
    app = QtGui.QGuiApplication(["probe"])
    de = QtCore.QCollator(QtCore.QLocale("de_DE"))
    sv = QtCore.QCollator(QtCore.QLocale("sv_SE"))
    image = QtGui.QImage(320, 40, QtGui.QImage.Format.Format_RGB32)
    image.fill(QtGui.QColor("white"))
    painter = QtGui.QPainter(image)
    painter.drawText(5, 25, "Riss 0,2 mm Überprüfung مرحبا 日本語 ไทย")
    painter.end()
    print("de", de.compare("äpfel", "Apfel"), de.compare("Öl", "ober"), de.compare("a", "b"))
    print("upper", QtCore.QLocale("de_DE").toUpper("straße"), QtCore.QLocale("tr_TR").toUpper("istanbul"))
    print("text", hashlib.sha1(bytes(image.constBits())).hexdigest())
    print("sv", sv.compare("ö", "z"))
    print("sjis", QtCore.QStringDecoder("Shift_JIS").isValid())
''')


@pytest.mark.slow
def test_trimmed_icu_data_keeps_what_qt_does_for_specula(tmp_path: Path) -> None:
    """The trimmed ICU data library, loaded in place of Qt's own: collation (root rules),
    case mapping and text drawing come out the same; what was dropped (Swedish collation
    rules, the Shift_JIS converter) is really gone, so the probe is measuring the trimmed one."""
    import icu_data

    if icu_data.missing_tools():
        pytest.skip(f"cannot trim ICU data here: missing {', '.join(icu_data.missing_tools())}")
    from PySide6 import QtCore

    qt_lib = Path(QtCore.__file__).parent / "Qt" / "lib"
    original = next(iter(sorted(qt_lib.glob("libicudata.so.*"))), None)
    if original is None:
        pytest.skip("this PySide6 has no libicudata")
    trimmed, note = icu_data.trim_icu_data(original, tmp_path / "icu")
    assert trimmed.stat().st_size < 6 * 2**20 < original.stat().st_size, note
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")

    def probe(extra: dict) -> dict[str, str]:
        out = subprocess.run([sys.executable, "-c", _QT_ICU_PROBE], env={**env, **extra}, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return dict(line.split(" ", 1) for line in out.stdout.splitlines())

    full = probe({})
    # a preloaded library with the same soname is the one libicuuc binds to
    cut = probe({"LD_PRELOAD": str(trimmed)})
    for key in ("de", "upper", "text"):
        assert cut[key] == full[key], (key, full[key], cut[key])
    assert full["sjis"] == "True" and cut["sjis"] == "False"
    assert full["sv"] != cut["sv"]  # Swedish sorts ö after z; the root rules do not


# ------------------------------------------------------------------ ELF reading, pruning, X11
def _site() -> Path:
    import numpy

    return Path(numpy.__file__).parents[1]


def test_elf_needed_reads_the_dynamic_section(tmp_path: Path) -> None:
    import onnxruntime

    pybind = next((Path(onnxruntime.__file__).parent / "capi").glob("onnxruntime_pybind11_state*.so"))
    needed = bundle_check.elf_needed(pybind)
    assert "libstdc++.so.6" in needed and "libc.so.6" in needed
    text = tmp_path / "not-elf.so"
    text.write_text("hello")
    with pytest.raises(ValueError):
        bundle_check.elf_needed(text)


def test_prune_orphans_drops_only_what_dropped_binaries_needed() -> None:
    """OpenCV's extension module and its libraries, as the Analysis lists them: dropping the
    module leaves its libraries orphaned, except those that a kept binary still links."""
    libs = _site() / "opencv_python_headless.libs"
    cv2_so = _site() / "cv2" / "cv2.abi3.so"
    if not libs.is_dir() or not cv2_so.is_file():
        pytest.skip("needs the opencv-python-headless wheel")
    entries = [("cv2/cv2.abi3.so", str(cv2_so), "EXTENSION")]
    entries += [(f"opencv_python_headless.libs/{p.name}", str(p), "BINARY") for p in sorted(libs.iterdir())]
    entries.append(("libavformat-link.so", "opencv_python_headless.libs/" + next(libs.glob("libavformat-*")).name,
                    "SYMLINK"))
    by_name = {Path(e[0]).name.split("-")[0]: e for e in entries if e[2] != "SYMLINK"}
    # keep libavformat as if a kept binary were an extension linking it: it and what it links stay
    avformat = by_name["libavformat"]
    kept_root = (avformat[0], avformat[1], "EXTENSION")
    before = [kept_root if e is avformat else e for e in entries]
    after = [e for e in before if e[0] != "cv2/cv2.abi3.so"]
    kept, orphans = bundle_check.prune_orphans(before, after)
    kept_names = {Path(e[0]).name.split("-")[0] for e in kept}
    for still_needed in ("libavformat", "libavcodec", "libavutil", "libvpx", "libswresample", "libssl", "libcrypto"):
        assert still_needed in kept_names, still_needed
    for orphan in ("libopenblasp", "libgfortran", "libquadmath", "libavif", "libaom", "libswscale", "libpng16"):
        assert orphan not in kept_names, orphan
        assert any(Path(o).name.startswith(orphan) for o in orphans)
    assert "libavformat-link.so" in {e[0] for e in kept}  # the link to a kept library stays
    # nothing dropped: nothing orphaned
    assert bundle_check.prune_orphans(before, before) == (before, [])


def test_x11_check_names_the_xcb_libraries_a_bundle_lacks(tmp_path: Path) -> None:
    """PySide6's wheel does not carry libxcb-icccm and libxcb-keysyms, which its xcb plugin
    links: a bundle made only of the wheel's Qt must fail the check, naming each library and
    its Debian package (whether this machine has them or not)."""
    if shutil.which("ldd") is None:
        pytest.skip("needs ldd")
    from PySide6 import QtCore

    qt = Path(QtCore.__file__).parent / "Qt"
    internal = tmp_path / "specula" / "_internal" / "PySide6" / "Qt"
    (internal / "plugins" / "platforms").mkdir(parents=True)
    (internal / "plugins" / "platforms" / "libqxcb.so").symlink_to(qt / "plugins" / "platforms" / "libqxcb.so")
    (internal / "lib").mkdir()
    for lib in (qt / "lib").glob("*.so*"):
        (internal / "lib" / lib.name).symlink_to(lib)
    problems, _from_system = bundle_check.x11_problems(tmp_path / "specula")
    text = "\n".join(problems)
    assert "libxcb-icccm.so.4 (install libxcb-icccm4" in text, text
    assert "libxcb-keysyms.so.1 (install libxcb-keysyms1" in text, text
    assert "libxcb-cursor.so.0" in text  # loaded at run time by the plugin: must be bundled too
    assert not [p for p in problems if p.startswith(("libGL.so", "libEGL.so", "libc.so", "libxcb.so.1"))]


# ------------------------------------------------------------------ the CUDA add-on
def _fake_addon(exe_dir: Path, python: str | None = None, lib_files: tuple[str, ...] = ()) -> Path:
    """An add-on folder whose onnxruntime is a stand-in package that says where it comes from."""
    import cuda_addon

    folder = exe_dir / bundle_config.ADDON_DIR
    (folder / "onnxruntime" / "capi").mkdir(parents=True)
    (folder / "onnxruntime" / "__init__.py").write_text("FROM_ADDON = True\n")
    (folder / "onnxruntime" / "capi" / "__init__.py").write_text("")
    for name in lib_files:
        (folder / "lib").mkdir(exist_ok=True)
        (folder / "lib" / name).write_bytes(b"")
    manifest = {
        "format": 1, "specula": "0", "onnxruntime": "9.9", "cuda": "13.0",
        "python": python or cuda_addon.python_tag(), "runtime_included": bool(lib_files), "driver": "libcuda.so.1",
        "libraries": [{"soname": s, "what": w, "package": p, "required": r} for s, w, p, r in bundle_config.CUDA_LIBRARIES],
    }
    (folder / bundle_config.ADDON_MANIFEST).write_text(json.dumps(manifest))
    return folder


_ADDON_RUN = textwrap.dedent('''
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    import cuda_addon
    available = set(json.loads(sys.argv[3]))
    calls, reports = [], []
    def loader(name):
        calls.append(name)
        if os.path.basename(name) not in available:
            raise OSError(name + ": cannot open shared object file")
    state = cuda_addon.install(exe_dir=__import__("pathlib").Path(sys.argv[2]), report=reports.append, loader=loader)
    import onnxruntime
    import onnxruntime.capi
    print(json.dumps({
        "state": state is not None, "from_addon": getattr(onnxruntime, "FROM_ADDON", False),
        "capi": onnxruntime.capi.__file__, "calls": calls, "reports": reports,
        "status": os.environ.get("SPECULA_CUDA_ADDON"), "usable": os.environ.get("SPECULA_CUDA_ADDON_USABLE"),
    }))
''')


def _run_addon(exe_dir: Path, available: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPECULA_CUDA_ADDON")}
    out = subprocess.run([sys.executable, "-c", _ADDON_RUN, str(REPO / "packaging"), str(exe_dir), json.dumps(available)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_without_an_addon_nothing_changes(tmp_path: Path) -> None:
    result = _run_addon(tmp_path, [])
    assert result["state"] is False and result["from_addon"] is False and result["calls"] == []
    assert result["status"] is None


def test_addon_for_another_python_is_refused_with_the_reason(tmp_path: Path) -> None:
    _fake_addon(tmp_path, python="cp27")
    result = _run_addon(tmp_path, ["libcuda.so.1"])
    assert result["from_addon"] is False and result["calls"] == []
    assert len(result["reports"]) == 1 and "built for Python cp27" in result["reports"][0]
    assert result["usable"] == "0"


def test_addon_without_a_driver_leaves_the_bundles_onnxruntime(tmp_path: Path) -> None:
    """No NVIDIA driver: nothing of CUDA is loaded, the bundle's own onnxruntime is used, and
    the reason is the driver (not a CUDA library)."""
    folder = _fake_addon(tmp_path)
    result = _run_addon(tmp_path, [])
    assert result["calls"] == ["libcuda.so.1"]
    assert result["from_addon"] is False and str(folder) not in result["capi"]
    assert result["usable"] == "nogpu"
    assert "no NVIDIA driver (libcuda.so.1 not found" in result["status"]


def test_addon_names_missing_cuda_libraries_and_what_to_install(tmp_path: Path) -> None:
    """A driver but no cuBLAS/cuDNN on the machine: the add-on's onnxruntime is still the one
    imported (its provider then fails with the loader's reason), and one report names each
    missing library, the pip wheels that have them and the self-contained alternative."""
    folder = _fake_addon(tmp_path)
    result = _run_addon(tmp_path, ["libcuda.so.1", "libcudart.so.13", "libcurand.so.10"])
    assert result["from_addon"] is True and result["capi"].startswith(str(folder))
    assert result["usable"] == "0"
    (report,) = result["reports"]
    for missing in ("libcublasLt.so.13", "libcublas.so.13", "libcudnn.so.9"):
        assert missing in report
    assert "nvidia-cublas" in report and "nvidia-cudnn-cu13" in report and "--with-cuda-runtime" in report
    assert "libcurand.so.10 (" not in report  # it loaded
    # sonames, in the manifest's order, from the machine (no lib/ folder)
    assert result["calls"][:3] == ["libcuda.so.1", "libcudart.so.13", "libcublasLt.so.13"]


def test_addon_with_its_own_cuda_libraries_loads_them_by_path(tmp_path: Path) -> None:
    required = [s for s, _w, _p, r in bundle_config.CUDA_LIBRARIES if r]
    folder = _fake_addon(tmp_path, lib_files=tuple(required))
    result = _run_addon(tmp_path, ["libcuda.so.1", *required])
    assert result["from_addon"] is True and result["usable"] == "1" and result["reports"] == []
    assert [c for c in result["calls"] if c.startswith(str(folder))] == [str(folder / "lib" / s) for s in required]
    assert "from its own lib/" in result["status"] and "optional, not found: libcufft.so.12" in result["status"]


@pytest.mark.slow
def test_cuda_addon_folder_built_from_this_venv(tmp_path: Path) -> None:
    """``build.py cuda-addon`` without --with-cuda-runtime: onnxruntime-gpu's package with its
    CUDA provider, compiled, without the TensorRT provider, the C-API library or the tools."""
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    if not (capi / "libonnxruntime_providers_cuda.so").is_file():
        pytest.skip("this onnxruntime has no CUDA provider (onnxruntime-gpu not installed)")
    import build

    dest = tmp_path / "cuda-addon"
    manifest = build.build_cuda_addon(dest, with_runtime=False)
    assert json.loads((dest / "addon.json").read_text()) == manifest
    assert manifest["onnxruntime"] == onnxruntime.__version__ and manifest["cuda"].startswith("13")
    assert manifest["runtime_included"] is False and not (dest / "lib").exists()
    assert [lib["soname"] for lib in manifest["libraries"]] == [s for s, *_ in bundle_config.CUDA_LIBRARIES]
    files = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert "onnxruntime/capi/libonnxruntime_providers_cuda.so" in files
    assert "onnxruntime/capi/libonnxruntime_providers_shared.so" in files
    assert any(f.startswith("onnxruntime/capi/onnxruntime_pybind11_state") for f in files)
    assert not [f for f in files if "tensorrt" in f or f.startswith(("onnxruntime/tools/", "onnxruntime/transformers/"))]
    assert not [f for f in files if "/libonnxruntime.so" in f]
    assert any(f.startswith("onnxruntime/__pycache__/__init__.") for f in files)  # compiled: never written at run time
    # every library the provider links is one the add-on knows to load
    linked = set(bundle_check.elf_needed(dest / "onnxruntime/capi/libonnxruntime_providers_cuda.so"))
    known = {s for s, *_ in bundle_config.CUDA_LIBRARIES} | {bundle_config.CUDA_DRIVER}
    assert {n for n in linked if "cu" in n} <= known


# ------------------------------------------------------------------ scripts/gpu_check.sh
def _path_without_nvidia_smi() -> str:
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not (Path(d) / "nvidia-smi").exists())


def test_gpu_check_without_a_gpu_checks_nothing_and_passes(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=_path_without_nvidia_smi(), GPU_CHECK_OUT=str(tmp_path / "out"))
    out = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("no GPU: nothing to check (nvidia-smi not found)")
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "| check |" not in line]
    assert len(rows) == 5 and all("| not run | no GPU |" in row for row in rows), rows
    assert not (tmp_path / "out").exists()  # nothing ran, not even the project's Python

    # an nvidia-smi that finds no GPU (driver not loaded) is no GPU either
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate "
                                     "with the NVIDIA driver.'\nexit 9\n")
    (fake / "nvidia-smi").chmod(0o755)
    env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    out = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("no GPU: nothing to check (nvidia-smi lists no GPU: NVIDIA-SMI has failed")


@pytest.mark.slow
def test_gpu_check_fails_when_a_gpu_is_there_but_cuda_is_not_used(tmp_path: Path) -> None:
    """A GPU that nvidia-smi lists, on a machine where CUDA cannot run (this CPU machine,
    with a stand-in nvidia-smi): the self-test row must fail, saying why, and the script exit 1."""
    if shutil.which("nvidia-smi"):
        pytest.skip("a real nvidia-smi is here: the script would check a real GPU")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text('#!/bin/sh\n[ "$1" = -L ] && echo "GPU 0: Stand-in (UUID: GPU-0)" || echo 0\n')
    (fake / "nvidia-smi").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}", GPU_CHECK_STEPS="selftest",
               GPU_CHECK_OUT=str(tmp_path / "out"), SPECULA_PYTHON=sys.executable)
    out = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 1, out.stdout + out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("| specula --self-test --require-cuda"))
    assert "| FAIL | FAILED runtime: " in row and "CUDA" in row, row
    assert "| bench/bench_inference.py --device cuda | not run |" in out.stdout
    log = (tmp_path / "out" / "selftest.log").read_text()
    assert "FAILED runtime: RuntimeError: CUDA required, not used" in log
    assert "FAILED cuda-addon" not in log  # from source there is no add-on: that check passes


def test_size_check_fails_above_the_limit_and_lists_the_largest_files(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import build

    bundle = tmp_path / "specula"
    (bundle / "_internal").mkdir(parents=True)
    (bundle / "_internal" / "big.so").write_bytes(b"\0" * 300_000)
    (bundle / "_internal" / "small.py").write_bytes(b"\0" * 1_000)
    (bundle / "link.so").symlink_to("_internal/big.so")  # a link counts as a link, not a second copy
    assert build.check_size(bundle, 400_000) is None
    capsys.readouterr()
    problem = build.check_size(bundle, 250_000)
    assert problem is not None and "above the limit" in problem and "by 0.1 MB" in problem
    printed = capsys.readouterr().out
    assert printed.index("_internal/big.so") < printed.index("_internal/small.py")  # largest first
