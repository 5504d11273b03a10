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
