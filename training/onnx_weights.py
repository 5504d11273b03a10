"""PyTorch weights back from a model's own ONNX export, so that fine-tuning can start from
a version that kept no ``weights.pt`` (the shipped models: only their ONNX files ship).

The ONNX exporter folds each batch normalisation into the convolution before it, so the
graph holds one ``Conv`` per ``nn.Conv2d`` with the folded weight and bias, in the order
the network calls them. Here the network is run once with hooks that record the order
in which its convolutions and batch normalisations are called; the k-th ``Conv`` of the
graph gives the k-th convolution its weight, and the batch normalisation called right
after it becomes the folded bias (scale 1, running mean 0, running variance ``1 - eps``:
in eval mode exactly ``x + bias``). Shapes are checked at every step, and the result is
checked at the end: the network must reproduce the ONNX model's outputs on an image, or
nothing is returned. Fine-tuning keeps batch normalisation in eval mode
(``semantic.freeze_batchnorm_statistics``), so the folded layers stay what they are while
their scale and shift learn.

Only tensors are read (``onnx.numpy_helper``); an ONNX file runs no code.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# the recovered network against ONNX Runtime on the same input: beyond this, the graph is
# not this network's export (float32 reordering across 60 convolutions stays near 1e-4)
MAX_ABS_DIFF = 2e-3


class RecoveryError(RuntimeError):
    """The ONNX graph is not an export of this network (or cannot be read back)."""


def _call_order(model, example) -> list[tuple[Any, Any]]:
    """``[(conv, batch norm called right after it, or None)]`` in the order ``model`` calls them."""
    import torch

    calls: list = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o: calls.append(mod))
             for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.modules.batchnorm._BatchNorm))]
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    pairs: list[tuple[Any, Any]] = []
    for i, mod in enumerate(calls):
        if isinstance(mod, torch.nn.Conv2d):
            nxt = calls[i + 1] if i + 1 < len(calls) else None
            bn = nxt if isinstance(nxt, torch.nn.modules.batchnorm._BatchNorm) \
                and nxt.num_features == mod.out_channels else None
            pairs.append((mod, bn))
    if len({id(c) for c, _ in pairs}) != len(pairs):
        raise RecoveryError("a convolution is called twice in one pass: its ONNX copies cannot be told apart")
    return pairs


def _graph_convs(onnx_path: Path) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """``[(node name, weight, bias or None)]`` of the graph's ``Conv`` nodes, in graph order."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # noqa: BLE001 - whatever the parser says, the file is unusable here
        raise RecoveryError(f"{onnx_path}: not a readable ONNX model ({str(exc).splitlines()[0][:200]})") from None
    graph = model.graph
    if any(n.op_type == "BatchNormalization" for n in graph.node):
        raise RecoveryError(f"{onnx_path}: holds unfolded batch normalisations (not this trainer's export)")
    tensors = {t.name: t for t in graph.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in graph.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    out = []
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        arrays = []
        for name in node.input[1:3]:
            t = tensors.get(name) or consts.get(name)
            if name and t is None:
                raise RecoveryError(f"{onnx_path}: Conv {node.name!r} reads {name!r}, which is not a stored tensor")
            arrays.append(None if t is None else numpy_helper.to_array(t))
        weight, bias = arrays[0], arrays[1] if len(arrays) > 1 else None
        if weight is None or not np.isfinite(weight).all() or (bias is not None and not np.isfinite(bias).all()):
            raise RecoveryError(f"{onnx_path}: Conv {node.name!r} has missing or non-finite weights")
        out.append((node.name, weight, bias))
    return out


def recover_state_dict(model, onnx_path: Path, size: tuple[int, int]) -> dict[str, Any]:
    """Load the weights of ``onnx_path`` (this network's own ONNX export) into ``model``.

    ``size``: ``(H, W)`` of the image the check runs at (the model's input size). Returns a
    provenance record ``{"file", "convolutions", "max_abs_diff"}``; raises ``RecoveryError``
    (and leaves ``model`` as it was) when the graph does not fit the network or the
    recovered network does not reproduce it.
    """
    import copy

    import torch

    onnx_path = Path(onnx_path)
    h, w = int(size[0]), int(size[1])
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, (1, 3, h, w)).astype(np.float32)
    work = copy.deepcopy(model).float().cpu()
    pairs = _call_order(work, torch.from_numpy(x))
    convs = _graph_convs(onnx_path)
    if len(convs) != len(pairs):
        raise RecoveryError(f"{onnx_path}: {len(convs)} convolutions in the graph, {len(pairs)} in the network "
                            "(another architecture or other heads)")
    with torch.no_grad():
        for (conv, bn), (node, weight, bias) in zip(pairs, convs):
            if tuple(conv.weight.shape) != weight.shape:
                raise RecoveryError(f"{onnx_path}: Conv {node!r} has weights {weight.shape}, the network's "
                                    f"convolution there {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.tensor(weight))
            b = torch.zeros(conv.out_channels) if bias is None else torch.tensor(bias)
            if b.shape != (conv.out_channels,):
                raise RecoveryError(f"{onnx_path}: Conv {node!r} has a bias of {tuple(b.shape)}")
            if bn is not None:
                # the folded normalisation: exactly x + bias in eval mode
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                if bn.weight is not None:
                    bn.weight.fill_(1.0)
                    bn.bias.copy_(b)
                if conv.bias is not None:
                    conv.bias.zero_()
            elif conv.bias is not None:
                conv.bias.copy_(b)
            elif bool((b != 0).any()):
                raise RecoveryError(f"{onnx_path}: Conv {node!r} has a bias the network's convolution lacks")
    diff = _check(work, onnx_path, x)
    if not diff <= MAX_ABS_DIFF:
        raise RecoveryError(f"{onnx_path}: the recovered network differs from the ONNX model by {diff:.3g} "
                            f"(more than {MAX_ABS_DIFF})")
    model.load_state_dict(work.state_dict())
    return {"file": str(onnx_path), "convolutions": len(pairs), "max_abs_diff": float(diff)}


def _check(model, onnx_path: Path, x: np.ndarray) -> float:
    """Largest absolute difference between ``model`` and ONNX Runtime over the outputs both give."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    theirs = sess.run(None, {sess.get_inputs()[0].name: x})
    names = [o.name for o in sess.get_outputs()]
    model.eval()
    with torch.no_grad():
        mine = model(torch.from_numpy(x))
    mine = list(mine) if isinstance(mine, (tuple, list)) else [mine]
    worst = 0.0
    for name, ours, ref in zip([n for n in names if n != "features"], mine, theirs):
        ours = ours.numpy()
        if ours.shape != ref.shape:
            raise RecoveryError(f"{onnx_path}: output {name!r} is {ref.shape}, the network gives {ours.shape}")
        worst = max(worst, float(np.abs(ours - ref).max()))
    return worst
