"""The loop in the real window: propose, accept labels, retrain from the training panel
(the real ``specula train`` process, 1 epoch), the engine switches to the new version
and the re-proposed images carry it."""
from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import Qt

from assist_fixtures import key, propose_here


def test_accept_retrain_switch_version(qtbot, awindow):
    pytest.importorskip("torch")
    pytest.importorskip("training.cli")
    win = awindow
    before = propose_here(qtbot, win)
    assert {p.origin for p in before} == {"tiny-mirror-glass@1"}
    tp = win.assist.training_panel
    assert win.findChild(type(tp), "training") is tp
    tp.epochs.setValue(1)
    assert tp.task.currentText() == "semantic"
    tp.retrain_after.setValue(2)
    tp.auto.setChecked(True)
    assert tp.new_accepted() == 0
    key(qtbot, win, Qt.Key.Key_N)
    key(qtbot, win, Qt.Key.Key_A)
    assert not tp.running
    key(qtbot, win, Qt.Key.Key_A)  # the second new accepted label starts the retraining
    qtbot.waitUntil(lambda: tp.running, timeout=5000)
    assert not tp.start_button.isEnabled() and tp.stop_button.isEnabled()
    assert tp.new_accepted() == 0  # counted from this start
    qtbot.waitUntil(lambda: not tp.running, timeout=300000)
    assert "Training finished" in tp.status.text(), tp.status.text()
    assert tp.last_published == ("tiny-mirror-glass", "2")
    assert tp.progress.value() == 1000
    assert "loss" in tp.curves.series and tp.curves.series["loss"]
    # the quality gate: version 1 (a one-class test model) cannot be compared with a model of the
    # palette's classes, so version 2 is used, and the record says why
    assert tp.last_gate["activated"] is True and "other classes" in tp.last_gate["reason"], tp.last_gate
    # the registry watch (or the 'published' event) offers to re-propose the images not done
    qtbot.waitUntil(lambda: tp.repropose_button.isVisible(), timeout=10000)
    assert "tiny-mirror-glass@2" in tp.repropose_button.text() and "2 images" in tp.repropose_button.text()
    assert "tiny-mirror-glass@2" in win.assist.review_panel.model_combo.currentText()
    qtbot.mouseClick(tp.repropose_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not win.assist.proposer.busy, timeout=120000)
    rows = win.store.interactions(actions=["propose"])
    assert rows[-1].details["version"] == "2" and rows[0].details["version"] == "1"
    assert win.assist.host.engine().current_version("tiny-mirror-glass") == "2"
    after = {p.origin for p in win.session.proposals()}
    assert after <= {"tiny-mirror-glass@2"}  # the old version's proposals are gone
    assert "tiny-mirror-glass@1" not in {i.origin for i in win.store.instances() if i.is_proposal}


def test_training_failure_shows_stderr(qtbot, awindow):
    tp = awindow.assist.training_panel
    tp.proc.start([sys.executable, "-c", "import sys; sys.stderr.write('boom: no GPU here\\n'); sys.exit(3)"])
    qtbot.waitUntil(lambda: not tp.running and "failed" in tp.status.text(), timeout=30000)
    assert "exit code 3" in tp.status.text() and "boom: no GPU here" in tp.status.text()


def test_training_stop(qtbot, awindow):
    tp = awindow.assist.training_panel
    tp.proc.start([sys.executable, "-c", "import time; print('{\"event\": \"data\"}', flush=True); time.sleep(60)"])
    qtbot.waitUntil(lambda: "Training on" in tp.status.text(), timeout=20000)
    tp.stop_button.setEnabled(True)
    qtbot.mouseClick(tp.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tp.running, timeout=10000)
    assert "stopped" in tp.status.text()


def test_train_command_runs_our_own_program():
    from desktop.training_process import parse_line, train_command

    cmd = train_command("/p", "cam", 3)
    assert cmd[0] == sys.executable and cmd[-7:] == ["train", "/p", "--task", "cam", "--epochs", "3", "--json"]
    assert parse_line('{"event": "epoch", "epoch": 1}') == {"event": "epoch", "epoch": 1}
    assert parse_line("loading…") is None and parse_line("{bad") is None


def _labelled_project(tmp_path, n_labels: int):
    """A project with two GDD photos and ``n_labels`` accepted instances, imported before opening."""
    import shutil

    import numpy as np

    from annotation.document import Instance
    from annotation.mask import Mask
    from annotation.store import ProjectStore
    from desktop_helpers import GDD, IMAGES

    if not (GDD / "image" / IMAGES[0]).exists():
        pytest.skip(f"GDD images not found under {GDD}")
    proj = tmp_path / "labelled"
    proj.mkdir()
    for n in IMAGES:
        shutil.copy(GDD / "image" / n, proj / n)
    with ProjectStore.open(proj) as store:
        recs = store.images()
        insts = []
        for k in range(n_labels):
            rec = recs[k % len(recs)]
            insts.append(Instance(rec.id, "glass", Mask.from_box_array(10 * (k % 50), 10 * (k // 50), np.ones((8, 8), bool),
                                                                     rec.size)))
        store.add_instances(insts)
        store.set_meta("training.auto", "1")  # even with "retrain automatically" on
    return proj


def test_opening_a_project_with_many_new_labels_offers_training_and_starts_nothing(qtbot, tmp_path):
    from desktop.main_window import MainWindow

    proj = _labelled_project(tmp_path, 70)
    win = MainWindow(str(proj))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.image_ready, timeout=20000)
    qtbot.wait(800)  # the old code started training 0.6 s after opening
    tp = win.assist.training_panel
    assert tp.auto.isChecked() and not tp.running
    assert not (proj / ".specula" / "training").exists()  # no run folder: nothing was started
    assert tp.offer.isVisible() and "70 new labels" in tp.offer.text()
    assert "70 new accepted labels" in tp.new_labels.text()
    win.close()


