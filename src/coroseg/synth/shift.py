"""Appearance outside the phantom's training ranges: the recipe of the generalisation test sets.

A model trained on the phantom must be judged on CT it has not seen. :func:`shift_appearance`
redraws a case's appearance parameters from ranges that lie *outside* those of
:func:`coroseg.synth.params.sample_case_params` (checked by ``tests/synth/test_shift.py``),
keeping the anatomy: lumen contrast much lower or higher, more and coarser noise, blurrier
images, a global HU offset (scanner calibration), brighter myocardium, stronger distal
fall-off; and, harder though not outside the draw, veins as bright as the arteries beside every
branch. ``coroseg synth --shift`` and
``benchmarks/generalisation.py`` use it.

The ranges are fixed here, not derived from the training ranges, so that widening the training
distribution later cannot silently swallow the shift: the test fails instead.
"""

from __future__ import annotations

import copy

import numpy as np

from coroseg.synth.params import CaseParams

#: every shifted parameter and its range(s); a list of two ranges means one of them, 50/50
#: (aorta and myocardium take the same branch: a weak bolus enhances both less).
#: Training ranges (params.py) for comparison: aorta 180-700 HU, noise 10-60 HU, noise
#: correlation 0.3-0.9 mm, PSF 0.25-0.75 mm, myocardium 80-160 HU, vein <= 0.95 x aorta,
#: distal fall-off 0-0.4, no HU offset.
SHIFT_RANGES: dict[str, list[tuple[float, float]]] = {
    "aorta": [(150.0, 176.0), (730.0, 900.0)],
    "noise_sigma_hu": [(62.0, 80.0)],
    "noise_corr_mm": [(1.0, 1.4)],
    "psf_sigma_mm": [(0.8, 1.0)],
    "hu_offset": [(-90.0, -45.0), (45.0, 90.0)],
    "myocardium": [(40.0, 75.0), (165.0, 210.0)],  # low with a dim lumen, high with a bright one
    "distal_falloff": [(0.42, 0.55)],
}
#: not outside the training draw (which already has veins up to 1.5x a dim aorta) but harder:
#: veins at arterial level beside every branch; vein HU as a fraction of the shifted aorta
VEIN_FRACTION = (0.97, 1.05)


def _draw(rng: np.random.Generator, key: str, branch: int | None = None) -> float:
    ranges = SHIFT_RANGES[key]
    if branch is None:
        branch = int(rng.integers(len(ranges))) if len(ranges) > 1 else 0
    lo, hi = ranges[branch]
    return float(round(rng.uniform(lo, hi), 4))


def shift_appearance(params: CaseParams, rng: np.random.Generator) -> CaseParams:
    """A copy of ``params`` with its appearance redrawn from :data:`SHIFT_RANGES`.

    Anatomy (tree, heart, chest, grid) is untouched; contrast-dependent levels (right heart,
    lung vessels, veins) follow the new aorta level as they do in the training draw.
    """
    p = copy.deepcopy(params)
    ct, im = p.contrast, p.image
    old = max(ct.aorta, 1.0)
    bolus = int(rng.integers(2))  # 0: weak, 1: strong enhancement
    ct.aorta = _draw(rng, "aorta", bolus)
    ct.right_heart = float(round(ct.right_heart / old * ct.aorta, 4))
    ct.lung_vessel = float(round(ct.lung_vessel / old * ct.aorta, 4))
    ct.myocardium = _draw(rng, "myocardium", bolus)
    ct.distal_falloff = _draw(rng, "distal_falloff")
    p.veins.hu = float(round(rng.uniform(*VEIN_FRACTION) * ct.aorta, 4))
    p.veins.follow_fraction = 1.0
    im.noise_sigma_hu = _draw(rng, "noise_sigma_hu")
    im.noise_corr_mm = _draw(rng, "noise_corr_mm")
    im.psf_sigma_mm = _draw(rng, "psf_sigma_mm")
    im.hu_offset = _draw(rng, "hu_offset")
    return p


__all__ = ["SHIFT_RANGES", "VEIN_FRACTION", "shift_appearance"]
