"""Anti-aliased painting of signed-distance shapes onto a voxel grid.

A :class:`Canvas` holds an HU image and a structure-id map on an axis-aligned LPS grid
(identity direction). Shapes are painted back to front ("painter's algorithm"): each shape
gives a signed distance ``d`` (mm, negative inside) per voxel, turned into a coverage
``alpha = clip(0.5 - d / w, 0, 1)`` with ``w`` the voxel size — the fraction of the voxel
inside the surface for a planar boundary, i.e. partial volume — and the voxel becomes
``(1 - alpha) * old + alpha * value``. Thin tubes given as dense centerline points are
rasterised only in a band of blocks around them, with nearest-point distances from a k-d tree.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree


class Canvas:
    """HU image ``img`` (Z, Y, X) float32 and structure ids ``sid`` (Z, Y, X) uint8.

    Parameters
    ----------
    shape : tuple of 3 int
    spacing : tuple of 3 float, mm, array order ``(sz, sy, sx)``
    origin : tuple of 3 float, mm, LPS ``(x, y, z)`` of voxel ``[0, 0, 0]``
    fill : float, HU
    """

    def __init__(self, shape, spacing, origin, fill: float = -1000.0):
        self.shape = tuple(int(s) for s in shape)
        self.spacing = np.asarray(spacing, dtype=float)
        self.origin = np.asarray(origin, dtype=float)
        self.img = np.full(self.shape, fill, dtype=np.float32)
        self.sid = np.zeros(self.shape, dtype=np.uint8)
        self.axes = [self.origin[2 - a] + np.arange(self.shape[a]) * self.spacing[a] for a in range(3)]  # z, y, x
        self.edge = float(np.mean(self.spacing))

    # ---- regions -----------------------------------------------------------------------------
    def region(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Array slices covering the LPS box ``lo..hi`` (x, y, z), or ``None`` when outside."""
        sl = []
        for a in range(3):
            c = 2 - a
            i0 = int(np.floor((lo[c] - self.origin[c]) / self.spacing[a]))
            i1 = int(np.ceil((hi[c] - self.origin[c]) / self.spacing[a])) + 1
            i0, i1 = max(i0, 0), min(i1, self.shape[a])
            if i1 <= i0:
                return None
            sl.append(slice(i0, i1))
        return tuple(sl)  # type: ignore[return-value]

    def coords(self, sl) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable world coordinates ``(X, Y, Z)`` (float32) of a region."""
        z = self.axes[0][sl[0]].astype(np.float32)[:, None, None]
        y = self.axes[1][sl[1]].astype(np.float32)[None, :, None]
        x = self.axes[2][sl[2]].astype(np.float32)[None, None, :]
        return x, y, z

    def local(self, sl, origin, axes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coordinates ``(u, a, r)`` of a region in a rotated frame, ``q = (p - origin) @ axes``."""
        x, y, z = self.coords(sl)
        o = np.asarray(origin, dtype=np.float32)
        m = np.asarray(axes, dtype=np.float32)
        x, y, z = x - o[0], y - o[1], z - o[2]
        return tuple(x * m[0, c] + y * m[1, c] + z * m[2, c] for c in range(3))  # type: ignore[return-value]

    # ---- painting ----------------------------------------------------------------------------
    def paint(self, sl, sdf: np.ndarray, value, sid: int, *, width: float | None = None,
              where: np.ndarray | None = None) -> None:
        """Blend ``value`` (scalar or array broadcastable to the region) where ``sdf < 0``."""
        if sl is None:
            return
        w = self.edge if width is None else width
        a = np.clip(0.5 - sdf / np.float32(w), 0.0, 1.0).astype(np.float32)
        if where is not None:
            a *= where
        reg = self.img[sl]
        reg += a * (np.asarray(value, dtype=np.float32) - reg)
        if sid:
            self.sid[sl][np.broadcast_to(a > 0.5, reg.shape)] = sid

    # ---- tubes from dense points ---------------------------------------------------------------
    def band(self, points: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
        """Voxels within (at least) ``reach`` mm of ``points`` (N, 3) LPS.

        Returns ``(flat indices (M,), world coordinates (M, 3))``, each voxel once.
        """
        sp = self.spacing
        shape = np.array(self.shape)
        idx = (points[:, ::-1] - self.origin[::-1]) / sp  # (k, j, i) fractional
        # blocks of about reach/3: mark the blocks holding points, dilate by three blocks
        m = 3
        b = np.maximum(1, np.ceil(reach / sp / m)).astype(int)
        nb = -(-shape // b)
        blk = np.floor(idx / b).astype(int)
        ok = np.all((blk >= -m) & (blk < nb + m), axis=1)
        occ = np.zeros(tuple(nb), bool)
        blk = np.clip(blk[ok], 0, nb - 1)
        occ[tuple(blk.T)] = True
        occ = ndimage.maximum_filter(occ.view(np.uint8), size=2 * m + 1, mode="constant") > 0  # separable
        blocks = np.flatnonzero(occ)
        start = np.stack(np.unravel_index(blocks, nb), axis=1) * b
        off = np.indices(b).reshape(3, -1).T
        vox = (start[:, None, :] + off[None]).reshape(-1, 3)
        vox = vox[np.all(vox < shape, axis=1)]
        flat = np.ravel_multi_index(vox.T, self.shape)
        world = self.origin + vox[:, ::-1] * sp[::-1]
        return flat, world

    def tube_distance(self, points: np.ndarray, reach: float):
        """Nearest centerline point for voxels in the band: ``(flat, world, nearest index, dist)``."""
        flat, world = self.band(points, reach)
        if flat.size == 0:
            return flat, world, np.zeros(0, int), np.zeros(0)
        d, i = cKDTree(points).query(world, distance_upper_bound=reach, workers=2)
        ok = np.isfinite(d)
        return flat[ok], world[ok], i[ok], d[ok]

    def paint_flat(self, flat: np.ndarray, sdf: np.ndarray, value, sid: int, *, width: float | None = None,
                   where: np.ndarray | None = None) -> np.ndarray:
        """Like :meth:`paint` on scattered voxels ``flat``; returns the coverage ``alpha``."""
        w = self.edge if width is None else width
        a = np.clip(0.5 - sdf / w, 0.0, 1.0).astype(np.float32)
        if where is not None:
            a *= where
        img = self.img.reshape(-1)
        old = img[flat]
        img[flat] = old + a * (np.asarray(value, dtype=np.float32) - old)
        if sid:
            self.sid.reshape(-1)[flat[a > 0.5]] = sid
        return a


# ---- signed distances ---------------------------------------------------------------------------
def segment_distance(x, y, z, p0, p1) -> np.ndarray:
    """Distance (mm) from broadcast points to the segment ``p0 - p1`` (LPS), and the fraction along."""
    p0 = np.asarray(p0, dtype=np.float32)
    d = np.asarray(p1, dtype=np.float32) - p0
    dd = float(d @ d) or 1e-9
    px, py, pz = x - p0[0], y - p0[1], z - p0[2]
    t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / np.float32(dd), 0, 1)
    return np.sqrt((px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 + (pz - t * d[2]) ** 2), t


def polyline_tube_sdf(x, y, z, pts, radii) -> np.ndarray:
    """Signed distance to a tube along a few-point polyline with per-point radii (cone pieces)."""
    out = None
    for a in range(len(pts) - 1):
        d, t = segment_distance(x, y, z, pts[a], pts[a + 1])
        s = d - (radii[a] + t * (radii[a + 1] - radii[a]))
        out = s if out is None else np.minimum(out, s)
    return out


def polyline_box(pts, radii, margin: float) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(pts, dtype=float)
    r = float(np.max(radii)) + margin
    return pts.min(axis=0) - r, pts.max(axis=0) + r
