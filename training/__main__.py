"""``python -m training PROJECT --task ...``: the same as ``specula train``."""
import sys

from training.cli import main

sys.exit(main())
