"""The same scan stored with its array axes in another order gives the same segmentation.

Flips and RAS storage are covered by ``tests/infer/test_pipeline.py::test_orientation_invariance``;
this adds the axis permutations (e.g. a scan stored (X, Z, Y) with a permuted direction matrix),
with the deterministic threshold networks of ``tests/infer/infer_helpers.py``.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infer"))

from infer_helpers import FakeRun, ThresholdNet, dice, make_config, tube_phantom  # noqa: E402

from coroseg.infer import predict_volume  # noqa: E402
from coroseg.io.volume import Volume, read_volume, resample_to_grid, write_volume  # noqa: E402


def permuted(vol: Volume, perm: tuple[int, int, int]) -> Volume:
    """The same physical image stored with array axis ``a`` = old axis ``perm[a]``."""
    arr = np.transpose(vol.array, perm).copy()
    spacing = tuple(vol.spacing[p] for p in perm)
    d = np.empty((3, 3))
    for a in range(3):  # ITK direction columns are (i, j, k) = array axes (2, 1, 0)
        d[:, 2 - a] = vol.direction[:, 2 - perm[a]]
    return Volume(arr, spacing, vol.origin, d, vol.is_label)


PERMS = [p for p in itertools.permutations(range(3)) if p != (0, 1, 2)]


@pytest.fixture(scope="module")
def scan():
    img, _, _ = tube_phantom(shape=(30, 36, 40), spacing=(1.2, 0.9, 1.0))
    return Volume(img.array, img.spacing, (-21.5, 14.25, 102.0))


def test_permuted_volume_is_the_same_world_image(scan):
    p = permuted(scan, (2, 0, 1))
    k, j, i = 3, 5, 7
    np.testing.assert_allclose(p.index_to_world(np.array([[i, k, j]])), scan.index_to_world(np.array([[k, j, i]])))
    assert p.array[i, k, j] == scan.array[k, j, i]


@pytest.mark.parametrize("model", ["unet3d_grid", "unet3d_crop", "unet2d_grid"])
@pytest.mark.parametrize("perm", PERMS, ids=["".join("kji"[a] for a in p) for p in PERMS])
def test_axis_permutation_gives_the_same_world_segmentation(scan, tmp_path, model, perm):
    cfg = make_config(model, patch=(1, 32, 32) if "2d" in model else (16, 16, 16))
    run = FakeRun(cfg, ThresholdNet(), ThresholdNet() if cfg["locator"] else None)
    base = predict_volume(run, scan, device="cpu")
    # through a file, as a user's scan would arrive
    var_img = read_volume(write_volume(permuted(scan, perm), tmp_path / "perm.nrrd"))
    var = predict_volume(run, var_img, device="cpu")
    assert var.seg.shape == var_img.shape
    np.testing.assert_allclose(var.seg.direction, var_img.direction, atol=1e-6)
    back = resample_to_grid(var.seg, scan)  # nearest: the grids coincide voxel for voxel
    assert base.seg.array.sum() > 200
    assert dice(back.array, base.seg.array) >= 0.99