FAKE_RUN = ("import json, sys, time\n"
            "print(json.dumps({'event': 'data', 'train_images': 2, 'val_images': 1}), flush=True)\n"
            "time.sleep({sleep})\n"
            "print(json.dumps({'event': 'published', 'name': 'kept-model', 'version': '7'}), flush=True)\n")


def test_closing_with_training_running_asks_and_a_kept_run_still_publishes(qtbot, tmp_path, monkeypatch):
    from desktop.main_window import MainWindow
    from desktop.training_process import TrainingProcess, runs_dir_of

    proj = _labelled_project(tmp_path, 3)
    win = MainWindow(str(proj))
    qtbot.addWidget(win)
    tp = win.assist.training_panel
    tp.proc.start([sys.executable, "-c", FAKE_RUN.replace("{sleep}", "3")])
    qtbot.waitUntil(lambda: "Training on" in tp.status.text(), timeout=20000)
    asked = []
    monkeypatch.setattr(MainWindow, "ask_about_training", lambda self: asked.append(1) or "cancel")
    win.close()
    assert asked and win.ctx is not None and tp.running  # cancel: the project stays open
    monkeypatch.setattr(MainWindow, "ask_about_training", lambda self: "keep")
    win.close()
    assert win.ctx is None
    run = TrainingProcess.find_running(runs_dir_of(proj))
    assert run is not None  # it goes on without the window
    # opening the project again shows the run, which finishes and publishes
    win2 = MainWindow(str(proj))
    qtbot.addWidget(win2)
    tp2 = win2.assist.training_panel
    assert tp2.running and "still running" in tp2.status.text()
    qtbot.waitUntil(lambda: not tp2.running, timeout=30000)
    assert tp2.last_published == ("kept-model", "7") and "Training finished" in tp2.status.text()
    win2.close()


def test_closing_with_training_running_can_stop_it(qtbot, tmp_path, monkeypatch):
    from desktop.main_window import MainWindow
    from desktop.training_process import TrainingProcess, runs_dir_of

    proj = _labelled_project(tmp_path, 3)
    win = MainWindow(str(proj))
    qtbot.addWidget(win)
    tp = win.assist.training_panel
    tp.proc.start([sys.executable, "-c", FAKE_RUN.replace("{sleep}", "60")])
    pid = tp.proc.pid
    qtbot.waitUntil(lambda: "Training on" in tp.status.text(), timeout=20000)
    monkeypatch.setattr(MainWindow, "ask_about_training", lambda self: "stop")
    win.close()
    assert win.ctx is None and TrainingProcess.find_running(runs_dir_of(proj)) is None
    import os

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


GATED_RUN = ("import json\n"
             "print(json.dumps({'event': 'data', 'train_images': 2, 'val_images': 1}), flush=True)\n"
             "print(json.dumps({'event': 'gate', 'name': 'kept-model', 'version': '8', 'activated': False,"
             " 'new': 0.41, 'active': 0.77, 'active_version': '7', 'metric': 'iou',"
             " 'reason': 'iou 0.4100 against 0.7700 for version 7 on the same validation images: not better'}),"
             " flush=True)\n"
             "print(json.dumps({'event': 'published', 'name': 'kept-model', 'version': '8', 'activated': False}),"
             " flush=True)\n")


def test_a_version_the_gate_kept_out_is_reported_with_both_figures_and_the_way_to_use_it(qtbot, tmp_path):
    from desktop.main_window import MainWindow

    proj = _labelled_project(tmp_path, 3)
    win = MainWindow(str(proj))
    qtbot.addWidget(win)
    tp = win.assist.training_panel
    tp.proc.start([sys.executable, "-c", GATED_RUN])
    qtbot.waitUntil(lambda: tp.last_published is not None and not tp.running, timeout=30000)
    text = tp.status.text()
    assert "Training finished: kept-model@8" in text and "not used" in text, text
    assert "0.4100 against 0.7700 for version 7" in text and "specula models activate kept-model 8" in text, text
    assert not tp.repropose_button.isVisible()  # nothing new is in use: nothing to re-propose
    win.close()


def test_training_with_a_shipped_model_in_use_makes_a_version_of_it(qtbot, awindow):
    """With the shipped model chosen, "Train now" names it: the run starts from its weights
    and is judged against it (a new name would start from ImageNet and be used at once)."""
    win = awindow
    combo = win.assist.review_panel.model_combo
    index = combo.findData("mirror-glass-semantic")
    assert index >= 0, [combo.itemData(i) for i in range(combo.count())]
    combo.setCurrentIndex(index)
    assert win.assist.review_panel.chosen_info().read_only  # the shipped one
    tp = win.assist.training_panel
    started = []
    tp.proc.start = lambda cmd: started.append(list(cmd))  # the command, not a process
    assert tp.start()
    cmd = started[0]
    assert cmd[cmd.index("--name") + 1] == "mirror-glass-semantic" and "--task" in cmd
    assert cmd[cmd.index("--task") + 1] == "semantic"
