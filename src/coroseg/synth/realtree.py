"""Anatomy mode: CT rendered around a real coronary tree (mask + centerline).

Input is an ASOCA-style folder (``Annotations/<id>.nrrd`` lumen masks and
``Centerlines/<id>.vtp``). The label is the real mask, resampled (nearest neighbour) onto
the preset grid; the lumen in the image is the anti-aliased real mask. The heart is fitted to
the tree: long axis = principal axis of the centerline points (pointing away from the
ostia), base at the most proximal points, length and radius from the points' extent; the
aortic root sits behind the two ostia. The chest is then painted as for procedural cases.
Veins run beside the longest left and right paths. Lesions add soft plaque and calcium next
to the real lumen but do not narrow it (the real mask stays the label).
"""

from __future__ import annotations

import time
from pathlib import Path

import networkx as nx
import numpy as np
from scipy import ndimage

from coroseg.errors import InputError
from coroseg.io.centerline import CenterlineGraph
from coroseg.io.centerline_files import read_centerline
from coroseg.io.volume import Volume, read_volume, resample_to_grid
from coroseg.synth.anatomy import STRUCTURES as S
from coroseg.synth.anatomy import ChestPainter
from coroseg.synth.canvas import Canvas
from coroseg.synth.heart import HeartFrame
from coroseg.synth.layout import chest_layout
from coroseg.synth.params import CaseParams
from coroseg.synth.render import Phantom, form_image, paint_calcium, paint_tubes, upsample
from coroseg.synth.vessels import Tubes, simple_tubes


def list_anatomy_cases(anatomy_dir: str | Path) -> list[Path]:
    """Annotation files that have a matching ``Centerlines/<stem>.vtp``, sorted by name."""
    root = Path(anatomy_dir)
    ann = root / "Annotations"
    if not ann.is_dir():
        raise InputError("expected an ASOCA-style folder with Annotations/ and Centerlines/", root)
    out = [p for p in sorted(ann.glob("*.nrrd")) if (root / "Centerlines" / f"{p.stem}.vtp").exists()]
    if not out:
        raise InputError("no Annotations/<id>.nrrd with a matching Centerlines/<id>.vtp", root)
    return out


def _target_grid(mask: Volume, params: CaseParams, points: np.ndarray) -> Volume:
    """Identity-direction grid: the mask's own box and spacing for ``asoca``; for ``small`` the
    tree's box plus a margin at 0.8-1.0 mm (coarser if needed for at most 160 voxels per axis)."""
    corners = np.array([[k, j, i] for k in (0, mask.shape[0] - 1) for j in (0, mask.shape[1] - 1)
                        for i in (0, mask.shape[2] - 1)], dtype=float)
    w = mask.index_to_world(corners)
    lo, hi = w.min(axis=0), w.max(axis=0)
    if params.grid.preset != "asoca":
        m = 12.0
        lo, hi = np.maximum(lo, points.min(axis=0) - m), np.minimum(hi, points.max(axis=0) + m)
    if params.grid.preset == "asoca":
        sp = np.array(sorted(mask.spacing)[::-1])  # (sz, sy, sx), slice spacing largest
    else:
        ext = (hi - lo)[::-1]
        sp = np.maximum([params.grid.spacing_z, params.grid.spacing_xy, params.grid.spacing_xy], ext / 159)
    shape = tuple(int(np.floor(e / s + 1e-6)) + 1 for e, s in zip((hi - lo)[::-1], sp))
    return Volume(np.zeros(shape, np.uint8), tuple(sp), tuple(lo), np.eye(3), True)


