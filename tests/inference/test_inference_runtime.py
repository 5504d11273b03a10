"""Device choice, CPU fallback with a reason, session cache, clear errors for bad files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.registry import ModelError
from inference.runtime import OnnxRuntime, choose_providers
from inference_testmodels import colour_model


def _cuda_works() -> bool:
    return choose_providers("auto").device == "cuda"


def test_cpu_is_cpu() -> None:
    report = choose_providers("cpu")
    assert report.providers == ("CPUExecutionProvider",)
    assert "CPU" in str(report)


def test_cuda_requested_without_gpu_falls_back_to_cpu_with_reason() -> None:
    if _cuda_works():
        pytest.skip("this machine has a working CUDA GPU")
    report = choose_providers("cuda")
    assert report.device == "cpu" and report.providers == ("CPUExecutionProvider",)
    assert "CUDA unavailable" in report.reason and len(report.reason) > len("CUDA unavailable: ")
    assert "CUDA unavailable" in str(report)


def test_bad_device_name() -> None:
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        choose_providers("tpu")


def test_sessions_are_cached_and_reloaded_when_the_file_changes(tmp_path: Path) -> None:
    rt = OnnxRuntime("cpu")
    path = colour_model(tmp_path / "m.onnx", 0)
    s1 = rt.session(path)
    assert rt.session(path) is s1
    colour_model(path, 1)  # replaced in place: new mtime/size
    import os

    os.utime(path, ns=(1, 1))
    assert rt.session(path) is not s1


def test_garbage_file_is_a_model_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"this is not onnx")
    with pytest.raises(ModelError, match="model.onnx: ONNX Runtime cannot load it"):
        OnnxRuntime("cpu").session(bad)
    with pytest.raises(ModelError, match="cannot read"):
        OnnxRuntime("cpu").session(tmp_path / "missing.onnx")


def test_warmup_failure_is_a_model_error(tmp_path: Path) -> None:
    path = colour_model(tmp_path / "m.onnx", 0, in_channels=1)
    with pytest.raises(ModelError, match="does not run on a test input"):
        OnnxRuntime("cpu").session(path, warmup={"image": np.zeros((1, 3, 8, 8), np.float32)})


def test_torch_runtime_cuda_falls_back() -> None:
    torch = pytest.importorskip("torch")
    from inference.runtime import TorchRuntime

    rt = TorchRuntime("cuda")
    if torch.cuda.is_available():
        assert rt.device == "cuda"
    else:
        assert rt.device == "cpu" and "CUDA unavailable" in rt.reason
