"""Export trained networks (ONNX, TorchScript), check them, and publish into the registry.

Every export is checked at once against the PyTorch model on a real validation
input (segment-anything's ``run_export`` habit): a mismatch beyond tolerance raises
and nothing is published.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np


class ExportError(RuntimeError):
    """An exported model that does not reproduce the PyTorch model."""


def export_semantic_onnx(model, example, path: Path, opset: int = 17) -> None:
    """``model``: ``(1, 3, H, W)`` -> logits ``(1, K, H, W)`` (and, with a boundary head,
    boundary logits ``(1, 1, H, W)`` as the second output); height and width stay dynamic."""
    import torch

    model.eval()
    with torch.no_grad():
        outs = model(example)
    names = ["logits", "boundary"] if isinstance(outs, (tuple, list)) else ["logits"]
    axes = {n: {0: "batch", 2: "height", 3: "width"} for n in ["image", *names]}
    with torch.no_grad():
        torch.onnx.export(
            model, (example,), str(path), input_names=["image"], output_names=names,
            dynamic_axes=axes, opset_version=opset, dynamo=False,
        )


FEATURES_OUTPUT = "features"


def expose_decoder_features(path: Path, head: str = "logits") -> bool:
    """Add the decoder's last feature map as an output named ``features``.

    The feature map is the input of the 1x1 convolution that makes ``head`` (followed back
    through a final Resize). The engine pools it inside each proposal into the proposal's
    embedding (clustered review, 004). The graph is otherwise unchanged, so the other
    outputs stay exactly what the export check compared. Returns whether it was added
    (False: no such convolution, or the output exists already).
    """
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    if any(o.name == FEATURES_OUTPUT for o in graph.output):
        return False
    producer = {out: node for node in graph.node for out in node.output}
    node = producer.get(head)
    while node is not None and node.op_type in ("Resize", "Upsample", "Identity"):
        node = producer.get(node.input[0])
    if node is None or node.op_type != "Conv":
        return False
    graph.node.append(onnx.helper.make_node("Identity", [node.input[0]], [FEATURES_OUTPUT], name="features_out"))
    graph.output.append(onnx.helper.make_tensor_value_info(FEATURES_OUTPUT, onnx.TensorProto.FLOAT, [None] * 4))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return True


def onnx_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def check_onnx_matches(model, path: Path, inputs: Sequence, atol: float = 1e-3, rtol: float = 1e-3) -> dict[str, float]:
    """Run ``inputs`` (``(1, 3, H, W)`` tensors) through PyTorch and ONNX Runtime; raise on mismatch.

    Returns the largest absolute difference seen (for the manifest).
    """
    import torch

    sess = onnx_session(path)
    name = sess.get_inputs()[0].name
    worst = 0.0
    model.eval()
    for x in inputs:
        with torch.no_grad():
            out = model(x)
        refs = [t.float().numpy() for t in (out if isinstance(out, (tuple, list)) else [out])]
        gots = sess.run(None, {name: x.numpy()})
        if len(gots) != len(refs):
            raise ExportError(f"{path}: ONNX has {len(gots)} outputs, PyTorch {len(refs)}")
        for got, ref in zip(gots, refs):
            if got.shape != ref.shape:
                raise ExportError(f"{path}: ONNX output shape {got.shape} differs from PyTorch's {ref.shape}")
            diff = float(np.abs(got - ref).max())
            worst = max(worst, diff)
            if not np.allclose(got, ref, atol=atol, rtol=rtol):
                raise ExportError(f"{path}: ONNX output differs from PyTorch's by up to {diff:.2e} (tolerance {atol})")
    return {"max_abs_diff": worst, "inputs_checked": len(inputs)}


def export_cam_torchscript(model, example, path: Path) -> dict[str, float]:
    """Script (trace) the CAM network and check logits, features and gradients agree.

    ``model(x)`` -> ``(logits (N, C), features (N, F, H, W))``; the saved module keeps
    that interface so the pipeline can take Grad-CAM and AdvCAM gradients.
    """
    import torch

    import warnings

    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # jit is deprecated but is what the cam pipeline loads
        with torch.no_grad():
            traced = torch.jit.trace(model, (example,), check_trace=False)
        traced.save(str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")
    x1 = example.clone().requires_grad_(True)
    x2 = example.clone().requires_grad_(True)
    l1, f1 = model(x1)
    l2, f2 = loaded(x2)
    diff = max(float((l1 - l2).abs().max().detach()), float((f1 - f2).abs().max().detach()))
    l1[:, 0].sum().backward()
    l2[:, 0].sum().backward()
    gdiff = float((x1.grad - x2.grad).abs().max())
    if diff > 1e-3 or gdiff > 1e-3 * max(1.0, float(x1.grad.abs().max())):
        raise ExportError(f"{path}: TorchScript differs from PyTorch (outputs {diff:.2e}, input gradients {gdiff:.2e})")
    return {"max_abs_diff": diff, "max_grad_diff": gdiff}


def new_version(registry, name: str) -> str:
    """The next free version of ``name``: an integer one more than the highest."""
    return registry.next_version(name)


def publish(
    registry_root: Optional[Path],
    files: Sequence[Path],
    manifest: dict[str, Any],
    activate: bool = True,
):
    """Publish ``files`` with ``manifest`` atomically; returns the registry's ``ModelInfo``.

    ``registry_root`` None means the user's registry (``Registry.default()``).
    A missing version is filled with the next free one. ``activate``: make it the version
    in use (``training.gate`` decides for trained models).
    """
    from inference.registry import Registry

    # with the shipped models: a new version of one continues its numbering
    registry = Registry.with_shipped(registry_root) if registry_root is not None else Registry.default()
    manifest = dict(manifest)
    if not manifest.get("version"):
        manifest["version"] = new_version(registry, manifest["name"])
    manifest.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return registry.publish([Path(f) for f in files], manifest, activate=activate)


def write_local(folder: Path, files: Sequence[Path], manifest: dict[str, Any]) -> Path:
    """Write a registry-layout version folder directly (for ``assets/models``), validated the same way."""
    from inference.registry import Manifest

    man = Manifest.from_json(dict(manifest), "manifest")
    out = Path(folder) / man.name / man.version
    out.mkdir(parents=True, exist_ok=True)
    import shutil

    for f in files:
        shutil.copy2(f, out / Path(f).name)
    (out / "manifest.json").write_text(json.dumps(man.to_json(), indent=2), encoding="utf-8")
    return out


def scratch_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="specula-train-")
