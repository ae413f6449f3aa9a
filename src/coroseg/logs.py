"""What coroseg shows on the terminal: its log records on stderr, at the level ``-v`` / ``-q`` ask for.

Library code logs (``logging.getLogger("coroseg.<module>")``) and never prints its narrative;
the command line calls :func:`configure` once per command (``coroseg -q train ...``), which puts
one handler on the ``coroseg`` logger, beside any log file a command adds (``train.log``), and
:func:`restore` when the command ends. Python users may call :func:`configure` too.

- The handler writes through :func:`tqdm.tqdm.write`: a line logged while a progress bar is on
  screen clears the bar, prints, and redraws it below, so bars are never torn; with no bar on
  screen (stderr not a terminal, ``-q``) it is a plain line.
- ``sys.stderr`` is looked up for every record, so a redirection made after the set-up
  (pytest's capture, :func:`contextlib.redirect_stderr`) is followed.
- Python ``warnings`` become one line each on the ``coroseg.warnings`` logger, so they reach
  the terminal and ``train.log`` alike (a warning shown with an explicit ``file`` stays Python's).
- Under torchrun only rank 0 shows progress lines; the other ranks show warnings and errors,
  prefixed ``rank N:``, so a 4-GPU run does not print every epoch line four times.

Lines: INFO is the message itself (``model epoch 3/100: loss 0.41, ...``); warnings read
``coroseg: warning: ...`` and errors ``coroseg: error: ...``, the prefix of the CLI's own error
line; DEBUG (``-v``) ``coroseg: debug: <logger>: ...``. Tracebacks of logged exceptions only
with ``-v``: the CLI's promise is one line per error.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

#: ``-q``: warnings and errors only, no progress bars; default: also progress lines; ``-v``: also debug
QUIET, NORMAL, VERBOSE = -1, 0, 1
LOGGER = "coroseg"
WARNINGS_LOGGER = "coroseg.warnings"

_LEVELS = {QUIET: logging.WARNING, NORMAL: logging.INFO, VERBOSE: logging.DEBUG}
#: what :func:`configure` changed, so :func:`restore` can put it back
_STATE: dict = {"verbosity": NORMAL, "handler": None, "level": None, "showwarning": None}


class TerminalHandler(logging.Handler):
    """Write records to the current ``sys.stderr`` through ``tqdm.write`` (bars cleared, then redrawn)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except RecursionError:
            raise
        except Exception:  # a closed or broken stderr must not stop the work being logged
            self.handleError(record)


class TerminalFormatter(logging.Formatter):
    """One line per record: the message, after ``coroseg: warning:`` / ``coroseg: error:`` when it is one."""

    def __init__(self, *, verbose: bool = False, rank: int | None = None):
        super().__init__()
        self.verbose = verbose
        self.prefix = "" if rank is None else f"rank {rank}: "

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if self.verbose and record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.ERROR:
            head = "coroseg: error: "
        elif record.levelno >= logging.WARNING:
            head = "coroseg: warning: "
        elif record.levelno >= logging.INFO:
            head = ""
        else:
            head = f"coroseg: debug: {record.name}: "
        return self.prefix + head + text


def configure(verbosity: int = NORMAL) -> logging.Handler:
    """Show the ``coroseg`` logger's records on stderr at ``verbosity`` (``QUIET``, ``NORMAL``, ``VERBOSE``).

    Replaces the handler of an earlier call, so calling it once per command never doubles a
    line. The logger itself is set to INFO (DEBUG with ``VERBOSE``) whatever the terminal
    shows, so ``train.log`` keeps every epoch line under ``-q`` too.

    Returns
    -------
    logging.Handler
        The terminal handler (removed again by :func:`restore`).
    """
    if verbosity not in _LEVELS:
        raise ValueError(f"verbosity must be one of {sorted(_LEVELS)}, not {verbosity!r}")
    restore()
    rank = _rank()
    handler = TerminalHandler(level=_LEVELS[verbosity] if not rank else max(_LEVELS[verbosity], logging.WARNING))
    handler.setFormatter(TerminalFormatter(verbose=verbosity == VERBOSE, rank=rank))
    logger = logging.getLogger(LOGGER)
    _STATE.update(verbosity=verbosity, handler=handler, level=logger.level, showwarning=warnings.showwarning)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity == VERBOSE else logging.INFO)
    warnings.showwarning = _show_warning
    return handler


def restore() -> None:
    """Undo :func:`configure`: remove its handler, give back the logger's level and ``warnings.showwarning``."""
    handler = _STATE["handler"]
    if handler is None:
        return
    logger = logging.getLogger(LOGGER)
    logger.removeHandler(handler)
    logger.setLevel(_STATE["level"])
    if warnings.showwarning is _show_warning:
        warnings.showwarning = _STATE["showwarning"]
    _STATE.update(verbosity=NORMAL, handler=None, level=None, showwarning=None)


def show_progress() -> bool:
    """Whether commands should draw progress bars: not under ``-q`` (bars also hide when stderr is no terminal)."""
    return _STATE["verbosity"] != QUIET


def _rank() -> int | None:
    """This process's rank under torchrun (``None`` when it runs alone)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        return int(os.environ.get("RANK", "0") or 0) if world > 1 else None
    except ValueError:
        return None


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` while configured: one line on :data:`WARNINGS_LOGGER` (terminal and train.log)."""
    if file is not None:
        _STATE["showwarning"](message, category, filename, lineno, file, line)
        return
    where = "/".join(Path(filename).parts[-2:])
    logging.getLogger(WARNINGS_LOGGER).warning("%s: %s (%s:%s)", category.__name__, message, where, lineno)


__all__ = ["configure", "restore", "show_progress", "TerminalHandler", "TerminalFormatter", "QUIET", "NORMAL",
           "VERBOSE", "LOGGER", "WARNINGS_LOGGER"]
