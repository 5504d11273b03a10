"""A click-refinement model whose answer is known, shared by the inference and desktop tests:
logits = 20 x previous mask + 20 x positive click disks - 40 x negative click disks - 10,
an ONNX graph over the ``clicks`` task's inputs ``image`` and ``aux``."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def disk_click_onnx(path: Path) -> Path:
    """Write the model to ``path`` (``.../model.onnx``); needs the onnx package."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path.parent.mkdir(parents=True, exist_ok=True)
    w = np.zeros((1, 6, 1, 1), np.float32)
    w[0, 3:6, 0, 0] = (20.0, 20.0, -40.0)
    graph = helper.make_graph(
        [helper.make_node("Concat", ["image", "aux"], ["x"], axis=1),
         helper.make_node("Conv", ["x", "w", "b"], ["logits"])], "disk-clicks",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"]),
         helper.make_tensor_value_info("aux", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, "h", "w"])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([-10.0], np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def without_right_third(full: np.ndarray):
    """The previous mask of a correction: the truth ``full`` ((H, W) bool) with the right
    third of its box cut off. Returns ``(truth, previous, missed, cut column)`` as Masks."""
    from annotation.mask import Mask

    truth = Mask.from_full(full)
    x0, _y0, x1, _y1 = truth.bbox
    cut = x0 + 2 * (x1 - x0) // 3
    kept = full.copy()
    kept[:, cut:] = False
    previous = Mask.from_full(kept)
    return truth, previous, truth.subtract(previous), cut
