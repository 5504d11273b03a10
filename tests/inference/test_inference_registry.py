"""Registry: manifests, atomic publishing, listing, activation, roll-back, change detection."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.registry import Manifest, ModelError, Registry, version_key
from inference_testmodels import colour_model, manifest


def _weights(tmp_path: Path, name: str = "w") -> Path:
    return colour_model(tmp_path / name / "model.onnx", 0)


def test_publish_is_complete_and_leaves_no_temporary(registry: Registry, tmp_path: Path) -> None:
    info = registry.publish(_weights(tmp_path), manifest("cracks", "1"))
    assert info.path == registry.root / "cracks" / "1"
    assert (info.path / "model.onnx").is_file()
    saved = json.loads((info.path / "manifest.json").read_text())
    assert saved["task"] == "semantic" and saved["created"]
    assert [p.name for p in (registry.root / "cracks").iterdir()] == ["1"]
    assert registry.active("cracks").version == "1"


def test_publish_refuses_existing_version_and_missing_weights(registry: Registry, tmp_path: Path) -> None:
    w = _weights(tmp_path)
    registry.publish(w, manifest("cracks", "1"))
    with pytest.raises(ModelError, match="already exists"):
        registry.publish(w, manifest("cracks", "1"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="needs model.onnx or model.pt"):
        registry.publish(empty, manifest("cracks", "2"))
    assert not any(p.name.startswith(".tmp") for p in (registry.root / "cracks").iterdir())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"task": "detect"}, "unknown task 'detect'"),
        ({"classes": []}, "'classes' is empty"),
        ({"name": "a/b"}, "'name'"),
        ({"input_size": [0, 5]}, "input_size"),
        ({"tiling": {"tile": 64, "overlap": 40}}, "tiling"),
        ({"background_class": "sky"}, "background_class"),
        ({"output_activation": "relu"}, "output_activation"),
    ],
)
def test_manifest_errors_name_the_fault(change: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        Manifest.from_json({**manifest("m", "1"), **change}, "x/manifest.json")


def test_manifest_round_trip() -> None:
    m = Manifest.from_json(manifest("m", "1", tiling={"tile": 256, "overlap": 32}, input_size=[64, 80]))
    assert Manifest.from_json(m.to_json()) == m
    assert m.tile == 256 and m.input_size == (64, 80)


def test_broken_manifest_on_disk_is_skipped_with_reason(registry: Registry, tmp_path: Path) -> None:
    registry.publish(_weights(tmp_path), manifest("m", "1"))
    bad = registry.root / "m" / "2"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    assert registry.versions("m") == ["1"]
    assert "not readable JSON" in registry.problems[str(bad)]
    with pytest.raises(ModelError, match=str(bad / "manifest.json").replace("\\", "\\\\")):
        registry.get("m", "2")


def test_versions_sort_naturally_and_latest(registry: Registry, tmp_path: Path) -> None:
    w = _weights(tmp_path)
    for v in ("2", "10", "9"):
        registry.publish(w, manifest("m", v), activate=False)
    assert registry.versions("m") == ["2", "9", "10"]
    assert registry.latest_version("m") == "10"
    assert registry.active("m").version == "10"  # no pointer: the latest
    assert version_key("v2") < version_key("v10")


def test_activate_and_rollback(registry: Registry, tmp_path: Path) -> None:
    w = _weights(tmp_path)
    for v in ("1", "2", "3"):
        registry.publish(w, manifest("m", v))
    assert registry.active().version == "3"
    registry.activate("m", "1")
    assert registry.active("m").version == "1"
    assert registry.rollback("m").version == "3"  # back to what was active before
    assert registry.rollback("m").version == "2"
    with pytest.raises(ModelError, match="no model m@7"):
        registry.activate("m", "7")


def test_generation_changes_on_publish_and_activate(registry: Registry, tmp_path: Path) -> None:
    w = _weights(tmp_path)
    registry.publish(w, manifest("m", "1"))
    g1 = registry.generation()
    assert registry.generation() == g1
    registry.publish(w, manifest("m", "2"))
    g2 = registry.generation()
    assert g2 != g1
    registry.activate("m", "1")
    assert registry.generation() != g2


def test_shipped_models_are_merged_read_only(tmp_path: Path) -> None:
    shipped = Registry(tmp_path / "assets")
    shipped.publish(_weights(tmp_path), manifest("base", "1"))
    reg = Registry(tmp_path / "user", [tmp_path / "assets"])
    infos = reg.list()
    assert [(i.name, i.version, i.read_only) for i in infos] == [("base", "1", True)]
    reg.publish(_weights(tmp_path, "w2"), manifest("base", "2"))
    assert reg.versions("base") == ["1", "2"]
    assert reg.activate("base", "1").read_only  # pointer lives in the user root
    assert (tmp_path / "user" / "active.json").is_file()
    assert not (tmp_path / "assets" / "base" / "1" / "active.json").exists()


def test_import_folder_and_bare_onnx(registry: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    colour_model(folder / "model.onnx", 1)
    (folder / "manifest.json").write_text(json.dumps(manifest("glass", "5")))
    assert registry.import_model(folder).version == "5"
    bare = colour_model(tmp_path / "x.onnx", 2)
    with pytest.raises(ModelError, match="--name"):
        registry.import_model(bare)
    info = registry.import_model(bare, "rust")
    assert (info.name, info.version, info.task, info.manifest.classes) == ("rust", "1", "semantic", ("class_0",))
    assert registry.import_model(bare, "rust", classes=["rust"]).version == "2"
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="cannot load"):
        registry.import_model(garbage, "g")
