"""The field bundle's CUDA add-on, wired in by the entry point before onnxruntime loads.

The field bundle holds ONNX Runtime without its CUDA provider (271 MiB that only a machine
with an NVIDIA GPU can use). The add-on is a folder, ``cuda-addon/``, put beside the
bundle's executable (``build.py cuda-addon`` makes it)::

    specula/specula                      the field bundle's executable
    specula/cuda-addon/addon.json        what it was built for, which CUDA libraries it needs
    specula/cuda-addon/onnxruntime/      onnxruntime-gpu's package, CUDA provider included
    specula/cuda-addon/lib/              optional: the CUDA 13 and cuDNN 9 libraries

When the folder is there, ``install`` puts a finder first on ``sys.meta_path``: the first
``import onnxruntime`` then loads the add-on's package (ONNX Runtime looks for its CUDA
provider beside its own module, so the provider must come with the package that loads
it: the two always match), after loading the CUDA libraries the provider links to, from
``lib/`` or else from the machine (dynamic loader search path), so that the provider finds
them by soname. What is missing is named once, on stderr, with what to install; inference
then runs on the CPU (inference.runtime says so too). Nothing happens without the folder.

This module is plain Python with no import of our packages: it runs before them, and the
tests load it from source.
"""
from __future__ import annotations

import ctypes
import importlib.abc
import importlib.machinery
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

ADDON_DIR = "cuda-addon"  # bundle_config.ADDON_DIR (that module is not in the bundle)
MANIFEST = "addon.json"
FORMAT = 1
# the add-on's state, one line, for the self-test and for child processes (training
# workers re-run the entry point and must not repeat the message)
ENV_STATUS = "SPECULA_CUDA_ADDON"
# "1": in use, its CUDA libraries loaded; "nogpu": no NVIDIA driver on this machine, the add-on
# stays out; "0": broken (wrong build, or a CUDA library missing on a machine with a GPU)
ENV_USABLE = "SPECULA_CUDA_ADDON_USABLE"
ENV_REPORTED = "SPECULA_CUDA_ADDON_REPORTED"
ENV_DISABLE = "SPECULA_NO_CUDA_ADDON"  # set to ignore the add-on (to compare with the CPU-only bundle)


@dataclass
class AddonState:
    """What was found: the folder, the problems that keep the add-on out, the libraries."""

    folder: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # the add-on is not used at all
    loaded: list[str] = field(default_factory=list)  # sonames loaded (from lib/ or the machine)
    missing: list[str] = field(default_factory=list)  # required sonames that could not load
    missing_optional: list[str] = field(default_factory=list)
    driver: bool = True  # libcuda.so.1 (the NVIDIA driver) loads
    activated: bool = False  # onnxruntime was imported from the add-on

    @property
    def usable(self) -> bool:
        return not self.problems and not self.missing and self.driver

    def summary(self) -> str:
        """One line: where the add-on is and whether CUDA can work, with what is missing and how to fix it."""
        where = f"CUDA add-on {self.folder}"
        if self.problems:
            return f"{where} not used: {'; '.join(self.problems)}"
        built = f"onnxruntime {self.manifest.get('onnxruntime', '?')} for CUDA {self.manifest.get('cuda', '?')}"
        bundled = bool(self.manifest.get("runtime_included"))
        source = "its own lib/" if bundled else "this machine"
        if self.usable:
            opt = f"; optional, not found: {', '.join(self.missing_optional)}" if self.missing_optional else ""
            return f"{where}: {built}, CUDA libraries from {source} ({len(self.loaded)} loaded){opt}"
        cuda = str(self.manifest.get("cuda", "?")).split(".")[0]
        if not self.driver:
            return (f"{where}: {built}, but this machine has no NVIDIA driver (libcuda.so.1 not found; "
                    f"CUDA {cuda} needs driver {'580' if cuda == '13' else 'a matching one'} or newer); "
                    "inference runs on the CPU")
        wheels = sorted({lib.get("package", "") for lib in self.manifest.get("libraries", [])
                         if lib.get("soname") in self.missing and lib.get("package")})
        return (f"{where}: {built}, but missing {_describe(self.manifest, self.missing)}: install NVIDIA's CUDA "
                f"{cuda} runtime libraries and cuDNN 9 (the CUDA toolkit {cuda} and cuDNN packages, or `pip install "
                f"{' '.join(wheels)}` with their lib folders on LD_LIBRARY_PATH), or use the add-on built with "
                "--with-cuda-runtime; inference runs on the CPU")


def _describe(manifest: dict[str, Any], sonames: Sequence[str]) -> str:
    what = {lib.get("soname"): lib.get("what") for lib in manifest.get("libraries", [])}
    return ", ".join(f"{s} ({what[s]})" if what.get(s) else s for s in sonames)


def python_tag() -> str:
    """``cp311``: the add-on's extension modules are built for one Python."""
    prefix = "cp" if sys.implementation.name == "cpython" else sys.implementation.name
    return f"{prefix}{sys.version_info.major}{sys.version_info.minor}"


