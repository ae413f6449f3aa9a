"""Benchmark: metric speed on real ASOCA masks, and the classical baselines on CT rendered
around them.

The ASOCA CT images are not redistributable, so this renders a crude contrast CT around each
real coronary mask (vessel lumen 350 HU; a 350 HU blood-pool ellipsoid next to the tree as the
confounder a global threshold cannot separate; 40 HU tissue; partial-volume blur; 30 HU noise)
and reports, per case and as mean ± std:

- all_metrics time on the full 512x512xN mask (prediction = mask dilated by one voxel and
  shifted 2 voxels),
- oracle global HU threshold, leave-one-out fitted HU threshold,
- oracle Frangi + threshold (filter restricted to the label box + 10 mm, at --work-spacing mm),
  leave-one-out fitted Frangi threshold.

Usage: python benchmarks/baselines_asoca.py [--cases 4] [--work-spacing 0.6]
Needs ../shared/data (exits with a message otherwise).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from coroseg.eval import baselines as B
from coroseg.eval.metrics import all_metrics, dice
from coroseg.io.volume import read_volume

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def render_ct(mask: np.ndarray, spacing: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    sp = np.asarray(spacing)
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0)
    centre = (lo + hi) / 2.0
    radii_mm = (hi - lo) * sp * 0.25
    img = np.full(mask.shape, 40.0, np.float32)
    # blood pool: an ellipsoid in the middle of the tree's box, kept 2 mm away from the lumen
    sl = tuple(slice(int(max(c - r / s - 1, 0)), int(min(c + r / s + 2, n)))
               for c, r, s, n in zip(centre, radii_mm, sp, mask.shape))
    g = np.ogrid[sl]
    inside = sum((((gi - c) * s) / r) ** 2 for gi, c, s, r in zip(g, centre, sp, radii_mm)) <= 1.0
    near = ndimage.distance_transform_edt(~mask[sl], sampling=sp) < 2.0
    img[sl][inside & ~near] = 350.0
    img[mask] = 350.0
    img = ndimage.gaussian_filter(img, sigma=0.4 / sp)
    img += rng.normal(0.0, 30.0, img.shape).astype(np.float32)
    return np.round(img).astype(np.int16)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=4, help="cases for the baselines (metrics use all 12)")
    ap.add_argument("--work-spacing", type=float, default=0.6, help="Frangi working spacing, mm")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not 2 <= args.cases <= 12:
        ap.error("--cases must be 2..12 (leave-one-out fitting needs two)")
    ann = SHARED / "asoca-anatomy" / "Annotations"
    if not ann.is_dir():
        print(f"needs {ann} (shared reference data); not found", file=sys.stderr)
        return 1
    import torch

    print(f"platform {platform.platform()}, python {platform.python_version()}, cpus {os.cpu_count()}, "
          f"torch {torch.__version__}")
    files = sorted(ann.glob("Normal_*.nrrd"), key=lambda p: int(p.stem.split("_")[1]))

    print("\n## all_metrics on full-size real masks (pred = dilate(mask) shifted 2 voxels)")
    times = []
    for f in files:
        vol = read_volume(f, is_label=True)
        ref = vol.array.astype(bool)
        pred = np.roll(ndimage.binary_dilation(ref), 2, axis=1)
        t0 = time.perf_counter()
        m = all_metrics(pred, ref, spacing=vol.spacing)
        times.append(time.perf_counter() - t0)
        print(f"{f.stem:10s} shape {vol.shape} dice {m['dice']:.4f} hd95 {m['hd95_mm']:.3f} mm "
              f"assd {m['assd_mm']:.3f} mm cldice {m['cldice']:.4f} time {times[-1]:.2f} s")
    print(f"all_metrics time: mean {np.mean(times):.2f} s, max {np.max(times):.2f} s per case")

    print(f"\n## classical baselines on rendered CT ({args.cases} cases, Frangi at {args.work_spacing} mm)")
    rng = np.random.default_rng(args.seed)
    data = []
    for f in files[: args.cases]:
        vol = read_volume(f, is_label=True)
        lab = vol.array.astype(bool)
        img = render_ct(lab, vol.spacing, rng)
        t0 = time.perf_counter()
        v, tv, dv = B.frangi_segmentation(img, spacing=vol.spacing, label=lab, work_spacing=args.work_spacing)
        tf = time.perf_counter() - t0
        th, dh = B.best_threshold_segmentation(img, lab)
        data.append((f.stem, img, lab, v, th, dh, tv, dv, tf))
    rows = []
    for i, (name, img, lab, v, th, dh, tv, dv, tf) in enumerate(data):
        others = [d for j, d in enumerate(data) if j != i]
        t_fit, _ = B.fit_threshold([d[1] for d in others], [d[2] for d in others])
        tv_fit, _ = B.fit_threshold([d[3] for d in others], [d[2] for d in others])
        d_fit, dv_fit = dice(B.apply_threshold(img, t_fit), lab), dice(B.apply_threshold(v, tv_fit), lab)
        rows.append((dh, d_fit, dv, dv_fit))
        print(f"{name:10s} HU oracle t={th:.0f} dice {dh:.4f} | HU fitted dice {d_fit:.4f} | "
              f"Frangi oracle t={tv:.4g} dice {dv:.4f} | Frangi fitted dice {dv_fit:.4f} | frangi {tf:.1f} s")
    r = np.array(rows)
    for k, label in enumerate(["HU threshold (oracle)", "HU threshold (fitted, LOO)",
                               "Frangi + threshold (oracle)", "Frangi + threshold (fitted, LOO)"]):
        print(f"{label:34s} Dice {r[:, k].mean():.4f} ± {r[:, k].std():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
