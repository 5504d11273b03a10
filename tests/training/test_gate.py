"""The quality gate: a trained version that is worse than the one in use is published but not
used; fine-tuning starts from the version in use."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from training_helpers import REPO, build_project, need_set

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.training]

SHIPPED = REPO / "assets" / "models" / "mirror-glass-semantic" / "2"


def _registry_holding_the_shipped_model(root: Path, name: str):
    """A registry whose version 1 of ``name`` is the shipped glass model (a strong model in use)."""
    from inference.registry import Registry

    src = root / "src"
    src.mkdir(parents=True)
    manifest = json.loads((SHIPPED / "manifest.json").read_text(encoding="utf-8"))
    manifest.update(name=name, version="1")
    shutil.copy(SHIPPED / "model.onnx", src / "model.onnx")
    reg = Registry(root / "registry")
    reg.publish([src / "model.onnx"], manifest)
    return reg


def _held_out_glass_project(root: Path, first: int, last: int) -> None:
    """A project of the shipped glass model's held-out GDD photos ``[first, last)``, glass labelled."""
    need_set("glass-gdd")
    shipped_test = json.loads((SHIPPED / "manifest.json").read_text(encoding="utf-8"))
    ids = [Path(k).stem for k in shipped_test["training"]["data"]["test_image_keys"][first:last]]
    build_project(root, "glass-gdd", ids, "glass").close()


def test_a_worse_version_is_published_but_not_used_and_a_first_one_is(tmp_path: Path) -> None:
    from training.common import TrainOptions
    from training.semantic import train_semantic

    _held_out_glass_project(tmp_path / "p", 0, 5)
    reg = _registry_holding_the_shipped_model(tmp_path, "gdd-glass")

    # two optimiser steps at 64 px: far worse than the shipped model on the same images
    out = train_semantic(TrainOptions(project=tmp_path / "p", task="semantic", epochs=1, max_steps=2,
                                      input_size=(64, 64), batch_size=2, registry=reg.root, name="gdd-glass",
                                      num_threads=2, val_fraction=0.4))
    gate = out["gate"]
    assert gate["active_version"] == "1" and gate["activate"] is False, gate
    assert gate["active"] is not None and gate["new"] is not None and gate["new"] < gate["active"], gate
    assert reg.versions("gdd-glass") == ["1", "2"]  # published all the same
    assert reg.active("gdd-glass").version == "1"  # ... but the version in use stays
    kept = reg.get("gdd-glass", "2").manifest.metrics["gate"]
    assert kept["reason"].endswith("not better") and kept["active"] == gate["active"]
    # the new version kept its PyTorch weights (for fine-tuning), loadable weights-only
    weights = reg.get("gdd-glass", "2").path / "weights.pt"
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    assert any(k.startswith("encoder.") for k in sd)

    # a first version of another name is used at once, and says why
    first = train_semantic(TrainOptions(project=tmp_path / "p", task="semantic", epochs=1, max_steps=1,
                                        input_size=(64, 64), batch_size=2, registry=reg.root, name="fresh",
                                        num_threads=2, val_fraction=0.4))
    assert first["gate"]["activate"] is True and first["gate"]["reason"] == "first version of this model"
    assert reg.active("fresh").version == "1"

    # the next run of "fresh" fine-tunes from the version in use, not from ImageNet
    again = train_semantic(TrainOptions(project=tmp_path / "p", task="semantic", epochs=1, max_steps=1,
                                        input_size=(64, 64), batch_size=2, registry=reg.root, name="fresh",
                                        num_threads=2, val_fraction=0.4))
    init = again["manifest"]["training"]["init"]
    assert init is not None and init["file"] == str(reg.get("fresh", "1").path / "weights.pt")
    assert init["loaded"] > 100 and init["skipped"] == 0
    # the version in use is scored as epoch 0 and is a candidate (a run never publishes
    # something worse on validation than where it started) ...
    curve = again["manifest"]["training"]["validation_curve"]
    assert curve[0]["epoch"] == 0 and curve[0]["val_score"] is not None
    assert again["manifest"]["training"]["best_epoch"] >= 0
    assert max(c["val_score"] for c in curve) == pytest.approx(curve[again["manifest"]["training"]["best_epoch"]]["val_score"])
    # ... and batch-norm statistics learnt before are kept, not replaced by a few crops'
    before = torch.load(reg.get("fresh", "1").path / "weights.pt", map_location="cpu", weights_only=True)
    after = torch.load(reg.get("fresh", "2").path / "weights.pt", map_location="cpu", weights_only=True)
    stats = [k for k in before if k.endswith("running_mean") or k.endswith("running_var")]
    assert len(stats) > 10 and all(torch.equal(before[k], after[k]) for k in stats)


