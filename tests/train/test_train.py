"""Training end to end on tiny tube phantoms: loss falls, determinism, resume, NaN stop, DDP."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from train_helpers import TINY

import coroseg.train.trainer as trainer_mod
from coroseg.errors import CorosegError
from coroseg.models import load_run
from coroseg.models.run import read_config
from coroseg.train import TrainingInterrupted, train

REPO = Path(__file__).resolve().parents[2]


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(a), load_file(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


PATCH = {"unet2d_grid": [1, 32, 32], "unet2d_crop": [1, 32, 32], "unet3d_grid": [16, 16, 16],
         "unet3d_crop": [16, 16, 16]}


@pytest.mark.slow
@pytest.mark.parametrize("model", list(PATCH))
def test_each_model_trains_and_loss_falls(tiny_data, tmp_path, model):
    extra = {"crop_repeats": 1} if model == "unet3d_crop" else {}
    if model == "unet2d_crop":
        extra = {"crop_jitter": 0.0, "crops_per_case": 6}
    run = train(tiny_data, tmp_path / "run", model=model, epochs=3, batch_size=2, device="cpu", lr=3e-3,
                augment=0.0, patch_size=PATCH[model], locator=model == "unet3d_crop", progress=False,
                **{**TINY, **extra})
    rows = [r for r in _rows(run) if r["phase"] == "model"]
    assert len(rows) == 3
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert all(0.0 <= float(r["val_dice"]) <= 1.0 for r in rows)
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "model.safetensors", "last.safetensors", "optimizer.pt", "metrics.csv",
            "training_curves.png", "splits.json", "train.log"} <= names
    loaded = load_run(run)
    assert not loaded.model.training
    assert loaded.config.model == model and loaded.config.status == "complete"
    assert (loaded.locator is not None) == (model == "unet3d_crop")
    if model == "unet3d_crop":
        assert "locator.safetensors" in names
        # the locator first, so the crop model is validated with the automatic centerline, as predict runs it
        assert [r["phase"] for r in _rows(run)] == ["locator"] * 3 + ["model"] * 3
        assert {r["val_centerline"] for r in rows} == {"auto"}
    elif loaded.config.attention:
        assert {r["val_centerline"] for r in rows} == {"reference"}  # no locator: the reference centerline
    x = torch.zeros((1, loaded.config.in_channels) + tuple(PATCH[model][3 - loaded.config.dims:]))
    assert loaded.model(x).shape[1] == 2


class _StopAfter:
    """Stand-in for the SIGINT flag: reads True from the ``n``-th step on."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __getitem__(self, i):
        self.calls += 1
        return self.calls >= self.n


def _grid_run(tiny_data, out, **kw):
    return train(tiny_data, out, model="unet3d_grid", epochs=2, batch_size=2, device="cpu", lr=3e-3,
                 patch_size=[16, 16, 16], progress=False, **{**TINY, **kw})


