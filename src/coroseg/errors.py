"""Errors the user can fix. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

from pathlib import Path


class CorosegError(Exception):
    """An expected failure caused by the input, not a bug.

    The message names the file (when there is one) and the problem, as
    ``<path>: <problem>``, so a user can act on it without a traceback.
    """

    exit_code = 2

    def __init__(self, problem: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class InputError(CorosegError):
    """A file is missing, unreadable, corrupt or not what was expected."""


class GeometryError(CorosegError):
    """Two volumes that must share a grid do not, or a geometry is invalid."""
