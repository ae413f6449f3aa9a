"""Tiny synthetic volumes (a curved tube in noise) and a fake run + test folder for the report tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from coroseg.io.volume import Volume, write_volume

SPACING = (1.0, 0.8, 0.8)


def tube(shape=(40, 48, 48), radius=4.0) -> np.ndarray:
    """A tube along z bending in x, plus a short branch along y: (Z, Y, X) bool."""
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    cx = shape[2] / 2 + 8 * np.sin(z / shape[0] * np.pi)
    m = (y - shape[1] / 2) ** 2 + (x - cx) ** 2 <= radius**2
    m &= (z >= 4) & (z < shape[0] - 4)
    m |= ((z - shape[0] // 2) ** 2 + (x - shape[2] // 2) ** 2 <= 3**2) & (y > 8) & (y < shape[1] // 2)
    return m


@pytest.fixture
def volumes(rng):
    ref = tube()
    pred = np.roll(ref, 2, axis=2)  # shifted: TP, FP and FN all present
    image = rng.normal(0.0, 50.0, ref.shape) + np.where(ref, 450.0, 0.0)
    return image.astype(np.float32), pred, ref


def _blind_locator(path: Path, net_cfg: dict) -> None:
    """Locator weights that see no vessel anywhere (last layer: weights 0, background bias +10), so the
    report's crop figure falls back to the reference centerline, deterministically."""
    import torch

    from coroseg.models.registry import build_network
    from coroseg.models.run import save_weights

    net = build_network(net_cfg)
    last = [m for m in net.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([10.0, -10.0]))
    save_weights(net, path)


def write_manifest(data: Path) -> None:
    """The ``manifest.json`` that ``coroseg synth`` writes (the report's synthetic-data signal)."""
    (data / "manifest.json").write_text(json.dumps({"generator": "coroseg.synth", "generator_version": "1",
                                                    "seed": 0, "preset": "small", "n_cases": 2, "anatomy_dir": None,
                                                    "appearance": "training ranges", "cases": []}))


@pytest.fixture
def fake_run(tmp_path: Path, volumes) -> tuple[Path, Path, Path]:
    """(run_dir, test_dir, data_dir) as `coroseg train` / `coroseg test` would leave them."""
    image, pred, ref = volumes
    data = tmp_path / "data"
    run = tmp_path / "run"
    test = tmp_path / "test"
    for cid, shift in (("Normal_1", 0), ("Normal_2", 3)):
        g = data / "test" / "Normal"
        write_volume(Volume(np.roll(image, shift, 0), SPACING), g / "CTCA" / f"{cid}.nrrd")
        write_volume(Volume(np.roll(ref, shift, 0).astype(np.uint8), SPACING, is_label=True),
                     g / "Annotations" / f"{cid}.nrrd")
        for variant in ("auto", "oracle"):
            write_volume(Volume(np.roll(pred, shift, 0).astype(np.uint8), SPACING, is_label=True),
                         test / "pred" / variant / f"{cid}_seg.nrrd")
    run.mkdir()
    net = {"spatial_dims": 3, "in_channels": 2, "channels": [4, 8], "strides": [2], "num_res_units": 0}
    loc_net = {**net, "in_channels": 1}
    intensity = {"clip": [-100.0, 700.0], "mean": 100.0, "std": 200.0}
    (run / "config.json").write_text(json.dumps({
        "schema": 2, "coroseg_version": "0.1.0", "model": "unet3d_crop", "dims": 3, "sampler": "crop",
        "attention": True, "in_channels": 2, "patch_size": [16, 16, 16], "spacing": list(SPACING),
        "intensity": intensity, "network": net, "seed": 0, "status": "complete",
        "locator": {"spacing": list(SPACING), "patch_size": [16, 16, 16], "network": loc_net, "intensity": intensity,
                    "weights": "locator.safetensors"},
        "train": {"epochs": 100, "batch_size": 2, "lr": 0.001, "patch_budget": 60, "phase_order": ["model"],
                  "stopped": {"model": "patch budget reached (60 patches)"}},
        "data": {"root": str(data), "layout": "split"}}))
    _blind_locator(run / "locator.safetensors", loc_net)
    (run / "metrics.csv").write_text(
        "phase,epoch,step,patches,train_loss,val_dice,lr,seconds,patches_per_s\n"
        "model,1,10,20,0.9,0.41,0.001,1.0,20\nmodel,2,20,40,0.7,,0.001,1.0,20\nmodel,3,30,60,0.5,0.7345,0.0005,1.0,20\n")
    test.mkdir(exist_ok=True)
    (test / "metrics.csv").write_text(
        "case_id,centerline,dice,precision,recall,accuracy,hd95,hd95_asoca,assd,cldice,betti0_error\n"
        "Normal_1,auto,0.8123,0.8,0.83,0.999,1.6,2,0.41,0.9,0\n"
        "Normal_2,auto,0.7012,0.7,0.71,0.998,inf,3,0.5,0.8,1\n"
        "Normal_1,oracle,0.8456,0.84,0.85,0.999,1.2,2,0.33,0.92,0\n")
    (test / "summary.md").write_text(
        "# Test summary\n\n| metric | mean ± std | median |\n|---|--:|--:|\n| Dice | 0.7568 ± 0.0556 | 0.7568 |\n"
        "| HD95 (mm) | 1.6 ± 0.0 | 1.6 |\n\n"
        "Voxel *accuracy* is reported for comparison; `recall` is the prior's accuracy.\n",
        encoding="utf-8")
    return run, test, data
