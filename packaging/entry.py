"""The bundles' entry point: ``specula`` frozen is ``python -m specula`` from source.

``multiprocessing.freeze_support()`` first: a frozen executable that starts worker
processes (training's data loaders) re-runs itself, and must then become the worker.
Then the CUDA add-on (``cuda-addon/`` beside the executable, see cuda_addon.py), if
there is one, is wired in before anything can import onnxruntime.
"""
import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    import cuda_addon

    cuda_addon.install()
    from specula.cli import main

    sys.exit(main())
