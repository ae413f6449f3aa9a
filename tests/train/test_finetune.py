"""Fine-tuning (``train(init=...)``, ``coroseg train --init``) and why a run stopped: tiny tube phantoms."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import TINY

from coroseg.errors import CorosegError
from coroseg.models.run import read_config
from coroseg.train import train

GRID = dict(model="unet3d_grid", device="cpu", patch_size=[16, 16, 16], progress=False, augment=0.0, lr=3e-3, **TINY)


def _first_loss(run) -> float:
    with open(run / "metrics.csv", newline="") as fh:
        return float(next(csv.DictReader(fh))["train_loss"])


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    return train(tiny_data, tmp_path_factory.mktemp("ft") / "base", epochs=6, **GRID)


@pytest.mark.slow
def test_a_fine_tuned_run_starts_from_the_initial_weights_and_keeps_its_settings(tiny_data, trained, tmp_path):
    # a different network asked for on purpose: the initial model's wins
    tuned = train(tiny_data, tmp_path / "tuned", epochs=1, init=str(trained), **{**GRID, "channels": [8, 16]})
    scratch = train(tiny_data, tmp_path / "scratch", epochs=1, **GRID)
    base, cfg = read_config(trained), read_config(tuned)
    assert cfg.network == base.network and cfg.intensity == base.intensity and cfg.spacing == base.spacing
    assert cfg.train["init"]["from"] == str(trained) and cfg.train["init"]["sha256"]
    # the weights it started from are kept in the run folder, unchanged
    start, orig = load_file(tuned / "init" / "model.safetensors"), load_file(trained / "model.safetensors")
    assert start.keys() == orig.keys() and all(torch.equal(start[k], orig[k]) for k in start)
    # starting from a trained model, the first epoch's loss is far below a fresh network's
    assert _first_loss(tuned) < 0.8 * _first_loss(scratch)


def test_an_incompatible_architecture_and_resume_are_refused(tiny_data, trained, tmp_path):
    with pytest.raises(CorosegError, match=r"--init: the initial model is a unet3d_grid; it cannot start a "
                                           r"unet3d_crop \(--model, --no-attention\)"):
        train(tiny_data, tmp_path / "x", epochs=1, init=str(trained), **{**GRID, "model": "unet3d_crop"})
    assert not (tmp_path / "x").exists()  # nothing left behind
    with pytest.raises(CorosegError, match="--init starts a new run from a model; --resume continues this one"):
        train(tiny_data, trained, epochs=1, init=str(trained), resume=True, **GRID)
    with pytest.raises(CorosegError, match="neither a run folder nor an installed model"):
        train(tiny_data, tmp_path / "y", epochs=1, init=str(tmp_path / "nowhere"), **GRID)
    assert json.loads((trained / "config.json").read_text())["status"] == "complete"


def test_why_training_stopped_is_kept_in_the_run_folder(tiny_data, trained, tmp_path):
    # the fixture's run: 6 planned epochs, no budget
    assert read_config(trained).train["stopped"] == {"model": "all 6 epochs done"}
    run = train(tiny_data, tmp_path / "b", patch_budget=10, **GRID)
    assert read_config(run).train["stopped"] == {"model": "patch budget reached (10 patches)"}
