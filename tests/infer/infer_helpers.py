"""Helpers for inference tests: a tube phantom and deterministic "threshold" networks.

The networks are intensity functions (a symmetric 3x3(x3) box mean of channel 0, then a
steep logistic around a threshold), so their output is a deterministic, orientation-free
function of the image: flipping the input flips the output exactly, and the bright tubes
are segmented. That makes the orientation and geometry tests meaningful without training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume

INTENSITY = {"clip": [-100.0, 600.0], "mean": 100.0, "std": 200.0}
TUBE_HU, BACKGROUND_HU = 450.0, 40.0
# normalised: tube 1.75, background -0.3; the network threshold sits in between
THRESHOLD_NORM = 0.45

# LPS mm polylines (x, y, z) of the phantom trees, radii mm
TREES = [
    [np.array([[8.0, 10.0, 4.0], [14.0, 20.0, 16.0], [20.0, 30.0, 28.0]])],
    [np.array([[30.0, 30.0, 6.0], [30.0, 25.0, 16.0], [34.0, 20.0, 27.0]]),
     np.array([[30.0, 30.0, 6.0], [30.0, 25.0, 16.0], [27.0, 37.0, 27.0]])],
]
RADIUS = 2.2


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def tube_phantom(shape=(34, 42, 42), spacing=(1.0, 1.0, 1.0)) -> tuple[Volume, Volume, CenterlineGraph]:
    """HU image, label and ground-truth centerline of two bright tube trees (identity LPS)."""
    ref = Volume(np.zeros(shape, np.int16), spacing, (0.0, 0.0, 0.0))
    kk, jj, ii = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    world = ref.index_to_world(np.stack([kk, jj, ii], -1).reshape(-1, 3))
    d = np.full(len(world), np.inf)
    lines = []
    for tree in TREES:
        for line in tree:
            lines.append(line)
            for a, b in zip(line[:-1], line[1:]):
                d = np.minimum(d, _seg_dist(world, a, b))
    frac = np.clip(RADIUS - d + 0.5, 0.0, 1.0).reshape(shape)  # 1 mm partial-volume edge
    img = (BACKGROUND_HU + (TUBE_HU - BACKGROUND_HU) * frac).round().astype(np.int16)
    label = (d.reshape(shape) <= RADIUS).astype(np.uint8)
    graph = CenterlineGraph.from_polylines(
        [np.concatenate([np.linspace(a, b, 12, endpoint=False) for a, b in zip(ln[:-1], ln[1:])] + [ln[-1:]])
         for ln in lines],
        [np.full(23, RADIUS) for _ in lines])
    return ref.with_array(img), ref.with_array(label, is_label=True), graph


class ThresholdNet(torch.nn.Module):
    """Logits ``(N, 2, ...)``: 0 and ``gain * (boxmean(x[:, 0]) - t)``; 2D or 3D by input rank."""

    def __init__(self, threshold: float = THRESHOLD_NORM, gain: float = 8.0):
        super().__init__()
        self.threshold = threshold
        self.gain = gain
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        c0 = x[:, :1]
        if x.ndim == 5:
            m = torch.nn.functional.avg_pool3d(c0, 3, stride=1, padding=1, count_include_pad=False)
        else:
            m = torch.nn.functional.avg_pool2d(c0, 3, stride=1, padding=1, count_include_pad=False)
        logit = self.gain * (m - self.threshold)
        return torch.cat([torch.zeros_like(logit), logit], dim=1)


@dataclass
class FakeRun:
    """Duck-typed ``LoadedRun``."""

    config: dict
    model: torch.nn.Module
    locator: torch.nn.Module | None
    run_dir: Path | None = None


def make_config(model: str = "unet3d_crop", *, patch=(16, 16, 16), spacing=(1.0, 1.0, 1.0), attention=True,
                locator=True) -> dict:
    from coroseg.models.registry import network_config

    crop = model.endswith("_crop")
    dims, chans = 2 if patch[0] == 1 else 3, 2 if (attention and crop) else 1
    net = network_config({"dims": dims, "in_channels": chans}, channels=(4, 8), num_res_units=0)
    loc_net = network_config({"dims": 3, "in_channels": 1}, channels=(4, 8), num_res_units=0)
    return {
        "coroseg_version": "test", "model": model, "dims": 2 if patch[0] == 1 else 3,
        "sampler": "crop" if crop else "grid", "attention": bool(attention and crop),
        "in_channels": 2 if (attention and crop) else 1, "patch_size": list(patch), "spacing": list(spacing),
        "intensity": dict(INTENSITY), "network": net,
        "attention_cfg": {"mode": "gaussian", "dilation_mm": 1.0},
        "crop": {"method": "kmeans"}, "seed": 0,
        "locator": ({"spacing": [1.5, 1.5, 1.5], "patch_size": [16, 16, 16], "network": loc_net,
                     "intensity": dict(INTENSITY), "weights": "locator.safetensors", "threshold": 0.5}
                    if (crop and locator) else None),
    }


def flipped(vol: Volume, axes: tuple[int, ...]) -> Volume:
    """The same physical image stored with array axes ``axes`` (0=k, 1=j, 2=i) reversed."""
    arr = np.flip(vol.array, axis=axes).copy()
    d = vol.direction.copy()
    first = np.zeros(3)
    for a in axes:
        first[a] = vol.shape[a] - 1
        d[:, 2 - a] *= -1  # ITK column order is (i, j, k)
    origin = vol.index_to_world(first[None])[0]
    return Volume(arr, vol.spacing, tuple(origin), d, vol.is_label)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * np.logical_and(a, b).sum() / s


def tiny_run_folder(folder, model: str):
    """A run folder built by hand: tiny random MONAI U-Nets (and locator), safetensors, config.json."""
    import json

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
