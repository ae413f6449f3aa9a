"""Throughput of ``coroseg predict`` on a folder of scans: cases per hour with 1 and with N parts.

A folder of ``asoca``-size phantoms (512 x 512 x ~200, synthesized once into ``--work``, seed 0)
is segmented end to end by the real command line, as a user would: one process over the whole
folder, then ``--num-parts N`` processes started together (``--part-id 0..N-1``, the job-array
mechanism, each with ``cores / N`` torch threads) writing into one output folder. The wall clock
runs from the first start to the last exit; the cases counted are those the merged
``summary.json`` lists.

    python benchmarks/predict_throughput.py --run demo_out/run --work /tmp/throughput --cases 20 --parts 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import phantom_data  # noqa: E402


def scans_folder(data: Path, work: Path) -> Path:
    """A flat folder of links to every image of the dataset (predict's input)."""
    from coroseg.data.layouts import load_dataset

    folder = work / "scans"
    folder.mkdir(parents=True, exist_ok=True)
    for case in load_dataset(data):
        link = folder / Path(case.image).name
        if not link.exists():
            link.symlink_to(Path(case.image).resolve())
    return folder


def run_parts(run: Path, scans: Path, out: Path, parts: int, threads: int) -> tuple[float, int]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    base = [sys.executable, "-m", "coroseg", "predict", "--model", str(run), "-i", str(scans), "-o", str(out),
            "--device", "cpu"]
    cmds = [base] if parts == 1 else [base + ["--num-parts", str(parts), "--part-id", str(k)] for k in range(parts)]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in cmds]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"predict failed: {err[-2000:]}")
    wall = time.perf_counter() - t0
    cases = json.loads((out / "summary.json").read_text())["cases"]
    return wall, len({c["id"] for c in cases if "error" not in c})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=None, help="dataset (default: synthesize --cases phantoms)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/coroseg_throughput"))
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--parts", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    import torch

    data = phantom_data(args.data, args.work, cases=args.cases, preset="asoca", seed=0)
    scans = scans_folder(data, args.work)
    cores = os.cpu_count() or 1
    rows = []
    for parts in args.parts:
        out = args.work / f"out_parts{parts}"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        threads = max(1, cores // parts)
        wall, n = run_parts(args.run, scans, out, parts, threads)
        rows.append((parts, threads, n, wall))
        print(f"{parts} part(s) x {threads} thread(s): {n} cases in {wall:.1f} s", flush=True)
    print(f"\nmachine: {platform.platform()}, {cores} CPUs, torch {torch.__version__}; run {args.run}; "
          f"scans: {scans} ({len(list(scans.iterdir()))} asoca-preset phantoms)\n")
    print("| processes (parts) | threads each | cases | wall s | s per case | cases per hour |")
    print("|---|---|---|---|---|---|")
    for parts, threads, n, wall in rows:
        print(f"| {parts} | {threads} | {n} | {wall:.0f} | {wall / max(n, 1):.1f} | {3600 * n / wall:.0f} |")


if __name__ == "__main__":
    main()
