"""Crop-model inference: run a network on patches centred on centerline crop centres.

Overlapping crops are stitched with Gaussian weights (the same blending as the sliding
window), accumulated as ``sum(w * p)`` and ``sum(w)`` so that more crops can be added later
(the iterative stage adds crops where vessels leave the covered region) and the result is
``sum(w * p) / sum(w)`` where covered, 0 elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from coroseg.infer.windows import Predictor, autocast_context


def gaussian_weight(patch_size: Sequence[int], *, sigma_scale: float = 0.125,
                    floor: float = 1e-3) -> np.ndarray:
    """Separable Gaussian importance map ``(pz, py, px)`` peaking at 1 in the centre.

    ``sigma = sigma_scale * size`` per axis (MONAI/nnU-Net convention); values are floored at
    ``floor`` so that a voxel covered only by a crop's rim still gets that crop's output.
    Axes of size 1 (2D crops) get weight 1.
    """
    w = np.ones([int(p) for p in patch_size], np.float64)
    for ax, n in enumerate(w.shape):
        if n <= 1:
            continue
        x = np.arange(n) - (n - 1) / 2.0
        g = np.exp(-0.5 * (x / (sigma_scale * n)) ** 2)
        shape = [1, 1, 1]
        shape[ax] = n
        w = w * g.reshape(shape)
    w /= w.max()
    return np.maximum(w, floor).astype(np.float32)


def crop_boxes(centres: np.ndarray, shape: Sequence[int], patch_size: Sequence[int]) -> np.ndarray:
    """Start indices ``(M, 3)`` of crops of ``patch_size`` centred on ``centres``.

    A crop starts at ``centre - size // 2`` and is shifted to lie inside the volume when the
    volume is at least as large as the crop along that axis (otherwise it starts at 0 and the
    rest is padding).
    """
    c = np.round(np.asarray(centres, dtype=float).reshape(-1, 3)).astype(np.int64)
    size = np.asarray(patch_size, dtype=np.int64)
    dims = np.asarray(shape, dtype=np.int64)
    start = c - size // 2
    hi = np.maximum(dims - size, 0)
    return np.clip(start, 0, hi)


@dataclass
class CropAccumulator:
    """Running Gaussian-weighted sums of crop predictions on a ``(Z, Y, X)`` grid."""

    value: np.ndarray
    weight: np.ndarray
    covered: np.ndarray  # bool, voxels inside at least one crop

    @classmethod
    def empty(cls, shape: Sequence[int]) -> CropAccumulator:
        shape = tuple(int(s) for s in shape)
        return cls(np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(shape, bool))

    def probability(self) -> np.ndarray:
        """``(Z, Y, X)`` float32: blended probability where covered, 0 elsewhere."""
        out = np.zeros_like(self.value)
        np.divide(self.value, self.weight, out=out, where=self.weight > 0)
        return out


def predict_crops(
    channels: np.ndarray,
    starts: np.ndarray,
    predictor: Predictor,
    *,
    patch_size: Sequence[int],
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    cval: Sequence[float] | float = 0.0,
    accumulator: CropAccumulator | None = None,
) -> CropAccumulator:
    """Run ``predictor`` on crops of ``channels`` and blend them into an accumulator.

    Parameters
    ----------
    channels : (C, Z, Y, X) ndarray of float
        Network input (normalised image, plus the attention channel for attention models).
    starts : (M, 3) ndarray of int
        Crop start indices (see :func:`crop_boxes`).
    predictor : callable
        ``(N, C, pz, py, px) -> (N, 1, pz, py, px)`` probabilities; for 2D crops
        (``pz == 1``) it receives ``(N, C, py, px)``.
    patch_size : sequence of 3 int
        ``(pz, py, px)`` voxels.
    batch_size : int
        Crops per forward pass.
    device : torch device
    cval : float or sequence of C float
        Padding value per channel where a crop extends past the volume.
    accumulator : CropAccumulator, optional
        Add to this one (in place) instead of a new one.

    Returns
    -------
    CropAccumulator
    """
    arr = np.asarray(channels, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    c = arr.shape[0]
    shape = arr.shape[1:]
    size = np.asarray(patch_size, dtype=np.int64)
    acc = accumulator if accumulator is not None else CropAccumulator.empty(shape)
    if acc.value.shape != shape:
        raise ValueError(f"accumulator shape {acc.value.shape} does not match volume {shape}")
    starts = np.asarray(starts, dtype=np.int64).reshape(-1, 3)
    if len(starts) == 0:
        return acc
    cvals = np.broadcast_to(np.asarray(cval, dtype=np.float32), (c,))
    weight = gaussian_weight(size)
    is2d = size[0] == 1
    device = torch.device(device)
    with torch.inference_mode(), autocast_context(device):
        for b0 in range(0, len(starts), max(1, batch_size)):
            batch_starts = starts[b0:b0 + max(1, batch_size)]
            patches = np.stack([_extract(arr, s, size, cvals) for s in batch_starts])
            x = torch.from_numpy(patches)
            if is2d:
                x = x[:, :, 0]
            y = predictor(x.to(device)).float().cpu().numpy()
            if is2d:
                y = y[:, :, None]
            for s, p in zip(batch_starts, y[:, 0]):
                _add(acc, s, size, p, weight)
    return acc


def _window(start: np.ndarray, size: np.ndarray, shape: Sequence[int]):
    """Slices into the volume and into the patch for the part of a crop inside the volume."""
    vol_sl, pat_sl = [], []
    for s, n, d in zip(start, size, shape):
        a, b = max(int(s), 0), min(int(s + n), int(d))
        vol_sl.append(slice(a, b))
        pat_sl.append(slice(a - int(s), b - int(s)))
    return tuple(vol_sl), tuple(pat_sl)


def _extract(arr: np.ndarray, start: np.ndarray, size: np.ndarray, cvals: np.ndarray) -> np.ndarray:
    out = np.empty((arr.shape[0], *size), np.float32)
    out[:] = cvals[:, None, None, None]
    vol_sl, pat_sl = _window(start, size, arr.shape[1:])
    out[(slice(None), *pat_sl)] = arr[(slice(None), *vol_sl)]
    return out


def _add(acc: CropAccumulator, start: np.ndarray, size: np.ndarray, prob: np.ndarray,
         weight: np.ndarray) -> None:
    vol_sl, pat_sl = _window(start, size, acc.value.shape)
    w = weight[pat_sl]
    acc.value[vol_sl] += w * prob[pat_sl]
    acc.weight[vol_sl] += w
    acc.covered[vol_sl] = True


__all__ = ["gaussian_weight", "crop_boxes", "predict_crops", "CropAccumulator"]
