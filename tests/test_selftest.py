"""`specula self-test`, the headless job, the About text and the relaunch command, from source."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKS = ("qt", "runtime", "torch", "sample", "model", "propose", "clusters", "edit", "export", "reimport", "clicks")


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
    # the sample project's palette is mirror-glass: the registry's rule picks the shipped model made for it
    assert any(line.startswith("ok     model: mirror-glass-semantic 2 (semantic; shipped, chosen for the palette")
               for line in lines), out.stdout
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


def _publish_test_model(name: str, classes: Optional[list[str]] = None) -> None:
    """The self-test's tiny model under ``name``; ``classes`` (besides background) replace its
    mirror/glass classes, for models that are chosen but never run."""
    from inference.registry import Registry
    from specula.selftest import _TEST_MANIFEST, _TEST_MODEL

    folder = Path(os.environ["SPECULA_HOME"]) / f"incoming-{name}"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(_TEST_MODEL)
    manifest = {**_TEST_MANIFEST, "name": name}
    if classes is not None:
        manifest["classes"] = ["background", *classes]
    Registry.default().publish(folder, manifest)


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

    _publish_test_model("cracks-semantic", ["crack"])  # the inspection palette's model: not for mirror-glass
    project = tmp_path / "project"
    shutil.copytree(REPO / "assets" / "sample_project", project)
    assert run_headless(project) == 0
    text = capsys.readouterr().out
    assert ("no proposals: no model proposes for palette 'mirror-glass' (classes: mirror, glass, glass-in-mirror); "
            "models there are: cracks-semantic [crack]; add a model") in text
    assert (project / "exports" / "coco.json").is_file()


def test_headless_job_on_a_read_only_project_proposes_nothing_and_says_why(
    tmp_path: Path, capsys, user_registry_only, monkeypatch: pytest.MonkeyPatch
) -> None:
    import annotation.store as store_module
    from annotation.store import DB_NAME, ProjectStore
    from specula.headless import run_headless

    _publish_test_model("mirror-glass-semantic")
    project = tmp_path / "project"
    shutil.copytree(REPO / "assets" / "sample_project", project)
    ProjectStore.open(project).close()
    before = (project / DB_NAME).read_bytes()
    # tests run as root, which writes anyway: the store's permission check stands in for the file's mode
    real = store_module._can_write
    monkeypatch.setattr(store_module, "_can_write", lambda path: path.name != DB_NAME and real(path))
    assert run_headless(project) == 0
    text = capsys.readouterr().out
    assert f"no proposals: {project / DB_NAME} is read-only" in text
    assert "no scan for new images:" in text
    assert (project / DB_NAME).read_bytes() == before


def test_headless_job_on_a_missing_folder_fails_cleanly(tmp_path: Path, capsys) -> None:
    from specula.headless import run_headless

    assert run_headless(tmp_path / "nope") == 1
    assert "does not exist" in capsys.readouterr().err


def test_the_job_and_the_self_test_choose_by_the_registrys_rule(user_registry_only, tmp_path: Path) -> None:
    """The one rule (Registry.model_for_palette): a model's classes, not its name, decide."""
    from annotation.palette import builtin_palette, load_palette
    from inference.registry import Registry
    from specula import headless

    _publish_test_model("site-a", ["crack"])
    reg = Registry.default()
    info, why = reg.model_for_palette(builtin_palette("inspection"))
    assert info is not None and info.name == "site-a", why
    info, why = reg.model_for_palette(builtin_palette("mirror-glass"))
    assert info is None and "palette 'mirror-glass'" in why and "site-a [crack]" in why
    own = tmp_path / "own.toml"
    own.write_text('name = "my-own-palette"\n[[classes]]\nname = "pane"\ncolor = [1, 2, 3]\n')
    info, why = reg.model_for_palette(load_palette(own))  # the only model there is does not fit
    assert info is None and "classes: pane" in why
    # no hint tables left to disagree with the registry
    assert not hasattr(headless, "DEFAULT_MODEL_HINTS") and not hasattr(headless, "default_model_for")


def test_about_text_names_versions_kind_providers_and_models(user_registry_only) -> None:
    import onnxruntime

    from appinfo import __version__
    from appinfo.about import about_text, bundle_kind

    _publish_test_model("mirror-glass-semantic")
    text = about_text()
    assert text.splitlines()[0] == f"Specula {__version__} (source build)"
    assert bundle_kind() == "source"
    assert f"Python        {sys.version.split()[0]}" in text
    assert "PySide6 " in text and f"ONNX Runtime  {onnxruntime.__version__}" in text
    assert "CPUExecutionProvider" in text
    assert "mirror-glass-semantic 1  semantic  [background, mirror, glass, glass-in-mirror]  (yours)" in text


def test_own_command_from_source_and_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    from appinfo.relaunch import own_command

    assert own_command("train", "p") == [sys.executable, "-m", "specula", "train", "p"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert own_command("train", "p") == [sys.executable, "train", "p"]
