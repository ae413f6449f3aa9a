"""Deterministic rendering of one case: parameters -> CT image, lumen label, centerlines.

Pipeline (:func:`render_phantom`):

1. heart frame and procedural coronary tree (:mod:`~coroseg.synth.tree`), veins, lesions;
2. voxel grid placed around the tree (``offset_mm`` from the centre), slice count from the
   tree extent;
3. chest and heart painted on a coarse grid (2x the voxel size for ``asoca``), upsampled
   linearly to the voxel grid;
4. cardiac veins and small unlabelled arteries (twigs, septal perforators) — the distractors —
   then the labelled arteries (fat sleeve, wall/plaque, lumen) and calcium, painted on the
   voxel grid with anti-aliased coverage (partial volume); label = lumen of the labelled
   arteries (signed distance < 0 at the voxel centre, plus every voxel a centerline passes
   through), outside the aortic sinus;
5. image formation: Gaussian PSF, optional motion blur, spatially correlated noise, int16
   clipped to [-1024, 3071].
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from coroseg.io.centerline import CenterlineGraph
from coroseg.io.volume import Volume
from coroseg.synth.anatomy import STRUCTURES as S
from coroseg.synth.anatomy import ChestPainter
from coroseg.synth.canvas import Canvas
from coroseg.synth.heart import make_frame
from coroseg.synth.layout import chest_layout
from coroseg.synth.params import CaseParams
from coroseg.synth.tree import TreeBuilder
from coroseg.synth.vessels import Tubes, apply_lesions, artery_tubes, simple_tubes, to_graph


@dataclass
class Phantom:
    """One rendered case. ``structures`` holds :data:`~coroseg.synth.anatomy.STRUCTURES` ids."""

    image: Volume
    label: Volume
    centerlines: CenterlineGraph
    structures: Volume
    derived: dict = field(default_factory=dict)


def render_case(params: CaseParams) -> tuple[Volume, Volume, CenterlineGraph]:
    """Render ``params`` to ``(image int16 HU, label uint8 lumen, centerlines LPS mm)``."""
    ph = render_phantom(params)
    return ph.image, ph.label, ph.centerlines


def build_vessels(params: CaseParams):
    """Heart frame, aortic root, coronary vessels, veins and unlabelled twigs (world mm, heart
    base at the origin)."""
    frame = make_frame(params.heart)
    root_c = frame.to_world(frame.aortic_root[None])[0]
    tb = TreeBuilder(params, frame, root_c, params.heart.aortic_root_radius_mm)
    vessels = tb.build()
    return frame, root_c, vessels, tb.veins(), tb.twigs()


def place_grid(params: CaseParams,
               points: np.ndarray) -> tuple[tuple[int, int, int], tuple[float, float, float], np.ndarray]:
    """Grid shape ``(Z, Y, X)``, spacing ``(sz, sy, sx)`` and origin (LPS) holding ``points``."""
    g = params.grid
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre = (lo + hi) / 2 - np.asarray(g.offset_mm)
    sxy, sz = g.spacing_xy, g.spacing_z
    need_xy = float(np.max(np.abs(np.stack([lo - centre, hi - centre])[:, :2]))) * 2 + 16
    if need_xy > g.n_xy * sxy:  # keep the whole tree in view
        centre[:2] = (lo[:2] + hi[:2]) / 2
        need_xy = float(np.max(hi[:2] - lo[:2])) + 16
        sxy = max(sxy, need_xy / g.n_xy)
    need_z = hi[2] - lo[2] + 2 * g.margin_z_mm
    nz = int(np.clip(np.ceil(need_z / sz), g.n_z_min, g.n_z_max))
    if nz * sz < hi[2] - lo[2] + 4:
        sz = (hi[2] - lo[2] + 4) / nz
        centre[2] = (lo[2] + hi[2]) / 2
    shape = (nz, g.n_xy, g.n_xy)
    spacing = (float(sz), float(sxy), float(sxy))
    origin = centre - (np.array(shape[::-1]) - 1) / 2 * np.array(spacing[::-1])
    return shape, spacing, origin


def upsample(arr: np.ndarray, factor: tuple[int, int, int], shape: tuple[int, int, int], *, order: int) -> np.ndarray:
    """Upsample by integer factors with grid points aligned (coarse ``i`` = fine ``f*i``)."""
    out = arr
    for ax, f in enumerate(factor):
        if f == 1:
            continue
        n = shape[ax]
        pos = np.arange(n) / f
        i0 = np.minimum(pos.astype(int), out.shape[ax] - 1)
        if order == 0:
            out = np.take(out, np.minimum(np.round(pos).astype(int), out.shape[ax] - 1), axis=ax)
            continue
        i1 = np.minimum(i0 + 1, out.shape[ax] - 1)
        w = (pos - i0).astype(np.float32)
        sh = [1, 1, 1]
        sh[ax] = n
        w = w.reshape(sh)
        out = np.take(out, i0, axis=ax) * (1 - w) + np.take(out, i1, axis=ax) * w
    return out[: shape[0], : shape[1], : shape[2]]


def render_phantom(params: CaseParams) -> Phantom:
    """Render every structure of one case; see the module docstring for the steps."""
    t0 = time.perf_counter()
    frame, root_c, vessels, veins, twigs = build_vessels(params)
    calcium = apply_lesions(params, vessels)
    graph = to_graph(vessels)
    groups = artery_tubes(params, vessels)
    art = Tubes.concat(groups)
    shape, spacing, origin = place_grid(params, art.points)
    t_tree = time.perf_counter() - t0

    # ---- coarse chest ----------------------------------------------------------------------
    fac = (2, 2, 2) if params.grid.preset == "asoca" else (1, 1, 1)
    cshape = tuple((n - 1) // f + 2 if f > 1 else n for n, f in zip(shape, fac))
    cspacing = tuple(s * f for s, f in zip(spacing, fac))
    coarse = Canvas(cshape, cspacing, origin)
    zr = (origin[2], origin[2] + (shape[0] - 1) * spacing[0])
    layout = chest_layout(params, frame, root_c, zr)
    layout["tree_fat"] = (art.points[::5], art.r_fat[::5] + 2.0 + params.heart.epicardial_fat_mm)
    ChestPainter(coarse, params, frame, layout).paint()
    t_chest = time.perf_counter() - t0 - t_tree

    fine = Canvas(shape, spacing, origin)
    fine.img = upsample(coarse.img, fac, shape, order=1).astype(np.float32, copy=False)
    fine.sid = np.ascontiguousarray(upsample(coarse.sid, fac, shape, order=0))
    del coarse

    # ---- vessels on the voxel grid -----------------------------------------------------------
    ct = params.contrast
    vp = params.veins
    vein_tubes = [simple_tubes([v], vp.hu, ct.wall_hu, 1.0 + 0.4 * params.heart.epicardial_fat_mm) for v in veins]
    paint_tubes(fine, vein_tubes, ct.fat, S["vein"])
    twig_tubes = []
    for pts, r, s0, surface in twigs:
        tw = simple_tubes([(pts, r)], 0.0, ct.wall_hu, 0.8 + 0.3 * params.heart.epicardial_fat_mm if surface else 0.0)
        s_path = s0 + np.linspace(0, len(pts) * 0.5, len(tw.points))
        tw.hu_lumen = ct.aorta * (1 - ct.distal_falloff * np.clip(s_path / 160.0, 0, 1))
        twig_tubes.append(tw)
    paint_tubes(fine, twig_tubes, ct.fat, S["small_artery"])
    lumen_flat, lumen_sdf = paint_tubes(fine, groups, ct.fat, S["coronary_lumen"], plaque_hu=ct.wall_hu)
    for cal in calcium:
        paint_calcium(fine, cal["points"], cal["radius"], cal["hu"], params.disease.bloom_mm)
    label = np.zeros(shape, np.uint8)
    inside = lumen_sdf < 0
    world = fine.origin + np.stack(np.unravel_index(lumen_flat[inside], shape), 1)[:, ::-1] * np.array(spacing[::-1])
    keep = np.linalg.norm(world - root_c, axis=1) > params.heart.aortic_root_radius_mm
    label.reshape(-1)[lumen_flat[inside][keep]] = 1
    force_voxels(label, Volume(label, spacing, tuple(origin)), np.concatenate([art.points, graph.positions()]))
    fine.sid[label > 0] = S["coronary_lumen"]
    fine.sid[(fine.sid == S["coronary_lumen"]) & (label == 0)] = S["left_blood"]
    t_vessels = time.perf_counter() - t0 - t_tree - t_chest

    img = form_image(fine.img, spacing, params)
    t_total = time.perf_counter() - t0
    geom = dict(spacing=spacing, origin=tuple(float(o) for o in origin))
    derived = {"shape": list(shape), "spacing": list(spacing), "origin": [float(o) for o in origin],
               "n_vessels": len(vessels), "tree_length_mm": round(graph.length_mm(), 1),
               "vessels": {n: {"length_mm": round(len(v.points) * 0.5, 1), "r_start_mm": round(float(v.radius[0]), 3),
                               "r_end_mm": round(float(v.radius[-1]), 3), "parent": v.parent}
                           for n, v in vessels.items()},
               "label_voxels": int(label.sum()),
               "seconds": {"tree": round(t_tree, 2), "chest": round(t_chest, 2), "vessels": round(t_vessels, 2),
                           "total": round(t_total, 2)}}
    return Phantom(Volume(img, **geom), Volume(label, is_label=True, **geom), graph,
                   Volume(fine.sid, is_label=True, **geom), derived)


def paint_calcium(canvas: Canvas, points: np.ndarray, radius: np.ndarray, hu: float, bloom_mm: float, *,
                  core_where: np.ndarray | None = None) -> None:
    """A calcified deposit: a blooming halo (40 % of its contrast, ``bloom_mm`` wide, may spill
    over the lumen as in real CT) under a sharp core at ``hu`` (``core_where``: per band voxel)."""
    flat, _, idx, dist = canvas.tube_distance(points, float(radius.max()) + 2 * bloom_mm + 2 * canvas.edge)
    sdf = dist - radius[idx]
    old = canvas.img.reshape(-1)[flat]
    canvas.paint_flat(flat, sdf - bloom_mm, old + np.float32(0.4) * (np.float32(hu) - old), 0,
                      width=canvas.edge + bloom_mm)
    where = None if core_where is None else core_where(flat)
    canvas.paint_flat(flat, sdf, hu, S["calcium"], where=where)


def force_voxels(label: np.ndarray, geom: Volume, points: np.ndarray) -> None:
    """Set the voxels containing ``points`` (both neighbours on a rounding tie) to 1."""
    idx = geom.world_to_index(points)
    for eps in (-1e-6, 1e-6):
        k = np.floor(idx + 0.5 + eps).astype(int)
        ok = np.all((k >= 0) & (k < np.array(label.shape)), axis=1)
        label[tuple(k[ok].T)] = 1


def paint_tubes(canvas: Canvas, groups: list[Tubes], fat_hu: float, lumen_sid: int, *,
                plaque_hu: float | None = None, paint_lumen: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Paint fat sleeves, walls and lumens of several tube groups (union = minimum distance).

    Returns the candidate voxels (flat indices) and their lumen signed distance (mm).
    """
    per = []
    for t in groups:
        if len(t.points) == 0:
            continue
        reach = float(t.r_fat.max()) + 2 * canvas.edge
        flat, world, i, d = canvas.tube_distance(t.points, reach)
        d_out = np.linalg.norm(world - t.points[i] - t.offset[i], axis=1) - t.r_outer[i]
        per.append((flat, d - t.r_lumen[i], d_out, d - t.r_fat[i], t.hu_lumen[i], t.hu_wall[i]))
    if not per:
        return np.zeros(0, np.int64), np.zeros(0)
    allf = np.unique(np.concatenate([p[0] for p in per]))
    m = len(allf)
    lum, out, fat = np.full(m, np.inf), np.full(m, np.inf), np.full(m, np.inf)
    hu_l, hu_w = np.zeros(m), np.zeros(m)
    for flat, sl, so, sf, hl, hw in per:
        pos = np.searchsorted(allf, flat)
        b = sl < lum[pos]
        lum[pos[b]], hu_l[pos[b]] = sl[b], hl[b]
        b = so < out[pos]
        out[pos[b]], hu_w[pos[b]] = so[b], hw[b]
        fat[pos] = np.minimum(fat[pos], sf)
    canvas.paint_flat(allf, fat, fat_hu, S["fat"])
    wall_sid = S["soft_tissue"]
    if plaque_hu is not None:
        a = canvas.paint_flat(allf, out, hu_w, 0)
        plaque = (a > 0.5) & (np.abs(hu_w - plaque_hu) > 1e-3)
        canvas.sid.reshape(-1)[allf[(a > 0.5) & ~plaque]] = wall_sid
        canvas.sid.reshape(-1)[allf[plaque]] = S["plaque"]
    else:
        canvas.paint_flat(allf, out, hu_w, wall_sid)
    if paint_lumen:
        canvas.paint_flat(allf, lum, hu_l, lumen_sid)
    return allf, lum


