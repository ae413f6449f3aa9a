"""Where the chest structures go, in world (LPS) millimetres, given the placed heart.

The body, spine, diaphragm, great vessels, ribs and pulmonary vessel trees are positioned
relative to the heart (its bounding box, left atrium, aortic root and outflow tract), so
any heart pose or size gives a consistent chest. Pure geometry: no voxels here.
"""

from __future__ import annotations

import numpy as np

from coroseg.synth.heart import HeartFrame
from coroseg.synth.params import CaseParams


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def ellipsoid_points(frame: HeartFrame, centre, semi, n: int = 12) -> np.ndarray:
    th, ph = np.meshgrid(np.linspace(0, np.pi, n), np.linspace(0, 2 * np.pi, 2 * n), indexing="ij")
    q = np.stack([np.cos(th), np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph)], -1).reshape(-1, 3)
    return frame.to_world(np.asarray(centre) + q * np.asarray(semi))


def heart_points(frame: HeartFrame) -> np.ndarray:
    """World points on the heart's outer surface (ventricles and atria)."""
    uu, pp = np.meshgrid(np.linspace(-0.07, 0.97, 16) * frame.length, np.arange(-180, 180, 15.0), indexing="ij")
    s, _ = frame.surface(uu.ravel(), pp.ravel())
    return np.concatenate([frame.to_world(s), ellipsoid_points(frame, *frame.la), ellipsoid_points(frame, *frame.ra)])


def chest_layout(params: CaseParams, frame: HeartFrame, root_centre: np.ndarray, zrange: tuple[float, float]) -> dict:
    """Positions and sizes of every chest structure (see :class:`~coroseg.synth.anatomy.ChestPainter`)."""
    ch, h = params.chest, params.heart
    rng = np.random.default_rng(params.tree.seed + 7)
    hp = heart_points(frame)
    lo, hi = hp.min(axis=0), hp.max(axis=0)
    zmin, zmax = zrange
    lay: dict = {"heart_box": (lo - 2, hi + 2)}
    la_pts = ellipsoid_points(frame, *frame.la)
    sr = ch.spine_radius_mm
    sy = la_pts[:, 1].max() + ch.spine_gap_mm + sr
    bx = frame.origin[0] + ch.body_dx_mm
    sx = bx
    back = sy + sr + 50 + ch.subcut_fat_mm
    front = lo[1] - h.pericardial_fat_mm - ch.retrosternal_mm - ch.wall_mm - ch.subcut_fat_mm
    ry = (back - front) / 2
    by = back - ry
    rx = max(ch.body_rx_mm, np.abs(hp[:, 0] - bx).max() + ch.wall_mm + ch.subcut_fat_mm + 15, 1.2 * ry)
    lay["body"] = (bx, by, rx, ry)
    lay["spine"] = (sx, sy, sr)
    ar = h.aorta_radius_mm * 0.85
    lay["desc_aorta"] = (sx + sr + ar + 3, sy - 0.45 * sr, ar)
    lay["disc_phase"] = ch.rib_phase_mm
    lay["dome"] = (lo[2] + ch.dome_dz_mm, lo[2] - 4)
    top = zmax + 40
    rc = np.asarray(root_centre, float)
    lay["root"] = rc
    asc_dir = _unit([-0.3, -0.15, 1])
    a_top = rc + asc_dir * (top - rc[2]) / asc_dir[2]
    lay["aorta"] = [([rc, a_top], [h.aorta_radius_mm, h.aorta_radius_mm])]
    # pulmonary trunk and arteries (the right one passes behind the ascending aorta)
    pt0 = frame.to_world(frame.rvot[None])[0]
    rp = h.pulmonary_trunk_radius_mm
    bif = pt0 + _unit([0.3, 0.45, 1]) * 45
    a_at = rc + asc_dir * (bif[2] - rc[2]) / asc_dir[2]
    rpa_mid = np.array([a_at[0], a_at[1] + h.aorta_radius_mm + 0.7 * rp + 5, bif[2] - 3])
    lay["pulmonary"] = [([pt0, bif], [rp, rp]),
                        ([bif, bif + [35, 25, 3], bif + [70, 35, -8]], [0.75 * rp, 0.7 * rp, 0.6 * rp]),
                        ([bif, rpa_mid, rpa_mid + [-45, 5, -6]], [0.75 * rp, 0.7 * rp, 0.6 * rp])]
    la_c = frame.to_world(np.asarray(frame.la[0])[None])[0]
    lay["pulm_veins"] = [([la_c, la_c + [s * 55, 8, dz]], [6.5, 6.0]) for s in (-1, 1) for dz in (-12, 10)]
    ra_c = frame.to_world(np.asarray(frame.ra[0])[None])[0]
    lay["svc"] = [([ra_c + [0, 0, 12], np.array([ra_c[0] - 4, ra_c[1] + 4, top])], [9.5, 9.5])]
    lay["ivc"] = [([ra_c - [0, 0, 8], np.array([ra_c[0] + 6, ra_c[1] + 18, zmin - 40])], [11.0, 11.0])]
    # chest wall: sternum, ribs, costal cartilage
    rxi, ryi = rx - ch.subcut_fat_mm - ch.wall_mm, ry - ch.subcut_fat_mm - ch.wall_mm
    lay["sternum"] = (bx + 3, by - ry + ch.subcut_fat_mm + 0.55 * ch.wall_mm)
    ribs = []
    rr = ch.rib_radius_mm
    a, b = rxi + rr + 1.5, ryi + rr + 1.5
    for z0 in np.arange(zmin - 40 + ch.rib_phase_mm, zmax + 110, ch.rib_pitch_mm):
        for sgn in (-1.0, 1.0):
            th = np.deg2rad(np.arange(80, -62, -0.6))
            zz = z0 - 95 * (80 - np.rad2deg(th)) / 140
            p = np.stack([bx + sgn * a * np.cos(th), by + b * np.sin(th), zz], 1)
            ribs.append((p, np.full(len(p), rr), "rib"))
            th2 = np.deg2rad(np.arange(-62, -84, -0.6))
            zz2 = zz[-1] - 8 * (-62 - np.rad2deg(th2)) / 22
            p2 = np.stack([bx + sgn * a * np.cos(th2), by + b * np.sin(th2), zz2], 1)
            ribs.append((p2, np.full(len(p2), rr * 0.9), "cartilage"))
    lay["ribs"] = ribs
    lay["lung_trees"] = lung_trees(rng, ch.n_lung_trees, lay, (zmin, zmax), (bx, by, rxi, ryi))
    return lay


