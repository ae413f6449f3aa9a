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
