"""``python -m coroseg.train``: the training command line (also what ``torchrun`` can launch).

Same options as ``coroseg train``::

    python -m coroseg.train --data DIR --model unet3d_crop --epochs 100 --batch-size 2 --out runs/x \\
        [--device auto|cpu|cuda] [--resume] [--patch-budget K] [--no-attention] [--seed S] [--lr LR] \\
        [--val-every K] [--early-stop N] [--set KEY=VALUE ...]

``--set`` takes any key of :data:`coroseg.train.DEFAULTS` with a JSON value
(``--set channels=[8,16,32] --set cldice=0.5``).
"""

from __future__ import annotations

import argparse
import sys

from coroseg.models.registry import MODEL_NAMES
from coroseg.train.options import TRAIN_OPTIONS, parse_overrides


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coroseg train", description="Train a coronary segmentation model.")
    p.add_argument("--data", required=True, help="dataset folder (split, ASOCA, ImageCAS or nnU-Net layout)")
    p.add_argument("--model", default="unet3d_crop", choices=MODEL_NAMES)
    p.add_argument("--epochs", type=int, default=None, help="default 100 (on --resume: the saved value)")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=2)
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--patch-budget", type=int, default=None, help="total training patches (overrides --epochs)")
    p.add_argument("--no-attention", dest="attention", action="store_false",
                   help="crop models without the centerline attention channel (ablation)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val-every", type=int, default=1)
    p.add_argument("--early-stop", type=int, default=20, help="validations without improvement (0: never)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any training option, JSON value (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from coroseg.errors import CorosegError
    from coroseg.train import train

    try:
        run = train(args.data, args.out, model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                    attention=args.attention, patch_budget=args.patch_budget, device=args.device, resume=args.resume,
                    seed=args.seed, val_every=args.val_every, early_stop=args.early_stop, lr=args.lr,
                    progress=args.progress, **parse_overrides(args.overrides, own_options=TRAIN_OPTIONS))
    except CorosegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    print(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
