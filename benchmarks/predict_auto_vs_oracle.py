"""Whole-volume ``predict``: Dice with the automatic centerline vs the ground-truth (oracle) one.

For each held-out case of a crop-model run, segments the scan three ways with
:func:`coroseg.infer.predict_volume` — centerline prior ``auto`` (the run's locator +
skeleton + iterative crops), ``oracle`` (the dataset's reference centerline; an upper bound,
never a deliverable) and ``none`` (crop model slid over the whole volume, empty attention) —
and prints Dice side by side with the time of every stage. Target: auto within 0.02 of oracle.

    python benchmarks/predict_auto_vs_oracle.py                 # trains a quick run on 'small' phantoms
    python benchmarks/predict_auto_vs_oracle.py --run RUN_DIR --data DATA_DIR [--split test]
    python benchmarks/predict_auto_vs_oracle.py --run RUN_DIR --data DATA_DIR --locator-run GRID_RUN_DIR

Without ``--run`` it generates ``--cases`` phantoms (60/20/20 split) and trains ``unet3d_crop``
(with its locator) for ``--budget`` patches first; that takes a few minutes on 2 cores, and a
model trained this briefly is weak, so read the auto-vs-oracle *gap*, not the absolute Dice.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from _common import phantom_data
from coroseg.eval.metrics import dice

STAGES = ("preprocess", "locator_preprocess", "locator_network", "locator_centerline", "centerline_read",
          "crop_centres", "crop_network", "crop_iterate_centerline", "network", "resample_back", "postprocess",
          "total")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=None, help="trained crop-model run folder (default: train one)")
    ap.add_argument("--data", type=Path, default=None, help="dataset folder (default: generate phantoms)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--heldout", type=int, default=0,
                    help="instead of the split, evaluate this many freshly generated phantoms (seed + 1000)")
    ap.add_argument("--cases", type=int, default=6, help="phantoms to generate when --data is not given")
    ap.add_argument("--preset", default="small", choices=("small", "asoca"))
    ap.add_argument("--budget", type=int, default=400, help="training patches when training a run")
    ap.add_argument("--locator-budget", type=int, default=None, help="locator training patches (default: as --budget)")
    ap.add_argument("--locator-spacing", type=float, default=None,
                    help="locator voxel size, mm (default: training's, 2x the model spacing)")
    ap.add_argument("--locator-run", type=Path, default=None,
                    help="use this grid-model run's network as the stage-1 locator instead of the run's own")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-iterate", dest="iterate", action="store_false", help="auto: no iterative crops")
    ap.add_argument("--out", type=Path, default=None, help="keep data/run here (default: a temporary folder)")
    args = ap.parse_args()

    import torch

    from coroseg.data.cache import load_centerline
    from coroseg.eval.testing import split_cases
    from coroseg.infer.pipeline import load, predict_volume, resolve_device
    from coroseg.io.volume import read_volume

    tmp = tempfile.TemporaryDirectory(prefix="coroseg_predict_bench_")
    work = args.out or Path(tmp.name)
    data = phantom_data(args.data, work, cases=args.cases, preset=args.preset, seed=args.seed)
    run_dir = args.run
    if run_dir is None:
        from coroseg.train import train

        run_dir = work / "run_unet3d_crop"
        t = time.perf_counter()
        train(data, run_dir, model="unet3d_crop", epochs=1000, batch_size=2, device=args.device, seed=args.seed,
              patch_budget=args.budget, early_stop=None, progress=False, channels=[8, 16, 32, 64],
              patch_size=[48, 48, 48], lr=2e-3, locator_patch=[48, 48, 48],
              locator_budget=args.locator_budget or args.budget,
              locator_spacing=None if args.locator_spacing is None else [args.locator_spacing] * 3)
        print(f"trained unet3d_crop (+ locator) for {args.budget} patches in {time.perf_counter() - t:.1f} s")

    dev = resolve_device(args.device)
    run = load(run_dir, dev)
    if not run.config.is_crop:
        raise SystemExit(f"{run_dir}: a crop model is needed (found {run.config.model})")
    if args.locator_run is not None:
        stage1 = load(args.locator_run, dev)
        s1 = stage1.config
        if s1.sampler != "grid" or s1.dims != 3:
            raise SystemExit(f"{args.locator_run}: --locator-run needs a 3D grid model")
        from coroseg.models.config import LocatorConfig

        run.locator = stage1.model
        run.config = run.config.replace(locator=LocatorConfig(
            spacing=s1.spacing, patch_size=s1.patch_size, intensity=s1.intensity, network=s1.network, threshold=0.5))
        print(f"stage 1: the network of {args.locator_run} ({s1.model}) replaces the run's locator")
    if args.heldout > 0:
        from coroseg.data.layouts import load_dataset
        from coroseg.synth import synth_dataset

        held = work / "heldout"
        synth_dataset(held, args.heldout, preset=args.preset, seed=args.seed + 1000, progress=False)
        cases = load_dataset(held)
        args.split = f"{args.heldout} fresh phantoms (seed {args.seed + 1000})"
    else:
        cases = split_cases(run_dir, data, args.split)
    modes = ("auto", "oracle", "none")
    rows = []
    timings: dict[str, dict[str, list[float]]] = {m: defaultdict(list) for m in modes}
    # warm-up so the first case timed pays no start-up cost
    first = read_volume(cases[0].image)
    predict_volume(run, first, centerline="none", device=dev, extract_centerline=False)
    for case in cases:
        image = read_volume(case.image)
        label = read_volume(case.label, is_label=True)
        gt = load_centerline(case, label)[0]
        row = {"case": case.case_id, "shape": "x".join(map(str, image.shape))}
        for mode in modes:
            prior = {"auto": "auto", "oracle": gt, "none": "none"}[mode]
            pred = predict_volume(run, image, centerline=prior, device=dev, iterate=args.iterate,
                                  centerline_source="oracle" if mode == "oracle" else None, extract_centerline=False)
            row[f"dice_{mode}"] = dice(pred.seg.array > 0, label.array > 0)
            row[f"crops_{mode}"] = pred.info["n_crops"]
            row[f"iter_{mode}"] = pred.info["iterations"]
            row[f"src_{mode}"] = pred.info["centerline_source"]
            for k, v in pred.timings.items():
                timings[mode][k].append(v)
        rows.append(row)

    print()
    print(f"machine: {platform.platform()}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), device {dev}"
          + (f" ({torch.cuda.get_device_name()})" if dev.type == "cuda" else ""))
    print(f"run: {run_dir} ({run.config.model}, spacing {list(run.config.spacing)}, patch "
          f"{list(run.config.patch_size)}); data: {data}, split '{args.split}', {len(cases)} cases; "
          f"iterate={args.iterate}")
    print()
    print(f"{'case':14s} {'shape':>12s} {'Dice auto':>10s} {'Dice oracle':>12s} {'gap':>7s} {'Dice none':>10s} "
          f"{'crops a/o':>10s} {'iter a':>7s}")
    for r in rows:
        print(f"{r['case']:14s} {r['shape']:>12s} {r['dice_auto']:10.4f} {r['dice_oracle']:12.4f} "
              f"{r['dice_oracle'] - r['dice_auto']:7.4f} {r['dice_none']:10.4f} "
              f"{r['crops_auto']:>4d}/{r['crops_oracle']:<5d} {r['iter_auto']:7d}"
              + ("" if r["src_auto"] == "auto" else f"  (auto prior: {r['src_auto']})"))
    mean = {m: float(np.mean([r[f"dice_{m}"] for r in rows])) for m in modes}
    print(f"{'mean':14s} {'':>12s} {mean['auto']:10.4f} {mean['oracle']:12.4f} "
          f"{mean['oracle'] - mean['auto']:7.4f} {mean['none']:10.4f}")
    gap = mean["oracle"] - mean["auto"]
    print(f"\nauto vs oracle gap {gap:.4f} (target <= 0.02): {'met' if gap <= 0.02 else 'NOT met'}")
    print()
    print("mean time per stage (s)")
    print(f"{'stage':26s} " + " ".join(f"{m:>9s}" for m in modes))
    for st in STAGES:
        vals = [np.mean(timings[m][st]) if timings[m].get(st) else None for m in modes]
        if all(v is None for v in vals):
            continue
        print(f"{st:26s} " + " ".join(f"{v:9.3f}" if v is not None else f"{'-':>9s}" for v in vals))


if __name__ == "__main__":
    main()
