from __future__ import annotations

from pathlib import Path

import pytest

from inference.registry import Registry


@pytest.fixture(autouse=True)
def specula_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("SPECULA_HOME", str(home))
    return home


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")
