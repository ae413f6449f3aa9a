"""From vessels to what is rendered and written: lesions, dense tubes and the centerline graph.

Lesions narrow the lumen (the label) with a smooth cos² profile, grow an eccentric outer wall
(soft plaque) and place calcium capsules in the wall, outside the lumen, on one side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coroseg.io.centerline import CenterlineGraph
from coroseg.synth.params import CaseParams
from coroseg.synth.tree import STEP_MM, Vessel

DENSE_MM = 0.2  # rasterisation point spacing


@dataclass
class Tubes:
    """Dense tube description for rasterisation (all arrays per point)."""

    points: np.ndarray  # (M, 3) LPS mm
    r_lumen: np.ndarray  # (M,) mm
    r_outer: np.ndarray  # (M,) mm, outer wall (plaque) radius
    offset: np.ndarray  # (M, 3) mm, centre shift of the outer wall (eccentric plaque)
    r_fat: np.ndarray  # (M,) mm, radius of the fat sleeve
    hu_lumen: np.ndarray  # (M,)
    hu_wall: np.ndarray  # (M,)

    @classmethod
    def concat(cls, parts: list[Tubes]) -> Tubes:
        return cls(*[np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__])


def _perp_basis(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.where(np.abs(t[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    e1 = np.cross(t, a)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    return e1, np.cross(t, e1)


def apply_lesions(params: CaseParams, vessels: dict[str, Vessel]) -> list[dict]:
    """Per-point lumen radius, outer radius, wall offset and calcium capsules for each vessel.

    Sets ``v.r_lumen``, ``v.r_outer``, ``v.offset``, ``v.plaque_hu`` on every vessel and returns
    the calcium capsules ``{"points", "radius", "hu"}``.
    """
    wall = 0.25
    for v in vessels.values():
        v.r_lumen = v.radius.copy()
        v.r_outer = v.radius + wall + 0.08 * v.radius
        v.offset = np.zeros_like(v.points)
        v.plaque_hu = np.full(len(v.points), params.contrast.wall_hu)
    calcium = []
    for les in params.disease.lesions:
        v = vessels.get(les.vessel) or vessels["LAD"]
        n = len(v.points)
        s = np.arange(n) * STEP_MM
        c = les.position * s[-1]
        half = les.length_mm / 2
        x = np.clip((s - c) / half, -1, 1)
        bump = np.cos(x * np.pi / 2) ** 2 * (np.abs(s - c) < half)
        if not bump.any():
            continue
        t = np.gradient(v.points, axis=0)
        t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)
        e1, e2 = _perp_basis(t)
        ang = np.deg2rad(les.angle_deg)
        dirn = np.cos(ang) * e1 + np.sin(ang) * e2
        v.r_lumen = np.minimum(v.r_lumen, v.radius * (1 - les.severity * bump))
        grow = v.radius * (les.remodelling + 0.6 * les.severity) * bump
        v.r_outer = np.maximum(v.r_outer, v.radius + wall + grow)
        v.offset = v.offset + dirn * (0.8 * grow)[:, None]
        if les.kind in ("soft", "mixed"):
            v.plaque_hu = np.where(bump > 0.05, les.plaque_hu, v.plaque_hu)
        if les.kind in ("calcified", "mixed"):
            sel = np.flatnonzero(bump > 0.3)
            rc = float(np.clip(0.4 * v.radius[sel].mean() + 0.35, 0.45, 1.5))
            # in the wall, outside the lumen: centre beyond the lumen radius by the capsule radius
            cdir = -dirn[sel] if les.kind == "mixed" else dirn[sel]
            cp = v.points[sel] + cdir * (v.r_lumen[sel] + rc + 0.35)[:, None]
            calcium.append({"points": cp, "radius": np.full(len(sel), rc), "hu": les.calcium_hu})
    return calcium


def _dense(v: Vessel, start: np.ndarray | None, *arrays: np.ndarray) -> list[np.ndarray]:
    """Densify a vessel (prefixed by its parent's branch point) to ``DENSE_MM`` spacing."""
    pts = v.points if start is None else np.vstack([start, v.points])
    arrs = [a if start is None else np.concatenate([a[:1], a]) for a in arrays]
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(2, int(np.ceil(s[-1] / DENSE_MM)) + 1)
    t = np.linspace(0, s[-1], n)  # both ends included
    out = [np.stack([np.interp(t, s, pts[:, c]) for c in range(3)], 1)]
    for a in arrs:
        a2 = a.reshape(len(pts), -1)
        out.append(np.stack([np.interp(t, s, a2[:, c]) for c in range(a2.shape[1])], 1)
                   .reshape((len(t),) + a.shape[1:]))
    return out


def artery_tubes(params: CaseParams, vessels: dict[str, Vessel]) -> list[Tubes]:
    """One dense tube group per vessel (starting at its parent's branch point)."""
    ct = params.contrast
    fat_sleeve = 1.2 + 0.5 * params.heart.epicardial_fat_mm
    parts = []
    for v in vessels.values():
        start = None if v.parent is None else vessels[v.parent].points[v.parent_index]
        s_path = v.s0 + np.arange(len(v.points)) * STEP_MM
        p, rl, ro, off, hw, sp = _dense(v, start, v.r_lumen, v.r_outer, v.offset, v.plaque_hu, s_path)
        hu = ct.aorta * (1 - ct.distal_falloff * np.clip(sp / 160.0, 0, 1))
        parts.append(Tubes(p, rl, ro, off, ro + fat_sleeve, hu, hw))
    return parts


def simple_tubes(items: list[tuple[np.ndarray, np.ndarray]], hu: float, wall_hu: float, fat: float) -> Tubes:
    parts = []
    for pts, r in items:
        v = Vessel("x", pts, r, "")
        p, rr = _dense(v, None, r)
        parts.append(Tubes(p, rr, rr + 0.2, np.zeros_like(p), rr + fat, np.full(len(p), hu), np.full(len(p), wall_hu)))
    return Tubes.concat(parts)


def to_graph(vessels: dict[str, Vessel]) -> CenterlineGraph:
    """Centerline graph: one node per vessel point, radius = lumen radius (stenoses included)."""
    pts, rad, sides, edges, ostia = [], [], [], [], []
    first: dict[str, int] = {}
    n = 0
    for name, v in vessels.items():
        first[name] = n
        pts.append(v.points)
        rad.append(v.radius if v.r_lumen is None else v.r_lumen)
        sides += [v.side] * len(v.points)
        edges += [(n + i, n + i + 1) for i in range(len(v.points) - 1)]
        if v.parent is None:
            ostia.append(n)
        n += len(v.points)
    for name, v in vessels.items():
        if v.parent is not None:
            edges.append((first[v.parent] + v.parent_index, first[name]))
    g = CenterlineGraph.from_points(np.concatenate(pts), np.concatenate(rad), edges, ostia=ostia, sides=sides)
    for i, name in enumerate(_names_per_node(vessels)):
        g.graph.nodes[i]["vessel"] = name
    return g


def _names_per_node(vessels: dict[str, Vessel]) -> list[str]:
    out: list[str] = []
    for name, v in vessels.items():
        out += [name] * len(v.points)
    return out
