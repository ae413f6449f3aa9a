"""Small synthetic vessel masks with known centerlines (tests only)."""

from __future__ import annotations

import numpy as np

from coroseg.io.volume import Volume


def _dist_to_segment(grid: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance (mm) from every voxel (grid (..., 3) mm) to the segment a-b (mm)."""
    ab = b - a
    t = np.clip(((grid - a) @ ab) / float(ab @ ab), 0.0, 1.0)
    return np.linalg.norm(grid - (a + t[..., None] * ab), axis=-1)


def _mm_grid(shape, spacing) -> np.ndarray:
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return idx * np.asarray(spacing, float)


def tube_mask(shape=(20, 20, 60), spacing=(1.0, 1.0, 1.0), radius_mm=3.0, i0=8, i1=51):
    """A straight tube along the i axis through the volume centre, from i0 to i1 (voxels)."""
    sp = np.asarray(spacing, float)
    c = (np.asarray(shape) - 1) // 2
    a = np.array([c[0], c[1], i0]) * sp
    b = np.array([c[0], c[1], i1]) * sp
    m = _dist_to_segment(_mm_grid(shape, sp), a, b) <= radius_mm
    return Volume(m.astype(np.uint8), tuple(sp), (10.0, -5.0, 2.0), np.eye(3), True), a, b


def y_mask(spacing=(1.0, 1.0, 1.0), extent_mm=(24.0, 64.0, 64.0)):
    """A Y in the plane k = 12 mm: trunk (radius 3 mm) from (12, 8, 32) mm to the fork at
    (12, 32, 32) mm, daughters (radius 2 mm) to (12, 56, 12) and (12, 56, 52) mm (array-axis
    mm, origin 0). Returns the label, the end points (trunk start first) and the fork, in mm."""
    sp = np.asarray(spacing, float)
    shape = tuple(int(np.ceil(e / s)) for e, s in zip(extent_mm, sp))
    g = _mm_grid(shape, sp)
    root, fork = np.array([12, 8, 32.0]), np.array([12, 32, 32.0])
    e1, e2 = np.array([12, 56, 12.0]), np.array([12, 56, 52.0])
    m = _dist_to_segment(g, root, fork) <= 3.0
    m |= _dist_to_segment(g, fork, e1) <= 2.0
    m |= _dist_to_segment(g, fork, e2) <= 2.0
    return Volume(m.astype(np.uint8), tuple(sp), (0.0, 0.0, 0.0), np.eye(3), True), (root, e1, e2), fork


def torus_arc_mask(shape=(16, 64, 64), R=20.0, r=2.5, arc_deg=180.0):
    """Half a torus (major radius R, minor r, mm; 1 mm voxels) in the plane k = 8, centred at
    (8, 32, 32). Centerline length pi * R for arc 180 deg."""
    g = _mm_grid(shape, (1, 1, 1)) - np.array([8.0, 32.0, 32.0])
    rho = np.hypot(g[..., 1], g[..., 2])
    ang = np.degrees(np.arctan2(g[..., 1], g[..., 2]))  # 0..180 for j >= 0
    m = (np.hypot(rho - R, g[..., 0]) <= r) & (ang >= 0) & (ang <= arc_deg)
    return Volume(m.astype(np.uint8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3), True)
