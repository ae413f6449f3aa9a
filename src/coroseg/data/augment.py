"""Training-time data augmentation (MONAI dictionary transforms), wide on purpose.

Synthetic and small training sets generalise to real CT only with strong augmentation of
geometry (flips, small rotations, scaling) and appearance (low resolution, blur, intensity
scale/shift, gamma, bias field, noise). At strength 1 the level shift reaches +-70 HU and the
scale +-35 %: beyond what the phantom draws, as real scanners are. Spatial transforms act on
``image``, ``prior`` (attention channel) and ``label`` together; appearance transforms act on ``image`` only.

Every random draw comes from the transform's own ``RandomState``, reseeded per patch by
:class:`coroseg.data.sampling.PatchDataset`, so a patch is a pure function of its seed.
"""

from __future__ import annotations

import math


def build_augmentation(dims: int, *, strength: float = 1.0, prior: bool = False):
    """A MONAI ``Compose`` for patches of ``dims`` spatial dimensions.

    Parameters
    ----------
    dims : 2 or 3
    strength : float
        Multiplies probabilities and ranges; 0 disables augmentation (returns ``None``).
    prior : bool
        Whether the samples carry a ``"prior"`` key (attention channel).

    Notes
    -----
    Samples are dicts of channel-first arrays/tensors ``(C, [D,] H, W)`` with keys ``image``,
    ``label`` and optionally ``prior``.
    """
    if strength <= 0:
        return None
    import monai.transforms as T

    s = float(strength)
    spatial = ["image", "label"] + (["prior"] if prior else [])
    modes = ["bilinear", "nearest"] + (["bilinear"] if prior else [])
    pads = ["border", "zeros"] + (["zeros"] if prior else [])
    rot = math.radians(15.0) * s
    rotate_range = (rot, rot, rot) if dims == 3 else (rot,)
    p = min(1.0, s)
    return T.Compose([
        T.RandAffined(keys=spatial, prob=0.3 * p, rotate_range=rotate_range, scale_range=[0.15 * s] * dims,
                      mode=modes, padding_mode=pads),
        *[T.RandFlipd(keys=spatial, prob=0.5 * p, spatial_axis=ax) for ax in range(dims)],
        # appearance, in normalised units (1 = the training set's HU standard deviation, ~140 HU):
        # resolution and sharpness first (a scanner's kernel and slice thickness), then contrast
        # and level (bolus, calibration), then noise, so noise is not smoothed away
        # MONAI's default upsampling is trilinear, which torch refuses for a 2D patch
        T.RandSimulateLowResolutiond(keys="image", prob=0.15 * p, zoom_range=(max(0.35, 1.0 - 0.5 * s), 1.0),
                                     upsample_mode="trilinear" if dims == 3 else "bilinear"),
        T.RandGaussianSmoothd(keys="image", sigma_x=(0.3, 0.3 + 1.2 * s), sigma_y=(0.3, 0.3 + 1.2 * s),
                              sigma_z=(0.3, 0.3 + 1.2 * s), prob=0.25 * p),
        T.RandScaleIntensityd(keys="image", factors=0.35 * s, prob=0.5 * p),
        T.RandShiftIntensityd(keys="image", offsets=0.5 * s, prob=0.5 * p),
        T.RandAdjustContrastd(keys="image", gamma=(max(0.4, 1.0 - 0.4 * s), 1.0 + 0.7 * s), prob=0.3 * p),
        T.RandBiasFieldd(keys="image", coeff_range=(0.0, 0.25 * s), prob=0.2 * p),
        T.RandGaussianNoised(keys="image", std=0.25 * s, prob=0.35 * p),
    ])


__all__ = ["build_augmentation"]
