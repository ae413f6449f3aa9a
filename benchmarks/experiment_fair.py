"""The prior work's claim at equal total budgets: several seeds, a dataset per seed, paired intervals.

For every seed a fresh dataset is made (so the held-out cases differ from seed to seed) and
``coroseg experiment`` (:func:`coroseg.experiment.run_experiment`) trains and tests every arm on it:

- ``small``: 40 procedural ``small`` phantoms (synth seed 1000 + seed; 24 train, 8 val, 8 test),
  all arms (2D and 3D);
- ``real``: ``asoca``-preset renders of the real ASOCA trees in ../shared (synth seed 2000 + seed,
  40 renders of 12 trees, 8 held out from 2 test trees; the trees are split per seed and a tree's
  renders never straddle splits), the 3D arms only, trained at 0.8 mm to fit a CPU budget.

The budget of an arm is the total number of training patches of every network it trains (a crop
arm: half to its locator, half to its crop model). Writes one ``results.md`` per set under
``--work`` and, with ``--out``, both tables into one file headed by the command, the commit, the
machine and the wall time.

    python benchmarks/experiment_fair.py --work /tmp/exp17 --out docs/results/experiment.md
    python benchmarks/experiment_fair.py --work /tmp/exp17 --sets small --seeds 0 1 2 --budget 3000
"""

from __future__ import annotations

import argparse
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ANATOMY = REPO.parent / "shared" / "data" / "asoca-anatomy"

#: the experiment's CPU-sized networks and patches (every arm alike)
OVERRIDES = {"channels": [16, 32, 64, 128], "patch_size": [48, 48, 48], "augment": 0.5,
             "locator_channels": [16, 32, 64, 128], "locator_spacing_factor": 1.0, "locator_patch": [48, 48, 48],
             "locator_samples_per_case": 16}
#: per set: (preset, cases per seed, synth seed base, anatomy?, extra training options)
SETS = {"small": ("small", 40, 1000, False, {"spacing": "min"}),
        "real": ("asoca", 40, 2000, True, {"spacing": [0.8, 0.8, 0.8]})}


def make_data(work: Path, name: str, seed: int, anatomy: Path | None) -> Path:
    """The set's dataset for ``seed`` (made once, then re-used)."""
    from coroseg.synth import synth_dataset

    preset, cases, base, real, _ = SETS[name]
    folder = work / "data" / f"{name}_seed{seed}"
    if not (folder / "manifest.json").exists():
        t = time.perf_counter()
        synth_dataset(folder, cases, preset=preset, seed=base + seed, anatomy_dir=anatomy if real else None,
                      progress=False)
        print(f"{name} seed {seed}: {cases} phantoms in {time.perf_counter() - t:.0f} s", flush=True)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="data, runs and per-set results go here")
    ap.add_argument("--out", type=Path, default=None, help="write both sets' results into this markdown file")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=3000, help="total training patches of a full arm")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--anatomy", type=Path, default=ANATOMY if ANATOMY.is_dir() else None)
    args = ap.parse_args()

    from coroseg.experiment import ARMS, ARMS_3D, run_experiment
    from coroseg.io.atomic import write_text

    command = "python benchmarks/experiment_fair.py " + shlex.join(sys.argv[1:])
    git = lambda *a: subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()  # noqa: E731
    commit = git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain", "--", "src") else "")
    t_all = time.perf_counter()
    parts = []
    for name in args.sets:
        if SETS[name][3] and args.anatomy is None:
            print(f"set {name}: skipped, the real trees (../shared/data/asoca-anatomy) are not here")
            continue
        t = time.perf_counter()
        data = {s: make_data(args.work, name, s, args.anatomy) for s in args.seeds}
        text = run_experiment(data, args.work / name, patch_budget=args.budget, seeds=args.seeds, device=args.device,
                              batch_size=4, lr=3e-3, val_every=5, arms=ARMS if name == "small" else ARMS_3D,
                              baselines=name == "small", progress=False,
                              overrides={**OVERRIDES, **SETS[name][4]}, command=command + f"   # set {name}")
        parts.append((name, text, time.perf_counter() - t))
        print(f"set {name}: done in {(time.perf_counter() - t) / 60:.1f} min", flush=True)
    wall = (time.perf_counter() - t_all) / 60
    head = [f"Produced by `{command}` at commit {commit} on {platform.platform()} ({platform.machine()}, "
            f"{__import__('os').cpu_count()} CPUs); {wall:.0f} min in all "
            + ", ".join(f"{n} {s / 60:.0f} min" for n, _, s in parts) + ".", ""]
    body = "\n\n".join(f"<!-- set {n} -->\n{t}" for n, t, _ in parts)
    if args.out:
        write_text(args.out, "\n".join(head) + "\n" + body)  # temp file + rename: never half-written
    print("\n".join(head))
    print(body)


if __name__ == "__main__":
    main()
