"""Where the automatic centerline loses the tree: the locator's mask under each selection rule.

For every case of the generalisation benchmark's sets (rendered by ``benchmarks/generalisation.py``
into ``--work``), the run's locator segments the scan once; its mask is then selected by each rule
below and scored on the locator grid against the reference: **centerline coverage** (fraction of
the reference centerline, every 0.5 mm, within one voxel of the selected mask) and **false
share** (fraction of selected voxels more than 2 voxels from the reference lumen).

    python benchmarks/locator_masks.py --run RUN --work /tmp/gen/sets --sets dev_real dev home

Rules: ``raw`` (probability >= 0.5, every piece), ``size`` (the shipped size rule: the two
largest trees and pieces >= 30 % of the largest), ``reach10`` (the largest tree and pieces within
10 mm of it, chained), ``hyst<t>`` (the size rule's trees grown into every connected region of
probability >= t: :func:`coroseg.infer.postprocess.grow_into`), ``bridge<g>`` (``hyst0.02`` plus the
pieces that continue one of its ends across a gap of up to g mm: :func:`coroseg.infer.bridging.bridge_pieces`,
config ``locator.bridge_mm``). ``pieces``: connected components
(26-connected) of the raw mask.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="folder with the rendered sets (<name>_s<seed>_n<cases>)")
    ap.add_argument("--sets", nargs="+", default=["dev_real", "dev", "home"])
    args = ap.parse_args()

    import torch
    from scipy import ndimage

    from coroseg.data.cache import load_centerline
    from coroseg.data.layouts import load_dataset
    from coroseg.data.preprocess import to_model_grid
    from coroseg.infer.bridging import bridge_pieces
    from coroseg.infer.pipeline import load, orient_lps, resolve_device
    from coroseg.infer.postprocess import grow_into, keep_main_components
    from coroseg.infer.stages import locate
    from coroseg.io.volume import read_volume

    dev = resolve_device("cpu")
    run = load(args.run, dev)
    loc_cfg = dataclasses.replace(run.config.locator, low_threshold=None)

    def size_rule(prob):
        return keep_main_components(prob.array >= 0.5, spacing=prob.spacing, keep_fraction=0.3)

    def hysteresis(prob, low=0.02):
        return grow_into(size_rule(prob), prob.array >= low)

    def bridged(prob, gap_mm):
        pieces = grow_into(prob.array >= 0.5, prob.array >= 0.02)
        return bridge_pieces(hysteresis(prob), pieces, prob, gap_mm=gap_mm)

    rules = {
        "raw": lambda prob: prob.array >= 0.5,
        "size": size_rule,
        "reach10": lambda prob: keep_main_components(prob.array >= 0.5, spacing=prob.spacing, reach_mm=10,
                                                     min_piece_mm3=1),
        "hyst0.15": lambda prob: hysteresis(prob, 0.15),
        "hyst0.02": hysteresis,
        "bridge10": lambda prob: bridged(prob, 10.0),
        "bridge20": lambda prob: bridged(prob, 20.0),
    }
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}; run {args.run}")
    total = {k: [] for k in rules}
    for name in args.sets:
        folder = next(iter(sorted(args.work.glob(f"{name}_s*_n*"))), None)
        if folder is None:
            raise SystemExit(f"{args.work}: no rendered set {name!r} (run benchmarks/generalisation.py first)")
        for case in load_dataset(folder):
            label = read_volume(case.label, is_label=True)
            pts, _ = load_centerline(case, label)[0].dense_points(0.5)
            prob, _ = locate(orient_lps(read_volume(case.image)), run.locator, loc_cfg, device=dev)
            lab = to_model_grid(orient_lps(label), loc_cfg.spacing)
            near = ndimage.binary_dilation(lab.array > 0, iterations=2)
            idx = np.round(prob.world_to_index(pts)).astype(int)
            ok = np.all((idx >= 0) & (idx < np.array(prob.shape)), axis=1)
            import cc3d

            pieces = int(cc3d.connected_components(prob.array >= 0.5, connectivity=26, return_N=True)[1])
            cells = [f"pieces {pieces}"]
            for rule, select in rules.items():
                m = select(prob)
                grown = ndimage.maximum_filter(m, 3)
                hit = np.zeros(len(pts), bool)
                hit[ok] = grown[tuple(idx[ok].T)]
                false = float((m & ~near).sum() / max(int(m.sum()), 1))
                total[rule].append((hit.mean(), false))
                cells.append(f"{rule} {hit.mean():.2f}/{false:.2f}")
            print(f"{name:9s} {case.case_id}  raw mask {cells[0]}; coverage/false: " + "  ".join(cells[1:]),
                  flush=True)
    print("\n| rule | centerline coverage | false share |\n|---|---|---|")
    for rule, v in total.items():
        a = np.array(v)
        print(f"| {rule} | {a[:, 0].mean():.2f} | {a[:, 1].mean():.2f} |")


if __name__ == "__main__":
    main()
