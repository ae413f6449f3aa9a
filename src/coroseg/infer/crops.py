"""Crop-model inference: run a network on patches centred on centerline crop centres.

Overlapping crops are stitched with Gaussian weights (the same blending as the sliding
window): each crop's ``w * p`` and ``w`` are kept, more crops can be added later (the
iterative stage adds crops where vessels leave the covered region), and the result over any
box is ``sum(w * p) / sum(w)`` where covered, 0 elsewhere. Nothing volume-sized is built:
inputs are read crop by crop from a patch source and outputs are blended per box.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


class CropAccumulator:
    """Gaussian-weighted crop predictions on a ``(Z, Y, X)`` grid, blended on demand.

    Each crop's ``w * p`` and ``w`` (its part inside the grid) are kept as they are; the
    blended probability is assembled only over the box asked for (the whole grid only when no
    box is given): a crop model's few dozen crops cover a small part of a scan, and filling
    volume-sized accumulators costs more than the network on a CPU.
    """

    def __init__(self, shape: Sequence[int]):
        self.shape = tuple(int(s) for s in shape)
        self._crops: list[tuple[tuple[slice, ...], np.ndarray, np.ndarray]] = []

    @classmethod
    def empty(cls, shape: Sequence[int]) -> CropAccumulator:
        return cls(shape)

    def __len__(self) -> int:
        return len(self._crops)

    def add(self, start: np.ndarray, prob: np.ndarray, weight: np.ndarray) -> None:
        """Add one crop starting at ``start`` (may reach past the grid) with its Gaussian ``weight``."""
        vol_sl, pat_sl = _window(np.asarray(start), np.asarray(prob.shape), self.shape)
        w = weight[pat_sl]
        self._crops.append((vol_sl, (w * prob[pat_sl]).astype(np.float32), np.ascontiguousarray(w, np.float32)))

    def box(self, margin: Sequence[int] | int = 0) -> tuple[slice, ...] | None:
        """Bounding box of every crop (inside the grid), grown by ``margin``; ``None`` when empty."""
        if not self._crops:
            return None
        lo = np.min([[s.start for s in c[0]] for c in self._crops], axis=0)
        hi = np.max([[s.stop for s in c[0]] for c in self._crops], axis=0)
        m = np.broadcast_to(np.asarray(margin, dtype=np.int64), (3,))
        dims = np.asarray(self.shape)
        return tuple(slice(int(a), int(b)) for a, b in zip(np.clip(lo - m, 0, dims), np.clip(hi + m, 0, dims)))

    def _sums(self, box: tuple[slice, ...] | None) -> tuple[np.ndarray, np.ndarray]:
        box = tuple(slice(0, n) for n in self.shape) if box is None else \
            tuple(slice(*b.indices(n)[:2]) for b, n in zip(box, self.shape))
        shape = tuple(max(0, b.stop - b.start) for b in box)
        value, weight = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        for vol_sl, wp, w in self._crops:
            a = [max(v.start, b.start) for v, b in zip(vol_sl, box)]
            z = [min(v.stop, b.stop) for v, b in zip(vol_sl, box)]
            if any(x >= y for x, y in zip(a, z)):
                continue
            dst = tuple(slice(x - b.start, y - b.start) for x, y, b in zip(a, z, box))
            src = tuple(slice(x - v.start, y - v.start) for x, y, v in zip(a, z, vol_sl))
            value[dst] += wp[src]
            weight[dst] += w[src]
        return value, weight

    def blend(self, box: tuple[slice, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Blended probability (float32, 0 where no crop reached) and coverage (bool), over the grid or ``box``."""
        value, weight = self._sums(box)
        covered = weight > 0
        # uncovered voxels keep their 0 without being written: untouched pages stay unallocated
        np.divide(value, weight, out=value, where=covered)
        return value, covered

    def probability(self, box: tuple[slice, ...] | None = None) -> np.ndarray:
        """Float32 blended probability where covered, 0 elsewhere: over the whole grid, or ``box``."""
        return self.blend(box)[0]

    def coverage(self, box: tuple[slice, ...] | None = None) -> np.ndarray:
        """Bool: voxels inside at least one crop, over the whole grid or ``box``."""
        return self._sums(box)[1] > 0

    @property
    def covered(self) -> np.ndarray:
        return self.coverage()