def test_the_gate_activates_only_a_better_figure(tmp_path: Path) -> None:
    """The decision itself, on a real registry: better is used, equal or worse is not,
    other classes or a version in use that cannot be scored never block the new one."""
    from training.gate import judge

    reg = _registry_holding_the_shipped_model(tmp_path, "m")
    classes = ["background", "mirror", "glass", "glass-in-mirror"]
    seen: list[Path] = []

    def score(folder: Path) -> float:
        seen.append(folder)
        return 0.5

    assert judge(reg.root, "m", classes, 0.6, score, "iou")["activate"] is True
    assert seen == [reg.get("m", "1").path]
    assert judge(reg.root, "m", classes, 0.5, score, "iou")["activate"] is False
    assert judge(reg.root, "m", classes, None, score, "iou")["activate"] is False
    assert judge(reg.root, "m", ["background", "crack"], 0.1, score, "iou")["activate"] is True

    def broken(folder: Path) -> float:
        raise RuntimeError("cannot load")

    verdict = judge(reg.root, "m", classes, 0.1, broken, "iou")
    assert verdict["activate"] is True and "could not be scored" in verdict["reason"]
    assert judge(reg.root, "new-name", classes, 0.1, score, "iou")["reason"] == "first version of this model"


def test_from_scratch_skips_the_version_in_use(tmp_path: Path) -> None:
    import argparse

    from training.cli import configure_parser, options_from_args

    args = configure_parser(argparse.ArgumentParser()).parse_args(
        [str(tmp_path), "--task", "semantic", "--from-scratch"])
    assert options_from_args(args).extra.get("from_scratch") is True
    plain = configure_parser(argparse.ArgumentParser()).parse_args([str(tmp_path), "--task", "semantic"])
    assert "from_scratch" not in options_from_args(plain).extra


def test_fine_tuning_a_shipped_model_recovers_its_weights_from_onnx_at_its_own_size(tmp_path: Path) -> None:
    """The shipped models keep no weights.pt: fine-tuning recovers the PyTorch weights from
    the ONNX graph (batch norm folded) and keeps the version's input size and its boundary
    head, so a project's first training starts where the shipped model is, not at ImageNet."""
    import onnx

    from training.common import TrainOptions
    from training.semantic import train_semantic

    _held_out_glass_project(tmp_path / "p", 0, 8)
    reg = _registry_holding_the_shipped_model(tmp_path, "gdd-glass")
    assert not (reg.get("gdd-glass", "1").path / "weights.pt").exists()

    def run(**extra):
        return train_semantic(TrainOptions(project=tmp_path / "p", task="semantic", epochs=1, max_steps=1, batch_size=2,
                                           registry=reg.root, name="gdd-glass", num_threads=2, val_fraction=0.5,
                                           extra=extra))

    out = run()
    man = out["manifest"]
    init = man["training"]["init"]
    assert init["recovered_from_onnx"] is True and init["file"].endswith("model.onnx"), init
    assert init["max_abs_diff"] < 1e-3 and init["loaded"] > 300
    assert man["input_size"] == [384, 384]  # the version's own size, not the trainer's default
    # settings the run does not search are the base's (pane splitting's boundary threshold)
    assert man["defaults"]["boundary_threshold"] == 0.15 and "threshold" in man["defaults"]
    # ... and, not searched, the base's threshold and flip TTA (the shipped 0.4 with flip)
    assert man["defaults"]["threshold"] == 0.4 and man["defaults"]["flip_tta"] is True
    graph = onnx.load(str(out["info"].path / "model.onnx")).graph
    assert [o.name for o in graph.output][:2] == ["logits", "boundary"]  # pane splitting kept
    assert any("recovered from the ONNX graph" in s for s in man["sources"])
    start = man["training"]["validation_curve"][0]
    assert start["epoch"] == 0
    # epoch 0 is the shipped model itself (the gate scores it with its own TTA and threshold)
    assert start["val_score"] > out["gate"]["active"] - 0.05, (start, out["gate"])

    # from ImageNet, the same run starts far lower
    scratch = run(from_scratch=True)
    assert scratch["manifest"]["training"]["init"] is None
    first = scratch["manifest"]["training"]["validation_curve"][0]
    assert first["val_score"] < start["val_score"] - 0.1, (first, start)


def test_training_a_shipped_model_makes_a_gated_version_of_it_in_the_users_registry(tmp_path: Path) -> None:
    """What "Train now" does with the shipped glass model in use: the run publishes the
    shipped model's next version into the user's (empty) registry, starting from the
    shipped weights, and the shipped version stays in use unless the new one beats it."""
    from inference.registry import Registry
    from training.common import TrainOptions
    from training.semantic import train_semantic

    _held_out_glass_project(tmp_path / "p", 8, 14)
    user = tmp_path / "user-models"
    out = train_semantic(TrainOptions(project=tmp_path / "p", task="semantic", epochs=1, max_steps=1, batch_size=2,
                                      registry=user, name="mirror-glass-semantic", num_threads=2, val_fraction=0.5))
    assert out["info"].version == "3" and out["info"].path.parent.parent == user  # after the shipped "2"
    init = out["manifest"]["training"]["init"]
    assert init["recovered_from_onnx"] and Path(init["file"]) == SHIPPED / "model.onnx"
    gate = out["gate"]
    assert gate["active_version"] == "2" and gate["active"] is not None, gate
    reg = Registry.with_shipped(user)
    assert reg.versions("mirror-glass-semantic") == ["2", "3"]
    assert reg.active("mirror-glass-semantic").version == ("3" if gate["activate"] else "2")
    assert not (SHIPPED / "weights.pt").exists()  # nothing written into the shipped folder
