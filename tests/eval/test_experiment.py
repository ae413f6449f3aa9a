"""``coroseg experiment`` end to end at toy size: every arm trains, is tested, lands in results.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from coroseg.experiment import Arm, results_markdown, run_experiment

TINY = {"channels": [4, 8], "patch_size": [16, 16, 16], "locator_channels": [4, 8], "locator_patch": [16, 16, 16]}


@pytest.mark.slow
def test_experiment_toy_end_to_end(tmp_path: Path) -> None:
    from coroseg.synth import synth_dataset

    data = tmp_path / "data"
    synth_dataset(data, 3, preset="small", seed=0, progress=False)
    arms = (Arm("unet3d_grid"), Arm("unet3d_crop"), Arm("unet3d_crop", 0.5))
    text = run_experiment(data, tmp_path / "exp", patch_budget=8, seeds=(0,), device="cpu", batch_size=4,
                          arms=arms, baselines=True, progress=False, overrides=TINY)
    out = tmp_path / "exp"
    assert (out / "results.md").read_text() == text
    assert (out / "dice_vs_budget.png").stat().st_size > 1000
    lines = [ln for ln in text.splitlines()
             if ln.startswith("| unet") or ln.startswith("| HU") or ln.startswith("| Frangi")]
    # grid: one row; each crop arm: auto + ORACLE rows; two classical baselines
    assert len(lines) == 1 + 2 + 2 + 2
    assert any("ORACLE" in ln for ln in lines)
    assert "unet3d_crop@50%" in text
    assert "| 4 |" in text  # the 50% arm trained on half the budget


def test_results_markdown_mean_and_std_over_seeds() -> None:
    rows = []
    for seed, dice in ((0, 0.6), (1, 0.8)):
        for case in ("a", "b"):
            rows.append({"arm": "unet3d_grid", "model": "unet3d_grid", "seed": seed, "budget": 100,
                         "case_id": case, "centerline": "none", "dice": dice, "voxel_accuracy": 0.99,
                         "precision": 0.5, "recall": 0.5, "hd95_mm": float("inf") if case == "a" else 2.0,
                         "cldice": 0.7})
    text = results_markdown(rows, patch_budget=100, seeds=(0, 1), data_dir="d")
    row = next(ln for ln in text.splitlines() if ln.startswith("| unet3d_grid"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "0.700 ± 0.100"  # per-seed means 0.6 and 0.8
    assert cells[7] == "2.00 ± 0.00"  # the infinite HD95 (empty prediction) is left out, not averaged in
