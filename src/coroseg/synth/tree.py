"""Procedural coronary trees (and the cardiac veins beside them) on the heart surface.

Left main -> LAD (anterior interventricular groove, diagonals towards the lateral wall) and
LCx (left atrioventricular groove, obtuse marginals); RCA (right atrioventricular groove,
acute marginals; PDA down the posterior interventricular groove in a right-dominant heart,
from the LCx in a left-dominant one). Radii taper towards ``r_end``; at every bifurcation
Murray's law ``r_parent^k = r_main^k + r_side^k`` holds exactly for the first points of the
two children (k = ``murray_exponent``; Murray, PNAS 12:207, 1926). Paths meander on the
surface with a smooth random sideways displacement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from coroseg.synth.heart import HeartFrame
from coroseg.synth.params import CaseParams

STEP_MM = 0.5  # centerline point spacing


@dataclass
class Vessel:
    """One vessel segment: points from just after its parent's branch point to its end."""

    name: str
    points: np.ndarray  # (N, 3) world mm
    radius: np.ndarray  # (N,) nominal lumen radius, mm
    side: str  # LEFT / RIGHT
    parent: str | None = None
    parent_index: int = -1  # index into the parent's points this vessel branches from
    s0: float = 0.0  # path length from the ostium to points[0], mm
    surf: np.ndarray | None = None  # (N, 3) world surface points under the vessel (or nan)
    normal: np.ndarray | None = None  # (N, 3) world outward normals (0 for free segments)
    children: list[str] = field(default_factory=list)
    branch_idx: list[int] = field(default_factory=list)  # indices where side branches leave
    branch_q: list[float] = field(default_factory=list)  # their radius ratio to this vessel
    # set by :func:`coroseg.synth.vessels.apply_lesions`
    r_lumen: np.ndarray | None = None  # (N,) lumen radius after stenoses, mm
    r_outer: np.ndarray | None = None  # (N,) outer wall / plaque radius, mm
    offset: np.ndarray | None = None  # (N, 3) centre shift of the outer wall, mm
    plaque_hu: np.ndarray | None = None  # (N,) wall HU


def bezier(p0, t0, p3, t3, n: int) -> np.ndarray:
    """Cubic Bézier from ``p0`` leaving along ``t0`` to ``p3`` arriving along ``t3``."""
    p0, p3 = np.asarray(p0, float), np.asarray(p3, float)
    d = np.linalg.norm(p3 - p0) / 3.0
    p1, p2 = p0 + d * _unit(t0), p3 - d * _unit(t3)
    s = np.linspace(0, 1, n)[:, None]
    return (1 - s) ** 3 * p0 + 3 * (1 - s) ** 2 * s * p1 + 3 * (1 - s) * s ** 2 * p2 + s ** 3 * p3


def _unit(v):
    v = np.asarray(v, float)
    return v / max(np.linalg.norm(v), 1e-9)


def resample_polyline(p: np.ndarray, step: float, *extra: np.ndarray) -> list[np.ndarray]:
    """Resample ``p`` (N, 3) (and per-point arrays ``extra``) at equal arc length ``step``."""
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(2, int(round(s[-1] / step)) + 1)
    t = np.linspace(0, s[-1], n)
    out = [np.stack([np.interp(t, s, p[:, c]) for c in range(3)], axis=1)]
    for e in extra:
        e2 = e.reshape(len(p), -1)
        out.append(np.stack([np.interp(t, s, e2[:, c]) for c in range(e2.shape[1])], axis=1)
                   .reshape((n,) + e.shape[1:]))
    return out


def _ramp(n: int, width: int) -> np.ndarray:
    return np.clip(np.arange(n) / max(width, 1), 0, 1)


