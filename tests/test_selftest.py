"""`specula self-test`, the headless job, the About text and the relaunch command, from source."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKS = ("qt", "runtime", "torch", "sample", "model", "propose", "edit", "export", "reimport")


def _env(home: Path) -> dict:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", SPECULA_HOME=str(home), PYTHONPATH=str(REPO))
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def test_self_test_passes_from_source(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "specula", "self-test"], cwd=REPO, env=_env(tmp_path / "home"),
        capture_output=True, text=True, timeout=300,
    )
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stdout + out.stderr
    for name in CHECKS:
        assert any(line.startswith(f"ok     {name}: ") for line in lines), f"no ok line for {name}:\n{out.stdout}"
    assert not any(line.startswith("FAILED") for line in lines)
    assert lines[-1] == f"self-test passed: {len(CHECKS)} checks"
    # the user's data folder is left alone: the self-test works in its own temporary folder
    assert not (tmp_path / "home").exists()


def test_dash_dash_self_test_is_the_same_command(tmp_path: Path) -> None:
    from specula.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["self-test"])
    assert args.handler.__name__ == "cmd_self_test"
    code = (
        "import sys; from specula import selftest\n"
        "selftest.run_self_test = lambda keep=False: print('RAN') or 0\n"
        "from specula.cli import main; sys.exit(main(['--self-test']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(tmp_path), capture_output=True, text=True)
    assert out.returncode == 0 and "RAN" in out.stdout, out.stderr


def test_a_failing_check_gives_one_failed_line_and_exit_1(tmp_path: Path) -> None:
    """A broken installation (here: no sample project) is reported, not a traceback."""
    code = (
        "import sys\n"
        "import annotation.resources as r\n"
        "real = r.asset_path\n"
        "r.asset_path = lambda *p: real('no-such-folder') if p == ('sample_project',) else real(*p)\n"
        "from specula.cli import main; sys.exit(main(['self-test']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(tmp_path), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 1
    failed = [ln for ln in out.stdout.splitlines() if ln.startswith("FAILED")]
    assert failed and failed[0].startswith("FAILED sample: ")
    assert "FAILED propose: skipped, needs model" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


@pytest.fixture
def user_registry_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registry.default() without the shipped assets/models, so tests do not depend on what is shipped."""
    from annotation.resources import user_data_dir
    from inference.registry import Registry

    monkeypatch.setattr(Registry, "default", classmethod(lambda cls: cls(user_data_dir() / "models")))


def _publish_test_model(name: str) -> None:
    from inference.registry import Registry
    from specula.selftest import _TEST_MANIFEST, _TEST_MODEL

    folder = Path(os.environ["SPECULA_HOME"]) / "incoming"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(_TEST_MODEL)
    Registry.default().publish(folder, {**_TEST_MANIFEST, "name": name})


def test_headless_job_proposes_with_the_palettes_model_and_exports(tmp_path: Path, capsys, user_registry_only) -> None:
    from specula.headless import run_headless

    _publish_test_model("mirror-glass-semantic")
    project = tmp_path / "project"
    shutil.copytree(REPO / "assets" / "sample_project", project)
    assert run_headless(project) == 0
    text = capsys.readouterr().out
    assert "proposing with mirror-glass-semantic 1 (semantic)" in text
    coco = json.loads((project / "exports" / "coco.json").read_text())
    assert len(coco["images"]) == 3 and coco["annotations"]
    assert f"exported accepted and proposed instances as COCO: {project / 'exports' / 'coco.json'}" in text
    # a second run replaces the proposals instead of piling them up
    assert run_headless(project) == 0
    again = json.loads((project / "exports" / "coco.json").read_text())
    assert len(again["annotations"]) == len(coco["annotations"])


def test_headless_job_without_a_model_says_so_and_still_exports(tmp_path: Path, capsys, user_registry_only) -> None:
    from specula.headless import run_headless

    _publish_test_model("cracks-semantic")  # the inspection palette's model: not for mirror-glass
    project = tmp_path / "project"
    shutil.copytree(REPO / "assets" / "sample_project", project)
    assert run_headless(project) == 0
    text = capsys.readouterr().out
    assert "no proposals: no model named *mirror-glass* for palette 'mirror-glass'" in text
    assert (project / "exports" / "coco.json").is_file()


def test_headless_job_on_a_missing_folder_fails_cleanly(tmp_path: Path, capsys) -> None:
    from specula.headless import run_headless

    assert run_headless(tmp_path / "nope") == 1
    assert "does not exist" in capsys.readouterr().err


def test_default_model_follows_the_palette(user_registry_only) -> None:
    from inference.registry import Registry
    from specula.headless import default_model_for

    _publish_test_model("cracks-semantic")
    reg = Registry.default()
    info, why = default_model_for("inspection", reg)
    assert info is not None and info.name == "cracks-semantic", why
    info, why = default_model_for("mirror-glass", reg)
    assert info is None and "mirror-glass" in why
    info, _ = default_model_for("my-own-palette", reg)  # the one model there is
    assert info is not None and info.name == "cracks-semantic"


def test_about_text_names_versions_kind_providers_and_models(user_registry_only) -> None:
    import onnxruntime

    from specula import __version__
    from specula.about import about_text, bundle_kind

    _publish_test_model("mirror-glass-semantic")
    text = about_text()
    assert text.splitlines()[0] == f"Specula {__version__} (source build)"
    assert bundle_kind() == "source"
    assert f"Python        {sys.version.split()[0]}" in text
    assert "PySide6 " in text and f"ONNX Runtime  {onnxruntime.__version__}" in text
    assert "CPUExecutionProvider" in text
    assert "mirror-glass-semantic 1  semantic  [background, mirror, glass, glass-in-mirror]  (yours)" in text


def test_own_command_from_source_and_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    from specula.subprocess_cmd import own_command

    assert own_command("train", "p") == [sys.executable, "-m", "specula", "train", "p"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert own_command("train", "p") == [sys.executable, "train", "p"]
