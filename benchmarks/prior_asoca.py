"""Centerline prior on the 12 ASOCA coronary masks: extraction time and accuracy, crops vs grid.

For every case (``../shared/data/asoca-anatomy``):

- ``centerline_from_mask`` wall time (the mask read excluded) and its overlap with the
  reference centerline (fraction of reference points within one reference radius of ours =
  recall, and of ours within the radius of the nearest reference point = precision);
- crops from OUR centerline (what inference has), at the native spacing, for 2D 128x128 per
  axial slice and 3D 64^3 and 128^3: number of centerline crops (k-means, and DBSCAN) vs grid
  tiles (all tiles / tiles holding vessel), fraction of label voxels inside the crops, and
  vessel voxels per 1000 crop voxels (crops vs vessel-holding grid tiles vs all tiles).

Usage::

    python benchmarks/prior_asoca.py [--data ../shared/data/asoca-anatomy] [--cases 1 2 ...]
                                     [--figures DIR]

Data: Gharleghi et al., Scientific Data 10, 128 (2023) (ASOCA).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from coroseg.io.volume import read_volume
from coroseg.prior import (
    centerline_from_mask,
    centerline_overlap,
    covered,
    crop_centres,
    crop_centres_2d,
    crops_gif,
    grid_tiles,
    plot_crops_vs_grid,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT = (REPO / ".." / "shared" / "data" / "asoca-anatomy").resolve()
CONFIGS = {"2D 128x128": (1, 128, 128), "3D 64^3": (64, 64, 64), "3D 128^3": (128, 128, 128)}


def box_sums(sat: np.ndarray, lo_box: np.ndarray, centres: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Vessel voxels in each crop, from the summed-area table ``sat`` of the mask's bounding box."""
    lo = centres - size // 2 - lo_box
    hi = lo + size
    shape = np.array(sat.shape) - 1
    lo = np.clip(lo, 0, shape)
    hi = np.clip(hi, 0, shape)
    total = np.zeros(len(centres), dtype=np.int64)
    for bits in range(8):
        sel = [(hi if bits >> a & 1 else lo)[:, a] for a in range(3)]
        sign = (-1) ** (3 - sum(bits >> a & 1 for a in range(3)))
        total += sign * sat[sel[0], sel[1], sel[2]]
    return total


