"""Train the built-in model: the demo's configuration, on more phantoms, for longer.

The built-in model is phantom-trained (no real CT can be used in this project): procedural
``small``-preset phantoms (data seed ``--data-seed``, never one of the test sets' seeds 500-950),
``unet3d_crop`` with its locator, the options of ``coroseg demo`` (:data:`coroseg.demo.DEMO_OPTIONS`:
a CPU-sized 4-level U-Net, 48^3 crops, the finest training spacing, robust crop training) and a
larger patch budget. It writes the run folder and ``train_builtin.json`` (command, seeds, data,
time, final validation Dice of both networks) beside it; ``coroseg export-model RUN --half`` then
makes the package shipped in ``src/coroseg/builtin/``.

    python benchmarks/train_builtin.py --work /tmp/builtin --cases 24 --budget 12000 --locator-budget 8000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path


def best_dice(run: Path, phase: str) -> tuple[float, int]:
    with open(run / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["phase"] == phase and r["val_dice"] not in ("", "nan")]
    best = max(rows, key=lambda r: float(r["val_dice"]))
    return float(best["val_dice"]), int(best["epoch"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/coroseg_builtin"))
    ap.add_argument("--cases", type=int, default=24)
    ap.add_argument("--data-seed", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=12000, help="training crops of the crop model")
    ap.add_argument("--locator-budget", type=int, default=8000)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    import torch

    from coroseg.demo import DEMO_OPTIONS, DemoPlan
    from coroseg.synth import synth_dataset
    from coroseg.train import train

    plan = DemoPlan()
    data, run = args.work / "data", args.work / "run"
    t0 = time.perf_counter()
    if not (data / "manifest.json").exists():
        synth_dataset(data, args.cases, preset="small", seed=args.data_seed, progress=False)
    t_synth = time.perf_counter() - t0
    t0 = time.perf_counter()
    train(data, run, model="unet3d_crop", patch_budget=args.budget, batch_size=plan.batch_size, lr=plan.lr,
          val_every=plan.val_every, device=args.device, seed=args.seed, progress=False,
          **{**DEMO_OPTIONS, "locator_budget": args.locator_budget})
    t_train = time.perf_counter() - t0
    record = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "data": {"preset": "small", "cases": args.cases, "data_seed": args.data_seed,
                 "splits": json.loads((run / "splits.json").read_text())},
        "seed": args.seed, "patch_budget": args.budget, "locator_budget": args.locator_budget,
        "options": DEMO_OPTIONS, "batch_size": plan.batch_size, "lr": plan.lr, "val_every": plan.val_every,
        "seconds": {"synthesize": round(t_synth, 1), "train": round(t_train, 1)},
        "validation": {"model_dice_auto": best_dice(run, "model"), "locator_dice": best_dice(run, "locator")},
    }
    (args.work / "train_builtin.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
