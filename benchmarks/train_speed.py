"""Training-loop throughput vs the bare model step: how much the data pipeline costs.

For each sampler (``crop``: patches at centerline crop centres with the attention channel,
as ``unet3d_crop`` trains; ``grid``: random patches, half on foreground, as ``unet3d_grid``)
the same network, loss and optimizer run

- **loop**: the trainer's loop, batches from a ``DataLoader`` over :class:`PatchDataset`
  (patch extraction, attention channel, perturbed centerline, augmentation), then
  :func:`coroseg.train.loop.forward_loss` + :func:`~coroseg.train.loop.optimizer_step`;
- **bare**: the same step on one batch held in memory (no data loading at all);
- **data**: the loader alone (no step), to show where the difference goes.

Patches/s are measured after ``--warmup`` steps; the loop/bare ratio is the fraction of the
model step's throughput that training keeps (target: at least 80 %).

    python benchmarks/train_speed.py                          # small phantoms, CPU, ~2 min on 2 cores
    python benchmarks/train_speed.py --device cuda --preset asoca --cases 6 --patch 96 --batch-size 4 \\
        --channels 16,32,64,128,256 --workers 8
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from _common import phantom_data


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def measure(sampler: str, cases, args, dev) -> dict:
    import torch
    from monai.losses import DiceCELoss

    from coroseg.data.augment import build_augmentation
    from coroseg.data.sampling import PatchDataset, crop_centres_for_case, crop_plan, grid_plan
    from coroseg.models.registry import build_network, model_spec, n_parameters, network_config
    from coroseg.train.loader import default_workers, make_loader
    from coroseg.train.loop import forward_loss, optimizer_step
    from coroseg.train.options import DEFAULTS, TrainOptions
    from coroseg.train.phases import attention_input
    from coroseg.train.precision import autocast_dtype

    patch = [args.patch] * 3
    spec = model_spec(f"unet3d_{sampler}")
    net_cfg = network_config(spec, channels=args.channels, num_res_units=DEFAULTS["num_res_units"])
    torch.manual_seed(0)
    net = build_network(net_cfg).to(dev).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    dtype = autocast_dtype("auto", dev)  # bf16 on CUDA, as the trainer
    attention = attention_input(TrainOptions()) if spec["attention"] else None
    n_items = (args.steps + args.warmup) * args.batch_size
    if sampler == "crop":
        centres = [crop_centres_for_case(c, patch, seed=0) for c in cases]
        items = []
        epoch = 0
        while len(items) < n_items:
            items += crop_plan(cases, centres, patch, seed=0, epoch=epoch)
            epoch += 1
    else:
        items = []
        epoch = 0
        while len(items) < n_items:
            items += grid_plan(cases, patch, samples_per_case=16, seed=0, epoch=epoch)
            epoch += 1
    items = items[:n_items]
    augment = build_augmentation(3, strength=args.augment, prior=attention is not None)
    workers = args.workers if args.workers is not None else default_workers(dev, 1, os.cpu_count())

    def loader():  # the trainer's loader (persistent workers, pinned memory on CUDA)
        ds = PatchDataset(cases, [], patch, 3, attention=attention, augment=augment, seed=0)
        dl, sampler = make_loader(ds, batch_size=args.batch_size, device=dev, workers=workers, seed=0)
        sampler.set_epoch(0, items)
        return dl

    def step(batch) -> None:
        x = batch["image"].to(dev, non_blocking=True)
        y = batch["label"].to(dev, non_blocking=True)
        loss = forward_loss(net, x, y, loss_fn, dtype=dtype)
        float(loss.detach())  # the trainer reads the loss every step (NaN check)
        optimizer_step(loss, net, opt, grad_clip=5.0)

    def timed(batches) -> float:
        n = 0
        t0 = None
        for i, b in enumerate(batches):
            if i == args.warmup:
                _sync(dev)
                t0 = time.perf_counter()
            if i >= args.warmup:
                n += int(b["image"].shape[0])
            yield b
        _sync(dev)
        timed.rate = n / (time.perf_counter() - t0)

    res = {}
    for b in timed(loader()):
        step(b)
    res["loop"] = timed.rate
    first = next(iter(loader()))
    for _ in timed(first for _ in range(args.steps + args.warmup)):
        step(first)
    res["bare"] = timed.rate
    for _ in timed(loader()):
        pass
    res["data"] = timed.rate
    res["workers"] = workers
    res["params_m"] = n_parameters(net) / 1e6
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="dataset folder (default: generate phantoms)")
    ap.add_argument("--preset", default="small", choices=("small", "asoca"))
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--patch", type=int, default=48, help="cubic patch side (voxels)")
    ap.add_argument("--channels", type=lambda s: [int(v) for v in s.split(",")], default=[16, 32, 64, 128])
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--augment", type=float, default=0.5, help="augmentation strength (the demo's 0.5)")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the trainer's)")
    ap.add_argument("--samplers", default="crop,grid")
    args = ap.parse_args()

    import torch

    from coroseg.data.cache import prepare_cases, training_statistics
    from coroseg.data.layouts import load_dataset

    dev = torch.device(args.device)
    tmp = tempfile.TemporaryDirectory(prefix="coroseg_train_speed_")
    data = phantom_data(args.data, Path(tmp.name), cases=args.cases, preset=args.preset, seed=0)
    cases = load_dataset(data)[: args.cases]
    spacing, intensity = training_statistics(cases, seed=0)
    t = time.perf_counter()
    prepared = prepare_cases(cases, spacing, intensity, centerline=True)
    print(f"prepared {len(prepared)} cases at {tuple(round(s, 3) for s in spacing)} mm in "
          f"{time.perf_counter() - t:.1f} s")
    print(f"machine: {platform.platform()}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if dev.type == "cuda" else ""))
    print(f"patch {args.patch}^3, batch {args.batch_size}, channels {args.channels}, {args.steps} timed steps "
          f"after {args.warmup} warm-up, augmentation {args.augment}")
    print(f"\n{'sampler':8s} {'workers':>7s} {'params M':>8s} {'bare p/s':>9s} {'loop p/s':>9s} {'data p/s':>9s} "
          f"{'loop/bare':>9s}")
    for sampler in args.samplers.split(","):
        r = measure(sampler, prepared, args, dev)
        print(f"{sampler:8s} {r['workers']:7d} {r['params_m']:8.2f} {r['bare']:9.1f} {r['loop']:9.1f} "
              f"{r['data']:9.1f} {100 * r['loop'] / r['bare']:8.0f}%")


if __name__ == "__main__":
    main()
