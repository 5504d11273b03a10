"""The quality gate: a new version is published, but used only if it beats the one in use.

A trainer scores what it exported through the product's pipeline on the project's
validation images; the version in use of the same model name is scored the same way, on
the same images, here. The new version becomes active only when its figure is higher;
otherwise it stays in the registry (``specula models activate NAME VERSION`` uses it by
hand) and the version in use is pinned, so that "the latest version" does not replace
it either. A first version, or one whose predecessor cannot be compared (other classes,
a file that no longer loads), is activated, and the record says why.

Fine-tuning starts from the version in use: ``init_from_active`` finds its PyTorch
weights (``weights.pt``, a plain state dict saved beside the ONNX model and read back
with ``torch.load(weights_only=True)``; for a version without one, such as a shipped
model, its ONNX file, from which ``training.onnx_weights`` recovers them), so a few new
labels refine the model instead of restarting from ImageNet.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

WEIGHTS_FILE = "weights.pt"


def _registry(root: Optional[Path]):
    from inference.registry import Registry

    return Registry.with_shipped(root) if root is not None else Registry.default()


def active_version(registry_root: Optional[Path], name: str):
    """The ``ModelInfo`` in use for ``name``, or None when it has no version (or no registry)."""
    from inference.registry import ModelError

    try:
        reg = _registry(registry_root)
        if not reg.versions(name):
            return None
        return reg.active(name)
    except (ModelError, OSError):
        return None


def judge(
    registry_root: Optional[Path],
    name: str,
    classes: Sequence[str],
    new_score: Optional[float],
    score_folder: Callable[[Path], Optional[float]],
    metric: str,
) -> dict[str, Any]:
    """Whether the new version of ``name`` (validation figure ``new_score``) should be used.

    ``score_folder(path)`` scores a published version's folder on the same validation
    images and by the same ``metric`` as ``new_score``. Returns the record kept in the new
    manifest: ``activate``, both figures, the version compared against and the reason.
    """
    record: dict[str, Any] = {"metric": metric, "new": new_score, "active": None, "active_version": None}
    current = active_version(registry_root, name)
    if current is None:
        return {**record, "activate": True, "reason": "first version of this model"}
    record["active_version"] = current.version
    if [str(c) for c in current.manifest.classes] != [str(c) for c in classes]:
        return {**record, "activate": True,
                "reason": f"the version in use ({current.version}) has other classes: not comparable"}
    if new_score is None or not math.isfinite(float(new_score)):
        return {**record, "activate": False,
                "reason": "no validation figure for the new version (no validation images): kept the version in use"}
    try:
        old = score_folder(Path(current.path))
    except Exception as exc:  # noqa: BLE001 - a version in use that no longer scores cannot block a new one
        return {**record, "activate": True, "reason": f"the version in use could not be scored: {exc}"}
    record["active"] = old
    if old is None or not math.isfinite(float(old)):
        return {**record, "activate": True, "reason": "the version in use has no figure on these images"}
    better = float(new_score) > float(old)
    verdict = "better" if better else "not better"
    return {**record, "activate": better,
            "reason": f"{metric} {float(new_score):.4f} against {float(old):.4f} for version {current.version} "
                      f"on the same validation images: {verdict}"}


def publish_gated(registry_root: Optional[Path], files: Sequence[Path], manifest: dict[str, Any],
                  gate: dict[str, Any], reporter=None):
    """Publish ``files`` with ``manifest`` (the gate's record in ``metrics.gate``); activate
    the new version only when the gate says so. Returns the new version's ``ModelInfo``."""
    from training.export import publish

    manifest = dict(manifest)
    manifest["metrics"] = {**manifest.get("metrics", {}), "gate": gate}
    activate = bool(gate.get("activate", True))
    if not activate and gate.get("active_version"):
        # pin the version in use before the new one lands, else "the latest" would take over
        _registry(registry_root).activate(manifest["name"], str(gate["active_version"]))
    info = publish(registry_root, files, manifest, activate=activate)
    if reporter is not None:
        reporter.emit("gate", name=info.name, version=info.version, activated=activate,
                      new=gate.get("new"), active=gate.get("active"), active_version=gate.get("active_version"),
                      metric=gate.get("metric"), reason=gate.get("reason"))
    return info


def save_weights(model, folder: Path) -> Path:
    """The model's state dict as ``weights.pt`` (tensors only: loadable weights-only)."""
    import torch

    path = Path(folder) / WEIGHTS_FILE
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    return path


def init_from_active(registry_root: Optional[Path], name: str, task: str):
    """The version to fine-tune from: the ``ModelInfo`` in use of ``name`` when it is of
    ``task`` and has weights to start from (its PyTorch ``weights.pt``, or for a semantic
    model its ONNX file, from which ``training.onnx_weights`` recovers them: the shipped
    models carry only ONNX); None otherwise (start from ImageNet)."""
    current = active_version(registry_root, name)
    if current is None or current.task != task:
        return None
    if (Path(current.path) / WEIGHTS_FILE).is_file() or (task == "semantic" and current.has("model.onnx")):
        return current
    return None


def has_boundary_head(info) -> bool:
    """Whether a registered semantic version has the pane-splitting head: its ONNX graph's
    ``boundary`` output (every semantic version has its ONNX file, a trained one too)."""
    try:
        import onnx

        graph = onnx.load(str(info.file("model.onnx")), load_external_data=False).graph
        return any(o.name == "boundary" for o in graph.output)
    except Exception:  # noqa: BLE001 - unreadable: the recovery or the load says why, later
        return False