def find_addon(exe_dir: Path) -> Optional[Path]:
    folder = exe_dir / ADDON_DIR
    return folder if folder.is_dir() else None


def read_state(folder: Path) -> AddonState:
    """Read and check the add-on's manifest: right format, this Python, its onnxruntime package there."""
    state = AddonState(folder)
    try:
        state.manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        state.problems.append(f"{MANIFEST} unreadable ({type(exc).__name__}: {exc})")
        return state
    m = state.manifest
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        state.problems.append(f"{MANIFEST} is not a format-{FORMAT} add-on manifest")
        return state
    if m.get("python") != python_tag():
        state.problems.append(f"built for Python {m.get('python')}, this bundle runs {python_tag()}")
    if not (folder / "onnxruntime" / "__init__.py").is_file():
        state.problems.append("its onnxruntime package is missing")
    return state


def load_libraries(state: AddonState, loader: Optional[Callable[[str], Any]] = None) -> None:
    """Load the NVIDIA driver, then the CUDA libraries the add-on's manifest lists, globally.

    Without the driver nothing else is loaded (there is no GPU to use, and loading 2 GB of
    CUDA libraries would only cost time). A library in the add-on's ``lib/`` is loaded by
    path, else by soname from the machine. Loaded with RTLD_GLOBAL, each then satisfies the
    provider's (and cuDNN's) request for that soname, wherever the loader would have looked.
    """
    load = loader or (lambda name: ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL))
    try:
        load(state.manifest.get("driver", "libcuda.so.1"))
    except OSError:
        state.driver = False
        return
    lib_dir = state.folder / "lib"
    for lib in state.manifest.get("libraries", []):
        soname = lib.get("soname", "")
        local = lib_dir / soname
        try:
            load(str(local) if local.is_file() else soname)
        except OSError:
            (state.missing if lib.get("required", True) else state.missing_optional).append(soname)
        else:
            state.loaded.append(soname)


class _AddonOnnxruntime(importlib.abc.MetaPathFinder):
    """Finds ``onnxruntime`` in the add-on, first loading the CUDA libraries (once)."""

    def __init__(self, state: AddonState, report: Callable[[str], None], loader: Optional[Callable[[str], Any]]):
        self.state = state
        self.report = report
        self.loader = loader

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "onnxruntime" or self.state.activated:
            return None  # submodules follow the package's own __path__ (the add-on's folder)
        self.state.activated = True
        load_libraries(self.state, self.loader)
        _publish(self.state)
        if not self.state.usable:
            self.report(self.state.summary())
        if not self.state.driver:
            return None  # no GPU here: the bundle's own onnxruntime, exactly as without the add-on
        # the add-on's onnxruntime even when a CUDA library is missing: its provider then
        # fails to load and inference.runtime names the loader's reason next to the CPU fallback
        return importlib.machinery.PathFinder.find_spec("onnxruntime", [str(self.state.folder)])


def _publish(state: AddonState) -> None:
    os.environ[ENV_STATUS] = state.summary()
    if state.problems or not state.activated:
        usable = "0"
    elif not state.driver:
        usable = "nogpu"  # nothing wrong with the add-on: this machine has no NVIDIA driver
    else:
        usable = "1" if state.usable else "0"
    os.environ[ENV_USABLE] = usable


def _report_once(text: str) -> None:
    if not os.environ.get(ENV_REPORTED):
        os.environ[ENV_REPORTED] = "1"
        print(f"specula: {text}", file=sys.stderr, flush=True)


def install(exe_dir: Optional[Path] = None, report: Callable[[str], None] = _report_once,
            loader: Optional[Callable[[str], Any]] = None) -> Optional[AddonState]:
    """Wire the add-on beside ``exe_dir`` (default: the frozen executable's folder) into imports.

    Returns its state, or None when there is no add-on (or SPECULA_NO_CUDA_ADDON is set).
    Must run before anything imports onnxruntime. ``loader`` loads one library by path or
    soname (default: ctypes, globally); the tests pass their own.
    """
    if os.environ.get(ENV_DISABLE):
        return None
    if exe_dir is None:
        if not getattr(sys, "frozen", False):
            return None  # from source, onnxruntime is the installed package
        exe_dir = Path(sys.executable).resolve().parent
    folder = find_addon(exe_dir)
    if folder is None:
        return None
    state = read_state(folder)
    if not state.problems and "onnxruntime" in sys.modules:
        state.problems.append("onnxruntime was imported before the add-on could be wired in")
    if state.problems:
        _publish(state)
        report(state.summary())
        return state
    sys.meta_path.insert(0, _AddonOnnxruntime(state, report, loader))
    os.environ[ENV_STATUS] = f"CUDA add-on {folder}: found, not loaded yet (onnxruntime not imported)"
    os.environ[ENV_USABLE] = "0"
    return state
