"""Runtimes: ONNX Runtime sessions (always) and TorchScript modules (only where torch exists).

The execution device is chosen once per ``OnnxRuntime`` and described in ``report`` for
the user: CUDA when the provider is listed *and* a session really runs on it, else CPU,
with the reason CUDA could not be used. torch is imported only inside ``TorchRuntime``'s
methods, so a field install without torch proposes with ONNX models.
"""
from __future__ import annotations

import base64
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from inference.registry import ModelError, check_trusted

DEVICES = ("auto", "cpu", "cuda")
# y = Identity(x), x: float[1]; built with onnx.helper (opset 13) and kept inline so that
# probing the GPU needs neither the onnx package nor a model on disk
_PROBE_MODEL = base64.b64decode(
    "CAg6OwoQCgF4EgF5IghJZGVudGl0eRIFcHJvYmVaDwoBeBIKCggIARIECgIIAWIPCgF5EgoKCAgBEgQKAggBQgQKABAN"
)


@dataclass(frozen=True)
class DeviceReport:
    """Where inference runs, and why (shown to the user)."""

    requested: str
    device: str  # "cuda" or "cpu"
    providers: tuple[str, ...]
    reason: str = ""

    def __str__(self) -> str:
        text = f"inference on {self.device.upper()} (ONNX Runtime: {', '.join(self.providers)})"
        return f"{text}; {self.reason}" if self.reason else text

    @property
    def short(self) -> str:
        """Where inference runs, in a few words; why a GPU was not used is said only when
        the user asked for it (``--device cuda``): on a machine without a GPU, every
        command repeating a missing CUDA library is noise (``specula --version`` and the
        editor's status-bar tool tip give the whole story)."""
        text = f"inference on {self.device.upper()}"
        return f"{text}; {self.reason}" if self.reason and self.requested == "cuda" else text


def _cuda_failure_reason() -> str:
    """Why the CUDA provider did not load: the missing library if the loader says so."""
    import ctypes

    import onnxruntime as ort

    lib = Path(ort.__file__).parent / "capi" / (
        "onnxruntime_providers_cuda.dll" if os.name == "nt" else "libonnxruntime_providers_cuda.so"
    )
    if not lib.exists():
        return _no_provider_advice()
    try:
        ctypes.CDLL(str(lib))
    except OSError as exc:
        # a frozen bundle's ctypes wraps the loader's message in a generic one; the
        # loader's own (naming the missing library) is the cause
        real = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        return f"the CUDA provider could not load: {real} (install the CUDA and cuDNN runtime it needs)"
    return "no usable CUDA GPU was found (driver missing, or the GPU is not supported)"


def _no_provider_advice() -> str:
    """What to do when this ONNX Runtime has no CUDA provider: a frozen field bundle gets it
    from its CUDA add-on folder (the entry point says in ``SPECULA_CUDA_ADDON`` whether one
    was loaded); an installed Specula from the onnxruntime-gpu package."""
    import sys

    if getattr(sys, "frozen", False):
        return ("this bundle has no CUDA provider: copy the CUDA add-on folder (cuda-addon/, built by "
                "`packaging/build.py cuda-addon`) beside the executable, or use the workstation bundle")
    return "this onnxruntime has no CUDA provider (install onnxruntime-gpu)"


