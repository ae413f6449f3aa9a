"""Fixtures for inference tests (helpers live in ``infer_helpers.py``)."""

from __future__ import annotations

import pytest
from infer_helpers import FakeRun, ThresholdNet, make_config, tiny_run_folder, tube_phantom


@pytest.fixture
def phantom():
    return tube_phantom()


@pytest.fixture
def fake_run():
    def make(model: str = "unet3d_crop", **kw) -> FakeRun:
        cfg = make_config(model, **kw)
        return FakeRun(cfg, ThresholdNet(), ThresholdNet() if cfg["locator"] else None)

    return make


@pytest.fixture
def real_run_dir(tmp_path):
    """A ``unet3d_crop`` run with its locator."""
    return tiny_run_folder(tmp_path / "run", "unet3d_crop")


@pytest.fixture
def grid_run(tmp_path):
    """A ``unet3d_grid`` run (no locator): predict takes a fraction of a second."""
    return tiny_run_folder(tmp_path / "grid_run", "unet3d_grid")
