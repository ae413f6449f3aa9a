"""Is the phantom too easy? Oracle-threshold and Frangi Dice, HU statistics, speed, memory.

For each case (rendered in memory, as ``coroseg synth`` would write it):

- **oracle HU threshold**: the Dice of ``image >= t`` against the lumen label for the best
  single global ``t`` (chosen per case *with* the label, over every integer HU exactly);
- **oracle Frangi**: Frangi vesselness (``skimage.filters.frangi``, bright ridges, scales
  0.5-2.5 mm) on a crop around the coronary tree, resampled to ``--frangi-mm`` isotropic
  voxels, thresholded at the best of 2000 quantile levels (label resampled likewise);
- vessel voxel fraction, HU median [5th, 95th percentile] per structure, generation time and
  peak resident memory.

Both Dice values must stay <= 0.5, else the phantom can be segmented by a threshold.

Usage::

    python benchmarks/synth_realism.py --preset small --cases 10
    python benchmarks/synth_realism.py --preset asoca --cases 10
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
from scipy import ndimage


def best_threshold_dice_int(img: np.ndarray, lab: np.ndarray) -> tuple[float, int]:
    """Exact best Dice of ``img >= t`` over all integer ``t`` (img int16)."""
    v = img.astype(np.int32).ravel() + 1024
    v = np.clip(v, 0, None)
    n = int(v.max()) + 1
    tot = np.bincount(v, minlength=n)[::-1].cumsum()[::-1]  # voxels >= t
    pos = np.bincount(v, weights=lab.ravel().astype(np.float64), minlength=n)[::-1].cumsum()[::-1]
    dice = 2 * pos / (tot + lab.sum())
    i = int(np.argmax(dice))
    return float(dice[i]), i - 1024


def best_threshold_dice_float(x: np.ndarray, lab: np.ndarray, levels: int = 2000) -> float:
    """Best Dice of ``x >= t`` over ``levels`` quantile thresholds."""
    x = x.ravel()
    lab = lab.ravel().astype(bool)
    qs = np.unique(np.quantile(x, np.linspace(0.5, 1.0, levels)))
    idx = np.searchsorted(qs, x, side="right")  # bin b: qs[b-1] <= x < qs[b]
    tot = np.bincount(idx, minlength=len(qs) + 1)[::-1].cumsum()[::-1]
    pos = np.bincount(idx, weights=lab.astype(float), minlength=len(qs) + 1)[::-1].cumsum()[::-1]
    dice = 2 * pos[1:] / (tot[1:] + lab.sum())
    return float(dice.max())


def frangi_dice(img: np.ndarray, lab: np.ndarray, spacing, iso_mm: float) -> float:
    from skimage.filters import frangi

    k, j, i = np.nonzero(lab)
    m = np.ceil(6.0 / np.asarray(spacing)).astype(int)
    sl = tuple(slice(max(int(a.min()) - mm, 0), int(a.max()) + mm + 1) for a, mm in zip((k, j, i), m))
    zoom = np.asarray(spacing) / iso_mm
    crop = ndimage.zoom(img[sl].astype(np.float32), zoom, order=1)
    lab_c = ndimage.zoom(lab[sl].astype(np.float32), zoom, order=1) >= 0.5
    sig = np.array([0.5, 1.0, 1.5, 2.5]) / iso_mm
    v = frangi(crop, sigmas=sig, black_ridges=False)
    return best_threshold_dice_float(v, lab_c)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", choices=["small", "asoca"])
    ap.add_argument("--cases", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frangi-mm", type=float, default=None,
                    help="isotropic voxel for Frangi (default 0.8 asoca, 1.0 small)")
    args = ap.parse_args()
    iso = args.frangi_mm or (0.8 if args.preset == "asoca" else 1.0)

    import torch

    from coroseg.synth.anatomy import STRUCTURES
    from coroseg.synth.dataset import case_params, split_plan
    from coroseg.synth.render import render_phantom

    print(f"platform {platform.platform()}, python {platform.python_version()}, cpus {os.cpu_count()}, "
          f"torch {torch.__version__}")
    print(f"preset {args.preset}, cases {args.cases}, seed {args.seed}, Frangi voxel {iso} mm")
    names = {v: k for k, v in STRUCTURES.items()}
    hu: dict[str, list[np.ndarray]] = {}
    rows = []
    hdr = f"{'case':>10} {'group':>8} {'shape':>15} {'gen s':>6} {'vessel %':>8} {'thr Dice':>8} {'thr HU':>6} " \
          f"{'Frangi Dice':>11} {'peak MB':>8}"
    print(hdr)
    for i, (_, group) in enumerate(split_plan(args.cases)):
        p = case_params(i, seed=args.seed, preset=args.preset, group=group)
        t0 = time.perf_counter()
        ph = render_phantom(p)
        gen = time.perf_counter() - t0
        img, lab, sid = ph.image.array, ph.label.array, ph.structures.array
        d_thr, t_thr = best_threshold_dice_int(img, lab)
        d_fr = frangi_dice(img, lab, ph.image.spacing, iso)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        frac = 100 * lab.mean()
        rows.append((gen, frac, d_thr, d_fr, peak))
        print(f"{p.case_id:>10} {group:>8} {'x'.join(map(str, img.shape)):>15} {gen:6.1f} {frac:8.3f} {d_thr:8.3f} "
              f"{t_thr:6d} {d_fr:11.3f} {peak:8.0f}", flush=True)
        sub = (slice(None, None, 2),) * 3
        for v in np.unique(sid[sub]):
            vals = img[sub][sid[sub] == v]
            hu.setdefault(names.get(int(v), str(v)), []).append(vals[:: max(1, len(vals) // 20000)])
        del ph, img, lab, sid
    r = np.array(rows)
    print(f"\nmean over {len(r)} cases: generation {r[:, 0].mean():.1f} s (max {r[:, 0].max():.1f}), "
          f"vessel fraction {r[:, 1].mean():.3f} %, oracle threshold Dice {r[:, 2].mean():.3f} "
          f"(max {r[:, 2].max():.3f}), oracle Frangi Dice {r[:, 3].mean():.3f} (max {r[:, 3].max():.3f}), "
          f"peak RSS {r[:, 4].max():.0f} MB")
    ok = r[:, 2].max() <= 0.5 and r[:, 3].max() <= 0.5
    print(f"criterion (every case: threshold Dice <= 0.5 and Frangi Dice <= 0.5): {'PASS' if ok else 'FAIL'}")
    print("\nHU per structure (all cases pooled): median [p5, p95]")
    for name in STRUCTURES:
        if name in hu:
            v = np.concatenate(hu[name]).astype(float)
            print(f"  {name:>15}: {np.median(v):7.0f} [{np.percentile(v, 5):6.0f}, {np.percentile(v, 95):6.0f}]")


if __name__ == "__main__":
    main()
