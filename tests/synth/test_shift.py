"""The generalisation test sets' appearance stays outside the training draw, whatever widens it."""

from __future__ import annotations

import numpy as np
import pytest

from coroseg.synth.dataset import case_params
from coroseg.synth.params import sample_case_params
from coroseg.synth.render import form_image
from coroseg.synth.shift import SHIFT_RANGES, shift_appearance


def _values(p) -> dict[str, float]:
    return {"aorta": p.contrast.aorta, "noise_sigma_hu": p.image.noise_sigma_hu,
            "noise_corr_mm": p.image.noise_corr_mm, "psf_sigma_mm": p.image.psf_sigma_mm,
            "hu_offset": p.image.hu_offset, "myocardium": p.contrast.myocardium,
            "distal_falloff": p.contrast.distal_falloff}


@pytest.mark.parametrize("preset", ["small", "asoca"])
def test_shifted_values_lie_outside_the_training_draw(preset: str) -> None:
    train = [_values(sample_case_params(np.random.default_rng([7, i]), preset, i % 2 == 1)) for i in range(400)]
    assert set(train[0]) == set(SHIFT_RANGES)  # every shifted parameter is checked
    for i in range(200):
        base = sample_case_params(np.random.default_rng([9, i]), preset, i % 2 == 1)
        shifted = _values(shift_appearance(base, np.random.default_rng([9, i, 1])))
        for key, v in shifted.items():
            lo, hi = min(t[key] for t in train), max(t[key] for t in train)
            assert not lo <= v <= hi, f"{key}={v} falls inside the training draw [{lo}, {hi}]"
            assert any(a <= v <= b for a, b in SHIFT_RANGES[key])


def test_shift_keeps_anatomy_and_is_seeded() -> None:
    a = case_params(3, seed=5, preset="small", group="Diseased")
    b = case_params(3, seed=5, preset="small", group="Diseased", shift=True)
    assert b == case_params(3, seed=5, preset="small", group="Diseased", shift=True)
    assert (a.tree, a.heart, a.grid, a.chest, a.disease) == (b.tree, b.heart, b.grid, b.chest, b.disease)
    assert a.image.hu_offset == 0.0 and b.image.hu_offset != 0.0
    assert type(a).from_dict(b.to_dict()) == b  # the manifest replays a shifted case


def test_hu_offset_moves_every_voxel() -> None:
    p = case_params(0, seed=1, preset="small", group="Normal")
    img = np.full((6, 8, 8), 40.0, np.float32)
    base = form_image(img, (1.0, 1.0, 1.0), p)
    p.image.hu_offset = 55.0
    moved = form_image(img, (1.0, 1.0, 1.0), p)
    assert np.array_equal(moved.astype(int) - base.astype(int), np.full(img.shape, 55))