def union_fraction(mask: np.ndarray, centres: np.ndarray, size: np.ndarray) -> float:
    """Fraction of mask voxels inside at least one crop."""
    inside = np.zeros(mask.shape, dtype=bool)
    for c in centres:
        lo = np.maximum(c - size // 2, 0)
        hi = np.minimum(c - size // 2 + size, mask.shape)
        inside[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return float((inside & mask).sum() / max(mask.sum(), 1))


def machine() -> str:
    try:
        import torch

        tv = torch.__version__
    except ImportError:  # pragma: no cover
        tv = "absent"
    return f"{platform.platform()} | python {platform.python_version()} | cpus {os.cpu_count()} | torch {tv}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT)
    ap.add_argument("--cases", type=int, nargs="*", default=list(range(1, 13)))
    ap.add_argument("--figures", type=Path, default=None, help="write crops-vs-grid PNG/GIF of the first case here")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    try:
        from coroseg.io.centerline_files import read_centerline
    except ImportError:
        read_centerline = None
        print("reference reader coroseg.io.centerline_files.read_centerline unavailable: no overlap")

    agg = {name: [] for name in CONFIGS}
    t_skel_all, ov_all = [], []
    for case in args.cases:
        label = read_volume(args.data / "Annotations" / f"Normal_{case}.nrrd", is_label=True)
        mask = label.array > 0
        t0 = time.perf_counter()
        graph = centerline_from_mask(label)
        t_skel = time.perf_counter() - t0
        t_skel_all.append(t_skel)
        ov = None
        vtp = args.data / "Centerlines" / f"Normal_{case}.vtp"
        if read_centerline is not None and vtp.exists():
            ref = read_centerline(vtp, reference=label)
            ov = centerline_overlap(graph, ref)
            ref_ostia = np.array([ref.graph.nodes[o]["pos"] for o in ref.ostia()])
            mine = np.array([graph.graph.nodes[o]["pos"] for o in graph.ostia()])
            ost = [float(np.linalg.norm(mine - r, axis=1).min()) for r in ref_ostia] if len(mine) else []
            ov["ostium_err_mm"] = ost
            ov_all.append(ov)
        print(f"\nNormal_{case}: shape {label.shape} spacing {tuple(round(s, 3) for s in label.spacing)} "
              f"vessel voxels {int(mask.sum())}")
        print(f"  centerline: {t_skel:.2f} s, {graph}, branches {graph.n_branches()}")
        if ov is not None:
            print(f"  vs reference ({ov['length_ref_mm']:.0f} mm): recall {ov['recall']:.3f} precision "
                  f"{ov['precision']:.3f} mean dist ref->ours {ov['mean_dist_ref_mm']:.2f} mm, ostium errors "
                  + ", ".join(f"{e:.1f}" for e in ov["ostium_err_mm"]) + " mm")
        dense, rad = graph.dense_points(min(label.spacing) / 2)
        pts = label.world_to_index(dense)
        nz = np.argwhere(mask)
        lo_box, hi_box = nz.min(0), nz.max(0) + 1
        sub = mask[lo_box[0]:hi_box[0], lo_box[1]:hi_box[1], lo_box[2]:hi_box[2]].astype(np.int32)
        sat = np.zeros(tuple(np.array(sub.shape) + 1), dtype=np.int32)
        sat[1:, 1:, 1:] = sub.cumsum(0).cumsum(1).cumsum(2)
        for name, size in CONFIGS.items():
            size_a = np.array(size)
            t0 = time.perf_counter()
            kw = dict(shape=label.shape, spacing=label.spacing)
            if size[0] == 1:
                crops = crop_centres_2d(pts, size_2d=size[1:], **kw)
                t_crop = time.perf_counter() - t0
                crops_db = crop_centres_2d(pts, size_2d=size[1:], method="dbscan", **kw)
                crops_r = crop_centres_2d(pts, size_2d=size[1:], radii=rad, **kw)
            else:
                crops = crop_centres(pts, size=size, **kw)
                t_crop = time.perf_counter() - t0
                crops_db = crop_centres(pts, size=size, method="dbscan", **kw)
                crops_r = crop_centres(pts, size=size, radii=rad, **kw)
            assert covered(pts, crops, size).all() and covered(pts, crops_db, size).all()
            grid_all = grid_tiles(label.shape, size)
            grid_v = grid_tiles(label.shape, size, mask=mask)
            vol = float(np.prod(size_a))
            per_k = lambda c: 1000.0 * box_sums(sat, lo_box, c, size_a).sum() / (len(c) * vol)  # noqa: E731, B023 - used in this iteration only
            r = dict(n_crop=len(crops), n_dbscan=len(crops_db), n_rad=len(crops_r), n_grid=len(grid_all),
                     n_grid_v=len(grid_v), cov_crop=union_fraction(mask, crops, size_a),
                     cov_db=union_fraction(mask, crops_db, size_a), cov_rad=union_fraction(mask, crops_r, size_a),
                     v_crop=per_k(crops), v_rad=per_k(crops_r), v_grid_v=per_k(grid_v), v_grid=per_k(grid_all),
                     t=t_crop)
            agg[name].append(r)
            print(f"  {name:10s} crops kmeans {r['n_crop']:4d} dbscan {r['n_dbscan']:4d} kmeans+radius {r['n_rad']:4d}"
                  f" | grid all {r['n_grid']:5d} with vessel {r['n_grid_v']:4d} | label covered % kmeans "
                  f"{100 * r['cov_crop']:.1f} dbscan {100 * r['cov_db']:.1f} +radius {100 * r['cov_rad']:.1f} | "
                  f"vessel/1000 kmeans {r['v_crop']:.1f} +radius {r['v_rad']:.1f} grid-vessel {r['v_grid_v']:.1f} "
                  f"grid-all {r['v_grid']:.2f} | kmeans {t_crop:.2f} s")
        if args.figures is not None and case == args.cases[0]:
            size = CONFIGS["2D 128x128"]
            c2 = crop_centres_2d(pts, size_2d=size[1:], shape=label.shape, spacing=label.spacing)
            g2 = grid_tiles(label.shape, size)
            img = label.with_array(label.array.astype(np.float32), is_label=False)
            plot_crops_vs_grid(img, c2, g2, size, args.figures / f"Normal_{case}_crops_vs_grid_2d.png")
            size3 = CONFIGS["3D 64^3"]
            c3 = crop_centres(pts, size=size3, shape=label.shape, spacing=label.spacing)
            crops_gif(img, c3, size3, args.figures / f"Normal_{case}_crops_3d64.gif",
                      grid_centres=grid_tiles(label.shape, size3, mask=mask), step=4)
            print(f"  figures written to {args.figures}")

    print("\n=== summary over", len(args.cases), "cases (mean [min, max]) ===")
    t = np.array(t_skel_all)
    print(f"centerline_from_mask: {t.mean():.2f} s [{t.min():.2f}, {t.max():.2f}] per case")
    if ov_all:
        for key in ("recall", "precision"):
            v = np.array([o[key] for o in ov_all])
            print(f"overlap {key}: {v.mean():.3f} [{v.min():.3f}, {v.max():.3f}]")
        e = np.concatenate([o["ostium_err_mm"] for o in ov_all])
        print(f"ostium error (mm): median {np.median(e):.1f}, max {e.max():.1f}, >10 mm: {(e > 10).sum()}/{len(e)}")
    for name, rs in agg.items():
        def m(key, rs=rs):  # noqa: E306
            v = np.array([r[key] for r in rs], dtype=float)
            return f"{v.mean():.1f} [{v.min():.1f}, {v.max():.1f}]"
        def pc(key, rs=rs):  # noqa: E306
            v = 100 * np.array([r[key] for r in rs])
            return f"{v.mean():.1f} (min {v.min():.1f})"
        print(f"{name}:\n  crops kmeans {m('n_crop')}, dbscan {m('n_dbscan')}, kmeans+radius {m('n_rad')}; "
              f"grid all {m('n_grid')}, with vessel {m('n_grid_v')}\n  label covered %: kmeans {pc('cov_crop')}, "
              f"dbscan {pc('cov_db')}, kmeans+radius {pc('cov_rad')}, grid 100\n  vessel voxels per 1000: "
              f"kmeans {m('v_crop')}, kmeans+radius {m('v_rad')}, grid-vessel {m('v_grid_v')}, grid-all "
              f"{m('v_grid')}\n  kmeans crop time {m('t')} s")


if __name__ == "__main__":
    main()