@pytest.mark.slow
def test_determinism_and_resume_replay_the_same_batches(tiny_data, tmp_path, monkeypatch):
    # augmentation on, so the replay covers the per-patch random streams too
    a = _grid_run(tiny_data, tmp_path / "a", augment=0.5)
    b = _grid_run(tiny_data, tmp_path / "b", augment=0.5)
    assert _same_weights(a / "last.safetensors", b / "last.safetensors")  # same seed -> same weights

    @contextlib.contextmanager
    def stop_at_step_3():
        yield _StopAfter(3)

    monkeypatch.setattr(trainer_mod, "_sigint_flag", stop_at_step_3)
    with pytest.raises(TrainingInterrupted, match="interrupted at model epoch 1 step 3; state saved"):
        _grid_run(tiny_data, tmp_path / "c", augment=0.5)
    state = torch.load(tmp_path / "c" / "optimizer.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 3, 3)
    assert read_config(tmp_path / "c").status == "running"
    monkeypatch.undo()
    with pytest.raises(CorosegError, match="already holds a run"):
        _grid_run(tiny_data, tmp_path / "c", augment=0.5)
    c = train(tiny_data, tmp_path / "c", model="unet3d_grid", epochs=2, device="cpu", resume=True, progress=False)
    assert _same_weights(a / "last.safetensors", c / "last.safetensors")
    assert _same_weights(a / "model.safetensors", c / "model.safetensors")
    assert [r["train_loss"] for r in _rows(a)] == [r["train_loss"] for r in _rows(c)]


def test_other_seed_gives_other_weights(tiny_data, tmp_path):
    a = train(tiny_data, tmp_path / "a", model="unet3d_grid", epochs=1, device="cpu", patch_size=[16, 16, 16],
              progress=False, seed=0, **TINY)
    b = train(tiny_data, tmp_path / "b", model="unet3d_grid", epochs=1, device="cpu", patch_size=[16, 16, 16],
              progress=False, seed=1, **TINY)
    assert not _same_weights(a / "last.safetensors", b / "last.safetensors")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    import monai.losses

    class NanAfterFirstEpoch(monai.losses.DiceCELoss):
        calls = 0

        def forward(self, x, y):
            NanAfterFirstEpoch.calls += 1
            out = super().forward(x, y)
            return out * float("nan") if NanAfterFirstEpoch.calls > 4 else out

    monkeypatch.setattr(monai.losses, "DiceCELoss", NanAfterFirstEpoch)
    with pytest.raises(CorosegError, match=r"training loss became nan at epoch 2 step 1; .*last good checkpoint"):
        _grid_run(tiny_data, tmp_path / "n", augment=0.0)
    state = torch.load(tmp_path / "n" / "optimizer.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in load_file(tmp_path / "n" / "last.safetensors").values())


def test_bad_options_are_refused(tiny_data, tmp_path):
    with pytest.raises(CorosegError, match="unknown training option"):
        train(tiny_data, tmp_path / "x", model="unet3d_grid", epochs=1, device="cpu", widths=[1])
    with pytest.raises(CorosegError, match=r"attention_dropout=1.5: expected a number >= 0 and <= 1"):
        train(tiny_data, tmp_path / "z", model="unet3d_crop", epochs=1, device="cpu", attention_dropout=1.5)
    assert not (tmp_path / "z").exists()
    with pytest.raises(CorosegError, match="cannot resume: config.json is missing"):
        train(tiny_data, tmp_path / "y", model="unet3d_grid", epochs=1, device="cpu", resume=True)


def test_patch_budget_sets_the_number_of_patches(tiny_data, tmp_path):
    run = train(tiny_data, tmp_path / "r", model="unet3d_grid", epochs=50, batch_size=2, device="cpu",
                patch_budget=10, patch_size=[16, 16, 16], progress=False, **TINY)
    rows = _rows(run)  # 2 cases x 4 samples = 8 per epoch: 8 then 2
    assert [int(r["patches"]) for r in rows] == [8, 10]


@pytest.mark.slow
def test_ddp_two_processes_gloo_write_one_run(tiny_data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "coroseg.train", "--data", str(tiny_data), "--model", "unet3d_grid", "--epochs", "2",
           "--batch-size", "1", "--out", str(out), "--device", "cpu", "--no-progress",
           "--set", "channels=[4,8,16]", "--set", "num_res_units=1", "--set", "patch_size=[16,16,16]",
           "--set", "samples_per_case=4"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = _rows(out)
    # 8 patches per epoch shared by 2 ranks of batch 1: 4 steps per epoch, patches counted over both ranks
    assert [(r["epoch"], r["step"], r["patches"]) for r in rows] == [("1", "4", "8"), ("2", "8", "16")]
    assert load_run(out).config.train["world_size"] == 2
    assert not list(out.glob(".*.tmp*"))


def test_train_py_wrapper_help():
    res = subprocess.run([sys.executable, str(REPO / "train.py"), "--help"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and "--batch-size" in res.stdout and "--patch-budget" in res.stdout


def test_real_sigint_saves_state_and_exits_cleanly(tiny_data, tmp_path, monkeypatch):
    import signal

    import monai.losses

    class SigintOnSecondStep(monai.losses.DiceCELoss):
        calls = 0

        def forward(self, x, y):
            SigintOnSecondStep.calls += 1
            if SigintOnSecondStep.calls == 2:
                signal.raise_signal(signal.SIGINT)  # what Ctrl-C delivers
            return super().forward(x, y)

    monkeypatch.setattr(monai.losses, "DiceCELoss", SigintOnSecondStep)
    with pytest.raises(TrainingInterrupted, match="step 2; state saved, continue with --resume") as err:
        _grid_run(tiny_data, tmp_path / "s", augment=0.0)
    assert err.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    state = torch.load(tmp_path / "s" / "optimizer.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (0, 2)


def test_early_stop_after_validations_without_improvement(tiny_data, tmp_path, monkeypatch):
    scores = iter([[0.5], [0.6], [0.55], [0.52], [0.9], [0.9]])
    import coroseg.train.validate as validate_mod

    monkeypatch.setattr(validate_mod, "validate_model", lambda *a, **k: next(scores))
    run = train(tiny_data, tmp_path / "e", model="unet3d_grid", epochs=6, batch_size=4, device="cpu",
                early_stop=2, patch_size=[16, 16, 16], progress=False, **TINY)
    rows = _rows(run)
    assert [r["val_dice"] for r in rows] == ["0.5", "0.6", "0.55", "0.52"]  # best at 2, then 2 worse: stop


@pytest.mark.slow
def test_resume_inside_the_second_phase(tiny_data, tmp_path, monkeypatch):
    kw = dict(model="unet3d_crop", epochs=2, batch_size=2, device="cpu", patch_size=[16, 16, 16],
              progress=False, augment=0.3, **TINY)
    a = train(tiny_data, tmp_path / "a", **kw)
    locator_steps = int([r for r in _rows(a) if r["phase"] == "locator"][-1]["step"])

    @contextlib.contextmanager
    def stop_in_model():
        yield _StopAfter(locator_steps + 2)

    monkeypatch.setattr(trainer_mod, "_sigint_flag", stop_in_model)
    with pytest.raises(TrainingInterrupted, match="interrupted at model epoch 1 step 2"):
        train(tiny_data, tmp_path / "b", **kw)
    monkeypatch.undo()
    b = train(tiny_data, tmp_path / "b", model="unet3d_crop", device="cpu", resume=True, progress=False)
    for name in ("model.safetensors", "last.safetensors", "locator.safetensors"):
        assert _same_weights(a / name, b / name), name
    assert [(r["phase"], r["train_loss"], r["val_dice"]) for r in _rows(a)] == \
        [(r["phase"], r["train_loss"], r["val_dice"]) for r in _rows(b)]


def test_a_validation_dice_that_stays_0_is_warned_about(tiny_data, tmp_path, monkeypatch, caplog):
    """A network that never leaves the all-background state must not end quietly."""
    import coroseg.train.validate as validate_mod

    monkeypatch.setattr(validate_mod, "validate_model", lambda *a, **k: [0.0])
    with caplog.at_level("WARNING"):
        train(tiny_data, tmp_path / "z", model="unet3d_grid", epochs=2, batch_size=4, device="cpu",
              patch_size=[16, 16, 16], progress=False, **TINY)
    assert "validation Dice stayed 0" in caplog.text


def test_reference_levels_is_written_for_both_networks_and_applied_to_the_training_images(tiny_data, tmp_path,
                                                                                         monkeypatch):
    import coroseg.data.cache as cache
    from coroseg.data.layouts import load_dataset

    # a known map in place of the measured one: training must see exactly 2 x HU + 10
    from coroseg.data.levels import ScanLevels
    from coroseg.data.preprocess import normalise, to_model_grid

    known = ScanLevels(-95.0, 215.0, gain=2.0, shift=10.0)
    monkeypatch.setattr(cache, "reference_volume", lambda vol: (vol.with_array(known.apply(vol.array)), known))
    run = train(tiny_data, tmp_path / "r", model="unet3d_crop", epochs=1, batch_size=2, device="cpu",
                patch_budget=4, patch_size=[16, 16, 16], progress=False, reference_levels=True, **TINY)
    cfg = read_config(run)
    assert cfg.intensity["reference"] is True and cfg.locator.intensity["reference"] is True
    case = load_dataset(tiny_data)[0]
    image, _ = cache.read_case(case)
    prepared = cache.prepare_case(case, cfg.spacing, cfg.intensity, centerline=False)
    expected = normalise(to_model_grid(image.with_array(image.array * 2.0 + 10.0), cfg.spacing).array, cfg.intensity)
    np.testing.assert_allclose(prepared.image, expected, atol=1e-5)
    plain = cache.case_statistics([case], seed=0)[1]
    doubled = cache.case_statistics([case], seed=0, reference=True)[1]
    assert doubled["reference"] is True and "reference" not in plain
    assert doubled["std"] == pytest.approx(2.0 * plain["std"], rel=1e-3)


def test_locator_augment_sets_only_the_locators_strength(tiny_data, tmp_path, monkeypatch):
    import coroseg.train.loop as loop

    seen = []
    real = loop.build_augmentation

    def record(dims, *, strength, prior):
        seen.append((prior, strength))
        return real(dims, strength=strength, prior=prior)

    monkeypatch.setattr(loop, "build_augmentation", record)
    train(tiny_data, tmp_path / "r", model="unet3d_crop", epochs=1, batch_size=2, device="cpu", patch_budget=4,
          patch_size=[16, 16, 16], progress=False, augment=0.5, locator_augment=1.5, **TINY)
    # the locator trains first and has no attention prior; the crop model keeps `augment`
    assert seen == [(False, 1.5), (True, 0.5)]


def test_locator_cldice_weights_only_the_locators_loss(tiny_data, tmp_path, monkeypatch):
    import coroseg.train.loop as loop

    seen = []
    real = loop.forward_loss

    def record(model, x, y, loss_fn, cl_fn=None, cldice_weight=0.0, **kw):
        step = (cl_fn is not None, cldice_weight)
        if not seen or seen[-1] != step:
            seen.append(step)
        return real(model, x, y, loss_fn, cl_fn, cldice_weight, **kw)

    monkeypatch.setattr(loop, "forward_loss", record)
    train(tiny_data, tmp_path / "r", model="unet3d_crop", epochs=1, batch_size=2, device="cpu", patch_budget=4,
          patch_size=[16, 16, 16], progress=False, locator_cldice=0.5, **TINY)
    # the locator trains first with the clDice term; the crop model keeps `cldice` (0: off)
    assert seen == [(True, 0.5), (False, 0.0)]
    loss = json.loads((tmp_path / "r" / "config.json").read_text())["train"]["loss"]
    assert loss == "DiceCE (locator: DiceCE+0.5*clDice)"
