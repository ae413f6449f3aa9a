"""How well :func:`coroseg.data.levels.measure_levels` finds a scan's fat and blood-pool levels.

Phantom datasets carry the truth in ``manifest.json`` (each case's aorta and fat HU plus its global
HU offset); the real chest CTA in ../shared has an aorta mask (made by a model), whose inner voxels
(2-voxel erosion) give a reference blood level.

    python benchmarks/hu_levels.py DATASET [DATASET ...] [--chest-cta ../shared/data/real-ct/chest-cta]

Prints one line per case (truth, estimate, the map's gain, or why it was not referenced) and per
dataset the median / largest absolute error and the number of cases left unreferenced.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import REPO, commit_id, machine  # noqa: E402  (one provenance for every benchmark)

CHEST = REPO.parent / "shared" / "data" / "real-ct" / "chest-cta"


def main() -> None:
    from coroseg.data.levels import measure_levels
    from coroseg.io.volume import read_volume

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datasets", type=Path, nargs="*", help="coroseg synth folders (manifest.json)")
    ap.add_argument("--chest-cta", type=Path, default=CHEST if CHEST.is_dir() else None)
    args = ap.parse_args()
    print(f"# python benchmarks/hu_levels.py {' '.join(sys.argv[1:])}\n# commit: {commit_id()}; machine: {machine()}")
    for folder in args.datasets:
        manifest = json.loads((folder / "manifest.json").read_text())
        err_b, err_f, failed = [], [], 0
        for case in manifest["cases"]:
            p = case["params"]
            offset = p["image"].get("hu_offset", 0.0)
            blood, fat = p["contrast"]["aorta"] + offset, p["contrast"]["fat"] + offset
            found = measure_levels(read_volume(folder / case["files"]["image"]))
            line = f"{folder.name:24s} {case['case_id']}  blood {blood:6.0f} fat {fat:5.0f} HU | "
            if found.problem:
                failed += 1
                print(line + f"not referenced: {found.problem}")
                continue
            err_b.append(abs(found.blood - blood))
            err_f.append(abs(found.fat - fat))
            print(line + f"found {found.blood:6.0f} {found.fat:5.0f} HU, gain {found.gain:.2f}")
        if err_b:
            print(f"{folder.name}: {len(manifest['cases'])} cases, {failed} not referenced; |error| blood median "
                  f"{np.median(err_b):.0f} max {max(err_b):.0f} HU, fat median {np.median(err_f):.0f} max "
                  f"{max(err_f):.0f} HU\n")
    if args.chest_cta is not None:
        from scipy import ndimage

        ct = read_volume(args.chest_cta / "ct.nii.gz")
        aorta = read_volume(args.chest_cta / "aorta.nii.gz", is_label=True).array > 0
        inner = ndimage.binary_erosion(aorta, iterations=2)
        found = measure_levels(ct)
        print(f"real chest CTA: aorta mask median {np.median(ct.array[aorta]):.0f} HU, eroded 2 voxels median "
              f"{np.median(ct.array[inner]):.0f} (75th percentile {np.percentile(ct.array[inner], 75):.0f}) HU | "
              f"found blood {found.blood} fat {found.fat} HU, gain {found.gain:.2f}"
              + (f", not referenced: {found.problem}" if found.problem else ""))


if __name__ == "__main__":
    main()
