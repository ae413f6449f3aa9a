"""The prior work's entry point, kept working: ``python train.py --model unet3d_crop --epochs N --batch_size B``.

Data default ``dataset/``, run folder default ``runs/<model>``; every other option of
``coroseg train`` is accepted (see ``coroseg train --help``): this calls the same command line.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from coroseg.cli import main  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    model = argv[argv.index("--model") + 1] if "--model" in argv[:-1] else "unet3d_crop"
    if not any(a == "--data" or a.startswith("--data=") for a in argv):
        argv += ["--data", "dataset"]
    if not any(a == "--out" or a.startswith("--out=") for a in argv):
        argv += ["--out", f"runs/{model}"]
    main(["train", *argv])
