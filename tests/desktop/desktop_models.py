"""A tiny real ONNX semantic model for the desktop tests, published into a registry.

Built with ``onnx.helper`` like the inference tests' models (no torch needed): a 1x1
convolution whose sigmoid output says "glass" where the pixel is bright, so that
proposals on the GDD photographs are a few large connected regions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def bright_model(path: Path, gain: float = 30.0, bias: float = -0.7) -> Path:
    """logit = gain * (mean of r, g, b in [0, 1] + bias): sigmoid > 0.5 where the mean > -bias."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.full((1, 3, 1, 1), gain / 3.0, np.float32)
    b = np.array([gain * bias], np.float32)
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["scores"])]
    graph = helper.make_graph(
        nodes, "bright", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, "h", "w"])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def publish_bright(registry_root: Path, tmp: Path, name: str = "tiny-mirror-glass", version: str = "1",
                   bias: float = -0.7, min_area: int = 3000):
    from inference.registry import Registry

    reg = Registry(registry_root)
    onnx_path = bright_model(tmp / f"{name}-{version}" / "model.onnx", bias=bias)
    manifest = {
        "name": name, "version": version, "task": "semantic", "classes": ["glass"],
        "normalization": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
        "output_activation": "sigmoid", "defaults": {"min_area": min_area},
        "training": {"images": 0}, "metrics": {}, "sources": ["desktop test"],
    }
    return reg.publish([onnx_path], manifest)
