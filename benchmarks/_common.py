"""Shared set-up of the benchmark scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: the raw outputs' folder: changes there do not make a commit "-dirty"
RESULTS = "docs/results"


def commit_id() -> str:
    """``git rev-parse --short HEAD``, ``-dirty`` when the tree has changes outside docs/results/."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", ".", f":(exclude){RESULTS}")
    return head + ("-dirty" if dirty else "")


def machine() -> str:
    """Platform, CPU count, Python, torch version, the CUDA device's name or 'no GPU'."""
    try:
        import torch

        tv = torch.__version__
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except Exception as exc:  # noqa: BLE001 - the header says what it could not find
        tv, gpu = f"not importable ({type(exc).__name__})", "no GPU"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.platform()}, {cpus} CPUs, Python {platform.python_version()}, torch {tv}, {gpu}"


def phantom_data(data: Path | None, work: Path, *, cases: int, preset: str, seed: int) -> Path:
    """``data`` when given, else ``cases`` fresh phantoms synthesized under ``work/data``."""
    if data is not None:
        return data
    from coroseg.synth import synth_dataset

    data = work / "data"
    t = time.perf_counter()
    synth_dataset(data, cases, preset=preset, seed=seed, progress=False)
    print(f"generated {cases} '{preset}' phantoms in {time.perf_counter() - t:.1f} s")
    return data
