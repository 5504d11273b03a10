"""One rule chooses the model for a palette (``Registry.model_for_palette``), used by
`specula propose`, the headless job and the self-test alike."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from annotation.palette import Palette, builtin_palette, load_palette
from annotation.store import ProjectStore
from inference.registry import Registry
from inference_testmodels import colour_model, manifest
from specula.cli import main

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("cracks-semantic", "mirror-glass-semantic")


def _palette(tmp_path: Path, *classes: str, name: str = "mine") -> Palette:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\n' + "".join(
        f'[[classes]]\nname = "{c}"\ncolor = [{i * 40}, 10, 10]\n' for i, c in enumerate(classes)
    ))
    return load_palette(path)


def _publish(reg: Registry, tmp_path: Path, name: str, classes: list[str], *, version: str = "1",
             created: str = "", task: str = "semantic", activate: bool = True) -> None:
    weights = colour_model(tmp_path / f"w-{name}-{version}" / "model.onnx", 0)
    reg.publish(weights, manifest(name, version, task=task, classes=["background", *classes],
                                  background_class="background", created=created), activate=activate)


@pytest.fixture
def shipped() -> Registry:
    """The registry as installed: the user's (empty, in a temporary SPECULA_HOME) plus assets/models."""
    reg = Registry.default()
    assert set(SHIPPED) <= set(reg.names()), "the shipped models are missing from assets/models"
    return reg


def test_each_shipped_palette_gets_its_shipped_model(shipped: Registry) -> None:
    info, why = shipped.model_for_palette(builtin_palette("inspection"))
    assert (info.name, info.version, info.read_only) == ("cracks-semantic", "2", True), why
    info, why = shipped.model_for_palette(builtin_palette("mirror-glass"))
    assert info.name == "mirror-glass-semantic" and "only model" in why


def test_no_fitting_model_gives_a_reason_naming_palette_classes_and_models(shipped: Registry, tmp_path: Path) -> None:
    info, why = shipped.model_for_palette(_palette(tmp_path, "pothole", "graffiti", name="roads"))
    assert info is None
    assert why == (
        "no model proposes for palette 'roads' (classes: pothole, graffiti); models there are: "
        "cracks-semantic [crack]; mirror-glass-semantic [mirror, glass, glass-in-mirror]"
    )
    # a model must not propose a class the palette lacks: mirror-glass needs all three
    info, _ = shipped.model_for_palette(_palette(tmp_path, "mirror", "glass", name="two"))
    assert info is None
    # a palette with more classes than the model is fine
    info, _ = shipped.model_for_palette(_palette(tmp_path, "crack", "pothole", "rust", name="roads2"))
    assert info.name == "cracks-semantic"


def test_the_users_model_wins_over_the_shipped_one_then_the_newest(shipped: Registry, tmp_path: Path) -> None:
    inspection = builtin_palette("inspection")
    # older than the shipped model, and still first: a trained or imported model is the user's choice
    _publish(shipped, tmp_path, "site-cracks", ["crack"], created="2001-01-01T00:00:00+0000")
    info, why = shipped.model_for_palette(inspection)
    assert (info.name, info.read_only) == ("site-cracks", False)
    assert "chosen over cracks-semantic" in why
    # among the user's own, the most recently created
    _publish(shipped, tmp_path, "a-rust", ["rust", "crack"], created="2002-06-01T00:00:00+0000")
    assert shipped.model_for_palette(inspection)[0].name == "a-rust"
    # same time: by name
    _publish(shipped, tmp_path, "0-rust", ["rust"], created="2002-06-01T00:00:00+0000")
    assert shipped.model_for_palette(inspection)[0].name == "0-rust"
    # newer, but out: a prompt model answers clicks, it does not propose for a whole image;
    # a model that predicts a class the palette lacks would store instances of no class
    prompt = tmp_path / "prompt"
    colour_model(prompt / "encoder.onnx", 0)
    colour_model(prompt / "decoder.onnx", 0)
    shipped.publish(prompt, manifest("zz-prompt", "1", task="prompt", classes=["crack"],
                                     created="2030-01-01T00:00:00+0000"))
    _publish(shipped, tmp_path, "zz-pothole", ["crack", "pothole"], created="2031-01-01T00:00:00+0000")
    assert shipped.model_for_palette(inspection)[0].name == "0-rust"
    # an instance model proposes too, and the newest wins
    _publish(shipped, tmp_path, "zz-instance", ["crack"], created="2032-01-01T00:00:00+0000", task="instance")
    assert shipped.model_for_palette(inspection)[0].name == "zz-instance"


def test_a_model_is_judged_by_its_active_version(registry: Registry, tmp_path: Path) -> None:
    _publish(registry, tmp_path, "defects", ["crack"], version="1", created="2020-01-01T00:00:00+0000")
    _publish(registry, tmp_path, "defects", ["crack", "pothole"], version="2", created="2021-01-01T00:00:00+0000")
    inspection = builtin_palette("inspection")
    info, why = registry.model_for_palette(inspection)  # version 2 is active and predicts a pothole
    assert info is None and "defects [crack, pothole]" in why
    registry.activate("defects", "1")
    info, _ = registry.model_for_palette(inspection)
    assert (info.name, info.version) == ("defects", "1")


# ------------------------------------------------------------------ specula propose
@pytest.fixture
def bridge(tmp_path: Path) -> Path:
    # the shared data set, as tests/conftest.py finds it (that module's name is shadowed here)
    data = Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data")) / "cracks-cfd" / "image"
    if not data.is_dir():
        pytest.skip(f"data set cracks-cfd not found at {data.parent} (set SPECULA_DATA)")
    root = tmp_path / "bridge"
    root.mkdir()
    for name in ("001.jpg", "002.jpg"):
        shutil.copy(data / name, root / name)
    return root


def test_propose_after_init_uses_the_palettes_model_without_model_flag(shipped: Registry, bridge: Path,
                                                                        capsys) -> None:
    assert main(["init", str(bridge), "--palette", "inspection"]) == 0
    assert main(["propose", str(bridge), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "with cracks-semantic@2" in out
    with ProjectStore.open(bridge, create=False, scan=False) as store:
        proposals = store.instances(states=["proposed"])
        assert proposals and {p.origin for p in proposals} == {"cracks-semantic@2"}
        assert {p.class_name for p in proposals} == {"crack"}
        assert store.totals()["proposed"] == len(proposals)


def test_propose_keeps_the_model_flag_and_explains_a_palette_without_model(
    shipped: Registry, bridge: Path, tmp_path: Path, capsys
) -> None:
    palette_file = tmp_path / "roads.toml"
    palette_file.write_text('name = "roads"\n[[classes]]\nname = "pothole"\ncolor = [1, 2, 3]\n')
    assert main(["init", str(bridge), "--palette", str(palette_file)]) == 0
    capsys.readouterr()
    assert main(["propose", str(bridge), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("specula: no model proposes for palette 'roads' (classes: pothole); models there are: ")
    assert "--model" in err and len(err.splitlines()) == 1
    assert main(["propose", str(bridge), "--device", "cpu", "--model", "cracks-semantic@2"]) == 0
    assert "with cracks-semantic@2" in capsys.readouterr().out
