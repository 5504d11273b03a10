"""What the About box and bug reports show: versions, bundle kind, inference providers, models."""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from appinfo import __version__

BUNDLE_KINDS = ("field", "workstation", "source")


def bundle_kind() -> str:
    """``field`` or ``workstation`` inside a bundle (written there by the spec), else ``source``."""
    root = getattr(sys, "_MEIPASS", None)
    if not getattr(sys, "frozen", False) or not root:
        return "source"
    try:
        kind = (Path(root) / "specula_bundle.txt").read_text(encoding="utf-8").strip()
    except OSError:
        return "bundle (unknown kind)"
    return kind if kind in BUNDLE_KINDS else f"bundle ({kind})"


def _qt_version() -> str:
    """The Qt binding's versions without importing it when it is absent."""
    try:
        import PySide6
        from PySide6 import QtCore
    except Exception as exc:  # noqa: BLE001 - shown as text; the About box must always open
        return f"unavailable ({exc.__class__.__name__}: {exc})"
    return f"PySide6 {PySide6.__version__}, Qt {QtCore.qVersion()}"


def _onnxruntime_lines() -> list[str]:
    try:
        import onnxruntime as ort
    except Exception as exc:  # noqa: BLE001
        return [f"ONNX Runtime  unavailable ({exc})"]
    lines = [f"ONNX Runtime  {ort.__version__}", f"  available providers  {', '.join(ort.get_available_providers())}"]
    try:
        from inference.runtime import choose_providers

        lines.append(f"  in use               {choose_providers('auto')}")
    except Exception as exc:  # noqa: BLE001
        lines.append(f"  in use               unknown ({exc})")
    return lines


def _torch_line() -> str:
    """torch's version if this build has it (workstation, source), without importing it when absent."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "PyTorch       not included (training and AdvCAM need the workstation build)"
    try:
        import torch

        cuda = f"CUDA {torch.version.cuda}, GPU {'yes' if torch.cuda.is_available() else 'no'}"
        return f"PyTorch       {torch.__version__} ({cuda})"
    except Exception as exc:  # noqa: BLE001
        return f"PyTorch       present but failed to load ({exc})"


def model_lines() -> list[str]:
    """One line per registered model version: name, version, task, classes, where it lives."""
    try:
        from inference.registry import Registry

        reg = Registry.default()
        infos = reg.list()
    except Exception as exc:  # noqa: BLE001 - a broken registry must not break the About box
        return [f"  unavailable ({exc})"]
    lines = []
    for info in infos:
        where = "shipped" if info.read_only else "yours"
        classes = ", ".join(info.manifest.classes)
        lines.append(f"  {info.name} {info.version}  {info.task}  [{classes}]  ({where})")
    if not lines:
        lines.append(f"  none (add one with `specula models import`, or train one; registry: {reg.root})")
    for folder, reason in sorted(reg.problems.items()):
        lines.append(f"  skipped {folder}: {reason}")
    return lines


def about_text(*, with_torch: bool = False) -> str:
    """Multi-line text for the About box and for bug reports.

    ``with_torch`` also reports PyTorch's version, which imports torch (seconds) when present.
    """
    from annotation.resources import user_data_dir

    lines = [
        f"Specula {__version__} ({bundle_kind()} build)",
        f"Python        {platform.python_version()} ({platform.system()} {platform.machine()})",
        f"Qt            {_qt_version()}",
        *_onnxruntime_lines(),
    ]
    if with_torch:
        lines.append(_torch_line())
    lines += [f"Data folder   {user_data_dir()}", "Models"]
    lines += model_lines()
    if os.environ.get("SPECULA_HOME"):
        lines.append("(SPECULA_HOME is set)")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(about_text(with_torch=True))
