"""Tiny synthetic datasets for training tests: bright curved tubes in noisy background.

Written in the split layout ``ROOT/{train,val}/Normal/{CTCA,Annotations}/<id>.nrrd`` with
:func:`coroseg.io.volume.write_volume`; seconds to make, ~48^3 voxels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coroseg.io.volume import Volume, write_volume


def tube_case(rng: np.random.Generator, shape=(40, 40, 40), spacing=(0.8, 0.8, 0.8)) -> tuple[np.ndarray, np.ndarray]:
    """(image HU float32, label uint8): two smooth tubes of radius ~2 voxels."""
    z, y, x = np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij")
    label = np.zeros(shape, bool)
    for _ in range(2):
        a = rng.uniform(0.15, 0.3, 2) * np.array(shape[1:])
        ph = rng.uniform(0, 2 * np.pi, 2)
        cy = shape[1] / 2 + a[0] * np.sin(2 * np.pi * z / shape[0] * 0.7 + ph[0])
        cx = shape[2] / 2 + a[1] * np.cos(2 * np.pi * z / shape[0] * 0.5 + ph[1])
        r = rng.uniform(1.8, 2.6)
        label |= ((y - cy) ** 2 + (x - cx) ** 2 <= r * r) & (z >= 3) & (z < shape[0] - 3)
    image = rng.normal(40.0, 60.0, shape) + 350.0 * label
    return image.astype(np.float32), label.astype(np.uint8)


def make_dataset(root: Path, *, n_train: int = 2, n_val: int = 1, seed: int = 0, shape=(40, 40, 40)) -> Path:
    rng = np.random.default_rng(seed)
    n = 0
    for split, count in (("train", n_train), ("val", n_val)):
        for _ in range(count):
            img, lab = tube_case(rng, shape)
            cid = f"case_{n}"
            base = root / split / "Normal"
            write_volume(Volume(img, (0.8, 0.8, 0.8)), base / "CTCA" / f"{cid}.nrrd")
            write_volume(Volume(lab, (0.8, 0.8, 0.8), is_label=True), base / "Annotations" / f"{cid}.nrrd")
            n += 1
    return root


#: tiny networks and patches so every test trains in seconds on 2 CPU cores
TINY = dict(channels=[4, 8, 16], num_res_units=1, locator_channels=[4, 8, 16], locator_patch=[16, 16, 16],
            samples_per_case=4, locator_samples_per_case=2)
