"""Encoders (backbones) shared by the trainers."""
