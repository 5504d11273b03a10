"""What this program is and how it runs itself: the version, the About text, the own command line.

A leaf under the desktop and training (which may import it) and above inference (the About
text lists the registry's models, imported lazily). It imports no Qt and no torch at module
level, so the label-only commands, the field bundle and the trainer process can all use it.
"""
__version__ = "0.1.0"
