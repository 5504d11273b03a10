"""PyTorch weights recovered from a semantic model's ONNX export (batch norm folded): the
shipped glass model at its own 384 x 384 size, a fresh export round trip, and graphs that
do not fit (other heads, unreadable, non-finite weights) refused with the model untouched."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training_helpers import REPO

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.training]

SHIPPED = REPO / "assets" / "models" / "mirror-glass-semantic" / "2" / "model.onnx"


def _state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_the_shipped_glass_model_is_recovered_at_its_own_size() -> None:
    import onnxruntime as ort

    from training.models import SemanticNet
    from training.onnx_weights import recover_state_dict

    model = SemanticNet(4, pretrained=False, boundary=True)
    rec = recover_state_dict(model, SHIPPED, (384, 384))
    assert rec["convolutions"] == 60 and rec["max_abs_diff"] < 1e-4
    # on a real-looking input, not the check's own noise: a smooth gradient image
    x = np.zeros((1, 3, 384, 384), np.float32)
    x[0, 0] = np.linspace(-2, 2, 384)[None, :]
    x[0, 1] = np.linspace(-1, 1, 384)[:, None]
    sess = ort.InferenceSession(str(SHIPPED), providers=["CPUExecutionProvider"])
    logits, boundary = sess.run(["logits", "boundary"], {"image": x})
    model.eval()
    with torch.no_grad():
        mine, mine_b = model(torch.from_numpy(x))
    assert np.abs(mine.numpy() - logits).max() < 1e-3 and np.abs(mine_b.numpy() - boundary).max() < 1e-3


def test_a_fresh_export_round_trips_with_its_batch_norm_statistics(tmp_path: Path) -> None:
    from training.export import export_semantic_onnx
    from training.models import SemanticNet
    from training.onnx_weights import recover_state_dict

    torch.manual_seed(0)
    src = SemanticNet(3, pretrained=False)
    for m in src.modules():  # statistics far from the defaults: folding must carry them
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    path = tmp_path / "m.onnx"
    export_semantic_onnx(src, torch.zeros(1, 3, 128, 128), path)
    dst = SemanticNet(3, pretrained=False)
    rec = recover_state_dict(dst, path, (128, 128))
    assert rec["max_abs_diff"] < 1e-4
    x = torch.randn(1, 3, 160, 96)  # another size than the check's
    src.eval()
    dst.eval()
    with torch.no_grad():
        assert (src(x) - dst(x)).abs().max().item() < 1e-4


def test_graphs_that_do_not_fit_are_refused_and_the_model_is_left_as_it_was(tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    from training.models import SemanticNet
    from training.onnx_weights import RecoveryError, recover_state_dict

    other_heads = SemanticNet(4, pretrained=False, boundary=False)
    before = _state(other_heads)
    with pytest.raises(RecoveryError, match="60 convolutions in the graph, 59 in the network"):
        recover_state_dict(other_heads, SHIPPED, (384, 384))
    assert all(torch.equal(before[k], v) for k, v in other_heads.state_dict().items())

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(SHIPPED.read_bytes()[:5000])
    model = SemanticNet(4, pretrained=False, boundary=True)
    with pytest.raises(RecoveryError, match="not a readable ONNX model"):
        recover_state_dict(model, broken, (384, 384))

    m = onnx.load(str(SHIPPED))
    t = next(t for t in m.graph.initializer if t.name == "classifier.weight")
    bad = numpy_helper.to_array(t).copy()
    bad[0, 0, 0, 0] = np.nan
    t.CopyFrom(numpy_helper.from_array(bad, t.name))
    nan_path = tmp_path / "nan.onnx"
    onnx.save(m, str(nan_path))
    before = _state(model)
    with pytest.raises(RecoveryError, match="non-finite"):
        recover_state_dict(model, nan_path, (384, 384))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
