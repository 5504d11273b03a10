"""Engine: semantic proposals through the registry, hot swap of versions, refusal of broken ones."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from inference.engine import Engine
from inference.registry import ModelError, Registry
from inference.tiling import Cancelled
from inference_testmodels import colour_model, manifest, scene

RED, GREEN = 0, 1


def _publish(reg: Registry, tmp_path: Path, version: str, colour: int, **extra: object) -> None:
    w = colour_model(tmp_path / f"w{version}" / "model.onnx", colour)
    reg.publish(w.parent, manifest("defects", version, **extra))


def test_semantic_end_to_end(registry: Registry, tmp_path: Path) -> None:
    _publish(registry, tmp_path, "1", RED)
    engine = Engine(registry, device="cpu")
    props = engine.propose(scene())
    assert len(props) == 2
    assert {p.mask.bbox for p in props} == {(10, 10, 30, 30), (90, 60, 120, 85)}
    for p in props:
        assert p.class_name == "defect" and (p.model, p.version) == ("defects", "1")
        assert p.origin == "defects@1" and 0.99 < p.score <= 1.0
        assert p.mask.image_size == (96, 128)
    assert engine.current_version("defects") == "1"


def test_background_class_gives_no_proposals(registry: Registry, tmp_path: Path) -> None:
    from inference_testmodels import conv_stack

    wt = np.zeros((2, 3, 1, 1), np.float32)
    wt[0, :, 0, 0] = (-20, 10, 10)  # background where not red
    wt[1, :, 0, 0] = (20, -10, -10)
    path = conv_stack(tmp_path / "bg" / "model.onnx", [wt], [np.zeros(2)])
    registry.publish(path.parent, manifest("bg", "1", classes=["background", "red"], background_class="background",
                                           output_activation="softmax"))
    props = Engine(registry, device="cpu").propose(scene(), model="bg")
    assert {p.class_name for p in props} == {"red"} and len(props) == 2


def test_params_threshold_and_result_cache(registry: Registry, tmp_path: Path) -> None:
    _publish(registry, tmp_path, "1", RED)
    engine = Engine(registry, device="cpu")
    img = scene()
    a = engine.propose(img, params={"min_area": 450})
    assert [p.mask.area for p in a] == [750]
    a[0].mask.array[:] = False  # the caller edits its copy
    again = engine.propose(img, params={"min_area": 450})
    assert again[0].mask.area == 750
    with pytest.raises(ValueError, match="no parameter 'iterations'"):
        engine.propose(img, params={"iterations": 3})


def test_new_version_is_picked_up_without_restart(registry: Registry, tmp_path: Path) -> None:
    _publish(registry, tmp_path, "1", RED)
    engine = Engine(registry, device="cpu")
    img = scene()
    assert len(engine.propose(img)) == 2
    _publish(registry, tmp_path, "2", GREEN)  # training publishes while the engine serves
    props = engine.propose(img)
    assert [p.mask.bbox for p in props] == [(70, 10, 100, 40)] and props[0].version == "2"
    assert engine.current_version("defects") == "2"
    registry.rollback("defects")
    assert engine.propose(img)[0].version == "1"


def _assert_refused_and_old_serves(engine: Engine, registry: Registry, version: str, why: str) -> None:
    img = scene()
    props = engine.propose(img)
    assert engine.current_version("defects") == "1"
    assert props and all(p.version == "1" for p in props)
    assert any(version in m and why in m for m in engine.messages), engine.messages


def test_garbage_weights_are_refused_and_old_version_serves(registry: Registry, tmp_path: Path) -> None:
    _publish(registry, tmp_path, "1", RED)
    engine = Engine(registry, device="cpu")
    engine.propose(scene())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.onnx").write_bytes(b"\x08\x01garbage bytes, not a model")
    registry.publish(bad, manifest("defects", "2"))
    _assert_refused_and_old_serves(engine, registry, "defects@2", "cannot load")
    with pytest.raises(ModelError, match="cannot load"):
        engine.propose(scene(), version="2")  # asking for it explicitly says why


def test_wrong_input_shape_is_refused(registry: Registry, tmp_path: Path) -> None:
    _publish(registry, tmp_path, "1", RED)
    engine = Engine(registry, device="cpu")
    engine.propose(scene())
    one_channel = colour_model(tmp_path / "g" / "model.onnx", 0, in_channels=1)
    registry.publish(one_channel.parent, manifest("defects", "2"))
    _assert_refused_and_old_serves(engine, registry, "defects@2", "expected (1, 3, H, W)")
    fixed = colour_model(tmp_path / "f" / "model.onnx", 0, fixed_hw=(32, 32))
    registry.publish(fixed.parent, manifest("defects", "3", input_size=[64, 64]))
    _assert_refused_and_old_serves(engine, registry, "defects@3", "takes 32x32")


def test_unknown_task_is_refused(registry: Registry, tmp_path: Path) -> None:
    _publish(registry, tmp_path, "1", RED)
    engine = Engine(registry, device="cpu")
    engine.propose(scene())
    # a newer trainer wrote a task this engine does not know, straight into the registry
    src = registry.root / "defects" / "1"
    dst = registry.root / "defects" / "2"
    shutil.copytree(src, dst)
    (dst / "manifest.json").write_text((src / "manifest.json").read_text()
                                       .replace('"semantic"', '"depth"').replace('"version": "1"', '"version": "2"'))
    _assert_refused_and_old_serves(engine, registry, "defects/2", "unknown task 'depth'")


def test_first_load_failure_raises(registry: Registry, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.onnx").write_bytes(b"junk")
    registry.publish(bad, manifest("defects", "1"))
    with pytest.raises(ModelError, match="defects/1/model.onnx"):
        Engine(registry, device="cpu").propose(scene())
    with pytest.raises(ModelError, match="no model named 'other'"):
        Engine(registry, device="cpu").propose(scene(), model="other")


def test_cuda_request_runs_where_it_can_and_says_so(registry: Registry, tmp_path: Path) -> None:
    """On a machine with a working GPU (independent probe) the engine's session runs on
    CUDA and gives the CPU's proposals; without one it runs on the CPU and says why."""
    from inference_testmodels import cuda_probe

    works, seen = cuda_probe(tmp_path)
    _publish(registry, tmp_path, "1", RED)
    engine = Engine(registry, device="cuda")
    props = engine.propose(scene())
    sess = engine.pipeline()._sess  # type: ignore[attr-defined]
    on_cpu = Engine(registry, device="cpu").propose(scene())
    assert len(props) == 2 and [p.mask for p in props] == [p.mask for p in on_cpu]
    if works:
        assert engine.device_report.startswith("inference on CUDA"), seen
        assert "CUDA unavailable" not in engine.device_report
        assert sess.get_providers()[0] == "CUDAExecutionProvider"
    else:
        assert "CPU" in engine.device_report and "CUDA unavailable" in engine.device_report, seen
        assert sess.get_providers() == ["CPUExecutionProvider"]


