"""Preprocessing shared by training and inference: model spacing and CT intensity normalisation.

All statistics come from the TRAINING cases only (never validation or test) and are stored in
the run's ``config.json`` (keys ``"spacing"`` and ``"intensity"``), so inference applies exactly
the transform the network was trained with.

The intensity scheme follows nnU-Net's CT normalisation: HU values are clipped to the
0.5th-99.5th percentiles of the voxels inside the (dilated) foreground, then standardised with
the mean and standard deviation of those clipped voxels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from coroseg.errors import InputError
from coroseg.io.volume import Volume, resample

#: number of voxels drawn per case (without replacement) for the intensity statistics
SAMPLES_PER_CASE = 200_000
#: foreground is dilated by this many voxels (26-connectivity) before sampling intensities,
#: so the vessel wall and surrounding fat/myocardium enter the statistics
FOREGROUND_DILATION = 4


def intensity_stats(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], *,
                    dilation: int = FOREGROUND_DILATION, seed: int = 0) -> dict:
    """Clip window and standardisation constants from training images.

    Parameters
    ----------
    images : list of (Z, Y, X) ndarray, HU
        Training images (on any grid; each must match its label's shape).
    labels : list of (Z, Y, X) ndarray of {0, 1}
        Their vessel masks. A case with an empty mask contributes all its voxels.
    dilation : int, voxels
        The mask is dilated by this many voxels before sampling.
    seed : int
        Seeds the voxel subsampling (at most ``SAMPLES_PER_CASE`` voxels per case).

    Returns
    -------
    dict
        ``{"clip": [lo, hi], "mean": float, "std": float}`` with ``lo``/``hi`` the 0.5th and
        99.5th percentiles (HU) and ``mean``/``std`` of the clipped samples. ``std`` is at
        least 1e-6 so normalisation never divides by zero.
    """
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"need the same non-zero number of images and labels, got {len(images)} and {len(labels)}")
    rng = np.random.default_rng(seed)
    return intensity_from_samples([intensity_samples(img, lab, rng, dilation=dilation)
                                   for img, lab in zip(images, labels)])


def intensity_samples(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *,
                      dilation: int = FOREGROUND_DILATION) -> np.ndarray:
    """One case's share of :func:`intensity_stats`: at most ``SAMPLES_PER_CASE`` HU values (float64)
    from the dilated vessel mask (all voxels when it is empty), drawn with ``rng``."""
    from scipy import ndimage

    img, lab = np.asarray(image), np.asarray(label)
    if img.shape != lab.shape:
        raise ValueError(f"label shape {lab.shape} does not match image shape {img.shape}")
    mask = lab > 0
    if mask.any():
        if dilation > 0:
            mask = ndimage.binary_dilation(mask, structure=np.ones((3, 3, 3), bool), iterations=dilation)
        vals = img[mask]
    else:
        vals = img.ravel()
    if vals.size > SAMPLES_PER_CASE:
        vals = vals[rng.choice(vals.size, SAMPLES_PER_CASE, replace=False)]
    return vals.astype(np.float64)


def intensity_from_samples(samples: Sequence[np.ndarray]) -> dict:
    """The clip window and standardisation constants from the cases' samples (see :func:`intensity_stats`)."""
    allv = np.concatenate(samples)
    lo, hi = np.percentile(allv, [0.5, 99.5])
    clipped = np.clip(allv, lo, hi)
    return {"clip": [float(lo), float(hi)], "mean": float(clipped.mean()), "std": float(max(clipped.std(), 1e-6))}


def normalise(array: np.ndarray, intensity: dict, *, out: np.ndarray | None = None) -> np.ndarray:
    """Clip to ``intensity["clip"]`` then standardise: ``(x - mean) / std``.

    Parameters
    ----------
    array : ndarray, HU
    intensity : dict
        As returned by :func:`intensity_stats`.
    out : float32 ndarray, optional
        Write the result here (may be ``array`` itself: in place, no volume-sized copy).

    Returns
    -------
    ndarray of float32, same shape
    """
    try:
        lo, hi = (float(v) for v in intensity["clip"])
        mean, std = float(intensity["mean"]), float(intensity["std"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"intensity settings must have clip=[lo, hi], mean, std; "
                         f"found {intensity!r} ({exc})") from None
    out = np.clip(np.asarray(array, dtype=np.float32), lo, hi, out=out)
    out -= np.float32(mean)
    out /= np.float32(std)
    return out


def target_spacing(spacings: Sequence[Sequence[float]]) -> tuple[float, float, float]:
    """Median spacing per array axis ``(sz, sy, sx)``, mm, of the training cases."""
    arr = np.asarray(spacings, dtype=float).reshape(-1, 3)
    if arr.shape[0] == 0:
        raise ValueError("need at least one spacing")
    med = np.median(arr, axis=0)
    return tuple(float(round(v, 6)) for v in med)  # type: ignore[return-value]


def to_model_grid(vol: Volume, spacing: Sequence[float]) -> Volume:
    """Resample ``vol`` to the model ``spacing`` (array order, mm); labels use nearest neighbour.

    Returns ``vol`` itself when it is already at that spacing (within 1e-4 relative).
    """
    return resample(vol, tuple(float(s) for s in spacing))


class ModelGridPatches:
    """The normalised image on the model grid, resampled only where a patch is read.

    Equal, patch by patch, to ``normalise(to_model_grid(vol, spacing).array, intensity)``
    (same grid, same linear interpolation, same value outside the scan), but the whole
    model-grid volume is never built: crop models read a few dozen patches from a grid of
    tens of millions of voxels, so this saves the whole-volume resampling, its memory and
    most of the time of preprocessing.

    Parameters
    ----------
    vol : Volume
        HU image (any spacing; the direction is kept).
    spacing : (3,) float, mm
        Model spacing, array order.
    intensity : dict
        Normalisation (:func:`normalise`).

    Attributes
    ----------
    grid : Volume
        The model grid's geometry (a zero-memory view, as :func:`coroseg.io.volume.resampled_grid`).
    shape : tuple of 3 int
        ``grid.shape``.
    """

    def __init__(self, vol: Volume, spacing: Sequence[float], intensity: dict):
        from coroseg.io.resample import RegionResampler, resampled_grid

        self.intensity = intensity
        self._same = bool(np.allclose(tuple(float(s) for s in spacing), vol.spacing, rtol=1e-4))
        self.grid = vol if self._same else resampled_grid(vol, spacing)
        self.shape = tuple(self.grid.shape)
        self._vol = vol
        self._resampler = None if self._same else RegionResampler(vol, self.grid)

    def region(self, box: tuple[slice, ...]) -> np.ndarray:
        """``normalise(to_model_grid(vol).array[box])``, float32, computed for ``box`` only."""
        if self._same:
            return normalise(self._vol.array[box], self.intensity)
        arr = self._resampler.region(box)
        return normalise(arr, self.intensity, out=arr if arr.dtype == np.float32 else None)


__all__ = ["intensity_stats", "intensity_samples", "intensity_from_samples", "normalise", "target_spacing",
           "to_model_grid", "ModelGridPatches"]
