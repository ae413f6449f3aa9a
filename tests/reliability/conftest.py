"""Fixtures for the reliability suite (helpers live in ``rel_helpers.py``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from rel_helpers import DICOM, run_folder  # noqa: E402,F401


@dataclass
class CliResult:
    code: int
    out: str
    err: str


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
    fails the test with that traceback.
    """
    from coroseg.cli import main

    def run(argv: list[str]) -> CliResult:
        capfd.readouterr()
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capfd.readouterr()
        return CliResult(code, out, err)

    return run


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """A valid tiny grid-model run folder (shared, read-only: copy it before damaging it)."""
    return run_folder(tmp_path_factory.mktemp("rel_run"))


@pytest.fixture(scope="session")
def crop_run_dir(tmp_path_factory) -> Path:
    """A tiny ``unet3d_crop`` run folder without locator: predict needs ``--centerline FILE``."""
    return run_folder(tmp_path_factory.mktemp("rel_crop_run"), model="unet3d_crop")
