"""Training tests: the ``training`` marker and a small GDD project fixture."""
from __future__ import annotations

import pytest

from training_helpers import build_project, data_root, need_set


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "training: trains a model or loads training code (select with -m training)")


@pytest.fixture
def gdd_project(tmp_path):
    need_set("glass-gdd")
    ids = sorted(p.stem for p in (data_root() / "glass-gdd" / "image").glob("*.jpg"))[:5]
    store = build_project(tmp_path / "gdd", "glass-gdd", ids, "glass")
    yield store
    store.close()