def choose_providers(requested: str = "auto") -> DeviceReport:
    """Pick ONNX Runtime providers for ``requested`` in ``auto|cpu|cuda``; never raises for CUDA."""
    import onnxruntime as ort

    if requested not in DEVICES:
        raise ValueError(f"device {requested!r} is not one of {', '.join(DEVICES)}")
    cpu = ("CPUExecutionProvider",)
    if requested == "cpu":
        return DeviceReport(requested, "cpu", cpu)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        reason = _no_provider_advice()
        return DeviceReport(requested, "cpu", cpu, f"CUDA unavailable: {reason}" if requested == "cuda" else "")
    old = ort.get_default_logger_severity() if hasattr(ort, "get_default_logger_severity") else 2
    ort.set_default_logger_severity(4)  # the failure is reported below, in one line, not as a log dump
    try:
        sess = ort.InferenceSession(_PROBE_MODEL, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        sess.run(None, {"x": np.zeros(1, np.float32)})
        on_cuda = sess.get_providers()[0] == "CUDAExecutionProvider"
        error = ""
    except Exception as exc:  # noqa: BLE001 - any failure means: use the CPU, say why
        on_cuda, error = False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        ort.set_default_logger_severity(old)
    if on_cuda:
        return DeviceReport(requested, "cuda", ("CUDAExecutionProvider", "CPUExecutionProvider"))
    # onnxruntime's own "Failed to load dynlib ... when the application was frozen"
    # hides the real cause (a missing CUDA library): ask the loader directly
    reason = _cuda_failure_reason() if (not error or error.startswith("Failed to load")) else error
    note = f"CUDA unavailable, using the CPU: {reason}"
    return DeviceReport(requested, "cpu", cpu, note if requested == "cuda" else f"(GPU not used: {reason})")


THREADS_ENV = "SPECULA_ORT_THREADS"


def _env_threads() -> int:
    """``SPECULA_ORT_THREADS`` as a thread count (0: ONNX Runtime's default); bad values ignored."""
    try:
        n = int(os.environ.get(THREADS_ENV, "0"))
    except ValueError:
        return 0
    return n if 0 < n <= 1024 else 0


class OnnxRuntime:
    """ONNX Runtime sessions with one device choice and a cache keyed by (path, mtime, providers)."""

    def __init__(self, device: str = "auto"):
        self.report = choose_providers(device)
        self._sessions: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    @property
    def providers(self) -> tuple[str, ...]:
        return self.report.providers

    def session(self, path: str | Path, warmup: Optional[dict[str, np.ndarray]] = None) -> Any:
        """A cached ``InferenceSession`` for ``path``; ``ModelError`` if it cannot load.

        ``warmup`` (input name -> array) is run once when the session is created, so the
        first real proposal does not pay for lazy initialisation.
        """
        import onnxruntime as ort

        path = Path(path)
        try:
            st = path.stat()
        except OSError as exc:
            raise ModelError(f"{path}: cannot read the model file ({exc.strerror})") from None
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size, self.providers)
        with self._lock:
            sess = self._sessions.get(key)
            if sess is not None:
                return sess
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            # ORT's worker threads busy-wait after a run by default; that steals the cores
            # the post-processing (thresholds, components) runs on right after
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            threads = _env_threads()
            if threads:  # a batch worker's share of the cores (inference.batch), not all of them
                opts.intra_op_num_threads = threads
            try:
                sess = ort.InferenceSession(str(path), sess_options=opts, providers=list(self.providers))
            except Exception as exc:  # noqa: BLE001 - ORT raises several types for bad files
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ModelError(f"{path}: ONNX Runtime cannot load it ({first[:300]})") from None
            if warmup is not None:
                try:
                    sess.run(None, warmup)
                except Exception as exc:  # noqa: BLE001
                    first = str(exc).strip().splitlines()[0]
                    raise ModelError(f"{path}: the model does not run on a test input ({first[:300]})") from None
            # drop older sessions of the same file (a replaced file must not keep memory)
            for k in [k for k in self._sessions if k[0] == key[0]]:
                del self._sessions[k]
            self._sessions[key] = sess
            return sess


class TorchRuntime:
    """TorchScript modules on the requested device; CUDA falls back to CPU with a reason.

    Loading never unpickles arbitrary objects: ``torch.jit.load`` for scripted modules,
    ``torch.load(weights_only=True)`` for plain state dicts. TorchScript runs its own code
    when loaded, so a module is loaded only when the registry trusts its file
    (``inference.registry.check_trusted``: published by Specula's trainer or imported with
    ``--trust``).
    """

    def __init__(self, device: str = "auto"):
        if device not in DEVICES:
            raise ValueError(f"device {device!r} is not one of {', '.join(DEVICES)}")
        self.requested = device
        self._device: Optional[str] = None
        self.reason = ""
        self._modules: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        """``"cuda"`` or ``"cpu"``, decided on first use (imports torch)."""
        if self._device is None:
            import torch

            if self.requested == "cpu":
                self._device = "cpu"
            elif torch.cuda.is_available():
                self._device = "cuda"
            else:
                self._device = "cpu"
                if self.requested == "cuda":
                    self.reason = "CUDA unavailable to PyTorch, using the CPU (no GPU or no CUDA build of torch)"
        return self._device

    def load_module(self, path: str | Path) -> Any:
        """A TorchScript module in eval mode on ``device``; ``ModelError`` if it cannot load
        or is not trusted (its file is not the one the registry recorded and signed)."""
        import io

        import torch

        path = Path(path)
        try:
            st = path.stat()
        except OSError as exc:
            raise ModelError(f"{path}: cannot read the model file ({exc.strerror})") from None
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size, self.device)
        with self._lock:
            mod = self._modules.get(key)
            if mod is None:
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    raise ModelError(f"{path}: cannot read the model file ({exc.strerror})") from None
                # the bytes checked are the bytes loaded: a file swapped in between is never run
                check_trusted(path, data)
                try:
                    mod = torch.jit.load(io.BytesIO(data), map_location=self.device).eval()
                except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError and others
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise ModelError(f"{path}: not a TorchScript model PyTorch can load ({first[:300]})") from None
                for k in [k for k in self._modules if k[0] == key[0]]:
                    del self._modules[k]
                self._modules[key] = mod
            return mod

    def load_state_dict(self, path: str | Path) -> dict:
        """A state dict of tensors, loaded without unpickling code (``weights_only=True``)."""
        import torch

        try:
            return torch.load(str(path), map_location=self.device, weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: not a weights-only state dict ({str(exc).splitlines()[0][:300]})") from None
