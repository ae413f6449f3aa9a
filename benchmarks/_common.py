"""Shared set-up of the benchmark scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import time
from pathlib import Path


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
