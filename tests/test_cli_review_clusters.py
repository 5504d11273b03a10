"""``specula review-clusters``: a real project's proposals listed in clusters (the same ids
every time), a whole cluster accepted as ordinary decisions in one transaction, and
nothing changed when that transaction fails half-way."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from annotation.document import InstanceState
from annotation.store import ProjectStore
from specula.cli import main

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data"))


def _listing(root: Path, capsys: pytest.CaptureFixture, *extra: str) -> dict:
    capsys.readouterr()
    assert main(["review-clusters", str(root), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _states(root: Path) -> dict[int, InstanceState]:
    with ProjectStore.open(root, scan=False, read_only=True) as store:
        return {i.id: i.state for i in store.instances()}


@pytest.mark.slow
def test_list_then_accept_a_cluster_in_one_transaction(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from annotation.palette import builtin_palette
    from inference.engine import Engine
    from inference.propose import propose_project
    from inference.registry import Registry

    src = DATA / "glass-gdd" / "image"
    if not src.is_dir():
        pytest.skip(f"shared data set missing: {src} (set SPECULA_DATA)")
    root = tmp_path / "gdd"
    root.mkdir()
    for p in sorted(src.glob("*.jpg"))[:10]:
        (root / p.name).symlink_to(p)  # the images stay in the shared folder
    with ProjectStore.open(root, palette=builtin_palette("mirror-glass")) as store:
        propose_project(store, Engine(Registry.default(), device="cpu"), "mirror-glass-semantic")
        assert len(store.instances(states=[InstanceState.PROPOSED])) >= 8

    listing = _listing(root, capsys, "--target-size", "4")
    clusters = listing["clusters"]
    assert len(clusters) >= 2
    before = _states(root)
    assert sorted(m for c in clusters for m in c["members"]) == sorted(before)  # every proposal, once
    for c in clusters:
        assert c["size"] == len(c["members"]) and {r["id"] for r in c["representatives"]} <= set(c["members"])
        assert all(r["image"].endswith(".jpg") and 0.0 <= r["score"] <= 1.0 for r in c["representatives"])
    assert _listing(root, capsys, "--target-size", "4") == listing  # deterministic: listing twice, same ids
    glass = _listing(root, capsys, "--target-size", "4", "--class", "glass")["clusters"]
    assert glass and {c["class"] for c in glass} == {"glass"}
    assert [c for c in clusters if c["class"] == "glass"] == glass  # filtering does not renumber

    # a failure in the middle of the transaction (the second log row) leaves nothing changed
    target, other = clusters[0], clusters[1]
    assert target["size"] >= 2
    calls = {"n": 0}
    original = ProjectStore.log

    def failing_log(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk pulled out")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ProjectStore, "log", failing_log)
    with pytest.raises(RuntimeError, match="disk pulled out"):
        main(["review-clusters", str(root), "--target-size", "4", "--accept", str(target["cluster"])])
    monkeypatch.setattr(ProjectStore, "log", original)
    assert _states(root) == before
    with ProjectStore.open(root, scan=False, read_only=True) as store:
        assert store.interactions(actions=["accept"]) == []

    # the real decision: the cluster's members accepted, one log row each, the rest untouched
    capsys.readouterr()
    assert main(["review-clusters", str(root), "--target-size", "4", "--accept", str(target["cluster"]),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accepted"] == sorted(target["members"]) and out["decided"] == target["size"]
    after = _states(root)
    for iid, state in after.items():
        expected = InstanceState.ACCEPTED if iid in target["members"] else InstanceState.PROPOSED
        assert state is expected, (iid, state)
    with ProjectStore.open(root, scan=False, read_only=True) as store:
        rows = store.interactions(actions=["accept"])
        assert sorted(r.instance_id for r in rows) == sorted(target["members"])
        assert all(r.details.get("cluster") == target["cluster"] for r in rows)
        assert all(r.image_id == store.instance(r.instance_id).image_id for r in rows)
        assert all(store.image(i.image_id).status != "done" for i in store.instances())
    assert set(other["members"]).isdisjoint(out["accepted"])

    # the accepted proposals left the review; an unknown cluster id is refused, nothing changed
    remaining = _listing(root, capsys, "--target-size", "4")
    assert not set(target["members"]) & {m for c in remaining["clusters"] for m in c["members"]}
    assert main(["review-clusters", str(root), "--reject", "999"]) == 2
    assert main(["review-clusters", str(root), "--target-size", "0"]) == 2
    assert "1 or more" in capsys.readouterr().err
    assert _states(root) == after
