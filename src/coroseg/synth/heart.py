"""Heart geometry: a local frame, ventricles, atria and the epicardial surface.

Local heart coordinates ``q = (u, a, r)`` in mm: ``u`` along the long axis from the base
(atrioventricular plane, ``u = 0``) towards the apex (``u = L``), ``a`` towards the heart's
anterior side, ``r`` towards its right side. Azimuth ``phi`` about the long axis: 0° anterior,
+90° right, -90° left, ±180° posterior. The ventricles are a union of two ellipsoids (left
ventricle on the axis, right ventricle anterior-right of it), so the anterior and posterior
interventricular grooves appear where the two surfaces meet; the coronary trees run there and
in the atrioventricular groove.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coroseg.synth.params import HeartParams


def _split(q):
    if isinstance(q, tuple):
        return q
    return q[..., 0], q[..., 1], q[..., 2]


def ellipsoid_sdf(q, centre, semi) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipsoid.

    ``q`` is ``(..., 3)`` or a tuple of three broadcastable arrays ``(u, a, r)``. Uses the
    first-order bound ``k0 (k0 - 1) / k1`` (Quilez), exact on spheres.
    """
    k0 = 0.0
    k1 = 0.0
    for x, c, s in zip(_split(q), centre, semi):
        dt = x.dtype if isinstance(x, np.ndarray) else np.float64
        p = (x - dt.type(c)) * dt.type(1.0 / s)
        k0 = k0 + p * p
        p = p * dt.type(1.0 / s)
        k1 = k1 + p * p
    k0 = np.sqrt(k0)
    return k0 * (k0 - 1.0) / np.maximum(np.sqrt(k1), 1e-6)


