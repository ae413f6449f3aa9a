"""Shared test fixtures. ``SHARED`` is the real reference data beside the repo (may be absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared" / "data").resolve()
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is absent (real reference data)")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def shared() -> Path:
    if not SHARED.exists():
        pytest.skip("../shared/data is absent (real reference data)")
    return SHARED
