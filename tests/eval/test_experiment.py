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
    table = text.split("## Centerline recall")[0]
    lines = [ln for ln in table.splitlines()
             if ln.startswith("| unet") or ln.startswith("| HU") or ln.startswith("| Frangi")]
    # grid: one row; each crop arm: auto + ORACLE rows; two classical baselines
    assert len(lines) == 1 + 2 + 2 + 2
    assert any("ORACLE" in ln for ln in lines)
    cells = {ln.split("|")[1].strip() + "/" + ln.split("|")[2].strip(): [c.strip() for c in ln.split("|")[3:6]]
             for ln in lines}
    # the budget counts every network: the grid's 8 patches; a crop arm's 4 + 4 (locator); the 50 % arm 2 + 2
    assert cells["unet3d_grid/-"] == ["8", "-", "8"]
    assert cells["unet3d_crop/auto"] == ["4", "4", "8"]
    assert cells["unet3d_crop@50%/auto"] == ["2", "2", "4"]
    assert "## Key contrasts" in text and "## Every case" in text
    import csv

    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    crop = next(r for r in rows if r["arm"] == "unet3d_crop")
    assert int(crop["patches_seen"]) >= 8 and float(crop["gvox"]) > 0 and "cl_recall_thin" in crop


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
    assert cells[7] == "0.700 ± 0.141"  # per-seed means 0.6 and 0.8, sample standard deviation
    assert cells[11] == "2.00 ± 0.00"  # the infinite HD95 (empty prediction) is left out, not averaged in
    assert cells[13] == "2"  # ... and counted: case "a" in both seeds


def test_arm_budget_counts_the_locator() -> None:
    assert Arm("unet3d_grid").patches(3000, 0.5) == (3000, 0)
    assert Arm("unet3d_crop").patches(3000, 0.5) == (1500, 1500)
    assert Arm("unet3d_crop", 0.5).patches(3000, 0.5) == (750, 750)
    assert Arm("unet2d_crop").patches(3000, 0.25) == (2250, 750)
    assert Arm("unet3d_crop", attention=False).name == "unet3d_crop_noatt"


def test_paired_difference_known_answer_and_verdict() -> None:
    from coroseg.experiment import paired_difference, verdict

    rows = []
    for seed in (0, 1):
        for i in range(5):
            rows.append({"arm": "a", "centerline": "auto", "seed": seed, "case_id": f"c{i}", "dice": 0.5 + 0.1 * seed})
            rows.append({"arm": "b", "centerline": "none", "seed": seed, "case_id": f"c{i}", "dice": 0.4 + 0.1 * seed})
    rows.append({"arm": "a", "centerline": "auto", "seed": 0, "case_id": "unpaired", "dice": 0.0})
    d = paired_difference(rows, ("a", "auto"), ("b", "none"))
    assert d["n"] == 10 and d["seeds"] == 2  # the unpaired case is left out
    assert d["mean"] == pytest.approx(0.1) and d["lo"] == pytest.approx(0.1) and d["hi"] == pytest.approx(0.1)
    assert verdict(d).startswith("A better")
    assert verdict({"n": 10, "seeds": 2, "lo": -0.02, "hi": 0.03}).startswith("no clear difference")
    assert verdict({"n": 10, "seeds": 2, "lo": -0.05, "hi": -0.01}).startswith("B better")
    assert verdict({"n": 10, "seeds": 1, "lo": 0.01, "hi": 0.03}).endswith("case-to-case spread only")
    assert paired_difference(rows, ("a", "auto"), ("missing", "none")) is None


def test_one_pair_gets_no_verdict() -> None:
    from coroseg.experiment import paired_difference, verdict

    rows = [{"arm": "a", "centerline": "auto", "seed": 0, "case_id": "c", "dice": 0.9},
            {"arm": "b", "centerline": "none", "seed": 0, "case_id": "c", "dice": 0.1}]
    d = paired_difference(rows, ("a", "auto"), ("b", "none"))
    assert d["lo"] == d["hi"] == pytest.approx(0.8)  # a bootstrap of one value has no width ...
    assert verdict(d).startswith("too few pairs")    # ... so it says nothing


def test_bootstrap_resamples_seeds_not_only_cases() -> None:
    """Within each seed every case gains the same; between seeds the gain is 0 or 0.2. Resampling the
    10 pairs alone would give a narrow interval around 0.1; drawing the seeds gives exactly [0, 0.2]."""
    from coroseg.experiment import paired_difference

    rows = []
    for seed, gain in ((0, 0.0), (1, 0.2)):
        for i in range(5):
            rows.append({"arm": "a", "centerline": "auto", "seed": seed, "case_id": f"c{i}", "dice": 0.5 + gain})
            rows.append({"arm": "b", "centerline": "none", "seed": seed, "case_id": f"c{i}", "dice": 0.5})
    d = paired_difference(rows, ("a", "auto"), ("b", "none"))
    assert d["mean"] == pytest.approx(0.1)
    assert d["lo"] == pytest.approx(0.0) and d["hi"] == pytest.approx(0.2)


def test_bootstrap_draws_the_renders_of_one_tree_together() -> None:
    """One seed, 6 renders of 2 real trees: the gain is 0 on every render of tree T1 and 0.3 on every
    render of T2, so the interval spans the two trees' means, [0, 0.3], with 2 clusters."""
    from coroseg.experiment import paired_difference

    rows = []
    for i in range(6):
        tree, gain = ("T1", 0.0) if i < 3 else ("T2", 0.3)
        rows.append({"arm": "a", "centerline": "auto", "seed": 0, "case_id": f"c{i}", "cluster": tree,
                     "dice": 0.4 + gain})
        rows.append({"arm": "b", "centerline": "none", "seed": 0, "case_id": f"c{i}", "cluster": tree, "dice": 0.4})
    d = paired_difference(rows, ("a", "auto"), ("b", "none"))
    assert d["clusters"] == 2 and d["n"] == 6
    assert d["lo"] == pytest.approx(0.0) and d["hi"] == pytest.approx(0.3)


def test_experiment_refuses_a_budget_too_small_for_a_crop_arm(tmp_path: Path) -> None:
    from coroseg.errors import CorosegError
    from coroseg.experiment import run_experiment

    with pytest.raises(CorosegError, match="too small"):
        run_experiment(tmp_path, tmp_path / "out", patch_budget=1, arms=[Arm("unet3d_crop")], baselines=False)
