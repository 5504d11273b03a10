"""How pixels reach the canvas, and where the engine is made: the loader's worker hands
over both levels the canvas draws (the GUI thread makes none), the tiles item takes a
prebuilt level, and the GPU probe runs once, in a worker, after the window is shown."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from desktop_helpers import GDD, IMAGES


def _on_gui_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _recording(fn, calls: list):
    """``fn`` wrapped to append whether each call ran on the GUI thread."""

    def wrapper(*args, **kwargs):
        calls.append(_on_gui_thread())
        return fn(*args, **kwargs)

    return wrapper


def _photo():
    path = GDD / "image" / IMAGES[0]
    if not path.exists():
        pytest.skip(f"GDD images not found under {GDD} (set SPECULA_DATA)")
    return path


# ------------------------------------------------------------------ the loader
def test_loader_hands_over_the_photo_and_its_zoomed_out_level(qtbot):
    from annotation.images import decode_reduced, load_image
    from desktop.canvas.tiles import LOW_FACTOR
    from desktop.loader import ImageLoader

    path = _photo()  # 1280 x 1024: over the size that gets a level
    loader = ImageLoader()
    got = []
    loader.loaded.connect(lambda rid, rgb, low, err: got.append((rid, rgb, low, err)))
    rid = loader.request(str(path))
    qtbot.waitUntil(lambda: bool(got), timeout=20000)
    (r, rgb, low, err) = got[0]
    assert r == rid and err == ""
    np.testing.assert_array_equal(rgb, load_image(path).rgb)
    assert low.shape == (1024 // LOW_FACTOR, 1280 // LOW_FACTOR, 3)
    np.testing.assert_array_equal(low, decode_reduced(path, LOW_FACTOR))


def test_loader_reports_an_unreadable_file(qtbot, tmp_path):
    from desktop.loader import ImageLoader

    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    loader = ImageLoader()
    got = []
    loader.loaded.connect(lambda rid, rgb, low, err: got.append((rgb, low, err)))
    loader.request(str(bad))
    qtbot.waitUntil(lambda: bool(got), timeout=20000)
    rgb, low, err = got[0]
    assert rgb is None and low is None and "not an image" in err


# ------------------------------------------------------------------ the tiles item
def test_tiles_item_takes_a_prebuilt_level_and_makes_none(monkeypatch):
    from desktop.canvas import tiles

    def refuse(*_a, **_k):
        raise AssertionError("the item resized the photo itself")

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (1100, 1301, 3), dtype=np.uint8)
    low = np.ascontiguousarray(rgb[::4, ::4])  # (275, 326): rounded up, as libjpeg's scaled decode
    monkeypatch.setattr(tiles, "preview_level", refuse)
    item = tiles.TiledImageItem(rgb, low=low)
    assert item.low is low and item.rgb is rgb
    with pytest.raises(ValueError, match="zoomed-out level"):
        tiles.TiledImageItem(rgb, low=low[:100])


def test_tiles_item_given_no_level_still_makes_one():
    from desktop.canvas.tiles import LOW_FACTOR, TiledImageItem

    rgb = np.zeros((600, 2050, 3), np.uint8)
    assert TiledImageItem(rgb).low.shape == (600 // LOW_FACTOR, 2050 // LOW_FACTOR, 3)
    assert TiledImageItem(rgb[:, :1024]).low is None  # small enough to draw from the full level


def test_the_window_shows_the_workers_level_and_the_gui_thread_makes_none(qtbot, project, monkeypatch):
    """Opening images in the real window: every zoomed-out level is made in the loader's
    worker; the GUI thread wraps it, and the display adjustment still applies to it."""
    from annotation import images
    from desktop.canvas import tiles
    from desktop.main_window import MainWindow

    made, item_made = [], []
    monkeypatch.setattr(images, "decode_reduced", _recording(images.decode_reduced, made))
    monkeypatch.setattr(images, "preview_level", _recording(images.preview_level, made))
    monkeypatch.setattr(tiles, "preview_level", _recording(tiles.preview_level, item_made))
    win = MainWindow(str(project))
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitUntil(lambda: win.image_ready, timeout=20000)
    win.actions_by_name["image.next"].trigger()
    qtbot.waitUntil(lambda: win.image_ready and win.session.image.path == IMAGES[1], timeout=20000)
    item = win.canvas.image_item
    assert item.low is not None and item.low.shape == (256, 320, 3)
    assert made and not any(made), "a level was made on the GUI thread"
    assert item_made == [], "the image item resized the photo itself"
    # display adjustment at fit zoom draws the level through the table; the photo stays as stored
    stored = win.current_rgb.copy()
    win.canvas.step_display("brightness", 3)
    win.canvas.viewport().repaint()
    assert np.array_equal(win.current_rgb, stored)
    win.close()


# ------------------------------------------------------------------ the engine
@pytest.fixture
def fresh_start(monkeypatch):
    """``desktop.engine_host``'s process-wide start-up state, as in a new process (and put
    back afterwards, so that later tests' hosts do not start engines by themselves)."""
    from desktop import app, engine_host
    from inference import runtime

    monkeypatch.setattr(engine_host, "_window_shown", False)
    monkeypatch.setattr(engine_host, "_after_first_engine", [])
    probes: list[bool] = []
    monkeypatch.setattr(runtime, "choose_providers", _recording(runtime.choose_providers, probes))
    frozen: list[bool] = []
    # the heap freeze is process-wide: recorded here, not done to the test process
    monkeypatch.setattr(app, "_freeze_startup_heap", lambda: frozen.append(_on_gui_thread()))
    return probes, frozen


def test_gpu_probe_runs_once_in_a_worker_after_the_window_is_shown(qtbot, awindow, fresh_start):
    """The device label fills in without any proposal, the probe (``choose_providers``)
    never runs on the GUI thread, and the first proposal does not probe again."""
    from assist_fixtures import propose_here

    from desktop.app import show_window

    probes, frozen = fresh_start
    win = awindow
    label = win.assist.device_label
    assert not win.assist.host.started and probes == []  # made at first use, until the window is shown
    label.setText("")
    show_window(win)  # as desktop.app.run shows it: the engine starts once the window is painted
    qtbot.waitUntil(lambda: label.text() != "", timeout=30000)
    assert label.text().startswith("Inference: ") and label.toolTip()
    assert probes == [False], "the probe ran on the GUI thread, or more than once"
    qtbot.waitUntil(lambda: bool(frozen), timeout=10000)
    assert frozen == [False]  # after the first engine, in its worker
    props = propose_here(qtbot, win)
    assert props
    assert probes == [False]


def test_a_project_opened_after_the_window_is_shown_starts_its_engine_in_a_worker(qtbot, project, model_home,
                                                                                  fresh_start):
    from desktop.engine_host import EngineHost, start_after_show

    probes, _frozen = fresh_start
    start_after_show()
    host = EngineHost()  # as a project opened later makes one
    reports = []
    host.device_report.connect(lambda short, full: reports.append((short, full)))
    qtbot.waitUntil(lambda: bool(reports), timeout=30000)
    assert host.started and probes == [False]
    assert reports[0][0].startswith("inference on ")
    host.close()
