"""Specula: model-assisted segmentation labelling (the ``specula`` command).

The version is written once, in ``appinfo``; it is re-exported here because
``specula.__version__`` is where callers of the distribution look for it.
"""
from appinfo import __version__

__all__ = ["__version__"]
