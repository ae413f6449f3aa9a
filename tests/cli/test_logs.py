"""What coroseg shows on the terminal (:mod:`coroseg.logs`): log lines on stderr, ``-v`` / ``-q``,
Python warnings as one line, bars that a log line does not tear, no carriage-return floods."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from coroseg import logs
from coroseg.io.volume import Volume, write_volume

log = logging.getLogger("coroseg.test")


@pytest.fixture(autouse=True)
def _restored():
    yield
    logs.restore()


def _record(level: int, msg: str, name: str = "coroseg.x") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


@pytest.mark.parametrize("level, line", [
    (logging.DEBUG, "coroseg: debug: coroseg.x: detail"),
    (logging.INFO, "detail"),
    (logging.WARNING, "coroseg: warning: detail"),
    (logging.ERROR, "coroseg: error: detail"),
])
def test_terminal_lines_known_answers(level: int, line: str) -> None:
    assert logs.TerminalFormatter().format(_record(level, "detail")) == line
    assert logs.TerminalFormatter(rank=2).format(_record(level, "detail")) == "rank 2: " + line


def test_a_logged_traceback_only_with_verbose() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("coroseg.x", logging.WARNING, __file__, 1, "failed", None, sys.exc_info())
    assert logs.TerminalFormatter().format(rec) == "coroseg: warning: failed"
    assert "Traceback" in logs.TerminalFormatter(verbose=True).format(rec)


@pytest.mark.parametrize("verbosity, shown", [
    (logs.QUIET, ["coroseg: warning: w"]),
    (logs.NORMAL, ["i", "coroseg: warning: w"]),
    (logs.VERBOSE, ["coroseg: debug: coroseg.test: d", "i", "coroseg: warning: w"]),
])
def test_verbosity_picks_the_lines(verbosity: int, shown: list[str], capsys) -> None:
    logs.configure(logs.NORMAL)
    logs.configure(verbosity)  # a second call replaces the first handler: no line twice
    log.debug("d")
    log.info("i")
    log.warning("w")
    assert capsys.readouterr().err.splitlines() == shown
    assert logs.show_progress() is (verbosity != logs.QUIET)
    # the logger keeps INFO under -q, so a log file beside the terminal (train.log) still gets every line
    assert logging.getLogger("coroseg").getEffectiveLevel() == (logging.DEBUG if verbosity == logs.VERBOSE
                                                                else logging.INFO)


def test_restore_leaves_logging_as_it_was(capsys) -> None:
    logger = logging.getLogger("coroseg")
    before = (list(logger.handlers), logger.level, warnings.showwarning)
    logs.configure(logs.VERBOSE)
    logs.restore()
    assert (list(logger.handlers), logger.level, warnings.showwarning) == before
    log.warning("after")
    assert "after" not in capsys.readouterr().err


def test_other_ranks_show_only_warnings(monkeypatch, capsys) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    logs.configure(logs.NORMAL)
    log.info("epoch line")
    log.warning("w")
    assert capsys.readouterr().err.splitlines() == ["rank 3: coroseg: warning: w"]


def test_python_warnings_become_one_line_on_the_coroseg_logger(capsys) -> None:
    seen: list[logging.LogRecord] = []
    keep = logging.Handler()
    keep.emit = seen.append
    logging.getLogger("coroseg").addHandler(keep)  # what a train.log handler would receive
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            logs.configure(logs.QUIET)
            warnings.warn("spacing is odd", UserWarning, stacklevel=1)
    finally:
        logging.getLogger("coroseg").removeHandler(keep)
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("coroseg: warning: UserWarning: spacing is odd (cli/test_logs.py:")
    assert [r.name for r in seen] == ["coroseg.warnings"]


class FakeTerminal(io.StringIO):
    """A stderr that says it is a terminal, so tqdm draws its bar (``disable=None``)."""

    def isatty(self) -> bool:
        return True


def test_a_log_line_does_not_tear_a_bar(monkeypatch) -> None:
    from tqdm import tqdm

    screen = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", screen)
    logs.configure(logs.NORMAL)
    bar = tqdm(total=4, desc="model 1/3", disable=None)
    bar.update(1)
    log.info("epoch line")
    bar.update(1)
    bar.close()
    text = screen.getvalue()
    assert "model 1/3" in text and "epoch line" in text
    # the bar was cleared (its line ends in "\r") before the message, which has a line of its own
    before, after = text.split("epoch line")
    assert before.endswith("\r") and after.startswith("\n")
    assert "model 1/3" in after  # and drawn again below it


def _masks(tmp_path: Path) -> tuple[Path, Path]:
    lab = np.zeros((6, 6, 6), np.uint8)
    lab[2:4, 2:4, 2:4] = 1
    for folder in ("pred", "gt"):
        write_volume(Volume(lab, is_label=True), tmp_path / folder / "c1.nrrd")
    write_volume(Volume(lab, is_label=True), tmp_path / "gt" / "c2.nrrd")  # no prediction: a warning
    return tmp_path / "pred", tmp_path / "gt"


def _main(argv: list, capfd) -> tuple[int, str, str]:
    from coroseg.cli import main

    capfd.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capfd.readouterr()
    return code, out, err


@pytest.mark.parametrize("flags, debug, warning", [([], False, True), (["-q"], False, True), (["-v"], True, True)])
def test_root_verbosity_flags(flags: list, debug: bool, warning: bool, tmp_path: Path, capfd) -> None:
    pred, gt = _masks(tmp_path)
    code, out, err = _main([*flags, "evaluate", "--pred", pred, "--gt", gt], capfd)
    assert code == 0, err
    assert "dice" in out.lower()  # the result table is on stdout whatever the verbosity
    assert ("coroseg: debug: coroseg.eval.evaluate: c1: dice 1.0000 hd95 0.00 mm" in err) is debug
    assert ("coroseg: warning: 1 ground-truth case(s) have no prediction and are scored as failures "
            "(Dice 0): c2" in err) is warning


def test_quiet_hides_progress_lines_and_bars(tmp_path: Path, capfd, monkeypatch) -> None:
    import coroseg.eval.export as export

    asked = []
    real = export.export_nnunet
    monkeypatch.setattr(export, "export_nnunet", lambda *a, **k: asked.append(k["progress"]) or real(*a, **k))
    label = np.zeros((6, 6, 6), np.uint8)
    label[2:4, 2:4, 2:4] = 1
    for split in ("train", "val"):
        folder = tmp_path / "ds" / split / "Normal"
        write_volume(Volume(np.full((6, 6, 6), 40, np.int16)), folder / "CTCA" / f"{split}_1.nrrd")
        write_volume(Volume(label, is_label=True), folder / "Annotations" / f"{split}_1.nrrd")
    argv = ["export", "--data", tmp_path / "ds", "--out", tmp_path / "nn"]
    code, _, err = _main(argv, capfd)
    assert code == 0 and "exported 2 training and 0 test cases" in err
    code, _, err = _main(["-q", *argv], capfd)
    assert code == 0 and err == ""
    assert asked == [True, False]  # -q: no bar either


def test_verbose_and_quiet_together_is_a_one_line_error(capfd) -> None:
    code, _, err = _main(["-v", "-q", "models"], capfd)
    assert code == 2
    assert err.strip().splitlines() == ["coroseg: error: Invalid value: -v/--verbose and -q/--quiet exclude each "
                                        "other (see 'coroseg --help')"]


def _tiny_dataset(root: Path) -> Path:
    z, y, x = np.meshgrid(*[np.arange(16)] * 3, indexing="ij")
    tube = ((y - 8) ** 2 + (x - 8) ** 2 <= 4).astype(np.uint8)
    rng = np.random.default_rng(0)
    for n, split in enumerate(("train", "train", "val")):
        image = np.where(tube, 450.0, rng.normal(40.0, 10.0, tube.shape)).astype(np.int16)
        write_volume(Volume(image), root / split / "Normal" / "CTCA" / f"case_{n}.nrrd")
        write_volume(Volume(tube, is_label=True), root / split / "Normal" / "Annotations" / f"case_{n}.nrrd")
    return root


@pytest.mark.slow
def test_train_without_a_terminal_shows_epoch_lines_and_no_bar_frames(tmp_path: Path) -> None:
    """stderr a pipe (a log file, CI): the epoch lines reach it as plain lines, like train.log; no
    '\\r' frames from progress bars in either."""
    data, run = _tiny_dataset(tmp_path / "ds"), tmp_path / "run"
    cmd = [sys.executable, "-m", "coroseg", "train", "--data", str(data), "--model", "unet3d_grid", "--out", str(run),
           "--epochs", "2", "--device", "cpu", "--set", "channels=[4,8]", "--set", "num_res_units=0",
           "--set", "patch_size=[16,16,16]", "--set", "samples_per_case=2", "--set", "locator=false",
           "--set", "augment=0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    logged = (run / "train.log").read_text(encoding="utf-8")
    for text in (proc.stderr, logged):
        assert "\r" not in text
        assert "model epoch 1/2: loss" in text and "model epoch 2/2: loss" in text
    assert "Traceback" not in proc.stderr
    assert "run folder:" in proc.stdout