class ArrayPatches:
    """Patches of an in-memory ``(C, Z, Y, X)`` array (the plain case of a patch source)."""

    def __init__(self, array: np.ndarray):
        arr = np.asarray(array, dtype=np.float32)
        self.array = arr[None] if arr.ndim == 3 else arr
        self.shape = tuple(self.array.shape[1:])

    def region(self, box: tuple[slice, ...]) -> np.ndarray:
        return self.array[(slice(None), *box)]


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
    extra_channels: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    extra_cval: Sequence[float] | float = 0.0,
) -> CropAccumulator:
    """Run ``predictor`` on crops of ``channels`` and blend them into an accumulator.

    Parameters
    ----------
    channels : (C, Z, Y, X) ndarray of float, or a patch source
        Network input (normalised image, plus the attention channel for attention models),
        or any object with ``shape`` (Z, Y, X) and ``region(box) -> (C, ...)`` array (e.g.
        :class:`coroseg.data.preprocess.ModelGridPatches`, which resamples only the crops).
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
    extra_channels : callable, optional
        ``(start, patch) -> (K, pz, py, px)``: input channels computed per crop (the attention
        channel) from its start index and its ``channels`` patch, appended after them; only
        the part inside the volume is used, the rest is ``extra_cval``. Building them per
        crop instead of as whole-volume arrays saves a volume-sized copy per channel.

    Returns
    -------
    CropAccumulator
    """
    source = channels if hasattr(channels, "region") else ArrayPatches(channels)
    shape = tuple(source.shape)
    size = np.asarray(patch_size, dtype=np.int64)
    acc = accumulator if accumulator is not None else CropAccumulator.empty(shape)
    if acc.shape != shape:
        raise ValueError(f"accumulator shape {acc.shape} does not match volume {shape}")
    starts = np.asarray(starts, dtype=np.int64).reshape(-1, 3)
    if len(starts) == 0:
        return acc
    weight = gaussian_weight(size)
    is2d = size[0] == 1
    device = torch.device(device)
    with torch.inference_mode(), autocast_context(device):
        for b0 in range(0, len(starts), max(1, batch_size)):
            batch_starts = starts[b0:b0 + max(1, batch_size)]
            patches = np.stack([_extract(source, s, size, cval) for s in batch_starts])
            if extra_channels is not None:
                patches = np.stack([_with_extra(p, s, size, shape, extra_channels, extra_cval)
                                    for p, s in zip(patches, batch_starts)])
            single = len(patches) == 1 and batch_size > 1
            if single:  # a lone crop runs ~4x slower per crop than a pair on CPU (measured): pad with a copy
                patches = np.concatenate([patches, patches])
            x = torch.from_numpy(patches)
            if is2d:
                x = x[:, :, 0]
            y = predictor(x.to(device)).float().cpu().numpy()[: len(batch_starts)]
            if is2d:
                y = y[:, :, None]
            for s, p in zip(batch_starts, y[:, 0]):
                acc.add(s, p, weight)
    return acc


def _window(start: np.ndarray, size: np.ndarray, shape: Sequence[int]):
    """Slices into the volume and into the patch for the part of a crop inside the volume."""
    vol_sl, pat_sl = [], []
    for s, n, d in zip(start, size, shape):
        a, b = max(int(s), 0), min(int(s + n), int(d))
        vol_sl.append(slice(a, b))
        pat_sl.append(slice(a - int(s), b - int(s)))
    return tuple(vol_sl), tuple(pat_sl)


def _extract(source, start: np.ndarray, size: np.ndarray, cval: Sequence[float] | float) -> np.ndarray:
    vol_sl, pat_sl = _window(start, size, source.shape)
    inside = np.asarray(source.region(vol_sl), dtype=np.float32)
    inside = inside[None] if inside.ndim == 3 else inside
    out = np.empty((inside.shape[0], *size), np.float32)
    out[:] = np.broadcast_to(np.asarray(cval, np.float32), (inside.shape[0],))[:, None, None, None]
    out[(slice(None), *pat_sl)] = inside
    return out


def _with_extra(patch: np.ndarray, start: np.ndarray, size: np.ndarray, shape: Sequence[int],
                extra: Callable[[np.ndarray, np.ndarray], np.ndarray], cval: Sequence[float] | float) -> np.ndarray:
    more = np.asarray(extra(start, patch), dtype=np.float32).reshape(-1, *size)
    vol_sl, pat_sl = _window(start, size, shape)
    out = np.empty_like(more)
    out[:] = np.broadcast_to(np.asarray(cval, np.float32), (len(more),))[:, None, None, None]
    out[(slice(None), *pat_sl)] = more[(slice(None), *pat_sl)]
    return np.concatenate([patch, out], axis=0)


__all__ = ["gaussian_weight", "crop_boxes", "predict_crops", "CropAccumulator", "ArrayPatches"]
