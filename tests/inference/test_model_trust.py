"""Model files never run code without trust.

A ``model.pt`` that is a pickle (or a ``torch.save`` archive) is refused when imported.
TorchScript runs its own code when loaded, so it is loaded only when the registry itself
recorded its SHA-256 (signed with the registry's key): published by Specula's trainer
(``Registry.publish``) or imported with ``--trust``. A file replaced after publishing, or a
version folder copied in from elsewhere, is refused at load.
"""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from inference.registry import ACTIVE_FILE, ModelError, Registry  # noqa: E402
from inference.runtime import TorchRuntime  # noqa: E402
from inference_testmodels import colour_model, manifest  # noqa: E402
from specula.cli import main  # noqa: E402


class _Boom:
    """Unpickling this writes a file: proof that a pickle ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.write_text, (self.marker, "pickle code ran"))


def _scripted(path: Path, bias: float = -5.0) -> Path:
    conv = nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([20.0, -10.0, -10.0]).view(1, 3, 1, 1)
        conv.bias[:] = bias
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(conv).save(str(path))
    return path


def _folder(tmp_path: Path, name: str, version: str = "1", *, weights: str = "torchscript") -> Path:
    """A model folder as someone hands it over: manifest.json and model.pt."""
    folder = tmp_path / f"{name}-{version}-{weights}"
    folder.mkdir()
    if weights == "torchscript":
        _scripted(folder / "model.pt")
    elif weights == "pickle":
        (folder / "model.pt").write_bytes(pickle.dumps(_Boom(tmp_path / "PWNED")))
    elif weights == "state-dict":
        torch.save(nn.Conv2d(3, 1, 1).state_dict(), str(folder / "model.pt"))
    (folder / "manifest.json").write_text(json.dumps(manifest(name, version)))
    return folder


def _models(registry: Registry, *args: str) -> tuple[int, str, str]:
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["models", "--registry", str(registry.root), *args])
    return code, out.getvalue(), err.getvalue()


def _registry_files(registry: Registry) -> list[str]:
    if not registry.root.exists():
        return []
    return sorted(str(p.relative_to(registry.root)) for p in registry.root.rglob("*"))


@pytest.mark.parametrize("weights", ["pickle", "state-dict"])
def test_a_model_pt_that_is_not_torchscript_is_refused_at_import(registry: Registry, tmp_path: Path,
                                                                 weights: str) -> None:
    folder = _folder(tmp_path, "pickled", weights=weights)
    before = _registry_files(registry)
    for extra in ([], ["--trust"]):  # trust does not make a pickle loadable
        code, out, err = _models(registry, "import", str(folder), *extra)
        assert code == 2 and out == ""
        assert len(err.splitlines()) == 1 and err.startswith("specula: ")
        assert "not a TorchScript archive" in err and "model.pt" in err
    assert _registry_files(registry) == before  # nothing published, nothing made active
    assert not (tmp_path / "PWNED").exists()  # and the pickle never ran


def test_torchscript_from_outside_needs_trust(registry: Registry, tmp_path: Path) -> None:
    folder = _folder(tmp_path, "outside")
    code, out, err = _models(registry, "import", str(folder))
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "runs its own code" in err and "--trust" in err
    assert _registry_files(registry) == []

    code, out, err = _models(registry, "import", str(folder), "--trust")
    assert code == 0, err
    info = registry.get("outside", "1")
    assert info.manifest.sha256["model.pt"] and info.manifest.signature
    module = TorchRuntime("cpu").load_module(info.file("model.pt"))
    assert module(torch.zeros(1, 3, 4, 4)).shape == (1, 1, 4, 4)


def test_the_trainers_torchscript_loads(registry: Registry, tmp_path: Path) -> None:
    """training/export.py publishes through Registry.publish: recorded, signed, loaded."""
    from training.export import publish

    pt = _scripted(tmp_path / "trained" / "model.pt")
    info = publish(registry.root, [pt], manifest("trained", "", task="cam", classes=["object", "other"]))
    saved = json.loads((info.path / "manifest.json").read_text())
    assert saved["sha256"]["model.pt"] == __import__("hashlib").sha256(pt.read_bytes()).hexdigest()
    TorchRuntime("cpu").load_module(info.file("model.pt"))


def test_a_replaced_torchscript_file_is_refused_at_load(registry: Registry, tmp_path: Path) -> None:
    info = registry.publish(_scripted(tmp_path / "a" / "model.pt"), manifest("swap", "1"))
    _scripted(info.file("model.pt"), bias=3.0)  # valid TorchScript, but not the published file
    with pytest.raises(ModelError, match="SHA-256"):
        TorchRuntime("cpu").load_module(info.file("model.pt"))


def test_a_hand_written_manifest_does_not_make_torchscript_trusted(registry: Registry, tmp_path: Path) -> None:
    """A version folder dropped into the registry with a manifest claiming the right hash."""
    import hashlib

    folder = registry.root / "dropped" / "1"
    _scripted(folder / "model.pt")
    digest = hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps({**manifest("dropped", "1"), "sha256": {"model.pt": digest},
                                                      "signature": "0" * 64}))
    info = registry.get("dropped", "1")  # listed: a manifest is only data
    with pytest.raises(ModelError, match="runs its own code"):
        TorchRuntime("cpu").load_module(info.file("model.pt"))


def test_a_version_copied_from_another_registry_is_refused(tmp_path: Path) -> None:
    """Signed by another registry's key: not a manifest this registry wrote."""
    first = Registry(tmp_path / "first")
    info = first.publish(_scripted(tmp_path / "w" / "model.pt"), manifest("moved", "1"))
    TorchRuntime("cpu").load_module(info.file("model.pt"))
    second = Registry(tmp_path / "second")
    second.publish(colour_model(tmp_path / "o" / "model.onnx", 0), manifest("other", "1"))  # has its own key
    shutil.copytree(info.path, second.root / "moved" / "1")
    with pytest.raises(ModelError, match="runs its own code"):
        TorchRuntime("cpu").load_module(second.get("moved", "1").file("model.pt"))


def test_a_refused_model_does_not_become_the_active_default(registry: Registry, tmp_path: Path) -> None:
    registry.publish(colour_model(tmp_path / "ok" / "model.onnx", 0), manifest("good", "1"))
    active_before = (registry.root / ACTIVE_FILE).read_text()
    code, _, _ = _models(registry, "import", str(_folder(tmp_path, "bad", weights="pickle")))
    assert code == 2
    assert (registry.root / ACTIVE_FILE).read_text() == active_before
    assert registry.active().name == "good"


def test_onnx_folders_import_without_trust(registry: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "onnx"
    colour_model(folder / "model.onnx", 1)
    (folder / "manifest.json").write_text(json.dumps(manifest("plain", "1")))
    code, out, err = _models(registry, "import", str(folder))
    assert code == 0, err
    assert registry.get("plain", "1").manifest.sha256["model.onnx"]
