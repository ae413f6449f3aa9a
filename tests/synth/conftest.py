"""Small, fast phantom cases shared by the synth tests (rendered once per session)."""

from __future__ import annotations

import numpy as np
import pytest

from coroseg.synth.params import CaseParams, sample_case_params
from coroseg.synth.render import Phantom, render_phantom


def tiny(params: CaseParams) -> CaseParams:
    """Shrink the grid (the tree still fits: spacing grows) so a case renders in about 1 s."""
    params.grid.n_xy = 96
    params.grid.n_z_min, params.grid.n_z_max = 64, 96
    params.grid.spacing_z = 1.4
    return params


@pytest.fixture
def shrink():
    """The :func:`tiny` grid shrinker, for tests that need it on parameters they draw."""
    return tiny


@pytest.fixture(scope="session")
def normal_case() -> tuple[CaseParams, Phantom]:
    p = tiny(sample_case_params(np.random.default_rng(11), "small", False, case_id="n"))
    return p, render_phantom(p)


@pytest.fixture(scope="session")
def diseased_case() -> tuple[CaseParams, Phantom]:
    p = tiny(sample_case_params(np.random.default_rng(12), "small", True, case_id="d"))
    return p, render_phantom(p)