@dataclass
class HeartFrame:
    """Placement and shape of the heart. ``axes`` columns are ``e_long, e_ant, e_right`` (LPS)."""

    origin: np.ndarray  # (3,) world mm, centre of the base
    axes: np.ndarray  # (3, 3)
    length: float
    lv_r: float
    rv_r: float
    lv_wall: float
    rv_wall: float
    atrium_scale: float

    # ---- coordinates -----------------------------------------------------------------------
    def to_local(self, p: np.ndarray) -> np.ndarray:
        return (np.asarray(p, dtype=float) - self.origin) @ self.axes

    def to_world(self, q: np.ndarray) -> np.ndarray:
        return np.asarray(q, dtype=float) @ self.axes.T + self.origin

    def direction(self, phi_deg) -> np.ndarray:
        """Local unit vectors ``(..., 3)`` at azimuth ``phi`` (degrees), perpendicular to the axis."""
        ph = np.deg2rad(np.asarray(phi_deg, dtype=float))
        return np.stack([np.zeros_like(ph), np.cos(ph), np.sin(ph)], axis=-1)

    # ---- shapes (local coordinates) ----------------------------------------------------------
    @property
    def lv(self):
        return (0.0, 0.0, 0.0), (self.length, self.lv_r, self.lv_r)

    @property
    def lv_cavity(self):
        w = self.lv_wall
        return (0.0, 0.0, 0.0), (self.length - 1.1 * w, self.lv_r - w, self.lv_r - w)

    @property
    def rv(self):
        return ((0.08 * self.length, 0.50 * self.lv_r, 0.62 * self.lv_r),
                (0.78 * self.length, 0.80 * self.rv_r, self.rv_r))

    @property
    def rv_cavity(self):
        c, s = self.rv
        w = self.rv_wall
        return c, (s[0] - w, s[1] - w, s[2] - w)

    @property
    def la(self):
        s = self.atrium_scale
        return ((-0.30 * self.length * s, -0.70 * self.lv_r, -0.20 * self.lv_r),
                (0.26 * self.length * s, 0.50 * self.lv_r * s, 0.72 * self.lv_r * s))

    @property
    def ra(self):
        s = self.atrium_scale
        return ((-0.22 * self.length * s, -0.15 * self.lv_r, 1.15 * self.lv_r),
                (0.30 * self.length * s, 0.55 * self.lv_r * s, 0.50 * self.lv_r * s))

    @property
    def aortic_root(self):
        """Local centre of the aortic sinus (radius from the parameters)."""
        return np.array([-0.16 * self.length, 0.22 * self.lv_r, 0.30 * self.lv_r])

    @property
    def laa(self):
        """Left atrial appendage: a blood-filled pouch on the left, beside the LM and LCx."""
        s = self.atrium_scale
        return ((-0.12 * self.length, 0.05 * self.lv_r, -0.95 * self.lv_r),
                (0.10 * self.length * s, 0.28 * self.lv_r * s, 0.16 * self.lv_r * s))

    @property
    def rvot(self):
        """Local origin of the pulmonary trunk (RV outflow tract)."""
        return np.array([-0.04 * self.length, 0.95 * self.lv_r, 0.10 * self.lv_r])

    def ventricle_sdf(self, q: np.ndarray) -> np.ndarray:
        """Signed distance to the ventricular epicardium (union of LV and RV, base cut)."""
        d = np.minimum(ellipsoid_sdf(q, *self.lv), ellipsoid_sdf(q, *self.rv))
        u = _split(q)[0]
        return np.maximum(d, -(u + u.dtype.type(0.08 * self.length)))

    def atria_sdf(self, q: np.ndarray) -> np.ndarray:
        wall = 2.5
        la_c, la_s = self.la
        ra_c, ra_s = self.ra
        return np.minimum(ellipsoid_sdf(q, la_c, np.add(la_s, wall)), ellipsoid_sdf(q, ra_c, np.add(ra_s, wall)))

    # ---- the surface the coronaries run on ---------------------------------------------------
    def surface(self, u: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ventricular surface points and outward normals (local coords) at ``(u, phi)``.

        Marches outward along the ray from the axis point ``(u, 0, 0)`` and takes the last
        crossing of the surface, refined linearly. Returns ``(points (N, 3), normals (N, 3))``.
        """
        u = np.asarray(u, dtype=float).ravel()
        d = self.direction(np.asarray(phi, dtype=float).ravel())
        t = np.arange(0.0, 2.6 * max(self.lv_r, self.rv_r), 0.5)
        base = np.stack([u, np.zeros_like(u), np.zeros_like(u)], axis=-1)
        pts = base[:, None, :] + t[None, :, None] * d[:, None, :]
        f = self.ventricle_sdf(pts)
        inside = f < 0
        last = np.where(inside.any(axis=1), inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1), 0)
        last = np.minimum(last, len(t) - 2)
        idx = np.arange(len(u))
        f0, f1 = f[idx, last], f[idx, last + 1]
        frac = np.clip(f0 / np.where(np.abs(f0 - f1) > 1e-9, f0 - f1, 1e-9), 0, 1)
        tt = t[last] + frac * (t[1] - t[0])
        s = base + tt[:, None] * d
        return s, self.normals(s)

    def normals(self, q: np.ndarray, h: float = 0.5) -> np.ndarray:
        g = np.zeros_like(q)
        for c in range(3):
            e = np.zeros(3)
            e[c] = h
            g[:, c] = self.ventricle_sdf(q + e) - self.ventricle_sdf(q - e)
        return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)

    def grooves(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Azimuths (deg) of the anterior and posterior interventricular grooves at heights ``u``.

        The groove is where the outermost surface switches between LV and RV.
        """
        u = np.asarray(u, dtype=float).ravel()
        phis = np.arange(-180.0, 180.0, 2.0)
        uu, pp = np.meshgrid(u, phis, indexing="ij")
        s, _ = self.surface(uu.ravel(), pp.ravel())
        lv_outer = (ellipsoid_sdf(s, *self.rv) > ellipsoid_sdf(s, *self.lv)).reshape(uu.shape)  # LV is the surface
        aiv = np.empty(len(u))
        piv = np.empty(len(u))
        for i in range(len(u)):
            lv_side = lv_outer[i]
            # anterior groove: switch between -90 (LV, left) and +90 (RV, right) going through 0
            sw = np.flatnonzero(lv_side[:-1] != lv_side[1:])
            front = [p for p in sw if -90 <= phis[p] <= 90]
            back = [p for p in sw if not -90 <= phis[p] <= 90]
            aiv[i] = phis[front[0]] if front else -30.0
            piv[i] = phis[back[-1]] if back else -160.0
            if piv[i] > 0:
                piv[i] -= 360.0
        return aiv, piv


def heart_axes(h: HeartParams) -> np.ndarray:
    """Columns ``e_long, e_ant, e_right`` in LPS from the pose angles."""
    az, el, roll = np.deg2rad([h.azimuth_deg, h.elevation_deg, h.roll_deg])
    e_long = np.array([np.sin(az) * np.cos(el), -np.cos(az) * np.cos(el), -np.sin(el)])
    ant = np.array([0.0, -1.0, 0.0])
    e_ant = ant - (ant @ e_long) * e_long
    e_ant /= np.linalg.norm(e_ant)
    e_right = np.cross(e_long, e_ant)
    if e_right[0] > 0:  # patient right is -x in LPS
        e_right = -e_right
    c, s = np.cos(roll), np.sin(roll)
    e_ant, e_right = c * e_ant + s * e_right, -s * e_ant + c * e_right
    return np.stack([e_long, e_ant, e_right], axis=1)


def make_frame(h: HeartParams, origin=(0.0, 0.0, 0.0)) -> HeartFrame:
    return HeartFrame(np.asarray(origin, dtype=float), heart_axes(h), h.length_mm, h.lv_radius_mm,
                      h.rv_radius_mm, h.lv_wall_mm, h.rv_wall_mm, h.atrium_scale)
