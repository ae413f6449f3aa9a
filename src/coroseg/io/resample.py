"""Resampling and orientation of a :class:`~coroseg.io.volume.Volume` (SimpleITK underneath).

Every change of grid in coroseg goes through here: to a spacing (:func:`resample`), onto another
volume's grid (:func:`resample_to_grid`), crop by crop (:class:`RegionResampler`, what
``ModelGridPatches`` reads a crop model's patches through), to LPS axes (:func:`orient_lps`),
and the zero-cost views (:func:`resampled_grid`, :func:`sub_grid`). Axis order and world frame
are those of :mod:`coroseg.io.volume`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from coroseg.io.volume import Volume


def resample(vol: Volume, spacing: tuple[float, float, float], *, order: int | None = None) -> Volume:
    """Resample to ``spacing`` (array order, mm), same physical extent, same direction.

    ``order`` 0 = nearest (default for labels), 1 = linear (default for images), 3 = B-spline.
    """
    spacing = tuple(float(s) for s in spacing)
    if np.allclose(spacing, vol.spacing, rtol=1e-4):
        return vol
    ref = resampled_grid(vol, spacing)
    return resample_to_grid(vol, ref, order=order)


def resampled_grid(vol: Volume, spacing: Sequence[float]) -> Volume:
    """The grid :func:`resample` puts ``vol`` on, geometry only (a read-only all-zero view, no memory).

    Same physical extent and direction; the footprint of the first voxel keeps its corner.
    """
    spacing = tuple(float(s) for s in spacing)
    extent = np.array(vol.shape) * np.array(vol.spacing)
    shape = tuple(max(1, int(round(e / s))) for e, s in zip(extent, spacing))
    # keep the physical centre of the first voxel's footprint aligned
    first_corner = np.array(vol.spacing) / 2.0
    new_first = np.array(spacing) / 2.0
    shift_index = (new_first - first_corner) / np.array(vol.spacing)
    origin = vol.index_to_world(shift_index[None])[0]
    return Volume(np.broadcast_to(np.zeros((), np.uint8), shape), spacing, tuple(origin), vol.direction.copy())


def resample_to_grid(vol: Volume, reference: Volume, *, shape: tuple[int, int, int] | None = None,
                     order: int | None = None, default: float | None = None) -> Volume:
    """Resample ``vol`` onto ``reference``'s grid (or its spacing/origin/direction with ``shape``)."""
    if order is None:
        order = 0 if vol.is_label else 1
    interp = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}[order]
    shape = shape or reference.shape
    rs = sitk.ResampleImageFilter()
    rs.SetSize([int(s) for s in shape[::-1]])
    rs.SetOutputSpacing(tuple(float(s) for s in reference.spacing[::-1]))
    rs.SetOutputOrigin(tuple(float(o) for o in reference.origin))
    rs.SetOutputDirection(tuple(float(d) for d in reference.direction.ravel()))
    rs.SetInterpolator(interp)
    if default is None:
        default = 0.0 if vol.is_label else float(np.min(vol.array)) if vol.array.size else 0.0
    rs.SetDefaultPixelValue(float(default))
    if order != 0 and vol.array.dtype.kind in "iu":
        # interpolate integer HU in floating point; the output type avoids a float copy of the input
        rs.SetOutputPixelType(sitk.sitkFloat32)
    out = Volume.from_sitk(rs.Execute(vol.to_sitk()), is_label=vol.is_label)
    return out


def sub_grid(vol: Volume, box: tuple[slice, ...]) -> Volume:
    """``vol[box]`` as a Volume: a view of the array, same spacing and direction, shifted origin."""
    box = tuple(slice(*b.indices(n)[:2]) for b, n in zip(box, vol.shape))
    start = np.array([b.start for b in box], float)
    origin = vol.index_to_world(start[None])[0]
    return Volume(vol.array[box], vol.spacing, tuple(origin), vol.direction.copy(), vol.is_label)


def orient_lps(vol: Volume) -> Volume:
    """Reorient to the closest axis-aligned LPS frame (flip/permute only, no interpolation)."""
    if np.array_equal(vol.direction, np.eye(3)):
        return vol  # already LPS: nothing to flip or permute
    img = sitk.DICOMOrient(vol.to_sitk(), "LPS")
    return Volume.from_sitk(img, is_label=vol.is_label)


class RegionResampler:
    """``resample_to_grid(vol, grid)`` read box by box: the whole resampled volume is never built.

    ``region(box)`` equals ``resample_to_grid(vol, grid, order=1).array[box]`` as float32 (same
    linear interpolation, same value outside the scan: its minimum). The source is converted to
    SimpleITK once; integer HU stays integer there (half the memory of float32).
    """

    def __init__(self, vol: Volume, grid: Volume):
        self.grid = grid
        self._src = vol.to_sitk()
        self._default = float(np.min(vol.array)) if vol.array.size else 0.0

    def region(self, box: tuple[slice, ...]) -> np.ndarray:
        start = np.array([b.start for b in box], float)
        shape = [b.stop - b.start for b in box]
        rs = sitk.ResampleImageFilter()
        rs.SetSize([int(n) for n in shape[::-1]])
        rs.SetOutputSpacing(tuple(float(v) for v in self.grid.spacing[::-1]))
        rs.SetOutputOrigin(tuple(float(v) for v in self.grid.index_to_world(start[None])[0]))
        rs.SetOutputDirection(tuple(float(d) for d in self.grid.direction.ravel()))
        rs.SetInterpolator(sitk.sitkLinear)
        rs.SetDefaultPixelValue(self._default)
        rs.SetOutputPixelType(sitk.sitkFloat32)  # interpolate in floating point, as resample_to_grid
        return Volume.from_sitk(rs.Execute(self._src)).array


__all__ = ["resample", "resampled_grid", "resample_to_grid", "sub_grid", "orient_lps", "RegionResampler"]
