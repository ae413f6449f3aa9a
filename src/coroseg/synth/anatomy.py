"""The chest around the coronaries, painted on a (coarse) canvas back to front.

Body (subcutaneous fat, muscle), lungs with branching pulmonary vessels, diaphragm and liver,
mediastinal and epicardial fat with the pericardium, the heart (myocardium, LV/RV/LA/RA
blood pools, papillary muscles), aortic root, ascending and descending aorta, pulmonary trunk
and arteries, pulmonary veins, venae cavae with streaks from dense contrast, spine, ribs,
costal cartilage and sternum. Positions follow the heart; sizes and HU come from the case
parameters. Structure ids (:data:`STRUCTURES`) are kept for statistics and tests.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from coroseg.synth.canvas import Canvas, polyline_box, polyline_tube_sdf
from coroseg.synth.heart import HeartFrame, ellipsoid_sdf
from coroseg.synth.params import CaseParams

STRUCTURES = {"air": 0, "fat": 1, "soft_tissue": 2, "lung": 3, "lung_vessel": 4, "bone": 5, "myocardium": 6,
              "left_blood": 7, "right_blood": 8, "coronary_lumen": 9, "vein": 10, "plaque": 11,
              "calcium": 12, "liver": 13, "small_artery": 14}
S = STRUCTURES


def smooth_noise(rng: np.random.Generator, shape, spacing, corr_mm: float) -> np.ndarray:
    """Zero-mean, unit-variance random field with correlation length ``corr_mm`` (float32)."""
    small = [max(2, int(np.ceil(n * s / corr_mm)) + 2) for n, s in zip(shape, spacing)]
    g = rng.standard_normal(small).astype(np.float32)
    z = [n / m for n, m in zip(shape, small)]
    f = ndimage.zoom(g, z, order=1, mode="nearest", grid_mode=True)[: shape[0], : shape[1], : shape[2]]
    f = np.pad(f, [(0, s - fs) for s, fs in zip(shape, f.shape)], mode="edge")
    return (f - f.mean()) / max(float(f.std()), 1e-6)


def _ell2(x, y, cx, cy, rx, ry):
    """Approximate signed distance to an elliptic cylinder (vertical axis)."""
    px, py = (x - cx) / rx, (y - cy) / ry
    k0 = np.sqrt(px * px + py * py)
    k1 = np.sqrt((px / rx) ** 2 + (py / ry) ** 2)
    return k0 * (k0 - 1) / np.maximum(k1, 1e-6)


class ChestPainter:
    """Paints one case's chest and heart onto ``canvas`` (deterministic from the parameters)."""

    def __init__(self, canvas: Canvas, params: CaseParams, frame: HeartFrame, layout: dict):
        self.c = canvas
        self.p = params
        self.f = frame
        self.lay = layout
        rng = np.random.default_rng(params.image.texture_seed)
        self.rng = rng
        self.t1 = smooth_noise(rng, canvas.shape, canvas.spacing, 12.0)
        self.t2 = smooth_noise(rng, canvas.shape, canvas.spacing, 3.0)

    def tex(self, sl, amp1: float, amp2: float = 0.0):
        out = self.t1[sl] * np.float32(amp1)
        if amp2:
            out = out + self.t2[sl] * np.float32(amp2)
        return out

    # ---- helpers -----------------------------------------------------------------------------
    def ell(self, centre, semi, value, sid, *, grow: float = 0.0, tex=None):
        """Paint a heart-frame ellipsoid (local centre/semi-axes), grown by ``grow`` mm."""
        f, c = self.f, self.c
        cw = f.to_world(np.asarray(centre, float)[None])[0]
        r = float(np.max(semi)) + grow + 2
        sl = c.region(cw - r, cw + r)
        if sl is None:
            return
        q = c.local(sl, f.origin, f.axes)
        d = ellipsoid_sdf(q, centre, np.add(semi, grow))
        v = value if tex is None else value + tex(sl)
        c.paint(sl, d, v, sid)

    def tube(self, pts, radii, value, sid, *, grow: float = 0.0, tex=None):
        pts = np.asarray(pts, float)
        radii = np.asarray(radii, float) + grow
        lo, hi = polyline_box(pts, radii, 2.0)
        sl = self.c.region(lo, hi)
        if sl is None:
            return
        x, y, z = self.c.coords(sl)
        d = polyline_tube_sdf(x, y, z, pts, radii)
        self.c.paint(sl, d, value if tex is None else value + tex(sl), sid)

    # ---- the chest -----------------------------------------------------------------------------
    def paint(self) -> None:
        ct, ch, c, lay = self.p.contrast, self.p.chest, self.c, self.lay
        full = (slice(None),) * 3
        x, y, z = c.coords(full)
        bx, by, rx, ry = lay["body"]
        body = _ell2(x, y, bx, by, rx, ry)
        c.paint(full, body, ct.fat + self.tex(full, 8), S["fat"])
        c.paint(full, body + ch.subcut_fat_mm, ct.muscle + self.tex(full, 6), S["soft_tissue"])
        cav = body + ch.subcut_fat_mm + ch.wall_mm
        lung_hu = ct.lung + self.tex(full, 25, 20)
        c.paint(full, cav, lung_hu, S["lung"])
        # diaphragm domes and the abdomen below them
        zr, zl = lay["dome"]
        dome = np.maximum(zr - ((x - (bx - 55)) ** 2 + (y - by) ** 2) / 260.0,
                          zl - ((x - (bx + 65)) ** 2 + (y - by) ** 2) / 260.0)
        below = np.maximum(z - dome, cav)
        liver = np.where(x < bx + 25, np.float32(ct.liver), np.float32(ct.muscle))
        c.paint(full, below, liver + self.tex(full, 8), S["liver"])
        del body, dome, below, liver, lung_hu
        self.spine_block()
        self.mediastinum()
        self.heart()
        self.great_vessels()
        self.bones(cav)
        del cav
        self.lung_vessels()
        self.streaks()

    def spine_block(self):
        ct, lay, c = self.p.contrast, self.lay, self.c
        sx, sy, sr = lay["spine"]
        sl = c.region((sx - 60, sy - sr - 30, -1e4), (sx + 60, sy + 90, 1e4))
        if sl is None:
            return
        x, y, z = c.coords(sl)
        c.paint(sl, _ell2(x, y, sx, sy + 20, sr + 26, sr + 45), ct.muscle + self.tex(sl, 6), S["soft_tissue"])
        # descending aorta and oesophagus in front-left of the spine
        ax, ay, ar = lay["desc_aorta"]
        c.paint(sl, _ell2(x, y, ax, ay, ar + 4, ar + 4), ct.fat, S["fat"])
        c.paint(sl, _ell2(x, y, ax, ay, ar, ar), ct.aorta * 0.97 + self.tex(sl, 6), S["left_blood"])
        ex, ey = sx - 2, sy - sr - 10
        c.paint(sl, _ell2(x, y, ex, ey, 8, 6), ct.muscle, S["soft_tissue"])
        c.paint(sl, _ell2(x, y, ex, ey, 3, 2), -900.0, S["air"])
        # vertebrae: body with discs, canal, arch, spinous process
        zz = np.mod(z - lay["disc_phase"], 26.0)
        disc = (np.abs(zz - 3.0) < 3.0).astype(np.float32)
        bone = ct.bone_marrow * (1 - disc) + 90.0 * disc
        vb = _ell2(x, y, sx, sy, sr, sr * 0.9)
        c.paint(sl, vb, ct.bone_cortex * (1 - disc) + 90.0 * disc, S["bone"])
        c.paint(sl, vb + 1.5, bone + self.tex(sl, 0, 30), S["bone"])
        arch = _ell2(x, y, sx, sy + sr + 10, 14, 12)
        c.paint(sl, arch, ct.bone_cortex * 0.8, S["bone"])
        c.paint(sl, _ell2(x, y, sx, sy + sr + 9, 8, 7), 15.0, S["soft_tissue"])
        c.paint(sl, _ell2(x, y, sx, sy + sr + 30, 4, 14), ct.bone_cortex * 0.7, S["bone"])

    def mediastinum(self):
        h, ct = self.p.heart, self.p.contrast
        g = h.epicardial_fat_mm + 1.0 + h.pericardial_fat_mm
        fat = lambda sl: self.tex(sl, 8)  # noqa: E731
        self.heart_body(ct.fat, S["fat"], g, tex=fat)
        # anterior mediastinal fat between the heart and the sternum
        bx, by, rx, ry = self.lay["body"]
        lo, hi = self.lay["heart_box"]
        cy = by - ry + self.p.chest.subcut_fat_mm + self.p.chest.wall_mm + 14
        self.tube([(bx + 8, cy, lo[2] - 30), (bx + 8, cy, hi[2] + 40)], [20, 20], ct.fat, S["fat"], tex=fat)
        for name in ("pulm_veins", "pulmonary", "ivc", "svc", "aorta"):
            for pts, rad in self.lay[name]:
                self.tube(pts, rad, ct.fat, S["fat"], grow=3.0, tex=fat)
        if "tree_fat" in self.lay:  # the coronaries run in epicardial fat
            pts, rad = self.lay["tree_fat"]
            flat, _, idx, dist = self.c.tube_distance(pts, float(rad.max()) + 2 * self.c.edge)
            self.c.paint_flat(flat, dist - rad[idx], ct.fat, S["fat"])
        self.heart_body(ct.muscle - 10, S["soft_tissue"], h.epicardial_fat_mm + 1.0)  # pericardium
        self.heart_body(ct.fat, S["fat"], h.epicardial_fat_mm, tex=fat)

    def heart_body(self, value, sid, grow, tex=None):
        """Paint the heart's outer surface grown by ``grow`` mm (distance computed once)."""
        f, c = self.f, self.c
        if not hasattr(self, "_hb"):
            lo, hi = self.lay["heart_box"]
            gmax = self.p.heart.epicardial_fat_mm + 1.0 + self.p.heart.pericardial_fat_mm + 3
            sl = c.region(np.asarray(lo) - gmax, np.asarray(hi) + gmax)
            q = c.local(sl, f.origin, f.axes) if sl is not None else None
            self._hb = (sl, None if q is None else np.minimum(f.ventricle_sdf(q), f.atria_sdf(q)))
        sl, d = self._hb
        if sl is None:
            return
        c.paint(sl, d - np.float32(grow), value if tex is None else value + tex(sl), sid)

    def heart(self):
        f, ct, h = self.f, self.p.contrast, self.p.heart
        left = ct.aorta + ct.lv_offset
        right = ct.right_heart
        mix = ct.mixing_hu
        self.heart_body(ct.myocardium, S["myocardium"], 0.0, tex=lambda sl: self.tex(sl, 5, 6))
        self.ell(*f.rv_cavity, right, S["right_blood"], tex=lambda sl: self.tex(sl, mix, mix * 0.3))
        self.ell(*f.lv, ct.myocardium, S["myocardium"], tex=lambda sl: self.tex(sl, 5, 6))
        self.ell(*f.lv_cavity, left, S["left_blood"], tex=lambda sl: self.tex(sl, 8))
        if h.papillary:
            for a, r in ((-0.55, -0.35), (0.2, -0.6)):
                w = f.lv_r - f.lv_wall
                self.ell((0.55 * f.length, a * w, r * w), (0.18 * f.length, 0.17 * w, 0.17 * w), ct.myocardium,
                         S["myocardium"])
        self.ell(*f.la, left, S["left_blood"], tex=lambda sl: self.tex(sl, 8))
        if h.appendage:
            c, sm = f.laa
            self.ell(c, sm, ct.myocardium, S["myocardium"], grow=1.5)
            self.ell(c, sm, left * 0.95, S["left_blood"], tex=lambda sl: self.tex(sl, 10, 10))
        self.ell(*f.ra, right, S["right_blood"], tex=lambda sl: self.tex(sl, mix, mix * 0.3))

    def great_vessels(self):
        lay, ct, h = self.lay, self.p.contrast, self.p.heart
        left = ct.aorta
        for name, val, sid in (("pulm_veins", ct.aorta + ct.lv_offset, S["left_blood"]),
                               ("pulmonary", ct.right_heart, S["right_blood"]),
                               ("ivc", ct.ivc, S["right_blood"]), ("svc", ct.svc, S["right_blood"]),
                               ("aorta", left, S["left_blood"])):
            for pts, rad in lay[name]:
                self.tube(pts, rad, val, sid, tex=lambda sl: self.tex(sl, 6))
        rc = lay["root"]
        rr = h.aortic_root_radius_mm
        self.tube([rc, rc + 0.01], [rr, rr], left, S["left_blood"], tex=lambda sl: self.tex(sl, 6))

    def bones(self, cav):
        ct, c, lay = self.p.contrast, self.c, self.lay
        # sternum
        sx, sy = lay["sternum"]
        sl = c.region((sx - 30, sy - 20, -1e4), (sx + 30, sy + 20, 1e4))
        if sl is not None:
            x, y, _ = c.coords(sl)
            d = _ell2(x, y, sx, sy, 16, 7)
            c.paint(sl, d, ct.bone_cortex, S["bone"])
            c.paint(sl, d + 1.5, ct.bone_marrow + self.tex(sl, 0, 25), S["bone"])
        for kind in ("rib", "cartilage"):
            parts = [(p, r) for p, r, k in lay["ribs"] if k == kind]
            if not parts:
                continue
            pts, rad = np.concatenate([p for p, _ in parts]), np.concatenate([r for _, r in parts])
            flat, _, idx, dist = c.tube_distance(pts, float(rad.max()) + 2 * c.edge)
            if flat.size == 0:
                continue
            sdf = dist - rad[idx]
            if kind == "rib":
                c.paint_flat(flat, sdf, ct.bone_cortex, S["bone"])
                c.paint_flat(flat, sdf + 1.5, ct.bone_marrow, S["bone"])
            else:
                c.paint_flat(flat, sdf, 140.0, S["soft_tissue"])

    def lung_vessels(self):
        c, ct = self.c, self.p.contrast
        pts, rad = self.lay["lung_trees"]
        for sel in (rad <= 1.6, rad > 1.6):  # thin vessels need a narrower search band
            if not sel.any():
                continue
            p, r = pts[sel], rad[sel]
            flat, _, idx, dist = c.tube_distance(p, float(r.max()) + 2 * c.edge)
            lung = (c.sid.reshape(-1)[flat] == S["lung"]).astype(np.float32)
            c.paint_flat(flat, dist - r[idx], ct.lung_vessel, S["lung_vessel"], where=lung)

    def streaks(self):
        """Radial streaks about the superior vena cava from dense contrast (axial planes)."""
        amp = self.p.image.streak_hu
        if amp <= 0:
            return
        c = self.c
        (pts, _), = self.lay["svc"]
        cx, cy = pts[-1][0], pts[-1][1]
        z0 = float(min(pts[0][2], pts[-1][2]))
        x, y, z = c.coords((slice(None),) * 3)
        ang = np.arctan2(y - cy, x - cx)[0]
        rho = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)[0]
        nb = 720
        prof = ndimage.gaussian_filter1d(self.rng.standard_normal(nb), 0.7, mode="wrap")
        prof /= prof.std()
        b = ((ang + np.pi) / (2 * np.pi) * nb).astype(int) % nb
        b2 = (b + nb // 2) % nb  # a streak is a line through the source
        pat = (0.5 * (prof[b] + prof[b2]) * np.exp(-rho / 70.0) * (rho > 10)).astype(np.float32)
        zf = np.clip((z[:, 0, 0] - z0) / 15.0, 0, 1).astype(np.float32)
        c.img += amp * zf[:, None, None] * pat[None]
