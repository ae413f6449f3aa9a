"""The GPU code path, exercised on a CPU: loader workers, precision, compile, channels-last, checkpoints.

A CPU runs the same autocast and gradient-scaler code a GPU does (bf16 and fp16 autocast exist
on CPU), so what only a GPU can show is speed and memory: that is benchmarks/gpu_check.py.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from train_helpers import TINY

from coroseg.data.cache import PreparedCase
from coroseg.data.sampling import AttentionInput, PatchDataset, PatchItem
from coroseg.errors import CorosegError
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume
from coroseg.models.registry import build_network
from coroseg.models.run import load_run, load_weights, read_config
from coroseg.train import train
from coroseg.train.loader import default_workers, loader_settings, make_loader
from coroseg.train.options import parse_overrides, saved_options
from coroseg.train.precision import autocast_dtype, grad_scaler
from coroseg.train.state import TrainState, _on_cpu


def _losses(run) -> list[tuple[str, str, str]]:
    with open(run / "metrics.csv", newline="") as fh:
        return [(r["phase"], r["epoch"], r["train_loss"]) for r in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def tiny_prepared():
    """Two prepared cases (noisy image, a tube label and its straight centerline), 40^3 at 0.8 mm."""
    rng = np.random.default_rng(1)
    out = []
    for n in range(2):
        shape = (40, 40, 40)
        lab = np.zeros(shape, np.uint8)
        lab[4:36, 18 + n:22 + n, 18:22] = 1
        img = (rng.normal(0, 0.3, shape) + lab).astype(np.float32)
        grid = Volume(lab, (0.8, 0.8, 0.8), is_label=True)
        line = np.stack([np.linspace(4, 35, 63), np.full(63, 19.5 + n), np.full(63, 19.5)], 1)
        graph = CenterlineGraph.from_polylines([grid.index_to_world(line)], [np.full(63, 1.6)])
        out.append(PreparedCase(f"c{n}", img, lab, grid, graph, "label"))
    return out


def _batches(loader, sampler, plans) -> list[dict]:
    out = []
    for epoch, items in enumerate(plans):
        sampler.set_epoch(epoch, items)
        out += [{k: v.clone() for k, v in b.items()} for b in loader]
    return out


def test_workers_serve_the_same_batches_as_the_main_process(tiny_prepared):
    """Two persistent workers over two epochs: batch for batch equal to no workers (attention,
    per-epoch perturbed centerline, augmentation and attention dropout included)."""
    from coroseg.data.augment import build_augmentation

    cases = tiny_prepared
    rng = np.random.default_rng(0)
    plans = [[PatchItem(int(rng.integers(len(cases))), tuple(int(v) for v in rng.integers(8, 32, 3)),
                        int(rng.integers(2**31))) for _ in range(6)] for _ in range(2)]
    att = AttentionInput(perturb=True, dropout=0.3, spurious=1)
    got = {}
    for workers in (0, 2):
        ds = PatchDataset(cases, [], (16, 16, 16), 3, attention=att, augment=build_augmentation(3, prior=True), seed=3)
        loader, sampler = make_loader(ds, batch_size=2, device=torch.device("cpu"), workers=workers, seed=3)
        assert loader.persistent_workers == (workers > 0)
        got[workers] = _batches(loader, sampler, plans)
        del loader
    assert len(got[0]) == len(got[2]) == 6
    for a, b in zip(got[0], got[2]):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    # the epochs differ (a new plan, a new perturbation): the sampler really moved on
    assert not torch.equal(got[0][0]["image"], got[0][3]["image"])


def test_epoch_keys_match_the_positional_dataset(tiny_prepared):
    """``(epoch, item)`` keys give what the per-epoch dataset of before gave for the same epoch."""
    items = [PatchItem(0, (20, 20, 20), 11), PatchItem(1, (12, 18, 24), 12)]
    att = AttentionInput(perturb=True)
    per_epoch = PatchDataset(tiny_prepared, items, (16, 16, 16), 3, attention=att, seed=5, epoch=4)
    keyed = PatchDataset(tiny_prepared, [], (16, 16, 16), 3, attention=att, seed=5)
    for i, item in enumerate(items):
        assert torch.equal(per_epoch[i]["image"], keyed[(4, item)]["image"])


def test_loader_pins_memory_only_for_a_gpu_and_keeps_workers():
    assert loader_settings(torch.device("cpu"), 0) == {"num_workers": 0, "pin_memory": False}
    gpu = loader_settings(torch.device("cuda", 0), 4)
    assert gpu["pin_memory"] is True and gpu["persistent_workers"] is True and gpu["num_workers"] == 4
    assert loader_settings(torch.device("cpu"), 2)["pin_memory"] is False
    assert default_workers(torch.device("cpu"), 1, 16) == 0
    assert default_workers(torch.device("cuda", 0), 2, 16) == 8 and default_workers(torch.device("cuda", 0), 8, 16) == 2


def test_precision_maps_to_autocast_and_scaler():
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("auto", gpu) is torch.bfloat16
    assert autocast_dtype("bf16", cpu) is torch.bfloat16 and autocast_dtype("fp16", cpu) is torch.float16
    assert autocast_dtype("fp32", gpu) is None
    assert grad_scaler(cpu, torch.bfloat16) is None and grad_scaler(cpu, None) is None
    assert isinstance(grad_scaler(cpu, torch.float16), torch.amp.GradScaler)


def test_old_amp_option_is_translated_and_refused_on_the_command_line():
    assert saved_options({"amp": False, "cldice": 0.5}) == {"precision": "fp32", "cldice": 0.5}
    assert saved_options({"amp": True}) == {"precision": "auto"}
    assert saved_options({"amp": False, "precision": "bf16"}) == {"precision": "bf16"}
    with pytest.raises(CorosegError, match="amp: replaced by precision"):
        parse_overrides(["amp=false"])
    with pytest.raises(CorosegError, match="precision='fp8': expected one of auto, bf16, fp16, fp32"):
        train("unused", "unused", precision="fp8")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_saves_fp32_weights(tiny_data, tmp_path, precision):
    """bf16 / fp16 autocast on the CPU: finite falling loss, fp32 weights, the fp16 scaler saved."""
    run = train(tiny_data, tmp_path / precision, model="unet3d_grid", epochs=3, batch_size=2, device="cpu",
                lr=3e-3, augment=0.0, patch_size=[16, 16, 16], progress=False, precision=precision, **TINY)
    losses = [float(r[2]) for r in _losses(run)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(t.dtype == torch.float32 for t in load_file(run / "model.safetensors").values())
    state = TrainState.load(run / "optimizer.pt")
    if precision == "fp16":
        assert state.scaler is not None and state.scaler["scale"] > 0
    else:
        assert state.scaler is None
    assert read_config(run).train["options"]["precision"] == precision


def test_workers_in_training_give_the_same_run(tiny_data, tmp_path):
    """``num_workers`` 2 vs 0 in a whole crop-model run (locator first): the same losses and weights."""
    runs = []
    for workers in (0, 2):
        runs.append(train(tiny_data, tmp_path / f"w{workers}", model="unet3d_crop", epochs=2, batch_size=2,
                          device="cpu", augment=0.5, patch_size=[16, 16, 16], progress=False,
                          num_workers=workers, **TINY))
    assert _losses(runs[0]) == _losses(runs[1])
    a, b = (load_file(r / "model.safetensors") for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_channels_last_trains_and_its_weights_load_anywhere(tiny_data, tmp_path):
    run = train(tiny_data, tmp_path / "cl", model="unet3d_grid", epochs=1, batch_size=2, device="cpu",
                augment=0.0, patch_size=[16, 16, 16], progress=False, channels_last=True, **TINY)
    loaded = load_run(run)  # a plain (contiguous) network reads them
    assert all(p.is_contiguous() for p in loaded.model.parameters())


@pytest.mark.slow
def test_compiled_training_matches_eager(tiny_data, tmp_path):
    """``compile=true``: torch.compile (inductor on the CPU) trains to nearly the eager losses."""
    pytest.importorskip("torch._inductor")
    runs = [train(tiny_data, tmp_path / f"c{c}", model="unet3d_grid", epochs=1, batch_size=2, device="cpu",
                  augment=0.0, patch_size=[16, 16, 16], progress=False, compile=c, **TINY) for c in (False, True)]
    (_, _, eager), (_, _, compiled) = _losses(runs[0])[0], _losses(runs[1])[0]
    assert float(compiled) == pytest.approx(float(eager), rel=1e-3)


def test_state_is_saved_from_cpu_copies(tmp_path):
    nested = {"a": torch.ones(2, dtype=torch.bfloat16), "b": [torch.zeros(1), (torch.arange(3), 4)], "c": "x"}
    moved = _on_cpu(nested)
    assert moved["a"].device.type == "cpu" and moved["a"].dtype == torch.bfloat16
    assert isinstance(moved["b"][1], tuple) and moved["b"][1][1] == 4 and moved["c"] == "x"
    TrainState("model", optimizer={"state": {0: {"exp_avg": torch.ones(3)}}}).save(tmp_path / "optimizer.pt")
    back = TrainState.load(tmp_path / "optimizer.pt")
    assert back.optimizer["state"][0]["exp_avg"].device.type == "cpu"


def test_weights_load_onto_the_network_device(tmp_path):
    """Weights are read to the CPU and copied into the network wherever it lives (map_location)."""
    from coroseg.models.registry import model_spec, network_config
    from coroseg.models.run import save_weights

    cfg = network_config(model_spec("unet3d_grid"), channels=[4, 8], num_res_units=0)
    src = build_network(cfg)
    save_weights(src, tmp_path / "w.safetensors")
    dst = build_network(cfg).to(dtype=torch.float64)  # another "placement": dtype stands in for a device here
    load_weights(dst, tmp_path / "w.safetensors")
    for (_, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert b.dtype == torch.float64 and torch.allclose(a.double(), b)


@pytest.mark.slow
def test_gpu_check_tiny_runs_every_step(tmp_path):
    """benchmarks/gpu_check.py --tiny: the device script's every step on the CPU, results written."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
    res = subprocess.run([sys.executable, str(script), "--tiny", "--out", str(tmp_path)], capture_output=True,
                         text=True, timeout=400, env={**__import__("os").environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    out = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [n for n, r in out["steps"].items() if r["status"] == "ok"] == ["phantoms", "train_step", "train_run",
                                                                          "ddp", "predict"]
    step, run, pred = (out["steps"][k]["result"] for k in ("train_step", "train_run", "predict"))
    assert step["loop"] > 0 and step["bare"] > 0 and step["channels_last_bare"] > 0
    assert run["model"]["loss_falls"] and run["locator"]["loss_falls"]
    assert out["steps"]["ddp"]["result"] == {**out["steps"]["ddp"]["result"], "backend": "gloo", "world": 1,
                                             "loss_finite": True}
    for name in ("ours", "ours_tta", "monai_sliding_window"):
        assert 0.5 < pred[name]["dice"] <= 1.0 and pred[name]["network_s"] > 0
    text = (tmp_path / "gpu_check.txt").read_text()
    assert "loop/bare" in text and "monai_sliding_window" in text
