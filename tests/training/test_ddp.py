"""``torchrun`` with two CPU processes (gloo): every task splits an odd number of training
images evenly, every rank steps as often as the other, only rank 0 reports and publishes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from training_helpers import REPO, build_project, data_root, need_set

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.training, pytest.mark.slow]

# (task, data set, class, palette, extra arguments): sizes small enough for two CPU processes
CASES = {
    "semantic": ("glass-gdd", "glass", "mirror-glass", ["--input-size", "64", "--batch-size", "3"]),
    "cam": ("cracks-cfd", "crack", "inspection", ["--input-size", "64", "--batch-size", "16"]),
    "instance": ("mirror-msd", "mirror", "mirror-glass", ["--input-size", "128"]),
}


@pytest.mark.parametrize("task", sorted(CASES))
def test_torchrun_two_ranks_step_alike_and_publish_once(task, tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("this torch build has no torch.distributed")
    set_name, cls, palette, extra = CASES[task]
    need_set(set_name)
    ids = sorted(p.stem for p in (data_root() / set_name / "image").glob("*.jpg"))[:5]
    store = build_project(tmp_path / "p", set_name, ids, cls, palette=palette, clicks=task == "cam")
    store.close()
    reg = tmp_path / "registry"
    # --val-fraction 0: all five images train, so the two ranks must share an odd number
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training", str(tmp_path / "p"), "--task", task, "--epochs", "1", "--device", "cpu",
           "--val-fraction", "0", "--registry", str(reg), "--name", f"ddp-{task}", "--json", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=540, env=env)
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-3000:])

    events = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in events]
    # one voice: each event of a run once (two ranks reporting would print every step twice)
    assert kinds.count("data") == 1 and kinds.count("epoch") == 1 and kinds.count("published") == 1, kinds
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps and steps == sorted(set(steps)), steps

    from inference.registry import Registry

    registry = Registry(reg)
    assert registry.versions(f"ddp-{task}") == ["1"]
    ranks = registry.get(f"ddp-{task}", "1").manifest.training["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["steps"] == ranks[1]["steps"] == steps[-1] > 0, ranks
    assert ranks[0]["samples"] == ranks[1]["samples"], ranks
    if task != "cam":  # images are the unit: five split as three and three (one repeated)
        assert ranks[0]["samples"] == 3, ranks


def test_train_gpus_n_starts_torchrun_itself(tmp_path):
    """``specula train --gpus N`` runs the same training as N DDP processes (here on the CPU,
    gloo): one published version whose ranks stepped alike."""
    from training.cli import torchrun_command

    cmd = torchrun_command(["P", "--task", "semantic", "--gpus", "2", "--epochs", "1", "--gpus=3"], 2)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    assert cmd[6:] == ["-m", "training", "P", "--task", "semantic", "--epochs", "1"]

    set_name, cls, palette, extra = CASES["semantic"]
    need_set(set_name)
    ids = sorted(p.stem for p in (data_root() / set_name / "image").glob("*.jpg"))[:5]
    build_project(tmp_path / "p", set_name, ids, cls, palette=palette).close()
    reg = tmp_path / "registry"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "specula", "train", str(tmp_path / "p"), "--task", "semantic",
                          "--gpus", "2", "--device", "cpu", "--epochs", "1", "--val-fraction", "0",
                          "--registry", str(reg), "--name", "gpus", "--json", *extra],
                         cwd=REPO, capture_output=True, text=True, timeout=540, env=env)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-2000:])
    from inference.registry import Registry

    ranks = Registry(reg).get("gpus", "1").manifest.training["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and ranks[0]["steps"] == ranks[1]["steps"] > 0
    assert Registry(reg).versions("gpus") == ["1"]
