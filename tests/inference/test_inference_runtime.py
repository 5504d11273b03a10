"""Device choice, CPU fallback with a reason, session cache, clear errors for bad files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.registry import ModelError
from inference.runtime import OnnxRuntime, choose_providers
from inference_testmodels import colour_model, cuda_probe


def test_cpu_is_cpu() -> None:
    report = choose_providers("cpu")
    assert report.providers == ("CPUExecutionProvider",)
    assert "CPU" in str(report)


@pytest.mark.parametrize("requested", ["cuda", "auto"])
def test_cuda_is_used_where_it_works_and_refused_with_a_reason_where_not(tmp_path: Path, requested: str) -> None:
    """Asserts on both kinds of machine: with a working GPU (found by an independent
    probe) the report and a real session are on CUDA; without one, the CPU with the reason."""
    works, seen = cuda_probe(tmp_path)
    report = choose_providers(requested)
    rt = OnnxRuntime(requested)
    sess = rt.session(colour_model(tmp_path / "m.onnx", 0))
    out = sess.run(None, {"image": np.zeros((1, 3, 16, 16), np.float32)})[0]
    assert out.shape == (1, 1, 16, 16)
    if works:
        assert report.device == "cuda", seen
        assert report.providers[0] == "CUDAExecutionProvider" and report.reason == ""
        assert sess.get_providers()[0] == "CUDAExecutionProvider"
        assert "inference on CUDA" in str(report) and report.short == "inference on CUDA"
    else:
        assert report.device == "cpu" and report.providers == ("CPUExecutionProvider",), seen
        assert sess.get_providers() == ["CPUExecutionProvider"]
        assert report.short.startswith("inference on CPU")
        if requested == "cuda":  # asked for: why not, in the short form too
            assert "CUDA unavailable" in report.reason and len(report.reason) > len("CUDA unavailable: ")
            assert "CUDA unavailable" in str(report) and "CUDA unavailable" in report.short
        else:  # auto: the reason is kept for --version, never shouted by every command
            assert "CUDA unavailable" not in report.short


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


def test_a_frozen_bundle_without_the_cuda_provider_points_to_the_add_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The advice fits where the user is: an installed Specula installs onnxruntime-gpu, a
    field bundle (frozen, no pip) copies the CUDA add-on folder beside its executable."""
    import sys

    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    installed = choose_providers("cuda")
    assert installed.device == "cpu" and "install onnxruntime-gpu" in installed.reason
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    frozen = choose_providers("cuda")
    assert frozen.device == "cpu" and "cuda-addon/" in frozen.reason and "pip" not in frozen.reason
    assert "onnxruntime-gpu" not in frozen.reason