def lung_trees(rng: np.random.Generator, n: int, lay: dict, zr, cav) -> tuple[np.ndarray, np.ndarray]:
    """Branching pulmonary vessel trees from the hila: dense points (1 mm) and radii."""
    bx, by, rxi, ryi = cav
    roots = [lay["pulmonary"][1][0][-1], lay["pulmonary"][2][0][-1]] + [v[0][1] for v in lay["pulm_veins"]]
    pts, rads = [], []
    for t in range(n):
        root = np.asarray(roots[t % len(roots)], float)
        lateral = np.sign(root[0] - bx) or 1.0
        d0 = _unit([lateral, rng.uniform(-0.6, 0.9), rng.uniform(-0.8, 0.8)])
        stack = [(root, d0, rng.uniform(3.5, 6.0))]
        count = 0
        while stack and count < 300:
            p, d, r = stack.pop(0)  # breadth first: the tree spreads before it stops
            count += 1
            length = float(np.clip(5 * r + 6, 6, 28) * rng.uniform(0.7, 1.3))
            n = int(length)
            dirs = d + np.cumsum(rng.normal(0, 0.08, (n, 3)), axis=0)  # gently curving
            dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
            seg = np.vstack([p, p + np.cumsum(dirs, axis=0)])
            d = dirs[-1]
            inside = (((seg[:, 0] - bx) / rxi) ** 2 + ((seg[:, 1] - by) / ryi) ** 2 < 1.05) & \
                (seg[:, 2] > zr[0] - 30) & (seg[:, 2] < zr[1] + 30)
            if not inside.all():
                seg = seg[: max(1, int(np.argmin(inside)))]
            pts.append(seg)
            rads.append(np.full(len(seg), r))
            if len(seg) < n + 1 or r < 0.7:
                continue
            for rc, ang in ((0.86, rng.uniform(8, 22)), (rng.uniform(0.5, 0.75), rng.uniform(30, 65))):
                axis = _unit(np.cross(d, rng.normal(0, 1, 3)))
                th = np.deg2rad(ang)
                nd = d * np.cos(th) + np.cross(axis, d) * np.sin(th)
                stack.append((seg[-1], _unit(nd), r * rc))
    if not pts:
        return np.zeros((0, 3)), np.zeros(0)
    return np.concatenate(pts), np.concatenate(rads)
