"""Regenerate every CPU-measured number the README and docs quote: one command, raw outputs in docs/results/.

:data:`REGISTRY` lists every measurement (and the set-up steps some of them need: a trained
model, test phantoms) with the command that produces it, the steps it needs first, the file it
writes under ``docs/results/``, whether it needs the real reference data in ``../shared/data``
and a rough duration on the project's 2-core CPU machine (from the docs). Each output starts
with a header: the command, the commit (``-dirty`` when the tree had changes outside
docs/results/), the machine, the start time and the wall time; then the command's stdout (or the
file the benchmark writes itself). Outputs are written atomically once the command has
succeeded: a failing step stops the run with a non-zero exit naming it and leaves the previous
output as it was.

    python benchmarks/reproduce.py                       # everything, in dependency order (make results)
    python benchmarks/reproduce.py --list                # the table: names, durations, outputs, doc sections
    python benchmarks/reproduce.py --only tta generalisation   # some (their prerequisites re-used if done)
    python benchmarks/reproduce.py --work DIR            # data and runs (default /tmp/coroseg-reproduce)

GPU figures are not here: they name their own command (``benchmarks/gpu_check.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import REPO, RESULTS, commit_id, machine  # noqa: E402  (one provenance for every benchmark)

#: where output paths are resolved (the repository; tests point it elsewhere)
OUT_ROOT = REPO
SHARED = REPO.parent / "shared" / "data"
DEFAULT_WORK = Path("/tmp/coroseg-reproduce")
WORK = "{work}"  # replaced by --work in commands, markers and extra files


@dataclasses.dataclass(frozen=True)
class Step:
    """One measurement (or set-up step) and how to make it.

    ``command``: argv after the Python interpreter (``benchmarks/x.py ...`` or ``-m coroseg ...``), run
    from the repository root; ``{work}`` stands for ``--work``. ``output``: the file under docs/results/
    it regenerates (None: a set-up step whose product lives in ``--work`` only). ``result_file``: a
    file the command writes itself, used as the output's body instead of its stdout. ``extra``: files
    appended after the stdout. ``creates``: a path in ``--work`` whose existence means the step is done
    (a prerequisite is then re-used). ``fresh``: folders in ``--work`` removed before the step runs.
    """

    name: str
    command: tuple[str, ...]
    minutes: float
    regenerates: str
    output: str | None = None
    requires: tuple[str, ...] = ()
    needs_shared: bool = False
    creates: str | None = None
    result_file: str | None = None
    extra: tuple[str, ...] = ()
    fresh: tuple[str, ...] = ()

    @property
    def output_path(self) -> Path | None:
        return None if self.output is None else OUT_ROOT / self.output


def _out(name: str) -> str:
    return f"{RESULTS}/{name}.txt"


_SPEED_TRAIN = ("-m", "coroseg", "train", "--data", "{work}/speed/data", "--model", "unet3d_crop",
                "--out", "{work}/speed/run", "--batch-size", "4", "--patch-budget", "4000", "--lr", "3e-3",
                "--val-every", "10", "--early-stop", "0", "--device", "cpu",
                "--set", "channels=[16,32,64,128]", "--set", "patch_size=[48,48,48]", "--set", "augment=0.5",
                "--set", "locator_spacing_factor=2.0", "--set", "locator_budget=4000")
_SPEED = ("benchmarks/predict_speed.py", "--run", "{work}/speed/run")
_SPEED_REQ = ("speed_run", "speed_test100")
_SPEED_DOC = "docs/benchmarks.md 'Speed and memory of predict'; README 'Speed'"
_GEN_SETS = "{work}/gen/sets"


#: every CPU measurement the README and docs quote, prerequisites before the steps that need them
REGISTRY: tuple[Step, ...] = (
    Step("demo", ("-m", "coroseg", "demo", "--out", "{work}/demo"), 8,
         "README 'Results' (demo table); docs/results/demo.md; docs/model-card.md",
         output=_out("demo"), creates="{work}/demo/demo.json", extra=("{work}/demo/demo.json",),
         fresh=("{work}/demo",)),
    Step("centerline_hit_rate", ("benchmarks/centerline_hit_rate.py",), 2,
         "docs/benchmarks.md 'Centerline files vs the real ASOCA masks'",
         output=_out("centerline_hit_rate"), needs_shared=True),
    Step("synth_realism_asoca", ("benchmarks/synth_realism.py", "--preset", "asoca", "--cases", "10"), 5,
         "docs/benchmarks.md 'Phantom difficulty' (asoca column); README (threshold / Frangi Dice)",
         output=_out("synth_realism_asoca")),
    Step("synth_realism_small", ("benchmarks/synth_realism.py", "--preset", "small", "--cases", "10"), 2,
         "docs/benchmarks.md 'Phantom difficulty' (small column); README (threshold / Frangi Dice)",
         output=_out("synth_realism_small")),
    Step("generalisation", ("benchmarks/generalisation.py", "--run", "{work}/demo/run", "--work", _GEN_SETS), 6,
         "README 'Away from home', 'Limitations'; docs/benchmarks.md 'Generalisation'; docs/results/generalisation.md",
         output=_out("generalisation"), requires=("demo",), needs_shared=True, fresh=(_GEN_SETS,)),
    Step("prior_asoca", ("benchmarks/prior_asoca.py",), 5,
         "docs/benchmarks.md 'Centerline prior on the real ASOCA masks'",
         output=_out("prior_asoca"), needs_shared=True),
    Step("baselines_asoca", ("benchmarks/baselines_asoca.py", "--cases", "4"), 5,
         "docs/benchmarks.md 'Metrics speed'",
         output=_out("baselines_asoca"), needs_shared=True),
    Step("train_compare", ("benchmarks/train_compare.py",), 5,
         "docs/benchmarks.md 'Training' (crop vs grid throughput)",
         output=_out("train_compare")),
    # predict speed: an asoca-size model trained with the docs' command, then unseen test phantoms
    Step("speed_data", ("-m", "coroseg", "synth", "--out", "{work}/speed/data", "--cases", "8", "--preset", "asoca",
                        "--seed", "0"), 2,
         "set-up of predict_speed_*: the 8 training phantoms", creates="{work}/speed/data/manifest.json",
         fresh=("{work}/speed/data",)),
    Step("speed_run", _SPEED_TRAIN, 15,
         "docs/benchmarks.md 'Speed and memory of predict' (the model: validation Dice, locator)",
         output=_out("speed_run"), requires=("speed_data",), creates="{work}/speed/run/config.json",
         extra=("{work}/speed/run/metrics.csv",), fresh=("{work}/speed/run",)),
    Step("speed_test100", ("-m", "coroseg", "synth", "--out", "{work}/speed/test100", "--cases", "2", "--preset",
                           "asoca", "--seed", "100"), 1,
         "set-up of predict_speed_*: 2 unseen phantoms, seed 100", creates="{work}/speed/test100/manifest.json",
         fresh=("{work}/speed/test100",)),
    Step("speed_test200", ("-m", "coroseg", "synth", "--out", "{work}/speed/test200", "--cases", "4", "--preset",
                           "asoca", "--seed", "200"), 1,
         "set-up of predict_speed_*: 4 unseen phantoms, seed 200", creates="{work}/speed/test200/manifest.json",
         fresh=("{work}/speed/test200",)),
    Step("predict_speed_seed100", (*_SPEED, "--data", "{work}/speed/test100", "--cases", "2"), 2,
         _SPEED_DOC + " (s100 rows)", output=_out("predict_speed_seed100"), requires=_SPEED_REQ),
    Step("predict_speed_seed200", (*_SPEED, "--data", "{work}/speed/test200", "--cases", "4"), 3,
         _SPEED_DOC + " (s200 rows)", output=_out("predict_speed_seed200"), requires=("speed_run", "speed_test200")),
    Step("predict_speed_400_pad", (*_SPEED, "--data", "{work}/speed/test100", "--cases", "1", "--slices", "400",
                                   "--z-mode", "pad"), 2,
         "docs/benchmarks.md 'Longer scans (512 x 512 x 400)' (--z-mode pad); README (1.3-1.4 GB)",
         output=_out("predict_speed_400_pad"), requires=_SPEED_REQ),
    Step("predict_speed_400_resample", (*_SPEED, "--data", "{work}/speed/test100", "--cases", "1", "--slices", "400"),
         2, "docs/benchmarks.md 'Longer scans (512 x 512 x 400)' (--z-mode resample)",
         output=_out("predict_speed_400_resample"), requires=_SPEED_REQ),
    Step("predict_speed_seed100_bf16", (*_SPEED, "--data", "{work}/speed/test100", "--cases", "2",
                                        "--precision", "bf16"), 2,
         "docs/benchmarks.md 'bf16 on the CPU' (s100)", output=_out("predict_speed_seed100_bf16"),
         requires=_SPEED_REQ),
    Step("predict_speed_seed200_bf16", (*_SPEED, "--data", "{work}/speed/test200", "--cases", "4",
                                        "--precision", "bf16"), 3,
         "docs/benchmarks.md 'bf16 on the CPU' (s200)", output=_out("predict_speed_seed200_bf16"),
         requires=("speed_run", "speed_test200")),
    Step("predict_throughput", ("benchmarks/predict_throughput.py", "--run", "{work}/demo/run", "--work",
                                "{work}/thr", "--cases", "20", "--parts", "1", "2"), 7,
         "docs/benchmarks.md 'Many scans: throughput with job-array parts'",
         output=_out("predict_throughput"), requires=("demo",), fresh=("{work}/thr",)),
    Step("tta", ("benchmarks/tta.py", "--run", "{work}/demo/run", "--work", _GEN_SETS, "--sets", "home", "real",
                 "shifted"), 5,
         "docs/benchmarks.md 'Test-time mirroring'; README (--tta 3.7-4.9x the time)",
         output=_out("tta"), requires=("demo",), needs_shared=True),
    Step("train_speed", ("benchmarks/train_speed.py",), 2,
         "docs/benchmarks.md 'Training loop vs bare model step'", output=_out("train_speed")),
    Step("train_speed_workers1", ("benchmarks/train_speed.py", "--workers", "1"), 2,
         "docs/benchmarks.md 'Training loop vs bare model step' (--workers 1: 72 % / 81 %)",
         output=_out("train_speed_workers1")),
    Step("gpu_check_tiny", ("benchmarks/gpu_check.py", "--tiny", "--out", "{work}/gpu_check_tiny"), 2,
         "docs/benchmarks.md 'GPU check' (the CPU-sized run: the script works, not GPU speed)",
         output=f"{RESULTS}/gpu_check_tiny.txt", result_file="{work}/gpu_check_tiny/gpu_check.txt",
         fresh=("{work}/gpu_check_tiny",)),
    Step("experiment", ("benchmarks/experiment_fair.py", "--work", "{work}/experiment", "--out",
                        "{work}/experiment/experiment.md"), 140,
         "README 'Results' (crop vs grid, attention, budgets); docs/results/experiment.md",
         output=f"{RESULTS}/experiment.md", result_file="{work}/experiment/experiment.md",  # skips its real set itself
         fresh=("{work}/experiment",)),
)


# ---------------------------------------------------------------------------------------------- registry


def by_name(registry=None) -> dict[str, Step]:
    return {s.name: s for s in (REGISTRY if registry is None else registry)}


def check_registry(registry=None) -> None:
    """Names unique, prerequisites known and listed earlier (so no cycles), outputs under docs/results/."""
    registry = REGISTRY if registry is None else registry
    seen: set[str] = set()
    for s in registry:
        if s.name in seen:
            raise ValueError(f"step {s.name!r} listed twice")
        for r in s.requires:
            if r not in seen:
                raise ValueError(f"step {s.name!r}: prerequisite {r!r} unknown or listed after it")
        if s.output is not None and not s.output.startswith(RESULTS + "/"):
            raise ValueError(f"step {s.name!r}: output {s.output} not under {RESULTS}/")
        seen.add(s.name)


def plan(names=None, registry=None) -> list[Step]:
    """The steps to run for ``names`` (None: all), each after its prerequisites, in registry order."""
    registry = REGISTRY if registry is None else registry
    steps = by_name(registry)
    if names is None:
        return list(registry)
    unknown = [n for n in names if n not in steps]
    if unknown:
        raise SystemExit(f"reproduce: unknown step(s) {', '.join(unknown)}; --list shows them")
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        if n not in wanted:
            wanted.add(n)
            todo.extend(steps[n].requires)
    return [s for s in registry if s.name in wanted]


def argv(step: Step, work: Path) -> list[str]:
    return [sys.executable, *(a.replace(WORK, str(work)) for a in step.command)]


def _work_path(template: str, work: Path) -> Path:
    return Path(template.replace(WORK, str(work)))


def done(step: Step, work: Path) -> bool:
    """A prerequisite can be re-used: its product in ``work`` exists (else: its output file)."""
    if step.creates is not None:
        path = _work_path(step.creates, work)
        if path.name == "config.json":  # a run folder: written when training starts, done only when it finished
            from coroseg.models.run import run_complete

            return run_complete(path.parent)
        return path.exists()
    return step.output_path is not None and step.output_path.exists()


def list_table(registry=None) -> str:
    registry = REGISTRY if registry is None else registry
    rows = [("step", "min", "shared", "needs", "output", "regenerates")]
    for s in registry:
        rows.append((s.name, f"{s.minutes:g}", "yes" if s.needs_shared else "", ",".join(s.requires) or "-",
                     s.output or "(set-up, --work only)", s.regenerates))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5] for r in rows]
    total = sum(s.minutes for s in registry)
    lines.append(f"\n{len(registry)} steps, about {total:g} min ({total / 60:.1f} h) on 2 CPU cores; 'shared': needs "
                 f"../shared/data (skipped with a reason when absent)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- provenance


def display(cmd: list[str]) -> str:
    """The command as a user would type it (``python`` for this interpreter, paths relative to the repo)."""
    return shlex.join(["python", *cmd[1:]])


def header(step: Step, cmd: list[str], *, commit: str, machine: str, started: float, wall_s: float) -> str:
    when = datetime.datetime.fromtimestamp(started, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"$ {display(cmd)}",
             f"# step: {step.name} (python benchmarks/reproduce.py --only {step.name}); "
             f"regenerates: {step.regenerates}",
             f"# commit: {commit}",
             f"# machine: {machine}",
             f"# started: {when}; wall time {wall_s:.0f} s ({wall_s / 60:.1f} min)"]
    text = "\n".join(lines)
    if step.output and step.output.endswith(".md"):
        text = "```text\n" + text + "\n```"
    return text + "\n\n"


# ---------------------------------------------------------------------------------------------- running


def _stream(cmd: list[str], log: Path) -> tuple[int, str]:
    """Run ``cmd`` from the repo root; its stdout shown as it comes and kept, its stderr shown."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out: list[str] = []
    with open(log, "w") as fh, subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, env=env) as p:
        assert p.stdout is not None
        for line in p.stdout:
            out.append(line)
            fh.write(line)
            sys.stdout.write(line)
            sys.stdout.flush()
    return p.returncode, "".join(out)


