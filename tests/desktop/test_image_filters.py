"""The images panel's search and filters in the real window: file name, status, class
present, pending proposals, proposal score, the count; D stepping through the rows shown;
the next image with proposals; images missing from the folder."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLabel, QLineEdit, QListView

from annotation.document import ImageRecord, ImageStatus, Instance, InstanceState
from annotation.mask import Mask, rasterize_polygon
from desktop_helpers import GDD

# file in the project <- GDD photo; a capital letter to show that the search ignores case
PHOTOS = {"1000.jpg": "1000.jpg", "1003.jpg": "1003.jpg", "1024.jpg": "1024.jpg", "Hall-1027.jpg": "1027.jpg"}
P, A, R = InstanceState.PROPOSED, InstanceState.ACCEPTED, InstanceState.REJECTED


def _square(size: tuple[int, int], x0: int = 100) -> Mask:
    return rasterize_polygon([(x0, 100), (x0 + 60, 100), (x0 + 60, 160), (x0, 160)], size)


def _make_project(root: Path) -> None:
    """Four photos: 1000 in progress with an accepted glass; 1003 new with a waiting mirror
    (0.9) and a rejected glass; 1024 in progress with a waiting glass (0.3); Hall-1027 done
    with nothing."""
    from annotation.store import ProjectStore

    root.mkdir()
    for name, src in PHOTOS.items():
        shutil.copy(GDD / "image" / src, root / name)
    with ProjectStore.open(root) as st:
        rec = {r.path: r for r in st.images()}
        assert set(rec) == set(PHOTOS)

        def inst(path: str, cls: str, state: InstanceState, score=None, x0=100) -> Instance:
            r = rec[path]
            origin = "manual" if score is None else "bright@1"
            return Instance(r.id, cls, _square((r.height, r.width), x0), state, origin=origin, score=score)

        st.add_instances([
            inst("1000.jpg", "glass", A),
            inst("1003.jpg", "mirror", P, 0.9),
            inst("1003.jpg", "glass", R, 0.8, x0=200),
            inst("1024.jpg", "glass", P, 0.3),
        ])
        st.set_image_status(rec["1000.jpg"].id, ImageStatus.IN_PROGRESS)
        st.set_image_status(rec["1024.jpg"].id, ImageStatus.IN_PROGRESS)
        st.set_image_status(rec["Hall-1027.jpg"].id, ImageStatus.DONE)


def _open(qtbot, folder: Path):
    from desktop.main_window import MainWindow

    win = MainWindow(str(folder))
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    qtbot.waitUntil(lambda: win.image_ready and not win.editor.scan.busy, timeout=20000)
    return win


@pytest.fixture
def fwin(qtbot, tmp_path):
    if not (GDD / "image" / "1000.jpg").exists():
        pytest.skip(f"GDD images not found under {GDD} (set SPECULA_DATA)")
    folder = tmp_path / "filters"
    _make_project(folder)
    win = _open(qtbot, folder)
    assert win.session.image.path == "1000.jpg"  # the first in path order
    yield win
    win.close()


def shown(win) -> list[str]:
    """The paths of the rows the list shows, in order."""
    view = win.findChild(QListView, "images.list")
    m = view.model()
    return [win.store.image(int(m.index(i, 0).data(Qt.ItemDataRole.UserRole))).path for i in range(m.rowCount())]


def w(win, cls, name):
    found = win.findChild(cls, name)
    assert found is not None, name
    return found


def choose(combo: QComboBox, text: str) -> None:
    i = combo.findText(text)
    assert i >= 0, (text, [combo.itemText(k) for k in range(combo.count())])
    combo.setCurrentIndex(i)


def count(win) -> str:
    return w(win, QLabel, "images.count").text()


def test_each_filter_selects_the_right_images(qtbot, fwin) -> None:
    win = fwin
    search = w(win, QLineEdit, "images.search")
    status, klass = w(win, QComboBox, "images.status"), w(win, QComboBox, "images.class")
    pending = w(win, QCheckBox, "images.pending")
    lo, hi = w(win, QDoubleSpinBox, "images.score_min"), w(win, QDoubleSpinBox, "images.score_max")
    everything = ["1000.jpg", "1003.jpg", "1024.jpg", "Hall-1027.jpg"]
    assert shown(win) == everything and count(win) == "4 of 4 images"
    # the class choices are the palette's
    assert [klass.itemText(i) for i in range(klass.count())] == ["any class", *win.session.palette.names]

    # file name: substring, case-insensitive; the open image (1000) always stays shown
    qtbot.keyClicks(search, "HALL")
    assert shown(win) == ["1000.jpg", "Hall-1027.jpg"] and count(win) == "2 of 4 images"
    search.clear()
    qtbot.keyClicks(search, "02")
    assert shown(win) == ["1000.jpg", "1024.jpg", "Hall-1027.jpg"]
    search.clear()
    assert shown(win) == everything

    choose(status, "new")
    assert shown(win) == ["1000.jpg", "1003.jpg"]
    choose(status, "done")
    assert shown(win) == ["1000.jpg", "Hall-1027.jpg"]
    choose(status, "in progress")
    assert shown(win) == ["1000.jpg", "1024.jpg"]
    choose(status, "all statuses")

    # class present: a rejected instance does not count (1003's glass)
    choose(klass, "glass")
    assert shown(win) == ["1000.jpg", "1024.jpg"]
    choose(klass, "mirror")
    assert shown(win) == ["1000.jpg", "1003.jpg"] and count(win) == "2 of 4 images"
    choose(klass, "any class")

    pending.setChecked(True)
    assert shown(win) == ["1000.jpg", "1003.jpg", "1024.jpg"]
    pending.setChecked(False)

    # score range over waiting proposals only (1003's rejected glass scores 0.8)
    lo.setValue(0.5)
    assert shown(win) == ["1000.jpg", "1003.jpg"]
    lo.setValue(0.0)
    hi.setValue(0.5)
    assert shown(win) == ["1000.jpg", "1024.jpg"]
    lo.setValue(0.75)  # above the maximum: the maximum follows, no inside-out range
    assert hi.value() == 0.75 and shown(win) == ["1000.jpg"] and count(win) == "1 of 4 images"
    hi.setValue(1.0)
    lo.setValue(0.0)
    assert shown(win) == everything

    # filters combine
    qtbot.keyClicks(search, "10")
    pending.setChecked(True)
    choose(klass, "glass")
    assert shown(win) == ["1000.jpg", "1024.jpg"]


def test_the_open_image_stays_until_another_is_opened(qtbot, fwin) -> None:
    """An action that makes the open image stop matching keeps it in the list; moving on
    takes it out. D steps through the rows shown."""
    win = fwin
    choose(w(win, QComboBox, "images.status"), "in progress")
    assert shown(win) == ["1000.jpg", "1024.jpg"]
    win.actions_by_name["image.done"].trigger()  # 1000 is done now: no longer in progress
    assert win.store.image(win.session.image.id).status is ImageStatus.DONE
    assert shown(win) == ["1000.jpg", "1024.jpg"]
    assert win.images_panel.currentIndex().row() == 0  # still the current row
    win.canvas.setFocus()
    qtbot.keyClick(win.canvas, Qt.Key.Key_D)
    qtbot.waitUntil(lambda: win.session.image.path == "1024.jpg", timeout=10000)
    assert shown(win) == ["1024.jpg"]  # 1000 left the list once 1024 was opened
    assert win.images_panel.currentIndex().row() == 0


def test_d_steps_through_the_filtered_rows(qtbot, fwin) -> None:
    win = fwin
    w(win, QCheckBox, "images.pending").setChecked(True)  # 1003 and 1024 (and the open 1000)
    win.canvas.setFocus()
    qtbot.keyClick(win.canvas, Qt.Key.Key_D)
    qtbot.waitUntil(lambda: win.session.image.path == "1003.jpg", timeout=10000)
    assert shown(win) == ["1003.jpg", "1024.jpg"]
    qtbot.keyClick(win.canvas, Qt.Key.Key_D)
    qtbot.waitUntil(lambda: win.session.image.path == "1024.jpg", timeout=10000)
    # the last row shown: D stays (Hall-1027, next in the whole list, has no proposal)
    assert win.editor.images.neighbour(win.session.image.id, 1) is None
    qtbot.keyClick(win.canvas, Qt.Key.Key_D, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: win.session.image.path == "1003.jpg", timeout=10000)
    # with no filter, D walks every image again
    w(win, QCheckBox, "images.pending").setChecked(False)
    ids = {r.path: r.id for r in win.store.images()}
    assert win.editor.images.neighbour(ids["1024.jpg"], 1) == ids["Hall-1027.jpg"]
    assert win.editor.images.neighbour(ids["1003.jpg"], -1) == ids["1000.jpg"]


def test_a_row_that_stops_matching_leaves_the_list(qtbot, fwin) -> None:
    """Proposals stored or decided for another image re-read its row (the proposer's
    ``image_stored``): the filter re-asks the store for that image alone."""
    win = fwin
    model = win.editor.images
    w(win, QDoubleSpinBox, "images.score_min").setValue(0.8)
    assert shown(win) == ["1000.jpg", "1003.jpg"]
    rec = win.store.image_by_path("1003.jpg")
    mirror = next(i for i in win.store.instances(rec.id) if i.class_name == "mirror")
    win.store.set_states([mirror.id], InstanceState.REJECTED)
    model.reload(rec.id)
    assert shown(win) == ["1000.jpg"]
    # and one that starts matching comes in: a new proposal for 1024 scoring 0.85
    r24 = win.store.image_by_path("1024.jpg")
    win.store.add_instance(Instance(r24.id, "mirror", _square((r24.height, r24.width), 300), P,
                                    origin="bright@1", score=0.85))
    model.reload(r24.id)
    assert shown(win) == ["1000.jpg", "1024.jpg"] and count(win) == "2 of 4 images"


def test_an_edit_of_the_open_image_updates_the_class_filter(qtbot, fwin) -> None:
    from desktop.commands import AddInstanceCommand

    win = fwin
    s = win.session
    choose(w(win, QComboBox, "images.class"), "mirror")
    assert shown(win) == ["1000.jpg", "1003.jpg"]  # 1000 only because it is open
    win.canvas.push(AddInstanceCommand(s, Instance(s.image.id, "mirror", _square(s.image_size, 400)), "draw_polygon"))
    win.canvas.setFocus()
    qtbot.keyClick(win.canvas, Qt.Key.Key_D)
    qtbot.waitUntil(lambda: s.image.path == "1003.jpg", timeout=10000)
    assert shown(win) == ["1000.jpg", "1003.jpg"]  # 1000 has a mirror now: it stays on its own


def test_the_class_choices_follow_the_palette(qtbot, fwin) -> None:
    win = fwin
    klass = w(win, QComboBox, "images.class")
    choose(klass, "mirror")
    assert shown(win) == ["1000.jpg", "1003.jpg"]
    win.editor.choose_palette("inspection")
    assert [klass.itemText(i) for i in range(klass.count())] == ["any class", "crack", "spalling", "rust"]
    # mirror is no class any more: the filter falls back to any class
    assert klass.currentText() == "any class" and len(shown(win)) == 4


def test_next_with_proposals(qtbot, fwin) -> None:
    win = fwin
    model = win.editor.images
    ids = {r.path: r.id for r in win.store.images()}
    assert model.next_with_proposals(ids["1000.jpg"]) == ids["1003.jpg"]
    assert model.next_with_proposals(ids["1003.jpg"]) == ids["1024.jpg"]
    assert model.next_with_proposals(ids["1024.jpg"]) == ids["1003.jpg"]  # wraps, past images without any
    assert model.next_with_proposals(ids["Hall-1027.jpg"]) == ids["1003.jpg"]
    assert model.next_with_proposals(None) == ids["1003.jpg"]
    # with a filter on, only the rows shown: glass keeps 1000 and 1024
    choose(w(win, QComboBox, "images.class"), "glass")
    assert model.next_with_proposals(ids["1000.jpg"]) == ids["1024.jpg"]
    assert model.next_with_proposals(ids["1024.jpg"]) is None  # 1003 is not shown, 1024 itself is not next


def test_missing_images_are_listed(qtbot, tmp_path) -> None:
    if not (GDD / "image" / "1000.jpg").exists():
        pytest.skip(f"GDD images not found under {GDD} (set SPECULA_DATA)")
    folder = tmp_path / "filters"
    _make_project(folder)
    (folder / "1024.jpg").unlink()  # known to the project, gone from the folder
    win = _open(qtbot, folder)
    try:
        model = win.editor.images
        assert win.editor.scan.missing == ["1024.jpg"]
        texts = win.images_panel.texts()
        assert "⚠ 1024.jpg — missing from the folder" in texts
        assert sum("missing" in t for t in texts) == 1
        choose(w(win, QComboBox, "images.status"), "missing")
        assert shown(win) == ["1000.jpg", "1024.jpg"]
        # it has a waiting proposal, but cannot be reviewed: the next image with proposals skips it
        ids = {r.path: r.id for r in win.store.images()}
        choose(w(win, QComboBox, "images.status"), "all statuses")
        assert model.next_with_proposals(ids["1003.jpg"]) is None
        # a later scan that finds it again restores its row
        model.mark_missing([])
        assert not any("missing" in t for t in win.images_panel.texts())
        assert model.next_with_proposals(ids["1003.jpg"]) == ids["1024.jpg"]
    finally:
        win.close()


def test_row_matches_is_a_plain_function() -> None:
    from desktop.panels.image_filters import MISSING, ImageFilter, row_matches

    rec = ImageRecord(path="a/Bridge-07.png", width=10, height=10, id=7, status=ImageStatus.NEW, n_proposed=2)
    f = ImageFilter(text=" bridge ")
    assert f.active and f.needle == "bridge"
    assert row_matches(f, f.needle, rec, "bridge-07.png", False, None, None)
    assert not row_matches(ImageFilter(status=ImageStatus.DONE.value), "", rec, "bridge-07.png", False, None, None)
    assert not row_matches(ImageFilter(status=MISSING), "", rec, "bridge-07.png", False, None, None)
    assert row_matches(ImageFilter(status=MISSING), "", rec, "bridge-07.png", True, None, None)
    assert row_matches(ImageFilter(class_name="crack"), "", rec, "bridge-07.png", False, {7}, None)
    assert not row_matches(ImageFilter(class_name="crack"), "", rec, "bridge-07.png", False, {8}, None)
    assert not row_matches(ImageFilter(score_range=(0.5, 1.0)), "", rec, "bridge-07.png", False, None, set())
    assert not ImageFilter().active
