"""Anti-aliased downsampling: a fine-voxel scan's noise is averaged, not passed through."""

from __future__ import annotations

import numpy as np
import pytest

from coroseg.data.preprocess import ModelGridPatches, normalise, to_model_grid
from coroseg.io.resample import antialias, antialias_sigma_mm, resample
from coroseg.io.volume import Volume

INTENSITY = {"clip": [-1000.0, 1000.0], "mean": 0.0, "std": 100.0}


def _noise(spacing=(0.5, 0.33, 0.33), shape=(40, 96, 96), seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    return Volume(rng.normal(0.0, 100.0, shape).astype(np.float32), spacing)


def test_sigma_is_half_the_spacing_increase_and_zero_where_finer():
    assert antialias_sigma_mm((0.33, 0.33, 0.5), (0.83, 0.33, 0.25)) == pytest.approx((0.25, 0.0, 0.0))


def test_filtered_white_noise_has_the_gaussian_kernels_std():
    vol = _noise()
    out = antialias(vol, (0.8, 0.8, 0.8))
    # white noise through a Gaussian of std s voxels keeps 1 / sqrt(2 sqrt(pi) s) of its std per axis
    s = [(0.8 - sp) / 2.0 / sp for sp in vol.spacing]
    expected = 100.0 * np.prod([1.0 / np.sqrt(2.0 * np.sqrt(np.pi) * v) for v in s])
    assert float(out.array[5:-5, 10:-10, 10:-10].std()) == pytest.approx(expected, rel=0.1)


def test_downsampled_noise_is_averaged_and_a_constant_stays():
    vol = _noise()
    plain = resample(vol, (0.8, 0.8, 0.8), antialiased=False).array.std()
    smooth = resample(vol, (0.8, 0.8, 0.8), antialiased=True).array.std()
    assert smooth < 0.6 * plain  # measured: 0.29 vs 0.55 of the noise's std
    flat = Volume(np.full((20, 30, 30), 300, np.int16), (0.5, 0.33, 0.33))
    out = resample(flat, (0.8, 0.8, 0.8), antialiased=True)
    assert out.array.min() == out.array.max() == 300


def test_no_coarser_axis_and_labels_are_left_alone():
    vol = _noise()
    assert antialias(vol, (0.5, 0.3, 0.2)) is vol
    lab = Volume((np.arange(96) % 2).astype(np.uint8)[None, None].repeat(4, 0).repeat(5, 1), (1.0, 0.3, 0.3),
                 is_label=True)
    assert antialias(lab, (2.0, 2.0, 2.0)) is lab


def test_model_grid_patches_read_the_antialiased_grid():
    vol = _noise(shape=(30, 80, 80))
    spacing = (0.8, 0.8, 0.8)
    whole = normalise(to_model_grid(vol, spacing).array, INTENSITY)
    patches = ModelGridPatches(vol, spacing, INTENSITY)
    box = (slice(2, 14), slice(5, 25), slice(3, 23))
    np.testing.assert_allclose(patches.region(box), whole[box], atol=1e-4)
