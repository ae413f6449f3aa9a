"""Regular tiling (the grid baseline) and border-safe patch extraction.

Crop convention shared by all of :mod:`coroseg.prior`: a crop of ``size`` centred at ``c``
spans ``[c - size // 2, c - size // 2 + size)`` on each of the last three axes; the parts
outside the array are padded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def tile_starts(n: int, size: int, stride: int) -> np.ndarray:
    """Starts of tiles of ``size`` every ``stride`` covering ``[0, n)``; the last one clamped.

    ``n <= size`` gives the single start 0 (that tile is padded beyond the border).
    """
    if n <= size:
        return np.zeros(1, dtype=np.int64)
    starts = list(range(0, n - size, stride))
    starts.append(n - size)
    return np.array(sorted(set(starts)), dtype=np.int64)


def grid_tiles(
    shape: Sequence[int],
    size: Sequence[int],
    *,
    overlap: float = 0.0,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Centres of a regular tiling of the whole volume (the grid baseline).

    Parameters
    ----------
    shape : tuple of 3 int
        Volume shape ``(Z, Y, X)``.
    size : tuple of 3 int, voxels
        Tile size; ``(1, h, w)`` tiles every axial slice (2D models).
    overlap : float in [0, 1)
        Fraction of the tile shared with its neighbour: stride ``max(1, round(size * (1 -
        overlap)))``. The last tile along each axis is clamped to end at the border.
    mask : (Z, Y, X) ndarray, optional
        When given, keep only tiles holding at least one nonzero voxel (training mode).

    Returns
    -------
    (M, 3) ndarray of int64
        Tile centres ``(k, j, i)`` in C order (k slowest).

    Examples
    --------
    >>> grid_tiles((10, 10, 10), (5, 5, 5)).shape
    (8, 3)
    """
    shp = np.asarray(shape, dtype=np.int64).reshape(-1)
    sz = np.asarray(size, dtype=np.int64).reshape(-1)
    if shp.shape != (3,) or sz.shape != (3,) or (sz < 1).any() or (shp < 1).any():
        raise ValueError(f"shape and size must be 3 positive ints, not {tuple(shape)} and {tuple(size)}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), not {overlap}")
    axes = []
    for n, s in zip(shp, sz):
        stride = max(1, int(round(s * (1.0 - overlap))))
        axes.append(tile_starts(int(n), int(s), stride))
    starts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != tuple(shp):
            raise ValueError(f"mask shape {m.shape} does not match shape {tuple(shp)}")
        keep = _tiles_with_any(m != 0, starts, sz)
        starts = starts[keep]
    return (starts + sz // 2).astype(np.int64)


def _tiles_with_any(m: np.ndarray, starts: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Which tiles hold a nonzero voxel, via a 3D summed-area table (O(volume + tiles))."""
    sat = np.zeros(tuple(np.array(m.shape) + 1), dtype=np.int64)
    sat[1:, 1:, 1:] = m.astype(np.int64).cumsum(0).cumsum(1).cumsum(2)
    lo = starts
    hi = np.minimum(starts + size, np.array(m.shape))
    total = np.zeros(len(starts), dtype=np.int64)
    for bits in range(8):
        sel = [(hi if bits >> a & 1 else lo)[:, a] for a in range(3)]
        sign = (-1) ** (3 - sum(bits >> a & 1 for a in range(3)))
        total += sign * sat[sel[0], sel[1], sel[2]]
    return total > 0


def crop_slices(centre: Sequence[int], size: Sequence[int],
                shape: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Where a crop meets the array: ``(src, dst)`` slices for the last ``len(size)`` axes.

    ``patch[dst] = array[src]`` copies the part of the crop inside an array of ``shape``;
    the rest of the patch is padding. Raises ``ValueError`` when the crop misses the array.
    """
    c = np.asarray(centre, dtype=np.int64).reshape(-1)
    s = np.asarray(size, dtype=np.int64).reshape(-1)
    shp = np.asarray(shape, dtype=np.int64).reshape(-1)[-len(s):]
    if c.shape != s.shape:
        raise ValueError(f"centre {tuple(c)} and size {tuple(s)} must have the same length")
    lo = c - s // 2
    hi = lo + s
    a_lo, a_hi = np.maximum(lo, 0), np.minimum(hi, shp)
    if (a_hi <= a_lo).any():
        raise ValueError(f"crop at centre {tuple(c.tolist())} size {tuple(s.tolist())} "
                         f"lies outside shape {tuple(shp.tolist())}")
    src = tuple(slice(int(a), int(b)) for a, b in zip(a_lo, a_hi))
    dst = tuple(slice(int(a - start), int(b - start)) for a, b, start in zip(a_lo, a_hi, lo))
    return src, dst


def extract_patch(array: np.ndarray, centre: Sequence[int], size: Sequence[int], *, pad_value: float = 0) -> np.ndarray:
    """Copy the crop of ``size`` centred at ``centre`` from the last 3 axes of ``array``.

    Parameters
    ----------
    array : (..., Z, Y, X) ndarray
        Leading axes (channels) are kept whole.
    centre : tuple of 3 int
    size : tuple of 3 int
    pad_value : float
        Value of the voxels outside the array.

    Returns
    -------
    (..., size[0], size[1], size[2]) ndarray, same dtype as ``array`` (a copy).
    """
    arr = np.asarray(array)
    nsp = len(size)
    if arr.ndim < nsp:
        raise ValueError(f"array must have at least {nsp} axes, found shape {arr.shape}")
    src, dst = crop_slices(centre, size, arr.shape[-nsp:])
    lead = arr.shape[:-nsp]
    out = np.full(lead + tuple(int(v) for v in size), pad_value, dtype=arr.dtype)
    ell = (Ellipsis,)
    out[ell + dst] = arr[ell + src]
    return out


def paste_patch(out: np.ndarray, patch: np.ndarray, centre: Sequence[int], *, add: bool = False) -> None:
    """Write (or add) ``patch`` (..., sz, sy, sx) into ``out`` (..., Z, Y, X) at ``centre``, in place.

    The inverse of :func:`extract_patch`; padding parts are ignored.
    """
    nsp = 3
    size = patch.shape[-nsp:]
    src, dst = crop_slices(centre, size, out.shape[-nsp:])
    ell = (Ellipsis,)
    if add:
        out[ell + src] += patch[ell + dst]
    else:
        out[ell + src] = patch[ell + dst]


__all__ = ["grid_tiles", "tile_starts", "crop_slices", "extract_patch", "paste_patch"]