def run_step(step: Step, work: Path, *, commit: str, machine_line, keep_work: bool = False) -> None:
    """Run ``step``; on success write its output (atomically). A failure raises SystemExit naming it."""
    if not keep_work:
        for f in step.fresh:
            shutil.rmtree(_work_path(f, work), ignore_errors=True)
    cmd = argv(step, work)
    log = work / "logs" / f"{step.name}.log"
    print(f"\n=== {step.name} (~{step.minutes:g} min): {display(cmd)}", flush=True)
    started = time.time()
    t0 = time.perf_counter()
    rc, stdout = _stream(cmd, log)
    wall = time.perf_counter() - t0
    old = f"{step.output} left as it was" if step.output else "no output file"
    if rc != 0:
        raise SystemExit(f"reproduce: step '{step.name}' failed (exit {rc}) after {wall:.0f} s: {display(cmd)}; "
                         f"{old}; its stdout: {log}")
    if step.output is None:
        print(f"=== {step.name}: done in {wall:.0f} s", flush=True)
        return
    if step.result_file is not None:
        result = _work_path(step.result_file, work)
        if not result.exists():
            raise SystemExit(f"reproduce: step '{step.name}' wrote no {result}; {old}")
        body = result.read_text()
    else:
        body = stdout
    for extra in step.extra:
        p = _work_path(extra, work)
        if p.exists():
            body += f"\n==> {p.name} ({extra.replace(WORK, '--work')}) <==\n" + p.read_text()
    text = header(step, cmd, commit=commit, machine=machine_line(), started=started, wall_s=wall) + body
    from coroseg.io.atomic import write_text  # temp file + rename, the package's one writer

    write_text(step.output_path, text if text.endswith("\n") else text + "\n")
    print(f"=== {step.name}: done in {wall:.0f} s -> {step.output}", flush=True)


