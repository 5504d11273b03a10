"""Shared test set-up: offscreen Qt, a private user data folder, and the real data sets."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("SPECULA_DATA", REPO.parent / "shared" / "data"))


def require_data(name: str) -> Path:
    """The folder of a shared data set, or skip saying which one is missing."""
    path = data_root() / name
    if not path.exists():
        pytest.skip(f"data set {name} not found at {path} (set SPECULA_DATA)")
    return path


@pytest.fixture(autouse=True)
def _private_user_data(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings, registry and caches go to a temporary folder, never the real user's."""
    home = tmp_path_factory.mktemp("specula-home")
    monkeypatch.setenv("SPECULA_HOME", str(home))
