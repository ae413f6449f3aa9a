"""Training-time data augmentation (MONAI dictionary transforms), wide on purpose.

Synthetic and small training sets generalise to real CT only with strong augmentation of
geometry (flips, small rotations, scaling) and appearance (intensity scale/shift, contrast,
noise, blur). Spatial transforms act on ``image``, ``prior`` (attention channel) and
``label`` together; appearance transforms act on ``image`` only.

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
        T.RandAffined(keys=spatial, prob=0.3 * p, rotate_range=rotate_range, scale_range=[0.12 * s] * dims,
                      mode=modes, padding_mode=pads),
        *[T.RandFlipd(keys=spatial, prob=0.5 * p, spatial_axis=ax) for ax in range(dims)],
        T.RandScaleIntensityd(keys="image", factors=0.15 * s, prob=0.5 * p),
        T.RandShiftIntensityd(keys="image", offsets=0.15 * s, prob=0.5 * p),
        T.RandAdjustContrastd(keys="image", gamma=(1.0 - 0.3 * min(s, 2.0) / 2, 1.0 + 0.5 * s), prob=0.2 * p),
        T.RandGaussianNoised(keys="image", std=0.08 * s, prob=0.3 * p),
        T.RandGaussianSmoothd(keys="image", sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0), sigma_z=(0.3, 1.0),
                              prob=0.2 * p),
    ])


__all__ = ["build_augmentation"]