def run(names=None, work: Path = DEFAULT_WORK, *, keep_work: bool = False, registry=None) -> list[str]:
    """Run the plan for ``names``; return the names of the steps skipped (no ../shared/data)."""
    registry = REGISTRY if registry is None else registry
    steps = plan(names, registry)
    named = set(names) if names is not None else {s.name for s in steps}
    commit = commit_id()
    cache: dict[str, str] = {}

    def machine_line() -> str:
        if "m" not in cache:
            cache["m"] = machine()
        return cache["m"]

    have_shared = SHARED.is_dir()
    skipped: list[str] = []
    t_all = time.perf_counter()
    print(f"reproduce: {len(steps)} step(s), about {sum(s.minutes for s in steps):g} min; commit {commit}; "
          f"work {work}", flush=True)
    for step in steps:
        missing = [r for r in step.requires if r in skipped]
        if step.needs_shared and not have_shared and names is not None and step.name in names:
            raise SystemExit(f"reproduce: {step.name} was asked for but needs the real reference data in {SHARED} "
                             "(absent)")
        if step.needs_shared and not have_shared:
            print(f"=== {step.name}: skipped, it needs the real reference data in {SHARED} (absent)", flush=True)
            skipped.append(step.name)
            continue
        if missing:
            print(f"=== {step.name}: skipped, its prerequisite(s) {', '.join(missing)} were skipped", flush=True)
            skipped.append(step.name)
            continue
        if (step.name not in named or keep_work) and step.creates is not None and done(step, work):
            print(f"=== {step.name}: re-used ({step.creates.replace(WORK, str(work))} exists)", flush=True)
            continue
        if step.name not in named and done(step, work):
            print(f"=== {step.name}: re-used ({step.output} exists)", flush=True)
            continue
        run_step(step, work, commit=commit, machine_line=machine_line, keep_work=keep_work)
    print(f"\nreproduce: finished in {(time.perf_counter() - t_all) / 60:.1f} min"
          + (f"; skipped: {', '.join(skipped)}" if skipped else ""), flush=True)
    return skipped


def main(args=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="Steps: " + ", ".join(by_name()))
    ap.add_argument("--list", action="store_true",
                    help="print the steps (durations, outputs, doc sections), run nothing")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run these steps (and prerequisites not yet done)")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help="data, runs and logs (default: %(default)s)")
    ap.add_argument("--keep-work", action="store_true",
                    help="resume from what an earlier run left in --work: set-up results there are re-used and "
                         "folders are not cleared (only for the same commit)")
    a = ap.parse_args(args)
    check_registry()
    if a.list:
        print(list_table())
        return
    run(a.only, a.work.resolve(), keep_work=a.keep_work)


if __name__ == "__main__":
    main()
