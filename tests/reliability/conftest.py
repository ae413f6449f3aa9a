"""Fixtures for the reliability suite (helpers live in ``rel_helpers.py``)."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from rel_helpers import DICOM, run_folder  # noqa: E402,F401


@dataclass
class CliResult:
    code: int
    out: str
    err: str
    #: the lines coroseg's own logging wrote to stderr (progress lines, warnings), as the terminal shows them
    log: list[str] = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        """The non-blank stderr lines that are not coroseg's log lines: what the one-line promise is about."""
        return [ln for ln in self.err.strip().splitlines() if ln.strip() and ln not in self.log]


class _LogLines(logging.Handler):
    """Keeps every ``coroseg`` log record as the terminal formats it, so tests can tell log lines apart."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        from coroseg.logs import TerminalFormatter

        self.lines.extend(TerminalFormatter().format(record).splitlines())


@pytest.fixture(autouse=True)
def _keep_locale():
    """GDCM's DICOM writer (used to build test series) switches the C locale to "C": restore it,
    or later tests' subprocess pipes decode as ASCII."""
    import locale

    saved = locale.setlocale(locale.LC_ALL)
    yield
    if locale.setlocale(locale.LC_ALL) != saved:
        locale.setlocale(locale.LC_ALL, saved)


@pytest.fixture
def cli(capfd):
    """Run ``coroseg.cli.main(argv)`` in process; return exit code, stdout and stderr.

    ``capfd`` also sees what C++ libraries (ITK, GDCM) print on file descriptor 2.
    Any exception other than ``SystemExit`` escapes, so a crash (a traceback for the user)
    fails the test with that traceback. ``CliResult.log`` holds coroseg's own log lines
    (what its terminal handler printed), ``CliResult.messages`` every other stderr line.
    """
    from coroseg.cli import main

    def run(argv: list[str]) -> CliResult:
        capfd.readouterr()
        lines = _LogLines()
        logger = logging.getLogger("coroseg")
        logger.addHandler(lines)
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            logger.removeHandler(lines)
        out, err = capfd.readouterr()
        return CliResult(code, out, err, lines.lines)

    return run


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """A valid tiny grid-model run folder (shared, read-only: copy it before damaging it)."""
    return run_folder(tmp_path_factory.mktemp("rel_run"))


@pytest.fixture(scope="session")
def crop_run_dir(tmp_path_factory) -> Path:
    """A tiny ``unet3d_crop`` run folder without locator: predict needs ``--centerline FILE``."""
    return run_folder(tmp_path_factory.mktemp("rel_crop_run"), model="unet3d_crop")
