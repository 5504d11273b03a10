"""The bundles' entry point: ``specula`` frozen is ``python -m specula`` from source.

``multiprocessing.freeze_support()`` first: a frozen executable that starts worker
processes (training's data loaders) re-runs itself, and must then become the worker.
"""
import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from specula.cli import main

    sys.exit(main())
