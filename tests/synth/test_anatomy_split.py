"""Real trees never straddle splits (coroseg.synth.dataset.anatomy_plan)."""

from pathlib import Path

import pytest

from coroseg.errors import InputError
from coroseg.synth.dataset import anatomy_plan, split_plan

TREES = [Path(f"Normal_{i}.nrrd") for i in range(1, 13)]


def _splits_of_trees(plan, trees):
    seen: dict[Path, set] = {}
    for (split, _), tree in zip(plan, trees):
        seen.setdefault(tree, set()).add(split)
    return seen


def test_one_case_per_tree_keeps_name_order():
    plan = split_plan(5)
    assert anatomy_plan(plan, TREES, seed=3) == TREES[:5]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_more_cases_than_trees_never_share_a_tree_across_splits(seed):
    plan = split_plan(40)
    trees = anatomy_plan(plan, TREES, seed=seed)
    seen = _splits_of_trees(plan, trees)
    assert all(len(s) == 1 for s in seen.values())
    assert len(seen) == 12  # every tree used
    test_trees = {t for (split, _), t in zip(plan, trees) if split == "test"}
    assert len(test_trees) == 2  # split_plan(12): 8 train, 2 val, 2 test trees
    assert sum(1 for split, _ in plan if split == "test") == 8


def test_tree_split_is_redrawn_per_seed_and_replayable():
    plan = split_plan(40)
    a, b = anatomy_plan(plan, TREES, seed=0), anatomy_plan(plan, TREES, seed=1)
    assert a == anatomy_plan(plan, TREES, seed=0)
    test_of = lambda trees: {t for (s, _), t in zip(plan, trees) if s == "test"}  # noqa: E731
    assert test_of(a) != test_of(b)


def test_too_few_trees_for_three_splits_is_an_input_error():
    with pytest.raises(InputError, match="at least 3 trees"):
        anatomy_plan(split_plan(6), TREES[:2], seed=0, source=Path("anat"))
