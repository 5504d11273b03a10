"""What each model version's proposals became (``annotation.versions``), on a real store:
states per origin, edits still in effect (an undone edit is no edit, a redone one is),
order of the rows, the text table, and the registry's validation figures and "in use"
(``inference.version_figures``) on a real registry; ``specula stats --versions``."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from annotation.document import Instance, InstanceState
from annotation.mask import Mask
from annotation.store import ProjectStore
from annotation.versions import MASK_EDIT_ACTIONS, format_outcomes, version_outcomes
from inference.registry import Registry
from inference.version_figures import fill_from_registry, validation_iou

REPO = Path(__file__).resolve().parents[1]


def _project(tmp_path: Path) -> tuple[ProjectStore, int]:
    import cv2

    root = tmp_path / "p"
    root.mkdir()
    cv2.imwrite(str(root / "a.png"), np.full((40, 50, 3), 90, np.uint8))
    store = ProjectStore.open(root)
    return store, store.images()[0].id


def _add(store: ProjectStore, image_id: int, origin: str, state: InstanceState, n: int) -> list[int]:
    mask = Mask.from_box_array(2, 3, np.ones((5, 6), bool), (40, 50))
    ids = store.add_instances([Instance(image_id, "glass", mask.copy(), state, origin, 0.8) for _ in range(n)])
    time.sleep(0.002)  # "created" orders the versions
    return ids


def test_outcomes_count_states_and_edits_in_effect_per_version(tmp_path):
    store, img = _project(tmp_path)
    v1 = _add(store, img, "glass@1", InstanceState.ACCEPTED, 4)
    _add(store, img, "glass@1", InstanceState.REJECTED, 3)
    v2 = _add(store, img, "glass@2", InstanceState.ACCEPTED, 2)
    _add(store, img, "glass@2", InstanceState.PROPOSED, 5)
    hand = _add(store, img, "manual", InstanceState.ACCEPTED, 2)
    store.log("brush", image_id=img, instance_id=v1[0], class_name="glass")      # edited
    store.log("reroute", image_id=img, instance_id=v1[1], class_name="glass")    # edited, undone
    store.log("undo", image_id=img, instance_id=v1[1], class_name="glass", of="reroute")
    store.log("erase", image_id=img, instance_id=v1[2], class_name="glass")      # edited, undone, redone
    store.log("undo", image_id=img, instance_id=v1[2], class_name="glass", of="erase")
    store.log("redo", image_id=img, instance_id=v1[2], class_name="glass", of="erase")
    store.log("accept", image_id=img, instance_id=v1[3], class_name="glass")     # no edit
    store.log("undo", image_id=img, instance_id=v1[3], class_name="glass", of="accept")
    store.log("draw_polygon", image_id=img, instance_id=hand[0], class_name="glass")  # drawing is not counted
    store.log("brush", image_id=img, instance_id=v2[0], class_name="glass")
    store.log("brush", image_id=img, instance_id=v2[0], class_name="glass")      # twice: still one instance
    rows = version_outcomes(store)
    assert [r.origin for r in rows] == ["glass@1", "glass@2", "manual"]
    one, two, manual = rows
    assert (one.accepted_as_proposed, one.accepted_edited, one.rejected, one.waiting) == (2, 2, 3, 0)
    assert math.isclose(one.acceptance, 4 / 7) and math.isclose(one.as_proposed, 2 / 7)
    assert (two.accepted_as_proposed, two.accepted_edited, two.rejected, two.waiting) == (1, 1, 0, 5)
    assert (manual.accepted_as_proposed, manual.accepted_edited) == (2, 0)
    text = format_outcomes(rows)
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["origin", "accepted"] and "drawn by hand" in lines[3]
    assert lines[1].split()[:5] == ["glass@1", "2", "2", "3", "0"] and "57 %" in lines[1]
    # an edit on an instance later rejected does not make an accepted one
    store.set_states([v1[0]], InstanceState.REJECTED)
    one = version_outcomes(store)[0]
    assert (one.accepted_as_proposed, one.accepted_edited, one.rejected) == (2, 1, 4)
    store.close()


def test_an_empty_project_has_no_rows_and_every_editing_tool_is_counted(tmp_path):
    store, _ = _project(tmp_path)
    assert version_outcomes(store) == []
    store.close()
    # the editor's mask-editing tools and operations log under these names
    import re

    names = set()
    for path in (REPO / "desktop").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        names |= set(re.findall(r'MaskEditCommand\([^)]*?,\s*"([a-z_]+)"', text))
        names |= set(re.findall(r'replace_mask\([^)]*?"([a-z_]+)"', text))
    names |= {"brush", "erase", "prompt_refine"}  # passed through variables
    assert names and names <= MASK_EDIT_ACTIONS


def test_validation_figures_come_from_the_registry_and_bad_values_are_ignored(tmp_path):
    assert validation_iou({"validation_protocol": {"image_mean_iou": 0.81}}) == pytest.approx(0.81)
    assert validation_iou({"validation": {"mean_iou": 0.5}}) == pytest.approx(0.5)
    for bad in ({"validation_protocol": {"image_mean_iou": float("nan")}}, {"validation": {"mean_iou": 1.7}},
                {"validation": {"mean_iou": True}}, {"validation": "x"}, None, []):
        assert validation_iou(bad) is None
    reg = Registry(tmp_path / "reg")
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "model.onnx").write_bytes(b"not read here")
    base = {"task": "semantic", "classes": ["background", "glass"], "output_activation": "softmax",
            "background_class": "background", "normalization": {"mean": [0, 0, 0], "std": [1, 1, 1]}}
    reg.publish(weights, {**base, "name": "glass", "version": "1",
                          "metrics": {"validation_protocol": {"image_mean_iou": 0.7}}})
    reg.publish(weights, {**base, "name": "glass", "version": "2",
                          "metrics": {"validation_protocol": {"image_mean_iou": 0.8}}}, activate=False)
    store, img = _project(tmp_path)
    _add(store, img, "glass@1", InstanceState.ACCEPTED, 1)
    _add(store, img, "glass@2", InstanceState.PROPOSED, 1)
    _add(store, img, "gone@3", InstanceState.REJECTED, 1)
    rows = fill_from_registry(version_outcomes(store), reg)
    by = {r.origin: r for r in rows}
    assert by["glass@1"].validation_iou == pytest.approx(0.7) and by["glass@1"].in_use
    assert by["glass@2"].validation_iou == pytest.approx(0.8) and not by["glass@2"].in_use
    assert by["gone@3"].validation_iou is None and not by["gone@3"].in_use
    store.close()


def test_specula_stats_versions_prints_the_table_and_json(tmp_path):
    store, img = _project(tmp_path)
    _add(store, img, "mirror-glass-semantic@2", InstanceState.ACCEPTED, 3)
    _add(store, img, "mirror-glass-semantic@2", InstanceState.REJECTED, 1)
    store.close()
    cmd = [sys.executable, "-m", "specula", "stats", str(tmp_path / "p"), "--versions"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    row = out.stdout.splitlines()[1]
    assert row.startswith("mirror-glass-semantic@2") and row.split()[-3:-1] == ["75", "%"]
    got = json.loads(subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=120).stdout)
    assert got[0]["accepted"] == 3 and got[0]["rejected"] == 1 and got[0]["acceptance"] == pytest.approx(0.75)
    # the shipped model's manifest carries its validation figure
    assert got[0]["validation_iou"] is not None and 0.5 < got[0]["validation_iou"] <= 1.0
