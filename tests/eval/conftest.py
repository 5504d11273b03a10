"""Shared helpers of the evaluation tests: where the shared data lives."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[2]


def data_root() -> Path:
    env = os.environ.get("SPECULA_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture
def need() -> Callable[..., Path]:
    """``need("glass-gdd", "mask")``: the shared data path, or skip saying which set is missing."""

    def _need(*parts: str) -> Path:
        p = data_root().joinpath(*parts)
        if not p.exists():
            pytest.skip(f"shared data set missing: {p} (set SPECULA_DATA)")
        return p

    return _need
