"""Desktop tests run offscreen; QSettings point at a temporary folder."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil  # noqa: E402

import pytest  # noqa: E402

from desktop_helpers import DATA, GDD, IMAGES, REPO  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _settings_in_tmp(tmp_path_factory):
    from PySide6.QtCore import QSettings

    d = tmp_path_factory.mktemp("qsettings")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(d))
    yield d


@pytest.fixture
def project(tmp_path):
    if not (GDD / "image" / IMAGES[0]).exists():
        pytest.skip(f"GDD images not found under {GDD} (set SPECULA_DATA)")
    proj = tmp_path / "proj"
    proj.mkdir()
    for name in IMAGES:
        shutil.copy(GDD / "image" / name, proj / name)
    return proj


@pytest.fixture
def window(qtbot, project):
    from PySide6.QtCore import QPointF

    from desktop.main_window import MainWindow

    win = MainWindow(str(project))
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    qtbot.waitUntil(lambda: win.image_ready, timeout=20000)
    # zoom 1, centred: image pixels map to whole view pixels exactly
    c = win.canvas
    c.resetTransform()
    c.centerOn(QPointF(640, 512))
    yield win
    win.close()


@pytest.fixture
def model_home(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    home = tmp_path / "specula_home"
    monkeypatch.setenv("SPECULA_HOME", str(home))
    from desktop_models import publish_bright
    from inference.registry import Registry

    info = publish_bright(Registry.default().root, tmp_path / "build")
    return home, info


@pytest.fixture
def awindow(model_home, window):
    """The real main window over a project, with a model in the registry (created after it)."""
    window.activateWindow()
    combo = window.assist.review_panel.model_combo
    combo.setCurrentIndex(combo.findData(model_home[1].name))  # even if shipped models match too
    assert combo.currentData() == model_home[1].name
    return window
