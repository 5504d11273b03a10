"""Proposing for a project, the CLI, and the field path (ONNX only, torch never imported)."""
from __future__ import annotations

import argparse
import subprocess
import threading
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotation.document import Instance, InstanceState, model_origin
from annotation.mask import Mask
from annotation.store import ProjectStore
from inference.cli import add_parsers
from inference.engine import Engine
from inference.propose import propose_project
from inference.registry import Registry
from inference_testmodels import colour_model, manifest, scene

REPO = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path) -> Path:
    proj = tmp_path / "project"
    (proj / "span1").mkdir(parents=True)
    Image.fromarray(scene()).save(proj / "span1" / "a.png")
    Image.fromarray(scene()[:, ::-1].copy()).save(proj / "span1" / "b.png")
    (proj / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return proj


def _registry(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "reg")
    w = colour_model(tmp_path / "w" / "model.onnx", 0)
    reg.publish(w.parent, manifest("defects", "1"))
    return reg


def test_propose_project_replaces_proposals_only(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    reg = _registry(tmp_path)
    with ProjectStore.open(proj) as store:
        a = store.image_by_path("span1/a.png")
        assert a is not None
        keep = Instance(a.id, "defect", Mask.from_full(np.ones((96, 128), bool)), InstanceState.ACCEPTED)  # type: ignore[arg-type]
        old = Instance(a.id, "defect", Mask.from_full(np.ones((96, 128), bool)), InstanceState.PROPOSED,  # type: ignore[arg-type]
                       origin="defects@0", score=0.1)
        store.add_instances([keep, old])
        seen: list[tuple[int, int, str]] = []
        summary = propose_project(store, Engine(reg, device="cpu"), progress=lambda *a: seen.append(a))
        assert (summary.images, summary.proposals, summary.model, summary.version) == (2, 4, "defects", "1")
        assert list(summary.skipped) == ["broken.jpg"] and "broken.jpg" in summary.skipped["broken.jpg"]
        assert seen[-1][:2] == (3, 3)
        proposed = store.instances(a.id, [InstanceState.PROPOSED])
        assert len(proposed) == 2
        assert all(i.origin == model_origin("defects", "1") and i.score and i.score > 0.9 for i in proposed)
        assert len(store.instances(a.id, [InstanceState.ACCEPTED])) == 1
        logs = store.interactions(actions=["propose"])
        assert len(logs) == 2 and logs[0].details["version"] == "1" and logs[0].details["proposals"] == 2
        assert store.image(a.id).sha1  # type: ignore[arg-type]
        # again, restricted by glob: replaced, not duplicated
        summary = propose_project(store, Engine(reg, device="cpu"), images_glob="span1/a.*")
        assert summary.images == 1
        assert len(store.instances(a.id, [InstanceState.PROPOSED])) == 2


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="specula")
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_models_and_propose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proj = _project(tmp_path)
    ProjectStore.open(proj).close()
    reg = _registry(tmp_path)
    w2 = colour_model(tmp_path / "w2.onnx", 1)
    r = ["--registry", str(reg.root)]
    assert _cli(["models", *r, "import", str(w2), "--name", "defects", "--classes", "defect"]) == 0
    assert _cli(["models", *r, "list"]) == 0
    out = capsys.readouterr().out
    assert "  defects@1" in out and "* defects@2" in out
    assert _cli(["models", *r, "rollback", "defects"]) == 0
    assert _cli(["models", *r, "activate", "defects", "9"]) == 2
    assert "no model defects@9" in capsys.readouterr().err
    assert _cli(["propose", str(proj), "--model", "defects@2", "--device", "cuda", *r]) == 1  # broken.jpg skipped
    captured = capsys.readouterr()
    assert "2 proposals on 2 images with defects@2" in captured.out  # the green model
    assert "CUDA unavailable" in captured.err or "CUDA" in captured.err
    assert "propose" in captured.err  # the progress bar
    assert _cli(["propose", str(tmp_path / "nowhere"), *r]) == 2
    assert _cli(["propose", str(proj), "--model", "defects@", *r]) == 2
    assert _cli(["propose", str(proj), "--model", "nothing", *r]) == 2
    err = capsys.readouterr().err
    assert "no model named 'nothing'" in err and "NAME@VERSION" in err
    # a pipeline parameter for one run; a typo is refused before any image is read
    assert _cli(["propose", str(proj), "--model", "defects@2", "--device", "cpu", "--param", "nope=1", *r]) == 2
    assert "has no parameter 'nope'" in capsys.readouterr().err
    assert _cli(["propose", str(proj), "--model", "defects@2", "--device", "cpu", "--param", "min_area=100000",
                 *r]) == 1  # broken.jpg skipped again
    assert "0 proposals on 2 images" in capsys.readouterr().out  # every piece is under the minimum


def test_field_path_never_imports_torch(tmp_path: Path) -> None:
    """ONNX proposals on a project, in a fresh interpreter: torch must stay out of sys.modules."""
    proj = _project(tmp_path)
    reg = _registry(tmp_path)
    script = textwrap.dedent(f"""
        import sys
        from annotation.store import ProjectStore
        from inference.engine import Engine
        from inference.propose import propose_project
        from inference.registry import Registry
        import inference.pipelines, inference.cli, inference.runtime, inference.tiling
        with ProjectStore.open({str(proj)!r}) as store:
            engine = Engine(Registry({str(reg.root)!r}), device="auto")
            summary = propose_project(store, engine)
            s = engine.prompt_session()
            from annotation.images import load_image
            s.set_image(load_image({str(proj / "span1" / "a.png")!r}).rgb)
            m = s.predict(box=(8, 8, 32, 32))
        print(summary.proposals, m.area > 0)
        assert "torch" not in sys.modules, "torch was imported"
        assert not any(name.startswith("torch.") for name in sys.modules)
    """)
    res = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["4", "True"]


def test_the_gpu_story_is_told_once_not_by_every_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On a machine without a usable GPU, `specula propose` says only where it runs; why the
    GPU is not used is in `specula --version` (and the editor's status-bar tool tip)."""
    from inference.runtime import choose_providers
    from specula.cli import version_text

    proj = _project(tmp_path)
    ProjectStore.open(proj).close()
    reg = _registry(tmp_path)
    assert _cli(["propose", str(proj), "--model", "defects", "--registry", str(reg.root)]) == 1  # broken.jpg
    err = capsys.readouterr().err
    report = choose_providers("auto")
    assert f"inference on {report.device.upper()}" in err
    if report.reason:  # no GPU here: the long reason stays out of the command's output
        assert report.reason not in err
    assert str(report) in version_text()


def _images(tmp_path: Path, n: int) -> tuple[Path, list]:
    """``n`` shifted scenes (and an unreadable file after the second) as image records."""
    from annotation.document import ImageRecord

    root = tmp_path / "imgs"
    root.mkdir()
    names = []
    for i in range(n):
        Image.fromarray(np.roll(scene(), 7 * i, axis=1)).save(root / f"{i}.png")
        names.append(f"{i}.png")
        if i == 1:
            (root / "broken.png").write_bytes(b"not a png")
            names.append("broken.png")
    return root, [ImageRecord(name, 128, 96, id=k + 1) for k, name in enumerate(names)]


def test_overlapped_run_yields_what_the_plain_run_does_in_order(tmp_path: Path) -> None:
    from inference.propose import ProposeSummary, image_proposals

    root, records = _images(tmp_path, 5)
    reg = _registry(tmp_path)
    runs = {}
    for overlap in (True, False):
        seen: list[tuple[int, int, str]] = []
        summary = ProposeSummary()
        out = list(image_proposals(root, records, Engine(reg, device="cpu"), summary=summary, overlap=overlap,
                                   progress=lambda *a: seen.append(a)))
        runs[overlap] = (out, seen, summary)
    (a, seen_a, sa), (b, seen_b, sb) = runs[True], runs[False]
    assert [r.path for r in a] == [r.path for r in b] == ["0.png", "1.png", "2.png", "3.png", "4.png"]
    assert [[i.mask for i in r.instances] for r in a] == [[i.mask for i in r.instances] for r in b]
    assert all(r.instances for r in a)
    assert seen_a == seen_b and [s[2] for s in seen_a] == [r.path for r in records]
    assert list(sa.skipped) == list(sb.skipped) == ["broken.png"]
    assert (sa.images, sa.proposals) == (sb.images, sb.proposals) and sa.images == 5


def _gated(engine: Engine, started: list[threading.Event], threads: list[str]) -> None:
    """Make image i's post-processing wait until image i + 1's network pass has begun."""
    pipe = engine.pipeline()
    steps = pipe.propose_steps
    calls: list[int] = []

    def gated(rgb, *args, **kwargs):  # type: ignore[no-untyped-def]
        i = len(calls)
        calls.append(i)
        started[i].set()
        finish = steps(rgb, *args, **kwargs)

        def later():  # type: ignore[no-untyped-def]
            threads.append(threading.current_thread().name)
            if i + 1 < len(started) and not started[i + 1].wait(timeout=5):
                raise AssertionError(f"image {i}'s post-processing did not overlap image {i + 1}'s network pass")
            return finish()
        return later

    pipe.propose_steps = gated  # type: ignore[method-assign]


def test_post_processing_overlaps_the_next_images_network_pass(tmp_path: Path) -> None:
    """Image k's post-processing can only finish once image k + 1's network pass has
    begun: a run that does not overlap them fails here (after a 5 s wait)."""
    from inference.propose import image_proposals

    root, records = _images(tmp_path, 4)
    engine = Engine(_registry(tmp_path), device="cpu")
    started = [threading.Event() for _ in range(4)]
    threads: list[str] = []
    _gated(engine, started, threads)
    out = list(image_proposals(root, records, engine))
    assert [r.path for r in out] == ["0.png", "1.png", "2.png", "3.png"]
    assert len(threads) == 4 and all(t.startswith("specula-postprocess") for t in threads)
    assert threading.current_thread().name not in threads
    # the plain run post-processes in the caller's thread, one image after the other
    started2 = [threading.Event() for _ in range(2)]
    engine2 = Engine(_registry(tmp_path / "again"), device="cpu")
    _gated(engine2, started2, [])
    with pytest.raises(AssertionError, match="did not overlap"):
        list(image_proposals(root, records[:2], engine2, overlap=False))


def test_cancel_stops_an_overlapped_run_between_images(tmp_path: Path) -> None:
    from inference.propose import ProposeSummary, image_proposals

    root, records = _images(tmp_path, 5)
    engine = Engine(_registry(tmp_path), device="cpu")
    stop = threading.Event()
    passes_after_stop: list[int] = []
    steps = engine.pipeline().propose_steps

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        if stop.is_set():
            passes_after_stop.append(1)
        return steps(*args, **kwargs)

    engine.pipeline().propose_steps = counted  # type: ignore[method-assign]
    summary = ProposeSummary()
    out = []
    for result in image_proposals(root, records, engine, summary=summary, cancel=stop):
        out.append(result.path)
        if len(out) == 2:
            stop.set()  # the user presses Stop while the second image is being stored
    assert summary.cancelled and not passes_after_stop
    # what was yielded is the plain run's beginning: the images whose network pass had
    # already gone through when Stop came are finished, nothing after
    assert out in (["0.png", "1.png"], ["0.png", "1.png", "2.png"])
    assert summary.images == len(out)


def test_proposing_again_leaves_out_what_was_accepted_or_rejected(tmp_path: Path) -> None:
    """004's de-duplication: after a retraining the project is proposed again; a proposal
    over an accepted mask, or equal to a rejected one, is not asked about twice."""
    proj = _project(tmp_path)
    reg = _registry(tmp_path)
    with ProjectStore.open(proj) as store:
        a = store.image_by_path("span1/a.png")
        assert a is not None
        propose_project(store, Engine(reg, device="cpu"), images_glob="span1/a.*")
        first = store.instances(a.id, [InstanceState.PROPOSED])
        assert len(first) == 2
        store.set_states([first[0].id], InstanceState.ACCEPTED)
        store.set_states([first[1].id], InstanceState.REJECTED)
        summary = propose_project(store, Engine(reg, device="cpu"), images_glob="span1/a.*")
        assert store.instances(a.id, [InstanceState.PROPOSED]) == []
        assert summary.proposals == 0
        row = store.interactions(actions=["propose"])[-1]
        assert row.details["proposals"] == 0 and row.details["dropped"] == {"duplicates": 1, "repeats": 1}
        # the other image, with nothing decided, gets its proposals as before
        summary = propose_project(store, Engine(reg, device="cpu"), images_glob="span1/b.*")
        assert summary.proposals == 2
