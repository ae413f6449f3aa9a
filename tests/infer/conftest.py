"""Fixtures for inference tests (helpers live in ``infer_helpers.py``)."""

from __future__ import annotations

import json

import pytest
import torch

from infer_helpers import FakeRun, ThresholdNet, make_config, tube_phantom


@pytest.fixture
def phantom():
    return tube_phantom()


@pytest.fixture
def fake_run():
    def make(model: str = "unet3d_crop", **kw) -> FakeRun:
        cfg = make_config(model, **kw)
        return FakeRun(cfg, ThresholdNet(), ThresholdNet() if cfg["locator"] else None)

    return make


def _tiny_run(folder, model: str):
    """A run folder built by hand: tiny random MONAI U-Nets (and locator), safetensors, config.json."""
    from coroseg.models.registry import build_network, model_spec, network_config
    from coroseg.models.run import save_weights

    torch.manual_seed(0)
    cfg = make_config(model)
    cfg["network"] = network_config(model_spec(model), channels=(4, 8), num_res_units=0)
    save_weights(build_network(cfg["network"]), folder / "model.safetensors")
    if cfg["locator"]:
        cfg["locator"]["network"] = network_config(model_spec("unet3d_grid"), channels=(4, 8), num_res_units=0)
        save_weights(build_network(cfg["locator"]["network"]), folder / "locator.safetensors")
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.fixture
def real_run_dir(tmp_path):
    """A ``unet3d_crop`` run with its locator."""
    return _tiny_run(tmp_path / "run", "unet3d_crop")


@pytest.fixture
def grid_run(tmp_path):
    """A ``unet3d_grid`` run (no locator): predict takes a fraction of a second."""
    return _tiny_run(tmp_path / "grid_run", "unet3d_grid")