def fit_heart(graph: CenterlineGraph, params: CaseParams) -> HeartFrame:
    """A heart frame whose ventricular surface runs under the tree (see the module docstring).

    Long axis: from the centroid of the proximal 40 mm of every vessel (the atrioventricular
    ring) to the farthest end point of the left tree (the LAD near the apex).
    """
    points = graph.positions()
    dist = _path_lengths(graph)
    nodes = graph.nodes
    prox = np.array([dist.get(n, 1e9) < 40 for n in nodes])
    base_c = points[prox].mean(axis=0) if prox.sum() > 5 else points.mean(axis=0)
    left = [n for n in nodes if graph.graph.nodes[n].get("side") == "LEFT"] or nodes
    apex_n = max(left, key=lambda n: np.linalg.norm(graph.graph.nodes[n]["pos"] - base_c))
    e_long = graph.graph.nodes[apex_n]["pos"] - base_c
    e_long = e_long / np.linalg.norm(e_long)
    c = base_c
    ant = np.array([0.0, -1.0, 0.0])
    e_ant = ant - (ant @ e_long) * e_long
    e_ant /= np.linalg.norm(e_ant)
    e_right = np.cross(e_long, e_ant)
    if e_right[0] > 0:
        e_right = -e_right
    axes = np.stack([e_long, e_ant, e_right], axis=1)
    q = (points - c) @ axes
    u0 = np.percentile(q[:, 0], 3) + 4.0
    length = max((q[:, 0].max() - u0) / 0.95, 50.0)
    mid = (q[:, 0] > u0 + 0.2 * length) & (q[:, 0] < u0 + 0.6 * length)
    sel = q[mid] if mid.sum() > 20 else q
    # least-squares circle through the cross-section coordinates: a^2 + r^2 = 2 a a0 + 2 r r0 + k
    A = np.c_[2 * sel[:, 1], 2 * sel[:, 2], np.ones(len(sel))]
    a0, r0, k = np.linalg.lstsq(A, (sel[:, 1:] ** 2).sum(axis=1), rcond=None)[0]
    rho = float(np.sqrt(max(k + a0 ** 2 + r0 ** 2, 100.0)))
    rho = float(np.clip(rho, 25, 60))
    origin = c + axes @ np.array([u0, a0, r0])
    h = params.heart
    # local random search: the tree (beyond its first 15 mm) should lie just outside the heart,
    # within the epicardial fat (0.3 r .. r + 8 mm from the surface), not inside it
    far = np.array([dist.get(n, 0.0) > 15 for n in nodes])
    pts, rad = points[far][::3], np.nan_to_num(graph.radii()[far][::3], nan=1.0)
    rng = np.random.default_rng(params.tree.seed)

    def make(o, ax, ln, r):
        return HeartFrame(o, ax, float(ln), 0.85 * r, 0.85 * r, h.lv_wall_mm, h.rv_wall_mm, h.atrium_scale * r / 35)

    def score(f):
        q = f.to_local(pts)
        d = np.minimum(f.ventricle_sdf(q), f.atria_sdf(q))
        return float(((d > 0.3 * rad) & (d < rad + 8)).mean() - 1.5 * (d < 0.3 * rad).mean())

    best = (origin, axes, length, rho)
    best_s = score(make(*best))
    for it in range(300):
        step = 1.0 if it < 150 else 0.4
        w = rng.normal(0, np.deg2rad(8) * step, 3)
        th = np.linalg.norm(w)
        kx = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]) / max(th, 1e-12)
        rot = np.eye(3) + np.sin(th) * kx + (1 - np.cos(th)) * kx @ kx
        cand = (best[0] + rng.normal(0, 6 * step, 3), rot @ best[1],
                float(np.clip(best[2] * np.exp(rng.normal(0, 0.08 * step)), 70, 130)),
                float(np.clip(best[3] * np.exp(rng.normal(0, 0.08 * step)), 22, 45)))
        sc = score(make(*cand))
        if sc > best_s:
            best, best_s = cand, sc
    return make(*best)


def _path_lengths(g: CenterlineGraph) -> dict[int, float]:
    dist: dict[int, float] = {}
    for o in g.ostia() or [min(g.nodes)]:
        dist.update(nx.single_source_dijkstra_path_length(g.graph, o, weight="length"))
    return dist


def _tubes_from_graph(g: CenterlineGraph, params: CaseParams) -> tuple[Tubes, list[np.ndarray]]:
    """Dense wall/fat tubes of the real tree and its longest left/right paths."""
    ct = params.contrast
    dist = _path_lengths(g)
    pts, rad, sp = [], [], []
    for a, b in g.graph.edges:
        pa, pb = g.graph.nodes[a]["pos"], g.graph.nodes[b]["pos"]
        n = max(2, int(np.ceil(np.linalg.norm(pb - pa) / 0.2)) + 1)
        t = np.linspace(0, 1, n)[:, None]
        pts.append(pa + t * (pb - pa))
        rad.append(g.graph.nodes[a]["radius"] + t[:, 0] * (g.graph.nodes[b]["radius"] - g.graph.nodes[a]["radius"]))
        sp.append(dist.get(a, 0) + t[:, 0] * (dist.get(b, 0) - dist.get(a, 0)))
    p, r, s = np.concatenate(pts), np.concatenate(rad), np.concatenate(sp)
    r = np.nan_to_num(r, nan=1.0)
    ro = r + 0.3
    hu = ct.aorta * (1 - ct.distal_falloff * np.clip(s / 160.0, 0, 1))
    tubes = Tubes(p, r, ro, np.zeros_like(p), ro + 1.2 + 0.5 * params.heart.epicardial_fat_mm, hu,
                  np.full(len(p), ct.wall_hu))
    paths = []
    for o in g.ostia():
        lengths = nx.single_source_dijkstra_path_length(g.graph, o, weight="length")
        far = max(lengths, key=lengths.get)
        path = nx.shortest_path(g.graph, o, far)
        paths.append(np.array([g.graph.nodes[n]["pos"] for n in path]))
    return tubes, paths


