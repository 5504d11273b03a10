"""Fuzz every importer of `specula import` with damaged real files (see fuzz_harness).

The CI form runs a few hundred seeded inputs; ``SPECULA_FUZZ_INPUTS=12000`` runs the long
form (or ``tests/fuzz/run_fuzz.py --inputs 12000`` for the table without pytest). The
harness runs in its own interpreter: it forks a child per input, which must not happen
from a pytest process that may hold Qt and torch threads.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CI_INPUTS = 300
SEED = 20240601


def _data() -> Path:
    return Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if sys.platform == "win32":
        pytest.skip("the harness forks a child per input (POSIX only)")
    sys.path.insert(0, str(HERE))
    try:
        import fuzz_harness
    finally:
        sys.path.remove(str(HERE))
    missing = fuzz_harness.missing_data(_data())
    if missing:
        pytest.skip(f"data sets missing under {_data()}: {', '.join(missing[:3])} (set SPECULA_DATA)")
    inputs = int(os.environ.get("SPECULA_FUZZ_INPUTS", CI_INPUTS))
    out = tmp_path_factory.mktemp("fuzz") / "summary.json"
    done = subprocess.run(
        [sys.executable, str(HERE / "run_fuzz.py"), "--inputs", str(inputs), "--seed", str(SEED), "--json", str(out),
         "--quiet"],
        capture_output=True, text=True, cwd=REPO, timeout=max(600, inputs * 2),
    )
    assert done.returncode in (0, 1) and out.exists(), done.stderr[-3000:]
    print(done.stdout)  # the table, shown with -s or on failure
    return {"summary": json.loads(out.read_text()), "table": done.stdout}


IMPORTERS = ("coco", "labelme", "cvat", "color-masks", "instance-masks", "class-masks")
CHECKS = {
    "tracebacks": "a Python traceback",
    "signals": "a crash (signal)",
    "hangs": "no answer within the time limit",
    "bad stderr": "stderr other than one `specula:` line (exit 2) or `warning:` lines (exit 0/1)",
    "DB changed": "the project changed by an import that failed",
    "silent garbage": "the same input imported twice into fresh projects gave different labels",
}


def test_every_importer_was_fuzzed(fuzz_run: dict) -> None:
    per = fuzz_run["summary"]["per_importer"]
    for imp in IMPORTERS:
        counts = per.get(imp, {})
        assert counts.get("inputs", 0) >= CI_INPUTS // len(IMPORTERS) - 1, imp
        # the inputs reach the importer's inside: some land, some are refused
        assert counts.get("exit 0", 0) + counts.get("exit 1", 0) > 0, f"{imp}: no input imported: {counts}"
        assert counts.get("exit 2", 0) > 0, f"{imp}: no input refused: {counts}"


@pytest.mark.parametrize("importer", IMPORTERS)
@pytest.mark.parametrize("check", list(CHECKS))
def test_importer_keeps_its_promises(fuzz_run: dict, importer: str, check: str) -> None:
    counts = fuzz_run["summary"]["per_importer"].get(importer, {})
    problems = [d for d in fuzz_run["summary"]["distinct"]
                if d["importer"] == importer and _column(d["category"]) == check]
    assert counts.get(check, 0) == 0, (
        f"{importer}: {counts[check]} inputs gave {CHECKS[check]}:\n"
        + "\n".join(f"  {d['detail']} <- {d['kinds']} (x{d['count']})" for d in problems)
    )


def _column(category: str) -> str:
    return {"traceback": "tracebacks", "signal": "signals", "hang": "hangs", "bad-stderr": "bad stderr",
            "bad-exit": "bad stderr", "db-changed": "DB changed", "silent-garbage": "silent garbage"}[category]


def test_the_mutator_makes_every_kind_and_changes_the_seed() -> None:
    """The fuzzer itself: every kind of every importer is made, reproducibly, and damages its seed."""
    sys.path.insert(0, str(HERE))
    try:
        import fuzz_harness
        from fuzz_mutators import Mutator
    finally:
        sys.path.remove(str(HERE))
    if fuzz_harness.missing_data(_data()):
        pytest.skip(f"data sets missing under {_data()} (set SPECULA_DATA)")
    seeds = fuzz_harness.load_seeds(_data())
    first, again = Mutator(seeds, seed=7), Mutator(seeds, seed=7)
    for importer in IMPORTERS:
        for kind in first.kinds(importer):
            for _ in range(6):
                a, b = first.make(importer, kind), again.make(importer, kind)
                assert (a.name, a.data) == (b.name, b.data)  # one seed, one run
                if kind != "unchanged":
                    original = next(s for s in seeds if s.label == a.seed)
                    assert (a.name, a.data) != (original.name, original.data), (importer, kind, a.notes)


def test_the_harness_sees_every_kind_of_broken_promise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks themselves, fed made-up runs: each broken promise is found, a kept one is not."""
    import sqlite3

    sys.path.insert(0, str(HERE))
    try:
        import fuzz_harness
        from fuzz_mutators import FuzzInput
    finally:
        sys.path.remove(str(HERE))
    if fuzz_harness.missing_data(_data()):
        pytest.skip(f"data sets missing under {_data()} (set SPECULA_DATA)")
    project = tmp_path / "project"
    project.mkdir()
    template = fuzz_harness.make_project(_data(), project)
    digest = fuzz_harness.db_digest(project)
    calls = {"n": 0}

    def write(value: str) -> None:
        db = sqlite3.connect(project / "specula.db")
        db.execute("INSERT INTO meta(key, value) VALUES('fuzz-test', ?)", (value,))
        db.commit()
        db.close()

    def fake(scenario: str):
        def run_child(argv, workdir, perturb, timeout=0):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            out = fuzz_harness.Outcome
            if scenario == "kept":
                write("same")
                return out(0, None, False, "imported", "warning: one thing\n", 0.1)
            if scenario == "garbage":
                write(f"run {calls['n']}")  # what uninitialised memory looks like: differs per run
                return out(0, None, False, "imported", "", 0.1)
            if scenario == "db-changed":
                write("half")
                return out(2, None, False, "", "specula: refused\n", 0.1)
            if scenario == "bad-stderr":
                return out(2, None, False, "", "specula: refused\nand a second line\n", 0.1)
            if scenario.startswith("traceback"):
                if scenario == "traceback-after-writing":
                    write("half")
                return out(1, None, False, "", "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
                                               "ValueError: boom\n", 0.1)
            return out(None, 11, False, "", "", 0.1)  # signal: SIGSEGV
        return run_child

    expected = {"kept": [], "garbage": ["silent-garbage"], "db-changed": ["db-changed"],
                "bad-stderr": ["bad-stderr"], "traceback": ["traceback"],
                "traceback-after-writing": ["traceback", "db-changed"], "signal": ["signal"]}
    for scenario, categories in expected.items():
        monkeypatch.setattr(fuzz_harness, "run_child", fake(scenario))
        summary = fuzz_harness.Summary()
        fuzz_input = FuzzInput("coco", "unchanged", "seed", "x.json", b"{}")
        fuzz_harness.check_one(fuzz_input, 0, project, template, digest, tmp_path, summary)
        assert [f.category for f in summary.findings] == categories, scenario
    assert "ValueError: boom" in fuzz_harness.traceback_summary("Traceback (most recent call last):\nValueError: boom")
