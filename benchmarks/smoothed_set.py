"""Copy a rendered generalisation set with every CT smoothed by a Gaussian of SIGMA mm.

A test of whether denoising the input would let the networks see vessels under the shifted
sets' noise (62-80 HU, correlated over 1.0-1.4 mm): the copy is scored like any set,

    python benchmarks/smoothed_set.py /tmp/gen/sets/dev_s900_n4 /tmp/gen/smooth0.6/dev_s900_n4 --sigma-mm 0.6
    python benchmarks/generalisation.py --run RUN --work /tmp/gen/smooth0.6 --sets dev

(docs/results/generalisation.md, section 8). Labels and centerlines are copied unchanged.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np


def main() -> None:
    from scipy import ndimage

    from coroseg.io.volume import read_volume, write_volume

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="a rendered set (<name>_s<seed>_n<cases>)")
    ap.add_argument("dst", type=Path, help="where the smoothed copy goes (same folder name, other parent)")
    ap.add_argument("--sigma-mm", type=float, required=True)
    args = ap.parse_args()
    if not (args.src / "manifest.json").is_file():
        raise SystemExit(f"{args.src}: not a rendered set (no manifest.json)")
    shutil.copytree(args.src, args.dst, dirs_exist_ok=True)
    for path in sorted(args.dst.rglob("CTCA/*.nrrd")):
        vol = read_volume(path)
        sigma = [args.sigma_mm / float(s) for s in vol.spacing]  # mm -> voxels, per array axis
        write_volume(vol.with_array(ndimage.gaussian_filter(np.asarray(vol.array, np.float32), sigma)), path)
        print(f"smoothed {path} (sigma {args.sigma_mm} mm)", flush=True)


if __name__ == "__main__":
    main()
