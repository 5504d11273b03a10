"""Specula: model-assisted segmentation labelling."""
__version__ = "0.1.0"
