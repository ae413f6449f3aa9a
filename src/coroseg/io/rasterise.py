"""Burn a centerline graph into a voxel grid: its points, or tubes of its radii.

Everything is computed in world millimetres through :attr:`Volume.affine`, so anisotropic
spacing and any (orthonormal) direction matrix are handled exactly.
"""

from __future__ import annotations

import numpy as np

from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume

MODES = ("points", "tubes")


def rasterise(graph: CenterlineGraph, reference: Volume, *, mode: str = "points",
              radius_scale: float = 1.0, step_mm: float | None = None,
              include_points: bool = True) -> np.ndarray:
    """Rasterise ``graph`` on the grid of ``reference``.

    Parameters
    ----------
    graph : CenterlineGraph
        Positions LPS mm; ``mode="tubes"`` needs finite radii (mm).
    reference : Volume
        Only its geometry (shape, spacing, origin, direction) is used.
    mode : {"points", "tubes"}
        ``"points"``: every voxel containing a point of the centerline, sampled every
        ``step_mm`` along each edge (default half the smallest spacing, so the voxel path is
        26-connected without gaps). ``"tubes"``: every voxel whose centre lies within
        ``radius * radius_scale`` of the centerline, the radius interpolated linearly along each
        segment (a chain of capsules, so each free end gets a hemispherical cap).
    radius_scale : float
        Multiplies the radii in ``"tubes"`` mode.
    step_mm : float, optional
        Sampling step along the centerline, mm. ``"tubes"``: length of the straight segments a
        branch is resampled into (default the smallest spacing).
    include_points : bool
        ``"tubes"`` only: also set the ``"points"`` voxels, so a tube thinner than a voxel
        stays connected.

    Returns
    -------
    (Z, Y, X) ndarray of uint8
        1 on the centerline / inside the tubes, else 0. Parts outside the grid are dropped.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    out = np.zeros(reference.shape, dtype=np.uint8)
    if len(graph) == 0:
        return out
    spacing = np.asarray(reference.spacing, dtype=float)
    if mode == "points" or include_points:
        step = float(step_mm) if (step_mm and mode == "points") else float(spacing.min()) / 2
        pts, _ = graph.dense_points(step)
        _burn_points(out, reference, pts)
    if mode == "tubes":
        radii = graph.radii()
        if not np.all(np.isfinite(radii)):
            raise ValueError("mode='tubes' needs finite radii at every node")
        step = float(step_mm) if step_mm else float(spacing.min())
        for a, b, ra, rb in _segments(graph, step):
            _burn_capsule(out, reference, a, b, ra * radius_scale, rb * radius_scale)
    return out


def _burn_points(out: np.ndarray, ref: Volume, points: np.ndarray) -> None:
    idx = np.floor(ref.world_to_index(points) + 0.5).astype(np.int64)
    ok = np.all((idx >= 0) & (idx < np.asarray(out.shape)), axis=1)
    idx = idx[ok]
    out[idx[:, 0], idx[:, 1], idx[:, 2]] = 1


def _segments(graph: CenterlineGraph, step: float):
    """Yield ``(a (3,), b (3,), r_a, r_b)`` straight pieces of at most ~``step`` mm."""
    g = graph.graph
    for n in g.nodes:
        if g.degree(n) == 0:
            p = np.asarray(g.nodes[n]["pos"], float)
            r = float(g.nodes[n]["radius"])
            yield p, p, r, r
    for branch in graph.branches():
        pos = np.array([g.nodes[n]["pos"] for n in branch], dtype=float)
        rad = np.array([g.nodes[n]["radius"] for n in branch], dtype=float)
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pos, axis=0), axis=1))])
        n = max(int(np.ceil(s[-1] / step)), 1)
        t = np.linspace(0.0, s[-1], n + 1)
        p = np.stack([np.interp(t, s, pos[:, c]) for c in range(3)], axis=1)
        r = np.interp(t, s, rad)
        for i in range(n):
            yield p[i], p[i + 1], r[i], r[i + 1]


def _burn_capsule(out: np.ndarray, ref: Volume, a: np.ndarray, b: np.ndarray,
                  ra: float, rb: float) -> None:
    rmax = max(ra, rb)
    if rmax < 0:
        return
    aff = ref.affine
    spacing = np.asarray(ref.spacing)
    ends = ref.world_to_index(np.stack([a, b]))
    # a ball of radius r spans +-r/s along each index axis (the axes are orthonormal)
    lo = np.floor(ends.min(0) - rmax / spacing).astype(np.int64)
    hi = np.ceil(ends.max(0) + rmax / spacing).astype(np.int64) + 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, out.shape)
    if np.any(hi <= lo):
        return
    kk, jj, ii = np.meshgrid(*(np.arange(lo[c], hi[c]) for c in range(3)), indexing="ij")
    idx = np.stack([kk.ravel(), jj.ravel(), ii.ravel()], axis=1).astype(float)
    p = idx @ aff[:3, :3].T + aff[:3, 3]
    ab = b - a
    denom = float(ab @ ab)
    t = np.zeros(len(p)) if denom == 0 else np.clip((p - a) @ ab / denom, 0.0, 1.0)
    d2 = np.sum((p - (a + t[:, None] * ab)) ** 2, axis=1)
    r = ra + t * (rb - ra)
    inside = (d2 <= r * r).reshape(kk.shape)
    view = out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    view[inside] = 1
