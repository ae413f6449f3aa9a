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


@pytest.fixture
def real_run_dir(tmp_path):
    """A run folder built by hand: tiny random MONAI U-Nets, safetensors weights, config.json."""
    from coroseg.models.registry import build_network, model_spec, network_config
    from coroseg.models.run import save_weights

    torch.manual_seed(0)
    run = tmp_path / "run"
    cfg = make_config("unet3d_crop")
    cfg["network"] = network_config(model_spec("unet3d_crop"), channels=(4, 8), num_res_units=0)
    cfg["locator"]["network"] = network_config(model_spec("unet3d_grid"), channels=(4, 8), num_res_units=0)
    save_weights(build_network(cfg["network"]), run / "model.safetensors")
    save_weights(build_network(cfg["locator"]["network"]), run / "locator.safetensors")
    (run / "config.json").write_text(json.dumps(cfg))
    return run




@pytest.fixture
def grid_run(tmp_path):
    """A tiny random ``unet3d_grid`` run folder (no locator): predict takes a fraction of a second."""
    from coroseg.models.registry import build_network, model_spec, network_config
    from coroseg.models.run import save_weights

    torch.manual_seed(0)
    run = tmp_path / "grid_run"
    cfg = make_config("unet3d_grid")
    cfg["network"] = network_config(model_spec("unet3d_grid"), channels=(4, 8), num_res_units=0)
    save_weights(build_network(cfg["network"]), run / "model.safetensors")
    (run / "config.json").write_text(json.dumps(cfg))
    return run
