"""The prior work's test invocation, kept working: ``python test.py --model unet3d_crop --weights RUN_DIR``.

A thin wrapper over ``coroseg test`` (whole-volume metrics, automatic centerline and the
ground-truth "oracle" side by side for crop models). Data defaults to ``dataset/``.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from coroseg.cli import main  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model name the run was trained as (checked)")
    ap.add_argument("--weights", required=True, help="run folder written by train.py / coroseg train")
    ap.add_argument("--data", default="dataset")
    ap.add_argument("--out", default=None, help="default: <weights>/test")
    args = ap.parse_args()
    import json

    cfg_path = Path(args.weights) / "config.json"
    if cfg_path.exists() and json.loads(cfg_path.read_text()).get("model") != args.model:
        print(f"test.py: error: {cfg_path}: run was trained as "
              f"{json.loads(cfg_path.read_text()).get('model')}, not {args.model}", file=sys.stderr)
        sys.exit(2)
    out = args.out or str(Path(args.weights) / "test")
    main(["test", "--model", args.weights, "--data", args.data, "--out", out,
          "--centerline", "auto", "--centerline", "gt"])
