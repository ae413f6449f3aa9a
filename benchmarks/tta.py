"""Test-time mirroring: Dice and time with and without ``--tta``, the same cases, the same run.

Each case of the generalisation benchmark's sets (rendered once into ``--work`` by
``benchmarks/generalisation.py``; the recipe is fixed there) is segmented twice with the run's
automatic centerline, as ``coroseg predict`` ships: plain, and with ``tta=True`` (the scan and
its 3 single-axis mirrors, the whole pipeline on each, probabilities averaged). Printed per set:
mean Dice / clDice / recall of each, the paired difference with a 95 % t-interval over cases,
and the seconds per case.

    python benchmarks/tta.py --run demo_out/run --work /tmp/gen/sets [--sets home real shifted]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from generalisation import ANATOMY, TEST_SETS, build_sets, score_case  # noqa: E402


def interval(diff) -> str:
    """Mean and 95 % t-interval of paired differences."""
    from scipy import stats

    d = np.asarray(diff, float)
    if len(d) < 2:
        return f"{d.mean():+.3f}"
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return f"{d.mean():+.3f} [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="trained crop-model run folder")
    ap.add_argument("--work", type=Path, default=Path("/tmp/coroseg_generalisation"))
    ap.add_argument("--anatomy", type=Path, default=ANATOMY if ANATOMY.is_dir() else None)
    ap.add_argument("--sets", nargs="+", default=["home", "real", "shifted"], choices=list(TEST_SETS))
    ap.add_argument("--cases", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch

    from coroseg.data.layouts import load_dataset
    from coroseg.infer.pipeline import load, resolve_device

    dev = resolve_device(args.device)
    run = load(args.run, dev)
    sets = build_sets(args.work, args.sets, args.anatomy, args.cases)
    t_all = time.perf_counter()
    lines = ["| set | cases | Dice plain | Dice TTA | Δ Dice [95 % CI] | Δ clDice [95 % CI] | Δ recall [95 % CI] "
             "| s/case plain | s/case TTA |", "|---|---|---|---|---|---|---|---|---|"]
    for name, folder in sets.items():
        pairs = []
        for case in load_dataset(folder):
            [plain] = score_case(run, case, dev, modes=["auto"], predict_kwargs={})
            [tta] = score_case(run, case, dev, modes=["auto"], predict_kwargs={"tta": True})
            pairs.append((plain, tta))
            print(f"{name:13s} {case.case_id:11s} Dice {plain['dice']:.3f} -> {tta['dice']:.3f}  "
                  f"{plain['seconds']:.1f} s -> {tta['seconds']:.1f} s", flush=True)
        mean = {k: [np.mean([p[i][k] for p in pairs]) for i in (0, 1)] for k in ("dice", "seconds")}
        delta = {k: interval([t[k] - p[k] for p, t in pairs]) for k in ("dice", "cldice", "recall")}
        lines.append(f"| {name} | {len(pairs)} | {mean['dice'][0]:.3f} | {mean['dice'][1]:.3f} | {delta['dice']} "
                     f"| {delta['cldice']} | {delta['recall']} | {mean['seconds'][0]:.1f} | {mean['seconds'][1]:.1f} |")
    print(f"\nmachine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {dev}; run {args.run} ({run.config.model}); "
          f"{time.perf_counter() - t_all:.0f} s in all\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
