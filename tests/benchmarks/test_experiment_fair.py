"""benchmarks/experiment_fair.py: its results file keeps the sections of sets not run this time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "experiment_fair.py"


@pytest.fixture(scope="module")
def ef():
    spec = importlib.util.spec_from_file_location("coroseg_benchmarks_experiment_fair", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def test_a_new_set_is_added_and_the_old_one_kept(ef):
    old = ef.merge_sections("", {"small": "Set small, run 1.\n\n| a |\n"})
    both = ef.merge_sections(old, {"real": "Set real, run 1."})
    assert both.count("<!-- set small -->") == 1 and both.count("<!-- set real -->") == 1
    assert "Set small, run 1.\n\n| a |" in both and "Set real, run 1." in both
    assert both.index("set small") < both.index("set real")  # SETS order, whatever the run order


def test_a_rerun_replaces_only_its_own_section(ef):
    both = ef.merge_sections("", {"real": "real v1", "small": "small v1"})
    again = ef.merge_sections(both, {"small": "small v2"})
    assert "small v2" in again and "small v1" not in again and "real v1" in again
    assert ef.merge_sections(again, {}) == again  # stable: re-reading loses and adds nothing


def test_real_set_renders_once_and_each_seed_resplits_the_trees(ef, tmp_path, monkeypatch):
    """4 renders per tree are made once; every seed gets 8 test renders of 2 trees of its own draw."""
    import json

    import coroseg.synth
    import coroseg.synth.realtree

    trees = [Path(f"Normal_{i}.nrrd") for i in range(1, 13)]
    made = []

    def fake_synth(folder, n, *, preset, seed, anatomy_dir, progress):  # one tiny file per case
        made.append(seed)
        cases = []
        for i in range(n):
            rel = f"train/Normal/CTCA/synth_{i:04d}.nrrd"
            (Path(folder) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(folder) / rel).write_text(f"{seed} {i}")
            cases.append({"case_id": f"synth_{i:04d}", "split": "train", "group": "Normal", "files": {"image": rel},
                          "derived": {"anatomy_case": trees[i].stem}})
        (Path(folder) / "manifest.json").write_text(json.dumps({"cases": cases}))

    monkeypatch.setattr(coroseg.synth, "synth_dataset", fake_synth)
    monkeypatch.setattr(coroseg.synth.realtree, "list_anatomy_cases", lambda d: trees)
    data, _ = ef.make_data(tmp_path, "real", [0, 1, 2], tmp_path / "anat")
    data_again, _ = ef.make_data(tmp_path, "real", [0, 1, 2], tmp_path / "anat")
    assert made == [2000, 2001, 2002, 2003] and data_again == data  # rendered once, re-used after
    test_trees = []
    for seed in (0, 1, 2):
        cases = json.loads((data[seed] / "manifest.json").read_text())["cases"]
        test = [c for c in cases if c["split"] == "test"]
        assert len(cases) == 48 and len(test) == 8
        test_trees.append({c["derived"]["anatomy_case"] for c in test})
        assert len(test_trees[-1]) == 2
    # the split is redrawn per seed (known answer of tree_splits(12, seed=2000 + s)): 6 test trees in all
    assert test_trees == [{"Normal_12", "Normal_2"}, {"Normal_5", "Normal_9"}, {"Normal_1", "Normal_10"}]