def _side_vein(path: np.ndarray, radius: float, frame: HeartFrame, params: CaseParams) -> tuple[np.ndarray, np.ndarray]:
    """A vein beside ``path`` on the heart surface side, ``gap_mm`` away from its wall."""
    vp = params.veins
    t = np.gradient(path, axis=0)
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)
    q = frame.to_local(path)
    radial = np.c_[np.zeros(len(q)), q[:, 1], q[:, 2]] @ frame.axes.T
    side = np.cross(t, radial)
    side /= np.maximum(np.linalg.norm(side, axis=1, keepdims=True), 1e-9)
    side = ndimage.gaussian_filter1d(side, 10, axis=0)
    side /= np.maximum(np.linalg.norm(side, axis=1, keepdims=True), 1e-9)
    r = np.linspace(vp.r_distal_mm, vp.r_sinus_mm, len(path))[::-1]
    off = radius + r + vp.gap_mm + 0.5
    pts = path + vp.side_deg * side * off[:, None]
    keep = slice(len(path) // 6, None)  # not near the ostium
    return pts[keep], r[keep]


def lesions_beside_lumen(params: CaseParams, paths: list[np.ndarray], sides: list, tubes: Tubes) -> list:
    """Calcium capsules (points, radii, HU) in the wall beside the real lumen, one per calcified
    or mixed lesion, on the longest right path for "RCA" lesions and the longest left otherwise.
    Soft plaque is not drawn here: the real lumen is not narrowed."""
    from scipy.spatial import cKDTree

    out = []
    tree = cKDTree(tubes.points)
    for les in params.disease.lesions:
        if les.kind == "soft" or not paths:
            continue
        want = "RIGHT" if les.vessel == "RCA" else "LEFT"
        path = next((p for p, sd in zip(paths, sides) if sd == want), paths[0])
        seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        c = les.position * s[-1]
        sel = np.flatnonzero(np.abs(s - c) < les.length_mm / 3)
        if len(sel) < 2:
            continue
        t = np.gradient(path, axis=0)[sel]
        t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)
        ref = np.array([np.cos(np.deg2rad(les.angle_deg)), np.sin(np.deg2rad(les.angle_deg)), 0.3])
        d = np.cross(t, ref)
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        r = tubes.r_lumen[tree.query(path[sel])[1]]
        rc = float(np.clip(0.4 * r.mean() + 0.35, 0.45, 1.5))
        out.append((path[sel] + d * (r + rc + 0.5)[:, None], np.full(len(sel), rc), les.calcium_hu))
    return out


