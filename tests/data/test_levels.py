"""Per-scan HU referencing (coroseg.data.levels): known levels are found, offsets and contrast
scales are removed, and a scan without contrast is left alone with the reason."""

from __future__ import annotations

import numpy as np
import pytest

from coroseg.data import levels
from coroseg.io.volume import Volume

FAT, MUSCLE, BLOOD = -100.0, 45.0, 350.0


def compartments(noise: float = 25.0, seed: int = 0) -> Volume:
    """A 1 mm block scan: fat, a muscle slab and a blood-pool block, with white noise."""
    rng = np.random.default_rng(seed)
    arr = np.full((40, 48, 48), FAT, np.float32)
    arr[:, :, 34:] = MUSCLE
    arr[8:32, 10:34, 8:30] = BLOOD
    arr += rng.normal(0.0, noise, arr.shape).astype(np.float32)
    return Volume(arr, (1.0, 1.0, 1.0))


def test_measure_levels_finds_fat_and_blood_pool():
    found = levels.measure_levels(compartments())
    assert found.problem is None
    assert abs(found.fat - FAT) <= 10 and abs(found.blood - BLOOD) <= 10
    mapped = found.apply(np.array([found.fat, found.blood]))
    np.testing.assert_allclose(mapped, [levels.FAT_HU, levels.BLOOD_HU], atol=1e-3)


@pytest.mark.parametrize(("gain", "offset"), [(0.45, -60.0), (0.8, 70.0)])
def test_referencing_removes_hu_offset_and_contrast_scale(gain, offset):
    vol = compartments()
    ref, _ = levels.reference_volume(vol)
    other, found = levels.reference_volume(vol.with_array(vol.array * gain + offset))
    assert found.problem is None
    # the same scan at another calibration and bolus strength lands on the same HU (up to the
    # histogram's 10 HU bins, i.e. a few HU after the map)
    inner = np.abs(other.array - ref.array)[8:32, 10:34, 8:30]
    assert float(np.median(inner)) < 25.0


def test_a_brighter_bolus_keeps_its_contrast_and_only_moves_its_fat():
    vol = compartments()
    bright = vol.with_array(vol.array * 1.9 + 80.0)  # blood 745 HU, 855 HU above fat
    out, found = levels.reference_volume(bright)
    assert found.problem is None and found.gain == levels.MIN_GAIN == 1.0
    assert abs(found.fat + found.shift - levels.FAT_HU) < 1e-3
    np.testing.assert_allclose(out.array, bright.array + found.shift, atol=1e-3)


def test_scan_without_contrast_is_left_unchanged_with_the_reason():
    vol = Volume(np.random.default_rng(1).normal(40.0, 20.0, (32, 32, 32)).astype(np.float32), (1.0, 1.0, 1.0))
    out, found = levels.reference_volume(vol)
    assert out is vol and found.problem and found.gain == 1.0 and found.shift == 0.0


def test_phantom_blood_pool_and_fat_match_its_parameters():
    from coroseg.synth.dataset import case_params
    from coroseg.synth.render import render_case

    params = case_params(3, seed=11, preset="small", group="Normal")
    image, _, _ = render_case(params)
    found = levels.measure_levels(image)
    offset = params.image.hu_offset
    assert found.problem is None
    assert abs(found.blood - (params.contrast.aorta + offset)) <= 60
    assert abs(found.fat - (params.contrast.fat + offset)) <= 25