class TreeBuilder:
    """Builds the coronary tree and the cardiac veins of one case from its parameters."""

    def __init__(self, params: CaseParams, frame: HeartFrame, root_centre: np.ndarray, root_radius: float):
        self.p = params
        self.t = params.tree
        self.f = frame
        self.rng = np.random.default_rng(params.tree.seed)
        self.k = params.tree.murray_exponent
        self.root_c = np.asarray(root_centre, float)  # world
        self.root_r = root_radius
        self.u_samples = np.linspace(0.05, 0.93, 10) * frame.length
        self._aiv, self._piv = frame.grooves(self.u_samples)
        self.u_av = 0.02 * frame.length
        self.vessels: dict[str, Vessel] = {}

    def aiv(self, u):
        return np.interp(u, self.u_samples, self._aiv)

    def piv(self, u):
        return np.interp(u, self.u_samples, self._piv)

    # ---- geometry --------------------------------------------------------------------------------
    def surface_path(self, ctrl_u, ctrl_phi, *, meander: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Dense surface points and outward normals (world) through control points ``(u, phi)``."""
        cu, cp = np.asarray(ctrl_u, float), np.asarray(ctrl_phi, float)
        n_per = 80
        tt = np.linspace(0, len(cu) - 1, (len(cu) - 1) * n_per + 1)
        u = np.interp(tt, np.arange(len(cu)), cu)
        phi = np.interp(tt, np.arange(len(cp)), cp)
        if len(cu) > 2:  # round the corners
            k = np.hanning(n_per + 1)
            k /= k.sum()
            pad = len(k) // 2
            u = np.convolve(np.pad(u, pad, mode="edge"), k, mode="valid")
            phi = np.convolve(np.pad(phi, pad, mode="edge"), k, mode="valid")
        u = np.clip(u, -0.07 * self.f.length, 0.97 * self.f.length)
        s_loc, nrm = self.f.surface(u, phi)
        amp = self.t.tortuosity_mm if meander is None else meander
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(s_loc, axis=0), axis=1))])
        if amp > 0 and arc[-1] > 2:
            disp = np.zeros_like(arc)
            for j in range(3):
                lam = self.t.tortuosity_wavelength_mm * self.rng.uniform(0.6, 1.6) / (1 + j)
                disp += self.rng.normal(0, 1) / (1 + j) * np.sin(2 * np.pi * arc / lam + self.rng.uniform(0, 2 * np.pi))
            disp *= amp / 1.3 * np.clip(arc / 8.0, 0, 1)  # anchored at the start
            side = np.cross(nrm, np.gradient(s_loc, axis=0))
            side /= np.maximum(np.linalg.norm(side, axis=1, keepdims=True), 1e-9)
            q = s_loc + disp[:, None] * side
            phi = np.rad2deg(np.unwrap(np.arctan2(q[:, 2], q[:, 1])))
            s_loc, nrm = self.f.surface(np.clip(q[:, 0], -0.07 * self.f.length, 0.97 * self.f.length), phi)
        return self.f.to_world(s_loc), nrm @ self.f.axes.T

    def surface_point(self, u: float, phi: float) -> tuple[np.ndarray, np.ndarray]:
        s, n = self.f.surface(np.array([u]), np.array([phi]))
        return self.f.to_world(s)[0], (n @ self.f.axes.T)[0]

    def make(self, name: str, side: str, *, free: np.ndarray | None, surf: tuple[np.ndarray, np.ndarray] | None,
             r0: float, r_end: float, branches: list[tuple[float, float]] = (), parent: str | None = None,
             parent_index: int = -1, h_start: float | None = None) -> Vessel:
        """Assemble a vessel from a free 3D part and/or a surface part; radii with Murray drops.

        ``branches``: ``(arc fraction, side ratio)`` of side branches leaving this vessel.
        """
        elev = self.t.elevation_mm
        parts_p, parts_s, parts_n = [], [], []
        h0 = 0.8 * r0 + elev if h_start is None else h_start
        if free is not None:
            parts_p.append(free)
            parts_s.append(np.full_like(free, np.nan))
            parts_n.append(np.zeros_like(free))
        if surf is not None:
            s, n = surf
            parts_p.append(s + n * h0)
            parts_s.append(s)
            parts_n.append(n)
        pts, srf, nrm = resample_polyline(np.concatenate(parts_p), STEP_MM, np.concatenate(parts_s),
                                          np.concatenate(parts_n))
        if parent is not None:  # the first point is the parent's branch point
            pts, srf, nrm = pts[1:], srf[1:], nrm[1:]
        n = len(pts)
        idx = _branch_points(branches, n)
        r = self.taper(n, r0, r_end, idx)
        on = (np.linalg.norm(nrm, axis=1) > 0.5) & np.isfinite(srf).all(axis=1)
        if on.any():
            first = int(np.argmax(on))
            ramp = _ramp(n - first, 12)
            h = h0 + (r[first:] + elev - h0) * ramp
            pts[first:] = np.where(on[first:, None], srf[first:] + nrm[first:] * h[:, None], pts[first:])
        v = Vessel(name, pts, r, side, parent, parent_index, surf=srf, normal=nrm,
                   branch_idx=[i for i, _ in idx], branch_q=[q for _, q in idx])
        if parent is not None:
            pv = self.vessels[parent]
            v.s0 = pv.s0 + parent_index * STEP_MM + STEP_MM
            pv.children.append(name)
        self.vessels[name] = v
        return v

    def taper(self, n: int, r0: float, r_end: float, branches: list[tuple[int, float]]) -> np.ndarray:
        """Radii of ``n`` points: exponential taper to ``r_end`` and Murray drops after branch points."""
        k = self.k
        drops = {i: (1 - q ** k) ** (1 / k) for i, q in branches}
        total = np.log(r0 / r_end) + sum(np.log(d) for d in drops.values())
        steps = n - 1 - len(drops)  # a step after a branch point is a Murray drop, not taper
        tau = max(0.0, total / max(steps * STEP_MM, 1e-6))
        r = np.empty(n)
        r[0] = r0
        for i in range(1, n):
            r[i] = r[i - 1] * drops[i - 1] if (i - 1) in drops else r[i - 1] * np.exp(-tau * STEP_MM)
        return r

    def side(self, parent: str, j: int, name: str, ctrl_u_rel, ctrl_phi_rel, r_end: float) -> Vessel | None:
        """A side branch from the ``j``-th branch point of ``parent``; controls relative to it."""
        pv = self.vessels[parent]
        if j >= len(pv.branch_idx):  # the parent came out too short to carry this branch
            return None
        bi, q = pv.branch_idx[j], pv.branch_q[j]
        loc = self.f.to_local(pv.surf[bi][None])[0] if np.isfinite(pv.surf[bi]).all() else None
        if loc is None:
            loc = self.f.to_local(pv.points[bi][None])[0]
        u_b = loc[0]
        phi_b = float(np.rad2deg(np.arctan2(loc[2], loc[1])))
        surf = self.surface_path(u_b + np.asarray(ctrl_u_rel, float), phi_b + np.asarray(ctrl_phi_rel, float))
        h_parent = float(np.linalg.norm(pv.points[bi] - pv.surf[bi])) if np.isfinite(pv.surf[bi]).all() else None
        return self.make(name, pv.side, free=None, surf=surf, r0=q * pv.radius[bi], r_end=r_end,
                         parent=parent, parent_index=bi, h_start=h_parent)

    # ---- the trees -------------------------------------------------------------------------------
    def build(self) -> dict[str, Vessel]:
        t, L, rng = self.t, self.f.length, self.rng
        lo, hi = t.side_ratio
        uav = self.u_av
        # left ostium and left main
        lm_target, lm_n = self.surface_point(uav, -70.0)
        d_l = _unit(lm_target - self.root_c)
        o_l = self.root_c + d_l * (self.root_r + 0.3)
        b_lm = o_l + t.lm_length_mm * _unit(lm_target + lm_n * (t.r_left_ostium_mm + 2) - o_l)
        lm_free = bezier(o_l, d_l, b_lm, _unit(b_lm - o_l), 40)
        k = self.k
        lm = self.make("LM", "LEFT", free=lm_free, surf=None, r0=t.r_left_ostium_mm,
                       r_end=t.r_left_ostium_mm * 0.97)
        r_b = lm.radius[-1]
        r_lad = r_b / (1 + t.lcx_lad_ratio ** k) ** (1 / k)
        r_lcx = t.lcx_lad_ratio * r_lad
        bi = len(lm.points) - 1
        # LAD down the anterior interventricular groove
        u_end = min(t.lad_extent, 0.97) * L
        us = np.linspace(0.1 * L, u_end, 6)
        lad_surf = self.surface_path(us, self.aiv(us))
        lad_free = bezier(b_lm, _unit(b_lm - o_l), lad_surf[0][0] + lad_surf[1][0] * (r_lad + t.elevation_mm),
                          lad_surf[0][1] - lad_surf[0][0], 30)
        n_d = t.n_diagonals
        lad_br = [(fr, rng.uniform(lo, hi)) for fr in np.sort(rng.uniform(0.12, 0.6, n_d))]
        self.make("LAD", "LEFT", free=lad_free, surf=lad_surf, r0=r_lad, r_end=t.r_end_mm, branches=lad_br,
                  parent="LM", parent_index=bi)
        # LCx round the left AV groove
        left_dom = t.dominance == "left"
        piv_av = float(self.piv(uav))
        phi0 = -85.0
        phi_end = piv_av if left_dom else max(phi0 - t.lcx_extent_deg, piv_av + 15)
        phis = np.linspace(phi0, phi_end, 5)
        lcx_surf = self.surface_path(np.full(5, uav), phis, meander=t.tortuosity_mm * 0.5)
        lcx_free = bezier(b_lm, _unit(b_lm - o_l), lcx_surf[0][0] + lcx_surf[1][0] * (r_lcx + t.elevation_mm),
                          lcx_surf[0][1] - lcx_surf[0][0], 30)
        n_om = t.n_obtuse_marginals
        om_fr = np.sort(rng.uniform(0.2, 0.85, n_om))
        lcx_br = [(fr, rng.uniform(lo, hi)) for fr in om_fr]
        if left_dom:
            lcx_br.append((0.97, rng.uniform(0.7, 0.85)))
        self.make("LCx", "LEFT", free=lcx_free, surf=lcx_surf, r0=r_lcx, r_end=t.r_end_mm, branches=lcx_br,
                  parent="LM", parent_index=bi)
        for j in range(n_d):
            du = rng.uniform(0.25, 0.45) * L
            dphi = -rng.uniform(25, 55)
            self.side("LAD", j, f"D{j + 1}", [0, du * 0.4, du], [0, dphi * 0.6, dphi], t.r_end_mm)
        for j in range(n_om):
            du = rng.uniform(0.45, 0.75) * L
            self.side("LCx", j, f"OM{j + 1}", [0, du * 0.3, du], [0, -rng.uniform(0, 12), rng.uniform(-20, 10)],
                      t.r_end_mm)
        # RCA round the right AV groove
        rt_target, rt_n = self.surface_point(uav, 40.0)
        d_r = _unit(rt_target - self.root_c)
        o_r = self.root_c + d_r * (self.root_r + 0.3)
        crux = piv_av + 360.0
        rca_end = crux + rng.uniform(8, 20) if not left_dom else min(40 + t.rca_extent_deg, crux - 20)
        phis = np.linspace(45.0, rca_end, 6)
        rca_surf = self.surface_path(np.full(6, uav), phis, meander=t.tortuosity_mm * 0.6)
        rca_free = bezier(o_r, d_r, rca_surf[0][0] + rca_surf[1][0] * (t.r_right_ostium_mm + t.elevation_mm),
                          rca_surf[0][1] - rca_surf[0][0], 40)
        n_am = t.n_acute_marginals
        am_fr = np.sort(rng.uniform(0.2, 0.55, n_am))
        rca_br = [(fr, rng.uniform(lo, hi)) for fr in am_fr]
        if not left_dom:
            rca_br.append(((crux - 45.0) / (rca_end - 45.0), rng.uniform(0.7, 0.85)))
        self.make("RCA", "RIGHT", free=rca_free, surf=rca_surf, r0=t.r_right_ostium_mm, r_end=t.r_end_mm,
                  branches=rca_br)
        for j in range(n_am):
            du = rng.uniform(0.4, 0.65) * L
            self.side("RCA", j, f"AM{j + 1}", [0, du * 0.4, du], [0, rng.uniform(-8, 8), rng.uniform(-15, 15)],
                      t.r_end_mm)
        host = "LCx" if left_dom else "RCA"
        j = len(self.vessels[host].branch_idx) - 1
        du = t.pda_extent * L
        self.side(host, j, "PDA", [0, 0.1 * L, 0.5 * du, du], [0, -8, -8, -8], t.r_end_mm)
        return self.vessels

    # ---- veins (not labelled) ---------------------------------------------------------------------
    def follow(self, name: str, offset_mm: float, *, along: str, lo: float = 0.0, hi: float = 1.0):
        """Control points ``(u, phi)`` tracing vessel ``name`` (arc fractions ``lo..hi``), shifted
        sideways by ``offset_mm``: in azimuth (``along="phi"``) or towards the base (``"u"``)."""
        v = self.vessels[name]
        ok = np.isfinite(v.surf).all(axis=1)
        idx = np.flatnonzero(ok)
        idx = idx[(idx >= lo * (len(v.surf) - 1)) & (idx <= hi * (len(v.surf) - 1))][::4]
        loc = self.f.to_local(v.surf[idx])
        u = loc[:, 0]
        rho = np.linalg.norm(loc[:, 1:], axis=1)
        phi = np.rad2deg(np.unwrap(np.arctan2(loc[:, 2], loc[:, 1])))
        if along == "phi":
            phi = phi + np.rad2deg(offset_mm / np.maximum(rho, 5.0))
        else:
            u = u - offset_mm
        return u, phi

    def veins(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Great cardiac vein + coronary sinus, middle cardiac and marginal veins: ``(points, radii)``.

        Each vein traces an artery's own (meandering) path, shifted sideways by the two radii
        plus ``gap_mm``, so it runs beside the artery without touching it.
        """
        vp, L, uav = self.p.veins, self.f.length, self.u_av
        out = []
        r_lad = float(np.max(self.vessels["LAD"].radius))
        u_a, p_a = self.follow("LAD", vp.side_deg * (r_lad + vp.r_distal_mm + vp.gap_mm + 0.3), along="phi",
                               lo=0.15, hi=0.7)
        r_lcx = float(np.max(self.vessels["LCx"].radius))
        u_b, p_b = self.follow("LCx", r_lcx + vp.r_sinus_mm + vp.gap_mm + 0.3, along="u", lo=0.15)
        crux = float(self.piv(uav)) - 12
        u_c = np.full(3, u_b[-1])
        p_c = np.linspace(p_b[-1], min(crux, p_b[-1] - 5), 3)
        u = np.concatenate([u_a[::-1], u_b, u_c[1:]])
        phi = np.concatenate([p_a[::-1], p_b, p_c[1:]])
        out.append(self._vein(*self.surface_path(u, phi, meander=0.0), vp.r_distal_mm, vp.r_sinus_mm))
        if vp.middle_vein:
            pda = self.vessels["PDA"]
            u, phi = self.follow("PDA", -(float(np.max(pda.radius)) + 1.3 + vp.gap_mm + 0.3), along="phi", lo=0.1)
            mv = self.surface_path(u[::-1], phi[::-1], meander=0.0)
            out.append(self._vein(*mv, vp.r_distal_mm, 0.5 * (vp.r_distal_mm + vp.r_sinus_mm)))
        if vp.small_cardiac_vein:  # beside the RCA in the right AV groove, towards the atrium
            rca = self.vessels["RCA"]
            u, phi = self.follow("RCA", float(np.max(rca.radius)) + 1.2 + vp.gap_mm + 0.3, along="u", lo=0.25, hi=0.9)
            out.append(self._vein(*self.surface_path(u[::-1], phi[::-1], meander=0.0), vp.r_distal_mm,
                                  vp.r_distal_mm * 1.4))
        # veins beside a fraction of the side branches (marginal, diagonal, anterior cardiac veins)
        rng = np.random.default_rng(self.t.seed + 11)
        for name in sorted(n for n in self.vessels if n[:1] in "DOA" and n != "LAD"):
            if rng.random() >= vp.follow_fraction:
                continue
            v = self.vessels[name]
            sgn = 1.0 if rng.random() < 0.5 else -1.0
            u, phi = self.follow(name, sgn * (float(np.max(v.radius)) + 1.2 + vp.gap_mm + 0.3), along="phi", lo=0.2)
            if len(u) < 3:
                continue
            out.append(self._vein(*self.surface_path(u[::-1], phi[::-1], meander=0.0), vp.r_distal_mm * 0.9,
                                  vp.r_distal_mm * 1.3))
        del L
        return out

    def twigs(self) -> list[tuple[np.ndarray, np.ndarray, float, bool]]:
        """Small unlabelled arteries (below the annotation calibre), as in real annotations:
        surface twigs off any vessel and septal perforators diving into the septum from the LAD.

        Returns ``(points, radii, path length from the ostium at the root, on_surface)``.
        """
        t, rng = self.t, np.random.default_rng(self.t.seed + 23)
        names = sorted(self.vessels)
        out = []
        for j in range(t.n_twigs):
            septal = j % 3 == 0
            v = self.vessels["LAD" if septal else names[int(rng.integers(len(names)))]]
            ok = np.flatnonzero(np.isfinite(v.surf).all(axis=1))
            ok = ok[(ok > 10) & (ok < len(v.points) - 10)]
            if len(ok) == 0:
                continue
            i = int(rng.choice(ok))
            r0 = float(min(rng.uniform(0.3, 0.55), 0.8 * v.radius[i]))
            length = rng.uniform(8, 30)
            n = max(3, int(length / STEP_MM))
            tan = v.points[min(i + 1, len(v.points) - 1)] - v.points[i - 1]
            tan /= max(np.linalg.norm(tan), 1e-9)
            if septal:  # straight into the myocardium
                dirn = -v.normal[i] * 0.85 + tan * 0.3
                dirn /= np.linalg.norm(dirn)
                pts = v.points[i] + np.outer(np.arange(1, n + 1) * STEP_MM, dirn)
                pts[:, :] += (np.outer(np.sin(np.linspace(0, np.pi, n)), np.cross(dirn, v.normal[i]))
                              * rng.uniform(-2, 2))
            else:
                loc = self.f.to_local(v.surf[i][None])[0]
                phi = float(np.rad2deg(np.arctan2(loc[2], loc[1])))
                du, dp = rng.uniform(0.3, 1.0) * length, rng.choice([-1, 1]) * rng.uniform(5, 25)
                srf, nrm = self.surface_path([loc[0], loc[0] + du * 0.5, loc[0] + du], [phi, phi + dp * 0.6, phi + dp],
                                             meander=0.5)
                srf, nrm = resample_polyline(srf, STEP_MM, nrm)
                h = (np.linalg.norm(v.points[i] - v.surf[i])
                     + (r0 + t.elevation_mm - np.linalg.norm(v.points[i] - v.surf[i])) * _ramp(len(srf), 8))
                pts = (srf + nrm * h[:, None])[1:]
            r = np.linspace(r0, 0.6 * r0, len(pts))
            out.append((pts, r, v.s0 + i * STEP_MM, not septal))
        return out

    def _vein(self, s: np.ndarray, n: np.ndarray, r0: float, r1: float) -> tuple[np.ndarray, np.ndarray]:
        s, n = resample_polyline(s, STEP_MM, n)
        r = np.linspace(r0, r1, len(s))
        return s + n * (r + self.t.elevation_mm)[:, None], r


def _branch_points(branches, n: int) -> list[tuple[int, float]]:
    """Distinct, increasing point indices for branch fractions (sorted), inside ``[8, n - 12]``.

    Two fractions that round to the same point are moved apart (one branch point each), and
    branches that no longer fit on a short vessel are dropped from the distal end, so the
    ``j``-th side branch always belongs to the ``j``-th branch point.
    """
    out: list[tuple[int, float]] = []
    if n <= 24:
        return out
    last = 7
    for fr, q in sorted(branches, key=lambda b: b[0]):
        i = max(int(np.clip(round(fr * (n - 1)), 8, n - 12)), last + 1)
        if i > n - 12:
            break
        out.append((i, q))
        last = i
    return out
