"""Tiny ONNX models built with onnx.helper (no torch), and a manifest helper, for the tests."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np


def conv_stack(
    path: Path, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], *, final: Optional[str] = None,
    in_channels: int = 3, fixed_hw: Optional[tuple[int, int]] = None, act: str = "Tanh",
) -> Path:
    """A chain of 'same' convolutions with ``act`` between them; input 'image', output 'scores'."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = fixed_hw or ("h", "w")
    nodes, inits = [], []
    prev = "image"
    for i, (wt, b) in enumerate(zip(weights, biases)):
        k = wt.shape[-1]
        inits += [numpy_helper.from_array(wt.astype(np.float32), f"w{i}"), numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        out = f"c{i}"
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [out], pads=[k // 2] * 4))
        prev = out
        if i < len(weights) - 1:
            nodes.append(helper.make_node(act, [prev], [f"a{i}"]))
            prev = f"a{i}"
    if final:
        nodes.append(helper.make_node(final, [prev], ["scores"], **({"axis": 1} if final == "Softmax" else {})))
    else:
        nodes.append(helper.make_node("Identity", [prev], ["scores"]))
    c = weights[-1].shape[0]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, in_channels, h, w])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, c, h, w])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def colour_model(path: Path, colour: int, *, fixed_hw: Optional[tuple[int, int]] = None, in_channels: int = 3) -> Path:
    """One class: logit = 20*C - 10*(other two) - 5 on rgb/255 (C = channel ``colour``)."""
    wt = np.full((1, in_channels, 1, 1), -10.0, np.float32)
    wt[0, colour % in_channels] = 20.0
    return conv_stack(path, [wt], [np.array([-5.0])], fixed_hw=fixed_hw, in_channels=in_channels)


def manifest(name: str, version: str, task: str = "semantic", **extra: Any) -> dict:
    data = {
        "name": name, "version": version, "task": task, "classes": extra.pop("classes", ["defect"]),
        "normalization": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
        "output_activation": extra.pop("output_activation", "sigmoid"),
        "training": {"images": 3}, "metrics": {"iou": 0.5}, "sources": ["test"],
    }
    data.update(extra)
    return data


def scene(h: int = 96, w: int = 128) -> np.ndarray:
    """Grey image with two red squares (top left, bottom right) and one green square."""
    img = np.full((h, w, 3), 80, np.uint8)
    img[10:30, 10:30] = (255, 0, 0)
    img[60:85, 90:120] = (255, 0, 0)
    img[10:40, 70:100] = (0, 255, 0)
    return img


def cuda_probe(tmp: Path) -> tuple[bool, str]:
    """Whether ONNX Runtime really runs a model on a CUDA GPU here, found independently of
    ``inference.runtime.choose_providers`` (the code under test): the provider must be
    listed, and a session asking for it alone must run a real conv model on it. Returns
    (works, what was seen), so a test can say which branch it took and why."""
    import onnxruntime as ort

    listed = ort.get_available_providers()
    if "CUDAExecutionProvider" not in listed:
        return False, f"onnxruntime lists {listed}"
    path = colour_model(tmp / "cuda-probe.onnx", 0)
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CUDAExecutionProvider"])
        out = sess.run(None, {"image": np.zeros((1, 3, 8, 8), np.float32)})[0]
    except Exception as exc:  # noqa: BLE001 - any failure means no working GPU
        return False, f"a CUDA session failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    used = sess.get_providers()
    ok = used[0] == "CUDAExecutionProvider" and out.shape == (1, 1, 8, 8)
    return ok, f"a CUDA session ran on {used}"
