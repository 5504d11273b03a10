"""Trainers that read a project and publish new weights into the model registry.

Runs as its own process (``specula train`` / ``python -m training``); torch is
imported inside the functions that train, never at import time of this package.
"""
