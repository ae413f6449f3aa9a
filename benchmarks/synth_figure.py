"""Figure: a phantom case beside a real chest CTA (axial, coronal, thick-slab MIP).

Writes ``docs/images/phantom_vs_real.png``. The real scan is the TotalSegmentator test CTA
in ``../shared/data/real-ct/chest-cta`` (1.5 mm); without it only the phantom row is drawn.
All panels use the same CTA window (W 900, L 200) and millimetre axes.

Usage::

    python benchmarks/synth_figure.py [--preset asoca] [--seed 0] [--case 1] [--out docs/images/phantom_vs_real.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL = (REPO / ".." / "shared" / "data" / "real-ct" / "chest-cta" / "ct.nii.gz").resolve()
WINDOW = (200 - 450, 200 + 450)


def _panels(vol, centre_world, mip_world=None, slab_mm: float = 12.0):
    """Axial and coronal slices through ``centre_world`` and an axial thick-slab MIP."""
    a = vol.array
    k, j, _ = np.round(vol.world_to_index(np.asarray(centre_world)[None])[0]).astype(int)
    k = int(np.clip(k, 0, a.shape[0] - 1))
    j = int(np.clip(j, 0, a.shape[1] - 1))
    km = k if mip_world is None else int(np.round(vol.world_to_index(np.asarray(mip_world)[None])[0][0]))
    half = max(1, int(round(slab_mm / 2 / vol.spacing[0])))
    mip = a[max(km - half, 0): km + half + 1].max(axis=0)
    sz, sy, sx = vol.spacing
    ext_ax = (0, a.shape[2] * sx, a.shape[1] * sy, 0)
    ext_co = (0, a.shape[2] * sx, 0, a.shape[0] * sz)
    return [("axial", a[k], ext_ax), ("coronal", a[::-1, j, :], ext_co), (f"{slab_mm:.0f} mm axial MIP", mip, ext_ax)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="asoca", choices=["small", "asoca"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--case", type=int, default=11, help="case index (odd = Diseased)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "phantom_vs_real.png")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from coroseg.io.atomic import atomic_path
    from coroseg.io.volume import read_volume
    from coroseg.synth.dataset import case_params
    from coroseg.synth.render import render_phantom

    group = "Normal" if args.case % 2 == 0 else "Diseased"
    params = case_params(args.case, seed=args.seed, preset=args.preset, group=group)
    ph = render_phantom(params)
    lab = ph.label.array
    # axial/coronal through the heart's middle (most blood + myocardium), MIP where most label is
    from coroseg.synth.anatomy import STRUCTURES as S

    sid = ph.structures.array
    heart = np.isin(sid, [S["myocardium"], S["left_blood"], S["right_blood"]])
    k = int(np.argmax(heart.sum(axis=(1, 2))))
    _, jj, ii = np.nonzero(heart[k: k + 1])
    centre = ph.image.index_to_world(np.array([[k, np.median(jj), np.median(ii)]]))[0]
    km = int(np.argmax(lab.sum(axis=(1, 2))))
    mip_c = ph.image.index_to_world(np.array([[km, 0, 0]]))[0]
    rows = [(f"phantom ({params.grid.preset} preset, {group.lower()}, "
             f"{ph.image.spacing[1]:.2f} x {ph.image.spacing[1]:.2f} x {ph.image.spacing[0]:.3f} mm)",
             _panels(ph.image, centre, mip_c))]
    if REAL.exists():
        real = read_volume(REAL)
        ra = real.array
        # real heart centre: the centroid of bright blood below the aortic arch (rough, fixed)
        kc = int(0.42 * ra.shape[0])
        m = ra[kc] > 200
        jj, ii = np.nonzero(m)
        rc = real.index_to_world(np.array([[kc, np.median(jj), np.median(ii)]]))[0]
        rows.append(("real chest CTA (TotalSegmentator test scan, 1.5 mm)", _panels(real, rc)))
    fig, axes = plt.subplots(len(rows), 3, figsize=(15, 5.2 * len(rows)), squeeze=False)
    for r, (title, panels) in enumerate(rows):
        for c, (name, im, ext) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(im, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], extent=ext, interpolation="bilinear")
            ax.set_title(f"{title}\n{name}" if c == 0 else name, fontsize=10, loc="left")
            ax.set_xlabel("mm")
    fig.suptitle("coroseg synthetic CTCA phantom (top) vs real contrast CT (bottom); window W900/L200", fontsize=12)
    fig.tight_layout()
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    print(f"wrote {args.out}; phantom case {params.case_id} rendered in {ph.derived['seconds']['total']} s")


if __name__ == "__main__":
    main()
