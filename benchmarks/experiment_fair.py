"""The prior work's claim at equal total budgets: several seeds, a split per seed, paired intervals.

For every seed a dataset is laid out whose held-out cases differ from seed to seed, and
``coroseg experiment`` (:func:`coroseg.experiment.run_experiment`) trains and tests every arm on it:

- ``small``: 40 procedural ``small`` phantoms (synth seed 1000 + seed; 24 train, 8 val, 8 test),
  all arms (2D and 3D);
- ``real``: ``asoca``-preset renders of the 12 real ASOCA trees in ../shared, 4 per tree (synth
  seeds 2000-2003, one render of every tree each), made once; each seed splits the trees 8/2/2
  afresh (:func:`coroseg.synth.dataset.resplit_by_tree`, seed 2000 + seed) and every render goes
  to its tree's split: 32 train, 8 val and 8 test renders. The 3D arms only, trained at 0.8 mm to
  fit a CPU budget.

The budget of an arm is the total number of training patches of every network it trains (a crop
arm: half to its locator, half to its crop model). Writes one ``results.md`` per set under
``--work`` and, with ``--out``, one section per set into one file, each headed by the command, the
commit, the machine and the wall time that produced it; a set not run this time keeps its section
(:func:`merge_sections`), so the sets can be run in separate sittings.

    python benchmarks/experiment_fair.py --work /tmp/exp17 --out docs/results/experiment.md
    python benchmarks/experiment_fair.py --work /tmp/exp17 --sets small --seeds 0 1 2 --budget 3000
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import REPO, commit_id, machine  # noqa: E402

ANATOMY = REPO.parent / "shared" / "data" / "asoca-anatomy"

#: the experiment's CPU-sized networks and patches (every arm alike)
OVERRIDES = {"channels": [16, 32, 64, 128], "patch_size": [48, 48, 48], "augment": 0.5,
             "locator_channels": [16, 32, 64, 128], "locator_spacing_factor": 1.0, "locator_patch": [48, 48, 48],
             "locator_samples_per_case": 16}
#: per set: (preset, cases per seed (small) or renders per tree (real), synth seed base, real trees?,
#: extra training options)
SETS = {"small": ("small", 40, 1000, False, {"spacing": "min"}),
        "real": ("asoca", 4, 2000, True, {"spacing": [0.8, 0.8, 0.8]})}


def make_data(work: Path, name: str, seeds: list[int], anatomy: Path | None) -> tuple[dict[int, Path], float]:
    """The set's dataset for each seed (made once, then re-used) and the seconds spent making them now."""
    from coroseg.synth import synth_dataset
    from coroseg.synth.dataset import resplit_by_tree
    from coroseg.synth.realtree import list_anatomy_cases

    preset, count, base, real, _ = SETS[name]
    t = time.perf_counter()
    renders = []
    if real:  # every tree rendered `count` times, once per synth seed; the seeds re-split them
        for k in range(count):
            renders.append(work / "data" / f"{name}_render{k}")
            if not (renders[-1] / "manifest.json").exists():
                synth_dataset(renders[-1], len(list_anatomy_cases(anatomy)), preset=preset, seed=base + k,
                              anatomy_dir=anatomy, progress=False)
    data = {}
    for seed in seeds:
        data[seed] = work / "data" / f"{name}_seed{seed}"
        if not (data[seed] / "manifest.json").exists():
            if real:
                shutil.rmtree(data[seed], ignore_errors=True)  # an interrupted layout: begin again
                resplit_by_tree(renders, data[seed], seed=base + seed)
            else:
                synth_dataset(data[seed], count, preset=preset, seed=base + seed, progress=False)
    secs = time.perf_counter() - t
    print(f"{name}: data in {secs:.0f} s", flush=True)
    return data, secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="data, runs and per-set results go here")
    ap.add_argument("--out", type=Path, default=None,
                    help="write the sets' results into this markdown file (other sets' sections are kept)")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=3000, help="total training patches of a full arm")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--anatomy", type=Path, default=ANATOMY if ANATOMY.is_dir() else None)
    args = ap.parse_args()

    from coroseg.experiment import ARMS, ARMS_3D, run_experiment
    from coroseg.io.atomic import write_text

    command = "python benchmarks/experiment_fair.py " + shlex.join(sys.argv[1:])
    commit, where = commit_id(), machine()
    sections = {}
    for name in args.sets:
        if SETS[name][3] and args.anatomy is None:
            print(f"set {name}: skipped, the real trees (../shared/data/asoca-anatomy) are not here")
            continue
        t = time.perf_counter()
        data, data_s = make_data(args.work, name, args.seeds, args.anatomy)
        data_note = f"data made in {data_s / 60:.1f} min" if data_s >= 1 else "data re-used"
        text = run_experiment(data, args.work / name, patch_budget=args.budget, seeds=args.seeds, device=args.device,
                              batch_size=4, lr=3e-3, val_every=5, arms=ARMS if name == "small" else ARMS_3D,
                              baselines=name == "small", progress=False,
                              overrides={**OVERRIDES, **SETS[name][4]}, command=command + f"   # set {name}")
        minutes = (time.perf_counter() - t) / 60
        sections[name] = (f"Set `{name}` produced by `{command}` at commit {commit} on {where}; "
                          f"{minutes:.0f} min ({data_note}, the rest training and testing).\n\n{text}")
        print(f"set {name}: done in {minutes:.1f} min", flush=True)
    old = args.out.read_text() if args.out and args.out.exists() else ""
    doc = merge_sections(old, sections)
    if args.out:
        write_text(args.out, doc)  # temp file + rename: never half-written
    print(doc)


def merge_sections(old: str, new: dict[str, str]) -> str:
    """The results file: ``old``'s per-set sections with those in ``new`` replaced, in ``SETS`` order.

    A section starts at its ``<!-- set NAME -->`` marker; text before the first marker is the
    file's head, written afresh.
    """
    parts = re.split(r"^<!-- set (\w+) -->\n", old, flags=re.M)
    kept = {parts[i]: parts[i + 1].rstrip("\n") for i in range(1, len(parts) - 1, 2)}
    kept.update({k: v.rstrip("\n") for k, v in new.items()})
    head = ("# The prior work's claim at equal total budgets\n\nOne section per set "
            "(`benchmarks/experiment_fair.py`); each is headed by the command, commit, machine and time "
            "that produced it.\n")
    order = [n for n in SETS if n in kept] + [n for n in kept if n not in SETS]
    return head + "".join(f"\n<!-- set {n} -->\n{kept[n]}\n" for n in order)


if __name__ == "__main__":
    main()