def test_cancel(registry: Registry, tmp_path: Path) -> None:
    _publish(registry, tmp_path, "1", RED, tiling={"tile": 32, "overlap": 8})
    with pytest.raises(Cancelled):
        Engine(registry, device="cpu").propose(scene(), cancel=lambda: True)


def test_instance_task_through_onnx_without_torch_needs_outputs(registry: Registry, tmp_path: Path) -> None:
    w = colour_model(tmp_path / "i" / "model.onnx", 0)
    registry.publish(w.parent, manifest("inst", "1", task="instance"))
    with pytest.raises(ModelError, match="needs boxes, labels, scores, masks"):
        Engine(registry, device="cpu").propose(scene(), model="inst")


def _two_output_model(path: Path) -> Path:
    """Glass = red or green pixels (logit), boundary = green pixels (second output 'boundary')."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w_glass = np.array([[[[20.0]], [[20.0]], [[-20.0]]]], np.float32)  # red + green - blue
    w_bnd = np.array([[[[-20.0]], [[20.0]], [[-20.0]]]], np.float32)   # green only
    inits = [numpy_helper.from_array(w_glass, "wg"), numpy_helper.from_array(np.array([-10.0], np.float32), "bg"),
             numpy_helper.from_array(w_bnd, "wb"), numpy_helper.from_array(np.array([-10.0], np.float32), "bb")]
    nodes = [helper.make_node("Conv", ["image", "wg", "bg"], ["scores"]),
             helper.make_node("Conv", ["image", "wb", "bb"], ["boundary"])]
    graph = helper.make_graph(
        nodes, "panes", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, "h", "w"]),
         helper.make_tensor_value_info("boundary", TensorProto.FLOAT, [1, 1, "h", "w"])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def test_boundary_output_splits_neighbouring_panes(registry: Registry, tmp_path: Path) -> None:
    """Two panes with a frame between them that the class map covers too: one region,
    which the model's boundary output cuts into two proposals (and ``split_panes``
    false keeps them merged)."""
    path = _two_output_model(tmp_path / "panes" / "model.onnx")
    registry.publish(path.parent, manifest("panes", "1", classes=["glass"], defaults={"min_seed_area": 50}))
    img = np.full((120, 160, 3), 60, np.uint8)
    img[20:100, 20:70] = (255, 0, 0)
    img[20:100, 70:74] = (0, 255, 0)  # the frame: glass-like to the class map, a boundary to the head
    img[20:100, 74:140] = (255, 0, 0)
    engine = Engine(registry, device="cpu")
    split = engine.propose(img, model="panes")
    merged = engine.propose(img, model="panes", params={"split_panes": False})
    assert len(merged) == 1 and merged[0].mask.area == 80 * 120
    assert len(split) == 2
    boxes = sorted(p.mask.bbox for p in split)
    assert boxes[0][0] == 20 and boxes[1][2] == 140  # left pane, right pane
    assert sum(p.mask.area for p in split) == 80 * 120  # the frame is shared out, nothing lost
    engine.close()