def form_image(img: np.ndarray, spacing, params: CaseParams) -> np.ndarray:
    """PSF blur, motion blur, correlated noise, HU offset; int16 HU clipped to [-1024, 3071]."""
    ip = params.image
    sp = np.asarray(spacing)
    out = ndimage.gaussian_filter(img, ip.psf_sigma_mm / sp, output=np.float32, mode="nearest", truncate=3.0)
    if ip.motion_blur_mm > 0:
        out = ndimage.gaussian_filter1d(out, ip.motion_blur_mm / sp[ip.motion_axis], axis=ip.motion_axis,
                                        output=np.float32, mode="nearest", truncate=3.0)
    rng = np.random.default_rng(ip.noise_seed)
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    sig = ip.noise_corr_mm / sp
    sig[0] *= 0.5  # noise is mostly correlated in-plane (reconstruction kernel)
    noise = ndimage.gaussian_filter(noise, sig, output=np.float32, mode="wrap", truncate=3.0)
    noise *= np.float32(ip.noise_sigma_hu / max(float(noise[::4, ::4, ::4].std()), 1e-6))
    out += noise
    del noise
    if ip.hu_offset:
        out += np.float32(ip.hu_offset)
    np.clip(out, -1024, 3071, out=out)
    return np.rint(out).astype(np.int16)