def render_anatomy_case(params: CaseParams, annotation: str | Path) -> Phantom:
    """Render CT around the real tree ``annotation`` (+ its ``../Centerlines/<stem>.vtp``)."""
    t0 = time.perf_counter()
    annotation = Path(annotation)
    mask = read_volume(annotation, is_label=True)
    mask.array = (mask.array > 0).astype(np.uint8)
    graph = read_centerline(annotation.parent.parent / "Centerlines" / f"{annotation.stem}.vtp", reference=mask)
    ost = graph.ostia()  # left tree = the ostium further to patient left (+x)
    if len(ost) == 2:
        xs = [graph.graph.nodes[o]["pos"][0] for o in ost]
        left = ost[int(np.argmax(xs))]
        for comp in nx.connected_components(graph.graph):
            side = "LEFT" if left in comp else "RIGHT"
            for n in comp:
                graph.graph.nodes[n]["side"] = side
    grid = _target_grid(mask, params, graph.positions())
    label = resample_to_grid(mask, grid, order=0)
    shape, spacing, origin = label.shape, label.spacing, np.asarray(label.origin)
    pts = graph.positions()
    ostia = pts[[graph.nodes.index(o) for o in ost]] if ost else pts[:1]
    frame = fit_heart(graph, params)
    rr = params.heart.aortic_root_radius_mm
    if len(ostia) == 2:
        # the ostia lie on the sinus wall; the centre is opposite the vessels' first direction
        mid = ostia.mean(axis=0)
        d = float(np.linalg.norm(ostia[1] - ostia[0]))
        rr = max(rr, d / 2 + 3)
        out = np.zeros(3)
        for o in ost:
            near = [n for n, L in nx.single_source_dijkstra_path_length(graph.graph, o, cutoff=6.0,
                                                                          weight="length").items()]
            far = max(near, key=lambda n: np.linalg.norm(graph.graph.nodes[n]["pos"] - graph.graph.nodes[o]["pos"]))
            out += graph.graph.nodes[far]["pos"] - graph.graph.nodes[o]["pos"]
        along = (ostia[1] - ostia[0]) / max(d, 1e-6)
        back = -(out - (out @ along) * along)
        back /= max(float(np.linalg.norm(back)), 1e-6)
        root_c = mid + back * np.sqrt(max(rr ** 2 - (d / 2) ** 2, 1.0))
    else:
        root_c = ostia[0] + np.array([0, 0, rr])
    params.heart.aortic_root_radius_mm = float(rr)

    fac = (2, 2, 2) if params.grid.preset == "asoca" else (1, 1, 1)
    cshape = tuple((n - 1) // f + 2 if f > 1 else n for n, f in zip(shape, fac))
    coarse = Canvas(cshape, tuple(s * f for s, f in zip(spacing, fac)), origin)
    zr = (origin[2], origin[2] + (shape[0] - 1) * spacing[0])
    layout = chest_layout(params, frame, root_c, zr)
    dp, dr = graph.dense_points(1.0)
    layout["tree_fat"] = (dp, np.nan_to_num(dr, nan=1.0) + 6.0 + params.heart.epicardial_fat_mm)
    ChestPainter(coarse, params, frame, layout).paint()
    fine = Canvas(shape, spacing, origin)
    fine.img = upsample(coarse.img, fac, shape, order=1).astype(np.float32, copy=False)
    fine.sid = np.ascontiguousarray(upsample(coarse.sid, fac, shape, order=0))
    del coarse

    ct = params.contrast
    tubes, paths = _tubes_from_graph(graph, params)
    veins = [_side_vein(p, float(np.median(tubes.r_lumen)), frame, params) for p in paths if len(p) > 30]
    vein_tubes = [simple_tubes([v], params.veins.hu, ct.wall_hu, 1.0 + 0.4 * params.heart.epicardial_fat_mm)
                  for v in veins]
    paint_tubes(fine, vein_tubes, ct.fat, S["vein"])
    flat, _ = paint_tubes(fine, [tubes], ct.fat, 0, plaque_hu=ct.wall_hu, paint_lumen=False)
    sides = [graph.graph.nodes[o].get("side") for o in ost]
    calcium = lesions_beside_lumen(params, paths, sides, tubes)
    # lumen: the real mask, anti-aliased, HU from the nearest centerline point (distal fall-off)
    lab = label.array
    from scipy.spatial import cKDTree

    cover = ndimage.gaussian_filter(lab.astype(np.float32), 0.45, mode="constant")
    band = np.flatnonzero(cover.reshape(-1) > 0.02)
    kji = np.stack(np.unravel_index(band, shape), 1)
    world = origin + kji[:, ::-1] * np.array(spacing[::-1])
    _, near = cKDTree(tubes.points).query(world, workers=2)
    img = fine.img.reshape(-1)
    a = np.clip((cover.reshape(-1)[band] - 0.5) * 1.6 + 0.5, 0, 1).astype(np.float32)
    img[band] += a * (tubes.hu_lumen[near].astype(np.float32) - img[band])
    for pts_c, rad_c, hu_c in calcium:
        paint_calcium(fine, pts_c, rad_c, hu_c, params.disease.bloom_mm,
                      core_where=lambda fl: (lab.reshape(-1)[fl] == 0).astype(np.float32))
    fine.sid[lab > 0] = S["coronary_lumen"]
    fine.sid[(fine.sid == S["coronary_lumen"]) & (lab == 0)] = S["soft_tissue"]
    image = form_image(fine.img, spacing, params)
    geom = dict(spacing=spacing, origin=tuple(float(o) for o in origin))
    derived = {"shape": list(shape), "spacing": list(spacing), "origin": [float(o) for o in origin],
               "anatomy_case": annotation.stem, "tree_length_mm": round(graph.length_mm(), 1),
               "label_voxels": int(lab.sum()), "heart_length_mm": round(frame.length, 1),
               "heart_radius_mm": round(float(frame.lv_r), 1),
               "seconds": {"total": round(time.perf_counter() - t0, 2)}}
    del flat
    return Phantom(Volume(image, **geom), Volume(lab, is_label=True, **geom), graph,
                   Volume(fine.sid, is_label=True, **geom), derived)
