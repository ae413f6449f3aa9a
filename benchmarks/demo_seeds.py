"""Train the demo's crop model (+ its locator) at several seeds with changed options, then score each
run on the generalisation benchmark's choosing sets: one training seed is too noisy to choose by.

    python benchmarks/demo_seeds.py --data demo_out/data --out /tmp/seeds/ref --seeds 1 2 \
        --set reference_levels=true --work /tmp/gen/sets

Each run trains as ``make demo`` does (:class:`coroseg.demo.DemoPlan`: budgets, batch, learning rate,
:data:`coroseg.demo.DEMO_OPTIONS`) with ``--set`` applied on top, into ``OUT/seed<N>``, and is then
measured by ``benchmarks/generalisation.py --sets dev dev_real home`` into ``OUT/seed<N>.txt``
(headed by its command, commit and machine). A finished run is re-used.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import commit_id, machine  # noqa: E402  (one provenance for every benchmark)


def main() -> None:
    from coroseg.demo import DemoPlan
    from coroseg.models.run import read_config
    from coroseg.train import train
    from coroseg.train.options import parse_overrides

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the demo's phantom dataset (demo_out/data)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=JSON",
                    help="training option on top of the demo's (repeatable)")
    ap.add_argument("--patch-budget", type=int, default=None, help="crop-model patches (default: the demo's)")
    ap.add_argument("--locator-budget", type=int, default=None, help="locator patches (default: the demo's)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gen/sets"), help="generalisation.py --work")
    ap.add_argument("--sets", nargs="+", default=["dev", "dev_real", "home"])
    args = ap.parse_args()

    plan = DemoPlan()
    plan = dataclasses.replace(plan, patch_budget=args.patch_budget or plan.patch_budget,
                               locator_budget=args.locator_budget or plan.locator_budget)
    opts = {**plan.options, **parse_overrides(args.overrides), "locator_budget": plan.locator_budget}
    for seed in args.seeds:
        run = args.out / f"seed{seed}"
        done = (run / "config.json").exists() and read_config(run).status == "complete"
        if not done:
            t = time.perf_counter()
            train(args.data, run, model=plan.model, patch_budget=plan.patch_budget, batch_size=plan.batch_size,
                  lr=plan.lr, val_every=plan.val_every, device="cpu", seed=seed, progress=False, **opts)
            print(f"seed {seed}: trained in {time.perf_counter() - t:.0f} s -> {run}", flush=True)
        cmd = [sys.executable, str(HERE / "generalisation.py"), "--run", str(run), "--work", str(args.work),
               "--sets", *args.sets]
        with open(args.out / f"seed{seed}.txt", "w") as fh:
            fh.write(f"# python benchmarks/demo_seeds.py {' '.join(sys.argv[1:])}\n"
                     f"# seed {seed}; commit: {commit_id()}; machine: {machine()}\n# then: {' '.join(cmd[1:])}\n")
            fh.flush()
            subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT)
        print(f"seed {seed}: scored -> {args.out / f'seed{seed}.txt'}", flush=True)


if __name__ == "__main__":
    main()
