"""Train ``unet3d_crop`` and ``unet3d_grid`` with the same patch budget and compare them.

Generates ``small`` phantoms with :func:`coroseg.synth.synth_dataset` (or uses ``--data``),
trains both models on the same cases with the same number of training patches, and prints,
side by side, the best whole-volume validation Dice (model grid; crop model with the reference
centerline, see :mod:`coroseg.train.validate`) and training throughput (patches/s).

    python benchmarks/train_compare.py                      # CPU defaults, a few minutes on 2 cores
    python benchmarks/train_compare.py --device cuda --preset asoca --cases 20 --budget 4000 \\
        --patch 96 --channels 16,32,64,128,256 --batch-size 4
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
import time
from pathlib import Path

from _common import phantom_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="dataset folder (default: generate phantoms)")
    ap.add_argument("--preset", default="small", choices=("small", "asoca"))
    ap.add_argument("--cases", type=int, default=5, help="phantoms to generate (60%% train, 20%% val, 20%% test)")
    ap.add_argument("--budget", type=int, default=256, help="training patches per model")
    ap.add_argument("--patch", type=int, default=32, help="cubic patch side, voxels (multiple of 16)")
    ap.add_argument("--channels", default="8,16,32,64,128")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--locator", action="store_true", help="also train the crop model's locator (timed apart)")
    ap.add_argument("--out", type=Path, default=None, help="keep runs here (default: a temporary folder)")
    args = ap.parse_args()

    import torch

    from coroseg.train import train

    tmp = tempfile.TemporaryDirectory(prefix="coroseg_bench_")
    work = args.out or Path(tmp.name)
    data = phantom_data(args.data, work, cases=args.cases, preset=args.preset, seed=args.seed)
    channels = [int(c) for c in args.channels.split(",")]
    _warm_up(channels, args.patch, args.batch_size, args.device)  # so the first model timed pays no start-up cost
    results = {}
    for model in ("unet3d_crop", "unet3d_grid"):
        run = work / f"run_{model}"
        t = time.perf_counter()
        train(data, run, model=model, epochs=1000, batch_size=args.batch_size, device=args.device, seed=args.seed,
              patch_budget=args.budget, lr=args.lr, early_stop=None, progress=False, channels=channels,
              patch_size=[args.patch] * 3, locator=args.locator and model.endswith("crop"))
        wall = time.perf_counter() - t
        with open(run / "metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        main_rows = [r for r in rows if r["phase"] == "model"]
        secs = sum(float(r["seconds"]) for r in main_rows)
        patches = int(main_rows[-1]["patches"])
        dices = [float(r["val_dice"]) for r in main_rows if r["val_dice"]]
        loc = [r for r in rows if r["phase"] == "locator"]
        results[model] = {"epochs": len(main_rows), "patches": patches, "train_s": secs, "pps": patches / secs,
                          "best_dice": max(dices) if dices else float("nan"),
                          "last_dice": dices[-1] if dices else float("nan"), "wall_s": wall,
                          "locator_s": sum(float(r["seconds"]) for r in loc),
                          "locator_dice": max((float(r["val_dice"]) for r in loc if r["val_dice"]),
                                              default=float("nan"))}

    print()
    print(f"machine: {platform.platform()}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    print(f"data: {data}; budget {args.budget} patches of {args.patch}^3, batch {args.batch_size}, "
          f"channels {channels}, lr {args.lr}, seed {args.seed}")
    keys = [("epochs", "epochs", "{:d}"), ("patches", "training patches", "{:d}"),
            ("train_s", "training time (s)", "{:.1f}"), ("pps", "patches/s", "{:.2f}"),
            ("best_dice", "best val Dice", "{:.4f}"), ("last_dice", "last val Dice", "{:.4f}"),
            ("wall_s", "wall time incl. preprocessing + validation (s)", "{:.1f}")]
    if args.locator:
        keys += [("locator_s", "locator training (s)", "{:.1f}"), ("locator_dice", "locator best val Dice", "{:.4f}")]
    print(f"{'':48s} {'unet3d_crop':>12s} {'unet3d_grid':>12s}")
    for k, label, fmt in keys:
        print(f"{label:48s} " + " ".join(f"{fmt.format(results[m][k]):>12s}" for m in ("unet3d_crop", "unet3d_grid")))


def _warm_up(channels: list[int], patch: int, batch: int, device: str) -> None:
    import torch

    from coroseg.models import build_network, model_spec, network_config

    net = build_network(network_config(model_spec("unet3d_crop"), channels=channels)).to(device)
    x = torch.zeros((batch, 2, patch, patch, patch), device=device)
    for _ in range(2):
        net(x).sum().backward()


if __name__ == "__main__":
    main()
