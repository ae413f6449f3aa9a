"""Read the 12 ASOCA centerlines and measure how well they sit in their lumen masks.

Prints per case: polylines, nodes, ostia, end points, tree length (mm), hit rate (fraction of
centerline points inside the mask / within one voxel of it), the coordinate convention chosen
by ``coords="auto"``, read time, and the Dice of ``rasterise(mode="tubes")`` with the mask.

Usage: python benchmarks/centerline_hit_rate.py [--data ../shared/data/asoca-anatomy]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=(repo / ".." / "shared" / "data" / "asoca-anatomy").resolve())
    args = ap.parse_args()

    import torch

    from coroseg.io.centerline_files import mask_hit_rate, read_centerline
    from coroseg.io.rasterise import rasterise
    from coroseg.io.volume import read_volume
    from coroseg.io.vtp import choose_convention, read_vtp_polylines

    print(f"platform {platform.platform()}, cpus {os.cpu_count()}, torch {torch.__version__}")
    if not args.data.exists():
        print(f"{args.data}: absent, nothing to measure")
        return
    hdr = (f"{'case':>9} {'lines':>5} {'nodes':>6} {'ostia':>5} {'ends':>4} {'len_mm':>7} "
           f"{'inside':>7} {'<=1vox':>7} {'conv':>5} {'read_s':>6} {'tubeDice':>8} {'tube_s':>6}")
    print(hdr)
    near_all, inside_all, conventions = [], [], set()
    for case in range(1, 13):
        mask = read_volume(args.data / "Annotations" / f"Normal_{case}.nrrd", is_label=True)
        path = args.data / "Centerlines" / f"Normal_{case}.vtp"
        t0 = time.perf_counter()
        g = read_centerline(path, reference=mask)
        t_read = time.perf_counter() - t0
        pts, lines, _ = read_vtp_polylines(path)
        conv = choose_convention(pts, mask)
        conventions.add(conv)
        inside, near = mask_hit_rate(g.positions(), mask)
        inside_all.append(inside)
        near_all.append(near)
        t0 = time.perf_counter()
        tube = rasterise(g, mask, mode="tubes").astype(bool)
        t_tube = time.perf_counter() - t0
        m = mask.array > 0
        dice = 2 * np.sum(tube & m) / (tube.sum() + m.sum())
        print(f"Normal_{case:<2} {len(lines):>5} {len(g):>6} {len(g.ostia()):>5} {len(g.endpoints()):>4} "
              f"{g.length_mm():>7.1f} {inside:>7.2%} {near:>7.2%} {conv:>5} {t_read:>6.2f} {dice:>8.3f} "
              f"{t_tube:>6.2f}")
    print(f"convention found: {sorted(conventions)} (see coroseg.io.vtp docstring); "
          f"min inside {min(inside_all):.2%}, min within 1 voxel {min(near_all):.2%}")


if __name__ == "__main__":
    main()
