"""The ``coroseg`` command line: parse options, call one library function, print the result.

Heavy imports (torch, MONAI, SimpleITK) happen inside the commands so ``--help`` is instant.
Expected failures (:class:`~coroseg.errors.CorosegError`) print one line and exit with 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from coroseg import __version__
from coroseg.errors import CorosegError

app = typer.Typer(
    name="coroseg",
    help="Coronary artery segmentation in CT coronary angiography with a centerline prior.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXISTING = dict(exists=True, resolve_path=False)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"coroseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Coronary artery segmentation in CTCA with a centerline prior."""


@app.command()
def info(path: Path = typer.Argument(..., **EXISTING, help="Volume file, DICOM folder, centerline (.vtp/.gml) or dataset folder.")) -> None:
    """Print a volume's, centerline's or dataset's size, spacing, orientation and statistics."""
    from coroseg.info import describe, format_description

    typer.echo(format_description(describe(path)))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``coroseg`` console script."""
    try:
        app(args=argv, prog_name="coroseg")
    except CorosegError as exc:
        typer.echo(f"coroseg: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("coroseg: interrupted", err=True)
        sys.exit(130)
