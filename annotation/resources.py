"""Locating shipped resources and the user's data folder, frozen or not."""
from __future__ import annotations

import os
import sys
from pathlib import Path


def assets_root() -> Path:
    """The ``assets`` folder: beside the packages in a checkout or wheel, inside a bundle."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "assets"
    import assets  # the assets folder is a package so that wheels carry it

    return Path(assets.__file__).resolve().parent


def asset_path(*parts: str) -> Path:
    return assets_root().joinpath(*parts)


def user_data_dir() -> Path:
    """Where settings, the model registry and caches live (never inside a bundle).

    ``SPECULA_HOME`` overrides it (tests use a temporary folder).
    """
    env = os.environ.get("SPECULA_HOME")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "specula"
