"""benchmarks/reproduce.py: the registry of every quoted CPU number, its planning, headers and failures.

Nothing here runs a benchmark: failing and succeeding steps are stand-in ``python -c`` commands.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "reproduce.py"


@pytest.fixture(scope="module")
def rp():
    spec = importlib.util.spec_from_file_location("coroseg_benchmarks_reproduce", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def test_prerequisites_exist_and_have_no_cycles(rp):
    rp.check_registry()
    steps = rp.by_name()
    assert len(steps) == len(rp.REGISTRY)
    state: dict[str, str] = {}

    def visit(name: str) -> None:  # depth-first: "open" seen again = a cycle
        assert state.get(name) != "open", f"cycle through {name}"
        if state.get(name) == "done":
            return
        state[name] = "open"
        for r in steps[name].requires:
            assert r in steps, f"{name}: unknown prerequisite {r}"
            visit(r)
        state[name] = "done"

    for name in steps:
        visit(name)
    bad = (rp.Step("a", ("-c", ""), 1, "x", requires=("b",)), rp.Step("b", ("-c", ""), 1, "x", requires=("a",)))
    with pytest.raises(ValueError, match="prerequisite"):
        rp.check_registry(bad)


def test_outputs_under_docs_results_and_scripts_exist(rp):
    results = (REPO / "docs" / "results").resolve()
    outputs = [s.output for s in rp.REGISTRY if s.output]
    assert len(outputs) == len(set(outputs))
    for s in rp.REGISTRY:
        if s.output:
            assert (REPO / s.output).resolve().is_relative_to(results), s.name
        first = s.command[0]
        if first == "-m":
            assert importlib.util.find_spec(s.command[1]) is not None, s.name
        else:
            assert first.endswith(".py") and (REPO / first).is_file(), s.name
    names = set(rp.by_name())
    # what the docs quote: the demo, the experiment, predict speed with its set-up steps
    assert {"demo", "experiment", "generalisation", "tta", "predict_speed_seed100", "speed_run"} <= names
    assert rp.by_name()["experiment"].output == "docs/results/experiment.md"


def test_list_prints_every_name(rp):
    res = subprocess.run([sys.executable, str(SCRIPT), "--list"], capture_output=True, text=True, timeout=60,
                         cwd=REPO)
    assert res.returncode == 0, res.stderr
    for s in rp.REGISTRY:
        assert s.name in res.stdout
    assert "h) on 2 CPU cores" in res.stdout


def test_plan_resolves_prerequisites_in_order(rp):
    names = [s.name for s in rp.plan(["predict_speed_seed100"])]
    assert names == ["speed_data", "speed_run", "speed_test100", "predict_speed_seed100"]
    names = [s.name for s in rp.plan(["tta", "generalisation"])]
    assert names == ["demo", "generalisation", "tta"]
    assert [s.name for s in rp.plan(None)] == [s.name for s in rp.REGISTRY]
    with pytest.raises(SystemExit, match="no_such_step"):
        rp.plan(["no_such_step"])


def test_header_has_command_commit_and_machine(rp):
    step = rp.by_name()["tta"]
    cmd = rp.argv(step, Path("/tmp/w"))
    commit = rp.commit_id()
    assert commit and commit != "unknown"
    text = rp.header(step, cmd, commit=commit, machine=rp.machine(), started=0.0, wall_s=61.0)
    assert text.startswith("$ python benchmarks/tta.py --run /tmp/w/demo/run")
    assert f"commit: {commit}" in text and platform.platform() in text
    assert "torch" in text and ("no GPU" in text or "CUDA" in text or "NVIDIA" in text)
    assert "1970-01-01 00:00:00 UTC" in text and "61 s" in text


def _fake(rp, monkeypatch, tmp_path, code: str):
    """A one-step registry whose output is tmp/docs/results/fake.txt, made by ``python -c code``."""
    step = dataclasses.replace(rp.by_name()["train_speed"], name="fake", output="docs/results/fake.txt",
                               command=("-c", code))
    monkeypatch.setattr(rp, "REGISTRY", (step,))
    monkeypatch.setattr(rp, "OUT_ROOT", tmp_path)
    monkeypatch.setattr(rp, "machine", lambda: "test machine")
    out = tmp_path / "docs" / "results" / "fake.txt"
    out.parent.mkdir(parents=True)
    out.write_text("previous output\n")
    return out


def test_failing_step_exits_non_zero_naming_it_and_keeps_output(rp, monkeypatch, tmp_path, capsys):
    out = _fake(rp, monkeypatch, tmp_path, "raise SystemExit(3)")
    assert rp.by_name()["fake"].command == ("-c", "raise SystemExit(3)")
    assert rp.argv(rp.by_name()["fake"], tmp_path)[:2] == [sys.executable, "-c"]
    with pytest.raises(SystemExit) as exc:
        rp.main(["--only", "fake", "--work", str(tmp_path / "work")])
    assert exc.value.code not in (0, None)
    assert "'fake' failed (exit 3)" in str(exc.value.code)
    assert out.read_text() == "previous output\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["fake.txt"]  # no temp file left


def test_succeeding_step_writes_header_then_stdout(rp, monkeypatch, tmp_path, capsys):
    out = _fake(rp, monkeypatch, tmp_path, "print('measured 42')")
    rp.main(["--only", "fake", "--work", str(tmp_path / "work")])
    text = out.read_text()
    assert text.startswith("$ python -c ")
    assert "# machine: test machine" in text and "# commit: " in text
    assert text.rstrip().endswith("measured 42")
    assert (tmp_path / "work" / "logs" / "fake.log").read_text() == "measured 42\n"


def test_a_run_folder_is_done_only_when_training_finished(rp, tmp_path):
    """config.json is written when training starts: an interrupted run must not be re-used."""
    step = rp.Step("r", ("-c", ""), 1, "x", creates="{work}/run/config.json")
    run = tmp_path / "run"
    run.mkdir()
    assert not rp.done(step, tmp_path)
    (run / "config.json").write_text('{"status": "training"}')
    assert not rp.done(step, tmp_path)
    (run / "config.json").write_text('{"status": "complete"}')
    assert rp.done(step, tmp_path)


def test_a_named_step_without_the_shared_data_fails(rp, tmp_path, monkeypatch):
    step = rp.Step("needs_real", ("-c", ""), 1, "x", output="docs/results/needs_real.txt", needs_shared=True)
    monkeypatch.setattr(rp, "SHARED", tmp_path / "absent")
    monkeypatch.setattr(rp, "OUT_ROOT", tmp_path)
    with pytest.raises(SystemExit, match="needs the real reference data"):
        rp.run(["needs_real"], tmp_path / "work", registry=(step,))
    assert rp.run(None, tmp_path / "work", registry=(step,)) == ["needs_real"]  # the whole run skips it
