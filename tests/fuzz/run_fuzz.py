"""Fuzz every importer of `specula import` and print a summary table.

    .venv/bin/python tests/fuzz/run_fuzz.py --inputs 12000 [--seed 0] [--importers coco,cvat] [--json OUT]

Exit 0 when no input broke a promise (see ``fuzz_harness``), 1 otherwise, 2 when the
data sets are missing. ``SPECULA_FUZZ_INPUTS`` sets the default count.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fuzz modules beside this script
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # the repository, for `specula` and `annotation`

import fuzz_harness  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=int(os.environ.get("SPECULA_FUZZ_INPUTS", "600")))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--importers", default=",".join(fuzz_harness.IMPORTERS),
                   help="comma-separated subset of " + ", ".join(fuzz_harness.IMPORTERS))
    p.add_argument("--timeout", type=float, default=fuzz_harness.INPUT_TIMEOUT_S, help="seconds per input")
    p.add_argument("--json", type=Path, help="write the summary and every finding here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    importers = tuple(i for i in args.importers.split(",") if i)
    unknown = set(importers) - set(fuzz_harness.IMPORTERS)
    if unknown:
        p.error(f"unknown importers: {', '.join(sorted(unknown))}")
    data = fuzz_harness.data_root()
    missing = fuzz_harness.missing_data(data)
    if missing:
        print(f"run_fuzz: data missing under {data}: {', '.join(missing[:5])} (set SPECULA_DATA)", file=sys.stderr)
        return 2
    summary = fuzz_harness.run(args.inputs, args.seed, importers, args.timeout, progress=not args.quiet, data=data,
                               checkpoint=args.json)
    print(fuzz_harness.report(summary))
    if args.json:
        fuzz_harness.dump(summary, args.json)
    return 1 if summary.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
